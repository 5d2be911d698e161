// TLS session resumption on the caller's side. A new connection to a callee offers the session
// of an earlier one, so the callee can skip its certificate and key exchange signatures; but a
// resumed session carries no verification: OpenSSL checks no chain and no CRL, Node runs no
// checkServerIdentity and gives no peer certificate for it. So the caller keeps, beside each
// session, what the full handshake that made it proved (who the callee is, the serials of its
// chain, the material it was judged under), and judges that again, under the material in
// force, every time a session is resumed. Undici's own session cache keeps the bare session.
import {
  connect,
  type DetailedPeerCertificate,
  type PeerCertificate,
  type SecureContext,
  type TLSSocket,
} from "node:tls";
import type { buildConnector } from "undici";
import { nowMs } from "../../lib/clock.ts";
import {
  chainOf,
  chainOutOfDate,
  chainWithdrawn,
  REVOKED,
  type CurrentTrust,
  type VerifiedChain,
} from "./revocations.ts";

/** What a full handshake proved about a callee: what a resumption of its session stands for. */
export interface CalleeFacts {
  /** The name its certificate was checked against (the SNI sent). */
  readonly servername: string;
  /** The chain OpenSSL verified: serials leaf to root, and the root's fingerprint. */
  readonly chain: VerifiedChain;
  /** The caller's own certificate and trust when the session was made (TlsMaterial digests). */
  readonly certDigest: string;
  readonly trustDigest: string;
}

/** What a resumption is judged against: the caller's material in force. */
export interface CallerMaterial {
  readonly certDigest: string;
  readonly trustDigest: string;
  readonly trust: CurrentTrust;
}

interface Kept {
  readonly session: Buffer;
  readonly facts: CalleeFacts;
}

/** Sessions kept per callee name (one each, the latest), at most `max` names. */
export class CalleeSessions {
  private readonly byName = new Map<string, Kept>();
  constructor(private readonly max = 256) {}

  get(servername: string): Kept | undefined {
    return this.byName.get(servername);
  }

  keep(servername: string, session: Buffer, facts: CalleeFacts): void {
    this.byName.delete(servername);
    this.byName.set(servername, { session, facts });
    if (this.byName.size > this.max) this.byName.delete(this.byName.keys().next().value!);
  }

  /** Forgets the callee's session, or only `session` if that is still the one kept. */
  forget(servername: string, session?: Buffer): void {
    if (session === undefined || this.byName.get(servername)?.session === session) this.byName.delete(servername);
  }

  get size(): number {
    return this.byName.size;
  }
}

/**
 * The chain each connection's callee was verified with: at its full handshake, or at the full
 * handshake of the session it resumed. Node gives no certificate at all for a resumed session
 * on the caller's side, so the re-check of open connections on a trust change reads this.
 */
const chains = new WeakMap<TLSSocket, VerifiedChain>();

/** The verified chain of a connection this module's connector made (see `chains`). */
export function connectionChain(sock: TLSSocket): VerifiedChain | undefined {
  return chains.get(sock);
}

/** A resumption refused: an error shaped like the one a full handshake would have failed with. */
export class ResumptionRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Why a callee that resumed a session is refused under `m`, or undefined. Fails closed: without
 * the facts of the session it resumed, it is refused.
 */
export function resumedCalleeRefusal(
  facts: CalleeFacts | undefined,
  servername: string,
  m: CallerMaterial,
): ResumptionRefused | undefined {
  if (!facts)
    return new ResumptionRefused(
      "ERR_TLS_SESSION_UNVERIFIABLE",
      `${servername} resumed a TLS session this caller holds no verified facts for; refused`,
    );
  if (facts.servername !== servername)
    return new ResumptionRefused(
      "ERR_TLS_CERT_ALTNAME_INVALID",
      `a TLS session made with ${facts.servername} was resumed by a server reached as ${servername}; refused`,
    );
  if (facts.certDigest !== m.certDigest || facts.trustDigest !== m.trustDigest)
    return new ResumptionRefused(
      "ERR_TLS_SESSION_STALE",
      `${servername} resumed a TLS session made under another certificate or trust bundle than this caller's; refused`,
    );
  const dates = chainOutOfDate(facts.chain, nowMs());
  if (dates)
    return new ResumptionRefused(
      dates === "expired" ? "CERT_HAS_EXPIRED" : "CERT_NOT_YET_VALID",
      `${servername} resumed a TLS session, but its certificate or a CA that issued it ${dates === "expired" ? "has expired since" : "is not valid yet"} (by this host's clock); refused`,
    );
  const why = chainWithdrawn(facts.chain, m.trust);
  if (why === REVOKED)
    return new ResumptionRefused(
      "CERT_REVOKED",
      `${servername} resumed a TLS session, but its certificate or a CA that issued it has been revoked since (by the CRLs in force); refused`,
    );
  if (why)
    return new ResumptionRefused(
      "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
      `${servername} resumed a TLS session, but ${why}; refused`,
    );
  return undefined;
}

export interface ConnectorOptions {
  readonly secureContext: SecureContext;
  readonly timeoutMs: number;
  /** Node's checkServerIdentity plus the mesh's SPIFFE rules (client.ts calleeIdentity). */
  checkServerIdentity(host: string, cert: PeerCertificate): Error | undefined;
  /** The caller's material this connector dials with: what a full handshake is judged under. */
  readonly madeUnder: { readonly certDigest: string; readonly trustDigest: string };
  /** The caller's material in force, read at each resumption. */
  material(): CallerMaterial;
  /** Where sessions are kept; absent: no resumption, every connection a full handshake. */
  readonly sessions?: CalleeSessions;
  /** undici's ConnectTimeoutError, so that a slow callee reads as a timeout (reasons.ts). */
  timeoutError(message: string): Error;
}

/**
 * An undici connector (what buildConnector makes: TLS to `hostname`, SNI `servername`, HTTP/1.1
 * by ALPN, TCP keep-alive and no Nagle, a connect timeout), which offers a kept session and
 * re-judges a resumed one before undici may send a byte on it.
 */
export function meshConnector(o: ConnectorOptions): buildConnector.connector {
  return (opts, callback) => {
    const servername = opts.servername || opts.hostname;
    let cb: buildConnector.Callback | undefined = callback;
    let sock: TLSSocket | undefined;
    const done = (err: Error | null, s?: TLSSocket) => {
      clearTimeout(timer);
      const f = cb;
      cb = undefined;
      if (!f) return;
      if (err) f(err, null);
      else f(null, s!);
    };
    const timer = setTimeout(() => {
      const err = o.timeoutError(
        `Connect Timeout Error (attempted address: ${opts.hostname}:${opts.port}, timeout: ${o.timeoutMs}ms)`,
      );
      sock?.destroy(err);
      done(err);
    }, o.timeoutMs);
    const dial = (kept: Kept | undefined) => {
      let verified: VerifiedChain | undefined;
      const s = connect({
        host: opts.hostname,
        port: Number(opts.port) || 443,
        servername,
        secureContext: o.secureContext,
        minVersion: "TLSv1.2",
        ALPNProtocols: ["http/1.1"],
        session: kept?.session,
        // Node runs this on a full handshake only, with the chain it verified (getPeerCertificate(true)):
        // what a resumption of this connection's sessions will be judged by. Reading the chain
        // again later would cost as much, and getPeerX509Certificate() on a client socket takes
        // the leaf out of the chain Node gives afterwards (Node 20), which the re-check of open
        // connections (client.ts closeWithdrawn) reads.
        checkServerIdentity: (host: string, cert: PeerCertificate) => {
          const err = o.checkServerIdentity(host, cert);
          if (!err) verified = chainOf(cert as DetailedPeerCertificate);
          return err;
        },
      });
      sock = s;
      s.setKeepAlive(true, 60_000).setNoDelay(true);
      let facts: CalleeFacts | undefined;
      s.once("secureConnect", () => {
        if (s.isSessionReused()) {
          const refused = resumedCalleeRefusal(kept?.facts, servername, o.material());
          if (refused) {
            o.sessions?.forget(servername, kept?.session);
            s.destroy();
            // A session made under the caller's previous certificate or trust: this connection
            // was dialed before the material changed (a renewal) and the session is not resumed
            // into the new one, but the call is not lost for it: a full handshake instead, judged
            // by OpenSSL as any. Other refusals (revoked, untrusted, expired) end the call.
            if (refused.code === "ERR_TLS_SESSION_STALE" && cb) dial(undefined);
            else done(refused);
            return;
          }
          facts = kept!.facts;
        }
        const chain = facts?.chain ?? verified;
        if (chain) chains.set(s, chain);
        done(null, s);
      });
      // Tickets arrive after the handshake (TLS 1.3), once Node has verified the callee.
      if (o.sessions) {
        const sessions = o.sessions;
        s.on("session", (session: Buffer) => {
          if (!facts && verified)
            facts = {
              servername,
              chain: verified,
              certDigest: o.madeUnder.certDigest,
              trustDigest: o.madeUnder.trustDigest,
            };
          if (facts) sessions.keep(servername, session, facts);
        });
      }
      s.on("error", (err) => {
        // A session that led to an error is not offered again.
        if (kept) o.sessions?.forget(servername, kept.session);
        // The socket given up for a full handshake is not this call's to fail.
        if (s === sock) done(err);
      });
    };
    dial(o.sessions?.get(servername));
  };
}
