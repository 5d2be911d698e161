// Just enough DER for what the CA and the services read and write by hand: certificates'
// extensions and names, CRLs, PKCS#7 bundles, PKCS#10 requests. Everything read is hostile
// input: one-byte tags, definite lengths of at most four bytes, nothing past its container.
// The reader keeps offsets into the one buffer it was given (no copy per element): CRL walks
// on the services' reload path and the CA's CRL assembly were made hand-written for speed
// (docs/bench.md), and this is the code both now share.

type Bytes = Uint8Array<ArrayBuffer>;

export class DerError extends Error {}

/** One element: its tag, where it starts (`at`), where its contents start and end, in `buf`. */
export class Tlv {
  constructor(
    readonly buf: Uint8Array,
    readonly tag: number,
    readonly at: number,
    readonly start: number,
    readonly end: number,
  ) {}

  /** The contents octets. */
  get body(): Uint8Array {
    return this.buf.subarray(this.start, this.end);
  }

  /** The whole encoding, tag and length included. */
  get raw(): Uint8Array {
    return this.buf.subarray(this.at, this.end);
  }
}

/** The element at `at`, which must end by `limit` (its container's end). */
export function readTlv(buf: Uint8Array, at = 0, limit = buf.length): Tlv {
  if (at + 2 > limit) throw new DerError("truncated DER");
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte DER tags are not used here");
  let len = buf[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError("indefinite length is not DER");
    if (n > 4) throw new DerError("DER length too large");
    if (start + n > limit) throw new DerError("truncated DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!;
    start += n;
  }
  const end = start + len;
  if (end > limit) throw new DerError("truncated DER: a value runs past its container");
  return new Tlv(buf, tag, at, start, end);
}

/** The single element that is the whole of `buf`. */
export function readOne(buf: Uint8Array): Tlv {
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DerError("trailing bytes after DER value");
  return t;
}

/** The elements that make up a constructed value's contents; at most `max` of them. */
export function children(parent: Tlv, max = 10_000): Tlv[] {
  const out: Tlv[] = [];
  const { buf, end } = parent;
  for (let at = parent.start; at < end; ) {
    if (out.length >= max) throw new DerError(`more than ${max} elements`);
    const t = readTlv(buf, at, end);
    out.push(t);
    at = t.end;
  }
  return out;
}

/** The elements that make up the whole of `buf`, one after another; at most `max` of them. */
export function elements(buf: Uint8Array, max = 10_000): Tlv[] {
  return children(new Tlv(buf, 0x30, 0, 0, buf.length), max);
}

/** The first child of `parent`, or undefined when it is empty. */
export function firstChild(parent: Tlv): Tlv | undefined {
  return parent.start < parent.end ? readTlv(parent.buf, parent.start, parent.end) : undefined;
}

/** Lower-case hex of an element's contents. */
export function hexOf(t: Tlv): string {
  return Buffer.from(t.buf.buffer, t.buf.byteOffset + t.start, t.end - t.start).toString("hex");
}

/** Dotted form of an OBJECT IDENTIFIER's contents. */
export function oid(body: Uint8Array): string {
  if (body.length === 0 || body.length > 64) throw new DerError("bad OBJECT IDENTIFIER");
  const arcs: number[] = [];
  let v = 0;
  for (const b of body) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  if (body.at(-1)! & 0x80) throw new DerError("bad OBJECT IDENTIFIER");
  const first = arcs.shift()!;
  return [first < 80 ? Math.floor(first / 40) : 2, first < 80 ? first % 40 : first - 80, ...arcs].join(".");
}

const UTC_TIME = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;
const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** A UTCTime (0x17) or GeneralizedTime (0x18) in RFC 5280's profile (4.1.2.5): seconds, Z. */
export function readTime(t: Tlv): Date {
  const s = Buffer.from(t.buf.buffer, t.buf.byteOffset + t.start, t.end - t.start).toString("latin1");
  const m = t.tag === 0x17 ? UTC_TIME.exec(s) : t.tag === 0x18 ? GENERALIZED_TIME.exec(s) : null;
  if (!m) throw new DerError(`unsupported time ${JSON.stringify(s.slice(0, 20))}`);
  let year = Number(m[1]);
  if (t.tag === 0x17) year += year >= 50 ? 1900 : 2000; // RFC 5280 4.1.2.5.1
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

export const isTime = (t: Tlv | undefined): t is Tlv => t !== undefined && (t.tag === 0x17 || t.tag === 0x18);

// --- writing ------------------------------------------------------------------------
// Linear in the output: each element's length is known from its parts.

/** One element from its tag and its contents. */
export function tlv(tag: number, body: Uint8Array): Bytes {
  const n = body.length;
  const lenBytes = n < 0x80 ? 0 : n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
  const out = new Uint8Array(2 + lenBytes + n);
  out[0] = tag;
  if (lenBytes === 0) out[1] = n;
  else {
    out[1] = 0x80 | lenBytes;
    for (let i = lenBytes, v = n; i > 0; i--, v = Math.floor(v / 256)) out[1 + i] = v & 0xff;
  }
  out.set(body, 2 + lenBytes);
  return out;
}

export function concat(parts: readonly Uint8Array[]): Bytes {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const sequence = (parts: readonly Uint8Array[]): Bytes => tlv(0x30, concat(parts));

/** A non-negative INTEGER from hex (a leading 00 keeps a high first bit positive). */
export function integerHex(hex: string): Bytes {
  let bytes: Uint8Array = Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex");
  let skip = 0;
  while (bytes.length - skip > 1 && bytes[skip] === 0 && bytes[skip + 1]! < 0x80) skip++;
  bytes = bytes.subarray(skip);
  if (bytes.length === 0 || bytes[0]! >= 0x80) {
    const padded = new Uint8Array(bytes.length + 1);
    padded.set(bytes, 1);
    bytes = padded;
  }
  return tlv(0x02, bytes);
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5): seconds, Z. */
export function time(d: Date): Bytes {
  const year = d.getUTCFullYear();
  if (!(year >= 1950 && year <= 9999)) throw new RangeError(`the year ${year} cannot be encoded as an RFC 5280 time`);
  const utc = year < 2050;
  const out = new Uint8Array(utc ? 15 : 17);
  out[0] = utc ? 0x17 : 0x18;
  out[1] = utc ? 13 : 15;
  let at = 2;
  const put = (v: number, digits: number) => {
    for (let i = digits - 1; i >= 0; i--, v = Math.floor(v / 10)) out[at + i] = 0x30 + (v % 10);
    at += digits;
  };
  if (utc) put(year % 100, 2);
  else put(year, 4);
  put(d.getUTCMonth() + 1, 2);
  put(d.getUTCDate(), 2);
  put(d.getUTCHours(), 2);
  put(d.getUTCMinutes(), 2);
  put(d.getUTCSeconds(), 2);
  out[at] = 0x5a; // Z
  return out;
}

/** A BIT STRING of whole bytes (no unused bits), as signatures and keys are. */
export const bitString = (bytes: Uint8Array): Bytes => tlv(0x03, concat([new Uint8Array([0]), bytes]));

/** An OBJECT IDENTIFIER's encoding from its dotted form. */
export function oidDer(dotted: string): Bytes {
  const arcs = dotted.split(".").map(Number);
  const body: number[] = [];
  const push = (v: number) => {
    const bytes = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) bytes.unshift(0x80 | (v & 0x7f));
    body.push(...bytes);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(0x06, new Uint8Array(body));
}
