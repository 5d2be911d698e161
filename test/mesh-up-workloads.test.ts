// mesh:up with the shipped workloads (mesh-workloads.toml) on free ports: the Python and gRPC
// apps start behind their sidecars, each sidecar enrolled with its one-time token; a Python app
// names its caller from XFCC and calls inventory through its sidecar; a gRPC call crosses two
// sidecars; mesh:probe covers the workloads; an app killed -9 is restarted; Ctrl-C stops all.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHIPPED_POLICY_FILE } from "./mesh-fixtures.ts";
import { hasEvent } from "./helpers/events.ts";
import type { LoggedEvent } from "../lib/events.ts";
import { compiledScript, type Script } from "./helpers/compiled.ts";

const ROOT = join(import.meta.dirname, "..");
const tmp = mkdtempSync(join(tmpdir(), "mesh-up-workloads-"));
let up: ChildProcess | undefined;

after(() => {
  if (up && up.exitCode === null && up.signalCode === null) up.kill("SIGTERM");
  for (const pid of pidsOf()) signal(pid, "SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

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

interface MeshJson {
  ports: Record<string, number>;
  identities: Record<string, { cert: string; key: string; bundle: string }>;
  workloads: {
    file: string;
    list: Record<
      string,
      {
        port: number;
        app: string;
        protocol: string;
        upstreams: Record<string, number>;
        pid: number | null;
        appPid: number | null;
      }
    >;
  } | null;
  supervisor: { components: Record<string, { pid: number | null; state: string; restarts: number }> };
}
const meshJson = () => JSON.parse(readFileSync(join(tmp, "logs", "mesh.json"), "utf8")) as MeshJson;
/** Every process mesh:up recorded, for the clean-up of a failed run. */
function pidsOf(): number[] {
  try {
    return Object.values(meshJson().supervisor.components).flatMap((c) => (c.pid ? [c.pid] : []));
  } catch {
    return [];
  }
}

async function waitFor(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits for a line of <logs>/<name>.log (a service writes its request line once the answer is sent). */
function logged(name: string, what: string, pred: (l: LoggedEvent<"request">) => boolean): Promise<void> {
  const file = join(tmp, "logs", `${name}.log`);
  return waitFor(
    () => existsSync(file) && hasEvent(readFileSync(file, "utf8"), "request", pred),
    15_000,
    () => `a request line ${what} in ${name}.log`,
  );
}

/** A call as edge (the operator's identity mesh:up keeps) to `name`'s mTLS port. */
function callAs(
  state: MeshJson,
  name: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const id = state.identities.edge!;
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        host: "127.0.0.1",
        port: state.ports[name],
        servername: `${name}.internal`,
        method,
        path,
        ca: readFileSync(id.bundle),
        cert: readFileSync(id.cert),
        key: readFileSync(id.key),
        agent: false,
        timeout: 20_000,
        headers: data ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) } : {},
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          try {
            resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> });
          } catch {
            reject(new Error(`${name} ${path}: ${res.statusCode} ${text.slice(0, 300)}`));
          }
        });
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end(data);
  });
}

/** A script compiled once for this file (helpers/compiled.ts), run to its end. */
async function runScript(name: Script, args: string[]): Promise<{ code: number | null; stdout: string }> {
  const path = await compiledScript(name);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path, ...args],
      { cwd: ROOT, timeout: 60_000, env: { ...process.env, NO_COLOR: "1" } },
      (e, stdout) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout }),
    );
  });
}

test("mesh:up runs the shipped workloads: Python and gRPC apps behind enrolled sidecars, probed, restarted", {
  timeout: 240_000,
}, async () => {
  // The shipped policy names the workloads; mesh-workloads.toml is the shipped one (its commands
  // run from its own folder, the repository), every port free.
  copyFileSync(SHIPPED_POLICY_FILE, join(tmp, "mesh-policy.toml"));
  up = spawn(
    process.execPath,
    [
      // Compiled once for this file (helpers/compiled.ts), as are mesh:probe and mesh:check below:
      // ~0.4 s of CPU less a start. mesh-up.test.ts and others run them as npm does, under tsx.
      await compiledScript("mesh-up"),
      "--pki",
      join(tmp, "pki"),
      "--logs",
      join(tmp, "logs"),
      "--state",
      join(tmp, "state"),
      "--policy",
      join(tmp, "mesh-policy.toml"),
      "--workloads",
      join(ROOT, "mesh-workloads.toml"),
      "--workload-ports",
      "any",
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
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } },
  );
  let out = "";
  up.stdout!.on("data", (c: Buffer) => (out += c));
  up.stderr!.on("data", (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((r) => up!.on("exit", (code) => r(code)));
  await waitFor(
    () => /Ctrl-C stops everything/.test(out) || up!.exitCode !== null,
    150_000,
    () => `mesh:up; it printed:\n${out}`,
  );
  assert.match(out, /Ctrl-C stops everything/, out);

  // Enrolled as the services are: a one-time token each, the key in its own state folder, 0600.
  const state = meshJson();
  assert.deepEqual(Object.keys(state.workloads!.list), ["delivery", "ledger", "cashier"]);
  for (const name of ["delivery", "ledger", "cashier"]) {
    assert.match(out, new RegExp(`token  ${name}\\.internal +one-time`));
    assert.match(out, new RegExp(`\\[${name}\\] +\\S+ identity\\.enrolled: enrolled ${name}\\.internal`));
    assert.equal(statSync(join(tmp, "state", name, "key.pem")).mode & 0o777, 0o600);
    assert.match(out, new RegExp(`  ${name} +https://127\\.0\\.0\\.1:${state.ports[name]} `), "the banner shows it");
  }
  assert.equal(state.workloads!.list.ledger!.protocol, "h2c");

  // Python (standard library): the caller from XFCC; inventory through its sidecar, as delivery.
  const shipped = await callAs(state, "delivery", "POST", "/ship", { orderId: "t-1", sku: "widget" });
  assert.equal(shipped.status, 201, JSON.stringify(shipped.body));
  assert.equal(shipped.body.caller, "edge");
  assert.equal(typeof shipped.body.available, "number");
  await logged(
    "inventory",
    "delivery GET /stock/widget 200",
    (l) => l.peer === "delivery" && l.method === "GET" && l.path === "/stock/widget" && l.status === 200,
  );

  // gRPC through two sidecars: cashier's app calls ledger.Ledger/Record in plaintext on its
  // sidecar's outbound port; ledger's sidecar names cashier in XFCC, which the ledger records.
  const paid = await callAs(state, "cashier", "POST", "/pay", { orderId: "t-1", amount: 1250 });
  assert.equal(paid.status, 201, JSON.stringify(paid.body));
  assert.deepEqual(paid.body, { recorded: true, entry: 1, recordedBy: "cashier" });
  const entries = await callAs(state, "cashier", "GET", "/entries");
  assert.deepEqual(entries.body, { entries: [{ entry: 1, orderId: "t-1", amount: 1250, caller: "cashier" }] });
  await logged(
    "ledger",
    "cashier POST /ledger.Ledger/Record 200",
    (l) => l.peer === "cashier" && l.method === "POST" && l.path === "/ledger.Ledger/Record" && l.status === 200,
  );
  // The ledger's policy accepts cashier only: edge is refused by its sidecar, before the app.
  assert.equal((await callAs(state, "ledger", "GET", "/healthz")).status, 403);

  // mesh:probe covers the workloads, and the mesh does what the policy says; mesh:check side by side.
  const [probe, check] = await Promise.all([
    runScript("mesh-probe", ["--logs", join(tmp, "logs"), "--json"]),
    runScript("mesh-check", ["--logs", join(tmp, "logs")]),
  ]);
  const matrix = JSON.parse(probe.stdout) as {
    cells: Array<{ caller: string; callee: string; expected: string; observed: string; ok: boolean }>;
  };
  for (const w of ["delivery", "ledger", "cashier"]) {
    assert.ok(
      matrix.cells.some((c) => c.callee === w),
      `probed ${w}`,
    );
    assert.ok(
      matrix.cells.some((c) => c.caller === w),
      `probed as ${w}`,
    );
  }
  assert.deepEqual(
    matrix.cells.find((c) => c.caller === "cashier" && c.callee === "ledger")?.observed,
    "app (415)",
    "cashier reaches the gRPC app",
  );
  assert.deepEqual(
    matrix.cells.filter((c) => !c.ok),
    [],
  );
  assert.equal(probe.code, 0);

  // mesh:check reports on each workload as on a service: its sidecar's certificate, bundle, CRLs, policy.
  for (const w of ["delivery", "ledger", "cashier"]) {
    assert.match(
      check.stdout,
      new RegExp(`^${w} :${state.ports[w]} \\(admin :\\d+\\)\n-+\n✓ answers over mTLS`, "m"),
      check.stdout,
    );
    assert.match(check.stdout, new RegExp(`✓ ${w}-app keeps running`));
  }

  // The Python app killed -9: restarted by mesh:up, on its port, and serving again.
  const first = state.workloads!.list.delivery!.appPid!;
  assert.ok(alive(first));
  process.kill(first, "SIGKILL");
  await waitFor(
    () => {
      const c = meshJson().supervisor.components["delivery-app"];
      return c !== undefined && c.restarts >= 1 && c.pid !== null && c.pid !== first && c.state === "running";
    },
    60_000,
    () => `delivery-app restarted; mesh.json: ${JSON.stringify(meshJson().supervisor.components["delivery-app"])}`,
  );
  let again: { status: number } = { status: 0 };
  for (let i = 0; i < 50 && again.status !== 201; i++) {
    again = await callAs(state, "delivery", "POST", "/ship", { orderId: "t-2", sku: "widget" }).catch(() => ({
      status: 0,
    }));
    if (again.status !== 201) await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(again.status, 201);
  assert.match(out, /started delivery-app again/);

  // Ctrl-C: everything stops, the workloads' apps and sidecars too.
  const pids = pidsOf();
  up.kill("SIGINT");
  assert.equal(await exited, 0);
  await waitFor(
    () => pids.every((p) => !alive(p)),
    20_000,
    () => `every part to stop: ${pids.filter(alive).join(", ")} still alive`,
  );
  assert.ok(existsSync(join(tmp, "logs", "delivery-app.out")));
});
