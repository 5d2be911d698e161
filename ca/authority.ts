// The Certificate Authority: opens the state folder, holds its issuers, CRLs
// and bundle; leaf issuance and generations are in issuance.ts and generations.ts, which
// take it as the CaCore interface (core.ts), so that neither imports this file back.
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { encodeEntries, encodeEntry, type CrlEntry, type RevocationReason } from "../lib/crl.ts";
import { concat } from "../lib/der.ts";
import { derToPem, firstPemDer } from "../lib/pem.ts";
import { certSerialAndKey } from "./leaf-der.ts";
import { formatGenerationsFile, generationsPath, rootSha256 } from "../lib/generations.ts";
import { buildCrl, CRL_VALID_DAYS, dropCutoff, lastSignedAt } from "./crl.ts";
import type { CaCore, IssuedCert, IssueOptions } from "./core.ts";
import { CaError, badInput } from "./errors.ts";
import { CERT_MODE, KEY_MODE, writeAtomic, writeNew } from "./files.ts";
import { exportPrivateKey, generateKeyPair, importSigningKey, validateKeyType, type KeyType } from "./keys.ts";
import { Ledger, type CertRow, type IssuerRow } from "./ledger.ts";
import type { LedgerStore } from "./store/interface.ts";
import { JournalCommit } from "./store/journal-commit.ts";
import { PgLedger } from "./store/postgres.ts";
import { parseStore } from "./store/url.ts";
import * as generations from "./generations.ts";
import { issuerRow } from "./generations.ts";
import * as issuance from "./issuance.ts";
import { validateCaName, validateDays } from "./names.ts";
import { CA_MAX_DAYS, DAY_MS, createRoot, validityFor, type Signer } from "./profiles.ts";
import { Journal, Layout, readStateFile } from "./store.ts";
import { loadTrustDomain, saveTrustDomain, validateTrustDomain, type TrustDomainSetting } from "./trust-domain.ts";
import { DEFAULT_TRUST_DOMAIN } from "../lib/spiffe.ts";
import { parseCertificates, parseCrls, verifyPath, type Purpose, type VerifyResult } from "./verify.ts";
import { certToPem, crlToPem, x509 } from "./x509.ts";
import { ClockOffsetError, offsetClock } from "../lib/clock.ts";
import {
  crlWarnings,
  generationsOf,
  listCerts,
  openLedger,
  signerIdOf,
  type Generation,
  type ListedCert,
} from "./view.ts";

export type { Generation, ListedCert } from "./view.ts";
export type { IssuedCert, IssueOptions } from "./core.ts";

export interface OpenOptions {
  dir: string;
  /** The clock: every date the CA writes or checks comes from here. */
  now?: () => Date;
  /** Passphrase of the CA keys, when they are encrypted. */
  passphrase?: string;
  /** Where the ledger is: "sqlite" (default, ca.db in dir) or a postgres:// URL (default: MESH_CA_STORE). */
  store?: string;
}

export interface InitOptions extends OpenOptions {
  name: string;
  /** The SPIFFE trust domain (default "internal"): every leaf carries spiffe://<domain>/<name> as its one URI SAN. */
  trustDomain?: string;
  days?: number;
  keyType?: KeyType | string;
}

export class CertificateAuthority implements CaCore {
  readonly layout: Layout;
  readonly ledger: LedgerStore;
  readonly now: () => Date;
  private readonly passphrase?: string;
  /** @internal the staging area of issuance.ts */
  readonly journal: Journal;
  /** @internal the group commit of issuance.ts */
  readonly journalCommit: JournalCommit;
  private readonly signers = new Map<string, Signer>();
  // An issuer's certificate, read once while its file stays the same (one stat, not a read and
  // a ~0.25 ms parse on every leaf, token and chain that needs it; an operator may still replace
  // the file by hand, and the next read sees it). Parsed by @peculiar/x509 only when a caller
  // asks for the object: the issuance path needs its DER alone.
  private readonly issuerCerts = new Map<string, IssuerEntry>();
  private trustDomainCache?: TrustDomainSetting;

  private constructor(layout: Layout, ledger: LedgerStore, opts: OpenOptions) {
    this.layout = layout;
    this.ledger = ledger;
    this.now = caClock(opts.now);
    this.passphrase = opts.passphrase;
    this.journal = new Journal(layout);
    this.journalCommit = new JournalCommit(this.journal, ledger);
  }

  /** The files services and users read: trust bundle, CRLs, certificates by name. */
  get paths() {
    const l = this.layout;
    return {
      dir: l.dir,
      bundle: l.bundle,
      crls: l.crls,
      certsDir: l.certsDir,
      ledger: l.ledger,
      root: (generation: number) => l.root(generation),
      leaf: (name: string) => l.leaf(name),
    };
  }

  /** Whether the folder holds a CA: its ledger file, or with a PostgreSQL store (MESH_CA_STORE) its first root's key. */
  static exists(dir: string, store: string | undefined = process.env.MESH_CA_STORE): boolean {
    const layout = new Layout(dir);
    return parseStore(store).kind === "postgres" ? existsSync(layout.root(1).key) : existsSync(layout.ledger);
  }

  /** Creates root generation 1 in an empty state folder. Never overwrites a CA. */
  static async init(opts: InitOptions): Promise<CertificateAuthority> {
    const name = validateCaName(opts.name);
    const trustDomain = validateTrustDomain(opts.trustDomain ?? DEFAULT_TRUST_DOMAIN);
    const days = validateDays(opts.days ?? 3650, CA_MAX_DAYS);
    const keyType = validateKeyType(opts.keyType ?? "ec-p256");
    const layout = new Layout(opts.dir);
    const rootPaths = layout.root(1);
    const store = parseStore(opts.store ?? process.env.MESH_CA_STORE);
    if ((store.kind === "sqlite" && existsSync(layout.ledger)) || existsSync(rootPaths.key)) {
      throw new CaError(
        "ALREADY_EXISTS",
        `a CA already exists in ${layout.dir}: refusing to overwrite its key (use another --dir, or move that folder away yourself)`,
      );
    }
    // A database that already holds a CA is refused before any key is written.
    const shared = store.kind === "postgres" ? PgLedger.open(store.config, store.shown, { create: true }) : undefined;
    const now = (opts.now ?? (() => new Date()))();
    const keys = await generateKeyPair(keyType);
    const cert = await createRoot({ name, keys, keyType, validity: validityFor(now, days) });
    mkdirSync(rootPaths.dir, { recursive: true, mode: 0o755 });
    writeNew(rootPaths.key, await exportPrivateKey(keys.privateKey, opts.passphrase), KEY_MODE);
    saveTrustDomain(layout.dir, trustDomain);
    writeAtomic(rootPaths.cert, certToPem(cert), CERT_MODE);
    const ledger: LedgerStore = shared ?? Ledger.open(layout.ledger, { create: true });
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
    const ledger = openLedger(layout, opts.store);
    const ca = new CertificateAuthority(layout, ledger, opts);
    ca.journal.recover(ledger);
    return ca;
  }

  close(): void {
    this.ledger.close();
  }

  // --- issuers ---------------------------------------------------------------

  /** The SPIFFE trust domain every leaf's SPIFFE ID is in (ca/trust-domain.ts). */
  trustDomain(): string {
    return this.trustDomainSetting().trustDomain;
  }

  /** The trust domain and where it came from, for status. */
  trustDomainSetting(): TrustDomainSetting {
    this.trustDomainCache ??= loadTrustDomain(this.layout.dir, () => this.ledger.getMeta("trust_domain"));
    return this.trustDomainCache;
  }

  signerId(): string {
    return signerIdOf(this.ledger, this.layout);
  }

  issuerRow(id: string): IssuerRow {
    const row = this.ledger.issuer(id);
    if (!row) throw new CaError("NOT_FOUND", `no issuing CA ${id} in ${this.layout.dir}`);
    return row;
  }

  issuerCert(id: string): x509.X509Certificate {
    const entry = this.issuerEntry(id);
    if (!entry.cert) {
      try {
        entry.cert = new x509.X509Certificate(entry.der);
      } catch {
        throw unreadableCert(this.layout.issuer(id).cert);
      }
    }
    return entry.cert;
  }

  /** @internal An issuer's certificate, DER, without parsing it into objects. */
  issuerDer(id: string): Uint8Array<ArrayBuffer> {
    return this.issuerEntry(id).der;
  }

  private issuerEntry(id: string): IssuerEntry {
    const path = this.layout.issuer(id).cert;
    const stamp = fileStamp(path);
    const cached = this.issuerCerts.get(id);
    if (cached && stamp !== undefined && cached.stamp === stamp) return cached;
    const der = firstPemDer(readStateFile(path, "the CA certificate"), "CERTIFICATE");
    if (!der) throw unreadableCert(path);
    const entry: IssuerEntry = { stamp: stamp ?? "", der: new Uint8Array(der), pem: derToPem(der, "CERTIFICATE") };
    if (stamp !== undefined) this.issuerCerts.set(id, entry);
    return entry;
  }

  /** Loads a CA's key and certificate and checks that they belong together. */
  async signer(id: string): Promise<Signer> {
    const cached = this.signers.get(id);
    if (cached) return cached;
    const paths = this.layout.issuer(id);
    const certDer = this.issuerDer(id);
    let certSpki: Uint8Array;
    try {
      certSpki = certSerialAndKey(certDer).spki;
    } catch {
      throw unreadableCert(paths.cert);
    }
    const { key, type, spki } = await importSigningKey(
      readStateFile(paths.key, "the CA key"),
      paths.key,
      this.passphrase,
    );
    if (!spki.equals(certSpki)) {
      throw new CaError(
        "CORRUPT",
        `the CA key ${paths.key} does not match its certificate ${paths.cert}; restore the pair from your backup`,
      );
    }
    // The certificate as objects only for who asks (the CLI's rich paths): issuance reads certDer.
    const ca = this;
    const signer: Signer = {
      certDer,
      key,
      keyType: type,
      get cert() {
        return ca.issuerCert(id);
      },
    };
    this.signers.set(id, signer);
    return signer;
  }

  generations(): Generation[] {
    return generationsOf(this.ledger);
  }

  /** The chain a leaf of this issuer is served with: every CA between it and the root. */
  /** @internal */
  chainPem(issuerId: string): string {
    let pem = "";
    let row = this.issuerRow(issuerId);
    while (row.kind === "intermediate") {
      pem += this.issuerEntry(row.id).pem;
      row = this.issuerRow(row.parent!);
    }
    return pem;
  }

  // --- leaf certificates (ca/issuance.ts) -------------------------------------

  /** Issues a key and certificate for a name that has no valid certificate yet. */
  issue(opts: IssueOptions): Promise<IssuedCert> {
    return issuance.issue(this, opts);
  }

  /** Signs a CSR after checking its PEM type, its signature and its names. */
  signCsr(opts: { csrPem: string; days?: number | string; allowWildcard?: boolean }): Promise<IssuedCert> {
    return issuance.signCsr(this, opts);
  }

  /** New key and certificate for a name; the old one becomes SUPERSEDED, linked to its successor. */
  renew(opts: { domain: string; days?: number | string; keyType?: KeyType | string }): Promise<IssuedCert> {
    return issuance.renew(this, opts);
  }

  /** Revokes a name's current certificate (or one serial) and re-signs its CA's CRL. */
  revoke(opts: { domain?: string; serial?: string; reason?: string }): Promise<CertRow> {
    return issuance.revoke(this, opts);
  }

  // --- CRLs and the published bundle ------------------------------------------

  /** Re-signs one CA's CRL from the ledger; the caller holds the write lock. */
  /**
   * @internal Re-signs one CA's CRL; the caller holds the write lock. `added` appends one
   * revocation to the stored entries; without it they are rebuilt from the ledger, which
   * also drops the certificates that had expired when the previous CRL was signed.
   */
  async resignCrl(issuerId: string, signer: Signer, now: Date, added?: CrlEntry): Promise<void> {
    const stored = added ? this.ledger.crlEntries(issuerId) : null;
    let entries: Uint8Array;
    if (added && stored) {
      entries = concat([stored, encodeEntry(added)]);
    } else {
      // Expired serials leave only once a CRL signed after their expiry listed them (crl.ts).
      const cutoff = dropCutoff(lastSignedAt(this.ledger.issuer(issuerId)?.crlNextUpdate ?? null), now);
      const revoked = this.ledger.revokedUnexpired(issuerId, cutoff.toISOString());
      entries = encodeEntries(
        revoked.map((r) => ({
          serial: r.serial,
          revokedAt: new Date(r.revokedAt!),
          reason: (r.reason ?? "unspecified") as RevocationReason,
        })),
      );
    }
    this.ledger.setCrlEntries(issuerId, entries);
    const nextUpdate = new Date(now.getTime() + CRL_VALID_DAYS * DAY_MS).toISOString();
    const number = this.ledger.nextCrlNumber(issuerId, nextUpdate);
    const crl = await buildCrl({ issuer: signer, number, now, entries });
    // In the ledger too: replicas on other hosts serve this one, not their folder's older file.
    this.ledger.setSignedCrl(issuerId, crl);
    writeAtomic(this.layout.issuer(issuerId).crl, crlToPem(crl), CERT_MODE);
  }

  /** Re-signs the CRLs of the given CAs (default: every CA not retired) and rewrites crls.pem. */
  async publishCrls(ids?: string[]): Promise<IssuerRow[]> {
    const targets =
      ids ??
      this.ledger
        .issuers()
        .filter((r) => r.state !== "retired")
        .map((r) => r.id);
    const signers = new Map<string, Signer>();
    for (const id of targets) signers.set(id, await this.signer(id));
    await this.ledger.writeAsync(async () => {
      for (const id of targets) await this.resignCrl(id, signers.get(id)!, this.now());
    });
    this.writeCrlBundle();
    return targets.map((id) => this.issuerRow(id));
  }

  /** crls.pem: the current CRL of every CA not retired (Node needs one for every CA in a chain). */
  /** @internal */
  writeCrlBundle(): void {
    const pems = this.ledger
      .issuers()
      .filter((r) => r.state !== "retired" && r.crlNextUpdate)
      .map((r) => {
        // The ledger's copy is the newest, whichever host signed it (replicas on a shared store).
        const stored = this.ledger.signedCrl(r.id);
        const path = this.layout.issuer(r.id).crl;
        if (!stored) return readStateFile(path, "the CRL");
        const pem = crlToPem(stored);
        if (!existsSync(path) || readFileSync(path, "utf8") !== pem) writeAtomic(path, pem, CERT_MODE);
        return pem;
      });
    const bundle = pems.join("");
    if (!existsSync(this.layout.crls) || readFileSync(this.layout.crls, "utf8") !== bundle)
      writeAtomic(this.layout.crls, bundle, CERT_MODE);
  }

  /** bundle.pem: every published root generation, the trust anchors of the mesh. */
  writeBundle(): IssuerRow[] {
    const roots = this.ledger.issuers().filter((r) => r.kind === "root" && r.state === "published");
    const certs = roots.map((r) => this.issuerCert(r.id));
    // Which root is which generation, as data beside the bundle (lib/generations.ts), written
    // first: a service that reloads on the bundle's change finds the facts of the new one.
    const facts = roots.map((r, i) => ({
      sha256: rootSha256(new Uint8Array(certs[i]!.rawData)),
      generation: r.generation,
    }));
    writeAtomic(generationsPath(this.layout.bundle), formatGenerationsFile(facts), CERT_MODE);
    writeAtomic(this.layout.bundle, certs.map(certToPem).join(""), CERT_MODE);
    return roots;
  }

  /** CRLs whose nextUpdate is near or past, for the warnings every command prints. */
  crlWarnings(): string[] {
    return crlWarnings(this.ledger, this.now());
  }

  /**
   * Re-signs every CRL (of a CA not retired) whose nextUpdate is within `renewWithinMs` of the
   * CA's clock, or already past, and rewrites crls.pem; returns the CAs it re-signed. Whoever
   * holds the CA for long (mesh:up, the CA server) calls this periodically, so a running mesh
   * never meets a lapsed CRL. The default, a third of a CRL's validity, stays clear of the
   * CRL_WARN_DAYS warnings.
   */
  async refreshCrls(opts: { renewWithinMs?: number } = {}): Promise<IssuerRow[]> {
    const within = opts.renewWithinMs ?? (CRL_VALID_DAYS / 3) * DAY_MS;
    const now = this.now().getTime();
    const due = this.ledger
      .issuers()
      .filter((r) => r.state !== "retired" && r.crlNextUpdate && new Date(r.crlNextUpdate).getTime() - now <= within)
      .map((r) => r.id);
    return due.length > 0 ? this.publishCrls(due) : [];
  }

  // --- intermediates and root generations (ca/generations.ts) -----------------

  /** Creates an issuing CA under a generation's root (default: the signing one's, and it then signs every leaf). */
  createIntermediate(opts: generations.IntermediateOptions): Promise<IssuerRow> {
    return generations.createIntermediate(this, opts);
  }

  /** Adds a root generation with a distinct subject. It is not trusted (published) nor signing yet. */
  addGeneration(opts: { name?: string; days?: number | string; keyType?: KeyType | string }): Promise<IssuerRow> {
    return generations.addGeneration(this, opts);
  }

  /** Makes a generation sign new certificates: its newest intermediate if it has one, else its root. */
  useGeneration(generation: number): IssuerRow {
    return generations.useGeneration(this, generation);
  }

  /** Publishes every generation not retired in bundle.pem (pending ones become trusted). */
  publishBundle(): IssuerRow[] {
    return generations.publishBundle(this);
  }

  /** Drops a generation from the bundle and the CRLs; refused while valid certificates chain to it. */
  retireGeneration(generation: number, opts: { force?: boolean } = {}): { retired: IssuerRow; stillValid: number } {
    return generations.retireGeneration(this, generation, opts);
  }

  /** Writes a new CA's key (never over an existing one) and certificate, and keeps it ready to sign. */
  /** @internal */
  async saveIssuer(id: string, signer: Signer): Promise<void> {
    const paths = this.layout.issuer(id);
    mkdirSync(paths.dir, { recursive: true, mode: 0o755 });
    writeNew(paths.key, await exportPrivateKey(signer.key, this.passphrase), KEY_MODE);
    writeAtomic(paths.cert, certToPem(signer.cert), CERT_MODE);
    this.signers.set(id, signer);
  }

  generation(generation: number): Generation {
    const gen = this.generations().find((g) => g.generation === generation);
    if (!gen)
      throw new CaError(
        "NOT_FOUND",
        `no root generation ${generation} in ${this.layout.dir} (see: npm run ca -- status)`,
      );
    return gen;
  }

  // --- verification -------------------------------------------------------------

  /**
   * Validates a certificate file the way a mesh peer would: anchored in
   * bundle.pem (or the given trust), through any intermediate, against crls.pem.
   */
  async verify(opts: {
    pem: string;
    at?: Date;
    purpose?: Purpose;
    trustPem?: string;
    crlPem?: string;
    name?: string;
  }): Promise<VerifyResult> {
    const certs = parseCertificates(opts.pem);
    if (certs.length === 0) throw badInput("the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    const trusted = parseCertificates(opts.trustPem ?? readStateFile(this.layout.bundle, "the trust bundle"));
    if (trusted.length === 0)
      throw new CaError("REFUSED", `the trust bundle is empty: publish one (run: npm run ca -- bundle)`);
    const intermediates = this.ledger
      .issuers()
      .filter((r) => r.kind === "intermediate")
      .map((r) => this.issuerCert(r.id));
    const crls = parseCrls(opts.crlPem ?? readStateFile(this.layout.crls, "the CRL bundle"));
    return verifyPath({
      certs,
      trusted,
      intermediates,
      crls,
      at: opts.at ?? this.now(),
      purpose: opts.purpose ?? "mesh",
      name: opts.name,
    });
  }

  // --- views ------------------------------------------------------------------

  /** The ledger as a person or a script reads it: status derived from the clock. */
  list(opts: { all?: boolean } = {}): ListedCert[] {
    return listCerts(this.ledger, this.now(), opts);
  }
}

interface IssuerEntry {
  stamp: string;
  der: Uint8Array<ArrayBuffer>;
  pem: string;
  cert?: x509.X509Certificate;
}

function unreadableCert(path: string): CaError {
  return new CaError(
    "CORRUPT",
    `the CA certificate ${path} is not a readable certificate; restore it from your backup`,
  );
}

/** What identifies a file's version without reading it: inode, size and change time. */
function fileStamp(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.ino}:${st.size}:${st.ctimeNs}:${st.mtimeNs}`;
  } catch {
    return undefined;
  }
}

/** The CA's clock: the given one (or the system's), moved by MESH_CLOCK_OFFSET_MS (lib/clock.ts), a test and teaching knob. */
function caClock(base?: () => Date): () => Date {
  try {
    return offsetClock(base);
  } catch (err) {
    if (err instanceof ClockOffsetError) throw badInput(err.message);
    throw err;
  }
}
