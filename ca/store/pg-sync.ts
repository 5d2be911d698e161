// PostgreSQL, called synchronously: a worker thread owns one `pg` connection and the calling
// thread blocks on an Atomics.wait until the answer is back. The CA's ledger interface is
// synchronous (better-sqlite3 is), and so are the dozens of callers that read it between
// two awaits; this keeps every one of them unchanged on PostgreSQL. A round trip costs
// about as much as a query over the local socket plus two thread wake-ups (docs/bench.md).
// Statements with parameters are prepared once per connection (named), so PostgreSQL parses
// and plans each kind once, not on every call. With `listen`, the worker LISTENs on a channel
// and counts what it hears (and every new connection, which may have missed some) in `changes`,
// which the calling thread reads without a round trip (the store's cache, postgres.ts).
import { createRequire } from "node:module";
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from "node:worker_threads";

export interface QueryResult {
  rows: Record<string, unknown>[];
  rowCount: number;
}

/** An error PostgreSQL answered with: its SQLSTATE in `code` (23505: unique violation). */
export class PgError extends Error {
  readonly code: string;
  /** With queryMany: the results of the statements that ran before the one that failed. */
  readonly results?: QueryResult[];
  constructor(message: string, code: string, results?: QueryResult[]) {
    super(message);
    this.name = "PgError";
    this.code = code;
    this.results = results;
  }
}

// Plain JavaScript evaluated in the worker: it runs the same way under tsx and from the
// esbuild bundle (a worker file next to this one would not be in the bundle).
const WORKER = `
const { workerData } = require("node:worker_threads");
const pg = require(workerData.pgPath);
const { port, flag, config, listen } = workerData;
let client = null;
// Parameterised statements by text, prepared under these names (per connection: pg prepares a
// name again on a new one).
const names = new Map();
function prepared(text) {
  let name = names.get(text);
  if (!name) names.set(text, (name = "mesh" + names.size));
  return name;
}
// A transaction is open on the connection; "lost": the connection died inside it, so every
// statement fails until the caller's ROLLBACK (a fresh connection must never run the rest of
// a transaction in autocommit, committing half of it).
let inTx = false;
let lost = false;
function drop() { const c = client; client = null; c?.end().catch(() => {}); if (inTx) lost = true; }
async function connect() {
  const c = new pg.Client(config);
  c.on("error", () => { if (client === c) drop(); });
  await c.connect();
  if (listen) {
    c.on("notification", () => Atomics.add(flag, 1, 1));
    await c.query("LISTEN " + listen);
    // What changed while no connection listened is unknown: everything may have.
    Atomics.add(flag, 1, 1);
  }
  return c;
}
port.on("message", async (m) => {
  let answer;
  // queryMany's results so far: told with its error too.
  const results = [];
  const verb = m.sql ? m.sql.trimStart().slice(0, 8).toUpperCase() : "";
  try {
    if (m.close) { if (client) await client.end().catch(() => {}); client = null; answer = { rows: [], rowCount: 0 }; }
    else if (lost) {
      if (verb.startsWith("ROLLBACK") && !verb.startsWith("ROLLBACK T")) { lost = false; inTx = false; answer = { rows: [], rowCount: 0 }; }
      else throw Object.assign(new Error("the connection to PostgreSQL was lost inside a transaction: nothing of it was committed"), { code: "08006" });
    } else if (m.many) {
      client ??= await connect();
      for (const q of m.many) {
        const r = await client.query({ name: prepared(q.sql), text: q.sql, values: q.params });
        results.push({ rows: r.rows ?? [], rowCount: r.rowCount ?? 0 });
      }
      answer = { rows: [], rowCount: 0, results };
    } else {
      client ??= await connect();
      if (verb.startsWith("BEGIN")) inTx = true;
      const r = await client.query(
        m.params.length > 0 ? { name: prepared(m.sql), text: m.sql, values: m.params } : { text: m.sql },
      );
      if (verb.startsWith("COMMIT") || (verb.startsWith("ROLLBACK") && !verb.startsWith("ROLLBACK T"))) inTx = false;
      const last = Array.isArray(r) ? r[r.length - 1] : r;
      answer = { rows: last.rows ?? [], rowCount: last.rowCount ?? 0 };
    }
  } catch (e) {
    // A broken connection is not reused: the next query opens a fresh one.
    if (!e.code || /^(08|57P)/.test(e.code)) drop();
    // A failed COMMIT ends the transaction too (PostgreSQL rolled it back, or the connection is gone).
    if (verb.startsWith("COMMIT")) { inTx = false; lost = false; }
    answer = { error: String(e.message), code: String(e.code ?? "08000"), results };
  }
  answer.seq = m.seq;
  port.postMessage(answer);
  Atomics.store(flag, 0, m.seq);
  Atomics.notify(flag, 0);
});
`;

/** How long one query may block before the caller gives up (a lock held by a dead replica is released by PostgreSQL well before). */
const QUERY_TIMEOUT_MS = 60_000;

export interface PgConfig {
  host?: string;
  port?: number;
  user?: string;
  database?: string;
  /** Never from the URL: PGPASSWORD or ~/.pgpass, which `pg` reads itself. */
  application_name?: string;
}

export interface SyncPgOptions {
  /** A channel to LISTEN on: what is heard there moves `changes`. */
  listen?: string;
}

export class SyncPg {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  // [0]: the number of the last request answered; [1]: notifications heard and connections made (`changes`).
  private readonly flag = new Int32Array(new SharedArrayBuffer(8));
  /** Slept on between looks for an answer that is late on the port (see answer()). */
  private readonly nap = new Int32Array(new SharedArrayBuffer(4));
  /** The number of the last request sent; its answer carries it back. */
  private seq = 0;
  private closed = false;

  constructor(config: PgConfig, opts: SyncPgOptions = {}) {
    if (opts.listen !== undefined && !/^[a-z_][a-z0-9_]*$/.test(opts.listen))
      throw new Error(`not a channel name: ${opts.listen}`);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const pgPath = createRequire(import.meta.url).resolve("pg");
    this.worker = new Worker(WORKER, {
      eval: true,
      workerData: {
        port: port2,
        flag: this.flag,
        config: { ...config, statement_timeout: QUERY_TIMEOUT_MS },
        pgPath,
        listen: opts.listen,
      },
      transferList: [port2],
      // The worker must not run tsx's loader: it is plain JavaScript.
      execArgv: [],
    });
    this.worker.unref();
  }

  /**
   * Moves whenever the LISTEN channel is notified or the worker connects afresh: while it stays
   * the same, nothing was notified since it was read (up to the notification's delivery, which
   * comes before the answer to any statement that began after the notifying commit).
   */
  get changes(): number {
    return Atomics.load(this.flag, 1);
  }

  /** Runs one statement (or several separated by `;` when there are no parameters). */
  query(sql: string, params: unknown[] = []): QueryResult {
    if (this.closed) throw new PgError("the PostgreSQL store is closed", "08003");
    const seq = this.next();
    this.port.postMessage({ seq, sql, params });
    const m = this.answer(seq, QUERY_TIMEOUT_MS + 5_000);
    if (!m) throw new PgError(`PostgreSQL did not answer within ${QUERY_TIMEOUT_MS / 1000} s`, "57014");
    if (m.error !== undefined) throw new PgError(m.error, m.code ?? "08000");
    return m;
  }

  /**
   * Runs statements (each with parameters; never BEGIN, COMMIT or ROLLBACK) one after the other
   * in one round trip between the threads, stopping at the first that fails (thrown). Meant for
   * a transaction's statements whose results only matter once all have run.
   */
  queryMany(statements: ReadonlyArray<{ sql: string; params: unknown[] }>): QueryResult[] {
    if (this.closed) throw new PgError("the PostgreSQL store is closed", "08003");
    const seq = this.next();
    this.port.postMessage({ seq, many: statements });
    const m = this.answer(seq, QUERY_TIMEOUT_MS + 5_000);
    if (!m) throw new PgError(`PostgreSQL did not answer within ${QUERY_TIMEOUT_MS / 1000} s`, "57014");
    if (m.error !== undefined) throw new PgError(m.error, m.code ?? "08000", m.results);
    return m.results ?? [];
  }

  private next(): number {
    this.seq = this.seq >= 0x7fffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  /**
   * The answer to request `seq`, or null after `ms`. Atomics.wait returns on any notify, and the
   * worker notifies after storing the flag: preempted between the two, its notify for request N
   * woke this thread's wait for N+1 with no answer on the port yet ("the PostgreSQL worker gave
   * no answer", twice in bench/replicas.ts under load). So the flag holds the number of the
   * request answered, is checked after every wake-up, and answers carry their number.
   */
  private answer(
    seq: number,
    ms: number,
  ): (QueryResult & { error?: string; code?: string; results?: QueryResult[] }) | null {
    const deadline = performance.now() + ms;
    for (;;) {
      const left = deadline - performance.now();
      const flagged = Atomics.load(this.flag, 0);
      if (flagged !== seq) {
        if (left <= 0) return null;
        Atomics.wait(this.flag, 0, flagged, left);
        continue;
      }
      const m = receiveMessageOnPort(this.port)?.message as
        | (QueryResult & { seq: number; error?: string; code?: string; results?: QueryResult[] })
        | undefined;
      if (m?.seq === seq) return m;
      if (m) continue; // an answer to a request given up on: dropped
      if (left <= 0) return null;
      Atomics.wait(this.nap, 0, 0, 1); // flagged, but not on the port yet: look again shortly
    }
  }

  close(): void {
    if (this.closed) return;
    const seq = this.next();
    this.port.postMessage({ seq, close: true });
    this.answer(seq, 2_000);
    this.closed = true;
    void this.worker.terminate();
    this.port.close();
  }
}
