// Calls from one service to another over mTLS: one undici Agent per own identity, dialing
// 127.0.0.1 with the callee's DNS name as SNI and for the server-certificate check.
import { createRequire } from "node:module";
import type { Agent, Dispatcher, Pool, buildConnector } from "undici";
import { TLS_CIPHERS, type TlsMaterial } from "./material.ts";
import type { MeshLogger } from "./log.ts";
import { MeshError } from "./errors.ts";
import { dnsName } from "./names.ts";
import { calleeWithdrawn, upstreamReason, type UpstreamReason } from "./reasons.ts";
import { checkServerIdentity, connect, createSecureContext, type PeerCertificate, type TLSSocket } from "node:tls";
import { identityOf, presented, type PresentedCert } from "./peer-identity.ts";
import { chainWithdrawn, REVOKED, withdrawn } from "./revocations.ts";
import { pathOf } from "./chain.ts";
import { datesByProcessClock } from "./clock-dates.ts";
import { calleeClockSentence, dateRefusalOf, type DateRefusal } from "./callee-clock.ts";
import { parseHttpDate } from "../../lib/clock.ts";
import { CalleeSessions, connectionChain, meshConnector } from "./callee-sessions.ts";
import type { X509Certificate } from "node:crypto";

// undici adds about 20 MB to a process that loads it: only a service that calls another does.
const loadUndici = (): typeof import("undici") => createRequire(import.meta.url)("undici");

const CERT_EXPIRED_ALERT = "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED";
/** OpenSSL's alert for a certificate not yet valid, among other faults. */
const BAD_CERTIFICATE_ALERT = "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE";
/** The alerts a callee refusing our certificate for its dates sends (kept: undici drops them). */
const DATE_ALERTS: Readonly<Record<string, DateRefusal>> = {
  [CERT_EXPIRED_ALERT]: "expired",
  [BAD_CERTIFICATE_ALERT]: "not_yet_valid",
};

export interface UpstreamReply {
  readonly status: number;
  readonly body: unknown;
}

export class UpstreamError extends MeshError {
  constructor(
    readonly upstream: string,
    readonly reason: UpstreamReason,
    message: string,
    readonly status?: number,
  ) {
    super("UPSTREAM_FAILED", message);
  }
}

export interface UpstreamOptions {
  timeoutMs?: number;
  /** Offer the TLS sessions of earlier connections to a callee (default true; see callee-sessions.ts). */
  resume?: boolean;
}

/**
 * A callee must be who its DNS name says (Node's own check) and, when its certificate carries
 * a SPIFFE ID, that ID must be one, agree with the name and be in our trust domain: the same
 * rules a server applies to its callers. A refusal is a name mismatch (server_name_mismatch).
 */
export function calleeIdentity(host: string, cert: PeerCertificate, trustDomain: string): Error | undefined {
  const err = checkServerIdentity(host, cert);
  if (err) return err;
  const id = identityOf(cert, trustDomain);
  if (id.ok || !id.reason.startsWith("spiffe_")) return calleeDatesByProcessClock(host, cert);
  return Object.assign(
    new Error(`the certificate of ${host} is not a usable SPIFFE identity (${id.reason}): ${id.detail}`),
    { code: "ERR_TLS_CERT_ALTNAME_INVALID", reason: id.reason, host, cert },
  );
}

/**
 * OpenSSL judged the callee's dates by the machine's clock; a process whose clock is moved
 * (MESH_CLOCK_OFFSET_MS) judges them again by its own, as a host with that clock would. The
 * sentence names the clock (upstreamReason reads it from `byClock`).
 */
function calleeDatesByProcessClock(host: string, cert: PeerCertificate): Error | undefined {
  const late = datesByProcessClock(cert, `the certificate of ${host}`);
  return late
    ? Object.assign(new Error(late.sentence), { code: late.code, byClock: late.sentence, host, cert })
    : undefined;
}

export class Upstreams {
  /** Absent while this service calls no one (and then undici is never loaded). */
  private agent: Agent | undefined;
  private readonly timeoutMs: number;
  private readonly resume: boolean;
  /** The sessions the current connector keeps (see connectorFor). */
  private sessions: CalleeSessions | undefined;
  /** origin "https://127.0.0.1:7402" -> servername "payment.internal" */
  private readonly servernames = new Map<string, string>();
  private readonly origins = new Map<string, string>();
  /** origin -> upstream name, for logs about connections. */
  private readonly names = new Map<string, string>();
  /** Open connections to callees, to re-judge them when the CRLs or the bundle change. */
  private readonly sockets = new Map<TLSSocket, string>();
  /** When each callee last sent a TLS alert about our certificate (DATE_ALERTS), and which. */
  private readonly alertAt = new Map<string, { at: number; code: string }>();
  /** When this caller last closed a connection to each callee itself, and why. */
  private readonly withdrawnAt = new Map<string, { at: number; why: string }>();

  private material: TlsMaterial;
  /** Dials with the current material: a CRL reload applies to the next connection. */
  private connector: buildConnector.connector | undefined;

  constructor(
    private readonly service: string,
    material: TlsMaterial,
    addrs: Readonly<Record<string, string>>,
    private readonly log: MeshLogger,
    opts: UpstreamOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.resume = opts.resume ?? true;
    for (const [name, addr] of Object.entries(addrs)) {
      const origin = `https://${addr}`;
      this.origins.set(name, origin);
      this.servernames.set(new URL(origin).origin, dnsName(name));
      this.names.set(new URL(origin).origin, name);
    }
    this.material = material;
    if (this.origins.size > 0) {
      this.connector = this.connectorFor(material);
      this.agent = this.build();
    }
  }

  /**
   * The callee's chain is checked like a server checks its callers: against the trust
   * bundle and against the CRLs (one `crl` entry per CRL, see TlsMaterial.crl), so a
   * revoked callee fails the handshake with CERT_REVOKED. Each connector keeps the TLS
   * sessions of its own connections (callee-sessions.ts): new material makes a new connector,
   * so no session made under other material is ever offered, and a resumed one is judged
   * again under the material in force.
   */
  private connectorFor(m: TlsMaterial): buildConnector.connector {
    const secureContext = createSecureContext({
      ca: m.ca,
      cert: m.cert,
      key: m.key,
      crl: m.crl,
      minVersion: "TLSv1.2",
      ciphers: TLS_CIPHERS,
    });
    const { errors } = loadUndici();
    return meshConnector({
      secureContext,
      timeoutMs: this.timeoutMs,
      checkServerIdentity: (host: string, cert: PeerCertificate) => calleeIdentity(host, cert, m.leaf.trustDomain),
      madeUnder: m,
      material: () => this.material,
      sessions: (this.sessions = this.resume ? new CalleeSessions() : undefined),
      timeoutError: (message) => new errors.ConnectTimeoutError(message),
    });
  }

  private build(): Agent {
    const { Agent, Pool } = loadUndici();
    const timeout = this.timeoutMs;
    return new Agent({
      headersTimeout: timeout,
      bodyTimeout: timeout,
      keepAliveTimeout: 4_000, // below the servers' 5 s, so we never reuse a socket they are closing
      // Per-origin SNI: each callee is dialed by IP but must prove it is <name>.internal.
      factory: (origin: string | URL, opts: Pool.Options) => {
        const key = new URL(String(origin)).origin;
        const servername = this.servernames.get(key);
        const upstream = this.names.get(key) ?? key;
        const connect: buildConnector.connector = (o, cb) =>
          this.connector!({ ...o, servername: o.servername || servername }, (err, sock) => {
            if (sock) this.track(sock as TLSSocket, upstream);
            cb(err, sock as never);
          });
        return new Pool(origin, { ...opts, connect });
      },
    });
  }

  private track(sock: TLSSocket, upstream: string): void {
    this.sockets.set(sock, upstream);
    // undici reports a callee's TLS alert after the handshake only as "other side closed":
    // the alert that says our certificate looked expired to it is kept here (refusedForDates).
    sock.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code && DATE_ALERTS[e.code]) this.alertAt.set(upstream, { at: performance.now(), code: e.code });
    });
    sock.once("close", () => this.sockets.delete(sock));
  }

  /**
   * New material. New trust (bundle or CRLs) applies to the next connection, and a pooled
   * connection to a callee that is now revoked or no longer trusted is closed at once, as
   * the server does for its callers (OpenSSL judged the callee only at the handshake). A
   * new own certificate gets a new agent: in-flight calls finish on the old one.
   */
  setMaterial(m: TlsMaterial): void {
    const certChanged = m.certDigest !== this.material.certDigest;
    const trustChanged = m.trustDigest !== this.material.trustDigest;
    this.material = m;
    if (!this.agent) return; // calls no one: nothing to dial or close
    this.connector = this.connectorFor(m);
    if (trustChanged) this.closeWithdrawn();
    if (certChanged) {
      const old = this.agent;
      this.agent = this.build();
      old.close().catch(() => {});
    }
  }

  private closeWithdrawn(): void {
    const closed: string[] = [];
    const retiring: TLSSocket[] = [];
    for (const [sock, upstream] of this.sockets) {
      if (sock.destroyed) continue;
      // The chain recorded when the connection was made (a resumed one has no certificate to read).
      const chain = connectionChain(sock);
      const why = chain
        ? chainWithdrawn(chain, this.material.trust)
        : sock.isSessionReused()
          ? "its verified chain is unknown"
          : withdrawn(sock.getPeerCertificate(true), this.material.trust);
      if (!why) continue;
      closed.push(`${upstream} (${why})`);
      // Remembered, so that a call in flight on it is reported as ours (callee_withdrawn), not as
      // the callee refusing us. A revoked callee is cut at once, with a plain destroy: an error of
      // our own would make undici fail the calls queued for that callee too, instead of dialing
      // again for them. A connection made under a CA that was since dropped (a rotation's
      // retirement: the callee renewed long ago) gets no new request and ends once its request in
      // flight is answered: cut at once, that request was lost.
      this.withdrawnAt.set(upstream, { at: performance.now(), why });
      if (why === REVOKED) sock.destroy();
      else retiring.push(sock);
    }
    if (retiring.length > 0 && this.agent) {
      const old = this.agent;
      this.agent = this.build();
      old.close().catch(() => {});
      setTimeout(() => {
        for (const s of retiring) s.destroy();
      }, this.timeoutMs * 2).unref();
    }
    if (closed.length > 0) {
      this.log.info(
        {
          event: "tls.connections_closed",
          side: "caller",
          count: closed.length,
          why: "trust withdrawn",
          peers: closed,
        },
        `closed ${closed.length} connection(s) to callees no longer accepted: ${closed.join(", ")}`,
      );
    }
  }

  /**
   * Call `name` and return its status and parsed JSON body. Transport failures and
   * answers >= 500 or 403 throw UpstreamError and are logged as `upstream.failed` with a
   * reason the operator can act on; other statuses (404, 409, 402...) are the callee's
   * business answer and are returned.
   */
  async call(name: string, method: Dispatcher.HttpMethod, path: string, body?: unknown): Promise<UpstreamReply> {
    const origin = this.origins.get(name);
    if (!origin) {
      const msg = `${this.service} has no address for upstream ${name} (start it with --upstream ${name}=127.0.0.1:PORT)`;
      this.log.error({ event: "upstream.failed", upstream: name, method, path, reason: "upstream_down" }, msg);
      throw new UpstreamError(name, "upstream_down", msg);
    }
    let status: number;
    let parsed: unknown;
    const started = performance.now();
    try {
      const res = await this.agent!.request({
        origin,
        method,
        path,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs * 2),
      });
      status = res.statusCode;
      const text = await res.body.text();
      const refusal = status === 400 ? dateRefusalOf(res.headers) : null;
      if (refusal) this.refusedForDates(name, method, path, refusal, parseHttpDate(res.headers.date), "MESH_REFUSED");
      parsed = text ? safeJson(text) : undefined;
    } catch (e) {
      if (e instanceof UpstreamError) throw e;
      const addr = origin.slice("https://".length);
      const r = upstreamReason(e, name, addr);
      const { code } = r;
      let { reason, sentence } = r;
      const ours = this.withdrawnAt.get(name);
      // Closed without an answer: if that was a resumed session the callee refused (it could no
      // longer vouch for it, see resumption.ts), the next connection must not offer it again.
      if (reason === "rejected_in_handshake") this.sessions?.forget(dnsName(name));
      if (reason === "rejected_in_handshake" && ours && ours.at >= started)
        ({ reason, sentence } = calleeWithdrawn(name, addr, ours.why));
      else if (r.refusedFor) this.refusedForDates(name, method, path, r.refusedFor, null, code);
      else if (reason === "rejected_in_handshake") {
        const alert = this.alertAt.get(name);
        if (alert && alert.at >= started)
          this.refusedForDates(name, method, path, DATE_ALERTS[alert.code]!, null, alert.code);
      }
      const explain = reason === "server_untrusted" || reason === "server_revoked" || reason === "server_crl_missing";
      // Say what the callee showed (and for a stranger, which CAs we trust): that is the fix.
      const served = explain ? await servedCertificate(addr, dnsName(name), this.material) : undefined;
      const shown = served?.shown;
      if (served?.leaf && (reason === "server_crl_missing" || reason === "server_untrusted")) {
        // Judged by signature, as the server judges its callers (see chain.ts): OpenSSL looks
        // for a stranger CA's CRL before it gives up on the chain, and a look-alike CA has
        // the very name of ours.
        const path = pathOf(served.leaf, this.material.trust);
        if (path.anchor === "lookalike") {
          reason = "server_untrusted";
          sentence = `${name}'s certificate at ${addr} chains up to ${path.name}, but not to the ${path.name} we trust (the signature does not verify against its key): another CA with the same name`;
        } else if (path.anchor === "stranger") {
          reason = "server_untrusted";
          sentence = `${name}'s certificate at ${addr} was not issued by a CA in our trust bundle`;
        }
      }
      if (reason === "server_untrusted" || reason === "server_revoked") {
        const shownText = shown
          ? `it presented ${shown.subject} (serial ${shown.serial}) issued by ${shown.issuer}`
          : "its certificate could not be read";
        const detail =
          reason === "server_revoked"
            ? shownText
            : `${shownText}; ${this.service} trusts only: ${this.material.trust.describe}`;
        this.log.warn(
          {
            event: "upstream.failed",
            upstream: name,
            addr,
            method,
            path,
            reason,
            code,
            peer: shown,
            trusts: this.material.trust.subjects,
          },
          `${sentence}: ${detail}`,
        );
        throw new UpstreamError(name, reason, `${sentence}: ${detail}`);
      }
      this.log.warn({ event: "upstream.failed", upstream: name, addr, method, path, reason, code }, sentence);
      throw new UpstreamError(name, reason, sentence);
    }
    if (status === 403 || status >= 500) {
      const reason: UpstreamReason = status === 403 ? "forbidden" : "upstream_error";
      const rule = (parsed as { rule?: unknown } | undefined)?.rule;
      const sentence =
        status === 403
          ? `${name} refused ${method} ${path} for ${this.service} (rule ${String(rule)}); the mesh policy does not allow this call`
          : `${name} answered ${status} to ${method} ${path}`;
      // The callee's 403 body is its own say: only a string rule is logged as one.
      this.log.warn(
        {
          event: "upstream.failed",
          upstream: name,
          method,
          path,
          reason,
          status,
          rule: typeof rule === "string" ? rule.slice(0, 200) : undefined,
        },
        sentence,
      );
      throw new UpstreamError(name, reason, sentence, status);
    }
    return { status, body: parsed };
  }

  /**
   * The callee refused our certificate for its dates (its 400 with Mesh-Refused, or a TLS
   * alert): logged and thrown as rejected_in_handshake, naming the clock that is likely wrong.
   */
  private refusedForDates(
    name: string,
    method: string,
    path: string,
    refusal: DateRefusal,
    calleeDate: number | null,
    code: string,
  ): never {
    this.sessions?.forget(dnsName(name));
    const { byClock, clockOffsetMs, sentence } = calleeClockSentence(
      name,
      refusal,
      this.material.leaf,
      calleeDate,
      undefined,
      code === BAD_CERTIFICATE_ALERT,
    );
    this.log.warn(
      {
        event: "upstream.failed",
        upstream: name,
        method,
        path,
        reason: "rejected_in_handshake",
        code,
        refusedFor: refusal,
        clock: byClock ? "callee" : "own",
        clock_offset_ms: clockOffsetMs ?? undefined,
      },
      sentence,
    );
    throw new UpstreamError(name, "rejected_in_handshake", sentence);
  }

  close(): Promise<void> {
    return this.agent?.close() ?? Promise.resolve();
  }
}

/**
 * The certificate a server shows, read on a connection that does not verify it
 * (and sends no request): for explaining a refusal, never for trusting anything.
 */
function servedCertificate(
  addr: string,
  servername: string,
  own: TlsMaterial,
): Promise<{ shown: PresentedCert | undefined; leaf: X509Certificate | undefined } | undefined> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve) => {
    // Our own certificate goes along, so the server sees a proper client and no failure to log.
    const sock = connect({ host, port, servername, cert: own.cert, key: own.key, rejectUnauthorized: false }, () => {
      // The leaf with the certificates the server sent after it, as sent.
      resolve({ shown: presented(sock.getPeerCertificate()), leaf: sock.getPeerX509Certificate() });
      sock.end();
    });
    sock.setTimeout(1_000, () => sock.destroy());
    sock.on("error", () => resolve(undefined));
    sock.on("close", () => resolve(undefined));
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
