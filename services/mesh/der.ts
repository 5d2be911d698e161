// Just enough DER to read what Node's TLS API does not show: CRL entries, and a CA
// certificate's basicConstraints and keyUsage. Bounded: every length is checked.

export interface Tlv {
  tag: number;
  at: number; // first byte of the element (its tag)
  start: number; // first byte of the value
  end: number; // one past the last byte
}

export function readTlv(b: Uint8Array, at: number): Tlv {
  if (at + 2 > b.length) throw new Error("truncated DER");
  const tag = b[at]!;
  let len = b[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error("unsupported DER length");
    if (start + n > b.length) throw new Error("truncated DER");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  if (start + len > b.length) throw new Error("truncated DER");
  return { tag, at, start, end: start + len };
}

export function children(b: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end; ) {
    const t = readTlv(b, at);
    if (t.end > parent.end) throw new Error("truncated DER");
    out.push(t);
    at = t.end;
  }
  return out;
}
