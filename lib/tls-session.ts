// The peer's certificate of a TLS connection, read out of its session's encoding: every way Node
// offers to get the certificate costs a decode in OpenSSL 3 per connection. getPeerCertificate()
// converts the public key to a legacy key and hashes the certificate three times (~60–170 µs);
// getPeerX509Certificate() copies each certificate the client sent with its leaf by re-parsing it
// (~100–200 µs per copy). getSession() serialises the TLS session, which holds the peer's
// certificate as it arrived (~3–10 µs): the certificate is read out of it by its place in
// OpenSSL's session encoding ([3] of SSL_SESSION_ASN1, ssl/ssl_asn1.c, unchanged since OpenSSL
// 1.0). Callers check it against getPeerCertificate().raw before they rely on it (services/mesh/
// peer-certs.ts, ca/server/est.ts). Shared by the services and the CA server.
import type { TLSSocket } from "node:tls";
import { readOne, readTlv } from "./der.ts";

/**
 * The peer's certificate from the socket's TLS session encoding, or undefined when it has none
 * or does not read as expected: SSL_SESSION_ASN1 is a SEQUENCE whose only [3] field is the peer
 * certificate. The encoding also holds the session's master secret (TLS 1.2): it is wiped
 * before this returns, and only a copy of the certificate leaves.
 */
export function sessionPeerDer(sock: TLSSocket): Buffer | undefined {
  const key = sessionPeerKey(sock);
  return key === undefined ? undefined : Buffer.from(key, "latin1");
}

/** sessionPeerDer() as a string of its bytes (latin1): a cache's key, without a Buffer copy. */
export function sessionPeerKey(sock: TLSSocket): string | undefined {
  const session = sock.getSession();
  if (!session) return undefined;
  try {
    const seq = readOne(session);
    if (seq.tag !== 0x30) return undefined;
    for (let at = seq.start, n = 0; at < seq.end && n < 32; n++) {
      const field = readTlv(session, at, seq.end);
      if (field.tag === 0xa3) {
        const cert = readTlv(session, field.start, field.end);
        return cert.tag === 0x30 && cert.end === field.end ? session.toString("latin1", cert.at, cert.end) : undefined;
      }
      at = field.end;
    }
    return undefined;
  } catch {
    return undefined;
  } finally {
    session.fill(0);
  }
}
