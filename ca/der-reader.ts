// A bounded DER reader for the few structures verify must see byte for byte
// (name constraints, subjectAltName, Name): certificates are hostile input.

export interface Tlv {
  tag: number;
  /** The contents octets. */
  body: Uint8Array;
  /** The whole encoding, tag and length included. */
  raw: Uint8Array;
}

export class DerError extends Error {}

/** Reads one TLV at `at`; DER only: one-byte tags, definite minimal lengths, nothing past the end. */
function readAt(buf: Uint8Array, at: number): { tlv: Tlv; next: number } {
  if (at + 2 > buf.length) throw new DerError("truncated DER");
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte DER tags are not used in certificates");
  let len = buf[at + 1]!;
  let head = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError(n === 0 ? "indefinite length is not DER" : "DER length too large");
    if (at + 2 + n > buf.length) throw new DerError("truncated DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[at + 2 + i]!;
    head += n;
  }
  const end = at + head + len;
  if (end > buf.length) throw new DerError("DER value runs past its container");
  return { tlv: { tag, body: buf.subarray(at + head, end), raw: buf.subarray(at, end) }, next: end };
}

/** The single TLV that is the whole of `buf`. */
export function readOne(buf: Uint8Array): Tlv {
  const { tlv, next } = readAt(buf, 0);
  if (next !== buf.length) throw new DerError("trailing bytes after DER value");
  return tlv;
}

/** The TLVs that make up a constructed value's contents. */
export function children(body: Uint8Array, max = 10_000): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < body.length;) {
    if (out.length >= max) throw new DerError(`more than ${max} elements`);
    const { tlv, next } = readAt(body, at);
    out.push(tlv);
    at = next;
  }
  return out;
}

/** Dotted form of an OBJECT IDENTIFIER's contents. */
export function oid(body: Uint8Array): string {
  if (body.length === 0 || body.length > 64) throw new DerError("bad OBJECT IDENTIFIER");
  const arcs: number[] = [];
  let v = 0;
  for (const b of body) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) { arcs.push(v); v = 0; }
  }
  if (body.at(-1)! & 0x80) throw new DerError("bad OBJECT IDENTIFIER");
  const first = arcs.shift()!;
  return [first < 80 ? Math.floor(first / 40) : 2, first < 80 ? first % 40 : first - 80, ...arcs].join(".");
}
