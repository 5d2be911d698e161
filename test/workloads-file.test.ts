// The workloads file (mesh-workloads.toml): what it declares, and each kind of mistake refused
// with its file:line, as the policy's are.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { MeshError } from "../services/mesh/errors.ts";
import { loadWorkloads, parseWorkloads, upstreamEnvName } from "../services/mesh/workloads.ts";

const BUILT_IN = ["order", "payment", "inventory"];
const ROOT = join(import.meta.dirname, "..");

function refused(text: string, line: number, pattern: RegExp): void {
  assert.throws(
    () => parseWorkloads(text, "w.toml", BUILT_IN),
    (e: unknown) => {
      assert.ok(e instanceof MeshError, `not a MeshError: ${String(e)}`);
      assert.match(e.message, new RegExp(`^w\\.toml:${line}(:\\d+)?: `), e.message);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

test("the shipped mesh-workloads.toml: a Python app, a gRPC server (h2c) and its client, with their upstreams", () => {
  const w = loadWorkloads(join(ROOT, "mesh-workloads.toml"), BUILT_IN);
  assert.deepEqual(
    w.workloads.map((x) => x.name),
    ["delivery", "ledger", "cashier"],
  );
  const [delivery, ledger, cashier] = w.workloads;
  assert.deepEqual(delivery!.command, ["python3", "workloads/python-delivery/app.py"]);
  assert.deepEqual(delivery!.app, { kind: "port", port: 7424 });
  assert.equal(delivery!.protocol, "http1");
  assert.deepEqual([...delivery!.upstreams], [["inventory", 7434]]);
  assert.equal(ledger!.protocol, "h2c");
  assert.deepEqual([...cashier!.upstreams], [["ledger", 7435]]);
});

test("an app started elsewhere (address), a unix socket, an upstream to a later workload, upper-case env names", () => {
  const w = parseWorkloads(
    `[a]\naddress = "http://127.0.0.1:8080"\nport = 0\nupstreams = { b-api = 0, payment = 0 }\n\n[b-api]\ncommand = ["./b"]\napp_socket = "/run/b.sock"\nport = 7999\n`,
    "w.toml",
    BUILT_IN,
  );
  assert.deepEqual(w.workloads[0]!.app, { kind: "address", address: { kind: "tcp", host: "127.0.0.1", port: 8080 } });
  assert.equal(w.workloads[0]!.command, null);
  assert.deepEqual(w.workloads[1]!.app, { kind: "socket", path: "/run/b.sock" });
  assert.equal(upstreamEnvName("b-api"), "MESH_UPSTREAM_B_API");
});

test("each kind of mistake is refused with its file:line", () => {
  const ok = `command = ["python3", "app.py"]\napp_port = 8001\nport = 7001\n`;
  refused(`[a]\n${ok}port2 = 1\n`, 5, /unknown key "port2" in \[a\]/);
  refused(`[Bad_Name]\n${ok}`, 1, /"Bad_Name" is not a mesh name/);
  refused(`[payment]\n${ok}`, 1, /built-in service/);
  refused(
    `[a]\ncommand = "python3 app.py"\napp_port = 8001\nport = 7001\n`,
    2,
    /a\.command must be a non-empty array of strings/,
  );
  refused(`[a]\ncommand = ["python3", 3]\napp_port = 8001\nport = 7001\n`, 2, /array of strings/);
  refused(`[a]\ncommand = []\napp_port = 8001\nport = 7001\n`, 2, /non-empty array/);
  refused(`[a]\napp_port = 8001\nport = 7001\n`, 1, /needs either "command" .* or "address"/);
  refused(`[a]\n${ok}address = "http://127.0.0.1:1"\n`, 1, /not both/);
  refused(`[a]\ncommand = ["x"]\nport = 7001\n`, 1, /needs either "app_port"/);
  refused(`[a]\naddress = "http://10.0.0.1:80"\nport = 7001\n`, 2, /loopback/);
  refused(
    `[a]\naddress = "http://127.0.0.1:80"\napp_port = 1\nport = 7001\n`,
    3,
    /app_port is for an app mesh:up starts/,
  );
  refused(`[a]\ncommand = ["x"]\napp_port = "8001"\nport = 7001\n`, 3, /a\.app_port must be a port number/);
  refused(`[a]\ncommand = ["x"]\napp_port = 8001\nport = 70000\n`, 4, /a\.port must be a port number/);
  refused(`[a]\ncommand = ["x"]\napp_port = 8001\n`, 1, /needs "port"/);
  refused(`[a]\ncommand = ["x"]\napp_socket = "rel.sock"\nport = 1\n`, 3, /absolute path/);
  refused(`[a]\n${ok}protocol = "grpc"\n`, 5, /"http1" or "h2c"/);
  refused(
    `[a]\n${ok}\n[b]\ncommand = ["y"]\napp_port = 8002\nport = 7001\n`,
    9,
    /b\.port is port 7001, already a\.port/,
  );
  refused(`[a]\n${ok}upstreams = { payment = 8001 }\n`, 5, /a\.upstreams\.payment is port 8001, already a\.app_port/);
  refused(
    `[a]\n${ok}\n[a.upstreams]\npayment = 9001\ndelivery = 9002\n`,
    8,
    /a\.upstreams names "delivery", which is neither a workload in this file nor a built-in service/,
  );
  refused(`[a]\n${ok}upstreams = { a = 9001 }\n`, 5, /does not call itself/);
  refused(`[a]\n${ok}upstreams = ["payment"]\n`, 5, /must be a table/);
  refused(`[a]\n${ok}upstreams = { payment = "x" }\n`, 5, /a\.upstreams\.payment must be a port number/);
  refused(`a = 1\n`, 1, /\[a\] must be a table/);
  refused(`[a]\ncommand = ["x"\n`, 3, /invalid TOML/);
});

test("a duplicate table is a TOML error with its line", () => {
  refused(`[a]\ncommand = ["x"]\napp_port = 8001\nport = 7001\n[a]\nport = 1\n`, 5, /invalid TOML/);
});

test("mesh:up refuses a bad workloads file, or a program that is not there, with file:line and exit 2, before starting anything", {
  timeout: 60_000,
}, async () => {
  const { mkdtempSync, rmSync, writeFileSync, existsSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { spawnSync } = await import("node:child_process");
  const dir = mkdtempSync(join(tmpdir(), "mesh-workloads-file-"));
  try {
    const run = (text: string) => {
      const file = join(dir, "w.toml");
      writeFileSync(file, text);
      return spawnSync(
        process.execPath,
        [
          "--import",
          "tsx",
          "scripts/mesh-up.ts",
          "--workloads",
          file,
          "--pki",
          join(dir, "pki"),
          "--logs",
          join(dir, "logs"),
          "--state",
          join(dir, "state"),
        ],
        { cwd: ROOT, encoding: "utf8", timeout: 50_000 },
      );
    };
    const bad = run(`[a]\ncommand = ["x"]\napp_port = 8001\nport = 7001\nupstreams = { nobody = 1 }\n`);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /^mesh:up: .*w\.toml:5: a\.upstreams names "nobody", which is neither a workload/);
    assert.doesNotMatch(bad.stderr, /\n\s+at /, "no stack trace");
    const missing = run(`[a]\ncommand = ["no-such-program-here", "x"]\napp_port = 8001\nport = 7001\n`);
    assert.equal(missing.status, 2, missing.stderr);
    assert.match(missing.stderr, /w\.toml:1: \[a\] command: no-such-program-here is not on the PATH/);
    assert.equal(existsSync(join(dir, "pki")), false, "no CA was created");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
