// What leaf issuance (issuance.ts) and root generations (generations.ts) need of the CA: the
// interface CertificateAuthority (authority.ts) implements. They take this interface, not the
// class, so authority.ts can call them without an import circle (test/import-graph.test.ts).
import type { CrlEntry } from "../lib/crl.ts";
import type { KeyType } from "./keys.ts";
import type { IssuerRow } from "./ledger.ts";
import type { LedgerStore } from "./store/interface.ts";
import type { JournalCommit } from "./store/journal-commit.ts";
import type { LeafNames, Signer } from "./profiles.ts";
import type { Journal, Layout } from "./store.ts";
import type { Generation, ListedCert } from "./view.ts";
import type { x509 } from "./x509.ts";

export interface IssuedCert {
  serial: string;
  domain: string;
  sans: LeafNames;
  /** Where the CA folder keeps this name's certificate; nothing is written there for the online CA's (signLeaf's commit). */
  certPath: string;
  /** The certificate's DER (the online CA answers with it). */
  der: Uint8Array;
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

export interface CaCore {
  readonly layout: Layout;
  readonly ledger: LedgerStore;
  readonly now: () => Date;
  /** The staging area of issuance.ts: a certificate's files and its ledger row land together. */
  readonly journal: Journal;
  /** How issuance.ts commits a leaf whose files the CA keeps: staged, committed and published in batches. */
  readonly journalCommit: JournalCommit;
  trustDomain(): string;
  signerId(): string;
  issuerRow(id: string): IssuerRow;
  issuerCert(id: string): x509.X509Certificate;
  /** The same certificate's DER, without @peculiar/x509. */
  issuerDer(id: string): Uint8Array;
  signer(id: string): Promise<Signer>;
  generations(): Generation[];
  generation(generation: number): Generation;
  chainPem(issuerId: string): string;
  resignCrl(issuerId: string, signer: Signer, now: Date, added?: CrlEntry): Promise<void>;
  publishCrls(ids?: string[]): Promise<IssuerRow[]>;
  writeCrlBundle(): void;
  writeBundle(): IssuerRow[];
  saveIssuer(id: string, signer: Signer): Promise<void>;
  list(opts?: { all?: boolean }): ListedCert[];
}
