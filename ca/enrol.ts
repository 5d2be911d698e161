// The online CA's two ways to get a certificate (EST, RFC 7030): a first one for
// a CSR and a one-time token, and a renewal authorised by the current certificate.
// No HTTP here: the server maps each EnrolError code to a status (ca/server/est.ts).
import type { CertificateAuthority, IssuedCert } from "./authority.ts";
import { CaError } from "./errors.ts";
import { csrKey, csrSignatureValid, CsrFormatError, parseCsr } from "./csr.ts";
import { leafNames, type signLeaf, signLeafDer } from "./issuance.ts";
import type { KeyType } from "./keys.ts";
import { certSerialAndKey } from "./leaf-der.ts";
import type { CertRow } from "./ledger.ts";
import type { LeafNames } from "./profiles.ts";
import { validateDnsName } from "./names.ts";
import { checkToken, hashToken, isTokenShaped } from "./tokens.ts";
import { normalSerial } from "../lib/crl.ts";
import { DerError } from "../lib/der.ts";
import { firstPemDer } from "../lib/pem.ts";

export type EnrolErrorCode =
  | "malformed_csr" // not a PKCS#10 request, bad signature, unsupported key, not one CN
  | "wrong_name" // the CSR asks for another name, or for more than one
  | "token_malformed"
  | "token_unknown"
  | "token_used"
  | "token_expired"
  | "token_wrong_name"
  | "cert_unknown" // the presented certificate is not one this CA issued
  | "cert_revoked"
  | "cert_superseded"
  | "cert_expired"
  | "generation_untrusted" // its generation is pending or retired
  | "same_key"; // a renewal must bring a new key

export class EnrolError extends Error {
  readonly code: EnrolErrorCode;
  /** The name the request was about, once known (for the log). */
  readonly subject?: string;
  constructor(code: EnrolErrorCode, message: string, subject?: string) {
    super(message);
    this.name = "EnrolError";
    this.code = code;
    this.subject = subject;
  }
}

export interface Enrolled extends IssuedCert {
  /** The leaf, then any intermediate, DER: what goes into the PKCS#7 answer. */
  chain: Uint8Array[];
}

export interface CsrIdentity {
  /** The key to certify, a DER SubjectPublicKeyInfo as the CSR carries it. */
  spki: Uint8Array;
  name: string;
  keyType: KeyType;
}

/**
 * Parses a DER CSR, checks its signature, and finds the one name it asks for: exactly one
 * CN, and DNS SANs (if any) that are that same name, nothing else.
 */
export async function csrIdentity(der: Uint8Array): Promise<CsrIdentity> {
  let csr: ReturnType<typeof parseCsr>;
  try {
    csr = parseCsr(der);
  } catch (err) {
    if (!(err instanceof CsrFormatError)) throw err;
    throw new EnrolError(
      "malformed_csr",
      "the body is not a DER PKCS#10 certificate request (base64-encode the DER CSR)",
    );
  }
  // The key's type first: a curve this CA does not sign (P-192, secp256k1) would otherwise read as a bad signature.
  let key: ReturnType<typeof csrKey>;
  try {
    key = csrKey(csr);
  } catch (err) {
    throw new EnrolError("malformed_csr", `the CSR's key is not supported: ${(err as Error).message}`);
  }
  if (!csrSignatureValid(csr, key.key))
    throw new EnrolError(
      "malformed_csr",
      "the CSR's signature does not verify: it was altered or signed with another key",
    );
  const cn = csr.cns;
  if (cn.length !== 1)
    throw new EnrolError(
      "malformed_csr",
      `the CSR's subject has ${cn.length} CNs: a service certificate has exactly one`,
    );
  let name: string;
  try {
    name = validateDnsName(cn[0]!, { what: "the CSR's CN" });
  } catch (err) {
    throw new EnrolError("malformed_csr", (err as Error).message);
  }
  // A URI SAN is not the CSR's to choose: the CA sets the one SPIFFE ID from the authenticated
  // name (issuance.ts svidNames) and ignores whatever URI the CSR asks for.
  const others = csr.sans.filter((n) => !(n.type === "dns" && n.value === name) && n.type !== "url");
  if (others.length > 0) {
    throw new EnrolError(
      "wrong_name",
      `the CSR asks for ${others.length} name(s) besides its CN ${name}: this CA signs exactly one name per certificate`,
      name,
    );
  }
  return { spki: csr.spki, name, keyType: key.keyType };
}

export interface OnlineIssueOptions {
  lifetimeMs: number;
  /** CRL distribution point URLs for a given issuer id. */
  cdp?: (issuerId: string) => string[];
  /** The server's group commit (ca/store/group-commit.ts): resolves once the certificate is durable. */
  commit?: (record: () => void) => Promise<void>;
}

export interface EnrolOptions extends OnlineIssueOptions {
  /**
   * The caller has just run authenticateToken for this identity and token (the server does, before
   * charging the name's budget): not read again. The token is still spent only by the commit's
   * conditional UPDATE (unused, unexpired), so a token spent or expired in between still refuses.
   */
  authenticated?: boolean;
}

/**
 * Whether a token is one this CA could still accept for some name: well formed, known, unused,
 * unexpired. A cheap look (a hash and an indexed read) before any parsing, for when the server
 * is refusing requests that fail to authenticate; authenticateToken gives the verdict.
 */
export function tokenOpen(ca: CertificateAuthority, token: string): boolean {
  if (!isTokenShaped(token)) return false;
  const row = ca.ledger.token(hashToken(token));
  return row !== undefined && row.usedAt === null && new Date(row.expiresAt) > ca.now();
}

/** Authenticates an enrolment: the token must be for exactly the CSR's name, unused and unexpired. */
export function authenticateToken(ca: CertificateAuthority, id: CsrIdentity, token: string): void {
  const verdict = checkToken(ca.ledger, token, id.name, ca.now());
  if (!verdict.ok) throw tokenError(verdict.why, id.name);
}

/** A first certificate: the token must be for exactly this name, unused and unexpired; it is spent with the issuance. */
export async function enrol(
  ca: CertificateAuthority,
  id: CsrIdentity,
  token: string,
  { authenticated, ...opts }: EnrolOptions,
): Promise<Enrolled> {
  const now = ca.now();
  if (!authenticated) authenticateToken(ca, id, token);
  // A token is the operator's say-so for this name: a service that lost its key enrols
  // again, and the certificate it had becomes SUPERSEDED.
  const current = ca.ledger.current(id.name);
  const hash = hashToken(token);
  const issued = await sign(
    ca,
    {
      names: leafNames({ domain: id.name }, ca.trustDomain()),
      keyType: id.keyType,
      publicKey: id.spki,
      source: "est-enrol",
      supersede: current?.serial,
      ...opts,
      spendToken: { hash, at: now.toISOString(), spent: () => tokenError("used", id.name) },
    },
    id.name,
  );
  return issued;
}

/**
 * A renewal, authorised by the certificate the caller presented over mTLS (already
 * verified by TLS against the published bundle): it must be this CA's record of a
 * current certificate for the same name, and the CSR must bring a new key.
 */
export async function reenrol(
  ca: CertificateAuthority,
  id: CsrIdentity,
  presented: Uint8Array | PresentedCert,
  opts: OnlineIssueOptions,
): Promise<Enrolled & { previous: CertRow }> {
  const { row, peer } = currentCert(ca, presented);
  if (id.name !== row.name)
    throw new EnrolError(
      "wrong_name",
      `the CSR asks for ${id.name}, but the certificate presented is ${row.name}'s: renewal keeps the name`,
      id.name,
    );
  if (Buffer.from(peer.spki).equals(Buffer.from(id.spki))) {
    throw new EnrolError(
      "same_key",
      "the CSR carries the current certificate's key: a renewal must bring a new key",
      row.name,
    );
  }
  const issued = await sign(
    ca,
    {
      names: JSON.parse(row.sans) as LeafNames,
      keyType: id.keyType,
      publicKey: id.spki,
      source: "est-renew",
      supersede: row.serial,
      ...opts,
    },
    row.name,
  );
  return { ...issued, previous: row };
}

/**
 * A certificate presented in a TLS handshake, read once: the CA server keeps it with the
 * connection (ca/server/est.ts), so requests on one connection do not read it again. What it
 * may do is decided per request, from the ledger (currentRow).
 */
export interface PresentedCert {
  der: Uint8Array;
  /** Hex, as encoded (normalSerial). */
  serial: string;
  spki: Uint8Array;
}

export function parsePresented(der: Uint8Array): PresentedCert {
  try {
    const { serial, spki } = certSerialAndKey(der);
    return { der, serial: normalSerial(serial), spki };
  } catch (err) {
    if (!(err instanceof DerError)) throw err;
    throw new EnrolError("cert_unknown", "the presented certificate is not readable");
  }
}

/**
 * The ledger row of a presented certificate, if it is still one that may act: issued here
 * (the exact bytes), not revoked, not superseded, not expired, of a published generation.
 */
export function currentRow(ca: CertificateAuthority, presented: Uint8Array | PresentedCert): CertRow {
  return currentCert(ca, presented).row;
}

/** currentRow, with the presented certificate read (a renewal needs its key too). */
function currentCert(
  ca: CertificateAuthority,
  presented: Uint8Array | PresentedCert,
): { row: CertRow; peer: PresentedCert } {
  const peer = presented instanceof Uint8Array ? parsePresented(presented) : presented;
  const row = ca.ledger.bySerial(peer.serial);
  // The exact bytes, compared without parsing the stored PEM again (each parse is ~0.25 ms).
  if (!row || !firstPemDer(row.pem, "CERTIFICATE")?.equals(Buffer.from(peer.der))) {
    throw new EnrolError("cert_unknown", "the presented certificate was not issued by this CA");
  }
  if (row.status === "revoked")
    throw new EnrolError(
      "cert_revoked",
      `the certificate ${row.serial} is revoked: a revoked identity cannot renew (enrol again with a new token)`,
      row.name,
    );
  if (row.status === "superseded")
    throw new EnrolError(
      "cert_superseded",
      `the certificate ${row.serial} was already renewed: renew with the newest certificate`,
      row.name,
    );
  if (new Date(row.notAfter) <= ca.now())
    throw new EnrolError(
      "cert_expired",
      `the certificate ${row.serial} expired at ${row.notAfter}: enrol again with a new token`,
      row.name,
    );
  const generation = ca.issuerRow(row.issuerId).generation;
  const state = ca.issuerRow(`root-${generation}`).state;
  if (state !== "published")
    throw new EnrolError(
      "generation_untrusted",
      `the certificate's root generation ${generation} is ${state === "retired" ? "retired" : "not published"}: enrol again with a new token (it is still live: npm run -s ca -- token --domain ${row.name} --replace)`,
      row.name,
    );
  return { row, peer };
}

async function sign(
  ca: CertificateAuthority,
  opts: Omit<Parameters<typeof signLeaf>[1], "days">,
  name: string,
): Promise<Enrolled> {
  let issued: IssuedCert;
  let der: Uint8Array;
  try {
    ({ issued, der } = await signLeafDer(ca, { ...opts, days: 1 }));
  } catch (err) {
    // Another request renewed or revoked this name between our check and the commit.
    if (err instanceof CaError && (err.code === "REFUSED" || err.code === "ALREADY_EXISTS")) {
      throw new EnrolError(
        "cert_superseded",
        `${name} changed while this request was signed (another renewal or revocation won): try again`,
        name,
      );
    }
    throw err;
  }
  return { ...issued, chain: [der, ...chainDer(ca, issued.issuerId)] };
}

// The intermediates a leaf is served with, DER, read once per issuer (a CA certificate never
// changes under its id) instead of from its file for every enrolment.
const chains = new WeakMap<CertificateAuthority, Map<string, Uint8Array[]>>();

function chainDer(ca: CertificateAuthority, issuerId: string): Uint8Array[] {
  let byIssuer = chains.get(ca);
  if (!byIssuer) chains.set(ca, (byIssuer = new Map()));
  let chain = byIssuer.get(issuerId);
  if (!chain) {
    chain = [];
    for (let row = ca.issuerRow(issuerId); row.kind === "intermediate"; row = ca.issuerRow(row.parent!))
      chain.push(new Uint8Array(ca.issuerCert(row.id).rawData));
    byIssuer.set(issuerId, chain);
  }
  return chain;
}

function tokenError(why: "malformed" | "unknown" | "wrong_name" | "used" | "expired", name: string): EnrolError {
  switch (why) {
    case "malformed":
      return new EnrolError(
        "token_malformed",
        "the enrolment token is malformed (expected mt1.<secret>.<fingerprint>, from: npm run ca -- token)",
        name,
      );
    case "unknown":
      return new EnrolError("token_unknown", "the enrolment token is unknown to this CA", name);
    case "wrong_name":
      return new EnrolError("token_wrong_name", `the enrolment token is not valid for ${name}`, name);
    case "used":
      return new EnrolError("token_used", "the enrolment token was already used: ask for a new one", name);
    case "expired":
      return new EnrolError("token_expired", "the enrolment token has expired: ask for a new one", name);
  }
}
