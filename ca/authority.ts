// The Certificate Authority: opens the state folder and carries out every
// operation on it. Validates all input before it touches any state.
import { existsSync, mkdirSync } from "node:fs";
import { buildCrl, CRL_WARN_DAYS, REVOCATION_REASONS, type RevocationReason } from "./crl.ts";
import { CaError, badInput } from "./errors.ts";
import { CERT_MODE, KEY_MODE, writeAtomic, writeNew } from "./files.ts";
import { exportPrivateKey, generateKeyPair, importSigningKey, publicKeyType, validateKeyType, type KeyType } from "./keys.ts";
import { Ledger, displayStatus, type CertRow, type IssuerRow } from "./ledger.ts";
import { validateCaName, validateDays, validateDnsName, validateIp } from "./names.ts";
import { DAY_MS, createIntermediate, createLeaf, createRoot, validityFor, type LeafNames, type Signer, type Validity } from "./profiles.ts";
import { Journal, Layout, readStateFile } from "./store.ts";
import { parseCertificates, parseCrls, permittedDns, verifyPath, withinDns, type Purpose, type VerifyResult } from "./verify.ts";
import { certToPem, crlToPem, normalSerial, x509 } from "./x509.ts";

export const LEAF_MAX_DAYS = 825; // the limit Apple platforms apply to TLS server certificates
export const CA_MAX_DAYS = 7300;

export interface OpenOptions {
  dir: string;
  /** The clock: every date the CA writes or checks comes from here. */
  now?: () => Date;
  /** Passphrase of the CA keys, when they are encrypted. */
  passphrase?: string;
}

export interface InitOptions extends OpenOptions {
  name: string;
  days?: number;
  keyType?: KeyType | string;
}

export interface IssuedCert {
  serial: string;
  domain: string;
  sans: LeafNames;
  certPath: string;
  /** Absent for a certificate signed from a CSR: its key never left the service. */
  keyPath?: string;
  notBefore: Date;
  notAfter: Date;
  /** The issuing CA's name and id ("root-1", "int-1"). */
  issuer: string;
  issuerId: string;
  generation: number;
  /** Things the user should know: a clamped expiry, an unpublished generation. */
  warnings: string[];
  supersedes?: string;
}

export interface IssueOptions {
  domain: string;
  days?: number | string;
  dns?: string[];
  ip?: string[];
  keyType?: KeyType | string;
  allowWildcard?: boolean;
}

export interface ListedCert {
  serial: string;
  domain: string;
  sans: LeafNames;
  status: "VALID" | "EXPIRED" | "REVOKED" | "SUPERSEDED";
  issued: string;
  notBefore: string;
  notAfter: string;
  issuer: string;
  issuerId: string;
  generation: number;
  keyType: string;
  source: string;
  revokedAt: string | null;
  reason: string | null;
  supersededBy: string | null;
}

export interface Generation {
  generation: number;
  root: IssuerRow;
  intermediates: IssuerRow[];
}

const crashPoint = (where: string) => {
  // Fault injection for the crash tests: the process dies here as if killed.
  if (process.env.MESH_CA_CRASH_AT === where) process.kill(process.pid, "SIGKILL");
};

export class CertificateAuthority {
  readonly layout: Layout;
  readonly ledger: Ledger;
  readonly now: () => Date;
  private readonly passphrase?: string;
  private readonly journal: Journal;
  private readonly signers = new Map<string, Signer>();

  private constructor(layout: Layout, ledger: Ledger, opts: OpenOptions) {
    this.layout = layout;
    this.ledger = ledger;
    this.now = opts.now ?? (() => new Date());
    this.passphrase = opts.passphrase;
    this.journal = new Journal(layout);
  }

  /** The files services and users read: trust bundle, CRLs, certificates by name. */
  get paths() {
    const l = this.layout;
    return {
      dir: l.dir, bundle: l.bundle, crls: l.crls, certsDir: l.certsDir, ledger: l.ledger,
      root: (generation: number) => l.root(generation),
      leaf: (name: string) => l.leaf(name),
    };
  }

  static exists(dir: string): boolean {
    return existsSync(new Layout(dir).ledger);
  }

  /** Creates root generation 1 in an empty state folder. Never overwrites a CA. */
  static async init(opts: InitOptions): Promise<CertificateAuthority> {
    const name = validateCaName(opts.name);
    const days = validateDays(opts.days ?? 3650, CA_MAX_DAYS);
    const keyType = validateKeyType(opts.keyType ?? "ec-p256");
    const layout = new Layout(opts.dir);
    const rootPaths = layout.root(1);
    if (existsSync(layout.ledger) || existsSync(rootPaths.key)) {
      throw new CaError("ALREADY_EXISTS", `a CA already exists in ${layout.dir}: refusing to overwrite its key (use another --dir, or move that folder away yourself)`);
    }
    const now = (opts.now ?? (() => new Date()))();
    const keys = await generateKeyPair(keyType);
    const cert = await createRoot({ name, keys, keyType, validity: validityFor(now, days) });
    mkdirSync(rootPaths.dir, { recursive: true, mode: 0o755 });
    writeNew(rootPaths.key, await exportPrivateKey(keys.privateKey, opts.passphrase), KEY_MODE);
    writeAtomic(rootPaths.cert, certToPem(cert), CERT_MODE);
    const ledger = Ledger.open(layout.ledger, { create: true });
    const ca = new CertificateAuthority(layout, ledger, opts);
    ca.signers.set("root-1", { cert, key: keys.privateKey, keyType });
    ledger.write(() => {
      ledger.insertIssuer(issuerRow("root-1", "root", 1, null, cert, keyType, "published", now));
      ledger.setMeta("signer", "root-1");
    });
    await ca.publishCrls(["root-1"]);
    ca.writeBundle();
    return ca;
  }

  static async open(opts: OpenOptions): Promise<CertificateAuthority> {
    const layout = new Layout(opts.dir);
    if (!existsSync(layout.ledger)) {
      throw new CaError("NOT_INITIALISED", `the CA is not initialised in ${layout.dir} (run: npm run ca -- init --name "Acme Corp CA")`);
    }
    const ledger = Ledger.open(layout.ledger);
    const ca = new CertificateAuthority(layout, ledger, opts);
    ca.journal.recover(ledger);
    return ca;
  }

  close(): void {
    this.ledger.close();
  }

  // --- issuers ---------------------------------------------------------------

  signerId(): string {
    const id = this.ledger.getMeta("signer");
    if (!id) throw new CaError("CORRUPT", `the ledger ${this.layout.ledger} names no signing CA; restore it from a backup`);
    return id;
  }

  issuerRow(id: string): IssuerRow {
    const row = this.ledger.issuer(id);
    if (!row) throw new CaError("NOT_FOUND", `no issuing CA ${id} in ${this.layout.dir}`);
    return row;
  }

  issuerCert(id: string): x509.X509Certificate {
    const path = this.layout.issuer(id).cert;
    try {
      return new x509.X509Certificate(readStateFile(path, "the CA certificate"));
    } catch (err) {
      if (err instanceof CaError) throw err;
      throw new CaError("CORRUPT", `the CA certificate ${path} is not a readable certificate; restore it from your backup`);
    }
  }

  /** Loads a CA's key and certificate and checks that they belong together. */
  async signer(id: string): Promise<Signer> {
    const cached = this.signers.get(id);
    if (cached) return cached;
    const paths = this.layout.issuer(id);
    const cert = this.issuerCert(id);
    const { key, type, spki } = await importSigningKey(readStateFile(paths.key, "the CA key"), paths.key, this.passphrase);
    if (!spki.equals(Buffer.from(cert.publicKey.rawData))) {
      throw new CaError("CORRUPT", `the CA key ${paths.key} does not match its certificate ${paths.cert}; restore the pair from your backup`);
    }
    const signer = { cert, key, keyType: type };
    this.signers.set(id, signer);
    return signer;
  }

  generations(): Generation[] {
    const rows = this.ledger.issuers();
    return rows.filter((r) => r.kind === "root").map((root) => ({
      generation: root.generation,
      root,
      intermediates: rows.filter((r) => r.kind === "intermediate" && r.generation === root.generation),
    }));
  }

  /** The chain a leaf of this issuer is served with: every CA between it and the root. */
  private chainPem(issuerId: string): string {
    let pem = "";
    let row = this.issuerRow(issuerId);
    while (row.kind === "intermediate") {
      pem += certToPem(this.issuerCert(row.id));
      row = this.issuerRow(row.parent!);
    }
    return pem;
  }

  // --- leaf certificates -----------------------------------------------------

  /** Issues a key and certificate for a name that has no valid certificate yet. */
  async issue(opts: IssueOptions): Promise<IssuedCert> {
    const names = this.leafNames(opts);
    const days = validateDays(opts.days ?? 90, LEAF_MAX_DAYS);
    const keyType = validateKeyType(opts.keyType ?? "ec-p256");
    this.refuseIfCurrent(names.name);
    const keys = await generateKeyPair(keyType);
    return this.signLeaf({ names, days, keyType, publicKey: keys.publicKey, privateKey: keys.privateKey, source: "issue" });
  }

  /** Signs a CSR after checking its PEM type, its signature and its names. */
  async signCsr(opts: { csrPem: string; days?: number | string; allowWildcard?: boolean }): Promise<IssuedCert> {
    const days = validateDays(opts.days ?? 90, LEAF_MAX_DAYS);
    const csr = parseCsr(opts.csrPem);
    if (!(await csr.verify())) throw badInput("the CSR's signature does not verify: it was altered or signed with another key; make a new CSR");
    const cn = csr.subjectName.getField("CN");
    const sanExt = csr.extensions.find((e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension);
    const dns = sanExt ? sanExt.names.items.filter((n) => n.type === "dns").map((n) => n.value) : [];
    const ip = sanExt ? sanExt.names.items.filter((n) => n.type === "ip").map((n) => n.value) : [];
    const other = sanExt ? sanExt.names.items.filter((n) => n.type !== "dns" && n.type !== "ip") : [];
    if (other.length > 0) throw badInput(`the CSR asks for ${other.map((n) => `${n.type}:${n.value}`).join(", ")}: only DNS and IP names are signed`);
    if (cn.length > 1) throw badInput(`the CSR's subject has ${cn.length} CNs (${cn.join(", ")}): a service certificate has exactly one`);
    const name = cn[0] ?? dns[0];
    if (!name) throw badInput("the CSR names nothing: give it a CN or a DNS subjectAltName");
    if (cn[0] && dns.length > 0 && !dns.includes(cn[0])) throw badInput(`the CSR's CN ${cn[0]} is not among its DNS names (${dns.join(", ")})`);
    const names = this.leafNames({ domain: name, dns, ip, allowWildcard: opts.allowWildcard });
    const keyType = publicKeyType(csr.publicKey.rawData);
    this.refuseIfCurrent(names.name);
    return this.signLeaf({ names, days, keyType, publicKey: csr.publicKey, source: "csr" });
  }

  /** New key and certificate for a name; the old one becomes SUPERSEDED, linked to its successor. */
  async renew(opts: { domain: string; days?: number | string; keyType?: KeyType | string }): Promise<IssuedCert> {
    const name = validateDnsName(opts.domain, { allowWildcard: true, what: "--domain" });
    const days = validateDays(opts.days ?? 90, LEAF_MAX_DAYS);
    const old = this.ledger.current(name);
    if (!old) {
      const latest = this.ledger.latest(name);
      if (latest?.status === "revoked") throw new CaError("REFUSED", `cannot renew ${name}: its certificate ${latest.serial} is revoked; issue a fresh one (run: npm run ca -- issue --domain ${name})`);
      throw new CaError("NOT_FOUND", `cannot renew ${name}: no certificate for it in ${this.layout.dir} (run: npm run ca -- issue --domain ${name})`);
    }
    if (old.source === "csr") throw new CaError("REFUSED", `cannot renew ${name}: it was signed from a CSR, so its key is not here; sign a new CSR (run: npm run ca -- sign --csr FILE)`);
    const keyType = validateKeyType(opts.keyType ?? old.key_type);
    const sans = JSON.parse(old.sans) as LeafNames;
    const keys = await generateKeyPair(keyType);
    return this.signLeaf({ names: sans, days, keyType, publicKey: keys.publicKey, privateKey: keys.privateKey, source: "renew", supersede: old.serial });
  }

  async revoke(opts: { domain?: string; serial?: string; reason?: string }): Promise<CertRow> {
    const reason = (opts.reason ?? "unspecified") as RevocationReason;
    if (!REVOCATION_REASONS.includes(reason)) throw badInput(`--reason ${JSON.stringify(opts.reason)} is not a revocation reason: use one of ${REVOCATION_REASONS.join(", ")}`);
    let row: CertRow | undefined;
    if (opts.serial !== undefined) {
      if (!/^[0-9a-fA-F:]{1,64}$/.test(opts.serial)) throw badInput(`--serial ${JSON.stringify(opts.serial)} is not a hexadecimal serial number`);
      row = this.ledger.bySerial(normalSerial(opts.serial.replaceAll(":", "")));
      if (!row) throw new CaError("NOT_FOUND", `no certificate with serial ${opts.serial} in ${this.layout.dir} (see: npm run ca -- list --all)`);
    } else {
      const name = validateDnsName(opts.domain ?? "", { allowWildcard: true, what: "--domain" });
      row = this.ledger.current(name);
      if (!row) {
        const latest = this.ledger.latest(name);
        if (latest?.status === "revoked") throw new CaError("REFUSED", `${name} is already revoked (serial ${latest.serial})`);
        throw new CaError("NOT_FOUND", `no certificate for ${name} in ${this.layout.dir} (see: npm run ca -- list)`);
      }
    }
    if (row.status === "revoked") throw new CaError("REFUSED", `${row.name} (serial ${row.serial}) is already revoked`);
    const signer = await this.signer(row.issuer_id);
    const at = this.now();
    const serial = row.serial;
    // The ledger row and the re-signed CRL are written under one write lock,
    // so two revocations at once cannot publish a CRL that misses either.
    await this.ledger.writeAsync(async () => {
      if (!this.ledger.markRevoked(serial, at.toISOString(), reason)) throw new CaError("REFUSED", `${row!.name} (serial ${serial}) was revoked by another command just now`);
      await this.resignCrl(row!.issuer_id, signer, at);
    });
    this.writeCrlBundle();
    return this.ledger.bySerial(serial)!;
  }

  private leafNames(opts: { domain: string; dns?: string[]; ip?: string[]; allowWildcard?: boolean }): LeafNames {
    const name = validateDnsName(opts.domain, { allowWildcard: opts.allowWildcard, what: "--domain" });
    const dns = (opts.dns ?? []).map((d) => validateDnsName(d, { allowWildcard: opts.allowWildcard, what: "--dns" }));
    const ip = (opts.ip ?? []).map(validateIp);
    return { name, dns: [...new Set(dns)].filter((d) => d !== name), ip: [...new Set(ip)], uri: [] };
  }

  private refuseIfCurrent(name: string): void {
    const cur = this.ledger.current(name);
    if (cur && new Date(cur.not_after) > this.now()) {
      throw new CaError("ALREADY_EXISTS", `${name} already has a valid certificate (serial ${cur.serial}, expires ${cur.not_after.slice(0, 10)}); to replace it run: npm run ca -- renew --domain ${name}`);
    }
  }

  private async signLeaf(opts: {
    names: LeafNames; days: number; keyType: KeyType; publicKey: CryptoKey | x509.PublicKey; privateKey?: CryptoKey;
    source: CertRow["source"]; supersede?: string;
  }): Promise<IssuedCert> {
    const issuerId = this.signerId();
    const issuer = this.issuerRow(issuerId);
    const signer = await this.signer(issuerId);
    const now = this.now();
    const warnings: string[] = [];
    const validity = this.clampToIssuer(validityFor(now, opts.days), signer.cert, warnings);
    const rootRow = this.issuerRow(`root-${issuer.generation}`);
    if (rootRow.state === "pending") {
      warnings.push(`generation ${issuer.generation} is not in the published trust bundle yet: peers that trust only ${this.layout.bundle} will reject this certificate (publish it first: npm run ca -- bundle)`);
    }
    await this.checkNameConstraints(opts.names, issuerId);
    const cert = await createLeaf({ names: opts.names, publicKey: opts.publicKey, keyType: opts.keyType, issuer: signer, validity });
    const serial = normalSerial(cert.serialNumber);
    const certPem = certToPem(cert) + this.chainPem(issuerId);
    const keyPem = opts.privateKey ? await exportPrivateKey(opts.privateKey) : undefined;
    this.journal.stage(serial, { cert: certPem, key: keyPem });
    crashPoint("before-commit");
    const name = opts.names.name;
    try {
      this.ledger.write(() => {
        if (opts.supersede !== undefined) {
          if (!this.ledger.markSuperseded(opts.supersede, serial)) throw new CaError("REFUSED", `${name} changed while renewing (another command renewed or revoked it); run list and try again`);
        } else {
          const cur = this.ledger.current(name);
          if (cur && new Date(cur.not_after) > now) throw new CaError("ALREADY_EXISTS", `${name} was issued by another command just now (serial ${cur.serial})`);
          if (cur) this.ledger.markSuperseded(cur.serial, serial); // an expired predecessor
        }
        this.ledger.insertCert({
          serial, name, sans: JSON.stringify(opts.names), issuer_id: issuerId, key_type: opts.keyType,
          not_before: validity.notBefore.toISOString(), not_after: validity.notAfter.toISOString(),
          status: "valid", revoked_at: null, reason: null, superseded_by: null, source: opts.source,
          created_at: now.toISOString(), pem: certToPem(cert),
        });
      });
    } catch (err) {
      this.journal.discard(serial);
      if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE") {
        throw new CaError("ALREADY_EXISTS", `${name} was issued by another command just now`);
      }
      throw err;
    }
    crashPoint("after-commit");
    this.journal.publish(serial, name);
    const paths = this.layout.leaf(name);
    return {
      serial, domain: name, sans: opts.names, certPath: paths.cert, keyPath: keyPem ? paths.key : undefined,
      notBefore: validity.notBefore, notAfter: validity.notAfter, issuer: issuer.name, issuerId,
      generation: issuer.generation, warnings, supersedes: opts.supersede,
    };
  }

  /** Refuses names that a CA on the signing path may not certify: such a certificate would never validate. */
  private async checkNameConstraints(names: LeafNames, issuerId: string): Promise<void> {
    for (let row: IssuerRow | undefined = this.issuerRow(issuerId); row; row = row.parent ? this.issuerRow(row.parent) : undefined) {
      const permitted = permittedDns(row.id === issuerId ? (await this.signer(issuerId)).cert : this.issuerCert(row.id));
      if (!permitted) continue;
      const outside = [names.name, ...names.dns].find((n) => !permitted.some((p) => withinDns(n.replace(/^\*\./, ""), p)));
      if (outside) throw badInput(`${outside} is outside the names ${row.name} may certify (${permitted.join(", ")})`);
    }
  }

  /** A certificate cannot outlive its issuer: path validation would reject it. */
  private clampToIssuer(v: Validity, issuer: x509.X509Certificate, warnings: string[]): Validity {
    if (v.notAfter <= issuer.notAfter) return v;
    warnings.push(`the issuing CA expires on ${issuer.notAfter.toISOString().slice(0, 10)}, so this certificate does too`);
    return { notBefore: v.notBefore, notAfter: issuer.notAfter };
  }

  // --- CRLs and the published bundle ------------------------------------------

  /** Re-signs one CA's CRL from the ledger; the caller holds the write lock. */
  private async resignCrl(issuerId: string, signer: Signer, now: Date): Promise<void> {
    const revoked = this.ledger.revokedUnexpired(issuerId, now.toISOString());
    const nextUpdate = new Date(now.getTime() + 30 * DAY_MS).toISOString();
    const number = this.ledger.nextCrlNumber(issuerId, nextUpdate);
    const crl = await buildCrl({
      issuer: signer, number, now,
      entries: revoked.map((r) => ({ serial: r.serial, revokedAt: new Date(r.revoked_at!), reason: (r.reason ?? "unspecified") as RevocationReason })),
    });
    writeAtomic(this.layout.issuer(issuerId).crl, crlToPem(crl), CERT_MODE);
  }

  /** Re-signs the CRLs of the given CAs (default: every CA not retired) and rewrites crls.pem. */
  async publishCrls(ids?: string[]): Promise<IssuerRow[]> {
    const targets = ids ?? this.ledger.issuers().filter((r) => r.state !== "retired").map((r) => r.id);
    const signers = new Map<string, Signer>();
    for (const id of targets) signers.set(id, await this.signer(id));
    await this.ledger.writeAsync(async () => {
      for (const id of targets) await this.resignCrl(id, signers.get(id)!, this.now());
    });
    this.writeCrlBundle();
    return targets.map((id) => this.issuerRow(id));
  }

  /** crls.pem: the current CRL of every CA not retired (Node needs one for every CA in a chain). */
  private writeCrlBundle(): void {
    const pems = this.ledger.issuers().filter((r) => r.state !== "retired" && r.crl_next_update)
      .map((r) => readStateFile(this.layout.issuer(r.id).crl, "the CRL"));
    writeAtomic(this.layout.crls, pems.join(""), CERT_MODE);
  }

  /** bundle.pem: every published root generation, the trust anchors of the mesh. */
  writeBundle(): IssuerRow[] {
    const roots = this.ledger.issuers().filter((r) => r.kind === "root" && r.state === "published");
    writeAtomic(this.layout.bundle, roots.map((r) => certToPem(this.issuerCert(r.id))).join(""), CERT_MODE);
    return roots;
  }

  /** CRLs whose nextUpdate is near or past, for the warnings every command prints. */
  crlWarnings(): string[] {
    const now = this.now().getTime();
    return this.ledger.issuers().filter((r) => r.state !== "retired" && r.crl_next_update).flatMap((r) => {
      const left = (new Date(r.crl_next_update!).getTime() - now) / DAY_MS;
      if (left <= 0) return [`the CRL of ${r.name} lapsed on ${r.crl_next_update!.slice(0, 10)}: every peer using crls.pem now fails (run: npm run ca -- crl)`];
      if (left < CRL_WARN_DAYS) return [`the CRL of ${r.name} lapses in ${left.toFixed(1)} days (run: npm run ca -- crl)`];
      return [];
    });
  }

  // --- intermediates and root generations --------------------------------------

  /** Creates an issuing CA under the signing generation's root; it signs every leaf from now on. */
  async createIntermediate(opts: { name: string; days?: number | string; permitDns?: string[]; keyType?: KeyType | string }): Promise<IssuerRow> {
    const name = validateCaName(opts.name);
    const days = validateDays(opts.days ?? 1825, CA_MAX_DAYS);
    const permitDns = (opts.permitDns ?? []).map((d) => validateDnsName(d.replace(/^\./, ""), { what: "--permit-dns" }));
    const keyType = validateKeyType(opts.keyType ?? "ec-p256");
    this.refuseDuplicateName(name);
    const generation = this.issuerRow(this.signerId()).generation;
    const rootId = `root-${generation}`;
    const root = await this.signer(rootId);
    const now = this.now();
    const warnings: string[] = [];
    const keys = await generateKeyPair(keyType);
    const validity = this.clampToIssuer(validityFor(now, days), root.cert, warnings);
    const cert = await createIntermediate({ name, publicKey: keys.publicKey, issuer: root, validity, permitDns });
    const n = this.ledger.issuers().filter((r) => r.kind === "intermediate").length + 1;
    const id = `int-${n}`;
    await this.saveIssuer(id, { cert, key: keys.privateKey, keyType });
    this.ledger.write(() => {
      this.ledger.insertIssuer(issuerRow(id, "intermediate", generation, rootId, cert, keyType, this.issuerRow(rootId).state, now));
      this.ledger.setMeta("signer", id);
    });
    await this.publishCrls([id]);
    return this.issuerRow(id);
  }

  /** Adds a root generation with a distinct subject. It is not trusted (published) nor signing yet. */
  async addGeneration(opts: { name?: string; days?: number | string; keyType?: KeyType | string }): Promise<IssuerRow> {
    const gens = this.generations();
    const generation = Math.max(...gens.map((g) => g.generation)) + 1;
    const base = gens[0]!.root.name.replace(/ G\d+$/, "");
    const name = validateCaName(opts.name ?? `${base} G${generation}`);
    const days = validateDays(opts.days ?? 3650, CA_MAX_DAYS);
    const keyType = validateKeyType(opts.keyType ?? gens.at(-1)!.root.key_type);
    this.refuseDuplicateName(name);
    const now = this.now();
    const keys = await generateKeyPair(keyType);
    const cert = await createRoot({ name, keys, keyType, validity: validityFor(now, days) });
    const id = `root-${generation}`;
    await this.saveIssuer(id, { cert, key: keys.privateKey, keyType });
    this.ledger.write(() => this.ledger.insertIssuer(issuerRow(id, "root", generation, null, cert, keyType, "pending", now)));
    await this.publishCrls([id]);
    return this.issuerRow(id);
  }

  /** Writes a new CA's key (never over an existing one) and certificate, and keeps it ready to sign. */
  private async saveIssuer(id: string, signer: Signer): Promise<void> {
    const paths = this.layout.issuer(id);
    mkdirSync(paths.dir, { recursive: true, mode: 0o755 });
    writeNew(paths.key, await exportPrivateKey(signer.key, this.passphrase), KEY_MODE);
    writeAtomic(paths.cert, certToPem(signer.cert), CERT_MODE);
    this.signers.set(id, signer);
  }

  /** Makes a generation sign new certificates: its newest intermediate if it has one, else its root. */
  useGeneration(generation: number): IssuerRow {
    const gen = this.generation(generation);
    if (gen.root.state === "retired") throw new CaError("REFUSED", `generation ${generation} is retired: it cannot sign again`);
    const issuer = gen.intermediates.at(-1) ?? gen.root;
    this.ledger.write(() => this.ledger.setMeta("signer", issuer.id));
    return issuer;
  }

  /** Publishes every generation not retired in bundle.pem (pending ones become trusted). */
  publishBundle(): IssuerRow[] {
    this.ledger.write(() => {
      for (const g of this.generations()) if (g.root.state === "pending") this.ledger.setIssuerState(g.generation, "published");
    });
    return this.writeBundle();
  }

  /**
   * Drops a generation from the bundle and the CRLs. Refused while any valid
   * certificate still chains to it (that is the outage a careless rotation
   * causes) unless forced, and always while it is the signing generation.
   */
  retireGeneration(generation: number, opts: { force?: boolean } = {}): { retired: IssuerRow; stillValid: number } {
    const gen = this.generation(generation);
    if (gen.root.state === "retired") throw new CaError("REFUSED", `generation ${generation} is already retired`);
    const signing = this.issuerRow(this.signerId());
    if (signing.generation === generation) {
      throw new CaError("REFUSED", `cannot retire generation ${generation}: it signs new certificates; switch first (run: npm run ca -- generation use N)`);
    }
    const stillValid = this.ledger.validInGeneration(generation, this.now().toISOString());
    if (stillValid > 0 && !opts.force) {
      const names = this.list().filter((r) => r.status === "VALID" && r.generation === generation).map((r) => r.domain);
      throw new CaError("REFUSED", `cannot retire generation ${generation}: ${stillValid} valid certificate(s) still chain to it (${names.slice(0, 5).join(", ")}${names.length > 5 ? ", …" : ""}); renew them from the new generation first, or pass --force to break them`);
    }
    this.ledger.write(() => this.ledger.setIssuerState(generation, "retired"));
    this.writeBundle();
    this.writeCrlBundle();
    return { retired: this.issuerRow(gen.root.id), stillValid };
  }

  generation(generation: number): Generation {
    const gen = this.generations().find((g) => g.generation === generation);
    if (!gen) throw new CaError("NOT_FOUND", `no root generation ${generation} in ${this.layout.dir} (see: npm run ca -- status)`);
    return gen;
  }

  private refuseDuplicateName(name: string): void {
    if (this.ledger.issuers().some((r) => r.name === name)) {
      throw badInput(`a CA named ${JSON.stringify(name)} already exists here: every CA needs a distinct subject, or peers cannot tell them apart`);
    }
  }

  // --- verification -------------------------------------------------------------

  /**
   * Validates a certificate file the way a mesh peer would: anchored in
   * bundle.pem (or the given trust), through any intermediate, against crls.pem.
   */
  async verify(opts: { pem: string; at?: Date; purpose?: Purpose; trustPem?: string; crlPem?: string }): Promise<VerifyResult> {
    const certs = parseCertificates(opts.pem);
    if (certs.length === 0) throw badInput("the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    const trusted = parseCertificates(opts.trustPem ?? readStateFile(this.layout.bundle, "the trust bundle"));
    if (trusted.length === 0) throw new CaError("REFUSED", `the trust bundle is empty: publish one (run: npm run ca -- bundle)`);
    const intermediates = this.ledger.issuers().filter((r) => r.kind === "intermediate").map((r) => this.issuerCert(r.id));
    const crls = parseCrls(opts.crlPem ?? readStateFile(this.layout.crls, "the CRL bundle"));
    return verifyPath({ certs, trusted, intermediates, crls, at: opts.at ?? this.now(), purpose: opts.purpose ?? "mesh" });
  }

  // --- views ------------------------------------------------------------------

  /** The ledger as a person or a script reads it: status derived from the clock. */
  list(opts: { all?: boolean } = {}): ListedCert[] {
    const issuers = new Map(this.ledger.issuers().map((r) => [r.id, r]));
    const now = this.now();
    return this.ledger.list(opts).map((r) => ({
      serial: r.serial, domain: r.name, sans: JSON.parse(r.sans) as LeafNames, status: displayStatus(r, now),
      issued: r.created_at, notBefore: r.not_before, notAfter: r.not_after,
      issuer: issuers.get(r.issuer_id)?.name ?? r.issuer_id, issuerId: r.issuer_id, generation: issuers.get(r.issuer_id)?.generation ?? 0,
      keyType: r.key_type, source: r.source, revokedAt: r.revoked_at, reason: r.reason, supersededBy: r.superseded_by,
    }));
  }
}

function issuerRow(id: string, kind: IssuerRow["kind"], generation: number, parent: string | null, cert: x509.X509Certificate,
  keyType: KeyType, state: IssuerRow["state"], now: Date): IssuerRow {
  return {
    id, kind, generation, parent, name: cert.subjectName.getField("CN")[0] ?? cert.subject,
    serial: normalSerial(cert.serialNumber), key_type: keyType, not_before: cert.notBefore.toISOString(),
    not_after: cert.notAfter.toISOString(), state, crl_number: 0, crl_next_update: null, created_at: now.toISOString(),
  };
}

function parseCsr(pem: string): x509.Pkcs10CertificateRequest {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(pem);
  if (!m) throw badInput("the CSR file is not PEM: expected -----BEGIN CERTIFICATE REQUEST-----");
  if (m[1] !== "CERTIFICATE REQUEST" && m[1] !== "NEW CERTIFICATE REQUEST") {
    throw badInput(`the CSR file holds a ${m[1]}, not a CERTIFICATE REQUEST${m[1]!.includes("PRIVATE KEY") ? " (never send a private key to the CA: make a CSR with openssl req -new -key KEY)" : ""}`);
  }
  try {
    return new x509.Pkcs10CertificateRequest(pem);
  } catch {
    throw badInput("the CSR file is not a readable PKCS#10 request");
  }
}
