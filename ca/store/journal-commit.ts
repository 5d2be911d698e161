// Group commit for issuances whose key and certificate files the CA keeps (issue, renew, sign,
// the CA server's own certificate): those that are ready together stage their files in one
// round of fsyncs, commit their rows in one transaction (one fsync of the WAL: the online CA's
// GroupCommit, group-commit.ts), and only then move their files into place. Each caller learns its own outcome, and only once its row and
// files are durable. One issuance alone (the CLI's) is a batch of one: two fsyncs fewer than
// staging each file on its own (docs/bench.md, "Where the CA's time goes").
import { crashPoint } from "../crash-point.ts";
import type { Journal, StagedFiles } from "../store.ts";
import { GroupCommit } from "./group-commit.ts";
import type { LedgerStore } from "./interface.ts";

/** Issuances per batch at most: a larger burst is committed in several. */
export const MAX_BATCH = 64;

export interface JournalEntry extends StagedFiles {
  /** The name the files are published under (certs/<name>.crt and .key). */
  name: string;
  /** The issuance's ledger statements; may throw to refuse it (nothing of it lands then). */
  record: () => void;
}

interface Queued extends JournalEntry {
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class JournalCommit {
  private queue: Queued[] = [];
  /** A batch's files are being written and flushed; the next batch waits for that, not for the commit. */
  private staging = false;
  private scheduled = false;
  /** The ledger's side: a staged batch's records, submitted in one turn, commit in one transaction. */
  private readonly rows: GroupCommit;

  constructor(
    private readonly journal: Journal,
    ledger: LedgerStore,
  ) {
    this.rows = new GroupCommit(ledger, { maxBatch: MAX_BATCH });
  }

  /**
   * Stages the entry's files, commits its record and publishes its files. Resolves once all
   * three are done; rejects with the record's own error (nothing of it landed, its staged files
   * are gone) or the batch's (the disk or the database failed: nothing of the batch landed).
   */
  commit(entry: JournalEntry): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ...entry, resolve, reject });
      if (!this.staging && !this.scheduled) {
        this.scheduled = true;
        // After this turn's callbacks: issuances whose keys and signatures came back together batch.
        setImmediate(() => {
          this.scheduled = false;
          this.stageNext();
        });
      }
    });
  }

  private stageNext(): void {
    if (this.staging || this.queue.length === 0) return;
    this.staging = true;
    void this.stageAndCommit(this.queue.splice(0, MAX_BATCH));
  }

  private async stageAndCommit(batch: Queued[]): Promise<void> {
    try {
      await this.journal.stage(batch);
    } catch (err) {
      this.fail(batch, err);
      this.staging = false;
      this.stageNext();
      return;
    }
    this.staging = false;
    // The next batch's files go to the disk while this one's commit waits on its fsync.
    this.stageNext();
    this.commitStaged(batch);
  }

  private commitStaged(batch: Queued[]): void {
    crashPoint("before-commit");
    let committed = false;
    for (const e of batch) {
      this.rows.submit(e.record).then(
        () => {
          // Once, after the transaction and before any of its files is published.
          if (!committed) crashPoint("after-commit");
          committed = true;
          try {
            this.journal.publish(e.serial, e.name);
            e.resolve();
          } catch (err) {
            // Committed: the next open of the CA rolls the staged files forward (Journal.recover).
            e.reject(err);
          }
        },
        (err: unknown) => {
          this.journal.discard(e.serial);
          e.reject(err);
        },
      );
    }
  }

  private fail(batch: Queued[], err: unknown): void {
    for (const e of batch) {
      this.journal.discard(e.serial);
      e.reject(err);
    }
  }
}
