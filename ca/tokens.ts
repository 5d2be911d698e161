// One-time enrolment tokens: `mt1.<secret>.<fingerprint>`, bound to one name.
// The ledger keeps only the token's SHA-256; the fingerprint of the signing root
// rides along so a new service can trust the CA server without trusting on first use.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { CertificateAuthority } from "./authority.ts";
import { formatDuration } from "./duration.ts";
import type { TokenRow } from "./ledger.ts";
import type { LedgerStore } from "./store/interface.ts";
import { CaError } from "./errors.ts";
import { validateDnsName } from "./names.ts";
import { reservedReason } from "./reserved.ts";

export const TOKEN_VERSION = "mt1";
export const TOKEN_DEFAULT_TTL_MS = 10 * 60_000;
/** A token is a bearer secret: a day is plenty to hand one to a deployment. */
export const TOKEN_MAX_TTL_MS = 24 * 3_600_000;
/** 32 random bytes and a SHA-256, each base64url without padding: 43 characters. */
const TOKEN_SHAPE = /^mt1\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/;

export interface RootFingerprint {
  /** base64url (no padding) SHA-256 of the root certificate's DER: what the token carries. */
  b64url: string;
  /** The same, as `openssl x509 -noout -fingerprint -sha256` prints it: AB:CD:… */
  hex: string;
}

export function rootFingerprint(der: ArrayBuffer | Uint8Array): RootFingerprint {
  const digest = createHash("sha256")
    .update(der instanceof Uint8Array ? der : new Uint8Array(der))
    .digest();
  return { b64url: digest.toString("base64url"), hex: digest.toString("hex").toUpperCase().match(/../g)!.join(":") };
}

/** What the ledger stores: SHA-256 (hex) of the whole token string. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export function isTokenShaped(value: string): boolean {
  return TOKEN_SHAPE.test(value);
}

export interface IssuedToken {
  token: string;
  domain: string;
  createdAt: Date;
  expiresAt: Date;
  ttl: string;
  /** The root of the signing generation, which the token's fingerprint names. */
  root: { name: string; generation: number; fingerprint: RootFingerprint; published: boolean };
  /** The live certificate that enrolling with this token will supersede (only with `replace`). */
  replaces?: { serial: string; notAfter: Date };
}

export interface TokenOptions {
  domain: string;
  ttlMs?: number;
  /**
   * Mint it even though the name holds a live certificate. Enrolling with the token then
   * supersedes that certificate, and the service holding it can no longer renew.
   */
  replace?: boolean;
}

/**
 * Makes a token for one name and records its hash. Needs no CA key: nothing is signed.
 * Refused (REFUSED) for a reserved name (ca/reserved.ts), and for a name with a live (valid,
 * unexpired) certificate unless `replace` is set: a token is the power to take that name over.
 */
export function createToken(ca: CertificateAuthority, opts: TokenOptions): IssuedToken {
  const domain = validateDnsName(opts.domain, { what: "--domain", allowWildcard: true });
  const reserved = reservedReason(domain, ca.trustDomain());
  if (reserved) throw new CaError("REFUSED", `no token for ${domain}: it is ${reserved}`);
  const ttlMs = opts.ttlMs ?? TOKEN_DEFAULT_TTL_MS;
  const live = liveCert(ca, domain);
  if (live && !opts.replace) {
    throw new CaError(
      "REFUSED",
      `${domain} has a live certificate (serial ${live.serial}, valid until ${live.notAfter.toISOString()}): enrolling with a token would supersede it and its service could no longer renew; pass --replace if that is what you want`,
    );
  }
  const generation = ca.issuerRow(ca.signerId()).generation;
  const rootRow = ca.issuerRow(`root-${generation}`);
  const fingerprint = rootFingerprint(ca.issuerCert(rootRow.id).rawData);
  const token = `${TOKEN_VERSION}.${randomBytes(32).toString("base64url")}.${fingerprint.b64url}`;
  const createdAt = ca.now();
  const expiresAt = new Date(createdAt.getTime() + ttlMs);
  ca.ledger.write(() =>
    ca.ledger.insertToken({
      hash: hashToken(token),
      name: domain,
      createdAt: createdAt.toISOString(),
      expiresAt: expiresAt.toISOString(),
      usedAt: null,
      usedBy: null,
    }),
  );
  return {
    token,
    domain,
    createdAt,
    expiresAt,
    ttl: formatDuration(ttlMs),
    root: { name: rootRow.name, generation, fingerprint, published: rootRow.state === "published" },
    ...(live ? { replaces: live } : {}),
  };
}

/** The name's current certificate, when it is valid and not expired by the CA's clock. */
function liveCert(ca: CertificateAuthority, name: string): { serial: string; notAfter: Date } | undefined {
  const row = ca.ledger.current(name);
  if (!row) return undefined;
  const notAfter = new Date(row.notAfter);
  return notAfter > ca.now() ? { serial: row.serial, notAfter } : undefined;
}

export type TokenVerdict =
  | { ok: true; row: TokenRow }
  | { ok: false; why: "malformed" | "unknown" | "wrong_name" | "used" | "expired" };

/**
 * Judges a presented token for a name. A token issued for another name is reported as
 * "wrong_name" without saying which name it is for; whether it is also used or expired
 * is not said either, so a caller learns nothing about other names' tokens.
 */
export function checkToken(ledger: LedgerStore, token: string, name: string, now: Date): TokenVerdict {
  if (!isTokenShaped(token)) return { ok: false, why: "malformed" };
  const hash = hashToken(token);
  const row = ledger.token(hash);
  // The lookup is by hash; compare again in constant time so the answer does not hinge on
  // how a database index compares strings.
  if (!row || !timingSafeEqual(Buffer.from(row.hash), Buffer.from(hash))) return { ok: false, why: "unknown" };
  if (row.name !== name) return { ok: false, why: "wrong_name" };
  if (row.usedAt !== null) return { ok: false, why: "used" };
  if (new Date(row.expiresAt) <= now) return { ok: false, why: "expired" };
  return { ok: true, row };
}
