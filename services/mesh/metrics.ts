// A service's Prometheus metrics, in a Registry of its own (docs/metrics.md lists them). The
// request path adds 1 to a number on an object its connection already holds; prom-client
// reads those numbers only when scraped.
import { X509Certificate, createHash } from "node:crypto";
import { Counter, Gauge, Histogram, Registry, type Metric } from "prom-client";
import { addProcessMetrics } from "../../lib/process-metrics.ts";
import { CALLERS, isIdentityName } from "./names.ts";
import { crlDates } from "../../lib/crl.ts";
import { pemBlocks, pemToDer } from "../../lib/pem.ts";
import { rootSha256 } from "../../lib/generations.ts";
import type { TlsMaterial } from "./material.ts";
import { UpstreamError, type Upstreams } from "./client.ts";
import type { HandshakeReason } from "./reasons.ts";

/** The route label of a request no route served: denied before routing, 404 or 405. */
export const UNMATCHED = "(unmatched)";
/** The label value past a label's allowlist or cap: label values stay bounded whatever peers send. */
export const OTHER = "other";
/** Distinct `rule` label values kept before the rest count as OTHER (a policy has a handful). */
export const MAX_RULES = 64;
/**
 * Distinct `caller`/`callee` names kept before the rest count as OTHER. A name enters the set
 * only from a certificate that chained to this service's trust (the CA issued it), or from the
 * service's own configuration (its upstreams): a peer cannot mint one. The cap bounds the
 * series even if the CA issues many names (docs/metrics.md).
 */
export const MAX_CALLERS = 64;
const METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
/** Created at start so that each shows as 0 before it first happens (rate() needs the zero). */
// A record, so that a reason added to reasons.ts without a series here fails to compile.
const HANDSHAKE_REASONS = Object.keys({
  no_client_cert: 1,
  unknown_ca: 1,
  expired: 1,
  not_yet_valid: 1,
  revoked: 1,
  crl_missing: 1,
  crl_expired: 1,
  crl_not_yet_valid: 1,
  bad_certificate: 1,
  ambiguous_identity: 1,
  spiffe_ambiguous: 1,
  spiffe_invalid: 1,
  spiffe_mismatch: 1,
  spiffe_foreign_domain: 1,
  issuer_not_ca: 1,
  issuer_cannot_sign: 1,
  path_length_exceeded: 1,
  protocol: 1,
  server_cert_rejected: 1,
  client_aborted: 1,
  handshake_timeout: 1,
  old_tls_version: 1,
  no_shared_cipher: 1,
  session_unverifiable: 1,
  tls_error: 1,
} satisfies Record<HandshakeReason, 1>) as HandshakeReason[];
/** Request durations: a keep-alive request here takes ~50 µs, an order with two upstream calls a few ms. */
const REQUEST_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** TLS handshakes on loopback take ~1-3 ms of CPU (ECDSA P-256); a loaded host or a slow peer, more. */
const HANDSHAKE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Calls to another service or to the CA: a few ms on loopback, up to the client's 10 s timeout. */
const CALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Operations of the EST client (services/mesh/identity-agent/est-client.ts). */
export type CaOperation = "enrol" | "renew" | "cacerts" | "crls";
/** How an EST call ended: answered, refused by the CA (4xx/5xx), not reached (or no answer in time), or an answer that did not parse. */
export type CaOutcome = "ok" | "refused" | "unreachable" | "invalid";
const CA_OPERATIONS: ReadonlySet<string> = new Set<CaOperation>(["enrol", "renew", "cacerts", "crls"]);
const CA_OUTCOMES: ReadonlySet<string> = new Set<CaOutcome>(["ok", "refused", "unreachable", "invalid"]);
/** Reload latency: the watcher's debounce is 150 ms, its stat poll 1 s. */
const RELOAD_BUCKETS = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1, 1.5, 2.5, 5];

interface Cell {
  readonly labels: Readonly<Record<string, string>>;
  n: number;
}

/**
 * A counter whose series are plain numbers. prom-client's labelled child (labels(...)) hashes
 * and validates its labels on every inc() (lib/counter.js binds inc to the label object), so
 * the hot path keeps a Cell instead and collect() copies the cells in at scrape time.
 */
class CellCounter {
  private readonly cells = new Map<string, Cell>();
  constructor(
    registry: Registry,
    name: string,
    help: string,
    private readonly labelNames: readonly string[],
  ) {
    const cells = this.cells;
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const c of cells.values()) this.inc(c.labels, c.n);
      },
    });
  }

  /** The cell of these label values (in labelNames order), made on first use. Not for the hot path. */
  cell(...values: string[]): Cell {
    const key = values.join("\0");
    let c = this.cells.get(key);
    if (!c) {
      const labels: Record<string, string> = {};
      for (const [i, l] of this.labelNames.entries()) labels[l] = values[i]!;
      this.cells.set(key, (c = { labels, n: 0 }));
    }
    return c;
  }
}

interface HistogramCell {
  readonly labels: Readonly<Record<string, string>>;
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * A histogram with the same idea as CellCounter. prom-client's Histogram has no way to load
 * counts from outside, so this is a metric of its own, handed to the registry with the shape
 * Registry#metrics() reads (name, help, type, get()).
 */
class CellHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly cells = new Map<string, HistogramCell>();
  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  cell(...values: string[]): HistogramCell {
    const key = values.join("\0");
    let c = this.cells.get(key);
    if (!c) {
      const labels: Record<string, string> = {};
      for (const [i, l] of this.labelNames.entries()) labels[l] = values[i]!;
      this.cells.set(key, (c = { labels, buckets: new Float64Array(this.bounds.length), sum: 0, count: 0 }));
    }
    return c;
  }

  observe(c: HistogramCell, seconds: number): void {
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (seconds <= b[i]!) {
        c.buckets[i]!++;
        break;
      }
    }
    c.sum += seconds;
    c.count++;
  }

  async get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const c of this.cells.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += c.buckets[i]!;
        values.push({ labels: { ...c.labels, le }, value: acc, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { ...c.labels, le: "+Inf" }, value: c.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...c.labels }, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...c.labels }, value: c.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    for (const c of this.cells.values()) {
      c.buckets.fill(0);
      c.sum = 0;
      c.count = 0;
    }
  }
}

/** What server.ts's per-connection memo of a request (its `Routed`) offers and keeps. */
export interface SeriesMemo {
  readonly method: string;
  readonly decision: { readonly rule: string };
  readonly route: { readonly path: string } | undefined;
  series?: RequestSeries;
}

/**
 * The series of one caller, route, method and rule: what a request adds to. Kept on the
 * connection's memo, so a request repeating the previous one finds it without a lookup.
 */
export class RequestSeries {
  private status = -1;
  private cell: Cell | undefined;
  // Made when first observed, so that a caller only ever denied exports no all-zero histogram
  // and one only ever allowed no zero denial counter.
  private duration: HistogramCell | undefined;
  private deny: Cell | undefined;
  private audit: Cell | undefined;
  constructor(
    private readonly requests: CellCounter,
    private readonly labels: readonly [caller: string, route: string, method: string, rule: string],
    private readonly durations: CellHistogram,
    private readonly denials: CellCounter,
    private readonly wouldDenials: CellCounter,
  ) {}

  /**
   * An answered (or abandoned) request and how long it took: the milliseconds the access log
   * measured already, since a second clock read would cost more than all the counting here.
   */
  answered(status: number, ms: number): void {
    this.count(status);
    this.durations.observe(
      (this.duration ??= this.durations.cell(this.labels[0], this.labels[1], this.labels[2])),
      ms / 1000,
    );
  }

  /** A request the policy denied (answered 403 before routing). */
  denied(): void {
    (this.deny ??= this.denials.cell(this.labels[0], this.labels[3])).n++;
    this.count(403);
  }

  /** A request a rule in audit mode let through that enforcing it would deny (then answered as usual). */
  wouldDeny(): void {
    (this.audit ??= this.wouldDenials.cell(this.labels[0], this.labels[3])).n++;
  }

  private count(status: number): void {
    if (status !== this.status) {
      const [caller, route, method, rule] = this.labels;
      this.cell = this.requests.cell(caller, route, method, String(status), rule);
      this.status = status;
    }
    this.cell!.n++;
  }
}

export class MeshMetrics {
  readonly registry = new Registry();
  private readonly handshakes: CellCounter;
  private readonly accepted: Cell;
  /** Accepted handshakes that resumed a TLS session (a part of `accepted`). */
  private readonly resumed: Cell;
  private readonly requests: CellCounter;
  private readonly denials: CellCounter;
  private readonly wouldDenials: CellCounter;
  private readonly durations: CellHistogram;
  private readonly upstream: CellCounter;
  private readonly upstreamSeconds: Histogram<"callee" | "outcome">;
  private readonly handshakeSeconds: Histogram<"outcome">;
  /**
   * When each connection in its handshake arrived (performance.now()), by its TCP socket: the
   * TLS socket Node wraps around it keeps it as `_parent`. Keyed by address and port, this was
   * two getpeername() calls, a string and a close listener per connection (~3% of a handshake).
   */
  private readonly handshakeStarts = new WeakMap<object, number>();
  private readonly caSeconds: Histogram<"operation" | "outcome">;
  private readonly lastRenewal: Gauge;
  /** The leaf in force (its fingerprint) and when this service put it in force (ms since the epoch). */
  private leafFingerprint: string | undefined;
  private obtainedAt = 0;
  private leafNotAfter = 0;
  private readonly groups = new Map<string, RequestSeries>();
  private readonly rules = new Set<string>();
  private readonly names = new Set<string>(CALLERS);
  private readonly reloads: Counter<"kind" | "result">;
  private readonly reloadSeconds: Histogram<"kind">;
  private readonly renewals: Counter;
  private readonly renewalFailures: Counter;
  private readonly certExpiry: Gauge;
  private readonly certInfo: Gauge<"issuer" | "root" | "generation">;
  private readonly roots: Gauge;
  private readonly rootExpiry: Gauge<"subject">;
  private readonly crlNextUpdate: Gauge<"issuer">;
  private readonly bundleInfo: Gauge<"sha256">;
  private readonly crlsInfo: Gauge<"sha256">;
  private readonly policyInfo: Gauge<"sha256">;

  constructor(
    readonly service: string,
    material?: TlsMaterial,
  ) {
    const r = this.registry;
    addProcessMetrics(r);
    this.handshakes = new CellCounter(
      r,
      "mesh_tls_handshakes_total",
      "Inbound TLS handshakes by outcome (accepted, refused) and the reason a refused one was refused.",
      ["outcome", "reason"],
    );
    this.accepted = this.handshakes.cell("accepted", "none");
    this.resumed = new CellCounter(
      r,
      "mesh_tls_handshakes_resumed_total",
      "Inbound TLS handshakes accepted on a resumed session (counted in mesh_tls_handshakes_total's accepted too); each was re-checked against the trust in force.",
      [],
    ).cell();
    for (const reason of HANDSHAKE_REASONS) this.handshakes.cell("refused", reason);
    this.requests = new CellCounter(
      r,
      "mesh_inbound_http_requests_total",
      "Requests answered, by caller (mesh name), route pattern, method, status and the policy rule that decided.",
      ["caller", "route", "method", "status", "rule"],
    );
    this.denials = new CellCounter(
      r,
      "mesh_inbound_http_authz_deny_total",
      "Requests the policy denied (403), by caller and rule.",
      ["caller", "rule"],
    );
    this.wouldDenials = new CellCounter(
      r,
      "mesh_inbound_http_authz_would_deny_total",
      "Requests a policy rule in audit mode let through that it would deny if enforced, by caller and rule.",
      ["caller", "rule"],
    );
    this.durations = new CellHistogram(
      r,
      "mesh_inbound_http_request_duration_seconds",
      "Time from a request's arrival to its answer, for requests the policy allowed.",
      ["caller", "route", "method"],
      REQUEST_BUCKETS,
    );
    this.upstream = new CellCounter(
      r,
      "mesh_outbound_http_requests_total",
      "Calls to other services, by callee, outcome (ok, failed) and the caller-side reason of a failure.",
      ["callee", "outcome", "reason"],
    );
    this.upstreamSeconds = new Histogram({
      name: "mesh_outbound_http_request_duration_seconds",
      help: "Time from a call to another service to its answer or failure, by callee and outcome (ok, failed).",
      labelNames: ["callee", "outcome"],
      buckets: CALL_BUCKETS,
      registers: [r],
    });
    this.handshakeSeconds = new Histogram({
      name: "mesh_tls_handshake_duration_seconds",
      help: "Inbound TLS handshakes, from the TCP connection's arrival to the verdict, by outcome (accepted, refused).",
      labelNames: ["outcome"],
      buckets: HANDSHAKE_BUCKETS,
      registers: [r],
    });
    this.caSeconds = new Histogram({
      name: "mesh_identity_ca_request_duration_seconds",
      help: "Calls of this service's identity agent to the CA (EST), by operation (enrol, renew, cacerts, crls) and outcome (ok, refused, unreachable, invalid).",
      labelNames: ["operation", "outcome"],
      buckets: CALL_BUCKETS,
      registers: [r],
    });
    this.reloads = new Counter({
      name: "mesh_reloads_total",
      help: "Reloads of changed files by kind (tls, policy) and result (ok, failed); a failed one keeps the previous state.",
      labelNames: ["kind", "result"],
      registers: [r],
    });
    this.reloadSeconds = new Histogram({
      name: "mesh_reload_duration_seconds",
      help: "Seconds from a file change being noticed to the new state being in force, for reloads that succeeded.",
      labelNames: ["kind"],
      buckets: RELOAD_BUCKETS,
      registers: [r],
    });
    for (const kind of ["tls", "policy"]) {
      for (const result of ["ok", "failed"]) this.reloads.inc({ kind, result }, 0);
      this.reloadSeconds.zero({ kind });
    }
    this.renewals = new Counter({
      name: "mesh_identity_cert_renewals_total",
      help: "Renewals of this service's own certificate that succeeded.",
      registers: [r],
    });
    this.renewalFailures = new Counter({
      name: "mesh_identity_cert_renewal_failures_total",
      help: "Renewals of this service's own certificate that failed (the old one stays in use).",
      registers: [r],
    });
    this.lastRenewal = new Gauge({
      name: "mesh_identity_cert_last_renewal_timestamp_seconds",
      help: "When this service put its certificate in force (a renewal, a reload with a new certificate, or, at start, when the certificate was obtained), in seconds since the Unix epoch.",
      registers: [r],
    });
    const metrics = this;
    // Read only at scrape time, from the leaf's notAfter: nothing to keep a handle on.
    new Gauge({
      name: "mesh_identity_cert_validity_remaining_seconds",
      help: "Seconds until this service's own certificate expires, as of the scrape (negative once expired).",
      registers: [r],
      collect() {
        if (metrics.leafNotAfter > 0) this.set((metrics.leafNotAfter - Date.now()) / 1000);
      },
    });
    this.certExpiry = new Gauge({
      name: "mesh_identity_cert_expiration_timestamp_seconds",
      help: "When this service's own certificate expires, in seconds since the Unix epoch.",
      registers: [r],
    });
    this.certInfo = new Gauge({
      name: "mesh_identity_cert_info",
      help: "Always 1: this service's certificate's issuer, the trust root it chains to and that root's generation.",
      labelNames: ["issuer", "root", "generation"],
      registers: [r],
    });
    this.roots = new Gauge({
      name: "mesh_trust_bundle_roots",
      help: "Root certificates in the trust bundle this service uses.",
      registers: [r],
    });
    this.rootExpiry = new Gauge({
      name: "mesh_trust_root_expiration_timestamp_seconds",
      help: "When each root in the trust bundle expires, in seconds since the Unix epoch.",
      labelNames: ["subject"],
      registers: [r],
    });
    this.crlNextUpdate = new Gauge({
      name: "mesh_crl_next_update_timestamp_seconds",
      help: "Each CRL's nextUpdate, in seconds since the Unix epoch: past it, OpenSSL refuses every peer that CA issued.",
      labelNames: ["issuer"],
      registers: [r],
    });
    // Digests of what is in force, so mesh:check can tell whether the service holds what the CA publishes.
    this.bundleInfo = new Gauge({
      name: "mesh_trust_bundle_info",
      help: "Always 1: the SHA-256 of the trust bundle file (bundle.pem) in force.",
      labelNames: ["sha256"],
      registers: [r],
    });
    this.crlsInfo = new Gauge({
      name: "mesh_crls_info",
      help: "Always 1: the SHA-256 of the DER of the CRLs in force, in file order.",
      labelNames: ["sha256"],
      registers: [r],
    });
    this.policyInfo = new Gauge({
      name: "mesh_policy_info",
      help: "Always 1: the SHA-256 of the policy file's content in force.",
      labelNames: ["sha256"],
      registers: [r],
    });
    if (material) this.setMaterial(material);
  }

  /** The policy now in force, by the SHA-256 of its file's bytes (set at start and on each reload). */
  setPolicy(sha256: string): void {
    this.policyInfo.reset();
    this.policyInfo.set({ sha256 }, 1);
  }

  // --- handshakes (server.ts) ---------------------------------------------------------

  /** A TCP connection arrived at the TLS port (the server's `connection` event): its handshake starts. */
  handshakeStarted(raw: object): void {
    // A WeakMap: a connection that closes before any verdict (a port scan) leaves nothing behind.
    this.handshakeStarts.set(raw, performance.now());
  }

  handshakeAccepted(sock?: object, resumed = false): void {
    this.accepted.n++;
    if (resumed) this.resumed.n++;
    this.handshakeTimed("accepted", sock);
  }

  handshakeRefused(reason: string, sock?: object): void {
    this.handshakes.cell("refused", (HANDSHAKE_REASONS as readonly string[]).includes(reason) ? reason : OTHER).n++;
    this.handshakeTimed("refused", sock);
  }

  private handshakeTimed(outcome: "accepted" | "refused", sock: object | undefined): void {
    const raw = (sock as { _parent?: unknown } | undefined)?._parent;
    if (typeof raw !== "object" || raw === null) return;
    const t0 = this.handshakeStarts.get(raw);
    if (t0 === undefined) return;
    this.handshakeStarts.delete(raw);
    this.handshakeSeconds.observe({ outcome }, (performance.now() - t0) / 1000);
  }

  /**
   * The label of a mesh name: itself while the set of names seen has room, else OTHER. Called
   * with names from verified certificates and from configuration only, never per request.
   */
  private label(name: string): string {
    if (this.names.has(name)) return name;
    if (this.names.size >= MAX_CALLERS || !isIdentityName(name)) return OTHER;
    this.names.add(name);
    return name;
  }

  // --- requests (server.ts) -----------------------------------------------------------

  /** The series of a request, kept on its connection's memo: found there from the second request on. */
  series(memo: SeriesMemo, caller: string): RequestSeries {
    return (memo.series ??= this.group(caller, memo.route?.path ?? UNMATCHED, memo.method, memo.decision.rule));
  }

  private group(peer: string, route: string, verb: string, decidedBy: string): RequestSeries {
    const caller = this.label(peer);
    const method = METHODS.has(verb) ? verb : OTHER;
    let rule = decidedBy;
    if (!this.rules.has(rule)) {
      if (this.rules.size < MAX_RULES) this.rules.add(rule);
      else rule = OTHER;
    }
    const key = `${caller}\0${route}\0${method}\0${rule}`;
    let g = this.groups.get(key);
    if (!g) {
      g = new RequestSeries(
        this.requests,
        [caller, route, method, rule],
        this.durations,
        this.denials,
        this.wouldDenials,
      );
      this.groups.set(key, g);
    }
    return g;
  }

  // --- upstream calls (client.ts) -----------------------------------------------------

  /**
   * Counts every call of `up` by outcome, watching Upstreams#call's contract from outside
   * (it resolves with the callee's answer or rejects with an UpstreamError and its reason), so
   * that client.ts needs no hook at each of its exits.
   */
  watchUpstreams(up: Upstreams, callees: readonly string[]): void {
    const ok = new Map<string, Cell>();
    const callee = (name: string) => this.label(name);
    for (const name of callees) ok.set(name, this.upstream.cell(callee(name), "ok", "none"));
    const call = up.call.bind(up);
    // Every argument passed on as it came, whatever call() comes to take.
    up.call = async (...args: Parameters<Upstreams["call"]>) => {
      const name = args[0];
      const t0 = performance.now();
      try {
        const reply = await call(...args);
        (ok.get(name) ?? this.upstream.cell(callee(name), "ok", "none")).n++;
        this.upstreamSeconds.observe({ callee: callee(name), outcome: "ok" }, (performance.now() - t0) / 1000);
        return reply;
      } catch (e) {
        this.upstream.cell(callee(name), "failed", e instanceof UpstreamError ? e.reason : OTHER).n++;
        this.upstreamSeconds.observe({ callee: callee(name), outcome: "failed" }, (performance.now() - t0) / 1000);
        throw e;
      }
    };
  }

  /** One call made for an app by the sidecar's outbound side: failed when `reason` is given. */
  outboundCall(callee: string, reason: string | undefined): void {
    this.upstream.cell(this.label(callee), reason === undefined ? "ok" : "failed", reason ?? "none").n++;
  }

  // --- own certificate, trust bundle, CRLs (runtime.ts) -------------------------------

  /** The material now in force. Never throws: a metric must not fail a reload that worked. */
  setMaterial(m: TlsMaterial): void {
    try {
      this.readMaterial(m);
    } catch {
      // loadMaterial parsed all of it already; nothing is expected to land here.
    }
  }

  private readMaterial(m: TlsMaterial): void {
    this.bundleInfo.reset();
    this.bundleInfo.set({ sha256: createHash("sha256").update(m.ca).digest("hex") }, 1);
    this.crlsInfo.reset();
    this.crlsInfo.set({ sha256: crlsDigest(m.crl) }, 1);
    const chain = pemBlocks(m.cert.toString("utf8"), "CERTIFICATE").map((p) => new X509Certificate(p));
    const roots = pemBlocks(m.ca.toString("utf8"), "CERTIFICATE").map((p) => new X509Certificate(p));
    const leaf = chain[0];
    if (!leaf) return;
    const nb = Date.parse(leaf.validFrom);
    this.leafNotAfter = Date.parse(leaf.validTo);
    // A new certificate in force is a renewal, whoever renewed it (the agent, or `ca renew` and a
    // reload); the first one counts from when it was obtained, no earlier than its notBefore.
    if (this.leafFingerprint === undefined) this.obtainedAt = Math.max(nb, this.obtainedAt);
    else if (this.leafFingerprint !== leaf.fingerprint256) this.obtainedAt = Date.now();
    this.leafFingerprint = leaf.fingerprint256;
    if (this.obtainedAt > 0) this.lastRenewal.set(this.obtainedAt / 1000);
    const top = chain[chain.length - 1]!;
    const anchor =
      roots.find((r) => r.fingerprint256 === top.fingerprint256) ??
      roots.find((r) => top.checkIssued(r) && top.verify(r.publicKey));
    this.certExpiry.set(Math.floor(Date.parse(leaf.validTo) / 1000));
    this.certInfo.reset();
    this.certInfo.set(
      {
        issuer: oneLine(leaf.issuer),
        root: anchor ? oneLine(anchor.subject) : "(none)",
        generation: anchor ? String(m.trust.generations.get(rootSha256(anchor.raw)) ?? "unknown") : "(none)",
      },
      1,
    );
    this.roots.set(roots.length);
    this.rootExpiry.reset();
    for (const r of roots)
      this.rootExpiry.set({ subject: oneLine(r.subject) }, Math.floor(Date.parse(r.validTo) / 1000));
    this.crlNextUpdate.reset();
    for (const pem of m.crl) {
      try {
        const info = crlDates(pemToDer(pem));
        if (info.nextUpdate)
          this.crlNextUpdate.set({ issuer: info.issuer }, Math.floor(info.nextUpdate.getTime() / 1000));
      } catch {
        // OpenSSL accepted the CRL (loadMaterial checked): a shape this reader does not know is only a missing series.
      }
    }
  }

  // --- reloads (runtime.ts) and renewals (the renewal loop, to come) ------------------

  /**
   * A reload that changed something or failed; `noticedAt` is performance.now() when the
   * change was noticed, `material` what a TLS reload put in force.
   */
  reloaded(kind: "tls" | "policy", ok: boolean, noticedAt: number, material?: TlsMaterial): void {
    this.reloads.inc({ kind, result: ok ? "ok" : "failed" });
    if (ok) this.reloadSeconds.observe({ kind }, (performance.now() - noticedAt) / 1000);
    if (ok && material) this.setMaterial(material);
  }

  renewed(): void {
    this.renewals.inc();
    this.obtainedAt = Date.now();
    this.lastRenewal.set(this.obtainedAt / 1000);
  }

  /**
   * When the certificate in force at start was obtained (ms since the epoch): the identity
   * agent knows when it enrolled or last renewed, which a restart must not reset.
   */
  certificateObtained(at: number): void {
    if (!(at > 0)) return;
    this.obtainedAt = at;
    this.lastRenewal.set(this.obtainedAt / 1000);
  }

  /** One call of the EST client to the CA (services/mesh/identity-agent/est-client.ts). */
  caRequest(operation: string, outcome: string, seconds: number): void {
    if (!CA_OPERATIONS.has(operation) || !CA_OUTCOMES.has(outcome)) return;
    this.caSeconds.observe({ operation, outcome }, seconds);
  }

  renewalFailed(): void {
    this.renewalFailures.inc();
  }
}

/**
 * The SHA-256 of CRLs' DER, concatenated in order: the same CRLs give the same digest whatever
 * the PEM's line breaks (a service keeps crls.pem split into one PEM per CRL).
 */
export function crlsDigest(pems: readonly string[]): string {
  const h = createHash("sha256");
  for (const pem of pems) h.update(pemToDer(pem));
  return h.digest("hex");
}

function oneLine(dn: string): string {
  return dn.split("\n").join(", ");
}
