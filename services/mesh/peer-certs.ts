// What a service concludes from a peer's certificate, worked out once per certificate rather
// than once per handshake. Reading the certificate through Node and checking its names on every
// new connection was most of what made a mesh service's handshake cost 1.15x a bare Node https
// server's (issue 16, docs/bench.md). The same certificate says the same thing every time it is
// presented, so it is judged once and found again by its DER (see PeerCerts).
import type { PeerCertificate, TLSSocket } from "node:tls";
import { identityOf, normaliseSerial, type IdentityResult } from "./peer-identity.ts";
import { chainOf, type VerifiedChain } from "./revocations.ts";
import { sessionPeerKey } from "../../lib/tls-session.ts";

export interface CertFacts {
  /** Who it names, under the trust domain of the cache; or why it names nobody. */
  readonly identity: IdentityResult;
  readonly serial: string;
  /** The chain OpenSSL verified when it was first presented in a full handshake (see VerifiedChain). */
  chain: VerifiedChain | undefined;
  /** Node's parsed form, kept for the facts a forwarder passes on (see server.ts forwardPeer). */
  readonly cert: PeerCertificate;
}

/** Certificates remembered, most recently presented last: far more than a mesh has workloads. */
export const PEER_CERTS_MAX = 1_024;

/**
 * A bounded cache of CertFacts by the certificate's DER, least recently presented evicted
 * first. One per TLS material (a new trust domain or trust bundle makes a new one): nothing in
 * it outlives the material it was judged under. It is consulted only after OpenSSL verified the
 * chain, so a peer can fill it only with certificates the CA issued.
 *
 * The DER is found without asking Node for the certificate: every way Node offers costs a
 * decode in OpenSSL 3 per connection. getPeerCertificate() converts the public key to a legacy
 * key and hashes the certificate three times (~60–170 µs); getPeerX509Certificate() copies
 * each certificate the client sent with its leaf by re-parsing it (~100–200 µs per copy, most
 * of it OpenSSL 3's key decoder). getSession() serialises the TLS session, which holds the
 * peer's certificate as it arrived (~3–10 µs): the certificate is read out of it by its place
 * in OpenSSL's session encoding ([3] of SSL_SESSION_ASN1, ssl/ssl_asn1.c, unchanged since
 * OpenSSL 1.0). The first time a certificate is seen, the DER read from the session must be
 * byte for byte the one getPeerCertificate() gives, or the session is never read again.
 */
export class PeerCerts {
  private readonly byDer = new Map<string, CertFacts>();
  /** False once a session's encoding did not give the peer's certificate (see the class comment). */
  private sessionsReadable = true;

  constructor(
    readonly trustDomain: string,
    private readonly max = PEER_CERTS_MAX,
  ) {}

  get size(): number {
    return this.byDer.size;
  }

  /**
   * The facts of the certificate the peer of `sock` presented, undefined when it presented
   * none. On a full handshake the chain OpenSSL verified is recorded the first time a
   * certificate is seen (a resumed session has no chain to record).
   */
  of(sock: TLSSocket, resumed: boolean): CertFacts | undefined {
    let cert: PeerCertificate | undefined;
    let key = this.sessionsReadable ? sessionPeerKey(sock) : undefined;
    if (key === undefined) {
      cert = sock.getPeerCertificate();
      if (!cert?.raw) return undefined;
      key = cert.raw.toString("latin1");
    }
    const known = this.byDer.get(key);
    if (known) {
      // Least recently used goes first: re-inserting moves it to the end.
      this.byDer.delete(key);
      this.byDer.set(key, known);
      if (known.chain === undefined && !resumed && known.identity.ok) known.chain = verifiedChain(sock);
      return known;
    }
    cert ??= sock.getPeerCertificate();
    if (!cert?.raw) return undefined;
    const der = cert.raw.toString("latin1");
    if (der !== key) {
      this.sessionsReadable = false;
      key = der;
    }
    const identity = identityOf(cert, this.trustDomain);
    const facts: CertFacts = {
      identity,
      serial: normaliseSerial(cert.serialNumber),
      // Only a usable identity is ever re-checked on resumption: a refused one needs no chain.
      chain: !resumed && identity.ok ? verifiedChain(sock) : undefined,
      cert,
    };
    this.byDer.set(key, facts);
    if (this.byDer.size > this.max) this.byDer.delete(this.byDer.keys().next().value!);
    return facts;
  }
}

// The session reader lives in lib/ (the CA server uses it too); re-exported for this module's users.
export { sessionPeerDer } from "../../lib/tls-session.ts";

/**
 * The chain as OpenSSL verified it in this handshake (getPeerCertificate(true): the chain
 * completed with the root from the socket's own context). ~0.3–0.9 ms, hence once per certificate.
 */
function verifiedChain(sock: TLSSocket): VerifiedChain {
  return chainOf(sock.getPeerCertificate(true));
}
