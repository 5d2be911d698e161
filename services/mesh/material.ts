// A service's TLS material, read from the CA's state folder: its certificate chain and key,
// the trust bundle and the CRLs. Loaded whole and validated before anything uses it.
import { DEFAULT_TRUST_DOMAIN, svidIdOf } from "../../lib/spiffe.ts";
import { X509Certificate, createHash, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { MeshError, messageOf } from "./errors.ts";
import { revokedSet } from "./revocations.ts";
import { pemBlocks } from "../../lib/pem.ts";
import { readGenerations } from "../../lib/generations.ts";

/**
 * TLS 1.2 suites the mesh accepts, as server and as client: ECDHE key exchange (forward
 * secrecy) with an AEAD cipher only. No CBC suite (Lucky13-style padding oracles, and the
 * SHA-1 MAC of ECDHE-ECDSA-AES128-SHA and friends), no static-RSA or finite-field DHE key
 * exchange. TLS 1.3 suites are all AEAD; they are listed so the string says everything.
 * Every TLS 1.2 client the mesh meets (curl, Go, Python, browsers) offers these.
 */
export const TLS_CIPHERS = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

export interface MaterialPaths {
  readonly cert: string;
  readonly key: string;
  readonly bundle: string;
  readonly crls: string;
}

export interface TrustInfo {
  /** Subjects of the CAs in the bundle, "CN=Mesh CA" style. */
  readonly subjects: readonly string[];
  /** One line for humans: which CAs this service trusts. */
  readonly describe: string;
  /** The trusted roots, parsed: a presented chain is judged by signature, not by name. */
  readonly roots: readonly X509Certificate[];
  /** SHA-256 fingerprints of the trusted roots, as Node writes fingerprint256. */
  readonly fingerprints: ReadonlySet<string>;
  /** Serials (normalised) the CRLs revoke, to re-check peers already connected. */
  readonly revoked: ReadonlySet<string>;
  /**
   * Root generations as the CA gave them (bundle.generations.json beside the bundle), by
   * lower-case hex SHA-256 of each root's DER; empty when the file is absent (an older CA).
   */
  readonly generations: ReadonlyMap<string, number>;
}

export interface TlsMaterial {
  readonly paths: MaterialPaths;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
  /**
   * One PEM string per CRL. Node's `crl` option reads only the first CRL of a
   * buffer, so a concatenated crls.pem passed whole would leave every other CA
   * without a CRL (UNABLE_TO_GET_CRL for all its certificates).
   */
  readonly crl: string[];
  readonly trust: TrustInfo;
  readonly leaf: {
    readonly subject: string;
    readonly issuer: string;
    readonly serial: string;
    readonly notBefore: string;
    readonly notAfter: string;
    readonly trustDomain: string;
  };
  /** Content digests, to tell a real change from a touched file. */
  readonly certDigest: string;
  readonly trustDigest: string;
}

export function materialPaths(pkiDir: string, dns: string): MaterialPaths {
  return {
    cert: join(pkiDir, "certs", `${dns}.crt`),
    key: join(pkiDir, "certs", `${dns}.key`),
    bundle: join(pkiDir, "bundle.pem"),
    crls: join(pkiDir, "crls.pem"),
  };
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const hint =
      (e as NodeJS.ErrnoException).code === "ENOENT"
        ? " (does the CA exist? run: npm run mesh:up, or npm run ca -- issue)"
        : "";
    throw new MeshError("TLS_MATERIAL_MISSING", `cannot read ${what} ${path}: ${messageOf(e)}${hint}`);
  }
}

/**
 * Read and check everything: the PEM parses, the key belongs to the certificate, the
 * certificate names `dns`, and OpenSSL accepts the whole set as a context. Throws
 * MeshError; never returns half-valid material.
 */
/**
 * The mesh's trust domain, as this service's own certificate says: the trust domain of its
 * SPIFFE ID (the CA's, `ca init --trust-domain`), or the default for a certificate without one.
 */
function trustDomainOf(leaf: X509Certificate): string {
  const svid = svidIdOf(leaf);
  return svid.kind === "one" ? svid.id.trustDomain : DEFAULT_TRUST_DOMAIN;
}

export function loadMaterial(paths: MaterialPaths, dns: string): TlsMaterial {
  const certFile = read(paths.cert, "certificate");
  const key = read(paths.key, "private key");
  const ca = read(paths.bundle, "trust bundle");
  const crl = read(paths.crls, "CRL file");
  const bad = (msg: string): never => {
    throw new MeshError("TLS_MATERIAL_INVALID", msg);
  };

  let leaf: X509Certificate;
  let cert: Buffer;
  try {
    leaf = new X509Certificate(certFile);
    cert = servedChain(certFile);
  } catch (e) {
    return bad(`${paths.cert} is not a PEM certificate: ${messageOf(e)}`);
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(key)))
      bad(`${paths.key} does not belong to ${paths.cert} (a renewal half written?)`);
  } catch (e) {
    if (e instanceof MeshError) throw e;
    bad(`${paths.key} is not a usable private key: ${messageOf(e)}`);
  }
  if (!leaf.checkHost(dns, { subject: "never" }))
    bad(`${paths.cert} is not a certificate for ${dns} (its subject is ${oneLine(leaf.subject)})`);

  const roots = pemBlocks(ca.toString("utf8"), "CERTIFICATE");
  if (roots.length === 0) bad(`${paths.bundle} holds no certificate`);
  const subjects: string[] = [];
  const fingerprints = new Set<string>();
  const parsed: X509Certificate[] = [];
  for (const pem of roots) {
    try {
      const root = new X509Certificate(pem);
      parsed.push(root);
      subjects.push(oneLine(root.subject));
      fingerprints.add(root.fingerprint256);
    } catch (e) {
      bad(`${paths.bundle} holds a certificate that does not parse: ${messageOf(e)}`);
    }
  }
  const crls = pemBlocks(crl.toString("utf8"), "X509 CRL");
  if (crls.length === 0) bad(`${paths.crls} holds no "X509 CRL" block`);
  let revoked: Set<string>;
  try {
    revoked = revokedSet(crls);
  } catch (e) {
    return bad(`${paths.crls} holds a CRL that does not parse: ${messageOf(e)}`);
  }
  try {
    createSecureContext({ cert, key, ca, crl: crls, ciphers: TLS_CIPHERS, minVersion: "TLSv1.2" });
  } catch (e) {
    bad(`OpenSSL refuses the TLS material in ${paths.bundle}, ${paths.crls} or ${paths.cert}: ${messageOf(e)}`);
  }

  return {
    paths,
    cert,
    key,
    ca,
    crl: crls,
    trust: {
      subjects,
      describe: subjects.join("; "),
      roots: parsed,
      fingerprints,
      revoked,
      generations: readGenerations(paths.bundle),
    },
    leaf: {
      subject: oneLine(leaf.subject),
      issuer: oneLine(leaf.issuer),
      serial: leaf.serialNumber.toLowerCase(),
      notBefore: new Date(leaf.validFrom).toISOString(),
      notAfter: new Date(leaf.validTo).toISOString(),
      trustDomain: trustDomainOf(leaf),
    },
    certDigest: digest(certFile, key),
    trustDigest: digest(ca, crl),
  };
}

/**
 * What a service sends as its chain: the leaf and its intermediates, never a self-signed
 * root. A peer must already hold the root to trust it, so sending it proves nothing and
 * invites a careless client to trust whatever root comes along; a "full chain" file with the
 * root at its end is served without it. (For a leaf signed by the root itself the file has
 * nothing after the leaf, and OpenSSL's automatic chain building, which Node always leaves
 * on, appends the root from the trust store: see docs/mesh.md, "How a peer is accepted".)
 */
function servedChain(file: Buffer): Buffer {
  const blocks = pemBlocks(file.toString("utf8"), "CERTIFICATE");
  if (blocks.length <= 1) return file;
  const kept = blocks.filter((pem, i) => i === 0 || !selfSigned(new X509Certificate(pem)));
  return kept.length === blocks.length ? file : Buffer.from(`${kept.join("\n")}\n`);
}

function selfSigned(c: X509Certificate): boolean {
  return c.subject === c.issuer && c.verify(c.publicKey);
}

function oneLine(dn: string): string {
  return dn.split("\n").join(", ");
}

function digest(...parts: Buffer[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\0");
  return h.digest("hex");
}
