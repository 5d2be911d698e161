// RFC 5280 path validation. X509ChainBuilder plus verify() checks only
// signatures and dates; this also checks every issuer is a CA allowed to sign
// certificates, path lengths, EKU, name constraints and revocation, and names
// the check that failed. It is never looser than the OpenSSL the mesh runs on.
import { X509Certificate as NodeCertificate } from "node:crypto";
import { isIP } from "node:net";
import { akiAllows } from "./authority-key-id.ts";
import { DerError } from "../lib/der.ts";
import { pemBlocks } from "../lib/pem.ts";
import { certNames, ConstraintError, parseConstraints, violation, type Constraints } from "./name-constraints.ts";
import { printable } from "./printable.ts";
import { normalSerial, x509 } from "./x509.ts";

const id_ce_nameConstraints = "2.5.29.30";

export { permittedDns, withinDns } from "./name-constraints.ts";

export type Check =
  | "parse"
  | "trust"
  | "signature"
  | "validity"
  | "basic-constraints"
  | "key-usage"
  | "path-length"
  | "extended-key-usage"
  | "name-constraints"
  | "critical-extension"
  | "crl"
  | "revocation"
  | "name";

export type Purpose = "server" | "client" | "mesh";

export interface VerifyInput {
  /** The certificate, optionally followed by the chain it is served with. */
  certs: x509.X509Certificate[];
  /** Trusted certificates; only self-signed ones are trust anchors, the others may only complete a path. */
  trusted: x509.X509Certificate[];
  /** Extra intermediates that may complete the path (the CA's own issuing CAs). */
  intermediates?: x509.X509Certificate[];
  /** When given, every certificate below the anchor needs a current CRL from its issuer; when absent, revocation is not checked. */
  crls?: x509.X509Crl[];
  /** What to tell the user when a CRL is missing or lapsed (default: re-sign this CA's CRLs). */
  crlHint?: string;
  at: Date;
  purpose: Purpose;
  /**
   * The name the peer must hold, as `openssl verify -verify_hostname`/`-verify_ip` check it
   * (OpenSSL's own X509_check_host/X509_check_ip, through Node): a DNS name or an IP address.
   * The subject's CN is never consulted, only the SANs (stricter than OpenSSL's default).
   */
  name?: string;
  /** At most this many CA certificates between the leaf and the anchor (`openssl verify -verify_depth`); default 8. */
  maxDepth?: number;
}

export interface VerifyResult {
  ok: boolean;
  /** Leaf first, trust anchor last (as far as it was built). */
  chain: x509.X509Certificate[];
  failed?: { check: Check; message: string };
  /** Whether CRLs were consulted: false when none were given, which the report must say. */
  revocationChecked: boolean;
}

const SKI = "2.5.29.14";
/** The most CA certificates between a leaf and its anchor that a path may hold, unless maxDepth says fewer. */
const DEFAULT_MAX_DEPTH = 8;
const AKI = "2.5.29.35";
const KNOWN_EXTENSIONS = new Set(["2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.17", SKI, AKI, id_ce_nameConstraints]);
const MUST_NOT_BE_CRITICAL: Record<string, string> = {
  [SKI]: "subject key identifier (RFC 5280 4.2.1.2)",
  [AKI]: "authority key identifier (RFC 5280 4.2.1.1)",
};

// Names come from certificates, which anyone can make: printed escaped and bounded.
const cn = (c: x509.X509Certificate) => printable(c.subjectName.getField("CN")[0] ?? c.subject);
const day = (d: Date) => `${d.toISOString().replace("T", " ").slice(0, 16)} UTC`;
const selfIssued = (c: x509.X509Certificate) => c.subject === c.issuer;

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  if (cert.issuer !== issuer.subject || !akiAllows(cert, issuer)) return false;
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

/**
 * Builds leaf → … → anchor, choosing issuers whose signature verifies. As in
 * OpenSSL and Node without partial-chain, only a self-signed trusted
 * certificate ends a path; a trusted one that is not self-signed is just
 * another intermediate, so the path must still reach a trusted root.
 */
async function buildPath(
  input: VerifyInput,
): Promise<{ chain: x509.X509Certificate[]; anchored: boolean; notAnchors: x509.X509Certificate[] }> {
  const anchors: x509.X509Certificate[] = [];
  const notAnchors: x509.X509Certificate[] = [];
  for (const t of input.trusted) ((await signedBy(t, t)) ? anchors : notAnchors).push(t);
  const pool = [...input.certs.slice(1), ...(input.intermediates ?? []), ...notAnchors];
  const chain = [input.certs[0]!];
  for (let depth = 0; depth < DEFAULT_MAX_DEPTH + 1; depth++) {
    const current = chain.at(-1)!;
    for (const anchor of anchors) {
      if (current.equal(anchor)) return { chain, anchored: true, notAnchors };
      if (await signedBy(current, anchor)) {
        chain.push(anchor);
        return { chain, anchored: true, notAnchors };
      }
    }
    let next: x509.X509Certificate | undefined;
    for (const candidate of pool) {
      if (!chain.some((c) => c.equal(candidate)) && (await signedBy(current, candidate))) {
        next = candidate;
        break;
      }
    }
    if (!next) break;
    chain.push(next);
  }
  return { chain, anchored: false, notAnchors };
}

export async function verifyPath(input: VerifyInput): Promise<VerifyResult> {
  try {
    return await validate(input);
  } catch (err) {
    // @peculiar/x509 parses extensions when first read: a certificate that parsed as a whole can
    // still carry an extension that does not (a malformed AIA). Hostile input fails closed, never throws.
    const why = printable(err instanceof Error ? err.message : String(err));
    return {
      ok: false,
      chain: [input.certs[0]!],
      failed: {
        check: "parse",
        message: `a certificate of the path cannot be read in full (${why}), so it is not accepted`,
      },
      revocationChecked: input.crls !== undefined,
    };
  }
}

async function validate(input: VerifyInput): Promise<VerifyResult> {
  const { chain, anchored, notAnchors } = await buildPath(input);
  const revocationChecked = input.crls !== undefined;
  const fail = (check: Check, message: string): VerifyResult => ({
    ok: false,
    chain,
    failed: { check, message },
    revocationChecked,
  });
  const leaf = chain[0]!;
  if (!anchored) {
    const top = chain.at(-1)!;
    const trusted = input.trusted.map(cn).join(", ") || "none";
    const partial = chain.find((c) => notAnchors.some((t) => t.equal(c)));
    if (partial) {
      return fail(
        "trust",
        `${cn(partial)} is trusted but not self-signed, so it is not a trust anchor (OpenSSL and Node refuse such a chain too): trust the root it chains to`,
      );
    }
    return fail(
      "trust",
      `${cn(top)} was issued by "${printable(top.issuerName.getField("CN")[0] ?? top.issuer)}", which is not a trusted CA (trusted: ${trusted})`,
    );
  }
  // OpenSSL's -verify_depth n allows n intermediates; self-issued ones count too (it counts certificates).
  const depth = Math.min(input.maxDepth ?? DEFAULT_MAX_DEPTH, DEFAULT_MAX_DEPTH);
  if (chain.length - 2 > depth)
    return fail(
      "path-length",
      `the path holds ${chain.length - 2} CA certificate(s) between ${cn(leaf)} and its root, more than the ${depth} allowed`,
    );
  for (const cert of chain) {
    if (input.at < cert.notBefore) return fail("validity", `${cn(cert)} is not valid until ${day(cert.notBefore)}`);
    // At notAfter itself OpenSSL already says expired (X509_cmp_time: "earlier than or equal"), and the mesh runs on OpenSSL.
    if (input.at >= cert.notAfter) return fail("validity", `${cn(cert)} expired on ${day(cert.notAfter)}`);
    // RFC 5280 4.2: one instance of each; a second SAN or constraint would otherwise go unread.
    const seen = new Set<string>();
    const repeated = cert.extensions.find((e) => seen.size === seen.add(e.type).size);
    if (repeated)
      return fail("parse", `${cn(cert)} carries the extension ${repeated.type} twice, which RFC 5280 forbids`);
    const unknown = cert.extensions.find((e) => e.critical && !KNOWN_EXTENSIONS.has(e.type));
    if (unknown)
      return fail(
        "critical-extension",
        `${cn(cert)} has a critical extension this verifier does not understand (${unknown.type})`,
      );
    const forbidden = cert.extensions.find((e) => e.critical && MUST_NOT_BE_CRITICAL[e.type]);
    if (forbidden)
      return fail(
        "critical-extension",
        `${cn(cert)} marks its ${MUST_NOT_BE_CRITICAL[forbidden.type]} extension critical, which RFC 5280 forbids`,
      );
  }
  // Every certificate above the leaf must be a CA allowed to sign certificates.
  for (let i = 1; i < chain.length; i++) {
    const ca = chain[i]!;
    const bc = ca.getExtension(x509.BasicConstraintsExtension);
    if (!bc?.ca)
      return fail(
        "basic-constraints",
        `${cn(ca)} signed ${cn(chain[i - 1]!)} but is not a CA (basicConstraints CA:TRUE is missing)`,
      );
    const ku = ca.getExtension(x509.KeyUsagesExtension);
    if (ku && !(ku.usages & x509.KeyUsageFlags.keyCertSign))
      return fail(
        "key-usage",
        `${cn(ca)} signed ${cn(chain[i - 1]!)} but its key usage does not allow signing certificates (keyCertSign)`,
      );
    // Intermediates between this CA and the leaf, self-issued ones excepted.
    const below = chain.slice(1, i).filter((c) => !selfIssued(c)).length;
    if (bc.pathLength !== undefined && below > bc.pathLength) {
      return fail(
        "path-length",
        `${cn(ca)} allows ${bc.pathLength} CA(s) below it (pathLen:${bc.pathLength}) but ${below} follow it`,
      );
    }
  }
  const constrained = checkNameConstraints(chain);
  if (constrained) return fail("name-constraints", constrained);
  // The leaf's purpose is checked even when it is itself trusted: a CA certificate
  // (the root above all) is never a peer's certificate, for any purpose.
  const bc = leaf.getExtension(x509.BasicConstraintsExtension);
  if (bc?.ca)
    return fail(
      "basic-constraints",
      `${cn(leaf)} is a CA certificate, not a service certificate: it is not accepted as a peer for any purpose (OpenSSL: unsuitable certificate purpose)`,
    );
  // The services refuse a peer with several CNs as ambiguous (services/mesh/peer-identity.ts): so does verify.
  const cns = leaf.subjectName.getField("CN");
  if (cns.length > 1)
    return fail(
      "name",
      `${cn(leaf)} has ${cns.length} common names (${cns.map((n) => printable(n)).join(", ")}); a certificate for one identity has exactly one`,
    );
  if (input.name !== undefined) {
    const wrong = nameProblem(leaf, input.name);
    if (wrong) return fail("name", wrong);
  }
  const ku = leaf.getExtension(x509.KeyUsagesExtension);
  if (ku && !(ku.usages & x509.KeyUsageFlags.digitalSignature))
    return fail(
      "key-usage",
      `${cn(leaf)} may not sign (digitalSignature is missing), so it cannot authenticate in TLS`,
    );
  const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
  const need =
    input.purpose === "mesh"
      ? (["serverAuth", "clientAuth"] as const)
      : input.purpose === "server"
        ? (["serverAuth"] as const)
        : (["clientAuth"] as const);
  for (const usage of need) {
    if (eku && !eku.usages.includes(x509.ExtendedKeyUsage[usage])) {
      return fail("extended-key-usage", `${cn(leaf)} is not allowed for ${usage} (its extended key usage lacks it)`);
    }
  }
  if (input.crls) {
    const revoked = await revocationProblem(chain, input.crls, input.at, input.crlHint ?? "run: npm run ca -- crl");
    if (revoked) return fail(revoked.check, revoked.message);
  }
  return { ok: true, chain, revocationChecked };
}

/** Why `leaf` does not hold `name` (a DNS name or an IP address), or undefined. */
function nameProblem(leaf: x509.X509Certificate, name: string): string | undefined {
  const cert = new NodeCertificate(new Uint8Array(leaf.rawData));
  const held = isIP(name)
    ? cert.checkIP(name) !== undefined
    : cert.checkHost(name, { subject: "never", wildcards: true, partialWildcards: false }) !== undefined;
  return held
    ? undefined
    : `${cn(leaf)} does not hold the name ${printable(name)} (its subjectAltName: ${printable(cert.subjectAltName ?? "none")})`;
}

/** Each certificate below the anchor against its issuer's CRL: the first failure, or undefined. */
async function revocationProblem(
  chain: x509.X509Certificate[],
  crls: x509.X509Crl[],
  at: Date,
  hint: string,
): Promise<{ check: Check; message: string } | undefined> {
  for (let i = 0; i < chain.length - 1; i++) {
    const cert = chain[i]!;
    const issuer = chain[i + 1]!;
    const signed: x509.X509Crl[] = [];
    for (const c of crls) {
      if (c.issuer === issuer.subject && (await c.verify({ publicKey: issuer.publicKey }).catch(() => false)))
        signed.push(c);
    }
    if (signed.length === 0)
      return {
        check: "crl",
        message: `no CRL signed by ${cn(issuer)} was found, so the revocation of ${cn(cert)} cannot be checked (${hint})`,
      };
    // Of several CRLs from one CA (an old and a new file), the newest current one decides.
    const current = signed
      .filter((c) => c.thisUpdate <= at && !(c.nextUpdate && c.nextUpdate < at))
      .sort((a, b) => b.thisUpdate.getTime() - a.thisUpdate.getTime());
    const crl = current[0] ?? signed[0]!;
    const unusable = crlProblem(crl, issuer);
    if (unusable) return { check: "crl", message: unusable };
    if (crl.thisUpdate > at)
      return {
        check: "crl",
        message: `the CRL of ${cn(issuer)} is not valid until ${day(crl.thisUpdate)} (is this clock behind the CA's?)`,
      };
    if (crl.nextUpdate && crl.nextUpdate < at)
      return { check: "crl", message: `the CRL of ${cn(issuer)} lapsed on ${day(crl.nextUpdate)} (${hint})` };
    const entry = crl.findRevoked(normalSerial(cert.serialNumber)) ?? crl.findRevoked(cert);
    // Listed is revoked, whatever its revocationDate: a verifier whose clock is behind the
    // CA's would otherwise accept a certificate revoked a moment ago (OpenSSL does not look).
    if (entry) {
      const reason = entry.reason !== undefined ? `, reason ${x509.X509CrlReason[entry.reason]}` : "";
      return {
        check: "revocation",
        message: `${cn(cert)} (serial ${normalSerial(cert.serialNumber)}) was revoked on ${day(entry.revocationDate)}${reason}`,
      };
    }
  }
  return undefined;
}

// CRL extensions whose meaning this verifier applies; any other critical one (an issuing
// distribution point, a delta CRL, an indirect CRL's certificateIssuer) would narrow or
// redirect what the CRL covers, so such a CRL is not used, as OpenSSL does not use it.
// A critical CRL number is unprocessed too: RFC 5280 5.2.3 makes it non-critical and OpenSSL 3.0 refuses the CRL.
const CRL_EXTENSIONS = new Set([AKI]);
const SCOPED_CRL_EXTENSIONS = new Set(["2.5.29.27", "2.5.29.28"]); // delta CRL indicator, issuing distribution point

/** Why `crl` cannot answer for certificates `issuer` signed, or undefined. */
function crlProblem(crl: x509.X509Crl, issuer: x509.X509Certificate): string | undefined {
  const ku = issuer.getExtension(x509.KeyUsagesExtension);
  if (ku && !(ku.usages & x509.KeyUsageFlags.cRLSign))
    return `${cn(issuer)} may not sign CRLs (its key usage lacks cRLSign), so its CRL cannot be trusted`;
  const scoped = crl.extensions.find(
    (e) => SCOPED_CRL_EXTENSIONS.has(e.type) || (e.critical && !CRL_EXTENSIONS.has(e.type)),
  );
  if (scoped)
    return `the CRL of ${cn(issuer)} carries an extension this verifier does not process (${scoped.type}), so it cannot say what is revoked`;
  const entry = crl.entries.find((en) => en.extensions.some((e) => e.critical));
  if (entry)
    return `the CRL of ${cn(issuer)} has an entry with a critical extension this verifier does not process, so it cannot say what is revoked`;
  return undefined;
}

/**
 * RFC 5280 6.1.3 (b)-(c): every certificate's names, below each CA (the anchor
 * included, as OpenSSL does) with name constraints; self-issued intermediates
 * are exempt. Returns why the path fails, or undefined.
 */
function checkNameConstraints(chain: x509.X509Certificate[]): string | undefined {
  const constraints: (Constraints | undefined)[] = [];
  for (const ca of chain) {
    const ext = ca.extensions.find((e) => e.type === id_ce_nameConstraints);
    if (!ext || ca === chain[0]) {
      constraints.push(undefined);
      continue;
    }
    try {
      constraints.push(parseConstraints(ext.value));
    } catch (err) {
      if (!(err instanceof ConstraintError)) throw err;
      // Unprocessed forms fail closed, critical or not: a name of that form below would go unchecked.
      return `${cn(ca)} has ${ext.critical ? "critical " : ""}name constraints that cannot be checked, so nothing it certifies is accepted: ${err.message}`;
    }
  }
  for (let i = 0; i < chain.length - 1; i++) {
    const cert = chain[i]!;
    if (i > 0 && selfIssued(cert)) continue;
    if (!constraints.slice(i + 1).some(Boolean)) continue;
    let names: ReturnType<typeof certNames>;
    try {
      names = certNames(cert, i === 0);
    } catch (err) {
      if (err instanceof DerError)
        return `the names of ${cn(cert)} cannot be read (${err.message}), so ${cn(chain[i + 1]!)}'s name constraints cannot be checked`;
      throw err;
    }
    for (let j = i + 1; j < chain.length; j++) {
      const c = constraints[j];
      if (!c) continue;
      const v = violation(names, c, cn(chain[j]!), { name: cn(cert), isLeaf: i === 0 });
      if (v) return v;
    }
  }
  return undefined;
}

/** Splits a PEM file into certificates; anything unreadable is a "parse" failure for the caller. */
export function parseCertificates(pem: string): x509.X509Certificate[] {
  return pemBlocks(pem, "CERTIFICATE").map((b) => new x509.X509Certificate(b));
}

export function parseCrls(pem: string): x509.X509Crl[] {
  return pemBlocks(pem, "X509 CRL").map((b) => new x509.X509Crl(b));
}
