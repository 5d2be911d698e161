// The CA as an online service: an HTTPS server speaking EST (RFC 7030) on the state
// folder the CLI uses, noticing the CLI's changes by polling, with its own certificate.
import { constants } from "node:crypto";
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { pino } from "pino";
import type { EventLogger } from "../../lib/events.ts";
import type { CertificateAuthority } from "../authority.ts";
import { CaError, badInput } from "../errors.ts";
import { formatDuration } from "../duration.ts";
import { rootFingerprint } from "../tokens.ts";
import { WriteGate } from "./write-gate.ts";
import { GroupCommit } from "../store/group-commit.ts";
import { describeSkew, httpDate, isSkewed, parseHttpDate } from "../../lib/clock.ts";
import { Admission, type Limits } from "./admission.ts";
import { SPIFFE_BUNDLE_PATH, SpiffeBundleEndpoint } from "./spiffe-bundle.ts";
import {
  EST_PREFIX,
  cacerts,
  crl,
  crlsPem,
  remoteOf,
  simpleenroll,
  simplereenroll,
  type Call,
  type EstContext,
} from "./est.ts";
import { DEFAULT_LEASE_MS, Lease } from "./lease.ts";
import { HttpError, sendText } from "./http.ts";
import { issueServerCert, renewalReason, type ServerCert } from "./identity.ts";
import { loadPublished, stateStamp, type Published } from "./published.ts";
import { CaMetrics } from "./metrics.ts";
import { RefusalLog, type RefusalLogOptions } from "./refusal-log.ts";
import { SkewLog, skewFields } from "./skew-log.ts";
import { DEFAULT_RETENTION_MS, RETENTION_CHECK_MS, prune, type PruneResult } from "../retention.ts";
import { CRLS_WATCH_PATH, HeldCalls, crlsWatch } from "./crl-watch.ts";

export const DEFAULT_PORT = 7400;
export const DEFAULT_LIFETIME_MS = 3_600_000;
export const DEFAULT_MAX_LIFETIME_MS = 24 * 3_600_000;
/** The CLI's changes are noticed within this (issue 9: "within a second"). */
export const POLL_MS = 500;
/** A CSR is a few hundred bytes; 16 KiB leaves room for RSA-4096 and extensions. */
export const MAX_BODY_BYTES = 16 * 1024;
/** Charged after authentication (admission.ts); perRenewal defaults to perName. */
export const DEFAULT_LIMITS: Limits = {
  // Enrolments and renewals that failed to authenticate, per source address: 30 at once, then one every 2 s.
  perAddress: { capacity: 30, perMinute: 30 },
  // Per name, once authenticated: a service renews a few times per lifetime; 5 at once, then one every 12 s.
  // Enrolments and renewals have a bucket each.
  perName: { capacity: 5, perMinute: 5 },
  // Failures from every address together: a flood from many addresses.
  unauthenticated: { capacity: 60, perMinute: 60 },
};
/** Listen addresses that mean "every interface": never a SAN, never a URL. */
const UNSPECIFIED = new Set(["0.0.0.0", "::"]);
/** CRL re-signing check interval (see refreshCrls). */
const CRL_REFRESH_MS = 10 * 60_000;

// TLS 1.2 with ECDHE and an AEAD only, and TLS 1.3 (all of whose suites are AEAD).
const CIPHERS = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/**
 * No TLS session is resumed, and no session ticket is sealed. A renewal must present the newest
 * certificate, so it can never resume the session of the one before (that one is superseded);
 * the EST clients keep no sessions for their other calls. Sealing the tickets nobody redeems cost
 * a fresh handshake a fifth of a bare Node server's CPU (OpenSSL 3.0 encodes and decodes the
 * session for each ticket; docs/bench.md), 0.35 ms of the 3.3 ms of a renewal, measured. With this
 * option OpenSSL 3 still sends TLS 1.3 tickets, but stateful ones naming a session no cache holds.
 */
const NO_RESUMPTION = constants.SSL_OP_NO_TICKET;

export interface CaServerOptions {
  ca: CertificateAuthority;
  host?: string;
  port?: number;
  defaultLifetimeMs?: number;
  maxLifetimeMs?: number;
  log?: EventLogger;
  pollMs?: number;
  maxBodyBytes?: number;
  limits?: Partial<Limits>;
  /** How unauthenticated refusals are summarised (refusal-log.ts). */
  refusalLog?: RefusalLogOptions;
  /** The term of the lease on the once-only jobs (DEFAULT_LEASE_MS); renewed every third of it. */
  leaseMs?: number;
  /**
   * The addresses and DNS names clients reach it by, when not (only) `host`: its certificate's
   * SANs, and the first is its URL (the CRL distribution points) when `host` is 0.0.0.0 or ::.
   */
  names?: string[];
  /** Delete certificates this long after they expire (ca/retention.ts); null keeps them all. */
  retentionMs?: number | null;
}

export class CaServer {
  readonly ca: CertificateAuthority;
  readonly log: EventLogger;
  /** Its Prometheus registry (serve it with lib/admin-http.ts). */
  readonly metrics: CaMetrics;
  private readonly https: https.Server;
  private readonly ctx: EstContext;
  private readonly host: string;
  /** What goes into its certificate: the listen address unless unspecified, then `names`. */
  private readonly hosts: string[];
  private port = 0;
  private published: Published;
  private readonly spiffeBundle: SpiffeBundleEndpoint;
  private stamp: string;
  private own!: ServerCert;
  private timers: NodeJS.Timeout[] = [];
  private refreshing: Promise<void> | null = null;
  private readonly gate = new WriteGate();
  /** Issuances ready together share one transaction and one fsync; each answer waits for its commit. */
  private readonly commits: GroupCommit;
  private readonly refusals: RefusalLog;
  private readonly skew: SkewLog;
  /** Held by one of the servers on this ledger: that one re-signs the CRLs. */
  readonly lease: Lease;
  private readonly retentionMs: number | null;
  /** Long polls on the CRLs, answered as soon as a refresh changes them (crl-watch.ts). */
  private readonly held = new HeldCalls();

  private constructor(opts: CaServerOptions, published: Published) {
    this.ca = opts.ca;
    this.host = opts.host ?? "127.0.0.1";
    this.hosts = [...(UNSPECIFIED.has(this.host) ? [] : [this.host]), ...(opts.names ?? [])];
    this.log = opts.log ?? pino({ base: { service: "ca" }, timestamp: pino.stdTimeFunctions.isoTime });
    this.published = published;
    this.retentionMs = opts.retentionMs === undefined ? DEFAULT_RETENTION_MS : opts.retentionMs;
    this.spiffeBundle = new SpiffeBundleEndpoint(this.ca, this.log);
    this.stamp = stateStamp(this.ca);
    this.lease = new Lease(this.ca, this.log, opts.leaseMs ?? DEFAULT_LEASE_MS);
    const limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.metrics = new CaMetrics(this.ca, () => ({ published: this.published, tlsNotAfter: this.own?.notAfter }));
    this.commits = new GroupCommit(this.ca.ledger, { onBatch: (n) => this.metrics.commitBatch(n) });
    this.ctx = {
      ca: this.ca,
      log: this.log,
      published: () => this.published,
      admission: new Admission(limits),
      lifetime: {
        defaultMs: opts.defaultLifetimeMs ?? DEFAULT_LIFETIME_MS,
        maxMs: opts.maxLifetimeMs ?? DEFAULT_MAX_LIFETIME_MS,
      },
      maxBodyBytes: opts.maxBodyBytes ?? MAX_BODY_BYTES,
      cdp: (issuerId) => [`${this.url}/crl/${issuerId}.crl`],
      metrics: this.metrics,
      commits: this.commits,
    };
    // No certificate yet: it names the port, known only once listening. Nothing is
    // accepted before start() has set it.
    this.https = https.createServer(
      {
        requestCert: true,
        // Enrolment comes without a client certificate (it has a token): TLS verifies what is
        // presented, and each route decides what an unverified or absent one may do.
        rejectUnauthorized: false,
        minVersion: "TLSv1.2",
        ciphers: CIPHERS,
        secureOptions: NO_RESUMPTION,
        handshakeTimeout: 10_000,
        requestTimeout: 15_000,
        headersTimeout: 10_000,
        keepAliveTimeout: 5_000,
        maxHeaderSize: 8 * 1024,
      },
      (req, res) => void this.handle(req, res),
    );
    // The client certificate a connection presented is kept with it (est.ts presented()): it
    // must not change under a renegotiation (TLS 1.2; TLS 1.3 has none).
    this.https.on("secureConnection", (sock: TLSSocket) => sock.disableRenegotiation());
    this.refusals = new RefusalLog(this.log, opts.refusalLog);
    this.skew = new SkewLog(this.log, this.refusals);
    this.https.on("tlsClientError", (err: NodeJS.ErrnoException, sock: TLSSocket) => {
      const remote = sock.remoteAddress ?? "unknown";
      const reason = err.code ?? "unknown";
      this.metrics.handshakeFailed(reason);
      this.refusals.note(`tls:${reason}`.slice(0, 80), remote, null, () => {
        this.log.warn(
          {
            event: "tls.handshake_failed",
            remote,
            reason,
            detail: err.message.slice(0, 200),
            hint: handshakeHint(reason),
          },
          "a TLS handshake failed",
        );
      });
    });
  }

  /** Opens the CA's signing key (so a wrong passphrase fails now), listens, and gets its own certificate. */
  static async start(opts: CaServerOptions): Promise<CaServer> {
    const defaultMs = opts.defaultLifetimeMs ?? DEFAULT_LIFETIME_MS;
    const maxMs = opts.maxLifetimeMs ?? DEFAULT_MAX_LIFETIME_MS;
    if (defaultMs > maxMs)
      throw badInput(
        `--default-lifetime ${formatDuration(defaultMs)} is longer than --max-lifetime ${formatDuration(maxMs)}`,
      );
    await opts.ca.signer(opts.ca.signerId());
    const server = new CaServer(opts, loadPublished(opts.ca));
    await server.listen(opts.port ?? DEFAULT_PORT);
    try {
      server.own = await issueServerCert(server.ca, { hosts: server.hosts, lifetimeMs: maxMs, cdp: server.ctx.cdp });
      server.metrics.issued("server");
      server.applyTls();
      server.recordBundle();
    } catch (err) {
      await server.close();
      throw err;
    }
    const every = opts.pollMs ?? POLL_MS;
    server.timers.push(setInterval(() => void server.refresh(), every).unref());
    server.timers.push(setInterval(() => void server.refreshCrls(), CRL_REFRESH_MS).unref());
    server.timers.push(
      setInterval(() => void server.leaseTick(), Math.max(50, Math.floor(server.lease.ttlMs / 3))).unref(),
    );
    // The lease holder re-signs at once: a server started on an old folder must not serve a CRL about to lapse.
    await server.leaseTick();
    if (server.retentionMs !== null) {
      server.timers.push(setInterval(() => void server.prune(), RETENTION_CHECK_MS).unref());
      await server.prune();
    }
    const root = server.ca.issuerDer(`root-${server.published.signerGeneration}`);
    server.log.info(
      {
        event: "ca.started",
        url: server.url,
        generations: server.published.generations,
        signer: server.published.signerId,
        root_sha256: rootFingerprint(root).hex,
        tls_serial: server.own.serial,
        tls_not_after: server.own.notAfter.toISOString(),
        default_lifetime: formatDuration(defaultMs),
        max_lifetime: formatDuration(maxMs),
        store: server.ca.ledger.kind,
        lease_holder: server.lease.holder,
        runs_jobs: server.lease.held,
      },
      `CA serving EST on ${server.url}`,
    );
    return server;
  }

  get url(): string {
    const host = UNSPECIFIED.has(this.host) ? (this.hosts[0] ?? "127.0.0.1") : this.host;
    return `https://${host.includes(":") ? `[${host}]` : host}:${this.port}`;
  }

  /** Whether the EST port still listens: the admin listener's /healthz. */
  get listening(): boolean {
    return this.https.listening;
  }

  get listeningPort(): number {
    return this.port;
  }

  /** The server's own certificate (PEM, leaf first): what a client sees in the handshake. */
  get certificatePem(): string {
    return this.own.cert;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.refusals.close();
    await this.gate.shared(() => this.lease.release());
    this.held.close();
    await new Promise<void>((resolve) => {
      this.https.close(() => resolve());
      this.https.closeAllConnections();
    });
    // Whatever a request queued before its connection closed is committed before the ledger closes.
    this.commits.close();
  }

  /**
   * Picks up what the CLI changed (bundle, CRLs, signer) and renews the server's own
   * certificate when it must. Runs every POLL_MS; never twice at once.
   */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    try {
      const stamp = stateStamp(this.ca);
      if (stamp !== this.stamp) {
        const next = loadPublished(this.ca);
        const before = this.published;
        this.published = next;
        this.stamp = stamp;
        if (next.etag !== before.etag || next.crlsPem !== before.crlsPem || next.signerId !== before.signerId) {
          this.log.info(
            {
              event: "ca.state_reloaded",
              etag: next.etag,
              generations: next.generations,
              signer: next.signerId,
              crls: [...next.crls.keys()],
            },
            "picked up the state folder's changes",
          );
        }
        // Another replica (or the CLI on another host) signed a CRL: this host's files follow the store.
        if (next.crlsPem !== before.crlsPem && this.ca.ledger.kind === "postgres") this.ca.writeCrlBundle();
        if (next.rootsPem !== before.rootsPem) {
          this.recordBundle();
          this.applyTls();
        }
        if (next.trustEtag !== before.trustEtag) this.held.changed();
      }
      const reason = renewalReason(this.ca, this.own, this.published);
      if (reason) {
        const old = this.own.serial;
        this.own = await issueServerCert(this.ca, {
          hosts: this.hosts,
          lifetimeMs: this.ctx.lifetime.maxMs,
          cdp: this.ctx.cdp,
        });
        this.metrics.issued("server");
        this.applyTls();
        this.log.info(
          {
            event: "ca.tls_renewed",
            serial: this.own.serial,
            previous: old,
            generation: this.own.generation,
            not_after: this.own.notAfter.toISOString(),
            reason,
          },
          `renewed the CA server's own certificate: ${reason}`,
        );
      }
    } catch (err) {
      // The old state stays in force; the next tick tries again.
      this.log.error(
        { event: "ca.reload_failed", err: (err as Error).message },
        "could not pick up the state folder's changes; serving the previous state",
      );
    }
  }

  /**
   * Re-signs every CRL well before its nextUpdate (a lapsed CRL locks every client out), with
   * the same rule mesh:up uses, then serves the new ones. Alone: it holds a ledger transaction
   * across the signing, which no request's write may nest in.
   */
  async refreshCrls(): Promise<void> {
    if (!this.lease.held) return;
    try {
      const resigned = await this.gate.alone(() => this.ca.refreshCrls());
      if (resigned.length === 0) return;
      this.log.info(
        {
          event: "ca.crls_resigned",
          issuers: resigned.map((r) => r.id),
          next_update: resigned.map((r) => r.crlNextUpdate),
        },
        `re-signed ${resigned.length} CRL(s) before they lapse`,
      );
      // A poll's refresh already under way may have read the CRLs before the re-signing: let it
      // end, then read them again (refresh() would hand back that one's stale result).
      await this.refreshing?.catch(() => {});
      await this.refresh();
    } catch (err) {
      this.log.error(
        { event: "ca.crls_resign_failed", err: (err as Error).message },
        "could not re-sign the CRLs; trying again at the next check",
      );
    }
  }

  /** Takes or renews the lease; on taking it over, runs the once-only jobs at once. */
  async leaseTick(): Promise<void> {
    const was = this.lease.held;
    const held = await this.gate.shared(() => this.lease.tick());
    if (held && !was) await this.refreshCrls();
  }

  /**
   * Retention (ca/retention.ts): drops expired serials from the CRLs and deletes what expired
   * more than retentionMs ago. Alone, like refreshCrls: it may re-sign CRLs. Logs ca.pruned
   * when it changed anything; a failure is logged and the next check tries again.
   */
  async prune(): Promise<PruneResult | undefined> {
    // Once-only, like re-signing CRLs: the lease holder runs it (replicas on one store).
    if (this.retentionMs === null || !this.lease.held) return undefined;
    const olderThanMs = this.retentionMs;
    try {
      const r = await this.gate.alone(() => prune(this.ca, { olderThanMs }));
      if (r.certs > 0 || r.tokens > 0 || r.crlsResigned.length > 0) {
        this.log.info(
          {
            event: "ca.pruned",
            certs: r.certs,
            tokens: r.tokens,
            cutoff: r.cutoff.toISOString(),
            crls_resigned: r.crlsResigned,
            crl_expired_dropped: r.crlExpiredBefore - r.crlExpiredAfter,
            crl_expired_kept: r.crlExpiredAfter,
          },
          `retention: deleted ${r.certs} certificate(s) and ${r.tokens} token(s) expired before ${r.cutoff.toISOString()}${r.crlsResigned.length > 0 ? `, re-signed ${r.crlsResigned.length} CRL(s)` : ""}`,
        );
        if (r.crlsResigned.length > 0) await this.refresh();
      }
      return r;
    } catch (err) {
      this.log.error(
        { event: "ca.prune_failed", err: (err as Error).message },
        "retention run failed; trying again at the next check",
      );
      return undefined;
    }
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.https.once("error", reject);
      this.https.listen(port, this.host, () => {
        this.https.off("error", reject);
        const a = this.https.address();
        this.port = typeof a === "object" && a ? a.port : port;
        resolve();
      });
    });
  }

  /** setSecureContext rebuilds the whole context: key, chain, the roots renewals are checked against. */
  private applyTls(): void {
    this.https.setSecureContext({
      key: this.own.key,
      cert: this.own.cert,
      ca: this.published.rootsPem,
      minVersion: "TLSv1.2",
      ciphers: CIPHERS,
      secureOptions: NO_RESUMPTION,
    });
  }

  private recordBundle(): void {
    try {
      this.ca.ledger.write(() =>
        this.ca.ledger.recordBundle(this.published.etag, this.published.generations, this.ca.now().toISOString()),
      );
    } catch (err) {
      this.log.warn(
        { event: "est.bundle_record_failed", err: (err as Error).message },
        "could not record the published bundle",
      );
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    let path = "";
    // The CA's clock, not the system's, is the one a client compares its own with (lib/clock.ts).
    const caNow = this.ca.now().getTime();
    res.setHeader("Date", httpDate(caNow));
    const clientDate = parseHttpDate(req.headers.date);
    const call: Call = {
      req,
      res,
      url: new URL("https://ca.internal/"),
      remote: remoteOf(req),
      skewMs: clientDate === null ? null : clientDate - caNow,
      authenticated: null,
      claimed: null,
    };
    let outcome: "ok" | "refused" | "error" = "ok";
    try {
      try {
        call.url = new URL(req.url ?? "/", "https://ca.internal");
      } catch {
        throw new HttpError(400, "bad_request", "the request target is not a path");
      }
      path = call.url.pathname;
      const method = req.method ?? "";
      const allow = (methods: string[]) => {
        if (!methods.includes(method))
          throw new HttpError(
            405,
            "method_not_allowed",
            `${method.slice(0, 16)} is not allowed on ${path}: use ${methods.join(" or ")}`,
            { Allow: methods.join(", ") },
          );
      };
      const crlMatch = /^\/crl\/((?:root|int)-\d{1,6})\.crl$/.exec(path);
      if (path === `${EST_PREFIX}/cacerts`) {
        allow(["GET", "HEAD"]);
        await this.gate.shared(() => cacerts(this.ctx, call));
      } else if (path === `${EST_PREFIX}/simpleenroll`) {
        allow(["POST"]);
        await this.gate.shared(() => simpleenroll(this.ctx, call));
      } else if (path === `${EST_PREFIX}/simplereenroll`) {
        allow(["POST"]);
        await this.gate.shared(() => simplereenroll(this.ctx, call));
      } else if (path === "/crls.pem") {
        allow(["GET", "HEAD"]);
        crlsPem(this.ctx, res);
      } else if (path === CRLS_WATCH_PATH) {
        allow(["GET"]);
        crlsWatch(() => this.published, this.held, req, res, call.url);
      } else if (path === SPIFFE_BUNDLE_PATH) {
        allow(["GET", "HEAD"]);
        this.spiffeBundle.serve(this.published, req.headers["if-none-match"], method, res);
      } else if (crlMatch) {
        allow(["GET", "HEAD"]);
        crl(this.ctx, res, crlMatch[1]!);
      } else
        throw new HttpError(
          404,
          "not_found",
          `no such resource: EST lives under ${EST_PREFIX}/ (cacerts, simpleenroll, simplereenroll), CRLs under /crl/, the SPIFFE bundle at ${SPIFFE_BUNDLE_PATH}`,
        );
    } catch (err) {
      outcome = err instanceof HttpError ? "refused" : "error";
      this.refuse(call, path, err);
    } finally {
      this.skew.note(call, routeName(path));
    }
    this.metrics.answered(path, outcome, (performance.now() - t0) / 1000);
  }

  /**
   * A refusal: its status and one line to the client, a metric always, and a log line of its own
   * when the request had authenticated; otherwise it goes to the aggregated refusal log.
   */
  private refuse(call: Call, path: string, err: unknown): void {
    const { req, res } = call;
    const peerSerial = (req.socket as TLSSocket).getPeerCertificate?.()?.serialNumber?.toLowerCase() ?? null;
    const route = routeName(path);
    if (err instanceof HttpError) {
      this.metrics.refused(path, err.code);
      // A client whose clock is off is told so, whatever else is wrong.
      const skewNote =
        call.skewMs !== null && isSkewed(call.skewMs) && err.code !== "clock_skew"
          ? ` (note: clock skew, ${describeSkew("your", call.skewMs, "this CA's")}; fix the clock that is wrong)`
          : "";
      const message = err.message + skewNote;
      const name = (err.subject ?? call.claimed)?.slice(0, 253) ?? null;
      const line = () =>
        this.log.warn(
          {
            event: "est.refused",
            route,
            status: err.status,
            reason: err.code,
            detail: message.slice(0, 500),
            name,
            remote: call.remote,
            serial: peerSerial,
            authenticated: call.authenticated !== null,
            ...skewFields(call),
          },
          `refused ${route}: ${message.slice(0, 200)}`,
        );
      if (call.authenticated !== null) line();
      else this.refusals.note(err.code, call.remote, name, line);
      if (!res.headersSent) sendText(res, err.status, message, err.headers);
      return;
    }
    const message = err instanceof CaError ? err.message : (err as Error).message;
    this.metrics.failed(path);
    this.log.error(
      { event: "est.error", route, err: message, remote: call.remote, serial: peerSerial },
      `internal error on ${route}`,
    );
    if (!res.headersSent) sendText(res, 500, "internal error: the CA could not complete the request (see its log)");
  }
}

function routeName(path: string): string {
  return KNOWN_ROUTES.has(path) || path.startsWith("/crl/") ? path.slice(0, 64) : "other";
}

/**
 * What a failed handshake may mean beyond OpenSSL's code. A client that finds this CA's
 * certificate expired or not yet valid, when by the CA's clock it is neither, has a clock off.
 */
function handshakeHint(code: string): string | undefined {
  if (/CERTIFICATE_EXPIRED|CERTIFICATE_NOT_YET_VALID|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/i.test(code)) {
    return "the client finds a certificate's dates wrong: if it is this CA's own certificate, which is valid by the CA's clock, the client's clock is off (clock skew)";
  }
  return undefined;
}

const KNOWN_ROUTES = new Set([
  `${EST_PREFIX}/cacerts`,
  `${EST_PREFIX}/simpleenroll`,
  `${EST_PREFIX}/simplereenroll`,
  "/crls.pem",
  CRLS_WATCH_PATH,
  SPIFFE_BUNDLE_PATH,
]);
