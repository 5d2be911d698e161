// What mesh:check observed, as plain data: gather.ts fills it in from the running mesh and
// the CA's state, checks.ts judges it without I/O, so the checks can be tested with literals.

/** A certificate as the service served it in the handshake. */
export interface ServedCert {
  readonly subject: string;
  readonly issuer: string;
  /** Lower-case hex without leading zeros, as the ledger keeps it. */
  readonly serial: string;
  /** ISO 8601. */
  readonly notBefore: string;
  readonly notAfter: string;
}

/** The ledger's row for a served certificate. */
export interface LedgerCert {
  readonly serial: string;
  readonly domain: string;
  readonly status: "VALID" | "EXPIRED" | "REVOKED" | "SUPERSEDED";
  readonly issuer: string;
  readonly generation: number;
  readonly revokedAt: string | null;
  readonly reason: string | null;
  readonly supersededBy: string | null;
}

export interface MtlsFacts {
  /** The mesh identity mesh:check presented ("edge.internal"); null when none was usable. */
  readonly identity: string | null;
  /** Why no HTTP answer came: "ECONNREFUSED", "refused in the handshake", "timeout", … */
  readonly error?: string;
  readonly status?: number;
  /** The policy rule a 403 named. */
  readonly rule?: string;
  readonly served?: ServedCert;
  /** OpenSSL's verdict on the served chain with bundle.pem and crls.pem; null when it verified. */
  readonly verifyError?: string | null;
}

export interface AdminFacts {
  /** From logs/mesh.json; null when mesh:up recorded none. */
  readonly port: number | null;
  readonly error?: string;
  /** Status of GET /healthz and GET /metrics. */
  readonly healthz?: number;
  /** Why /healthz answered 503, as the service said it (its body's first line, bounded). */
  readonly healthzReason?: string;
  readonly metrics?: number;
  /** The Date header of the /metrics answer, and the local clock (ms) when it was asked and answered. */
  readonly date?: string;
  readonly sentAt?: number;
  readonly receivedAt?: number;
  readonly trustBundleSha256?: string;
  readonly crlsSha256?: string;
  readonly policySha256?: string;
  /** mesh_crl_next_update_timestamp_seconds, in ms. */
  readonly crlNextUpdates?: readonly { readonly issuer: string; readonly at: number }[];
  /** mesh_identity_cert_last_renewal_timestamp_seconds, in ms: when the certificate in force was obtained. */
  readonly lastRenewalAt?: number;
  /** mesh_identity_cert_expiration_timestamp_seconds, in ms. */
  readonly certExpiresAt?: number;
}

export interface ServiceFacts {
  readonly name: string;
  readonly port: number;
  readonly mtls: MtlsFacts;
  readonly admin: AdminFacts;
  /** The ledger's row of the served serial; undefined when the CA never issued it (or nothing was served). */
  readonly ledger?: LedgerCert;
  /** A teaching toggle it presents instead of its identity (npm run mesh:toggle), if one is on. */
  readonly toggle?: { readonly kind: string; readonly serial: string; readonly since: string } | null;
}

export interface IssuerFacts {
  readonly id: string;
  readonly kind: "root" | "intermediate";
  readonly name: string;
  readonly generation: number;
  readonly state: "pending" | "published" | "retired";
  readonly notBefore: string;
  readonly notAfter: string;
  /** The nextUpdate of the CRL the CA last signed for it. */
  readonly crlNextUpdate: string | null;
}

/** The CA's state folder and the policy file, as they are on disk now. */
export interface CaFacts {
  readonly dir: string;
  readonly bundleSha256: string;
  readonly crlsSha256: string;
  readonly policyFile: string;
  readonly policySha256: string;
  /** Why the policy file on disk does not load (file:line), if it does not. */
  readonly policyError?: string;
  readonly issuers: readonly IssuerFacts[];
  /**
   * Online mode (mesh:up's default): services enrol and renew from the CA server and poll its
   * bundle and CRLs, so what counts as "expiring" and "behind" follows the lifetime and the poll.
   */
  readonly online?: OnlineFacts;
}

export interface OnlineFacts {
  readonly lifetimeMs: number;
  readonly pollMs: number;
  /** When the CA's bundle.pem and crls.pem last changed (ms since the epoch). */
  readonly bundleChangedAt: number;
  readonly crlsChangedAt: number;
  /** The CA's EST server, asked for its bundle over TLS checked against bundle.pem. */
  readonly server?: { readonly url: string; readonly status?: number; readonly error?: string };
  /** Further CA replicas on the same store (mesh:up --ca-replicas), asked the same way. */
  readonly replicas?: readonly { readonly url: string; readonly status?: number; readonly error?: string }[];
}

export interface MeshFacts {
  readonly ca: CaFacts;
  readonly services: readonly ServiceFacts[];
}
