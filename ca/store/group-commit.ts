// Group commit for the online CA: issuances that are ready at the same time share one write
// transaction, one commit and one fsync (LedgerStore.writeBatch), and each caller learns when
// its own record is durable. The CA server answers a request only after that (docs/est.md,
// "Group commit"); the CLI keeps its one synchronous transaction per command.
import type { LedgerStore } from "./interface.ts";

/** Records per transaction at most: a burst larger than this is committed in several. */
export const MAX_BATCH = 128;

interface Pending {
  record: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface GroupCommitOptions {
  maxBatch?: number;
  /** Told the size of every batch committed (a metric). */
  onBatch?: (size: number) => void;
}

export class GroupCommit {
  private pending: Pending[] = [];
  private scheduled = false;
  private closed = false;
  private readonly maxBatch: number;

  constructor(
    private readonly ledger: LedgerStore,
    private readonly opts: GroupCommitOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? MAX_BATCH;
  }

  /**
   * Queues one record (ledger statements only: it may run more than once, see writeBatch) for
   * the next commit. Resolves once it is committed; rejects with its own error (nothing of it
   * landed) or with the batch's (nothing of the batch landed, or, for a failed COMMIT on
   * PostgreSQL, unknown), and then the caller must not answer as if it were issued.
   */
  submit(record: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the ledger's commit queue is closed"));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ record, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // After the I/O callbacks of this turn of the event loop: every request whose
        // certificate was signed in the meantime joins the same transaction.
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits what is queued now (the server's close, before the ledger closes). */
  drain(): void {
    this.flush();
  }

  /** Refuses new records after committing the queued ones. */
  close(): void {
    this.flush();
    this.closed = true;
  }

  private flush(): void {
    this.scheduled = false;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxBatch);
      let outcomes: ReturnType<LedgerStore["writeBatch"]>;
      try {
        outcomes = this.ledger.writeBatch(batch.map((p) => p.record));
      } catch (err) {
        for (const p of batch) p.reject(err);
        continue;
      }
      this.opts.onBatch?.(batch.length);
      batch.forEach((p, i) => {
        const o = outcomes[i]!;
        if (o.ok) p.resolve();
        else p.reject(o.error);
      });
    }
  }
}
