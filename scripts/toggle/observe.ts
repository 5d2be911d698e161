// What a toggle does to the running mesh, observed rather than predicted: the service's own line
// saying the toggle is in force, a real handshake showing what it presents, mesh:probe's calls of
// every pair that involve it, one real order through the mesh when the policy lets edge place one,
// the log lines both sides wrote since the flip, its /healthz and what the dashboard shows.
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { connect } from "node:tls";
import { parseEventLine, type LoggedEvent } from "../../lib/events.ts";
import { pemBlocks } from "../../lib/pem.ts";
import { decide, loadPolicy } from "../../services/mesh/policy.ts";
import { upstreamReason } from "../../services/mesh/reasons.ts";
import { PROBE_FOREIGN_CA, probeMesh, type ProbeCell } from "../probe.ts";
import type { MeshState, Target } from "./mesh.ts";

export interface Presented {
  serial: string;
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
  san: string;
}

export interface LogSignature {
  service: string;
  event: string;
  reason: string | null;
  msg: string;
  count: number;
}

export interface Observed {
  presented: Presented | null;
  probe: ProbeCell[];
  /** One real order placed as edge through order (only when the policy lets edge call order). */
  order: { status: number | null; outcome: string } | null;
  lines: LogSignature[];
  health: { status: number; body: string } | null;
  dashboard: { identity: { serial: string; status: string } | null; toggle: string | null; edges: string[] } | null;
}

const norm = (s: unknown) =>
  String(s ?? "")
    .toLowerCase()
    .replace(/:/g, "")
    .replace(/^0+(?=.)/, "");

/** The lines logged by `service` since `since` (ms), the rotated file included. */
export function linesSince(logs: string, service: string, since: number): LoggedEvent[] {
  const out: LoggedEvent[] = [];
  for (const f of [join(logs, `${service}.log.1`), join(logs, `${service}.log`)]) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, "utf8");
    for (const raw of text.slice(Math.max(0, text.length - 2_000_000)).split("\n")) {
      const l = parseEventLine(raw);
      if (l && Date.parse(l.time) >= since) out.push(l);
    }
  }
  return out;
}

/** Waits (polling the log file) for a line of `service` since `since` that `match` accepts. */
export async function waitForLine(
  logs: string,
  service: string,
  since: number,
  match: (l: LoggedEvent) => boolean,
  timeoutMs: number,
): Promise<LoggedEvent | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const hit = linesSince(logs, service, since).find(match);
    if (hit || Date.now() > end) return hit;
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** A handshake with the service as edge, accepting whatever it presents, to see it. */
export function presented(mesh: MeshState, t: Target): Promise<Presented | null> {
  const edge = mesh.identities.edge;
  return new Promise((done) => {
    let seen: Presented | null = null;
    const s = connect({
      host: "127.0.0.1",
      port: t.port,
      servername: `${t.service}.internal`,
      rejectUnauthorized: false,
      ...(edge ? { cert: readFileSync(edge.cert), key: readFileSync(edge.key) } : {}),
      timeout: 5_000,
    });
    const guard = setTimeout(() => s.destroy(), 7_000);
    s.once("close", () => {
      clearTimeout(guard);
      done(seen);
    });
    s.once("secureConnect", () => {
      const c = s.getPeerX509Certificate();
      if (c)
        seen = {
          serial: norm(c.serialNumber),
          subject: c.subject.replace(/\n/g, ", "),
          issuer: c.issuer.replace(/\n/g, ", "),
          validFrom: new Date(c.validFrom).toISOString(),
          validTo: new Date(c.validTo).toISOString(),
          san: c.subjectAltName ?? "",
        };
      // Ended with close_notify, not reset: a reset during the handshake is logged by the service
      // as a client that dropped it (client_aborted), which this look must not add to what it shows.
      s.end();
    });
    s.once("error", () => s.destroy());
    s.once("timeout", () => s.destroy());
  });
}

/** The serial of the identity the service holds (its own certificate file). */
export function heldSerial(t: Target): string {
  return norm(new X509Certificate(readFileSync(t.identity.cert)).serialNumber);
}

/** One order as edge, judged as a client judges it (the bundle and CRLs), through order to payment and inventory. */
function placeOrder(mesh: MeshState): Promise<{ status: number | null; outcome: string }> {
  const edge = mesh.identities.edge!;
  const port = mesh.ports.order!;
  return new Promise((done) => {
    const body = JSON.stringify({ sku: "widget", quantity: 1 });
    const req = request(
      {
        host: "127.0.0.1",
        port,
        servername: "order.internal",
        path: "/orders",
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        ca: readFileSync(edge.bundle),
        crl: pemBlocks(readFileSync(edge.crls, "utf8"), "X509 CRL"),
        cert: readFileSync(edge.cert),
        key: readFileSync(edge.key),
        agent: false,
        timeout: 15_000,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          let outcome = text.slice(0, 300);
          try {
            const j = JSON.parse(text) as { error?: string; reason?: string; message?: string };
            outcome = [j.error, j.reason, j.message].filter(Boolean).join(": ") || outcome;
          } catch {
            /* not JSON: shown as it came */
          }
          done({ status: res.statusCode ?? null, outcome: res.statusCode === 201 ? "order placed" : outcome });
        });
      },
    );
    req.on("error", (e) => {
      const r = upstreamReason(e, "order", `127.0.0.1:${port}`);
      done({ status: null, outcome: `${r.reason} (${r.code})` });
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })));
    req.end(body);
  });
}

async function health(t: Target): Promise<{ status: number; body: string } | null> {
  if (!t.adminPort) return null;
  try {
    const r = await fetch(`http://127.0.0.1:${t.adminPort}/healthz`, { signal: AbortSignal.timeout(5_000) });
    return { status: r.status, body: (await r.text()).trim().slice(0, 300) };
  } catch {
    return null;
  }
}

/** The dashboard's view of the service, once it shows `serial` (or what it shows after a few seconds). */
async function dashboard(mesh: MeshState, t: Target, serial: string): Promise<Observed["dashboard"]> {
  if (!mesh.dashboard) return null;
  type Snap = {
    services: Array<{ name: string; identity: { serial: string; status: string } | null; toggle?: string | null }>;
    edges: Array<{ from: string; to: string; failing: boolean; allowed: number; lastReason: string | null }>;
  };
  let snap: Snap | undefined;
  const end = Date.now() + 8_000;
  while (Date.now() < end) {
    try {
      const r = await fetch(new URL("snapshot.json", mesh.dashboard), { signal: AbortSignal.timeout(5_000) });
      snap = (await r.json()) as Snap;
      const s = snap.services.find((x) => x.name === t.service);
      if (s?.identity && norm(s.identity.serial) === serial) break;
    } catch {
      /* not up yet, or gone: try again until the deadline */
    }
    // The dashboard reads the logs every 250 ms: look again at that pace, not every half second.
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!snap) return null;
  const s = snap.services.find((x) => x.name === t.service);
  return {
    identity: s?.identity ? { serial: norm(s.identity.serial), status: s.identity.status } : null,
    toggle: s?.toggle ?? null,
    edges: snap.edges
      .filter((e) => e.from === t.service || e.to === t.service)
      .map(
        (e) =>
          `${e.from} → ${e.to}: ${e.failing ? `failing (${e.lastReason ?? "no reason"})` : `ok (${e.allowed} allowed)`}`,
      ),
  };
}

/**
 * The lines since the flip that belong to this toggle: the service's own refusals and failed
 * calls, and its peers' lines about it (a refused certificate with its serial, a failed call to
 * it, a 403 to the name it presents), one entry per service, event and reason.
 */
function signatures(
  mesh: MeshState,
  t: Target,
  o: { since: number; serial: string; name: string; failuresOnly?: boolean },
): LogSignature[] {
  const { since, serial, name } = o;
  const out = new Map<string, LogSignature>();
  const interesting = new Set(["tls.handshake_failed", "upstream.failed", "authz.denied", "tls.connections_closed"]);
  for (const svc of Object.keys(mesh.ports)) {
    for (const l of linesSince(mesh.logs, svc, since)) {
      if (!interesting.has(l.event)) continue;
      const f = l as unknown as Record<string, unknown>;
      // The service's own 403s are its policy at work, whatever it presents: not this toggle's.
      const mine = svc === t.service && l.event !== "authz.denied";
      const aboutIt =
        (l.event === "tls.handshake_failed" && norm((f.peer as { serial?: string } | undefined)?.serial) === serial) ||
        (l.event === "upstream.failed" && f.upstream === t.service) ||
        (l.event === "authz.denied" && f.peer === name) ||
        (l.event === "tls.connections_closed" && JSON.stringify(f.peers ?? []).includes(t.service));
      if (!mine && !aboutIt) continue;
      // The probe's two strangers are refused whatever this service presents: not its signature.
      const peer = f.peer as { issuer?: string } | undefined;
      if (mine && (f.reason === "no_client_cert" || String(peer?.issuer ?? "").includes(PROBE_FOREIGN_CA))) continue;
      // After a restore, a 403 is the policy at work again: only failures are worth showing.
      if (o.failuresOnly && l.event === "authz.denied") continue;
      const reason = typeof f.reason === "string" ? f.reason : null;
      const key = `${svc}|${l.event}|${reason}`;
      const seen = out.get(key);
      if (seen) seen.count++;
      else out.set(key, { service: svc, event: l.event, reason, msg: String(f.msg ?? "").slice(0, 400), count: 1 });
    }
  }
  return [...out.values()];
}

/** Everything above, once the toggle (or the restore) is in force. `name`: the short name it presents. */
export async function observe(
  mesh: MeshState,
  t: Target,
  o: { since: number; serial: string; name: string; failuresOnly?: boolean },
): Promise<Observed> {
  const shown = await presented(mesh, t);
  const policy = loadPolicy(mesh.policy);
  const { cells } = await probeMesh({
    pki: mesh.pki,
    policy,
    ports: mesh.ports,
    logs: mesh.logs,
    identities: mesh.identities,
  });
  const probe = cells.filter((c) => c.caller === t.service || c.callee === t.service);
  const edgeMayOrder =
    mesh.identities.edge && mesh.ports.order && decide(policy, "order", "edge", "POST", "/orders").allow;
  const order = edgeMayOrder ? await placeOrder(mesh) : null;
  // The callee's line for the probe's last refusal may land a moment after the call.
  await new Promise((r) => setTimeout(r, 300));
  return {
    presented: shown,
    probe,
    order,
    lines: signatures(mesh, t, o),
    health: await health(t),
    dashboard: await dashboard(mesh, t, o.serial),
  };
}
