// The jobs only one CA server may run at a time (re-signing CRLs before they lapse), held
// through a lease row in the ledger: taken when free or run out, renewed at a third of its
// term, given up on a clean stop. Replicas on one ledger (PostgreSQL, or one SQLite folder)
// thus elect one holder; when it dies, another takes over once the lease has run out.
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { EventLogger } from "../../lib/events.ts";
import type { CertificateAuthority } from "../authority.ts";

export const SINGLETON_LEASE = "ca-server-jobs";
/** How long a lease lasts without renewal: a dead holder's jobs move on within this (plus one renewal tick). */
export const DEFAULT_LEASE_MS = 15_000;

export class Lease {
  /** This server as a lease holder: host, pid and a random part (two servers in one process differ). */
  readonly holder = `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
  private heldNow = false;

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly log: EventLogger,
    readonly ttlMs = DEFAULT_LEASE_MS,
    readonly name = SINGLETON_LEASE,
  ) {}

  get held(): boolean {
    return this.heldNow;
  }

  /**
   * Takes or renews the lease; true when this server holds it now. A failure to reach the
   * ledger counts as not holding it: a holder that cannot renew must stop acting as one
   * before its lease runs out for the others.
   */
  tick(): boolean {
    const was = this.heldNow;
    let row: { holder: string; expiresAt: string } | undefined;
    try {
      const now = this.ca.now();
      // Shared: the upsert's own condition decides who holds it; issuances need not wait for it.
      row = this.ca.ledger.write(
        () =>
          this.ca.ledger.takeLease(
            this.name,
            this.holder,
            now.toISOString(),
            new Date(now.getTime() + this.ttlMs).toISOString(),
          ),
        { shared: true },
      );
      this.heldNow = row.holder === this.holder;
    } catch (err) {
      this.heldNow = false;
      this.log.warn(
        { event: "ca.lease_failed", lease: this.name, err: (err as Error).message },
        `could not renew the lease ${this.name}`,
      );
    }
    if (this.heldNow && !was) {
      this.log.info(
        { event: "ca.lease_acquired", lease: this.name, holder: this.holder, expires_at: row!.expiresAt },
        `this server now runs the CA's once-only jobs (${this.name})`,
      );
    } else if (!this.heldNow && was) {
      this.log.warn(
        { event: "ca.lease_lost", lease: this.name, holder: row?.holder ?? null },
        `this server no longer runs the CA's once-only jobs (${this.name})`,
      );
    }
    return this.heldNow;
  }

  /** Gives the lease up on a clean stop, so another server takes it at its next tick. */
  release(): void {
    if (!this.heldNow) return;
    this.heldNow = false;
    try {
      this.ca.ledger.write(() => this.ca.ledger.releaseLease(this.name, this.holder));
      this.log.info(
        { event: "ca.lease_released", lease: this.name, holder: this.holder },
        `released the lease ${this.name}`,
      );
    } catch {
      /* it runs out by itself */
    }
  }
}
