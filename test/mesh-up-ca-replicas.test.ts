// mesh:up --ca-replicas 2 --store postgres://… (issue 13): two supervised `ca serve` replicas on
// one PostgreSQL database (a fresh one, dropped after), the services given both addresses. The
// first killed -9: the services' calls to the CA go to the second meanwhile, renewals of 15 s
// certificates go on, the killed one is restarted; mesh:check checks both. Bad flag pairs: exit 2.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ev } from "./helpers/events.ts";
import { compiledScript } from "./helpers/compiled.ts";

// mesh:up and mesh:check compiled once for this file (helpers/compiled.ts): under tsx each start
// cost ~0.4 s of CPU more. mesh-up.test.ts and mesh-check.test.ts run them as npm does.
const MESH_UP = await compiledScript("mesh-up");
const MESH_CHECK = await compiledScript("mesh-check");

const ROOT = join(import.meta.dirname, "..");
const PGHOST = process.env.PGHOST || "/var/run/postgresql";
const DB = `mesh_up_replicas_${process.pid}`;
const STORE = `postgres:///${DB}?host=${PGHOST}`;
const tmp = mkdtempSync(join(tmpdir(), "mesh-up-replicas-"));
const started: ChildProcess[] = [];
const psql = (sql: string) =>
  execFileSync("psql", ["-d", "postgres", "-qc", sql], { env: { ...process.env, PGHOST }, stdio: "pipe" });

before(() => psql(`CREATE DATABASE ${DB}`));
after(() => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
  for (const pid of processesUnder(tmp)) signal(pid, "SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
  psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

function processesUnder(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, "utf8").includes(dir)) out.push(Number(p));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}
const signal = (pid: number, s: NodeJS.Signals) => {
  try {
    process.kill(pid, s);
  } catch {
    /* gone */
  }
};
async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: () => string): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", ...env }, timeout: 90_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
      },
    );
  });
}
/** Requests a CA replica answered, from its admin listener's metrics (every route, outcome ok). */
async function answered(adminUrl: string): Promise<number> {
  try {
    const text = await (await fetch(`${adminUrl}/metrics`)).text();
    return [...text.matchAll(/^mesh_ca_request_duration_seconds_count\{[^}]*outcome="ok"[^}]*\} (\d+)/gm)].reduce(
      (n, m) => n + Number(m[1]),
      0,
    );
  } catch {
    return -1;
  }
}
interface Line {
  event?: string;
  time?: string;
  serial?: string;
}
const linesOf = (file: string): Line[] =>
  existsSync(file)
    ? readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Line)
    : [];

test("bad --ca-replicas/--store pairs: one line, exit 2, nothing started", async () => {
  const base = [
    MESH_UP,
    "--logs",
    join(tmp, "bad", "logs"),
    "--pki",
    join(tmp, "bad", "pki"),
    "--state",
    join(tmp, "bad", "state"),
  ];
  // Side by side: each is refused before anything starts.
  const [sqlite, four, password] = await Promise.all([
    run([...base, "--ca-replicas", "2"]),
    run([...base, "--ca-replicas", "4", "--store", STORE]),
    run([...base, "--ca-replicas", "2", "--store", `postgres://ca:secret@127.0.0.1/${DB}`]),
  ]);
  assert.equal(sqlite.code, 2, sqlite.out);
  assert.match(
    sqlite.out,
    /^mesh:up: --ca-replicas 2 needs a store they share: add --store postgres:\/\/user@host\/db/m,
  );
  assert.equal(four.code, 2, four.out);
  assert.match(four.out, /--ca-replicas.*must be a whole number from 1 to 3/);
  assert.equal(password.code, 2, password.out);
  assert.match(password.out, /--store must not carry a password/);
  assert.doesNotMatch(password.out, /secret/);
  assert.equal(existsSync(join(tmp, "bad", "pki")), false, "no CA was created");
});

test("mesh:up --ca-replicas 2 on PostgreSQL: the first replica killed -9, the services go to the second and renew on, the first is restarted; mesh:check checks both", {
  timeout: 300_000,
}, async () => {
  const d = join(tmp, "up");
  const logs = join(d, "logs");
  const policy = join(tmp, "policy.toml");
  writeFileSync(
    policy,
    `[payment]\naccepts = ["order"]\n\n[inventory]\naccepts = ["order"]\n\n[order]\naccepts = ["edge"]\n`,
  );
  const proc = spawn(
    process.execPath,
    [
      MESH_UP,
      "--pki",
      join(d, "pki"),
      "--logs",
      logs,
      "--state",
      join(d, "state"),
      "--policy",
      policy,
      "--order-port",
      "0",
      "--payment-port",
      "0",
      "--inventory-port",
      "0",
      "--ca-port",
      "0",
      "--dashboard-port",
      "0",
      // 15 s certificates renewed at 1/3 of their life: the two renewals after the kill come ~5 s
      // apart (at the default 2/3, ~10 s), with 10 s left to retry one.
      "--lifetime",
      "15s",
      "--renew-at",
      "0.33",
      "--poll",
      "1",
      "--quiet",
      "--ca-replicas",
      "2",
      "--store",
      STORE,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } },
  );
  started.push(proc);
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c));
  proc.stderr!.on("data", (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  await waitFor(
    () => /Ctrl-C stops everything/.test(out),
    120_000,
    () => `mesh:up to be ready:\n${out}`,
  );
  assert.match(
    out,
    /^ {2}ca2 +https:\/\/127\.0\.0\.1:\d+ +\(a replica on the same store; metrics http:\/\/127\.0\.0\.1:\d+\/metrics\)$/m,
  );
  assert.match(out, new RegExp(`2 CA replicas on ${STORE.replace(/[?./]/g, "\\$&")}`));
  const m = JSON.parse(readFileSync(join(logs, "mesh.json"), "utf8")) as {
    ca: { store: string; replicas: { name: string; url: string; adminUrl: string; pid: number }[] };
  };
  assert.equal(m.ca.store, STORE);
  assert.deepEqual(
    m.ca.replicas.map((r) => r.name),
    ["ca", "ca2"],
  );
  const [first, second] = m.ca.replicas as [(typeof m.ca.replicas)[0], (typeof m.ca.replicas)[0]];
  assert.notEqual(first.url, second.url);
  // Both replicas write to the one database: what one issues, the other's ledger has.
  await waitFor(
    () => linesOf(join(logs, "ca2.log")).some(ev("ca.started")),
    30_000,
    () => "ca2's ca.started",
  );

  const check = await run([MESH_CHECK, "--logs", logs], { MESH_CA_STORE: "" });
  assert.equal(check.code, 0, check.out);
  assert.match(check.out, /^✓ CA replica 2 answers: https:\/\/127\.0\.0\.1:\d+: cacerts 200/m);

  // kill -9 the first: the services' calls go to the second while it is down, and renewals go on.
  const before2 = await answered(second.adminUrl);
  const killedAt = Date.now();
  signal(first.pid, "SIGKILL");
  await waitFor(
    () => /mesh:up: started ca again/.test(out),
    60_000,
    () => `ca to be restarted:\n${out.slice(-2000)}`,
  );
  await waitFor(
    async () => (await answered(second.adminUrl)) > before2,
    30_000,
    () => "ca2 to answer the services while ca was down",
  );
  for (const name of ["payment", "order", "inventory"]) {
    await waitFor(
      () =>
        linesOf(join(logs, `${name}.log`)).filter(ev("identity.renewed", (l) => Date.parse(l.time!) > killedAt))
          .length >= 2,
      120_000,
      () => `${name} to renew twice after the kill`,
    );
    assert.equal(linesOf(join(logs, `${name}.log`)).some(ev("identity.expired")), false, `${name}'s identity expired`);
  }
  const restarted = JSON.parse(readFileSync(join(logs, "mesh.json"), "utf8")) as {
    ca: { replicas: { name: string; pid: number }[] };
    supervisor: { components: Record<string, { restarts: number; state: string }> };
  };
  assert.notEqual(restarted.ca.replicas[0]!.pid, first.pid, "ca runs again under a new pid");
  assert.equal(restarted.supervisor.components.ca?.restarts, 1);
  assert.equal(restarted.supervisor.components.ca2?.restarts, 0);
  // Every renewal after the kill is in the one ledger both replicas write: ca.log or ca2.log holds it.
  const issued = new Set(
    [...linesOf(join(logs, "ca.log")), ...linesOf(join(logs, "ca2.log"))]
      .filter(ev("est.renewed"))
      .map((l) => l.serial!.toLowerCase()),
  );
  for (const name of ["payment", "order", "inventory"]) {
    for (const r of linesOf(join(logs, `${name}.log`)).filter(ev("identity.renewed")))
      assert.ok(issued.has(r.serial!.toLowerCase()), `${name}'s renewal ${r.serial} in neither CA log`);
  }

  // The dashboard mesh:up runs reads the ledger from the store (there is no ca.db) and shows both CA servers.
  const dashboard = (JSON.parse(readFileSync(join(logs, "mesh.json"), "utf8")) as { dashboard: string }).dashboard;
  interface Snap {
    issuers: { name: string }[];
    services: { name: string; identity?: { status?: string; issuer?: string } }[];
    caReplicas: { replicas: { url: string; starts: number; runsJobs: boolean }[] };
  }
  let snap: Snap | undefined;
  const snapshot = async () => (snap = (await (await fetch(new URL("/snapshot.json", dashboard))).json()) as Snap);
  await waitFor(
    async () => {
      const s = await snapshot();
      const byUrl = new Map(s.caReplicas.replicas.map((r) => [r.url, r]));
      return (
        byUrl.get(first.url)?.starts === 2 &&
        byUrl.get(second.url)?.starts === 1 &&
        s.caReplicas.replicas.filter((r) => r.runsJobs).length === 1
      );
    },
    60_000,
    () => `the dashboard's CA servers: ${JSON.stringify(snap?.caReplicas)}`,
  );
  assert.equal(existsSync(join(d, "pki", "ca.db")), false);
  assert.deepEqual(snap!.issuers.map((i) => i.name).sort(), ["Mesh Dev CA", "Mesh Dev Issuing CA"]);
  // payment's identity as the dashboard reads it from the store: valid. Right after a renewal the
  // ledger may already call the certificate the dashboard last saw superseded; its next read
  // (every 250 ms) has the new one, so wait for that, never for anything but "valid".
  const paymentStatus = () => snap!.services.find((x) => x.name === "payment")?.identity?.status;
  await waitFor(
    async () => {
      await snapshot();
      return paymentStatus() === "valid";
    },
    10_000,
    () => `payment's identity on the dashboard: ${paymentStatus()}`,
  );

  proc.kill("SIGTERM");
  assert.equal(await exited, 0);
  assert.match(out, /mesh:up: all services, the CA server and the dashboard stopped/);
});
