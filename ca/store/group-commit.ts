// Group commit for the online CA: issuances that are ready at the same time share one write
// transaction, one commit and one fsync (LedgerStore.writeBatch), and each caller learns when
// its own record is durable. The CA server answers a request only after that (docs/est.md,
// "Group commit"); the CLI keeps its one synchronous transaction per command.
import type { LedgerStore } from "./interface.ts";

/** Records per transaction at most: a burst larger than this is committed in several. */
export const MAX_BATCH = 128;
/**
 * How long the first record of a batch waits for issuances already under way (their CSR
 * checked, their certificate being signed) to join it. Signing one takes ~1-3 ms on this
 * machine: waiting costs latency, never CPU, and saves a commit and an fsync per joiner.
 */
export const MAX_WAIT_MS = 2;

interface Pending {
  record: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface GroupCommitOptions {
  maxBatch?: number;
  maxWaitMs?: number;
  /** Told the size of every batch committed (a metric). */
  onBatch?: (size: number) => void;
}

/** What an issuance under way commits through (signLeaf's `commit` option). */
export type Commit = (record: () => void) => Promise<void>;

export class GroupCommit {
  private pending: Pending[] = [];
  /** Issuances under way (GroupCommit.issue) that have not submitted their record yet. */
  private underWay = 0;
  private immediate: NodeJS.Immediate | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly maxBatch: number;
  private readonly maxWaitMs: number;

  constructor(
    private readonly ledger: LedgerStore,
    private readonly opts: GroupCommitOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? MAX_BATCH;
    this.maxWaitMs = opts.maxWaitMs ?? MAX_WAIT_MS;
  }

  /**
   * Runs one issuance that will commit through `commit`: while it is under way, a batch waits
   * for it (up to maxWaitMs), so that issuances in flight together commit together.
   */
  async issue<T>(fn: (commit: Commit) => Promise<T>): Promise<T> {
    this.underWay++;
    let submitted = false;
    const leave = () => {
      if (submitted) return;
      submitted = true;
      this.underWay--;
    };
    try {
      return await fn((record) => {
        leave();
        return this.submit(record);
      });
    } finally {
      if (!submitted) {
        leave();
        this.schedule(); // refused before its record: the batch need not wait for it
      }
    }
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
      this.schedule();
    });
  }

  /** Refuses new records after committing the queued ones (the server's close, before the ledger closes). */
  close(): void {
    this.flush();
    this.closed = true;
  }

  /**
   * Commits after this turn of the event loop's I/O callbacks once nothing else is under way
   * (or the batch is full), else when the first record has waited maxWaitMs.
   */
  private schedule(): void {
    if (this.pending.length === 0) return;
    if (this.underWay === 0 || this.pending.length >= this.maxBatch) {
      this.immediate ??= setImmediate(() => this.flush());
    } else {
      this.timer ??= setTimeout(() => this.flush(), this.maxWaitMs);
    }
  }

  private flush(): void {
    if (this.immediate) clearImmediate(this.immediate);
    if (this.timer) clearTimeout(this.timer);
    this.immediate = null;
    this.timer = null;
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
