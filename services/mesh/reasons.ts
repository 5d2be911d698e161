// Turns what OpenSSL and undici report into short stable reasons and one sentence a person
// can act on: for a peer refused in the handshake, and for an upstream call that failed.
import type { X509Certificate } from "node:crypto";
import type { PresentedCert } from "./peer-identity.ts";
import { pathOf, chainFault, type ChainFaultReason } from "./chain.ts";
import type { TrustInfo } from "./material.ts";

export type HandshakeReason =
  | "no_client_cert"
  | "unknown_ca"
  | "expired"
  | "not_yet_valid"
  | "revoked"
  | "crl_missing"
  | "crl_expired"
  | "crl_not_yet_valid"
  | "bad_certificate"
  | "ambiguous_identity"
  | "spiffe_ambiguous"
  | "spiffe_invalid"
  | "spiffe_mismatch"
  | "spiffe_foreign_domain"
  | ChainFaultReason
  | "protocol"
  | "server_cert_rejected"
  | "client_aborted"
  | "handshake_timeout"
  | "old_tls_version"
  | "no_shared_cipher"
  | "session_unverifiable"
  | "tls_error";

const UNKNOWN_CA = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
]);

/**
 * Why a handshake OpenSSL did not verify is refused. `code` is the socket's
 * authorizationError, `peer` the leaf as getPeerX509Certificate() gives it, with the
 * certificates the client sent after it as its issuerCertificate links. OpenSSL goes on
 * after the first error and reports the last (with CRLs on, a stranger's or a broken chain
 * mostly ends as UNABLE_TO_GET_CRL or UNSPECIFIED), so the chain itself is read first:
 * where it leads (by signature, since a look-alike CA has the very same name), then its
 * structure; only then is OpenSSL's code explained.
 */
export function handshakeReason(
  code: string,
  peer: X509Certificate | undefined,
  shown: PresentedCert | undefined,
  trust: TrustInfo,
  service: string,
): { reason: HandshakeReason; sentence: string } {
  const who = shown?.subject
    ? `the client's certificate (${shown.subject}, serial ${shown.serial})`
    : "the client's certificate";
  const trusted = `${service} trusts only: ${trust.describe}`;
  if (!shown || !peer) {
    return {
      reason: "no_client_cert",
      sentence: `the client sent no certificate; every caller of ${service} must present one issued by the mesh CA (${trusted})`,
    };
  }
  const path = pathOf(peer, trust);
  const { anchor, name } = path;
  if (anchor === "lookalike") {
    return {
      reason: "unknown_ca",
      sentence: `${who} chains up to ${name}, but not to the ${name} this service trusts (the signature does not verify against its key): another CA with the same name; ${trusted}`,
    };
  }
  if (anchor === "stranger") {
    return {
      reason: "unknown_ca",
      sentence: `${who} was signed by ${shown.issuer ?? "an unknown issuer"}, a CA this service does not trust; ${trusted}`,
    };
  }
  const fault = chainFault(path.certs);
  if (fault) return { reason: fault.reason, sentence: `${who} comes with a broken chain: ${fault.sentence}` };
  if (UNKNOWN_CA.has(code)) {
    return {
      reason: "unknown_ca",
      sentence: `${who} was signed by ${shown.issuer ?? "an unknown issuer"}, and its chain does not verify against the CAs this service trusts (${code}); ${trusted}`,
    };
  }
  switch (code) {
    case "CERT_HAS_EXPIRED":
      return {
        reason: "expired",
        sentence: `${who} expired on ${shown.validTo}; renew it (npm run ca -- renew --domain <name>)`,
      };
    case "CERT_NOT_YET_VALID":
      return {
        reason: "not_yet_valid",
        sentence: `${who} is valid only from ${shown.validFrom}; check the clocks of the CA host and of the client`,
      };
    case "CERT_REVOKED":
      // A revoked identity can never renew; how it gets a new one depends on how it got this one.
      return {
        reason: "revoked",
        sentence: `${who} has been revoked by the CA, and a revoked identity cannot renew: give the client a new one (online: restart mesh:up, which moves its state folder aside and enrols it with a new one-time token; file mode: npm run ca -- issue --domain <name>)`,
      };
    case "UNABLE_TO_GET_CRL":
      return {
        reason: "crl_missing",
        sentence: `no current CRL for ${shown.issuer} in ${service}'s crls.pem, so no certificate it issued can be checked; have the CA publish its CRLs`,
      };
    case "CRL_NOT_YET_VALID":
      // Re-signing would stamp another "now" from the CA's clock: the fix is the clocks.
      return {
        reason: "crl_not_yet_valid",
        sentence: `the CRL of ${shown.issuer} that ${service} holds is dated later than ${service}'s clock, so no client can be checked: this host's clock is behind the CA's; check time sync (NTP) on both hosts (re-signing the CRLs does not help)`,
      };
    case "CRL_HAS_EXPIRED":
      return {
        reason: "crl_expired",
        sentence: `the CRL of ${shown.issuer} that ${service} holds is out of date, which locks every client out; have the CA re-sign its CRLs`,
      };
    case "INVALID_PURPOSE":
      return {
        reason: "bad_certificate",
        sentence: `${who} may not be used for client authentication (${peer.ca ? "it is a CA certificate" : "its key usage or EKU does not allow it"})`,
      };
    default:
      return {
        reason: "tls_error",
        sentence: `${who} failed OpenSSL's verification (${code || "no reason given"}); check it and the chain it was sent with: npm run ca -- verify --cert <file> --purpose client`,
      };
  }
}

/** TLSSocket.getProtocol() names of the versions below the mesh's minimum. */
const OLD_VERSIONS: Record<string, string> = { SSLv3: "SSL 3.0", TLSv1: "TLS 1.0", "TLSv1.1": "TLS 1.1" };

/** Alerts a client sends when it will not accept the server's certificate. */
const PEER_REFUSED_US = new Set([
  "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
  "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE",
  "ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN",
  "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED",
]);

/** Errors surfacing in `tlsClientError`: the peer never got as far as presenting anything. */
export function clientErrorReason(
  err: NodeJS.ErrnoException,
  own?: { subject: string; issuer: string; serial: string },
  seen: { protocol?: string | null; handshakeTimeoutMs?: number } = {},
): { reason: HandshakeReason; sentence: string } {
  const code = err.code ?? "";
  if (code === "ERR_SSL_UNSUPPORTED_PROTOCOL") {
    // OpenSSL records the version the client asked for before it refuses it.
    const offered = OLD_VERSIONS[seen.protocol ?? ""];
    return {
      reason: "old_tls_version",
      sentence: `the client offered ${offered ?? "only a TLS version older than 1.2"}; the mesh requires TLS 1.2 or later: upgrade the client or its TLS settings`,
    };
  }
  if (PEER_REFUSED_US.has(code)) {
    const ours = own
      ? `this service's certificate (${own.subject}, serial ${own.serial}, issued by ${own.issuer})`
      : "this service's certificate";
    return {
      reason: "server_cert_rejected",
      sentence: `the client refused ${ours} (${code}): it does not trust the CA that signed it; every client must trust that CA (npm run ca -- bundle) before a service presents a certificate from it`,
    };
  }
  if (code === "ERR_SSL_NO_SHARED_CIPHER") {
    return {
      reason: "no_shared_cipher",
      sentence:
        "the client offered no cipher suite the mesh accepts (TLS 1.2 needs ECDHE with AES-GCM or ChaCha20-Poly1305, never CBC or SHA-1; TLS 1.3 needs nothing more): upgrade the client or its TLS settings",
    };
  }
  if (code === "ERR_TLS_HANDSHAKE_TIMEOUT") {
    const within = seen.handshakeTimeoutMs === undefined ? "in time" : `in ${seen.handshakeTimeoutMs / 1000} s`;
    return {
      reason: "handshake_timeout",
      sentence: `the client opened a connection but did not complete a TLS handshake ${within}; dropped`,
    };
  }
  if (code === "ERR_SSL_HTTP_REQUEST") {
    return {
      reason: "protocol",
      sentence: "the client spoke plain HTTP to a TLS port; use https:// with a client certificate",
    };
  }
  if (code === "ECONNRESET" && own) {
    // Node's TLS client checks the server's certificate only once its side of the handshake
    // is done, and then just drops the connection: no alert tells the server why.
    return {
      reason: "client_aborted",
      sentence: `the client dropped the connection during the handshake without saying why; most often it does not trust the CA that signed this service's certificate (${own.subject}, serial ${own.serial}, issued by ${own.issuer})`,
    };
  }
  if (code.startsWith("ERR_SSL_") || code === "ECONNRESET") {
    return { reason: "protocol", sentence: `the client did not speak TLS or broke off the handshake (${code})` };
  }
  return { reason: "tls_error", sentence: `the TLS handshake failed: ${code || err.message}` };
}

export type HttpErrorReason = "request_timeout" | "headers_too_large" | "bad_request";

/** Why an authenticated peer's request was refused before it reached the mesh (Node's clientError). */
export function httpErrorReason(
  err: NodeJS.ErrnoException,
  limits: { headersTimeoutMs: number; requestTimeoutMs: number; maxHeaderSize: number },
): { reason: HttpErrorReason; status: number; sentence: string } {
  const code = err.code ?? "";
  if (code === "ERR_HTTP_REQUEST_TIMEOUT") {
    return {
      reason: "request_timeout",
      status: 408,
      sentence: `the client did not send its request in time (headers within ${limits.headersTimeoutMs / 1000} s, the whole request within ${limits.requestTimeoutMs / 1000} s); the connection was closed`,
    };
  }
  if (code === "HPE_HEADER_OVERFLOW") {
    return {
      reason: "headers_too_large",
      status: 431,
      sentence: `the client's request headers were larger than ${limits.maxHeaderSize} bytes; the connection was closed`,
    };
  }
  return {
    reason: "bad_request",
    status: 400,
    sentence: `the client sent something that is not a valid HTTP/1.1 request (${code || err.message}); the connection was closed`,
  };
}

export type UpstreamReason =
  | "upstream_down"
  | "rejected_in_handshake"
  | "callee_withdrawn"
  | "server_untrusted"
  | "server_revoked"
  | "server_crl_missing"
  | "server_crl_expired"
  | "server_crl_not_yet_valid"
  | "server_cert_expired"
  | "server_cert_not_yet_valid"
  | "server_tls_mismatch"
  | "server_name_mismatch"
  | "timeout"
  | "forbidden"
  | "upstream_error"
  | "network";

/**
 * A caller's view of a failed call. undici reports a peer that refused our certificate
 * after a TLS 1.3 handshake only as "other side closed" (UND_ERR_SOCKET): say what it
 * most likely means instead of repeating that.
 */
export function upstreamReason(
  err: unknown,
  upstream: string,
  addr: string,
): { reason: UpstreamReason; code: string; sentence: string; refusedFor?: "expired" } {
  const codes: string[] = [];
  let byClock: string | undefined;
  for (
    let e = err as { code?: unknown; cause?: unknown; name?: unknown; byClock?: unknown } | undefined, i = 0;
    e && i < 5;
    e = e.cause as typeof e, i++
  ) {
    if (typeof e.byClock === "string") byClock ??= e.byClock;
    if (typeof e.code === "string") codes.push(e.code);
    else if (typeof e.name === "string" && (e.name === "TimeoutError" || e.name === "AbortError")) codes.push(e.name);
  }
  const code = codes[codes.length - 1] ?? "UNKNOWN";
  const has = (...c: string[]) => codes.some((x) => c.includes(x));
  if (has("ECONNREFUSED"))
    return { reason: "upstream_down", code, sentence: `nothing listens at ${addr}; is ${upstream} running?` };
  if (
    has(
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
      "SELF_SIGNED_CERT_IN_CHAIN",
      "DEPTH_ZERO_SELF_SIGNED_CERT",
      "UNABLE_TO_GET_ISSUER_CERT",
    )
  ) {
    return {
      reason: "server_untrusted",
      code,
      sentence: `${upstream}'s certificate at ${addr} was not issued by a CA in our trust bundle`,
    };
  }
  if (has("CERT_REVOKED")) {
    return {
      reason: "server_revoked",
      code,
      sentence: `${upstream}'s certificate at ${addr} has been revoked by the CA, so the call was refused; ${upstream} needs a new identity (online: restart mesh:up, which enrols it again; file mode: npm run ca -- issue --domain ${upstream}.internal)`,
    };
  }
  if (has("UNABLE_TO_GET_CRL")) {
    return {
      reason: "server_crl_missing",
      code,
      sentence: `no current CRL for the CA that signed ${upstream}'s certificate is in our crls.pem, so it cannot be checked and the call was refused; have the CA publish its CRLs (npm run ca -- crl)`,
    };
  }
  if (has("CRL_HAS_EXPIRED")) {
    return {
      reason: "server_crl_expired",
      code,
      sentence: `the CRL we hold for the CA that signed ${upstream}'s certificate is past its nextUpdate, so the call was refused; have the CA re-sign its CRLs (npm run ca -- crl)`,
    };
  }
  if (has("CRL_NOT_YET_VALID")) {
    return {
      reason: "server_crl_not_yet_valid",
      code,
      sentence: `the CRL we hold for the CA that signed ${upstream}'s certificate is dated later than our clock, so the call was refused: this host's clock is behind the CA's: check time sync (NTP) on both hosts (re-signing the CRLs does not help)`,
    };
  }
  if (
    has(
      "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE",
      "ERR_SSL_NO_SHARED_CIPHER",
      "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION",
      "ERR_SSL_UNSUPPORTED_PROTOCOL",
    )
  ) {
    return {
      reason: "server_tls_mismatch",
      code,
      sentence: `${upstream} at ${addr} and this service agreed on no TLS version or cipher suite (the mesh allows TLS 1.2 or later, and in TLS 1.2 only ECDHE suites with AES-GCM or ChaCha20-Poly1305); is something else listening there, or is ${upstream} configured otherwise?`,
    };
  }
  // This process's moved clock (MESH_CLOCK_OFFSET_MS) refused it: the sentence says the clock is why.
  if (byClock !== undefined)
    return {
      reason: has("CERT_HAS_EXPIRED") ? "server_cert_expired" : "server_cert_not_yet_valid",
      code,
      sentence: byClock,
    };
  if (has("CERT_HAS_EXPIRED"))
    return { reason: "server_cert_expired", code, sentence: `${upstream}'s certificate has expired; renew it` };
  if (has("CERT_NOT_YET_VALID")) {
    return {
      reason: "server_cert_not_yet_valid",
      code,
      sentence: `${upstream}'s certificate at ${addr} is not valid yet by this host's clock: the clock of the CA that signed it, or this host's, is wrong; check time sync (NTP) on both`,
    };
  }
  if (has("ERR_TLS_CERT_ALTNAME_INVALID")) {
    // calleeIdentity (client.ts): it names us, but its SPIFFE ID is not one usable identity.
    const spiffe = errorChain(err).find((e) => typeof e.reason === "string" && e.reason.startsWith("spiffe_"));
    return {
      reason: "server_name_mismatch",
      code,
      sentence: spiffe
        ? `${upstream}'s certificate at ${addr} names ${upstream} but is not one usable mesh identity (${String(spiffe.reason)}): ${String(spiffe.message).replace(/^the certificate of [^ ]+ is not a usable SPIFFE identity \([^)]*\): /, "")}`
        : `the server at ${addr} is not ${upstream} (its certificate does not name it); check the --upstream address`,
    };
  }
  if (
    has(
      "UND_ERR_CONNECT_TIMEOUT",
      "UND_ERR_HEADERS_TIMEOUT",
      "UND_ERR_BODY_TIMEOUT",
      "TimeoutError",
      "AbortError",
      "ETIMEDOUT",
    )
  ) {
    return { reason: "timeout", code, sentence: `${upstream} at ${addr} did not answer in time` };
  }
  // Another TLS stack (not Node's, which only closes) refused our certificate with an alert:
  // certificate_expired, or bad_certificate (OpenSSL's alert for one not yet valid, among others).
  // The caller then judges our certificate's dates by its clock (callee-clock.ts).
  if (has("ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED"))
    return {
      reason: "rejected_in_handshake",
      code: "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED",
      sentence: `${upstream} refused our certificate as expired (TLS alert certificate_expired)`,
      refusedFor: "expired",
    };
  if (
    has(
      "UND_ERR_SOCKET",
      "ECONNRESET",
      "EPIPE",
      "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
      "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE",
    )
  ) {
    return {
      reason: "rejected_in_handshake",
      code,
      sentence: `${upstream} closed the connection without an HTTP answer: it most likely refused our certificate (revoked, expired, or from a CA it does not trust); see tls.handshake_failed in ${upstream}'s log`,
    };
  }
  return { reason: "network", code, sentence: `the call to ${upstream} at ${addr} failed (${code})` };
}

/** An error and its causes, at most five deep. */
function errorChain(err: unknown): Array<{ reason?: unknown; message?: unknown }> {
  const out: Array<{ reason?: unknown; message?: unknown; cause?: unknown }> = [];
  for (let e = err as { cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++)
    out.push(e as { reason?: unknown; message?: unknown });
  return out;
}

/**
 * A call that failed because this caller itself closed the connection it was on: new CRLs or a
 * new bundle no longer accept the callee's certificate (client.ts closes such connections at
 * once). undici reports that close like any other ("other side closed"): without this, it would
 * read as the callee refusing us.
 */
export function calleeWithdrawn(
  upstream: string,
  addr: string,
  why: string,
): { reason: UpstreamReason; sentence: string } {
  return {
    reason: "callee_withdrawn",
    sentence: `this caller closed its connection to ${upstream} at ${addr} mid-call: ${upstream}'s certificate is no longer accepted (${why}); ${upstream} needs a new identity (online: restart mesh:up, which enrols it again; file mode: npm run ca -- issue --domain ${upstream}.internal)`,
  };
}
