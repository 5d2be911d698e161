// PEM (RFC 7468) as the CA writes it and OpenSSL reads it: blocks of one label split out
// of a file (text between blocks is ignored, as the RFC allows), their DER, and back.

export type PemLabel = "CERTIFICATE" | "X509 CRL" | "CERTIFICATE REQUEST" | "PRIVATE KEY" | "ENCRYPTED PRIVATE KEY";

const BLOCKS = new Map<string, RegExp>();

function blockPattern(label: string): RegExp {
  let re = BLOCKS.get(label);
  if (!re) {
    re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`, "g");
    BLOCKS.set(label, re);
  }
  return re;
}

/** Every block labelled `label`, in order, boundaries included. */
export function pemBlocks(text: string, label: PemLabel): string[] {
  return text.match(blockPattern(label)) ?? [];
}

/** How many blocks labelled `label` the text holds. */
export function countPem(text: string, label: PemLabel): number {
  return pemBlocks(text, label).length;
}

/** The DER of one PEM block (its boundaries and white space dropped). */
export function pemToDer(block: string): Buffer {
  return Buffer.from(block.replace(/-----[^-]+-----|\s/g, ""), "base64");
}

/** The DER of every block labelled `label`, in order. */
export function pemDers(text: string, label: PemLabel): Buffer[] {
  return pemBlocks(text, label).map(pemToDer);
}

/** The DER of the first block labelled `label`, or undefined when there is none. */
export function firstPemDer(text: string, label: PemLabel): Buffer | undefined {
  const block = pemBlocks(text, label)[0];
  return block === undefined ? undefined : pemToDer(block);
}

/** base64 in 64-character lines, each ending with a newline: PEM's body, and what RFC 2045 (EST's bodies) wants. */
export function base64Lines(der: Uint8Array): string {
  return Buffer.from(der.buffer, der.byteOffset, der.byteLength)
    .toString("base64")
    .replace(/.{1,64}/g, "$&\n");
}

/** A PEM block, base64 in 64-character lines, ending with a newline. */
export function derToPem(der: Uint8Array, label: PemLabel): string {
  return `-----BEGIN ${label}-----\n${base64Lines(der)}-----END ${label}-----\n`;
}
