// The CA server's Prometheus metrics (docs/metrics.md, "The CA"): counters the EST routes bump
// with one call each, and gauges read from the ledger and the published state only when scraped.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { addProcessMetrics } from "../../lib/process-metrics.ts";
import type { CertificateAuthority } from "../authority.ts";
import type { Published } from "./published.ts";

/** How a certificate came to be: EST enrolment, EST renewal, the CLI (issue, sign, renew), the server's own TLS certificate. */
export type IssuedKind = "enrol" | "renew" | "cli" | "server";
const KINDS: readonly IssuedKind[] = ["enrol", "renew", "cli", "server"];

/** Route patterns: a refused path is one of these, never the raw path (label values stay bounded). */
export const UNMATCHED = "(unmatched)";
const ENROL = "/.well-known/est/simpleenroll";
const REENROL = "/.well-known/est/simplereenroll";
const EXACT_ROUTES: ReadonlySet<string> = new Set([
  "/.well-known/est/cacerts",
  ENROL,
  REENROL,
  "/crls.pem",
  "/.well-known/spiffe/bundle",
]);
/** The CRL route as server.ts matches it. */
const CRL_PATH = /^\/crl\/(?:root|int)-\d{1,6}\.crl$/;

const TOKEN_REFUSALS = [
  "token_missing",
  "token_malformed",
  "token_unknown",
  "token_used",
  "token_expired",
  "token_wrong_name",
] as const;
/** Every code an est.refused line can carry (docs/est.md, "Refusals"); anything else counts as OTHER. */
const ENROL_REASONS: readonly string[] = [
  ...TOKEN_REFUSALS,
  "malformed_csr",
  "wrong_name",
  "bad_lifetime",
  "clock_skew",
  "rate_limited",
  "body_too_large",
  "wrong_media_type",
  "refused",
];
const REENROL_REASONS: readonly string[] = [
  "no_client_cert",
  "cert_untrusted",
  "cert_unknown",
  "cert_revoked",
  "cert_superseded",
  "cert_expired",
  "generation_untrusted",
  "same_key",
  "malformed_csr",
  "wrong_name",
  "bad_lifetime",
  "clock_skew",
  "rate_limited",
  "body_too_large",
  "wrong_media_type",
  "refused",
];
const REASONS: ReadonlySet<string> = new Set([
  ...ENROL_REASONS,
  ...REENROL_REASONS,
  "not_found",
  "method_not_allowed",
  "bad_request",
]);
export const OTHER = "other";
/**
 * Failed TLS handshakes by a short stable reason: OpenSSL's codes are many and a peer picks them,
 * so they are folded into a few (label values stay bounded).
 */
const HANDSHAKE_REASONS: ReadonlyArray<[string, RegExp]> = [
  ["not_tls", /WRONG_VERSION_NUMBER|HTTP_REQUEST|UNKNOWN_PROTOCOL|PACKET_LENGTH_TOO_LONG|RECORD_LAYER/],
  ["protocol_version", /UNSUPPORTED_PROTOCOL|PROTOCOL_VERSION|NO_PROTOCOLS/],
  ["no_shared_cipher", /NO_SHARED_CIPHER|HANDSHAKE_FAILURE/],
  ["certificate_dates", /CERTIFICATE_EXPIRED|CERTIFICATE_NOT_YET_VALID|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/],
  ["certificate_refused", /ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|DECRYPT_ERROR)/],
  ["timeout", /TIMEOUT|ETIMEDOUT/],
  ["reset", /ECONNRESET|EPIPE/],
];
const HANDSHAKE_LABELS = [...HANDSHAKE_REASONS.map(([r]) => r), OTHER];

/** What the server has in force, read at scrape time. */
export interface CaServerState {
  published: Published;
  /** The server's own certificate's notAfter; undefined before it has one. */
  tlsNotAfter: Date | undefined;
}

export class CaMetrics {
  readonly registry = new Registry();
  private readonly issuedCounts = new Map<IssuedKind, number>(KINDS.map((k) => [k, 0]));
  private readonly refusals: Counter<"route" | "reason">;
  private readonly errors: Counter<"route">;
  private readonly durations: Histogram<"route" | "outcome">;
  private readonly tokens: Counter<"result" | "reason">;
  private readonly handshakes: Counter<"reason">;
  private readonly batches: Histogram;
  /** The CLI's issuance is counted from the ledger: rows it made since this server started. */
  private readonly cliSince: string;

  constructor(
    private readonly ca: CertificateAuthority,
    state: () => CaServerState,
  ) {
    const r = this.registry;
    addProcessMetrics(r);
    this.cliSince = ca.now().toISOString();
    const counts = this.issuedCounts;
    const cliIssued = () => this.cliIssued();
    new Counter({
      name: "mesh_ca_certificates_issued_total",
      help: "Certificates this CA issued since the server started, by kind: enrol (EST, with a token), renew (EST, over mTLS), cli (issue, sign, renew by the CLI, read from the ledger), server (the CA server's own TLS certificate).",
      labelNames: ["kind"],
      registers: [r],
      collect() {
        this.reset();
        counts.set("cli", cliIssued());
        for (const [kind, n] of counts) this.inc({ kind }, n);
      },
    });
    this.refusals = new Counter({
      name: "mesh_ca_requests_refused_total",
      help: "Requests the CA server refused, by route pattern and the reason of their est.refused log line.",
      labelNames: ["route", "reason"],
      registers: [r],
    });
    for (const reason of ENROL_REASONS) this.refusals.inc({ route: ENROL, reason }, 0);
    for (const reason of REENROL_REASONS) this.refusals.inc({ route: REENROL, reason }, 0);
    this.errors = new Counter({
      name: "mesh_ca_request_errors_total",
      help: "Requests the CA server could not complete (500, an est.error log line), by route pattern.",
      labelNames: ["route"],
      registers: [r],
    });
    for (const route of [ENROL, REENROL]) this.errors.inc({ route }, 0);
    // A signature and a ledger transaction: a few ms; the write gate can queue a request behind a rotation.
    this.durations = new Histogram({
      name: "mesh_ca_request_duration_seconds",
      help: "Time from a request's arrival at the CA server to its answer, by route pattern and outcome (ok, refused, error).",
      labelNames: ["route", "outcome"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [r],
    });
    this.tokens = new Counter({
      name: "mesh_ca_tokens_total",
      help: "One-time enrolment tokens presented: used (spent on a certificate, reason none) or refused (and why).",
      labelNames: ["result", "reason"],
      registers: [r],
    });
    this.tokens.inc({ result: "used", reason: "none" }, 0);
    this.handshakes = new Counter({
      name: "mesh_ca_tls_handshake_failures_total",
      help: "TLS handshakes with the CA server that failed (each a tls.handshake_failed line or counted in est.refused_summary), by reason: not_tls, protocol_version, no_shared_cipher, certificate_dates (a peer found a certificate expired or not yet valid: a clock may be off), certificate_refused, timeout, reset, other.",
      labelNames: ["reason"],
      registers: [r],
    });
    for (const reason of HANDSHAKE_LABELS) this.handshakes.inc({ reason }, 0);
    this.batches = new Histogram({
      name: "mesh_ca_commit_batch_certificates",
      help: "Certificates committed together in one ledger transaction (group commit: one commit and one fsync for each batch).",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers: [r],
    });
    for (const reason of TOKEN_REFUSALS) this.tokens.inc({ result: "refused", reason }, 0);

    new Gauge({
      name: "mesh_ca_certificates",
      help: "Leaf certificates in the ledger by status: valid, expired (valid but past notAfter), revoked, superseded.",
      labelNames: ["status"],
      registers: [r],
      collect() {
        const c = ca.ledger.counts(ca.now().toISOString());
        this.set({ status: "valid" }, c.VALID);
        this.set({ status: "expired" }, c.EXPIRED);
        this.set({ status: "revoked" }, c.REVOKED);
        this.set({ status: "superseded" }, c.SUPERSEDED);
      },
    });
    new Gauge({
      name: "mesh_ca_tls_cert_expiration_timestamp_seconds",
      help: "When the CA server's own TLS certificate (ca.internal) expires, in seconds since the Unix epoch.",
      registers: [r],
      collect() {
        const at = state().tlsNotAfter;
        if (at) this.set(seconds(at.getTime()));
      },
    });
    new Gauge({
      name: "mesh_ca_signer_generation",
      help: "The root generation whose CA signs what this server issues.",
      registers: [r],
      collect() {
        this.set(state().published.signerGeneration);
      },
    });
    new Gauge({
      name: "mesh_ca_root_expiration_timestamp_seconds",
      help: "When each published root (each root in the trust bundle) expires, in seconds since the Unix epoch.",
      labelNames: ["issuer"],
      registers: [r],
      collect() {
        this.reset();
        const published = new Set(state().published.generations.map((g) => `root-${g}`));
        for (const row of ca.ledger.issuers())
          if (published.has(row.id)) this.set({ issuer: row.id }, seconds(Date.parse(row.notAfter)));
      },
    });
    new Gauge({
      name: "mesh_ca_crl_next_update_timestamp_seconds",
      help: "Each served CRL's nextUpdate, in seconds since the Unix epoch: past it, OpenSSL refuses every certificate that CA issued.",
      labelNames: ["issuer"],
      registers: [r],
      collect() {
        this.reset();
        const served = state().published.crls;
        for (const row of ca.ledger.issuers())
          if (served.has(row.id) && row.crlNextUpdate)
            this.set({ issuer: row.id }, seconds(Date.parse(row.crlNextUpdate)));
      },
    });
  }

  /** A certificate issued by this server. An enrolment also spent its token. */
  issued(kind: Exclude<IssuedKind, "cli">): void {
    this.issuedCounts.set(kind, this.issuedCounts.get(kind)! + 1);
    if (kind === "enrol") this.tokens.inc({ result: "used", reason: "none" });
  }

  /** A group commit of `n` issuances (ca/store/group-commit.ts). */
  commitBatch(n: number): void {
    this.batches.observe(n);
  }

  /** A refusal with its est.refused reason; a token_* one is also a refused token. */
  refused(path: string, reason: string): void {
    const r = REASONS.has(reason) ? reason : OTHER;
    this.refusals.inc({ route: routeOf(path), reason: r });
    if ((TOKEN_REFUSALS as readonly string[]).includes(r)) this.tokens.inc({ result: "refused", reason: r });
  }

  /** A failed handshake, with OpenSSL's (or Node's) error code. */
  handshakeFailed(code: string): void {
    this.handshakes.inc({ reason: HANDSHAKE_REASONS.find(([, re]) => re.test(code))?.[0] ?? OTHER });
  }

  /** Any request, once answered: how long it took, by route pattern and outcome (ok, refused, error). */
  answered(path: string, outcome: "ok" | "refused" | "error", seconds: number): void {
    this.durations.observe({ route: routeOf(path), outcome }, seconds);
  }

  /** A request that ended in a 500. */
  failed(path: string): void {
    this.errors.inc({ route: routeOf(path) });
  }

  private cliIssued(): number {
    // Indexed by nothing useful, but a scrape every few seconds over a demo's ledger costs well under a millisecond.
    return this.ca.ledger.cliIssuedSince(this.cliSince);
  }
}

/** The route pattern of a request path, or UNMATCHED. */
export function routeOf(path: string): string {
  if (EXACT_ROUTES.has(path)) return path;
  if (CRL_PATH.test(path)) return "/crl/:issuer";
  return UNMATCHED;
}

/** X.509 and CRL times have whole seconds; a Date made before encoding may carry milliseconds the certificate does not. */
function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}
