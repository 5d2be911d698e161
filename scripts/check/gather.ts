// Collects mesh:check's facts: the CA's state and the policy file from disk, and from each
// running service a real mTLS handshake (the certificate it serves) and its admin port's
// /healthz and /metrics. Whatever a service sends is bounded in size and time.
import { X509Certificate, createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isAbsolute, join, relative } from "node:path";
import type { TLSSocket } from "node:tls";
import { CertificateAuthority, normalSerial, parseDuration } from "../../ca/index.ts";
import { decide, loadPolicy, type Policy } from "../../services/mesh/policy.ts";
import { spiffeIdOf } from "../../lib/spiffe.ts";
import { pemBlocks } from "../../lib/pem.ts";
import { crlsDigest } from "../../services/mesh/metrics.ts";
import { messageOf } from "../../services/mesh/errors.ts";
import { CALLERS } from "../../services/mesh/names.ts";
import { toggleDirOf, togglePaths } from "../../services/mesh/toggle.ts";
import { installedKind } from "../toggle/install.ts";
import type { AdminFacts, CaFacts, LedgerCert, MeshFacts, MtlsFacts, ServiceFacts } from "./facts.ts";
import { samples } from "./prom.ts";

const TIMEOUT_MS = 4_000;
/** A /metrics of three services is ~30 KiB; anything past this is not ours to read. */
const MAX_METRICS_BYTES = 4 * 1024 * 1024;
const MAX_BODY_BYTES = 64 * 1024;
const WANTED = new Set([
  "mesh_trust_bundle_info",
  "mesh_crls_info",
  "mesh_policy_info",
  "mesh_crl_next_update_timestamp_seconds",
  "mesh_identity_cert_last_renewal_timestamp_seconds",
  "mesh_identity_cert_expiration_timestamp_seconds",
]);

export interface Target {
  readonly name: string;
  readonly port: number;
  readonly adminPort: number | null;
}

interface Identity {
  readonly dns: string;
  readonly short: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

interface CaState {
  readonly facts: CaFacts;
  readonly ledger: ReadonlyMap<string, LedgerCert>;
  /** Each name's VALID certificate by serial: what a service should be serving. */
  readonly current: ReadonlyMap<string, string>;
  readonly identityFor: (service: string) => Identity | null;
  readonly bundle: Buffer;
  readonly crls: string[];
}

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** Thrown for what makes checking impossible (no CA, no bundle): the CLI exits 2 with it. */
export class CheckSetupError extends Error {}

/** Where the identities mesh:check may present are, online (each in its state folder; mesh.json says). */
export type IdentityFiles = Record<string, { cert: string; key: string }>;

/** Online mode, from mesh.json: the lifetime services ask for and how often they poll. */
export interface OnlineMode {
  readonly lifetimeMs: number;
  readonly pollMs: number;
  readonly identities: IdentityFiles;
  /** The CA's EST server (mesh.json's ca.url). */
  readonly caUrl?: string;
  /** Further replicas mesh:up runs (mesh.json's ca.replicas after the first). */
  readonly replicaUrls?: readonly string[];
  /** The ledger's store when not the folder's SQLite (mesh.json's ca.store). */
  readonly store?: string;
}

async function readCa(dir: string, policyFile: string, online?: OnlineMode): Promise<CaState> {
  // The mesh's store, unless the user names one (MESH_CA_STORE).
  const store = process.env.MESH_CA_STORE || online?.store;
  if (!CertificateAuthority.exists(dir, store))
    throw new CheckSetupError(`no CA in ${dir}: is the mesh up? (npm run mesh:up), or pass --pki`);
  const ca = await CertificateAuthority.open({ dir, store });
  try {
    const read = (path: string, what: string) => {
      try {
        return readFileSync(path);
      } catch (e) {
        throw new CheckSetupError(
          `cannot read the CA's ${what} ${path}: ${messageOf(e)} (npm run ca -- ${what === "trust bundle" ? "bundle" : "crl"} writes it)`,
        );
      }
    };
    const bundle = read(ca.paths.bundle, "trust bundle");
    const crls = pemBlocks(read(ca.paths.crls, "CRL file").toString("utf8"), "X509 CRL");
    let policyText: Buffer;
    try {
      policyText = readFileSync(policyFile);
    } catch (e) {
      throw new CheckSetupError(`cannot read the policy file ${policyFile}: ${messageOf(e)} (pass --policy)`);
    }
    let policyError: string | undefined;
    let policy: Policy | undefined;
    try {
      policy = loadPolicy(policyFile);
    } catch (e) {
      policyError = messageOf(e);
    }
    const ledger = new Map<string, LedgerCert>();
    const current = new Map<string, string>();
    for (const c of ca.list({ all: true })) {
      if (c.status === "VALID") current.set(c.domain, c.serial);
      ledger.set(c.serial, {
        serial: c.serial,
        domain: c.domain,
        status: c.status,
        issuer: c.issuer,
        generation: c.generation,
        revokedAt: c.revokedAt,
        reason: c.reason,
        supersededBy: c.supersededBy,
      });
    }
    // The identities mesh:check may show in its handshakes: those the CA still vouches for, edge (an operator's) first.
    const identities: Identity[] = [];
    for (const short of ["edge", ...CALLERS.filter((c) => c !== "edge")]) {
      const dns = `${short}.internal`;
      const files = online?.identities[short] ?? ca.paths.leaf(dns);
      if (!existsSync(files.cert) || !existsSync(files.key)) continue;
      try {
        const cert = readFileSync(files.cert);
        const row = ledger.get(normalSerial(new X509Certificate(cert).serialNumber));
        if (row?.status !== "VALID") continue;
        identities.push({ dns, short, cert, key: readFileSync(files.key) });
      } catch {
        // unreadable or not a certificate: try the next identity
      }
    }
    const issuers = ca.ledger.issuers().map((r) => ({
      id: r.id,
      kind: r.kind,
      name: r.name,
      generation: r.generation,
      state: r.state,
      notBefore: r.notBefore,
      notAfter: r.notAfter,
      crlNextUpdate: r.crlNextUpdate,
    }));
    const changedAt = (path: string) => {
      try {
        return statSync(path).mtimeMs;
      } catch {
        return 0;
      }
    };
    const server = online?.caUrl ? { url: online.caUrl, ...(await askCaServer(online.caUrl, bundle)) } : undefined;
    const replicas = await Promise.all(
      (online?.replicaUrls ?? []).map(async (url) => ({ url, ...(await askCaServer(url, bundle)) })),
    );
    const facts: CaFacts = {
      dir: shownDir(dir),
      bundleSha256: sha256(bundle),
      crlsSha256: crlsDigest(crls),
      policyFile,
      policySha256: sha256(policyText),
      policyError,
      issuers,
      ...(online
        ? {
            online: {
              lifetimeMs: online.lifetimeMs,
              pollMs: online.pollMs,
              bundleChangedAt: changedAt(ca.paths.bundle),
              crlsChangedAt: changedAt(ca.paths.crls),
              server,
              ...(replicas.length > 0 ? { replicas } : {}),
            },
          }
        : {}),
    };
    // Per service, a caller the policy lets GET /healthz, so that checking leaves no authz.denied
    // line behind (the dashboard shows those as denials); else edge, whose 403 still proves an answer.
    const identityFor = (service: string) =>
      identities.find(
        (i) =>
          policy && decide(policy, service, i.short, "GET", "/healthz", spiffeIdOf(new X509Certificate(i.cert))).allow,
      ) ??
      identities[0] ??
      null;
    return { facts, ledger, current, identityFor, bundle, crls };
  } finally {
    ca.close();
  }
}

/** GET cacerts from the CA server, its certificate checked against the published roots (as a service does). */
function askCaServer(url: string, bundle: Buffer): Promise<{ status?: number; error?: string }> {
  return new Promise((done) => {
    let target: URL;
    try {
      target = new URL("/.well-known/est/cacerts", url);
    } catch {
      return done({ error: `${url.slice(0, 80)} is not a URL` });
    }
    if (target.protocol !== "https:" || !/^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/.test(target.hostname))
      return done({ error: `${url.slice(0, 80)} is not an https address on loopback` });
    const req = httpsRequest(target, { method: "GET", ca: bundle, agent: false, timeout: TIMEOUT_MS }, (res) => {
      res.resume();
      res.on("end", () => done({ status: res.statusCode }));
    });
    req.on("timeout", () =>
      req.destroy(Object.assign(new Error(`no answer within ${TIMEOUT_MS / 1000} s`), { code: "TIMEOUT" })),
    );
    req.on("error", (e: NodeJS.ErrnoException) => done({ error: e.code ?? messageOf(e) }));
    req.end();
  });
}

/** A handshake as a mesh identity and GET /healthz; the served certificate judged by OpenSSL with the CA's bundle and CRLs. */
function probeMtls(t: Target, ca: CaState): Promise<MtlsFacts> {
  const id = ca.identityFor(t.name);
  if (!id) return Promise.resolve({ identity: null });
  return new Promise((done) => {
    let served: MtlsFacts["served"];
    let verifyError: string | null | undefined;
    let settled = false;
    const finish = (f: Omit<MtlsFacts, "identity" | "served" | "verifyError">) => {
      if (settled) return;
      settled = true;
      done({ identity: id.dns, served, verifyError, ...f });
    };
    // rejectUnauthorized: false so that a revoked or expired certificate can still be read and
    // named; OpenSSL's verdict is kept (verifyError) and the certificate check fails on it.
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port: t.port,
        servername: `${t.name}.internal`,
        path: "/healthz",
        method: "GET",
        ca: ca.bundle,
        crl: ca.crls,
        cert: id.cert,
        key: id.key,
        rejectUnauthorized: false,
        agent: false,
        timeout: TIMEOUT_MS,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
          if (body.length > MAX_BODY_BYTES) res.destroy();
        });
        res.on("close", () => {
          let rule: string | undefined;
          try {
            const r = (JSON.parse(body) as { rule?: unknown }).rule;
            if (typeof r === "string") rule = r.slice(0, 200);
          } catch {
            /* not JSON: no rule to show */
          }
          finish({ status: res.statusCode, rule });
        });
      },
    );
    req.on("socket", (s) => {
      s.once("secureConnect", () => {
        const tls = s as TLSSocket;
        const peer = tls.getPeerX509Certificate();
        if (peer)
          served = {
            subject: oneLine(peer.subject),
            issuer: oneLine(peer.issuer),
            serial: normalSerial(peer.serialNumber),
            notBefore: new Date(peer.validFrom).toISOString(),
            notAfter: new Date(peer.validTo).toISOString(),
          };
        verifyError = tls.authorized ? null : String(tls.authorizationError ?? "not authorized");
      });
    });
    req.on("timeout", () =>
      req.destroy(Object.assign(new Error(`no answer within ${TIMEOUT_MS / 1000} s`), { code: "TIMEOUT" })),
    );
    req.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNREFUSED") return finish({ error: "ECONNREFUSED" });
      const afterHandshake =
        served !== undefined &&
        (e.code === "ECONNRESET" || e.code === "EPIPE" || /socket hang up|alert/i.test(e.message));
      finish({
        error: afterHandshake
          ? `it closed the connection after the handshake: it refused ${id.dns} (its tls.handshake_failed line says why)`
          : `${e.code ?? ""} ${e.message}`.trim(),
      });
    });
    req.end();
  });
}

interface Got {
  status: number;
  date?: string;
  body: string;
  sentAt: number;
  receivedAt: number;
}

function get(port: number, path: string, max: number): Promise<Got> {
  return new Promise((done, fail) => {
    const sentAt = Date.now();
    const req = httpRequest(
      { host: "127.0.0.1", port, path, method: "GET", agent: false, timeout: TIMEOUT_MS },
      (res) => {
        const receivedAt = Date.now();
        const chunks: Buffer[] = [];
        let n = 0;
        res.on("data", (c: Buffer) => {
          n += c.length;
          if (n > max) return req.destroy(new Error(`${path} is larger than ${max} bytes`));
          chunks.push(c);
        });
        res.on("end", () =>
          done({
            status: res.statusCode ?? 0,
            date: typeof res.headers.date === "string" ? res.headers.date.slice(0, 64) : undefined,
            body: Buffer.concat(chunks).toString("utf8"),
            sentAt,
            receivedAt,
          }),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)));
    req.on("error", fail);
    req.end();
  });
}

async function probeAdmin(t: Target): Promise<AdminFacts> {
  if (t.adminPort === null) return { port: null };
  let healthz: number;
  let healthzReason: string | undefined;
  try {
    const h = await get(t.adminPort, "/healthz", MAX_BODY_BYTES);
    healthz = h.status;
    if (healthz !== 200)
      healthzReason =
        h.body
          .split("\n")[0]!
          .replace(/^unhealthy: /, "")
          .slice(0, 500) || undefined;
  } catch (e) {
    return { port: t.adminPort, error: (e as NodeJS.ErrnoException).code ?? messageOf(e) };
  }
  let m: Got;
  try {
    m = await get(t.adminPort, "/metrics", MAX_METRICS_BYTES);
  } catch (e) {
    return { port: t.adminPort, healthz, healthzReason, error: (e as NodeJS.ErrnoException).code ?? messageOf(e) };
  }
  const ss = samples(m.body, WANTED);
  const info = (name: string) => {
    const hits = ss.filter((s) => s.name === name && s.value === 1);
    return hits.length === 1 ? hits[0]!.labels.sha256 : undefined; // none or several: not a digest to trust
  };
  const crlNextUpdates = ss
    .filter((s) => s.name === "mesh_crl_next_update_timestamp_seconds")
    .map((s) => ({ issuer: s.labels.issuer ?? "?", at: s.value * 1000 }));
  // One unlabelled sample each, or not a time to judge by.
  const time = (name: string) => {
    const hits = ss.filter((s) => s.name === name && Number.isFinite(s.value) && s.value > 0);
    return hits.length === 1 ? hits[0]!.value * 1000 : undefined;
  };
  return {
    port: t.adminPort,
    healthz,
    healthzReason,
    metrics: m.status,
    date: m.date,
    sentAt: m.sentAt,
    receivedAt: m.receivedAt,
    trustBundleSha256: info("mesh_trust_bundle_info"),
    crlsSha256: info("mesh_crls_info"),
    policySha256: info("mesh_policy_info"),
    crlNextUpdates,
    lastRenewalAt: time("mesh_identity_cert_last_renewal_timestamp_seconds"),
    certExpiresAt: time("mesh_identity_cert_expiration_timestamp_seconds"),
  };
}

/**
 * The facts, and whether a service has not caught up with the CA's files yet: it holds
 * another bundle, CRLs or policy than on disk, or serves a certificate other than its name's
 * VALID one in the ledger (renewed, or re-issued after a revocation). Each reloads within
 * about a second.
 */
async function gatherOnce(
  targets: readonly Target[],
  pki: string,
  policyFile: string,
  online?: OnlineMode,
): Promise<{ facts: MeshFacts; behind: boolean }> {
  const ca = await readCa(pki, policyFile, online);
  let behind = false;
  const differs = (held: string | undefined, disk: string) => held !== undefined && held !== disk;
  const services: ServiceFacts[] = await Promise.all(
    targets.map(async (t) => {
      const [mtls, admin] = await Promise.all([probeMtls(t, ca), probeAdmin(t)]);
      const fresh = ca.current.get(`${t.name}.internal`);
      if (
        differs(admin.trustBundleSha256, ca.facts.bundleSha256) ||
        differs(admin.crlsSha256, ca.facts.crlsSha256) ||
        differs(admin.policySha256, ca.facts.policySha256)
      )
        behind = true;
      if (mtls.served && fresh !== undefined && fresh !== mtls.served.serial) behind = true;
      return {
        name: t.name,
        port: t.port,
        mtls,
        admin,
        ledger: mtls.served ? ca.ledger.get(mtls.served.serial) : undefined,
        toggle: toggleOf(t.name, pki, online),
      };
    }),
  );
  return { facts: { ca: ca.facts, services }, behind };
}

/** The teaching toggle beside a service's identity (docs/toggles.md), if one is installed. */
function toggleOf(name: string, pki: string, online?: OnlineMode): ServiceFacts["toggle"] {
  const cert = online?.identities[name]?.cert ?? join(pki, "certs", `${name}.internal.crt`);
  return installedKind(togglePaths(toggleDirOf(cert, name)));
}

/** The facts of the mesh; when a service has not caught up with the CA's files yet, asked once more after settleMs. */
export async function gatherMesh(o: {
  targets: readonly Target[];
  pki: string;
  policyFile: string;
  settleMs?: number;
  online?: OnlineMode;
}): Promise<MeshFacts> {
  const first = await gatherOnce(o.targets, o.pki, o.policyFile, o.online);
  if (!first.behind || o.settleMs === 0) return first.facts;
  await new Promise((r) => setTimeout(r, o.settleMs ?? 1_500));
  return (await gatherOnce(o.targets, o.pki, o.policyFile, o.online)).facts;
}

/** logs/mesh.json, which mesh:up writes. */
export function readMeshState(logs: string): {
  pki?: string;
  policy?: string;
  ports?: Record<string, number>;
  adminPorts?: Record<string, number>;
  online?: OnlineMode;
} | null {
  const file = join(logs, "mesh.json");
  if (!existsSync(file)) return null;
  try {
    const s = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    const nums = (v: unknown) =>
      v && typeof v === "object"
        ? (Object.fromEntries(
            Object.entries(v).filter(([, n]) => Number.isInteger(n) && (n as number) > 0 && (n as number) < 65536),
          ) as Record<string, number>)
        : undefined;
    return {
      pki: typeof s.pki === "string" ? s.pki : undefined,
      policy: typeof s.policy === "string" ? s.policy : undefined,
      ports: nums(s.ports),
      adminPorts: nums(s.adminPorts),
      online: onlineOf(s, file),
    };
  } catch (e) {
    throw new CheckSetupError(`${file} is not mesh:up's JSON: ${messageOf(e)}`);
  }
}

/** mesh.json of an online mesh: its lifetime, poll and where each identity's files are. */
function onlineOf(s: Record<string, unknown>, file: string): OnlineMode | undefined {
  if (s.mode !== "online") return undefined;
  const ca = (s.ca ?? {}) as { lifetime?: unknown; poll?: unknown };
  const ids = (s.identities ?? {}) as Record<string, { cert?: unknown; key?: unknown }>;
  const identities: IdentityFiles = {};
  for (const [name, f] of Object.entries(ids)) {
    if (typeof f?.cert === "string" && typeof f.key === "string") identities[name] = { cert: f.cert, key: f.key };
  }
  let lifetimeMs: number;
  try {
    lifetimeMs = parseDuration(String(ca.lifetime), { flag: "lifetime" });
  } catch {
    throw new CheckSetupError(
      `${file} says the mesh is online but records no certificate lifetime: restart it with npm run mesh:up`,
    );
  }
  const poll = Number(ca.poll);
  const caUrl = typeof (ca as { url?: unknown }).url === "string" ? (ca as { url: string }).url : undefined;
  const listed = (ca as { replicas?: unknown }).replicas;
  const replicaUrls = (Array.isArray(listed) ? listed : [])
    .map((r) => (r as { url?: unknown })?.url)
    .filter((u): u is string => typeof u === "string" && u !== caUrl);
  const store = (ca as { store?: unknown }).store;
  return {
    lifetimeMs,
    pollMs: Number.isFinite(poll) && poll > 0 ? poll * 1000 : 30_000,
    identities,
    caUrl,
    replicaUrls,
    ...(typeof store === "string" && store !== "sqlite" ? { store } : {}),
  };
}

function oneLine(dn: string): string {
  return dn.split("\n").join(", ");
}

/** The CA folder as the report shows it: relative to where the user stands when it is under it (pki, as the docs show). */
function shownDir(dir: string): string {
  const rel = relative(process.cwd(), dir);
  return rel === "" || rel.startsWith("..") || isAbsolute(rel) ? dir : rel;
}
