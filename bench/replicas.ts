// CA replicas (issue 13), part of `npm run bench`: EST enrolments per second with one and two
// `ca serve` replicas on PostgreSQL against one on SQLite, in interleaved rounds of one run;
// the failover time from killing a replica (kill -9) to the next enrolment answered, against the
// renewal window of the default lifetime; and the PostgreSQL store's cost per enrolment against
// SQLite's, in process. Alone: npx tsx bench/replicas.ts. Needs PostgreSQL (PGHOST, default
// /var/run/postgresql) and a role that may create databases.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Agent, request } from "undici";
import { CertificateAuthority, createToken, csrIdentity, enrol } from "../ca/index.ts";
import { enrolCsr } from "../services/mesh/identity-agent/est-client.ts";
import { newKeyAndCsr } from "../services/mesh/identity-agent/csr.ts";
import { pkcs7Certificates } from "../lib/pkcs7.ts";
import { combineRates, stats, type Rate, type Stats } from "./measure.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const env = (name: string, dflt: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};
const ROUND_MS = env("MESH_BENCH_REPLICA_SECONDS", 2) * 1000;
const ROUNDS = env("MESH_BENCH_REPLICA_ROUNDS", 3);
const CLIENTS = env("MESH_BENCH_EST_CLIENTS", 8);
/**
 * MESH_BENCH_REPLICA_FRESH=1: every enrolment on a fresh TLS connection through the identity
 * agent's own client (as before 2026-12-07), instead of keep-alive connections (as bench/est.ts).
 */
const FRESH = process.env.MESH_BENCH_REPLICA_FRESH === "1";
const FAILOVERS = env("MESH_BENCH_REPLICA_FAILOVERS", 3);
const PGHOST = process.env.PGHOST || "/var/run/postgresql";
const PGUSER = process.env.PGUSER || userInfo().username;
/** The renewal window of the default lifetime (1 h): a failover must be a small part of it. */
const DEFAULT_LIFETIME_MS = 3_600_000;
const FAILOVER_TARGET = 0.02;
const SCALE_TARGET = 1.5;

export interface ReplicaBenchResult {
  clients: number;
  sqlite1: Rate;
  pg1: Rate;
  pg2: Rate;
  pg1VsSqlite1: number;
  pg2VsSqlite1: number;
  pg2VsPg1: number;
  scalePass: boolean;
  failover: { ms: Stats; leaseTakeoverMs: Stats | null; ratioOfLifetime: number; pass: boolean };
  storeCost: { sqliteMs: Stats; pgMs: Stats; ratio: number };
  /** CPU per enrolment in the CA servers and in the bench's process, per side: what the cores were spent on. */
  cpu: Record<"sqlite1" | "pg1" | "pg2", CpuPerEnrolment>;
  /** 1-minute load average at the start and the end: on a shared machine, replicas cannot scale past idle cores. */
  loadAverage: [number, number];
  pass: boolean;
}

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ host: PGHOST, user: PGUSER, database: "postgres" });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

interface Served {
  url: string;
  child: ChildProcess;
  exited: Promise<void>;
  leaseAt: Promise<number>;
}

function serve(dir: string, store?: string): Promise<Served> {
  const args = [
    join(REPO, "bin", "ca.mjs"),
    "serve",
    "--dir",
    dir,
    "--port",
    "0",
    "--rate-per-address",
    "999999",
    "--rate-per-name",
    "999999",
    "--lease",
    "3s",
    ...(store ? ["--store", store] : []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, MESH_CA_STORE: "", MESH_CA_ADMIN_PORT: "" },
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  let leaseResolve!: (t: number) => void;
  const leaseAt = new Promise<number>((r) => (leaseResolve = r));
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    createInterface({ input: child.stdout! }).on("line", (l) => {
      if (l.includes('"event":"ca.lease_acquired"')) leaseResolve(performance.now());
      const m = /"event":"ca.started".*"url":"(https:\/\/[^"]+)"/.exec(l);
      if (m) resolve({ url: m[1]!, child, exited, leaseAt });
    });
    child.once("exit", (code) => reject(new Error(`ca serve exited with ${code}: ${err.trim()}`)));
  });
}

async function stop(s: Served, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill(signal);
  await s.exited;
}

/** CPU seconds (user + system) a process has used, from /proc (Linux; 0 elsewhere). */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return 0;
  }
}

/** The machine's CPU time so far, all cores, and how much of it was idle (/proc/stat, in clock ticks; zeros elsewhere). */
function machineCpu(): { total: number; idle: number } {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { total: f.reduce((a, b) => a + b, 0), idle: (f[3] ?? 0) + (f[4] ?? 0) };
  } catch {
    return { total: 0, idle: 0 };
  }
}

/** CPU milliseconds per enrolment: in the servers (all of them), in this process (the clients), in PostgreSQL's backends for the database. */
export interface CpuPerEnrolment {
  serversMs: number;
  clientMs: number;
  postgresMs: number;
  /** The share of the machine's CPU (all cores) left idle while the side ran: what a second replica could have used. */
  machineIdle: number;
}

/** The PostgreSQL backends serving a database (the replicas' connections), to read their CPU. */
async function backendPids(db: string): Promise<number[]> {
  const c = new pg.Client({ host: PGHOST, user: PGUSER, database: "postgres" });
  await c.connect();
  try {
    return (await c.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1", [db])).rows.map(
      (r) => r.pid,
    );
  } finally {
    await c.end();
  }
}

/**
 * One EST enrolment (simpleenroll with a token, RFC 7030 4.2.1) over a keep-alive TLS connection:
 * the CA's answer must be 200 and a certs-only PKCS#7 whose first certificate names the CSR's name.
 * Lighter than the identity agent's client (a fresh connection and TLS handshake per call, every
 * certificate parsed): the clients share the cores with the replicas, and what they spend is
 * not the CA's (docs/bench.md, "CA replicas").
 */
async function enrolKeptAlive(
  agent: Agent,
  url: string,
  name: string,
  csrBase64: string,
  token: string,
): Promise<void> {
  const r = await request(`${url}/.well-known/est/simpleenroll`, {
    method: "POST",
    dispatcher: agent,
    body: csrBase64,
    headers: {
      "content-type": "application/pkcs10",
      "content-transfer-encoding": "base64",
      authorization: `Bearer ${token}`,
    },
  });
  const body = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`${url}: simpleenroll answered ${r.statusCode} ${body.slice(0, 200)}`);
  const leaf = pkcs7Certificates(Buffer.from(body, "base64"), 4)[0];
  if (!leaf?.includes(name)) throw new Error(`${url}: simpleenroll's answer holds no certificate for ${name}`);
}

/** One round: CLIENTS enrolments in flight, spread over the replicas, for ROUND_MS. */
async function enrolRate(
  ca: CertificateAuthority,
  urls: string[],
  bundle: string,
  tag: string,
  pids: number[] = [],
  backends: number[] = [],
): Promise<
  Rate & { clientCpuS: number; serverCpuS: number; postgresCpuS: number; idleTicks: number; totalTicks: number }
> {
  // More than the CA takes in a round on this machine (about 1,300/s for one SQLite server on kept-alive connections, idle).
  const guess = 2000 * (ROUND_MS / 1000);
  const items = Array.from({ length: guess }, (_, i) => {
    const name = `${tag}-${i}.bench.internal`;
    const { csr } = newKeyAndCsr(name);
    return { name, csr, csrBase64: csr.toString("base64"), token: createToken(ca, { domain: name }).token };
  });
  const agents = urls.map(() => new Agent({ connect: { ca: bundle }, connections: CLIENTS }));
  let next = 0;
  let ops = 0;
  // CPU from here on: the measured window only, not the preparation above.
  const serverCpu0 = pids.reduce((t, p) => t + cpuSeconds(p), 0);
  const postgresCpu0 = backends.reduce((t, p) => t + cpuSeconds(p), 0);
  const machine0 = machineCpu();
  const clientCpu0 = process.cpuUsage();
  const start = performance.now();
  const deadline = start + ROUND_MS;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      while (performance.now() < deadline) {
        const it = items[next++];
        if (!it) return;
        const at = c % urls.length;
        if (FRESH) await enrolCsr({ url: urls[at]!, ca: bundle }, "simpleenroll", it.csr, { token: it.token });
        else await enrolKeptAlive(agents[at]!, urls[at]!, it.name, it.csrBase64, it.token);
        ops++;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  const c = process.cpuUsage(clientCpu0);
  const serverCpuS = pids.reduce((t, p) => t + cpuSeconds(p), 0) - serverCpu0;
  const postgresCpuS = backends.reduce((t, p) => t + cpuSeconds(p), 0) - postgresCpu0;
  const machine1 = machineCpu();
  await Promise.all(agents.map((a) => a.close()));
  return {
    ops,
    seconds,
    perSec: ops / seconds,
    clientCpuS: (c.user + c.system) / 1e6,
    serverCpuS,
    postgresCpuS,
    idleTicks: machine1.idle - machine0.idle,
    totalTicks: machine1.total - machine0.total,
  };
}

/** From kill -9 of the replica a client uses to that client's next answered enrolment (through its address list). */
async function failoverOnce(
  ca: CertificateAuthority,
  store: string,
  dir: string,
  bundle: string,
  round: number,
): Promise<{ ms: number; leaseMs: number | null }> {
  const a = await serve(dir, store);
  const b = await serve(dir, store);
  try {
    const list = `${a.url},${b.url}`;
    const one = async (i: number) => {
      const name = `failover${round}-${i}.bench.internal`;
      const { csr } = newKeyAndCsr(name);
      await enrolCsr({ url: list, ca: bundle }, "simpleenroll", csr, {
        token: createToken(ca, { domain: name }).token,
      });
    };
    await one(0); // a answers: it is first in the list
    const aHeld = await Promise.race([a.leaseAt.then(() => true), b.leaseAt.then(() => false)]);
    const killed = performance.now();
    a.child.kill("SIGKILL");
    let i = 1;
    for (;;) {
      try {
        await one(i++);
        break;
      } catch {
        /* tried both; go on */
      }
    }
    const ms = performance.now() - killed;
    const leaseMs = aHeld ? (await b.leaseAt) - killed : null;
    return { ms, leaseMs };
  } finally {
    await Promise.all([stop(a, "SIGKILL"), stop(b)]);
  }
}

/** In process, one enrolment at a time: what the store adds to each (the signing is the same on both). */
async function storeCost(ca: CertificateAuthority, n: number, tag: string): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const name = `${tag}-${i}.cost.internal`;
    const { csr } = newKeyAndCsr(name);
    const id = await csrIdentity(new Uint8Array(csr));
    const token = createToken(ca, { domain: name }).token;
    const t = performance.now();
    await enrol(ca, id, token, { lifetimeMs: 3_600_000 });
    samples.push(performance.now() - t);
  }
  return samples;
}

export async function runReplicaBench(): Promise<ReplicaBenchResult> {
  const loadAtStart = loadavg()[0]!;
  console.log(
    `\nCA replicas: EST enrolments/s with ${CLIENTS} clients in flight (${FRESH ? "a fresh TLS connection per enrolment" : "kept-alive TLS connections"}), ${ROUNDS} interleaved rounds of ${ROUND_MS / 1000} s per side (load average ${loadAtStart.toFixed(1)})`,
  );
  const work = mkdtempSync(join(tmpdir(), "mesh-bench-replicas-"));
  const dbName = `pgstore_bench_${randomBytes(4).toString("hex")}`;
  const store = `postgres:///${dbName}?host=${PGHOST}`;
  try {
    await admin(`CREATE DATABASE ${dbName}`);
  } catch (err) {
    rmSync(work, { recursive: true, force: true }); // PostgreSQL is not there: nothing left behind
    throw err;
  }
  const opened: CertificateAuthority[] = [];
  const servers: Served[] = [];
  try {
    const sqliteDir = join(work, "sqlite", "pki");
    const pgDir = join(work, "pg", "pki");
    const sqliteCa = await CertificateAuthority.init({ dir: sqliteDir, name: "Bench SQLite CA", store: "sqlite" });
    const pgCa = await CertificateAuthority.init({ dir: pgDir, name: "Bench PG CA", store });
    opened.push(sqliteCa, pgCa);
    const sqliteBundle = readFileSync(sqliteCa.paths.bundle, "utf8");
    const pgBundle = readFileSync(pgCa.paths.bundle, "utf8");

    // (c) first, before any server runs: the store's cost per enrolment, in process.
    await storeCost(sqliteCa, 20, "warm-s");
    await storeCost(pgCa, 20, "warm-p");
    const costS: number[] = [];
    const costP: number[] = [];
    for (let r = 0; r < 4; r++) {
      const order =
        r % 2 === 0
          ? ([
              [sqliteCa, costS],
              [pgCa, costP],
            ] as const)
          : ([
              [pgCa, costP],
              [sqliteCa, costS],
            ] as const);
      for (const [ca, out] of order) out.push(...(await storeCost(ca, 30, `r${r}-${ca === sqliteCa ? "s" : "p"}`)));
    }

    // (a) throughput: one SQLite server, two PostgreSQL replicas (one of them alone, then both).
    const s1 = await serve(sqliteDir);
    const p1 = await serve(pgDir, store);
    const p2 = await serve(pgDir, store);
    servers.push(s1, p1, p2);
    await enrolRate(sqliteCa, [s1.url], sqliteBundle, "warm-s");
    await enrolRate(pgCa, [p1.url, p2.url], pgBundle, "warm-p");
    const rounds: Record<"sqlite1" | "pg1" | "pg2", Rate[]> = { sqlite1: [], pg1: [], pg2: [] };
    // The replicas' connections (and this process's, idle while the clock runs).
    const backends = await backendPids(dbName);
    const sides: Array<[keyof typeof rounds, (r: number) => ReturnType<typeof enrolRate>]> = [
      ["sqlite1", (r) => enrolRate(sqliteCa, [s1.url], sqliteBundle, `s1-${r}`, [s1.child.pid!])],
      ["pg1", (r) => enrolRate(pgCa, [p1.url], pgBundle, `p1-${r}`, [p1.child.pid!], backends)],
      ["pg2", (r) => enrolRate(pgCa, [p1.url, p2.url], pgBundle, `p2-${r}`, [p1.child.pid!, p2.child.pid!], backends)],
    ];
    const cpu: Record<
      keyof typeof rounds,
      { servers: number; client: number; postgres: number; ops: number; idle: number; ticks: number }
    > = {
      sqlite1: { servers: 0, client: 0, postgres: 0, ops: 0, idle: 0, ticks: 0 },
      pg1: { servers: 0, client: 0, postgres: 0, ops: 0, idle: 0, ticks: 0 },
      pg2: { servers: 0, client: 0, postgres: 0, ops: 0, idle: 0, ticks: 0 },
    };
    for (let r = 0; r < ROUNDS; r++) {
      for (const [side, run] of r % 2 === 0 ? sides : [...sides].reverse()) {
        const { clientCpuS, serverCpuS, postgresCpuS, idleTicks, totalTicks, ...rate } = await run(r);
        cpu[side].idle += idleTicks;
        cpu[side].ticks += totalTicks;
        cpu[side].postgres += postgresCpuS;
        cpu[side].servers += serverCpuS;
        cpu[side].client += clientCpuS;
        cpu[side].ops += rate.ops;
        rounds[side].push(rate);
      }
    }
    const perOp = (k: keyof typeof rounds): CpuPerEnrolment => ({
      serversMs: (cpu[k].servers / cpu[k].ops) * 1000,
      clientMs: (cpu[k].client / cpu[k].ops) * 1000,
      postgresMs: (cpu[k].postgres / cpu[k].ops) * 1000,
      machineIdle: cpu[k].ticks > 0 ? cpu[k].idle / cpu[k].ticks : 0,
    });
    await Promise.all(servers.splice(0).map((s) => stop(s)));

    // (b) failover.
    const fo: Array<{ ms: number; leaseMs: number | null }> = [];
    for (let r = 0; r < FAILOVERS; r++) fo.push(await failoverOnce(pgCa, store, pgDir, pgBundle, r));

    const sqlite1 = combineRates(rounds.sqlite1);
    const pg1 = combineRates(rounds.pg1);
    const pg2 = combineRates(rounds.pg2);
    const failMs = stats(fo.map((f) => f.ms));
    const leases = fo.map((f) => f.leaseMs).filter((x): x is number => x !== null);
    const ratioOfLifetime = failMs.max / DEFAULT_LIFETIME_MS;
    const sMs = stats(costS);
    const pMs = stats(costP);
    const result: ReplicaBenchResult = {
      clients: CLIENTS,
      sqlite1,
      pg1,
      pg2,
      pg1VsSqlite1: pg1.perSec / sqlite1.perSec,
      pg2VsSqlite1: pg2.perSec / sqlite1.perSec,
      pg2VsPg1: pg2.perSec / pg1.perSec,
      scalePass: pg2.perSec / pg1.perSec >= SCALE_TARGET,
      failover: {
        ms: failMs,
        leaseTakeoverMs: leases.length ? stats(leases) : null,
        ratioOfLifetime,
        pass: ratioOfLifetime < FAILOVER_TARGET,
      },
      storeCost: { sqliteMs: sMs, pgMs: pMs, ratio: pMs.median / sMs.median },
      cpu: { sqlite1: perOp("sqlite1"), pg1: perOp("pg1"), pg2: perOp("pg2") },
      loadAverage: [loadAtStart, loadavg()[0]!],
      pass: false,
    };
    result.pass = result.scalePass && result.failover.pass;
    const f = (x: number) => x.toFixed(2);
    console.log(
      `  one server, SQLite        ${sqlite1.perSec.toFixed(1)} enrolments/s  (${sqlite1.ops} in ${sqlite1.seconds.toFixed(1)} s)`,
    );
    console.log(
      `  one replica, PostgreSQL   ${pg1.perSec.toFixed(1)} enrolments/s  = ${f(result.pg1VsSqlite1)}x SQLite`,
    );
    console.log(
      `  two replicas, PostgreSQL  ${pg2.perSec.toFixed(1)} enrolments/s  = ${f(result.pg2VsSqlite1)}x SQLite, ${f(result.pg2VsPg1)}x one replica   target >= ${SCALE_TARGET}x  ${result.scalePass ? "PASS" : "FAIL"}`,
    );
    console.log(
      `  failover (kill -9 to the next enrolment answered, ${fo.length} runs): median ${failMs.median.toFixed(0)} ms, max ${failMs.max.toFixed(0)} ms = ${(ratioOfLifetime * 100).toFixed(3)}% of the default 1h lifetime   target < ${FAILOVER_TARGET * 100}%  ${result.failover.pass ? "PASS" : "FAIL"}`,
    );
    for (const k of ["sqlite1", "pg1", "pg2"] as const) {
      console.log(
        `  CPU per enrolment, ${k.padEnd(7)}: CA server(s) ${result.cpu[k].serversMs.toFixed(1)} ms, bench clients ${result.cpu[k].clientMs.toFixed(1)} ms, PostgreSQL ${result.cpu[k].postgresMs.toFixed(1)} ms; machine idle ${(result.cpu[k].machineIdle * 100).toFixed(0)}%`,
      );
    }
    if (result.failover.leaseTakeoverMs)
      console.log(
        `  lease on the once-only jobs taken over after: median ${result.failover.leaseTakeoverMs.median.toFixed(0)} ms (lease 3 s)`,
      );
    console.log(
      `  store cost per enrolment, in process: SQLite ${sMs.median.toFixed(2)} ms, PostgreSQL ${pMs.median.toFixed(2)} ms (median of ${sMs.n}) = ${f(result.storeCost.ratio)}x`,
    );
    console.log(
      `  load average (1 min) ${loadAtStart.toFixed(1)} at the start, ${result.loadAverage[1].toFixed(1)} at the end, on ${cpus().length} cores`,
    );
    return result;
  } finally {
    await Promise.all(servers.map((s) => stop(s, "SIGKILL")));
    for (const ca of opened) ca.close();
    await admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await runReplicaBench();
  if (!r.pass) process.exitCode = 1;
}
