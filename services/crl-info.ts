// Who signed a CRL and until when it is current, read from its DER: the metrics show each
// CRL's nextUpdate, and Node parses no CRLs (revocations.ts reads their serials the same way).

export interface CrlInfo {
  /** "CN=Mesh Dev CA", in the form Node gives X509Certificate#subject on one line. */
  readonly issuer: string;
  readonly thisUpdate: Date;
  /** Absent when the CRL names no next update (RFC 5280 allows it; OpenSSL then treats it as current). */
  readonly nextUpdate: Date | undefined;
}

interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly end: number;
}

function tlv(b: Uint8Array, at: number): Tlv {
  if (at + 2 > b.length) throw new Error("truncated DER");
  const tag = b[at]!;
  let len = b[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error("unsupported DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  if (start + len > b.length) throw new Error("truncated DER");
  return { tag, start, end: start + len };
}

function children(b: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end; ) {
    const t = tlv(b, at);
    out.push(t);
    at = t.end;
  }
  return out;
}

/** The attribute types Node names in a subject; any other is shown as its dotted OID. */
const NAMES: Record<string, string> = { "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.5": "serialNumber" };

function oid(b: Uint8Array, t: Tlv): string {
  const parts = [Math.floor(b[t.start]! / 40), b[t.start]! % 40];
  let v = 0;
  for (let i = t.start + 1; i < t.end; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if ((b[i]! & 0x80) === 0) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

function name(b: Uint8Array, seq: Tlv): string {
  const out: string[] = [];
  for (const rdn of children(b, seq)) {
    for (const atv of children(b, rdn)) {
      const [type, value] = children(b, atv);
      if (!type || !value) throw new Error("bad name");
      const o = oid(b, type);
      out.push(`${NAMES[o] ?? o}=${Buffer.from(b.subarray(value.start, value.end)).toString("utf8")}`);
    }
  }
  return out.join(", ");
}

function time(b: Uint8Array, t: Tlv): Date {
  const s = Buffer.from(b.subarray(t.start, t.end)).toString("latin1");
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) throw new Error(`bad time ${JSON.stringify(s)}`);
  let year = Number(m[1]);
  if (t.tag === 0x17) year += year >= 50 ? 1900 : 2000; // RFC 5280 4.1.2.5.1
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

/** CertificateList → tbsCertList: version?, signature, issuer, thisUpdate, nextUpdate? (RFC 5280 5.1). Throws on what does not parse. */
export function crlInfo(pem: string): CrlInfo {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  const tbs = children(der, tlv(der, 0))[0];
  if (!tbs || tbs.tag !== 0x30) throw new Error("not a CRL");
  const f = children(der, tbs);
  const i = f[0]?.tag === 0x02 ? 1 : 0;
  const issuer = f[i + 1];
  const thisUpdate = f[i + 2];
  const next = f[i + 3];
  if (!issuer || issuer.tag !== 0x30 || !thisUpdate) throw new Error("not a CRL");
  const isTime = (t: Tlv | undefined): t is Tlv => t !== undefined && (t.tag === 0x17 || t.tag === 0x18);
  if (!isTime(thisUpdate)) throw new Error("not a CRL");
  return { issuer: name(der, issuer), thisUpdate: time(der, thisUpdate), nextUpdate: isTime(next) ? time(der, next) : undefined };
}
