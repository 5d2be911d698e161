// Makes the bad certificate a teaching toggle presents, for real: signed by the mesh's own issuing
// CA (its key, through `openssl ca`: the CA's profile allows none of these on purpose, so the
// dates, the extended key usage and the SANs are set here), or by a real other CA made with the
// project's CA code. The revoked one is also recorded in the CA's ledger and its CRL re-signed, so
// every service learns of it the way it learns of any revocation (the long poll, within a second).
import { execFile } from "node:child_process";
import { X509Certificate, generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CertificateAuthority } from "../../ca/index.ts";
import { spiffeIdForName } from "../../lib/spiffe.ts";
import { ToggleError } from "./errors.ts";
import type { ToggleKind } from "./kinds.ts";

export interface Crafted {
  /** The chain to serve: leaf, then the intermediates (never the root). */
  certPem: string;
  keyPem: string;
  serial: string;
  /** One line: what was made and by whom. */
  made: string;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Another service's name for `other-name`: a real name of the mesh, as a misplaced secret would be. */
export function otherName(service: string): string {
  return service === "payment" ? "inventory" : "payment";
}

/**
 * Makes the certificate and key for `kind`, presented as `service`. `work` is a private folder
 * (0700) for openssl's files, removed by the caller; the keys never leave it but in the answer.
 */
export async function craft(o: {
  kind: ToggleKind;
  service: string;
  pki: string;
  work: string;
  /** The CA's ledger when it is not the folder's ca.db: mesh:up's --store (mesh.json's ca.store). */
  store?: string;
}): Promise<Crafted> {
  const dns = `${o.service}.internal`;
  if (o.kind === "foreign-ca") return foreign(dns, o.work);
  const ca = await openMeshCa(o.pki, o.store);
  try {
    const td = ca.trustDomain();
    const id = (name: string) => spiffeIdForName(td, name);
    const now = Date.now();
    const spec: Spec = { dns, uris: [id(dns)!], from: now - 5 * 60_000, to: now + DAY, eku: "serverAuth, clientAuth" };
    switch (o.kind) {
      case "expired":
        Object.assign(spec, { from: now - DAY, to: now - HOUR });
        break;
      case "not-yet-valid":
        Object.assign(spec, { from: now + DAY, to: now + 2 * DAY });
        break;
      case "no-client-auth":
        spec.eku = "serverAuth";
        break;
      case "other-name": {
        const other = `${otherName(o.service)}.internal`;
        Object.assign(spec, { dns: other, uris: [id(other)!] });
        break;
      }
      case "two-spiffe-ids":
        spec.uris = [id(dns)!, `spiffe://${td}/admin`];
        break;
      case "revoked":
        break;
    }
    const signerId = ca.signerId();
    const made = await signWithOpenssl(spec, ca.layout.issuer(signerId), o.work);
    const issuer = ca.issuerRow(signerId).name;
    const certPem = made.certPem + ca.chainPem(signerId);
    if (o.kind === "revoked") await recordRevoked(ca, signerId, made, spec);
    return {
      certPem,
      keyPem: made.keyPem,
      serial: made.serial,
      made: `${spec.dns} (serial ${made.serial}) signed by the mesh's ${issuer}, valid ${iso(spec.from)} to ${iso(spec.to)}, EKU ${spec.eku}, SPIFFE ${spec.uris.join(" and ")}`,
    };
  } finally {
    ca.close();
  }
}

interface Spec {
  dns: string;
  uris: string[];
  from: number;
  to: number;
  eku: string;
}

async function openMeshCa(pki: string, store?: string): Promise<CertificateAuthority> {
  if (!CertificateAuthority.exists(pki))
    throw new ToggleError("NO_MESH", `no CA in ${pki}: is the mesh up? (npm run mesh:up)`);
  // As mesh:up and the CA's CLI: encrypted CA keys are opened with MESH_CA_PASSPHRASE, never an argument.
  return CertificateAuthority.open({
    dir: pki,
    passphrase: process.env.MESH_CA_PASSPHRASE || undefined,
    store: store && store !== "sqlite" ? store : undefined,
  });
}

/** A real other CA: the project's CA code, a name of its own and its own key, in `work` (removed after). */
async function foreign(dns: string, work: string): Promise<Crafted> {
  const ca = await CertificateAuthority.init({ dir: join(work, "foreign-ca"), name: "Foreign Teaching CA" });
  try {
    const leaf = await ca.issue({ domain: dns, days: 1 });
    const certPem = readFileSync(leaf.certPath, "utf8");
    return {
      certPem,
      keyPem: readFileSync(leaf.keyPath!, "utf8"),
      serial: leaf.serial,
      made: `${dns} (serial ${leaf.serial}) signed by CN=Foreign Teaching CA, a CA of its own (its key was destroyed), valid ${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()}`,
    };
  } finally {
    ca.close();
  }
}

/**
 * `openssl ca` with the mesh's issuing CA: a fresh P-256 key (made here, 0600), a CSR, and the
 * certificate with exactly the dates and extensions asked (`openssl x509` cannot date the past).
 */
async function signWithOpenssl(
  spec: Spec,
  issuer: { cert: string; key: string },
  work: string,
): Promise<{ certPem: string; keyPem: string; serial: string }> {
  const dir = mkdtempSync(join(work, "openssl-"));
  const f = (n: string) => join(dir, n);
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  writeFileSync(f("key.pem"), keyPem, { mode: 0o600 });
  // A positive 128-bit serial, as the CA's own.
  const serialBytes = randomBytes(16);
  serialBytes[0]! &= 0x7f;
  serialBytes[0]! |= 0x10;
  writeFileSync(f("serial"), `${serialBytes.toString("hex").toUpperCase()}\n`);
  writeFileSync(f("index.txt"), "");
  writeFileSync(
    f("ca.cnf"),
    `[ca]\ndefault_ca = toggle\n[toggle]\ndatabase = ${f("index.txt")}\nnew_certs_dir = ${dir}\nserial = ${f("serial")}\ndefault_md = sha256\npolicy = anything\nunique_subject = no\nemail_in_dn = no\ncopy_extensions = none\n[anything]\ncommonName = supplied\n`,
  );
  const san = [`DNS:${spec.dns}`, ...spec.uris.map((u) => `URI:${u}`)].join(", ");
  writeFileSync(
    f("ext.cnf"),
    `[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = ${spec.eku}\nsubjectAltName = ${san}\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n`,
  );
  await openssl(["req", "-new", "-key", f("key.pem"), "-subj", `/CN=${spec.dns}`, "-out", f("csr.pem")]);
  const pass = process.env.MESH_CA_PASSPHRASE ? ["-passin", "env:MESH_CA_PASSPHRASE"] : [];
  // Without it, openssl would ask on the terminal and wait there.
  if (pass.length === 0 && readFileSync(issuer.key, "utf8").includes("ENCRYPTED"))
    throw new ToggleError(
      "BAD_INPUT",
      `the CA's key ${issuer.key} is encrypted: set MESH_CA_PASSPHRASE (as for mesh:up and npm run ca) and try again`,
    );
  await openssl([
    "ca",
    "-batch",
    "-notext",
    "-config",
    f("ca.cnf"),
    "-cert",
    issuer.cert,
    "-keyfile",
    issuer.key,
    ...pass,
    "-in",
    f("csr.pem"),
    "-out",
    f("cert.pem"),
    "-startdate",
    opensslDate(spec.from),
    "-enddate",
    opensslDate(spec.to),
    "-extfile",
    f("ext.cnf"),
    "-extensions",
    "leaf",
  ]);
  const certPem = readFileSync(f("cert.pem"), "utf8");
  rmSync(dir, { recursive: true, force: true });
  return { certPem, keyPem, serial: new X509Certificate(certPem).serialNumber.toLowerCase() };
}

/**
 * The revoked toggle's certificate goes into the CA's ledger as revoked (a row of its own: the
 * service's identity stays current), and the CA's CRL is re-signed from the ledger, as any
 * revocation is; the CA server publishes it to the long poll.
 */
async function recordRevoked(
  ca: CertificateAuthority,
  issuerId: string,
  made: { certPem: string; serial: string },
  spec: Spec,
): Promise<void> {
  const at = new Date().toISOString();
  ca.ledger.write(() =>
    ca.ledger.insertCert({
      serial: made.serial,
      name: spec.dns,
      sans: JSON.stringify({ name: spec.dns, dns: [], ip: [], uri: spec.uris }),
      issuerId: issuerId,
      keyType: "ec-p256",
      notBefore: new Date(spec.from).toISOString(),
      notAfter: new Date(spec.to).toISOString(),
      status: "revoked",
      revokedAt: at,
      reason: "cessationOfOperation",
      supersededBy: null,
      source: "csr",
      createdAt: at,
      pem: made.certPem,
    }),
  );
  await ca.publishCrls([issuerId]);
}

function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("openssl", args, { timeout: 30_000 }, (err, _out, stderr) => {
      if (!err) return resolve();
      const first = String(stderr).trim().split("\n").find(Boolean) ?? err.message;
      reject(new ToggleError("OPENSSL", `openssl ${args[0]} failed: ${first.slice(0, 300)}`));
    });
  });
}

/** YYYYMMDDHHMMSSZ, as `openssl ca -startdate` takes it. */
function opensslDate(ms: number): string {
  return `${new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** A private work folder for one toggle (0700), under `parent`. */
export function workFolder(parent: string): string {
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  return mkdtempSync(join(parent, ".toggle-work-"));
}
