// Certificate revocation lists (RFC 5280 5.1), read and written without a certificate
// library: the CA keeps each issuer's revokedCertificates encoded and re-signs in linear time,
// and a service reads which serials are revoked and when its CRLs lapse (Node parses no CRLs).
// Signing is the CA's (ca/crl.ts); nothing here holds a key.
import {
  children,
  concat,
  DerError,
  elements,
  firstChild,
  hexOf,
  integerHex,
  isTime,
  readTime,
  readTlv,
  sequence,
  time,
  tlv,
  type Tlv,
} from "./der.ts";

/** Commands and services warn when a CRL has less than this left before its nextUpdate. */
export const CRL_WARN_DAYS = 7;

export const REVOCATION_REASONS = [
  "unspecified",
  "keyCompromise",
  "cACompromise",
  "affiliationChanged",
  "superseded",
  "cessationOfOperation",
  "certificateHold",
  "privilegeWithdrawn",
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export interface CrlEntry {
  serial: string;
  revokedAt: Date;
  reason: RevocationReason;
}

const REASON_CODE: Record<RevocationReason, number> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  privilegeWithdrawn: 9,
};
// Extension { extnID id-ce-cRLReasons, extnValue OCTET STRING { ENUMERATED } }
const REASON_OID = new Uint8Array([0x06, 0x03, 0x55, 0x1d, 0x15]);

/** One revokedCertificates entry (RFC 5280 5.1.2.6); "unspecified" carries no reason code (5.3.1). */
export function encodeEntry(e: CrlEntry): Uint8Array<ArrayBuffer> {
  const parts = [integerHex(e.serial), time(e.revokedAt)];
  if (e.reason !== "unspecified") {
    const value = tlv(0x04, tlv(0x0a, new Uint8Array([REASON_CODE[e.reason]])));
    parts.push(sequence([sequence([REASON_OID, value])]));
  }
  return sequence(parts);
}

export function encodeEntries(entries: readonly CrlEntry[]): Uint8Array<ArrayBuffer> {
  return concat(entries.map(encodeEntry));
}

/** The parts of a CRL's tbsCertList a reader needs; the rest (extensions, signature) is skipped. */
export interface CrlFields {
  readonly issuer: Tlv;
  readonly thisUpdate: Tlv;
  readonly nextUpdate?: Tlv;
  /** revokedCertificates: absent when nothing is revoked. */
  readonly revoked?: Tlv;
  /** crlExtensions, [0] EXPLICIT SEQUENCE OF Extension. */
  readonly extensions?: Tlv;
}

/** CertificateList → tbsCertList: version?, signature, issuer, thisUpdate, nextUpdate?, revokedCertificates? */
export function crlFields(der: Uint8Array): CrlFields {
  const list = readTlv(der, 0);
  const tbs = list.tag === 0x30 ? firstChild(list) : undefined;
  if (tbs?.tag !== 0x30) throw new DerError("not a CRL");
  const fields = children(tbs, 16);
  let i = fields[0]?.tag === 0x02 ? 1 : 0; // optional version
  i += 1; // signature algorithm
  const issuer = fields[i++];
  const thisUpdate = fields[i++];
  if (issuer?.tag !== 0x30 || !isTime(thisUpdate)) throw new DerError("not a CRL");
  const nextUpdate = isTime(fields[i]) ? fields[i++] : undefined;
  const revoked = fields[i]?.tag === 0x30 ? fields[i++] : undefined;
  const extensions = fields[i]?.tag === 0xa0 ? fields[i] : undefined;
  return { issuer, thisUpdate, nextUpdate, revoked, extensions };
}

/**
 * The revoked serials of one DER CRL, lower-case hex without leading zeros (as Node's
 * X509Certificate.serialNumber gives them, lower-cased).
 */
export function revokedSerials(der: Uint8Array): string[] {
  const { revoked } = crlFields(der);
  return revoked ? serialsOf(children(revoked, Number.MAX_SAFE_INTEGER)) : [];
}

/** The serials of revokedCertificates entries as the CA stores them: encodeEntry's, concatenated. */
export function entrySerials(entries: Uint8Array): string[] {
  return serialsOf(elements(entries, Number.MAX_SAFE_INTEGER));
}

function serialsOf(entries: readonly Tlv[]): string[] {
  return entries.map((entry) => {
    const serial = entry.tag === 0x30 ? firstChild(entry) : undefined;
    if (serial?.tag !== 0x02) throw new DerError("a revoked entry has no serial number");
    return normalSerial(hexOf(serial));
  });
}

/** Serials compare lower-case hex without leading zeros (x509, Node and the ledger disagree on case and padding). */
export function normalSerial(serial: string | undefined): string {
  return (serial ?? "").toLowerCase().replace(/^0+(?=.)/, "");
}

export interface CrlDates {
  /** "CN=Mesh Dev CA" style, the attributes in the order the CRL names them. */
  readonly issuer: string;
  readonly thisUpdate: Date;
  /** Absent when the CRL names none (RFC 5280 makes it mandatory; a foreign CRL may omit it). */
  readonly nextUpdate?: Date;
  /** The cRLNumber extension (RFC 5280 5.2.3): grows with every CRL its CA signs. */
  readonly number?: bigint;
}

/** Issuer and validity of one DER CRL. */
export function crlDates(der: Uint8Array): CrlDates {
  const f = crlFields(der);
  return {
    issuer: nameText(f.issuer),
    thisUpdate: readTime(f.thisUpdate),
    nextUpdate: f.nextUpdate && readTime(f.nextUpdate),
    number: f.extensions && crlNumber(f.extensions),
  };
}

const CRL_NUMBER_OID = "551d14"; // 2.5.29.20

/** The cRLNumber in crlExtensions, if present and an INTEGER of at most 20 octets (RFC 5280 5.2.3). */
function crlNumber(explicit: Tlv): bigint | undefined {
  const list = firstChild(explicit);
  if (list?.tag !== 0x30) return undefined;
  for (const ext of children(list, 256)) {
    const parts = children(ext, 3);
    const type = parts[0];
    const value = parts[parts.length - 1];
    if (type?.tag !== 0x06 || hexOf(type) !== CRL_NUMBER_OID) continue;
    if (value?.tag !== 0x04) return undefined;
    const int = readTlv(value.buf, value.start, value.end);
    if (int.tag !== 0x02 || int.end - int.start > 20) return undefined;
    return BigInt(`0x${hexOf(int) || "0"}`);
  }
  return undefined;
}

const ATTRIBUTES: Record<string, string> = {
  "550403": "CN",
  "55040a": "O",
  "55040b": "OU",
  "550406": "C",
  "550407": "L",
  "550408": "ST",
};

/** A Name for a person to read: the usual attributes only, control characters replaced, each value bounded. */
function nameText(name: Tlv): string {
  const parts: string[] = [];
  for (const set of children(name, 256)) {
    for (const atv of children(set, 64)) {
      const [type, value] = children(atv, 2);
      if (!type || !value || type.tag !== 0x06) continue;
      const key = ATTRIBUTES[hexOf(type)];
      if (!key) continue;
      // Printable, IA5 and UTF8 strings are what CAs write; latin1 for the rest keeps it one byte a char.
      const text = Buffer.from(value.body).toString(value.tag === 0x0c ? "utf8" : "latin1");
      parts.push(`${key}=${text.replace(/[\u0000-\u001f\u007f]/g, "?").slice(0, 128)}`);
    }
  }
  return parts.join(", ");
}
