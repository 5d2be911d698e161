// mesh:up as a real process: it prepares the CA, starts the three services, the probe
// agrees with the policy, curl works, and SIGTERM leaves no process behind.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { SHIPPED_POLICY_FILE } from "./mesh-fixtures.ts";

const ROOT = join(import.meta.dirname, "..");
let tmp: string;

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "mesh-up-"));
});
// A failed assertion must not leave a mesh running (the test process would wait for it forever).
const started: ChildProcess[] = [];
after(() => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
  rmSync(tmp, { recursive: true, force: true });
});

interface Up {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

function meshUp(extra: string[] = []): Up {
  const proc = spawn(process.execPath, ["--import", "tsx", "scripts/mesh-up.ts", "--pki", join(tmp, "pki"), "--logs", join(tmp, "logs"), "--order-port", "0", "--payment-port", "0", "--inventory-port", "0", "--quiet", "--policy", SHIPPED_POLICY_FILE, ...extra], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  started.push(proc);
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c));
  proc.stderr!.on("data", (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  return { proc, out: () => out, exited };
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("mesh:up from nothing, probed, curled, stopped with SIGTERM; a second run reissues nothing", { timeout: 90_000 }, async () => {
  const up = meshUp();
  const stateFile = join(tmp, "logs", "mesh.json");
  await waitFor(() => existsSync(stateFile) && /Ctrl-C stops everything/.test(up.out()), 30_000, "mesh:up to be ready");
  const state = JSON.parse(readFileSync(stateFile, "utf8")) as { ports: Record<string, number>; pids: Record<string, number> };
  assert.match(up.out(), /created the CA/);
  assert.equal((up.out().match(/^issued /gm) ?? []).length, 4);
  for (const s of ["order", "payment", "inventory"]) assert.ok(state.ports[s]! > 0);

  // What payment sends in the handshake: its leaf and the issuing intermediate, never the root.
  const shown = await run("sh", ["-c", `openssl s_client -connect 127.0.0.1:${state.ports.payment} -servername payment.internal -showcerts </dev/null`]);
  const sent = [...shown.out.matchAll(/^ *\d+ s:(.*)$/gm)].map((m) => m[1]!.trim());
  assert.deepEqual(sent, ["CN = payment.internal", "CN = Mesh Dev Issuing CA"], shown.out);
  const probe = await run(process.execPath, ["--import", "tsx", "scripts/mesh-probe.ts", "--logs", join(tmp, "logs")]);
  assert.equal(probe.code, 0, probe.out);
  assert.match(probe.out, /the mesh does what the policy says/);
  assert.match(probe.out, /refused: unknown_ca/);

  // A policy the mesh is not running: the probe reports the difference and exits 1.
  const other = join(tmp, "other-policy.toml");
  writeFileSync(other, `[payment]\naccepts = ["order", "inventory"]\n[inventory]\naccepts = ["order"]\n[order]\naccepts = []\n`);
  const diff = await run(process.execPath, ["--import", "tsx", "scripts/mesh-probe.ts", "--logs", join(tmp, "logs"), "--policy", other]);
  assert.equal(diff.code, 1, diff.out);
  assert.match(diff.out, /mismatch: inventory -> payment: the policy says 200, the mesh did 403 payment\.accepts/);

  // The three commands the banner prints, run for real.
  const lines = up.out().split("\n").filter((l) => l.trim().startsWith("curl "));
  assert.equal(lines.length, 3);
  for (const l of lines) assert.doesNotMatch(l, / -k\b|--insecure/);
  const argv = (l: string) => l.trim().slice(5).match(/'[^']*'|\S+/g)!.map((a) => a.replace(/^'|'$/g, "").replace(/^pki\//, "").replace(/ pki\//g, ""));
  const fix = (a: string[]) => a.map((x) => (/^(bundle\.pem|certs\/)/.test(x) ? join(tmp, "pki", x) : x));
  const [ok, denied, refused] = await Promise.all(lines.map((l) => run("curl", ["-sS", "--max-time", "5", "-w", "\n%{http_code}", ...fix(argv(l))])));
  assert.equal(ok!.code, 0, ok!.out);
  assert.match(ok!.out, /"status":"captured"[\s\S]*\n201$/);
  assert.match(denied!.out, /"error":"forbidden","caller":"inventory"[\s\S]*\n403$/);
  assert.notEqual(refused!.code, 0);
  const payLog = readFileSync(join(tmp, "logs", "payment.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { event: string; reason?: string });
  assert.ok(payLog.some((l) => l.event === "tls.handshake_failed" && l.reason === "no_client_cert"));
  assert.ok(payLog.some((l) => l.event === "authz.denied"));

  up.proc.kill("SIGTERM");
  assert.equal(await up.exited, 0);
  for (const pid of Object.values(state.pids)) assert.equal(alive(pid), false, `service pid ${pid} still running`);

  const again = meshUp();
  await waitFor(() => /Ctrl-C stops everything/.test(again.out()), 30_000, "second mesh:up");
  assert.equal((again.out().match(/^kept /gm) ?? []).length, 4, again.out());
  assert.doesNotMatch(again.out(), /^(issued|renewed) /m);
  const state2 = JSON.parse(readFileSync(stateFile, "utf8")) as { pids: Record<string, number> };
  again.proc.kill("SIGINT");
  assert.equal(await again.exited, 0);
  for (const pid of Object.values(state2.pids)) assert.equal(alive(pid), false);
});

test("mesh:up refuses a broken policy with file:line, no stack trace, exit 2", async () => {
  const bad = join(tmp, "bad.toml");
  writeFileSync(bad, `[payment]\naccepts = ["order"]\nacepts = []\n`);
  const r = await run(process.execPath, ["--import", "tsx", "scripts/mesh-up.ts", "--pki", join(tmp, "pki2"), "--policy", bad]);
  assert.equal(r.code, 2);
  assert.match(r.out, /^mesh:up: .*bad\.toml:3: unknown key "acepts" in \[payment\]/);
  assert.equal(r.out.trim().split("\n").length, 1);
  assert.equal(existsSync(join(tmp, "pki2")), false, "nothing was created");
});

test("killed outright (SIGKILL, or npm killed under it), mesh:up still leaves no service behind", { timeout: 60_000 }, async () => {
  const up = meshUp(["--logs", join(tmp, "logs3")]);
  const stateFile = join(tmp, "logs3", "mesh.json");
  await waitFor(() => existsSync(stateFile) && /Ctrl-C stops everything/.test(up.out()), 30_000, "mesh:up to be ready");
  const { pids } = JSON.parse(readFileSync(stateFile, "utf8")) as { pids: Record<string, number> };
  assert.equal(Object.values(pids).filter(alive).length, 3);
  up.proc.kill("SIGKILL");
  await up.exited;
  // Each service notices its launcher is gone (it was re-parented) within a second or so.
  await waitFor(() => Object.values(pids).every((pid) => !alive(pid)), 10_000, "the orphaned services to exit");
});
