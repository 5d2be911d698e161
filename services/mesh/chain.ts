// What is wrong with a chain a client presented, read from the certificates themselves.
// OpenSSL keeps verifying after the first error and reports the last one (with CRLs on, often
// UNABLE_TO_GET_CRL or UNSPECIFIED), so the service looks at the chain to name the real fault.
import type { X509Certificate } from "node:crypto";
import { children, firstChild, hexOf, readTlv } from "../../lib/der.ts";

/** Where the presented chain leads: to a root this service trusts, to another CA of the same name, or elsewhere. */
export type Anchor = "trusted" | "lookalike" | "stranger";

/** The trust a chain is judged against: the bundle's roots, parsed. */
export interface Anchors {
  readonly roots: readonly X509Certificate[];
  readonly fingerprints: ReadonlySet<string>;
}

export interface Path {
  /** Leaf first, each certificate signed by the next; ends in a trusted root when `anchor` is "trusted". */
  readonly certs: readonly X509Certificate[];
  readonly anchor: Anchor;
  /** The name the top of the path claims as its issuer (or its own, for a self-signed top). */
  readonly name: string | undefined;
}

/**
 * The path from the leaf the client sent, through the certificates it sent with it (as
 * getPeerX509Certificate() gives them, in the order sent, unfiltered), to a trusted root.
 * Every link is checked by signature, never by name alone: a look-alike CA has the very
 * same name. A self-signed certificate the client sent is not trusted for being sent.
 */
export function pathOf(leaf: X509Certificate, trust: Anchors): Path {
  const sent: X509Certificate[] = [];
  for (let c = leaf.issuerCertificate, n = 0; c && n < 10; c = c.issuerCertificate, n++) sent.push(c);
  const certs = [leaf];
  for (let top = leaf; certs.length < 10; ) {
    if (selfSigned(top)) break;
    const next = sent.find((c) => !certs.includes(c) && c.subject === top.issuer && verifies(top, c));
    if (!next) break;
    certs.push(next);
    top = next;
  }
  let top = certs[certs.length - 1]!;
  if (selfSigned(top) && trust.fingerprints.has(top.fingerprint256))
    return { certs, anchor: "trusted", name: oneLine(top.subject) };
  // A root the client sent with the chain proves nothing: judge the certificate below it.
  if (selfSigned(top) && certs.length > 1) {
    certs.pop();
    top = certs[certs.length - 1]!;
  }
  const name = oneLine(selfSigned(top) ? top.subject : top.issuer);
  const roots = trust.roots.filter((r) => oneLine(r.subject) === name);
  const root = roots.find((r) => verifies(top, r));
  if (root && !selfSigned(top)) return { certs: [...certs, root], anchor: "trusted", name };
  return { certs, anchor: roots.length > 0 ? "lookalike" : "stranger", name };
}

function selfSigned(c: X509Certificate): boolean {
  return c.subject === c.issuer && verifies(c, c);
}

function verifies(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

export type ChainFaultReason = "issuer_not_ca" | "issuer_cannot_sign" | "path_length_exceeded";

/**
 * The first structural fault of a path, walking up from the leaf: a certificate that
 * signed another but is not a CA, may not sign certificates, or has more CAs below it than
 * its pathLenConstraint allows (RFC 5280 4.2.1.9, 6.1.4).
 */
export function chainFault(
  path: readonly X509Certificate[],
): { reason: ChainFaultReason; sentence: string } | undefined {
  for (let i = 1; i < path.length; i++) {
    const issuer = path[i]!;
    const child = path[i - 1]!;
    const facts = caFacts(issuer.raw);
    if (!facts) continue;
    const who = oneLine(issuer.subject);
    if (!facts.ca) {
      return {
        reason: "issuer_not_ca",
        sentence: `${who}, which signed ${oneLine(child.subject)}, is not a CA certificate (no basicConstraints CA:TRUE); only a CA may sign certificates`,
      };
    }
    if (facts.keyCertSign === false) {
      return {
        reason: "issuer_cannot_sign",
        sentence: `${who}, which signed ${oneLine(child.subject)}, may not sign certificates (its key usage lacks keyCertSign); the CA that made it must reissue it with keyCertSign`,
      };
    }
    // CAs between this one and the leaf; a self-issued one does not count (RFC 5280 6.1.4 (l)).
    const below = path.slice(1, i).filter((c) => c.subject !== c.issuer);
    if (facts.pathLen !== undefined && below.length > facts.pathLen) {
      const allowed = facts.pathLen === 0 ? "no CA" : facts.pathLen === 1 ? "one CA" : `${facts.pathLen} CAs`;
      return {
        reason: "path_length_exceeded",
        sentence: `${who} allows ${allowed} below it (pathLenConstraint ${facts.pathLen}), but ${below.map((c) => oneLine(c.subject)).join(" and ")} ${below.length === 1 ? "is" : "are"} below it in the client's chain`,
      };
    }
  }
  return undefined;
}

// Node gives `undefined` for an empty name (a peer can send one): never a throw in the handshake's handler.
function oneLine(dn: string | undefined): string {
  return dn ? dn.split("\n").join(", ") : "(empty name)";
}

const BASIC_CONSTRAINTS = "551d13";
const KEY_USAGE = "551d0f";

/**
 * basicConstraints and keyUsage of a DER certificate: Certificate → tbsCertificate →
 * [3] extensions (RFC 5280 4.1). undefined when the certificate does not parse.
 */
export function caFacts(der: Uint8Array): { ca: boolean; pathLen?: number; keyCertSign?: boolean } | undefined {
  try {
    const tbs = firstChild(readTlv(der, 0));
    if (tbs?.tag !== 0x30) return undefined;
    const exts = children(tbs, 16).find((t) => t.tag === 0xa3);
    let ca = false;
    let pathLen: number | undefined;
    let keyCertSign: boolean | undefined;
    const list = exts && firstChild(exts);
    if (!list) return { ca };
    for (const ext of children(list, 256)) {
      const parts = children(ext, 3);
      const oid = hexOf(parts[0]!);
      const value = parts[parts.length - 1]!; // OCTET STRING, after the optional critical flag
      if (oid === BASIC_CONSTRAINTS) {
        for (const f of children(readTlv(der, value.start, value.end), 2)) {
          if (f.tag === 0x01) ca = der[f.start] !== 0;
          if (f.tag === 0x02 && f.end - f.start <= 4) pathLen = Number.parseInt(hexOf(f), 16);
        }
      } else if (oid === KEY_USAGE) {
        const bits = readTlv(der, value.start, value.end);
        // First byte: unused bits; keyCertSign is bit 5 of the first byte of flags.
        keyCertSign = bits.end - bits.start >= 2 ? (der[bits.start + 1]! & 0x04) !== 0 : false;
      }
    }
    return { ca, pathLen, keyCertSign };
  } catch {
    return undefined;
  }
}
