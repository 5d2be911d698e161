// Leaf certificates: issue, sign a CSR, renew, revoke. Everything is validated
// before any key is made; files and ledger row land together or not at all.
import { REVOCATION_REASONS, type RevocationReason } from "../lib/crl.ts";
import type { CaCore, IssuedCert, IssueOptions } from "./core.ts";
import { CaError, badInput } from "./errors.ts";
import { exportPrivateKey, generateKeyPair, publicKeyType, validateKeyType, type KeyType } from "./keys.ts";
import type { CertRow, IssuerRow } from "./ledger.ts";
import { validateDays, validateDnsName, validateIp } from "./names.ts";
import { LEAF_MAX_DAYS, clampToIssuer, createLeaf, validityFor, validityForMs, type LeafNames } from "./profiles.ts";
import { isUniqueViolation } from "./store/interface.ts";
import { permittedDns, withinDns } from "./verify.ts";
import { certToPem, normalSerial, x509 } from "./x509.ts";
import { spiffeIdForName } from "../lib/spiffe.ts";

const crashPoint = (where: string) => {
  // Fault injection for the crash tests: the process dies here as if killed.
  if (process.env.MESH_CA_CRASH_AT === where) process.kill(process.pid, "SIGKILL");
};

/** Issues a key and certificate for a name that has no valid certificate yet. */
export async function issue(ca: CaCore, opts: IssueOptions): Promise<IssuedCert> {
  const names = leafNames(opts, ca.trustDomain());
  const days = validateDays(opts.days ?? 90, LEAF_MAX_DAYS);
  const keyType = validateKeyType(opts.keyType ?? "ec-p256");
  refuseIfCurrent(ca, names.name);
  const keys = await generateKeyPair(keyType);
  return signLeaf(ca, {
    names,
    days,
    keyType,
    publicKey: keys.publicKey,
    privateKey: keys.privateKey,
    source: "issue",
  });
}

/** Signs a CSR after checking its PEM type, its signature and its names. */
export async function signCsr(
  ca: CaCore,
  opts: { csrPem: string; days?: number | string; allowWildcard?: boolean },
): Promise<IssuedCert> {
  const days = validateDays(opts.days ?? 90, LEAF_MAX_DAYS);
  const csr = parseCsr(opts.csrPem);
  // The key's type first: a curve WebCrypto lacks (P-192, secp256k1) would otherwise read as a bad signature.
  const keyType = csrKeyType(csr);
  let signed = false;
  try {
    signed = await csr.verify();
  } catch {
    /* an algorithm that cannot verify: unsigned */
  }
  if (!signed)
    throw badInput("the CSR's signature does not verify: it was altered or signed with another key; make a new CSR");
  const cn = csr.subjectName.getField("CN");
  const sanExt = csr.extensions.find(
    (e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension,
  );
  const dns = sanExt ? sanExt.names.items.filter((n) => n.type === "dns").map((n) => n.value) : [];
  const ip = sanExt ? sanExt.names.items.filter((n) => n.type === "ip").map((n) => n.value) : [];
  const other = sanExt ? sanExt.names.items.filter((n) => n.type !== "dns" && n.type !== "ip") : [];
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
  return signLeaf(ca, { names, days, keyType, publicKey: csr.publicKey, source: "csr" });
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
  const keyType = validateKeyType(opts.keyType ?? old.key_type);
  const sans = JSON.parse(old.sans) as LeafNames;
  const keys = await generateKeyPair(keyType);
  return signLeaf(ca, {
    names: sans,
    days,
    keyType,
    publicKey: keys.publicKey,
    privateKey: keys.privateKey,
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
  const signer = await ca.signer(row.issuer_id);
  const at = ca.now();
  const serial = row.serial;
  // The ledger row and the re-signed CRL are written under one write lock,
  // so two revocations at once cannot publish a CRL that misses either.
  await ca.ledger.writeAsync(async () => {
    if (!ca.ledger.markRevoked(serial, at.toISOString(), reason))
      throw new CaError("REFUSED", `${row!.name} (serial ${serial}) was revoked by another command just now`);
    await ca.resignCrl(row!.issuer_id, signer, at, { serial, revokedAt: at, reason });
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
  if (cur && new Date(cur.not_after) > ca.now()) {
    throw new CaError(
      "ALREADY_EXISTS",
      `${name} already has a valid certificate (serial ${cur.serial}, expires ${cur.not_after.slice(0, 10)}); to replace it run: npm run ca -- renew --domain ${name}`,
    );
  }
}

/**
 * @internal Signs and records a leaf. The online CA (ca/enrol.ts) also uses it: a lifetime
 * in milliseconds instead of days, CRL distribution points per issuer, and a hook that runs
 * inside the ledger transaction (spending the enrolment token with the issuance, or not at all).
 */
export async function signLeaf(
  ca: CaCore,
  opts: {
    names: LeafNames;
    days: number;
    keyType: KeyType;
    publicKey: CryptoKey | x509.PublicKey;
    privateKey?: CryptoKey;
    source: CertRow["source"];
    supersede?: string;
    lifetimeMs?: number;
    cdp?: (issuerId: string) => string[];
    inTransaction?: (serial: string) => void;
    /**
     * How the ledger row is committed. Default: a transaction of its own, now, with the
     * certificate's files staged in the journal. The online CA passes its group commit
     * (ca/store/group-commit.ts), which resolves once the row is durable; its certificates
     * live in the ledger only (the CA has no key for them, the client has the certificate),
     * so no file is written for them.
     */
    commit?: (record: () => void) => Promise<void>;
  },
): Promise<IssuedCert> {
  const issuerId = ca.signerId();
  const issuer = ca.issuerRow(issuerId);
  const signer = await ca.signer(issuerId);
  const now = ca.now();
  const warnings: string[] = [];
  const validity = clampToIssuer(
    opts.lifetimeMs !== undefined ? validityForMs(now, opts.lifetimeMs) : validityFor(now, opts.days),
    signer.cert,
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
  const cert = await createLeaf({
    names,
    publicKey: opts.publicKey,
    keyType: opts.keyType,
    issuer: signer,
    validity,
    cdp: opts.cdp?.(issuerId),
  });
  const serial = normalSerial(cert.serialNumber);
  const leafPem = certToPem(cert);
  const keyPem = opts.privateKey ? await exportPrivateKey(opts.privateKey) : undefined;
  const files = opts.commit === undefined;
  if (files) ca.journal.stage(serial, { cert: leafPem + ca.chainPem(issuerId), key: keyPem });
  crashPoint("before-commit");
  const name = names.name;
  // The CLI's way by default: a transaction of its own, now (synchronously, inside this call).
  const commit = opts.commit ?? (async (record: () => void) => ca.ledger.write(record, { shared: true }));
  try {
    await commit(() => {
      // First: of requests racing with one token, the losers are told the token was used.
      opts.inTransaction?.(serial);
      if (opts.supersede !== undefined) {
        if (!ca.ledger.markSuperseded(opts.supersede, serial))
          throw new CaError(
            "REFUSED",
            `${name} changed while renewing (another command renewed or revoked it); run list and try again`,
          );
      } else {
        const cur = ca.ledger.current(name);
        if (cur && new Date(cur.not_after) > now)
          throw new CaError("ALREADY_EXISTS", `${name} was issued by another command just now (serial ${cur.serial})`);
        if (cur) ca.ledger.markSuperseded(cur.serial, serial); // an expired predecessor
      }
      ca.ledger.insertCert({
        serial,
        name,
        sans: JSON.stringify(names),
        issuer_id: issuerId,
        key_type: opts.keyType,
        not_before: validity.notBefore.toISOString(),
        not_after: validity.notAfter.toISOString(),
        status: "valid",
        revoked_at: null,
        reason: null,
        superseded_by: null,
        source: opts.source,
        created_at: now.toISOString(),
        pem: leafPem,
      });
      // Shared: the token is spent and the predecessor superseded by conditional UPDATEs, and
      // one current certificate per name is a unique index, so issuances need not queue.
    });
  } catch (err) {
    if (files) ca.journal.discard(serial);
    if (isUniqueViolation(err)) {
      throw new CaError("ALREADY_EXISTS", `${name} was issued by another command just now`);
    }
    throw err;
  }
  crashPoint("after-commit");
  if (files) ca.journal.publish(serial, name);
  const paths = ca.layout.leaf(name);
  return {
    serial,
    domain: name,
    sans: names,
    certPath: paths.cert,
    der: new Uint8Array(cert.rawData),
    keyPath: keyPem ? paths.key : undefined,
    notBefore: validity.notBefore,
    notAfter: validity.notAfter,
    issuer: issuer.name,
    issuerId,
    generation: issuer.generation,
    warnings,
    supersedes: opts.supersede,
  };
}

/** Refuses names that a CA on the signing path may not certify: such a certificate would never validate. */
async function checkNameConstraints(ca: CaCore, names: LeafNames, issuerId: string): Promise<void> {
  for (
    let row: IssuerRow | undefined = ca.issuerRow(issuerId);
    row;
    row = row.parent ? ca.issuerRow(row.parent) : undefined
  ) {
    const permitted = permittedDns(row.id === issuerId ? (await ca.signer(issuerId)).cert : ca.issuerCert(row.id));
    if (!permitted) continue;
    const outside = [names.name, ...names.dns].find(
      (n) => !permitted.some((p) => withinDns(n.replace(/^\*\./, ""), p)),
    );
    if (outside) throw badInput(`${outside} is outside the names ${row.name} may certify (${permitted.join(", ")})`);
  }
}

function parseCsr(pem: string): x509.Pkcs10CertificateRequest {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(pem);
  if (!m) throw badInput("the CSR file is not PEM: expected -----BEGIN CERTIFICATE REQUEST-----");
  if (m[1] !== "CERTIFICATE REQUEST" && m[1] !== "NEW CERTIFICATE REQUEST") {
    throw badInput(
      `the CSR file holds a ${m[1]}, not a CERTIFICATE REQUEST${m[1]!.includes("PRIVATE KEY") ? " (never send a private key to the CA: make a CSR with openssl req -new -key KEY)" : ""}`,
    );
  }
  try {
    return new x509.Pkcs10CertificateRequest(pem);
  } catch {
    throw badInput("the CSR file is not a readable PKCS#10 request");
  }
}

/** The CA's name for a CSR's key type; an unsupported key or curve is named as such. */
function csrKeyType(csr: x509.Pkcs10CertificateRequest): KeyType {
  try {
    return publicKeyType(csr.publicKey.rawData);
  } catch (err) {
    if (err instanceof CaError) throw badInput(`the CSR's key is not supported: ${err.message}`);
    throw badInput("the CSR's public key is not readable: make a new CSR");
  }
}
