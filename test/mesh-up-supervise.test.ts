// mesh:up as a supervisor, with real processes and real kills: the CA server killed -9 under
// steady traffic between services (no request fails, it is restarted, renewals go on), a service
// killed -9 (restarted, the others' traffic untouched), mesh:check reporting the restarts, Ctrl-C
// leaving no process; and mesh:up itself killed -9: the data plane keeps serving, and the next
// mesh:up refuses to run beside a live one and stops what a dead one left.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ev } from "./helpers/events.ts";
import { compiledScript } from "./helpers/compiled.ts";

// mesh:up compiled once for this file (helpers/compiled.ts): under tsx its module graph cost each
// start ~0.4 s of CPU more. mesh-up.test.ts starts it as npm does, under tsx.
const MESH_UP = await compiledScript("mesh-up");

const ROOT = join(import.meta.dirname, "..");
let tmp: string;
let policy: string;
const started: ChildProcess[] = [];

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "mesh-up-supervise-"));
  policy = join(tmp, "policy.toml");
  // edge (the test's client) may call order, and payment and inventory directly.
  writeFileSync(
    policy,
    `[payment]\naccepts = ["order", "edge"]\n\n[inventory]\naccepts = ["order", "edge"]\n\n[order]\naccepts = ["edge"]\n`,
  );
});
after(() => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
  // Whatever a failed assertion left running under this test's folders.
  for (const pid of processesUnder(tmp)) signal(pid, "SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

interface Up {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

/** `group`: mesh:up leads its own process group, as in a terminal, where Ctrl-C signals the whole group. */
function meshUp(name: string, extra: string[] = [], group = false): Up {
  const d = join(tmp, name);
  const proc = spawn(
    process.execPath,
    [
      MESH_UP,
      "--pki",
      join(d, "pki"),
      "--logs",
      join(d, "logs"),
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
      "--quiet",
      ...extra,
    ],
    {
      cwd: ROOT,
      detached: group,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", MESH_INVENTORY_STOCK: "widget=100000000" },
    },
  );
  started.push(proc);
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c));
  proc.stderr!.on("data", (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  return { proc, out: () => out, exited };
}

async function waitFor(cond: () => boolean, ms: number, what: string | (() => string)): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const signal = (pid: number, s: NodeJS.Signals) => {
  try {
    process.kill(pid, s);
  } catch {
    /* gone */
  }
};
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });

/** Every process whose command line names a path under `dir`: what "no process left" means here. */
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

interface LogLine {
  time: string;
  event: string;
  component?: string;
  pid?: number;
  code?: number | null;
  signal?: string | null;
  attempt?: number;
  delayMs?: number;
  restarts?: number;
  reason?: string;
}
const logEvents = (file: string): LogLine[] =>
  existsSync(file)
    ? readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as LogLine)
    : [];

interface MeshJson {
  pid: number;
  ports: Record<string, number>;
  pids: Record<string, number>;
  ca: { url: string; adminUrl: string; pid: number };
  dashboard: string;
  supervisor: { components: Record<string, { pid: number; restarts: number; state: string }> };
}
const meshJson = (logs: string) => JSON.parse(readFileSync(join(logs, "mesh.json"), "utf8")) as MeshJson;

/** Calls until stopped, as edge with its current files (renewed by mesh:up while this runs); every result kept. */
function traffic(state: string, port: number, servername: string, method: string, path: string, body?: unknown) {
  const results: { status?: number; error?: string; at: number }[] = [];
  let on = true;
  const files = () => {
    for (;;) {
      const cert = readFileSync(join(state, "edge", "cert.pem"));
      const key = readFileSync(join(state, "edge", "key.pem"));
      // Renewal replaces key and certificate one after the other: read again until they pair.
      if (new X509Certificate(cert).checkPrivateKey(createPrivateKey(key)))
        return { cert, key, ca: readFileSync(join(state, "edge", "bundle.pem")) };
    }
  };
  const once = () =>
    new Promise<{ status?: number; error?: string; at: number }>((resolve) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        {
          host: "127.0.0.1",
          port,
          servername,
          method,
          path,
          agent: false,
          timeout: 10_000,
          ...files(),
          headers: payload ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {},
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode, at: Date.now() }));
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message, at: Date.now() }));
      req.end(payload);
    });
  const loop = (async () => {
    while (on) {
      results.push(await once());
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    results,
    async stop() {
      on = false;
      await loop;
      return results;
    },
  };
}

function run(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
      },
    );
  });
}

// The three side by side, each in its own folders (a, b, c) with its own mesh:up: the second and
// the third take their turns while the first waits for renewals after the CA's return.
describe("mesh:up supervising", { concurrency: true }, () => {
  test("kill -9 of the CA server under steady traffic, then of a service: each restarted, no request between the others fails, renewals go on; mesh:check says so; Ctrl-C leaves no process", {
    timeout: 300_000,
  }, async () => {
    const logs = join(tmp, "a", "logs");
    const state = join(tmp, "a", "state");
    // 15 s certificates renewed at 1/3 of their life: every service renews within ~5 s of the CA's
    // return (at the default 2/3, ~10 s), with 10 s left to retry a renewal the kill failed.
    const up = meshUp("a", ["--lifetime", "15s", "--renew-at", "0.33", "--poll", "1"], true);
    await waitFor(
      () => existsSync(join(logs, "mesh.json")) && /Ctrl-C stops everything/.test(up.out()),
      90_000,
      () => `mesh:up to be ready:\n${up.out()}`,
    );
    assert.match(up.out(), /Each part is its own process: one that dies is restarted, the others keep serving/);
    const m = meshJson(logs);
    const supervisorLog = join(logs, "mesh-up.log");
    const started = logEvents(supervisorLog).filter(ev("supervisor.started"));
    assert.deepEqual(started.map((l) => l.component).sort(), ["ca", "dashboard", "inventory", "order", "payment"]);
    const pids = Object.fromEntries(started.map((l) => [l.component!, l.pid!]));
    assert.equal(pids.ca, m.ca.pid);
    for (const [name, pid] of Object.entries(pids)) {
      assert.ok(alive(pid), `${name} runs`);
      assert.notEqual(pid, m.pid, `${name} is not mesh:up's own process`);
    }

    // Orders go edge -> order -> inventory and payment: traffic between services.
    const orders = traffic(state, m.ports.order!, "order.internal", "POST", "/orders", { sku: "widget", quantity: 1 });
    await waitFor(() => orders.results.length >= 10, 30_000, "some orders");
    const caKilledAt = Date.now();
    process.kill(m.ca.pid, "SIGKILL");
    await waitFor(
      () => logEvents(supervisorLog).some(ev("supervisor.started", (l) => l.component === "ca" && l.restarts === 1)),
      60_000,
      "the CA to be restarted",
    );
    const ca = logEvents(supervisorLog).filter((l) => l.component === "ca");
    const exited = ca.find(ev("supervisor.exited"))!;
    assert.deepEqual([exited.pid, exited.code, exited.signal], [m.ca.pid, null, "SIGKILL"]);
    const restarting = ca.find(ev("supervisor.restarting"))!;
    assert.deepEqual([restarting.attempt, restarting.delayMs], [1, 500]);
    const caAgain = ca.find(ev("supervisor.started", (l) => l.restarts === 1))!;
    assert.notEqual(caAgain.pid, m.ca.pid);
    assert.match(up.out(), /mesh:up: ca was killed by SIGKILL \(pid \d+\); the rest of the mesh keeps running/);
    assert.match(up.out(), /mesh:up: restarting ca in 0\.5 s \(attempt 1 of 5 within 2 minutes\)/);
    // Back on the same port: the services know the CA by its URL.
    await waitFor(() => meshJson(logs).ca.pid === caAgain.pid, 30_000, "mesh.json to name the new CA process");
    assert.equal(meshJson(logs).ca.url, m.ca.url);
    const caBackAt = Date.parse(caAgain.time);

    // Every service renews with the CA that came back (15 s certificates at 1/3: within about 5 s).
    const renewedAfter = (name: string) =>
      logEvents(join(logs, `${name}.log`)).find(ev("identity.renewed", (l) => Date.parse(l.time) > caBackAt));
    await waitFor(
      () => ["order", "payment", "inventory"].every((n) => renewedAfter(n)),
      90_000,
      () =>
        `a renewal of each service after the CA came back: ${["order", "payment", "inventory"].filter((n) => !renewedAfter(n)).join(", ")} did not`,
    );
    const beforeKill = orders.results.filter((r) => r.at < caKilledAt).length;
    await orders.stop();
    const failed = orders.results.filter((r) => r.status !== 201);
    assert.deepEqual(failed, [], `${failed.length} of ${orders.results.length} orders failed`);
    assert.ok(
      orders.results.length - beforeKill >= 20,
      `steady traffic while the CA was down and back: ${orders.results.length - beforeKill} orders`,
    );

    // kill -9 of payment: restarted; inventory's traffic meanwhile unharmed, and orders work again.
    const stock = traffic(state, m.ports.inventory!, "inventory.internal", "GET", "/stock/widget");
    await waitFor(() => stock.results.length >= 10, 30_000, "some stock lookups");
    const payPid = m.pids.payment!;
    process.kill(payPid, "SIGKILL");
    await waitFor(
      () =>
        logEvents(supervisorLog).some(ev("supervisor.started", (l) => l.component === "payment" && l.restarts === 1)),
      60_000,
      "payment to be restarted",
    );
    await waitFor(() => meshJson(logs).pids.payment !== payPid, 10_000, "mesh.json to name the new payment");
    const payAgain = meshJson(logs).pids.payment!;
    assert.ok(alive(payAgain));
    assert.equal(meshJson(logs).ports.payment, m.ports.payment, "on its port");
    // It serves again (on the identity in its state folder: no new enrolment).
    await waitFor(
      () => logEvents(join(logs, "payment.log")).filter(ev("listening")).length === 2,
      30_000,
      "payment to listen again",
    );
    assert.equal(logEvents(join(logs, "payment.log")).filter(ev("identity.enrolled")).length, 1);
    const more = stock.results.length;
    await waitFor(() => stock.results.length >= more + 10, 30_000, "stock lookups after payment came back");
    await stock.stop();
    const stockFailed = stock.results.filter((r) => r.status !== 200);
    assert.deepEqual(stockFailed, [], `${stockFailed.length} of ${stock.results.length} stock lookups failed`);
    for (const name of ["ca", "order", "inventory", "dashboard"]) {
      assert.equal(
        logEvents(supervisorLog).filter(ev("supervisor.exited", (l) => l.component === name)).length,
        name === "ca" ? 1 : 0,
        `${name} was not touched by payment's death`,
      );
    }
    const again = traffic(state, m.ports.order!, "order.internal", "POST", "/orders", { sku: "widget", quantity: 1 });
    await waitFor(() => again.results.some((r) => r.status === 201), 30_000, "an order through the restarted payment");
    await again.stop();

    // mesh:check: a warning (‼) for each part restarted lately, not a failure.
    // Compiled once for this file, as mesh:up is (mesh-check.test.ts runs it as npm does).
    const check = await run([await compiledScript("mesh-check"), "--logs", logs]);
    assert.match(
      check.out,
      /^‼ ca keeps running\n {4}ca was restarted 1 time in the last 10 minutes \(last killed by SIGKILL at /m,
      check.out,
    );
    assert.match(check.out, /^‼ payment keeps running\n {4}payment was restarted 1 time in the last 10 minutes/m);
    assert.match(check.out, /^✓ order keeps running: never restarted/m);
    assert.match(check.out, /^✓ mesh:up supervises the mesh: mesh:up runs \(pid \d+\)/m);

    // Ctrl-C, as a terminal sends it: SIGINT to mesh:up's whole process group. Everything stops, and no process is left.
    const all = Object.values(meshJson(logs).supervisor.components).map((c) => c.pid);
    assert.equal(all.length, 5);
    process.kill(-up.proc.pid!, "SIGINT");
    assert.equal(await up.exited, 0);
    assert.match(up.out(), /mesh:up: all services, the CA server and the dashboard stopped/);
    for (const pid of all) assert.equal(alive(pid), false, `pid ${pid} still running`);
    assert.deepEqual(processesUnder(join(tmp, "a")), [], "no process left");
    for (const port of [...Object.values(m.ports), Number(new URL(m.ca.url).port), Number(new URL(m.dashboard).port)])
      assert.equal(await portOpen(port), false, `port ${port} closed`);
    assert.equal(existsSync(join(logs, "mesh-up.pids")), false);
  });

  test("kill -9 of mesh:up: the parts keep serving; another mesh:up refuses to run beside a live one and stops what a dead one left; SIGTERM then leaves nothing", {
    timeout: 240_000,
  }, async () => {
    const logs = join(tmp, "b", "logs");
    const state = join(tmp, "b", "state");
    const up = meshUp("b");
    await waitFor(
      () => existsSync(join(logs, "mesh.json")) && /Ctrl-C stops everything/.test(up.out()),
      90_000,
      () => `mesh:up to be ready:\n${up.out()}`,
    );
    const m = meshJson(logs);

    const beside = meshUp("b");
    assert.equal(await beside.exited, 5);
    assert.match(
      beside.out(),
      new RegExp(`^mesh:up: another mesh:up \\(pid ${m.pid}\\) is running on \\S+: stop it first`, "m"),
    );
    assert.ok(alive(m.pids.payment!), "the running mesh was not touched");

    const pay = traffic(state, m.ports.payment!, "payment.internal", "GET", "/healthz");
    await waitFor(() => pay.results.length >= 5, 30_000, "some calls");
    up.proc.kill("SIGKILL");
    await up.exited;
    const killedAt = Date.now();
    // Well past the second the old --exit-with-parent took to end every service.
    await waitFor(
      () => pay.results.filter((r) => r.at > killedAt + 3_000).length >= 10,
      60_000,
      "calls three seconds after mesh:up died",
    );
    await pay.stop();
    const failed = pay.results.filter((r) => r.status !== 200);
    assert.deepEqual(failed, [], `${failed.length} of ${pay.results.length} calls failed`);
    const comps = Object.entries(m.supervisor.components);
    for (const [name, c] of comps) assert.ok(alive(c.pid), `${name} still runs without mesh:up`);
    assert.equal(await portOpen(Number(new URL(m.ca.url).port)), true, "the CA server too");
    assert.ok(existsSync(join(logs, "mesh-up.pids")), "the record of what runs is left for the next mesh:up");

    const next = meshUp("b");
    await waitFor(
      () => /Ctrl-C stops everything/.test(next.out()),
      90_000,
      () => `the next mesh:up to be ready:\n${next.out()}`,
    );
    assert.match(
      next.out(),
      new RegExp(
        `^mesh:up: ca \\(pid ${m.ca.pid}\\), .*dashboard \\(pid \\d+\\) still running from an earlier mesh:up \\(pid ${m.pid}\\) that was killed outright; stopping them first$`,
        "m",
      ),
    );
    for (const [name, c] of comps) assert.equal(alive(c.pid), false, `the old ${name} was stopped`);
    const orphans = logEvents(join(logs, "mesh-up.log")).find(ev("supervisor.orphans_stopped"));
    assert.ok(orphans, "logged");
    const n = meshJson(logs);
    next.proc.kill("SIGTERM");
    assert.equal(await next.exited, 0);
    for (const c of Object.values(n.supervisor.components)) assert.equal(alive(c.pid), false);
    assert.deepEqual(processesUnder(join(tmp, "b")), [], "no process left");
  });

  test("a part that cannot start (its port taken) is not restarted: mesh:up says why, stops what it started and exits 3, leaving no process", {
    timeout: 120_000,
  }, async () => {
    const taken = await new Promise<import("node:net").Server>((resolve) => {
      const srv = createServer().listen(0, "127.0.0.1", () => resolve(srv));
    });
    try {
      const port = (taken.address() as { port: number }).port;
      const up = meshUp("c", ["--payment-port", String(port)]);
      assert.equal(await up.exited, 3, up.out());
      assert.match(
        up.out(),
        new RegExp(
          `^mesh:up: cannot start payment: payment exited with code 2 before it was ready: payment: cannot start: .*EADDRINUSE.*127\\.0\\.0\\.1:${port} \\(pick another port with --payment-port, or 0 for any\\)$`,
          "m",
        ),
      );
      assert.doesNotMatch(up.out(), /restarting payment|the rest of the mesh keeps running/);
      const lines = logEvents(join(tmp, "c", "logs", "mesh-up.log"));
      assert.equal(lines.filter(ev("supervisor.restarting")).length, 0);
      assert.deepEqual(processesUnder(join(tmp, "c")), [], "no process left");
    } finally {
      taken.close();
    }
  });
});
