// What the dashboard makes of a refusal's or a failure's reason: a fix in one line, which side
// counts it, and which handshake refusals are the mesh keeping a stranger out, as it should.

/** What to do about a handshake refusal, in one line (the log's sentence says what happened). */
export const FIXES: Record<string, string> = {
  no_client_cert: "present a certificate from the mesh CA (curl --cert/--key)",
  unknown_ca: "use a certificate from this mesh's CA, or add its root to the trust bundle",
  expired: "renew it: npm run ca -- renew --domain <name>",
  not_yet_valid: "check the clocks of the CA host and of the client",
  revoked: "give the peer a new identity: restart mesh:up (online), or npm run ca -- issue --domain <name> (file mode)",
  crl_missing: "publish the CA's CRLs: npm run ca -- crl",
  crl_expired: "re-sign the CRLs: npm run ca -- crl",
  crl_not_yet_valid: "check this host's clock against the CA's",
  server_revoked: "the callee's certificate was revoked: give it a new identity (restart mesh:up online)",
  callee_withdrawn: "the caller closed its connection: the callee's certificate is no longer accepted",
  server_untrusted: "give the caller the callee's root in its trust bundle",
  rejected_in_handshake: "see the callee's tls.handshake_failed line for why",
  upstream_down: "start the callee (npm run mesh:up)",
};

/** Upstream failures the callee never saw, so they are counted on the caller's side. */
export const CALLER_ONLY = new Set([
  "upstream_down",
  "timeout",
  "network",
  "server_untrusted",
  "server_revoked",
  "callee_withdrawn",
  "server_cert_expired",
  "server_cert_not_yet_valid",
  "server_name_mismatch",
]);

/**
 * Handshake refusals that are the mesh doing its job: no certificate, an old TLS version, no
 * shared cipher. (`unknown_ca` is too when the issuer is not one of ours: the model asks.)
 */
export const KEPT_OUT = new Set(["no_client_cert", "old_tls_version", "no_shared_cipher"]);
