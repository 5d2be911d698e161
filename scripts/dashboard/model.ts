// The dashboard's picture of the mesh, built from the services' log lines as they arrive: who
// calls whom and how it goes, each service's identity, the calls seen per route, the feed of
// refusals with their sentences, and the supervisor's restarts; scoped to the current mesh:up run
// (from its mesh.started line on). Pure: no I/O, the clock comes with each call, so tests feed it lines directly.
import { asEvent } from "../../lib/events.ts";
import type { MeshLine } from "../mesh-format.ts";
import { CALLER_ONLY, FIXES, KEPT_OUT } from "./reasons.ts";
import { SeenCalls, type Seen } from "./seen.ts";
import { Supervision } from "./supervision.ts";
import { CaReplicas } from "./ca-replicas.ts";
import {
  UNAUTHENTICATED,
  type CaReplicasView,
  type ComponentView,
  type EdgeView,
  type FeedItem,
  type ServiceView,
  type Severity,
  type TimelineView,
} from "./view.ts";

export const WINDOW_SECONDS = 60;
const TIMELINE_SECONDS = 300;
/** The chart's narrowest span, so a quiet page still shows a minute. */
const MIN_TIMELINE_SECONDS = 60;
const FEED_MAX = 100;
/** Hostile peers choose their certificate's subject: bound what is kept of any string. */
const TEXT_MAX = 600;

interface Counts {
  allowed: number;
  denied: number;
  keptOut: number;
  refused: number;
  failed: number;
}

const zero = (): Counts => ({ allowed: 0, denied: 0, keptOut: 0, refused: 0, failed: 0 });

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
  /** The teaching toggle it presents instead of its identity (docs/toggles.md), or null. */
  toggle: string | null;
  /** When it last started listening, and last put a new policy in force (ms): calls seen before are not judged by today's policy. */
  startedAt: number;
  policyAt: number;
}

/** Caller -> callee pairs kept: a peer could otherwise make the page grow without end. */
const PAIRS_MAX = 400;

export interface ModelOptions {
  /**
   * Whether a refused certificate's issuer (its subject text, e.g. "CN=Mesh Dev Issuing CA G2")
   * is one of this mesh's CAs: such a refusal is one of our own identities locked out (red); a
   * stranger's CA being refused is the mesh doing its job.
   */
  isOwnIssuer?: (issuer: string) => boolean;
}

const text = (v: unknown): string =>
  (typeof v === "string" ? v : v === undefined || v === null ? "" : String(v)).slice(0, TEXT_MAX);
const timeMs = (time: string | undefined): number => {
  const t = time ? Date.parse(time) : NaN;
  return Number.isNaN(t) ? Date.now() : t;
};

export class MeshModel {
  private edges = new Map<string, EdgeState>();
  private services = new Map<string, ServiceState>();
  private feed: FeedItem[] = [];
  private seen = new SeenCalls();
  private ok = new Map<number, number>();
  private held = new Map<number, number>();
  private failed = new Map<number, number>();
  private marks: Array<{ t: number; label: string }> = [];
  private supervision = new Supervision();
  private caReplicas = new CaReplicas();
  private nextId = 1;
  /** The current mesh:up run began here (ms); lines from before it are an earlier run's. */
  private runStart: number | null = null;
  /** Bumped on every change, so the server pushes only when there is something new. */
  version = 0;

  constructor(private readonly opts: ModelOptions = {}) {}

  ingest(l: MeshLine): void {
    if (!l.event || typeof l.event !== "string") return;
    const ms = timeMs(typeof l.time === "string" ? l.time : undefined);
    if (this.runStart !== null && ms < this.runStart) return; // an earlier run's line, read after this run began
    const s = Math.floor(ms / 1000);
    const time = text(l.time) || new Date(ms).toISOString();
    if (l.event === "mesh.started") {
      this.newRun(ms);
      return;
    }
    this.version++;
    if (this.supervision.ingest(l, time)) return;
    this.caReplicas.ingest(l, time); // and on: the CA's lines are the CA's card too
    const service = text(l.service);
    if (!service) {
      this.version--;
      return;
    }
    // A catalogued event with the fields the catalogue gives it (lib/events.ts); other lines go to default.
    const e = asEvent(l);
    switch (e?.event) {
      case "listening": {
        const svc = this.identity(service, e, false);
        svc.up = true;
        svc.port = typeof e.port === "number" ? e.port : null;
        svc.startedAt = ms;
        break;
      }
      case "policy.reloaded":
        this.service(service).policyAt = ms;
        break;
      case "tls.reloaded":
        if (e.certChanged) this.identity(service, e, true).lastRenewal = time;
        if (Array.isArray(e.trusts)) this.service(service).trusts = e.trusts.slice(0, 20).map(text);
        break;
      case "identity.enrolled":
      case "identity.renewed":
        // Under a toggle the agent renews the identity it holds, not the one presented.
        if (this.service(service).toggle !== null) this.service(service).lastRenewal = time;
        else this.identity(service, e, true).lastRenewal = time;
        break;
      case "toggle.on":
        this.identity(service, e, false).toggle = text(e.kind);
        break;
      case "toggle.off":
        // The tls.reloaded that follows names the identity presented again.
        this.service(service).toggle = null;
        break;
      case "shutdown":
        this.service(service).up = false;
        this.service(service).toggle = null;
        break;
      case "request": {
        const status = Number(e.status);
        if (status === 403) break; // authz.denied says it, with the rule
        const peer = text(e.peer);
        this.count(peer, service, s, status >= 500 ? "failed" : "allowed", true, null);
        this.observe(peer, service, text(e.method), text(e.path), status, ms, time);
        this.tick(s, status >= 500 ? this.failed : this.ok, 1);
        break;
      }
      case "request.summary": {
        const n = Math.max(0, Math.min(1e9, Number(e.count) || 0));
        const status = Number(e.status);
        if (status === 403) break;
        const peer = text(e.peer);
        this.count(peer, service, s, status >= 500 ? "failed" : "allowed", true, null, n);
        // The route pattern stands for the paths: the policy decides on patterns, so judging one is fair.
        this.observe(peer, service, text(e.method), text(e.route), status, ms, time, n);
        this.tick(s, status >= 500 ? this.failed : this.ok, n);
        break;
      }
      case "authz.denied": {
        const peer = text(e.peer);
        this.count(peer, service, s, "denied", true, text(e.rule));
        this.observe(peer, service, text(e.method), text(e.path), 403, ms, time);
        this.tick(s, this.held, 1);
        this.push({
          time,
          service,
          event: e.event,
          severity: "denied",
          reason: text(e.rule),
          peer,
          sentence: text(e.reason) || text(e.msg),
          fix: text(e.hint) || null,
        });
        break;
      }
      case "tls.handshake_failed": {
        const reason = text(e.reason);
        const claimed = peerText(e.peer);
        const kept = this.keptOut(reason, e.peer);
        this.count(UNAUTHENTICATED, service, s, kept ? "keptOut" : "refused", false, reason);
        this.tick(s, kept ? this.held : this.failed, 1);
        this.push({
          time,
          service,
          event: e.event,
          severity: kept ? "kept-out" : "refused",
          reason,
          peer: claimed,
          sentence: text(e.msg),
          fix: FIXES[reason] ?? null,
        });
        break;
      }
      case "upstream.failed": {
        const reason = text(e.reason);
        const callee = text(e.upstream);
        if (reason !== "forbidden") {
          this.count(service, callee, s, "failed", false, reason);
          this.observe(service, callee, "", `failed: ${reason}`, null, ms, time);
        }
        if (CALLER_ONLY.has(reason)) this.tick(s, this.failed, 1);
        // A 403 the callee gave (it logged authz.denied) is the policy at work, not a failure.
        this.push({
          time,
          service,
          event: e.event,
          severity: reason === "forbidden" ? "denied" : "failed",
          reason,
          peer: callee,
          sentence: text(e.msg),
          fix: FIXES[reason] ?? null,
        });
        break;
      }
      case "drill.phase":
        this.mark(s, text(e.phase));
        break;
      case "rotate.gate":
        this.mark(s, text(e.gate));
        break;
      default:
        if (/(_failed|\.lapsed|\.expiring|\.missing)$/.test(l.event) || l.level === 50 || l.level === 40) {
          this.push({
            time,
            service,
            event: text(l.event),
            severity: "warning",
            reason: text(l.reason ?? l.code ?? l.event),
            peer: null,
            sentence: text(l.msg),
            fix: text(l.hint) || null,
          });
        } else {
          this.version--; // nothing the page shows changed
        }
    }
  }

  /** A new mesh:up run: what the earlier one left (nodes, counts, calls seen, refusals) goes. */
  private newRun(ms: number): void {
    if (this.runStart !== null && ms <= this.runStart) return;
    this.runStart = ms;
    this.edges = new Map();
    this.services = new Map();
    this.feed = [];
    this.seen = new SeenCalls();
    this.ok = new Map();
    this.held = new Map();
    this.failed = new Map();
    this.marks = [];
    this.supervision = new Supervision();
    this.caReplicas = new CaReplicas();
    this.version++;
  }

  /** When the run shown began (its mesh.started line), or null. */
  runStartedAt(): string | null {
    return this.runStart === null ? null : new Date(this.runStart).toISOString();
  }

  private keptOut(reason: string, peer: unknown): boolean {
    if (KEPT_OUT.has(reason)) return true;
    if (reason !== "unknown_ca") return false;
    const issuer = peer && typeof peer === "object" ? text((peer as Record<string, unknown>).issuer) : "";
    return !(this.opts.isOwnIssuer?.(issuer) ?? false);
  }

  servicesView(): ServiceState[] {
    return [...this.services.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  componentsView(): ComponentView[] {
    return this.supervision.view();
  }

  caReplicasView(): CaReplicasView {
    return this.caReplicas.view();
  }

  edgesView(nowMs: number): EdgeView[] {
    const from = Math.floor(nowMs / 1000) - WINDOW_SECONDS;
    const out: EdgeView[] = [];
    for (const e of this.edges.values()) {
      const c = zero();
      for (const [sec, n] of e.seconds) {
        if (sec <= from) {
          e.seconds.delete(sec);
          continue;
        }
        for (const k of Object.keys(c) as Array<keyof Counts>) c[k] += n[k];
      }
      out.push({
        from: e.from,
        to: e.to,
        ...c,
        locked: e.locked,
        failing: c.refused + c.failed > 0,
        mismatch: false,
        lastReason: e.lastReason,
      });
    }
    return out.sort((a, b) => `${a.from}>${a.to}`.localeCompare(`${b.from}>${b.to}`));
  }

  feedView(): FeedItem[] {
    return [...this.feed].reverse();
  }

  /** The calls seen from caller to service, newest first, and since when the callee's policy is the one in force (ms). */
  seenFor(caller: string, service: string): { seen: Seen[]; judgedSince: number } {
    const svc = this.services.get(service);
    return { seen: this.seen.between(caller, service), judgedSince: Math.max(svc?.startedAt ?? 0, svc?.policyAt ?? 0) };
  }

  /** Every caller seen calling (authenticated), for the policy table's rows. */
  callersSeen(): string[] {
    return this.seen.callers();
  }

  timelineView(nowMs: number): TimelineView {
    const end = Math.floor(nowMs / 1000);
    let start = end - TIMELINE_SECONDS + 1;
    // A mesh that came up a minute ago (a drill) fills the chart instead of its last fifth.
    let first = end;
    for (const m of [this.ok, this.held, this.failed]) for (const t of m.keys()) if (t >= start && t < first) first = t;
    for (const mk of this.marks) if (mk.t >= start && mk.t < first) first = mk.t;
    start = Math.max(start, Math.min(end - MIN_TIMELINE_SECONDS + 1, first - 2));
    const ok: number[] = [];
    const held: number[] = [];
    const failed: number[] = [];
    for (let t = start; t <= end; t++) {
      ok.push(this.ok.get(t) ?? 0);
      held.push(this.held.get(t) ?? 0);
      failed.push(this.failed.get(t) ?? 0);
    }
    for (const m of [this.ok, this.held, this.failed]) for (const t of m.keys()) if (t < start) m.delete(t);
    return { start, ok, held, failed, marks: this.marks.filter((m) => m.t >= start) };
  }

  /**
   * A mark on the timeline (a drill phase, a rotation gate). A gate says "started" and "waiting"
   * several times, and the ledger tells of it too: the same label within 5 s is marked once.
   */
  mark(t: number, label: string): void {
    if (this.runStart !== null && t * 1000 < this.runStart - 999) return;
    if (this.marks.some((m) => Math.abs(m.t - t) <= 5 && m.label === label)) return;
    this.marks.push({ t, label: label.slice(0, 80) });
    this.marks.sort((a, b) => a.t - b.t);
    if (this.marks.length > 50) this.marks.shift();
    this.version++;
  }

  private service(name: string): ServiceState {
    let s = this.services.get(name);
    if (!s)
      this.services.set(
        name,
        (s = {
          name,
          port: null,
          up: false,
          dns: null,
          serial: null,
          notAfter: null,
          lastRenewal: null,
          trusts: [],
          toggle: null,
          startedAt: 0,
          policyAt: 0,
        }),
      );
    return s;
  }

  private identity(name: string, l: MeshLine, renewal: boolean): ServiceState {
    const s = this.service(name);
    if (typeof l.identity === "string") s.dns = text(l.identity);
    if (l.serial !== undefined) s.serial = text(l.serial).toLowerCase();
    if (l.notAfter !== undefined) s.notAfter = text(l.notAfter);
    if (Array.isArray(l.trusts)) s.trusts = l.trusts.slice(0, 20).map(text);
    if (renewal) s.up = true;
    return s;
  }

  private count(
    from: string,
    to: string,
    sec: number,
    kind: keyof Counts,
    authenticated: boolean,
    reason: string | null,
    n = 1,
  ): void {
    if (!from || !to) return;
    const key = `${from}>${to}`;
    let e = this.edges.get(key);
    if (!e) {
      if (this.edges.size >= PAIRS_MAX) return;
      this.edges.set(key, (e = { from, to, seconds: new Map(), locked: false, lastReason: null }));
    }
    let c = e.seconds.get(sec);
    if (!c) e.seconds.set(sec, (c = zero()));
    c[kind] += n;
    e.locked = authenticated;
    if (reason !== null || kind === "allowed") e.lastReason = kind === "allowed" ? null : reason;
  }

  private observe(
    caller: string,
    service: string,
    method: string,
    path: string,
    status: number | null,
    atMs: number,
    at: string,
    n = 1,
  ): void {
    if (caller === UNAUTHENTICATED) return;
    this.seen.add(caller, service, method, path, status, atMs, at, n);
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
function peerText(p: unknown): string | null {
  if (!p || typeof p !== "object") return null;
  const o = p as Record<string, unknown>;
  const subject = text(o.subject);
  const issuer = text(o.issuer);
  if (!subject && !issuer) return null;
  return `${subject || "(no subject)"}${issuer ? ` (issued by ${issuer})` : ""}`.slice(0, TEXT_MAX);
}

export type { ServiceState, ServiceView };
