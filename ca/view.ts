// The CA as list and status read it: the ledger alone. This module loads no X.509 or
// ASN.1 library, so those commands start in a fraction of the time (docs/bench.md).
import { loadTrustDomain, type TrustDomainSetting } from "./trust-domain.ts";
import { existsSync } from "node:fs";
import { CRL_WARN_DAYS } from "../lib/crl.ts";
import { CaError } from "./errors.ts";
import { Ledger, displayStatus, type IssuerRow } from "./ledger.ts";
import type { LedgerStore } from "./store/interface.ts";
import { PgLedger } from "./store/postgres.ts";
import { parseStore } from "./store/url.ts";
import type { LeafNames } from "./profiles.ts";
import { Journal, Layout } from "./store.ts";

// As in profiles.ts, which cannot be imported here: it loads @peculiar/x509.
const DAY_MS = 86_400_000;

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

/**
 * Opens the ledger: the state folder's ca.db, or the PostgreSQL database `store` names
 * (--store, MESH_CA_STORE). Keys, CA certificates and CRL files stay in the state folder.
 */
/** openLedger for a state folder by its path: what a reader outside ca/ (the dashboard) opens. */
export function openLedgerIn(dir: string, store?: string): LedgerStore {
  return openLedger(new Layout(dir), store);
}

export function openLedger(layout: Layout, store: string | undefined = process.env.MESH_CA_STORE): LedgerStore {
  const setting = parseStore(store);
  if (setting.kind === "postgres") return PgLedger.open(setting.config, setting.shown);
  if (!existsSync(layout.ledger)) {
    throw new CaError(
      "NOT_INITIALISED",
      `the CA is not initialised in ${layout.dir} (run: npm run ca -- init --name "Acme Corp CA")`,
    );
  }
  return Ledger.open(layout.ledger);
}

export function signerIdOf(ledger: LedgerStore, layout: Layout): string {
  const id = ledger.getMeta("signer");
  if (!id) throw new CaError("CORRUPT", `the ledger ${layout.ledger} names no signing CA; restore it from a backup`);
  return id;
}

export function generationsOf(ledger: LedgerStore): Generation[] {
  const rows = ledger.issuers();
  return rows
    .filter((r) => r.kind === "root")
    .map((root) => ({
      generation: root.generation,
      root,
      intermediates: rows.filter((r) => r.kind === "intermediate" && r.generation === root.generation),
    }));
}

/** The ledger as a person or a script reads it: status derived from the clock. */
export function listCerts(ledger: LedgerStore, now: Date, opts: { all?: boolean } = {}): ListedCert[] {
  const issuers = new Map(ledger.issuers().map((r) => [r.id, r]));
  return ledger.list(opts).map((r) => ({
    serial: r.serial,
    domain: r.name,
    sans: JSON.parse(r.sans) as LeafNames,
    status: displayStatus(r, now),
    issued: r.createdAt,
    notBefore: r.notBefore,
    notAfter: r.notAfter,
    issuer: issuers.get(r.issuerId)?.name ?? r.issuerId,
    issuerId: r.issuerId,
    generation: issuers.get(r.issuerId)?.generation ?? 0,
    keyType: r.keyType,
    source: r.source,
    revokedAt: r.revokedAt,
    reason: r.reason,
    supersededBy: r.supersededBy,
  }));
}

/** CRLs whose nextUpdate is near or past, for the warnings every command prints. */
export function crlWarnings(ledger: LedgerStore, at: Date): string[] {
  const now = at.getTime();
  return ledger
    .issuers()
    .filter((r) => r.state !== "retired" && r.crlNextUpdate)
    .flatMap((r) => {
      const left = (new Date(r.crlNextUpdate!).getTime() - now) / DAY_MS;
      if (left <= 0)
        return [
          `the CRL of ${r.name} lapsed on ${r.crlNextUpdate!.slice(0, 10)}: every peer using crls.pem now fails (run: npm run ca -- crl)`,
        ];
      if (left < CRL_WARN_DAYS)
        return [`the CRL of ${r.name} lapses in ${left.toFixed(1)} days (run: npm run ca -- crl)`];
      return [];
    });
}

/** A read-only CA for the commands that only read the ledger: the same answers as the CA's own methods. */
export class LedgerView {
  readonly layout: Layout;
  readonly ledger: LedgerStore;
  readonly now: () => Date;

  private constructor(layout: Layout, ledger: LedgerStore, now: () => Date) {
    this.layout = layout;
    this.ledger = ledger;
    this.now = now;
  }

  static open(opts: { dir: string; now?: () => Date; store?: string }): LedgerView {
    const layout = new Layout(opts.dir);
    const ledger = openLedger(layout, opts.store);
    // Like every command, first finish (or discard) what a killed command left staged.
    new Journal(layout).recover(ledger);
    return new LedgerView(layout, ledger, opts.now ?? (() => new Date()));
  }

  close(): void {
    this.ledger.close();
  }

  signerId(): string {
    return signerIdOf(this.ledger, this.layout);
  }

  generations(): Generation[] {
    return generationsOf(this.ledger);
  }

  list(opts: { all?: boolean } = {}): ListedCert[] {
    return listCerts(this.ledger, this.now(), opts);
  }

  crlWarnings(): string[] {
    return crlWarnings(this.ledger, this.now());
  }

  /** The SPIFFE trust domain and where it came from (ca/trust-domain.ts). */
  trustDomainSetting(): TrustDomainSetting {
    return loadTrustDomain(this.layout.dir, () => this.ledger.getMeta("trust_domain"));
  }
}
