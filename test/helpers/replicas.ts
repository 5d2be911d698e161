// Test helpers for CA replicas: a PostgreSQL database of its own per test (created and
// dropped over the local socket), and real `ca serve` processes whose log lines are parsed.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { userInfo } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { Lines } from "./est.ts";
import { ROOT } from "./ca.ts";
import { ev } from "./events.ts";

const TSX = import.meta.resolve("tsx");
export const PGHOST = process.env.PGHOST || "/var/run/postgresql";

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: PGHOST, database: "postgres", user: process.env.PGUSER || userInfo().username });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export interface TestDb {
  name: string;
  /** The --store URL: the socket folder as ?host=, no password. */
  url: string;
  drop(): Promise<void>;
}

/** A fresh database with a unique name (pgstore_<random>); drop() removes it even while replicas hold connections. */
export async function createDb(): Promise<TestDb> {
  const name = `pgstore_${process.pid}_${randomBytes(4).toString("hex")}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  return {
    name,
    url: `postgres:///${name}?host=${PGHOST}`,
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

export interface Replica {
  url: string;
  child: ChildProcess;
  lines: Lines;
  /** kill -9: no clean stop, the lease is not given up. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts `ca serve` on 127.0.0.1:0 and waits for its ca.started line. */
export async function startReplica(o: {
  dir: string;
  store?: string;
  args?: string[];
  env?: Record<string, string>;
}): Promise<Replica> {
  const args = [
    "--import",
    TSX,
    join(ROOT, "ca", "cli.ts"),
    "serve",
    "--dir",
    o.dir,
    "--port",
    "0",
    ...(o.store ? ["--store", o.store] : []),
    ...(o.args ?? []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, MESH_PKI_DIR: "", MESH_CA_STORE: "", MESH_CA_ADMIN_PORT: "", MESH_CA_NOW: "", ...o.env },
  });
  const lines = new Lines();
  let buf = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    const cut = buf.lastIndexOf("\n");
    if (cut < 0) return;
    lines.write(buf.slice(0, cut + 1));
    buf = buf.slice(cut + 1);
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const started = await Promise.race([
    lines.wait(ev("ca.started"), 60_000),
    exited.then(() => {
      throw new Error(`ca serve exited before starting: ${stderr}`);
    }),
  ]);
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { url: started.url as string, child, lines, kill: () => end("SIGKILL"), stop: () => end("SIGTERM") };
}
