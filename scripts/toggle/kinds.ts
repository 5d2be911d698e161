// The teaching toggles' catalogue: each bad identity a service can be made to present, in the
// words --list prints. What each looks like on the wire is in docs/toggles.md, and is what
// `npm run mesh:toggle` prints after flipping one, observed on the running mesh.

export const TOGGLE_KINDS = [
  "expired",
  "not-yet-valid",
  "foreign-ca",
  "revoked",
  "no-client-auth",
  "other-name",
  "two-spiffe-ids",
] as const;

export type ToggleKind = (typeof TOGGLE_KINDS)[number];

export function isToggleKind(s: string): s is ToggleKind {
  return (TOGGLE_KINDS as readonly string[]).includes(s);
}

/** One line each, for --list and the command's first line after flipping. */
export const KIND_ABOUT: Readonly<Record<ToggleKind, string>> = {
  expired: "its own name from the mesh's CA, but valid only until an hour ago",
  "not-yet-valid": "its own name from the mesh's CA, valid only from tomorrow (a CA clock ahead)",
  "foreign-ca": "its own name from a real other CA (another name, another key) that nobody in the mesh trusts",
  revoked: "its own name from the mesh's CA, then revoked: the CA's CRL lists it (reason cessationOfOperation)",
  "no-client-auth":
    "its own name from the mesh's CA with extendedKeyUsage serverAuth only: fine as a server, not as a client",
  "other-name":
    "a valid certificate from the mesh's CA for another service's name (a secret mounted in the wrong place)",
  "two-spiffe-ids": "its own name from the mesh's CA carrying two SPIFFE IDs (an X509-SVID has exactly one)",
};

/** What it means and the fix, as docs/toggles.md's table says them. */
export const KIND_LESSON: Readonly<Record<ToggleKind, { means: string; fix: string }>> = {
  expired: {
    means: "the identity was not renewed in time (the CA was unreachable, the agent stalled or was stopped)",
    fix: "find why renewal stopped (identity.renew_failed in its log, mesh:check); an expired identity cannot renew: enrol again with a token",
  },
  "not-yet-valid": {
    means: "the clock of the CA that signed it, or of the peer judging it, is wrong",
    fix: "fix the clock that is wrong (NTP) on the CA host or the peer; re-signing does not help while a clock is off",
  },
  "foreign-ca": {
    means: "the certificate comes from a CA outside the trust bundle (another environment's, a test CA)",
    fix: "issue it from the mesh's CA (enrol with a token); only ever add a CA to the bundle on purpose (npm run ca -- bundle)",
  },
  revoked: {
    means: "the CA withdrew this certificate (a stolen key, a decommissioned workload); every peer holds the CRL",
    fix: "a revoked identity never comes back: enrol a new one (mesh:up moves the folder aside and enrols it afresh)",
  },
  "no-client-auth": {
    means: "its extendedKeyUsage allows serverAuth only, so it may serve but not call",
    fix: "issue it with clientAuth too (the mesh CA's profile always includes both): enrol again",
  },
  "other-name": {
    means: "the service holds another workload's certificate (a secret mounted in the wrong place, a copy-paste)",
    fix: "give each workload its own identity: enrol it with a token for its own name",
  },
  "two-spiffe-ids": {
    means: "an X509-SVID carries exactly one SPIFFE ID; with two, nobody can say which workload it is",
    fix: "issue it from the mesh's CA, which always sets exactly one SPIFFE ID, from the name",
  },
};
