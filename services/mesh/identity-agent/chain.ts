// Checks a chain the CA answered before it is used: the leaf is ours (our key, our name) and
// chains through the given intermediates to a root in the bundle. Fails closed.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { IdentityError } from "./errors.ts";
import { pemBlocks } from "../../../lib/pem.ts";
import { rootSha256 } from "../../../lib/generations.ts";

export interface IdentityFacts {
  serial: string;
  /** The leaf's issuer, one line. */
  issuer: string;
  /** The root it chains to, and that root's generation as the CA gave it (lib/generations.ts); null when unknown. */
  root: string;
  generation: number | null;
  notBefore: string;
  notAfter: string;
}

export function pemOf(certs: readonly X509Certificate[]): string {
  return `${certs.map((c) => c.toString().trim()).join("\n")}\n`;
}

export function splitPem(text: string): X509Certificate[] {
  return pemBlocks(text, "CERTIFICATE").map((p) => new X509Certificate(p));
}

const oneLine = (dn: string) => dn.split("\n").join(", ");

/**
 * The facts of a chain whose leaf must name `dns`, pair with `keyPem` (when given), and chain to one of `roots`;
 * `generations` (root SHA-256 → generation, from the CA) names the root's generation.
 */
export function checkChain(
  chain: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  dns: string,
  keyPem?: string,
  now = Date.now(),
  opts: { anyRoot?: boolean; generations?: ReadonlyMap<string, number> } = {},
): IdentityFacts {
  const bad = (why: string): never => {
    throw new IdentityError("CA_ANSWER_INVALID", `the certificate from the CA cannot be used: ${why}`);
  };
  const leaf = chain[0] ?? bad("no certificate");
  if (keyPem && !leaf.checkPrivateKey(createPrivateKey(keyPem))) bad("it is not for the key this service sent");
  if (!leaf.checkHost(dns, { subject: "never" })) bad(`it does not name ${dns}`);
  if (Date.parse(leaf.validTo) <= now) bad(`it expired at ${new Date(leaf.validTo).toISOString()}`);
  let cur = leaf;
  for (const next of chain.slice(1)) {
    if (!cur.checkIssued(next) || !cur.verify(next.publicKey)) bad("the chain it came with is broken");
    cur = next;
  }
  const root = roots.find((r) => cur.checkIssued(r) && cur.verify(r.publicKey));
  // anyRoot: describing the certificate in force, which a new bundle may no longer cover.
  if (!root && !opts.anyRoot) bad("it does not chain to a root in the trust bundle");
  const rootName = root ? (/CN=([^\n]*)/.exec(root.subject)?.[1] ?? oneLine(root.subject)) : "(no root in the bundle)";
  return {
    serial: leaf.serialNumber.toLowerCase(),
    issuer: oneLine(leaf.issuer),
    root: rootName,
    generation: (root && opts.generations?.get(rootSha256(root.raw))) ?? null,
    notBefore: new Date(leaf.validFrom).toISOString(),
    notAfter: new Date(leaf.validTo).toISOString(),
  };
}
