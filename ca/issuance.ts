// Leaf certificates: issue, sign a CSR, renew, revoke. Everything is validated
// before any key is made; files and ledger row land together or not at all.
import { normalSerial, REVOCATION_REASONS, type RevocationReason } from "../lib/crl.ts";
import type { CaCore, IssuedCert, IssueOptions } from "./core.ts";
import { CaError, badInput } from "./errors.ts";
import { KeyObject } from "node:crypto";
import { csrKey, csrSignatureValid, CsrFormatError, parseCsr, type ParsedCsr } from "./csr.ts";
import { crashPoint } from "./crash-point.ts";
import { exportPrivateKey, generateLeafKey, validateKeyType, type KeyType } from "./keys.ts";
import type { CertRow, IssuerRow } from "./ledger.ts";
import { permittedDnsOf, signLeafDer as signDer, templateFor } from "./leaf-der.ts";
import { validateDays, validateDnsName, validateIp } from "./names.ts";
import { LEAF_MAX_DAYS, clampToIssuer, randomSerial, validityFor, validityForMs, type LeafNames } from "./profiles.ts";
import { isUniqueViolation } from "./store/interface.ts";
import { withinDns } from "./name-constraints.ts";
import { derToPem } from "../lib/pem.ts";
import { spiffeIdForName } from "../lib/spiffe.ts";

/** Issues a key and certificate for a name that has no valid certificate yet. */
export async function issue(ca: CaCore, opts: IssueOptions): Promise<IssuedCert> {
  const names = leafNames(opts, ca.trustDomain());
  const days = validateDays(opts.days ?? 90, LEAF_MAX_DAYS);
  const keyType = validateKeyType(opts.keyType ?? "ec-p256");
  refuseIfCurrent(ca, names.name);
  const keys = await generateLeafKey(keyType);
  return signLeaf(ca, { names, days, keyType, publicKey: keys.spki, privateKeyPem: keys.pkcs8Pem, source: "issue" });
}

/** Signs a CSR after checking its PEM type, its signature and its names. */
export async function signCsr(
  ca: CaCore,
  opts: { csrPem: string; days?: number | string; allowWildcard?: boolean },
): Promise<IssuedCert> {
  const days = validateDays(opts.days ?? 90, LEAF_MAX_DAYS);
  const csr = readCsrPem(opts.csrPem);
  // The key's type first: a curve this CA does not sign (P-192, secp256k1) would otherwise read as a bad signature.
  const { key, keyType } = csrKeyOrRefuse(csr);
  if (!csrSignatureValid(csr, key))
    throw badInput("the CSR's signature does not verify: it was altered or signed with another key; make a new CSR");
  const cn = csr.cns;
  const dns = csr.sans.filter((n) => n.type === "dns").map((n) => n.value);
  const ip = csr.sans.filter((n) => n.type === "ip").map((n) => n.value);
  const other = csr.sans.filter((n) => n.type !== "dns" && n.type !== "ip");
  if (other.length > 0)
    throw badInput(
      `the CSR asks for ${other.map((n) => `${n.type}:${n.value}`).join(", ")}: only DNS and IP names are signed (the CA sets the SPIFFE ID itself, from the name)`,
    );
  if (cn.length > 1)
    throw badInput(`the CSR's subject has ${cn.length} CNs (${cn.join(", ")}): a service certificate has exactly one`);
  const name = cn[0] ?? dns[0];
  if (!name) throw badInput("the CSR names nothing: give it a CN or a DNS subjectAltName");
  if (cn[0] && dns.length > 0 && !dns.includes(cn[0]))
    throw badInput(`the CSR's CN ${cn[0]} is not among its DNS names (${dns.join(", ")})`);
  const names = leafNames({ domain: name, dns, ip, allowWildcard: opts.allowWildcard }, ca.trustDomain());
  refuseIfCurrent(ca, names.name);
  return signLeaf(ca, { names, days, keyType, publicKey: csr.spki, source: "csr" });
}

/** New key and certificate for a name; the old one becomes SUPERSEDED, linked to its successor. */
export async function renew(
  ca: CaCore,
  opts: { domain: string; days?: number | string; keyType?: KeyType | string },
): Promise<IssuedCert> {
  const name = validateDnsName(opts.domain, { allowWildcard: true, what: "--domain" });
  const days = validateDays(opts.days ?? 90, LEAF_MAX_DAYS);
  const old = ca.ledger.current(name);
  if (!old) {
    const latest = ca.ledger.latest(name);
    if (latest?.status === "revoked")
      throw new CaError(
        "REFUSED",
        `cannot renew ${name}: its certificate ${latest.serial} is revoked; issue a fresh one (run: npm run ca -- issue --domain ${name})`,
      );
    throw new CaError(
      "NOT_FOUND",
      `cannot renew ${name}: no certificate for it in ${ca.layout.dir} (run: npm run ca -- issue --domain ${name})`,
    );
  }
  if (old.source !== "issue" && old.source !== "renew")
    throw new CaError(
      "REFUSED",
      `cannot renew ${name}: it was signed from a CSR, so its key is not here; sign a new CSR (run: npm run ca -- sign --csr FILE)`,
    );
  const keyType = validateKeyType(opts.keyType ?? old.keyType);
  const sans = JSON.parse(old.sans) as LeafNames;
  const keys = await generateLeafKey(keyType);
  return signLeaf(ca, {
    names: sans,
    days,
    keyType,
    publicKey: keys.spki,
    privateKeyPem: keys.pkcs8Pem,
    source: "renew",
    supersede: old.serial,
  });
}

export async function revoke(
  ca: CaCore,
  opts: { domain?: string; serial?: string; reason?: string },
): Promise<CertRow> {
  const reason = (opts.reason ?? "unspecified") as RevocationReason;
  if (!REVOCATION_REASONS.includes(reason))
    throw badInput(
      `--reason ${JSON.stringify(opts.reason)} is not a revocation reason: use one of ${REVOCATION_REASONS.join(", ")}`,
    );
  let row: CertRow | undefined;
  if (opts.serial !== undefined) {
    if (!/^[0-9a-fA-F:]{1,64}$/.test(opts.serial))
      throw badInput(`--serial ${JSON.stringify(opts.serial)} is not a hexadecimal serial number`);
    row = ca.ledger.bySerial(normalSerial(opts.serial.replaceAll(":", "")));
    if (!row)
      throw new CaError(
        "NOT_FOUND",
        `no certificate with serial ${opts.serial} in ${ca.layout.dir} (see: npm run ca -- list --all)`,
      );
  } else {
    const name = validateDnsName(opts.domain ?? "", { allowWildcard: true, what: "--domain" });
    row = ca.ledger.current(name);
    if (!row) {
      const latest = ca.ledger.latest(name);
      if (latest?.status === "revoked")
        throw new CaError("REFUSED", `${name} is already revoked (serial ${latest.serial})`);
      throw new CaError("NOT_FOUND", `no certificate for ${name} in ${ca.layout.dir} (see: npm run ca -- list)`);
    }
  }
  if (row.status === "revoked") throw new CaError("REFUSED", `${row.name} (serial ${row.serial}) is already revoked`);
  const signer = await ca.signer(row.issuerId);
  const at = ca.now();
  const serial = row.serial;
  // The ledger row and the re-signed CRL are written under one write lock,
  // so two revocations at once cannot publish a CRL that misses either.
  await ca.ledger.writeAsync(async () => {
    if (!ca.ledger.markRevoked(serial, at.toISOString(), reason))
      throw new CaError("REFUSED", `${row!.name} (serial ${serial}) was revoked by another command just now`);
    await ca.resignCrl(row!.issuerId, signer, at, { serial, revokedAt: at, reason });
  });
  ca.writeCrlBundle();
  return ca.ledger.bySerial(serial)!;
}

/** The SANs of a leaf; with a trust domain, also its SPIFFE ID (svidNames). */
export function leafNames(
  opts: { domain: string; dns?: string[]; ip?: string[]; allowWildcard?: boolean },
  trustDomain?: string,
): LeafNames {
  const name = validateDnsName(opts.domain, { allowWildcard: opts.allowWildcard, what: "--domain" });
  const dns = (opts.dns ?? []).map((d) => validateDnsName(d, { allowWildcard: opts.allowWildcard, what: "--dns" }));
  const ip = (opts.ip ?? []).map(validateIp);
  const names = { name, dns: [...new Set(dns)].filter((d) => d !== name), ip: [...new Set(ip)], uri: [] };
  return trustDomain === undefined ? names : svidNames(names, trustDomain);
}

/**
 * The names with exactly the one URI SAN an X.509-SVID carries, its SPIFFE ID
 * (spiffe://<trust domain>/<name>, lib/spiffe.ts), whatever URI the names held before: the CA
 * alone decides it, from the name, never from a request. A wildcard is no one workload: no URI.
 */
export function svidNames(names: LeafNames, trustDomain: string): LeafNames {
  const id = spiffeIdForName(trustDomain, names.name);
  return { ...names, uri: id === null ? [] : [id] };
}

function refuseIfCurrent(ca: CaCore, name: string): void {
  const cur = ca.ledger.current(name);
  if (cur && new Date(cur.notAfter) > ca.now()) {
    throw new CaError(
      "ALREADY_EXISTS",
      `${name} already has a valid certificate (serial ${cur.serial}, expires ${cur.notAfter.slice(0, 10)}); to replace it run: npm run ca -- renew --domain ${name}`,
    );
  }
}

/**
 * @internal Signs and records a leaf. The online CA (ca/enrol.ts) also uses it: a lifetime
 * in milliseconds instead of days, CRL distribution points per issuer, and an enrolment token spent
 * in the ledger transaction with the issuance, or not at all.
 */
export async function signLeaf(ca: CaCore, opts: SignLeafOptions): Promise<IssuedCert> {
  return (await signLeafDer(ca, opts)).issued;
}

export interface SignLeafOptions {
  names: LeafNames;
  days: number;
  keyType: KeyType;
  /** A WebCrypto key, or a DER SubjectPublicKeyInfo (a CSR's). */
  publicKey: CryptoKey | Uint8Array;
  privateKey?: CryptoKey;
  /** The same, already PKCS#8 PEM (keys.ts generateLeafKey). */
  privateKeyPem?: string;
  source: CertRow["source"];
  supersede?: string;
  lifetimeMs?: number;
  cdp?: (issuerId: string) => string[];
  /**
   * An enrolment token spent with the record, in its transaction (SHA-256 hex; unused and
   * unexpired at `at`), and the error to throw when it no longer is.
   */
  spendToken?: { hash: string; at: string; spent: () => Error };
  /**
   * How the ledger row is committed. Default: the CA's journal commit (ca/store/journal-commit.ts),
   * with the certificate's files staged before and published after; issuances under way
   * together share its fsyncs and its transaction. The online CA passes its group commit
   * (ca/store/group-commit.ts), which resolves once the row is durable; its certificates
   * live in the ledger only (the CA has no key for them, the client has the certificate),
   * so no file is written for them.
   */
  commit?: (record: () => void) => Promise<void>;
}

/** @internal signLeaf, with the leaf's DER (EST answers with it, without parsing the PEM again). */
export async function signLeafDer(ca: CaCore, opts: SignLeafOptions): Promise<{ issued: IssuedCert; der: Uint8Array }> {
  const issuerId = ca.signerId();
  const issuer = ca.issuerRow(issuerId);
  const signer = await ca.signer(issuerId);
  const now = ca.now();
  const warnings: string[] = [];
  const template = templateFor(signer);
  const validity = clampToIssuer(
    opts.lifetimeMs !== undefined ? validityForMs(now, opts.lifetimeMs) : validityFor(now, opts.days),
    template,
    warnings,
  );
  const rootRow = ca.issuerRow(`root-${issuer.generation}`);
  if (rootRow.state === "pending") {
    warnings.push(
      `generation ${issuer.generation} is not in the published trust bundle yet: peers that trust only ${ca.layout.bundle} will reject this certificate (publish it first: npm run ca -- bundle)`,
    );
  }
  // Every leaf, however it came to be signed (issue, sign, renew, EST, the CA server's own), gets its SPIFFE ID here.
  const names = svidNames(opts.names, ca.trustDomain());
  await checkNameConstraints(ca, names, issuerId);
  const serialHex = randomSerial();
  const der = await signDer(template, {
    names,
    spki: spkiOf(opts.publicKey),
    keyType: opts.keyType,
    validity,
    serial: serialHex,
    cdp: opts.cdp?.(issuerId),
  });
  const leafPem = derToPem(der, "CERTIFICATE");
  const serial = normalSerial(serialHex);
  const keyPem = opts.privateKeyPem ?? (opts.privateKey ? await exportPrivateKey(opts.privateKey) : undefined);
  const name = names.name;
  const cert: CertRow = {
    serial,
    name,
    sans: JSON.stringify(names),
    issuerId: issuerId,
    keyType: opts.keyType,
    notBefore: validity.notBefore.toISOString(),
    notAfter: validity.notAfter.toISOString(),
    status: "valid",
    revokedAt: null,
    reason: null,
    supersededBy: null,
    source: opts.source,
    createdAt: now.toISOString(),
    pem: leafPem,
  };
  const record = () => {
    // Shared: the token is spent and the predecessor superseded by conditional UPDATEs, and
    // one current certificate per name is a unique index, so issuances need not queue.
    const refused = ca.ledger.recordIssuance({
      cert,
      supersede: opts.supersede,
      token: opts.spendToken && { hash: opts.spendToken.hash, at: opts.spendToken.at },
    });
    // Of requests racing with one token, the losers are told the token was used.
    if (refused?.why === "token_spent") throw opts.spendToken!.spent();
    if (refused?.why === "changed")
      throw new CaError(
        "REFUSED",
        `${name} changed while renewing (another command renewed or revoked it); run list and try again`,
      );
    if (refused?.why === "taken")
      throw new CaError("ALREADY_EXISTS", `${name} was issued by another command just now (serial ${refused.serial})`);
  };
  try {
    if (opts.commit) {
      crashPoint("before-commit");
      await opts.commit(record);
      crashPoint("after-commit");
    } else {
      // Staged, committed, published; the crash points are in there, around the commit.
      await ca.journalCommit.commit({ serial, name, cert: leafPem + ca.chainPem(issuerId), key: keyPem, record });
    }
  } catch (err) {
    if (isUniqueViolation(err)) {
      throw new CaError("ALREADY_EXISTS", `${name} was issued by another command just now`);
    }
    throw err;
  }
  const paths = ca.layout.leaf(name);
  const issued: IssuedCert = {
    serial,
    domain: name,
    sans: names,
    certPath: paths.cert,
    der,
    keyPath: keyPem ? paths.key : undefined,
    notBefore: validity.notBefore,
    notAfter: validity.notAfter,
    issuer: issuer.name,
    issuerId,
    generation: issuer.generation,
    warnings,
    supersedes: opts.supersede,
  };
  return { issued, der };
}

/** Refuses names that a CA on the signing path may not certify: such a certificate would never validate. */
async function checkNameConstraints(ca: CaCore, names: LeafNames, issuerId: string): Promise<void> {
  for (
    let row: IssuerRow | undefined = ca.issuerRow(issuerId);
    row;
    row = row.parent ? ca.issuerRow(row.parent) : undefined
  ) {
    const permitted = await permittedOf(ca, row.id, issuerId);
    if (!permitted) continue;
    const outside = [names.name, ...names.dns].find(
      (n) => !permitted.some((p) => withinDns(n.replace(/^\*\./, ""), p)),
    );
    if (outside) throw badInput(`${outside} is outside the names ${row.name} may certify (${permitted.join(", ")})`);
  }
}

// The DNS names an issuing CA's name constraints permit, computed once per version of its
// certificate (authority.ts reads a CA's certificate again only when its file changed).
const permittedCache = new WeakMap<object, string[] | undefined>();

async function permittedOf(ca: CaCore, id: string, signerId: string): Promise<string[] | undefined> {
  const signer = id === signerId ? await ca.signer(id) : undefined;
  const der = signer ? (signer.certDer ?? new Uint8Array(signer.cert.rawData)) : ca.issuerDer(id);
  if (!permittedCache.has(der)) permittedCache.set(der, permittedDnsOf(der));
  return permittedCache.get(der);
}

function spkiOf(key: CryptoKey | Uint8Array): Uint8Array {
  if (key instanceof Uint8Array) return key;
  return KeyObject.from(key as Parameters<typeof KeyObject.from>[0]).export({ format: "der", type: "spki" });
}

/** The DER of a PEM CSR, refused with the CLI's messages when it is something else. */
function readCsrPem(pem: string): ParsedCsr {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(pem);
  if (!m) throw badInput("the CSR file is not PEM: expected -----BEGIN CERTIFICATE REQUEST-----");
  if (m[1] !== "CERTIFICATE REQUEST" && m[1] !== "NEW CERTIFICATE REQUEST") {
    throw badInput(
      `the CSR file holds a ${m[1]}, not a CERTIFICATE REQUEST${m[1]!.includes("PRIVATE KEY") ? " (never send a private key to the CA: make a CSR with openssl req -new -key KEY)" : ""}`,
    );
  }
  const body = new RegExp(`-----BEGIN ${m[1]}-----([A-Za-z0-9+/=\\s]*)-----END ${m[1]}-----`).exec(pem);
  try {
    if (!body) throw new CsrFormatError("no PEM body");
    return parseCsr(Buffer.from(body[1]!.replace(/\s+/g, ""), "base64"));
  } catch (err) {
    if (err instanceof CsrFormatError) throw badInput("the CSR file is not a readable PKCS#10 request");
    throw err;
  }
}

/** The CA's name for a CSR's key type; an unsupported key or curve is named as such. */
function csrKeyOrRefuse(csr: ParsedCsr): ReturnType<typeof csrKey> {
  try {
    return csrKey(csr);
  } catch (err) {
    if (err instanceof CaError) throw badInput(`the CSR's key is not supported: ${err.message}`);
    throw badInput("the CSR's public key is not readable: make a new CSR");
  }
}
