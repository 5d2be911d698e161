// The dashboard's picture of the mesh, built from the services' log lines as they arrive: who
// calls whom and how it goes, each service's identity, and the feed of refusals with their
// sentences. Pure: no I/O, the clock comes with each call, so tests feed it lines directly.
import { asEvent, type FieldTypes, type LoggedEvent } from "../../lib/events.ts";
import type { MeshLine } from "../mesh-format.ts";
import { UNAUTHENTICATED, type EdgeView, type FeedItem, type ServiceView, type Severity, type TimelineView } from "./view.ts";

export const WINDOW_SECONDS = 60;
const TIMELINE_SECONDS = 300;
/** The chart's narrowest span, so a quiet page still shows a minute. */
const MIN_TIMELINE_SECONDS = 60;
const FEED_MAX = 100;
/** Hostile peers choose their certificate's subject: bound what is kept of any string. */
const TEXT_MAX = 600;

/** What to do about a handshake refusal, in one line (the log's sentence says what happened). */
const FIXES: Record<string, string> = {
  no_client_cert: "present a certificate from the mesh CA (curl --cert/--key)",
  unknown_ca: "use a certificate from this mesh's CA, or add its root to the trust bundle",
  expired: "renew it: npm run ca -- renew --domain <name>",
  not_yet_valid: "check the clocks of the CA host and of the client",
  revoked: "issue the peer a new certificate: npm run ca -- issue --domain <name>",
  crl_missing: "publish the CA's CRLs: npm run ca -- crl",
  crl_expired: "re-sign the CRLs: npm run ca -- crl",
  crl_not_yet_valid: "check this host's clock against the CA's",
  server_revoked: "the callee's certificate was revoked: issue it a new one",
  server_untrusted: "give the caller the callee's root in its trust bundle",
  rejected_in_handshake: "see the callee's tls.handshake_failed line for why",
  upstream_down: "start the callee (npm run mesh:up)",
};

/** Upstream failures the callee never saw, so they are counted on the caller's side. */
const CALLER_ONLY = new Set(["upstream_down", "timeout", "network", "server_untrusted", "server_revoked", "server_cert_expired", "server_name_mismatch"]);

interface Counts {
  allowed: number;
  denied: number;
  refused: number;
  failed: number;
}

interface EdgeState {
  from: string;
  to: string;
  /** Epoch second -> counts in that second. */
  seconds: Map<number, Counts>;
  locked: boolean;
  lastReason: string | null;
}

interface ServiceState {
  name: string;
  port: number | null;
  up: boolean;
  dns: string | null;
  serial: string | null;
  notAfter: string | null;
  lastRenewal: string | null;
  trusts: string[];
}

interface Observed {
  text: string;
  at: string;
}

const text = (v: unknown): string => (typeof v === "string" ? v : v === undefined || v === null ? "" : String(v)).slice(0, TEXT_MAX);
const epoch = (time: string | undefined): number => {
  const t = time ? Date.parse(time) : NaN;
  return Math.floor((Number.isNaN(t) ? Date.now() : t) / 1000);
};

export class MeshModel {
  private readonly edges = new Map<string, EdgeState>();
  private readonly services = new Map<string, ServiceState>();
  private readonly feed: FeedItem[] = [];
  private readonly observed = new Map<string, Observed>();
  private readonly ok = new Map<number, number>();
  private readonly failed = new Map<number, number>();
  private readonly marks: Array<{ t: number; label: string }> = [];
  private nextId = 1;
  /** Bumped on every change, so the server pushes only when there is something new. */
  version = 0;

  ingest(l: MeshLine): void {
    const service = text(l.service);
    if (!service || typeof l.event !== "string") return;
    const s = epoch(l.time);
    const time = text(l.time) || new Date(s * 1000).toISOString();
    this.version++;
    // A catalogued event with the fields the catalogue gives it, or undefined (lib/events.ts).
    const e = asEvent(l);
    switch (e?.event) {
      case "listening":
        this.identity(service, e, false).up = true;
        this.service(service).port = e.port;
        break;
      case "tls.reloaded":
        if (e.certChanged) this.identity(service, e, true).lastRenewal = time;
        this.service(service).trusts = e.trusts.map(text);
        break;
      case "identity.enrolled":
      case "identity.renewed":
        this.identity(service, e, true).lastRenewal = time;
        break;
      case "shutdown":
        this.service(service).up = false;
        break;
      case "request": {
        // A handler's error line has no status: the answered line (500) that follows counts it.
        const status = e.status;
        if (status === undefined || status === 403) break; // authz.denied says a 403, with the rule
        const peer = text(e.peer);
        this.count(peer, service, s, status >= 500 ? "failed" : "allowed", true, null);
        this.observe(peer, service, `${status} ${text(e.method)} ${text(e.path)}`, time);
        this.tick(s, status >= 500 ? this.failed : this.ok, 1);
        break;
      }
      case "request.summary": {
        const n = Math.max(0, Math.min(1e9, e.count || 0));
        if (e.status === 403) break;
        this.count(text(e.peer), service, s, e.status >= 500 ? "failed" : "allowed", true, null, n);
        this.tick(s, e.status >= 500 ? this.failed : this.ok, n);
        break;
      }
      case "authz.denied": {
        const peer = text(e.peer);
        this.count(peer, service, s, "denied", true, text(e.rule));
        this.observe(peer, service, `403 ${text(e.method)} ${text(e.path)} (${text(e.rule)})`, time);
        this.tick(s, this.failed, 1);
        this.push({ time, service, event: e.event, severity: "denied", reason: text(e.rule), peer, sentence: text(e.reason) || text(e.msg), fix: text(e.hint) || null });
        break;
      }
      case "tls.handshake_failed": {
        const reason = text(e.reason);
        const claimed = peerText(e.peer);
        this.count(UNAUTHENTICATED, service, s, "refused", false, reason);
        this.tick(s, this.failed, 1);
        this.push({ time, service, event: e.event, severity: "refused", reason, peer: claimed, sentence: text(e.msg), fix: FIXES[reason] ?? null });
        break;
      }
      case "upstream.failed": {
        const reason = text(e.reason);
        const callee = text(e.upstream);
        if (reason !== "forbidden") {
          this.count(service, callee, s, "failed", false, reason);
          this.observe(service, callee, `failed: ${reason}`, time);
        }
        if (CALLER_ONLY.has(reason)) this.tick(s, this.failed, 1);
        this.push({ time, service, event: e.event, severity: "failed", reason, peer: callee, sentence: text(e.msg), fix: FIXES[reason] ?? null });
        break;
      }
      case "drill.phase":
        this.mark(s, e.phase);
        break;
      case "rotate.gate":
        this.mark(s, e.gate);
        break;
      default:
        // Any other line, catalogued or not (a newer writer): shown when it reads as a problem.
        if (/(_failed|\.lapsed|\.expiring|\.missing)$/.test(l.event) || l.level === 50 || l.level === 40) {
          this.push({ time, service, event: text(l.event), severity: "warning", reason: text(l.reason ?? l.code ?? l.event), peer: null, sentence: text(l.msg), fix: text(l.hint) || null });
        } else {
          this.version--; // nothing the page shows changed
        }
    }
  }

  private mark(t: number, label: string): void {
    this.marks.push({ t, label: text(label) });
    if (this.marks.length > 50) this.marks.shift();
  }

  servicesView(): ServiceState[] {
    return [...this.services.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  edgesView(nowMs: number): EdgeView[] {
    const from = Math.floor(nowMs / 1000) - WINDOW_SECONDS;
    const out: EdgeView[] = [];
    for (const e of this.edges.values()) {
      const c: Counts = { allowed: 0, denied: 0, refused: 0, failed: 0 };
      for (const [sec, n] of e.seconds) {
        if (sec <= from) {
          e.seconds.delete(sec);
          continue;
        }
        c.allowed += n.allowed;
        c.denied += n.denied;
        c.refused += n.refused;
        c.failed += n.failed;
      }
      out.push({ from: e.from, to: e.to, ...c, locked: e.locked, failing: c.denied + c.refused + c.failed > 0, lastReason: e.lastReason });
    }
    return out.sort((a, b) => `${a.from}>${a.to}`.localeCompare(`${b.from}>${b.to}`));
  }

  feedView(): FeedItem[] {
    return [...this.feed].reverse();
  }

  observedFor(caller: string, service: string): Observed | undefined {
    return this.observed.get(`${caller}>${service}`);
  }

  timelineView(nowMs: number): TimelineView {
    const end = Math.floor(nowMs / 1000);
    let start = end - TIMELINE_SECONDS + 1;
    // A mesh that came up a minute ago (a drill) fills the chart instead of its last fifth.
    let first = end;
    for (const m of [this.ok, this.failed]) for (const t of m.keys()) if (t >= start && t < first) first = t;
    for (const mk of this.marks) if (mk.t >= start && mk.t < first) first = mk.t;
    start = Math.max(start, Math.min(end - MIN_TIMELINE_SECONDS + 1, first - 2));
    const ok: number[] = [];
    const failed: number[] = [];
    for (let t = start; t <= end; t++) {
      ok.push(this.ok.get(t) ?? 0);
      failed.push(this.failed.get(t) ?? 0);
    }
    for (const m of [this.ok, this.failed]) for (const t of m.keys()) if (t < start) m.delete(t);
    return { start, ok, failed, marks: this.marks.filter((m) => m.t >= start) };
  }

  private service(name: string): ServiceState {
    let s = this.services.get(name);
    if (!s) this.services.set(name, (s = { name, port: null, up: false, dns: null, serial: null, notAfter: null, lastRenewal: null, trusts: [] }));
    return s;
  }

  private identity(name: string, l: LoggedEvent<"listening" | "tls.reloaded" | "identity.enrolled" | "identity.renewed">, renewal: boolean): ServiceState {
    const s = this.service(name);
    if ("identity" in l) s.dns = text(l.identity);
    if (l.serial !== undefined) s.serial = text(l.serial).toLowerCase();
    if (l.notAfter !== undefined) s.notAfter = text(l.notAfter);
    if ("trusts" in l && l.trusts) s.trusts = l.trusts.map(text);
    if (renewal) s.up = true;
    return s;
  }

  private count(from: string, to: string, sec: number, kind: keyof Counts, authenticated: boolean, reason: string | null, n = 1): void {
    if (!from || !to) return;
    const key = `${from}>${to}`;
    let e = this.edges.get(key);
    if (!e) this.edges.set(key, (e = { from, to, seconds: new Map(), locked: false, lastReason: null }));
    let c = e.seconds.get(sec);
    if (!c) e.seconds.set(sec, (c = { allowed: 0, denied: 0, refused: 0, failed: 0 }));
    c[kind] += n;
    e.locked = authenticated;
    if (reason !== null || kind === "allowed") e.lastReason = kind === "allowed" ? null : reason;
  }

  private observe(caller: string, service: string, what: string, at: string): void {
    if (caller && service) this.observed.set(`${caller}>${service}`, { text: what.slice(0, 200), at });
  }

  private tick(sec: number, m: Map<number, number>, n: number): void {
    m.set(sec, (m.get(sec) ?? 0) + n);
  }

  private push(item: Omit<FeedItem, "id" | "severity"> & { severity: Severity }): void {
    this.feed.push({ id: this.nextId++, ...item });
    if (this.feed.length > FEED_MAX) this.feed.shift();
  }
}

/** "CN=x, O=y (issued by CN=z)": what a refused peer's certificate claimed, bounded. */
function peerText(p: FieldTypes["cert"] | undefined): string | null {
  if (!p) return null;
  const subject = text(p.subject);
  const issuer = text(p.issuer);
  if (!subject && !issuer) return null;
  return `${subject || "(no subject)"}${issuer ? ` (issued by ${issuer})` : ""}`.slice(0, TEXT_MAX);
}

export type { ServiceState, ServiceView };
