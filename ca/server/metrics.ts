// The CA server's Prometheus metrics (docs/metrics.md, "The CA"): counters the EST routes bump
// with one call each, and gauges read from the ledger and the published state only when scraped.
import type { Exposition } from "../../lib/admin-http.ts";
import { CounterFamily, HistogramFamily, PROM_CONTENT_TYPE, counterText, gaugeText } from "../../lib/prom-text.ts";
import { ProcessMetrics } from "../../lib/process-metrics-text.ts";
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

/**
 * The CA server's metrics, kept by hand (lib/prom-text.ts) rather than in prom-client, which a
 * `ca serve` without an admin listener loaded for nothing (1.5–2 MB of its memory at rest, 4.8 MB
 * with one: docs/bench.md). The process metrics are prom-client's defaults written by hand too
 * (lib/process-metrics-text.ts), so `ca serve` never loads prom-client: their monitors start
 * with the first exposition, or by processMetrics() when the admin listener starts.
 */
export class CaMetrics {
  /** Its exposition for /metrics: the CA's metrics, then the process's. */
  readonly registry: Exposition = {
    contentType: PROM_CONTENT_TYPE,
    metrics: async () => `${this.text()}\n${this.processMetrics().text()}`,
  };
  private readonly issuedCounts = new Map<IssuedKind, number>(KINDS.map((k) => [k, 0]));
  private readonly refusals = new CounterFamily(
    "mesh_ca_requests_refused_total",
    "Requests the CA server refused, by route pattern and the reason of their est.refused log line.",
  );
  private readonly errors = new CounterFamily(
    "mesh_ca_request_errors_total",
    "Requests the CA server could not complete (500, an est.error log line), by route pattern.",
  );
  // A signature and a ledger transaction: a few ms; the write gate can queue a request behind a rotation.
  private readonly durations = new HistogramFamily(
    "mesh_ca_request_duration_seconds",
    "Time from a request's arrival at the CA server to its answer, by route pattern and outcome (ok, refused, error).",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );
  private readonly tokens = new CounterFamily(
    "mesh_ca_tokens_total",
    "One-time enrolment tokens presented: used (spent on a certificate, reason none) or refused (and why).",
  );
  private readonly handshakes = new CounterFamily(
    "mesh_ca_tls_handshake_failures_total",
    "TLS handshakes with the CA server that failed (each a tls.handshake_failed line or counted in est.refused_summary), by reason: not_tls, protocol_version, no_shared_cipher, certificate_dates (a peer found a certificate expired or not yet valid: a clock may be off), certificate_refused, timeout, reset, other.",
  );
  private readonly batches = new HistogramFamily(
    "mesh_ca_commit_batch_certificates",
    "Certificates committed together in one ledger transaction (group commit: one commit and one fsync for each batch).",
    [1, 2, 4, 8, 16, 32, 64, 128],
  );
  /** The CLI's issuance is counted from the ledger: rows it made since this server started. */
  private readonly cliSince: string;

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly state: () => CaServerState,
  ) {
    this.cliSince = ca.now().toISOString();
    for (const reason of ENROL_REASONS) this.refusals.inc({ route: ENROL, reason }, 0);
    for (const reason of REENROL_REASONS) this.refusals.inc({ route: REENROL, reason }, 0);
    for (const route of [ENROL, REENROL]) this.errors.inc({ route }, 0);
    this.tokens.inc({ result: "used", reason: "none" }, 0);
    for (const reason of HANDSHAKE_LABELS) this.handshakes.inc({ reason }, 0);
    for (const reason of TOKEN_REFUSALS) this.tokens.inc({ result: "refused", reason }, 0);
  }

  /**
   * The process metrics (prom-client's defaults, by hand), started on first call: the admin
   * listener calls it as it starts, so that the event-loop and GC figures cover the server's
   * life from then.
   */
  processMetrics(): ProcessMetrics {
    return ProcessMetrics.get();
  }

  /** A certificate issued by this server. An enrolment also spent its token. */
  issued(kind: Exclude<IssuedKind, "cli">): void {
    this.issuedCounts.set(kind, this.issuedCounts.get(kind)! + 1);
    if (kind === "enrol") this.tokens.inc({ result: "used", reason: "none" });
  }

  /** A group commit of `n` issuances (ca/store/group-commit.ts). */
  commitBatch(n: number): void {
    this.batches.observe({}, n);
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

  /** The CA's own families, as text; the gauges and the CLI's count read now. */
  private text(): string {
    const { ca } = this;
    const state = this.state();
    this.issuedCounts.set("cli", this.cliIssued());
    const counts = ca.ledger.counts(ca.now().toISOString());
    const published = new Set(state.published.generations.map((g) => `root-${g}`));
    const issuers = ca.ledger.issuers();
    const families = [
      counterText(
        "mesh_ca_certificates_issued_total",
        "Certificates this CA issued since the server started, by kind: enrol (EST, with a token), renew (EST, over mTLS), cli (issue, sign, renew by the CLI, read from the ledger), server (the CA server's own TLS certificate).",
        [...this.issuedCounts].map(([kind, n]) => [{ kind }, n] as const),
      ),
      this.refusals.text(),
      this.errors.text(),
      this.durations.text(),
      this.tokens.text(),
      this.handshakes.text(),
      this.batches.text(),
      gaugeText(
        "mesh_ca_certificates",
        "Leaf certificates in the ledger by status: valid, expired (valid but past notAfter), revoked, superseded.",
        [
          [{ status: "valid" }, counts.VALID],
          [{ status: "expired" }, counts.EXPIRED],
          [{ status: "revoked" }, counts.REVOKED],
          [{ status: "superseded" }, counts.SUPERSEDED],
        ],
      ),
      gaugeText(
        "mesh_ca_tls_cert_expiration_timestamp_seconds",
        "When the CA server's own TLS certificate (ca.internal) expires, in seconds since the Unix epoch.",
        state.tlsNotAfter ? [[{}, seconds(state.tlsNotAfter.getTime())]] : [],
      ),
      gaugeText("mesh_ca_signer_generation", "The root generation whose CA signs what this server issues.", [
        [{}, state.published.signerGeneration],
      ]),
      gaugeText(
        "mesh_ca_root_expiration_timestamp_seconds",
        "When each published root (each root in the trust bundle) expires, in seconds since the Unix epoch.",
        issuers
          .filter((row) => published.has(row.id))
          .map((row) => [{ issuer: row.id }, seconds(Date.parse(row.notAfter))]),
      ),
      gaugeText(
        "mesh_ca_crl_next_update_timestamp_seconds",
        "Each served CRL's nextUpdate, in seconds since the Unix epoch: past it, OpenSSL refuses every certificate that CA issued.",
        issuers
          .filter((row) => state.published.crls.has(row.id) && row.crlNextUpdate)
          .map((row) => [{ issuer: row.id }, seconds(Date.parse(row.crlNextUpdate!))]),
      ),
    ];
    return families.join("\n");
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
