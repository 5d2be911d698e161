// mesh:up with a policy that has a tests file and an audited rule: it says at start which
// rules audit; a later edit that breaks an expectation (the services reload it on their own)
// is a warning on the console and a policy.test_failed line in mesh-up.log.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ev } from "./helpers/events.ts";

const ROOT = join(import.meta.dirname, "..");
const tmp = mkdtempSync(join(tmpdir(), "mesh-up-policy-tests-"));
let up: ChildProcess | undefined;

after(async () => {
  if (up && up.exitCode === null) {
    const exited = new Promise((r) => up!.once("exit", r));
    up.kill("SIGINT");
    await exited;
  }
  rmSync(tmp, { recursive: true, force: true });
});

async function waitFor(cond: () => boolean, ms: number, what: string, out: () => string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}; mesh:up printed:\n${out().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const POLICY = `[payment]
accepts = ["order"]

[inventory]
accepts = ["order"]

[[inventory.routes]]
method = "GET"
path = "/stock/:sku"
accepts = ["order"]
mode = "audit"

[order]
accepts = ["edge"]
`;

test("mesh:up names the audited rules at start, and warns when a reloaded policy fails its tests", {
  timeout: 150_000,
}, async () => {
  const policy = join(tmp, "policy.toml");
  writeFileSync(policy, POLICY);
  writeFileSync(
    join(tmp, "policy.tests.toml"),
    `[[test]]\ncaller = "order"\nservice = "payment"\nmethod = "POST"\npath = "/charge"\nexpect = "allow"\n\n[[test]]\ncaller = "payment"\nservice = "inventory"\npath = "/stock/widget"\nexpect = "would_deny"\n`,
  );
  let out = "";
  up = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "scripts/mesh-up.ts",
      "--pki",
      join(tmp, "pki"),
      "--logs",
      join(tmp, "logs"),
      "--policy",
      policy,
      "--order-port",
      "0",
      "--payment-port",
      "0",
      "--inventory-port",
      "0",
      "--file-mode",
      "--dashboard-port",
      "0",
      "--quiet",
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1", MESH_POLICY: "" } },
  );
  up.stdout!.on("data", (c: Buffer) => (out += c));
  up.stderr!.on("data", (c: Buffer) => (out += c));
  await waitFor(
    () => existsSync(join(tmp, "logs", "mesh.json")) && /Ctrl-C stops everything/.test(out),
    60_000,
    "mesh:up to be ready",
    () => out,
  );
  assert.match(
    out,
    new RegExp(
      `^warning: ${policy.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} has rules in audit mode \\(inventory\\.routes\\[0\\]\\): they let through the calls they would deny`,
      "m",
    ),
  );
  assert.doesNotMatch(out, /policy test failed/);

  // Enforced, payment's GET /stock/widget is denied: the second expectation no longer holds.
  writeFileSync(policy, POLICY.replace(`mode = "audit"\n`, ""));
  await waitFor(
    () => /^warning: policy test failed: /m.test(out),
    30_000,
    "the policy test warning",
    () => out,
  );
  assert.match(
    out,
    new RegExp(
      `^warning: policy test failed: ${join(tmp, "policy.tests.toml").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:8: expected payment → inventory GET /stock/widget to be let through in audit mode \\(would be denied\\), but it is denied by inventory\\.routes\\[0\\] \\(GET /stock/:sku\\)`,
      "m",
    ),
  );
  const logged = readFileSync(join(tmp, "logs", "mesh-up.log"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { event?: string; msg?: string });
  const line = logged.find(ev("policy.test_failed"));
  assert.ok(line, "a policy.test_failed line in mesh-up.log");
  assert.match(String(line.msg), /policy\.tests\.toml:8: expected payment → inventory/);
  // Still running: a warning, not a stop.
  assert.equal(up.exitCode, null);
});
