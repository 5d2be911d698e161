// When the CRLs a service holds stop being valid: issuer, thisUpdate and nextUpdate read
// from each CRL's DER (Node parses no CRLs), and which of them lapse soon or have lapsed.
// A lapsed CRL makes OpenSSL refuse every certificate its CA issued (CRL_HAS_EXPIRED).
import { children, readTlv, type Tlv } from "./der.ts";

export interface CrlDates {
  /** "CN=Mesh Dev CA" style, the attributes in the order the CRL names them. */
  readonly issuer: string;
  readonly thisUpdate: Date;
  /** Absent when the CRL names none (RFC 5280 makes it mandatory; a foreign CRL may omit it). */
  readonly nextUpdate?: Date;
  /** The cRLNumber extension (RFC 5280 5.2.3): grows with every CRL its CA signs. */
  readonly number?: bigint;
}

export interface CrlDeadline {
  readonly state: "expiring" | "lapsed";
  readonly issuer: string;
  readonly nextUpdate: string; // ISO 8601
  /** Days from `now` to nextUpdate, one decimal; negative once lapsed. */
  readonly daysLeft: number;
}

/** Warn this many days before a CRL's nextUpdate. */
export const CRL_WARN_DAYS = 7;

const ATTRIBUTES: Record<string, string> = { "550403": "CN", "55040a": "O", "55040b": "OU", "550406": "C", "550407": "L", "550408": "ST" };

function nameOf(b: Uint8Array, name: Tlv): string {
  const parts: string[] = [];
  for (const set of children(b, name)) {
    for (const atv of children(b, set)) {
      const [oid, value] = children(b, atv);
      if (!oid || !value || oid.tag !== 0x06) continue;
      const key = ATTRIBUTES[Buffer.from(b.subarray(oid.start, oid.end)).toString("hex")];
      if (!key) continue;
      // Printable, IA5 and UTF8 strings are what CAs write; latin1 for the rest keeps it one byte a char.
      const text = Buffer.from(b.subarray(value.start, value.end)).toString(value.tag === 0x0c ? "utf8" : "latin1");
      parts.push(`${key}=${text.replace(/[\u0000-\u001f\u007f]/g, "?").slice(0, 128)}`);
    }
  }
  return parts.join(", ");
}

function timeOf(b: Uint8Array, t: Tlv): Date {
  const s = Buffer.from(b.subarray(t.start, t.end)).toString("latin1");
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) throw new Error(`unsupported CRL time ${JSON.stringify(s.slice(0, 20))}`);
  let year = Number(m[1]);
  if (t.tag === 0x17) year += year >= 50 ? 1900 : 2000; // RFC 5280 4.1.2.5.1
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

const isTime = (t: Tlv | undefined): t is Tlv => t !== undefined && (t.tag === 0x17 || t.tag === 0x18);

/** Issuer and validity of one DER CRL (RFC 5280 5.1: tbsCertList's issuer, thisUpdate, nextUpdate). */
export function crlDates(der: Uint8Array): CrlDates {
  const list = readTlv(der, 0);
  const tbs = children(der, list)[0];
  if (!tbs || tbs.tag !== 0x30) throw new Error("not a CRL");
  const fields = children(der, tbs);
  let i = fields[0]?.tag === 0x02 ? 1 : 0; // optional version
  i += 1; // signature algorithm
  const issuer = fields[i++];
  const thisUpdate = fields[i++];
  const nextUpdate = fields[i];
  if (!issuer || issuer.tag !== 0x30 || !isTime(thisUpdate)) throw new Error("not a CRL");
  const extensions = fields.find((f) => f.tag === 0xa0);
  return { issuer: nameOf(der, issuer), thisUpdate: timeOf(der, thisUpdate), nextUpdate: isTime(nextUpdate) ? timeOf(der, nextUpdate) : undefined, number: extensions ? crlNumber(der, extensions) : undefined };
}

const CRL_NUMBER_OID = "551d14"; // 2.5.29.20

/** The cRLNumber in crlExtensions ([0] EXPLICIT SEQUENCE OF Extension), if present. */
function crlNumber(b: Uint8Array, explicit: Tlv): bigint | undefined {
  const list = children(b, explicit)[0];
  if (!list || list.tag !== 0x30) return undefined;
  for (const ext of children(b, list)) {
    const parts = children(b, ext);
    const oid = parts[0];
    const value = parts[parts.length - 1];
    if (!oid || oid.tag !== 0x06 || Buffer.from(b.subarray(oid.start, oid.end)).toString("hex") !== CRL_NUMBER_OID) continue;
    if (!value || value.tag !== 0x04) return undefined;
    const int = readTlv(b, value.start);
    if (int.tag !== 0x02 || int.end - int.start > 20) return undefined;
    return BigInt(`0x${Buffer.from(b.subarray(int.start, int.end)).toString("hex") || "0"}`);
  }
  return undefined;
}

function derOf(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
}

/** crlDates of one PEM block ("X509 CRL"). Throws on what does not parse. */
export function crlDatesOfPem(pem: string): CrlDates {
  return crlDates(derOf(pem));
}

/**
 * The CRLs (PEM blocks) whose nextUpdate is within `warnDays` of `now`, or past it. A CRL
 * that does not parse is left out: loading the material has refused such files already.
 */
export function crlDeadlines(pems: readonly string[], now: Date, warnDays = CRL_WARN_DAYS): CrlDeadline[] {
  const out: CrlDeadline[] = [];
  for (const pem of pems) {
    let d: CrlDates;
    try {
      d = crlDates(derOf(pem));
    } catch {
      continue;
    }
    if (!d.nextUpdate) continue;
    const daysLeft = (d.nextUpdate.getTime() - now.getTime()) / 86_400_000;
    if (daysLeft > warnDays) continue;
    out.push({ state: daysLeft <= 0 ? "lapsed" : "expiring", issuer: d.issuer, nextUpdate: d.nextUpdate.toISOString(), daysLeft: Math.round(daysLeft * 10) / 10 });
  }
  return out;
}

/**
 * The issuers whose CRL in `next` is older (a lower cRLNumber) than the one in `held`: a set
 * fetched before a revocation and delivered after a newer one (two fetches racing, a CA
 * replica behind the others) must not undo it. An issuer present in one set only is no
 * evidence either way (a generation added or retired); CRLs that do not parse are left to
 * the material's own checks.
 */
export function olderCrls(next: readonly string[], held: readonly string[]): string[] {
  const numbers = (pems: readonly string[]) => {
    const m = new Map<string, bigint>();
    for (const pem of pems) {
      try {
        const d = crlDates(derOf(pem));
        if (d.number !== undefined) m.set(d.issuer, d.number);
      } catch {
        // see above
      }
    }
    return m;
  };
  const had = numbers(held);
  const out: string[] = [];
  for (const [issuer, n] of numbers(next)) {
    const h = had.get(issuer);
    if (h !== undefined && n < h) out.push(issuer);
  }
  return out;
}
