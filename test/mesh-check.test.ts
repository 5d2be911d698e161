// mesh:check against a real mesh:up in a temporary folder: clean, then a revoked service, its
// fix, a broken trust bundle and its fix, a broken policy edit, and a service gone. In --file-mode:
// its fixes are the CA CLI's (issue, bundle); the online mode's checks are in mesh-up.test.ts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { CertificateAuthority } from "../ca/index.ts";
import { gatherMesh } from "../scripts/check/gather.ts";
import { eventsIn } from "./helpers/events.ts";
import { compiledScript } from "./helpers/compiled.ts";

const ROOT = join(import.meta.dirname, "..");
let tmp: string;
let up: ChildProcess | undefined;

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "mesh-check-"));
});
after(async () => {
  if (up && up.exitCode === null) {
    const gone = new Promise((r) => up!.once("exit", r));
    up.kill("SIGTERM");
    await gone;
  }
  rmSync(tmp, { recursive: true, force: true });
});

function run(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", ...args],
      { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
      },
    );
  });
}

/** node with these arguments (no tsx: compiled code), in the repository. */
function runNode(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
      },
    );
  });
}

// scripts/mesh-check.ts compiled once for this file (helpers/compiled.ts): it runs a dozen times here.
const meshCheck = async (...extra: string[]) =>
  runNode([await compiledScript("mesh-check"), "--logs", join(tmp, "logs"), ...extra]);
// The compiled CLI, as `npm run ca` runs it (bin/ca.mjs): a third of tsx's start-up.
const ca = (...args: string[]) => runNode(["bin/ca.mjs", ...args, "--dir", join(tmp, "pki")]);

interface JsonCheck {
  name: string;
  title: string;
  ok: boolean;
  severity: string;
  detail: string;
  fix: string | null;
}
interface JsonReport {
  ok: boolean;
  checkedAt: string;
  ca: { dir: string; checks: JsonCheck[] };
  services: { name: string; port: number; adminPort: number | null; checks: JsonCheck[] }[];
}

/** The lines of one service's group in the text report. */
function section(out: string, service: string): string {
  const m = new RegExp(`^${service} :\\d+ \\(admin :\\d+\\)\\n-+\\n([\\s\\S]*?)(?=\\n\\n)`, "m").exec(out);
  assert.ok(m, `no section for ${service} in:\n${out}`);
  return m[1]!;
}

async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("mesh:check on a real mesh: clean, revoked and re-issued, broken bundle and re-published, broken policy, a service gone", {
  timeout: 150_000,
}, async () => {
  const policy = join(tmp, "policy.toml");
  copyFileSync(join(ROOT, "mesh-policy.toml"), policy);
  let out = "";
  up = spawn(
    process.execPath,
    [
      await compiledScript("mesh-up"),
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
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } },
  );
  up.stdout!.on("data", (c: Buffer) => (out += c));
  up.stderr!.on("data", (c: Buffer) => (out += c));
  const stateFile = join(tmp, "logs", "mesh.json");
  await waitFor(() => existsSync(stateFile) && /Ctrl-C stops everything/.test(out), 40_000, "mesh:up to be ready");
  assert.match(out, /npm run mesh:check/);
  const state = JSON.parse(readFileSync(stateFile, "utf8")) as {
    ports: Record<string, number>;
    adminPorts: Record<string, number>;
    pids: Record<string, number>;
  };
  for (const s of ["order", "payment", "inventory"]) {
    assert.ok(state.adminPorts[s]! > 0, `mesh.json records ${s}'s admin port`);
    assert.notEqual(state.adminPorts[s], state.ports[s]);
  }

  // 1. Clean: exit 0 and every check line is ✓. The text report and --json side by side.
  const [clean, json] = await Promise.all([meshCheck(), meshCheck("--json")]);
  assert.equal(clean.code, 0, clean.out);
  const marks = clean.out.split("\n").filter((l) => /^[✓‼×] /.test(l));
  // The CA: its root, its issuing intermediate, its CRLs; then eight checks per service; then
  // mesh:up's supervision: itself, and each part it runs (file mode: no CA server).
  assert.equal(marks.length, 3 + 3 * 8 + 5, clean.out);
  for (const l of marks) assert.match(l, /^✓ /);
  assert.match(
    section(clean.out, "payment"),
    /^✓ certificate is valid: serial [0-9a-f]+, valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in 89 days\), from Mesh Dev Issuing CA, generation 1$/m,
  );
  assert.match(clean.out, /Status check results are ✓: 32 checks/);
  assert.match(
    clean.out,
    /^mesh:up \(restarts\)\n-+\n✓ mesh:up supervises the mesh: mesh:up runs \(pid \d+\) and restarts any part that dies\n(✓ (payment|inventory|order|dashboard) keeps running: never restarted\n){4}/m,
  );
  // As a caller the policy allows where there is one, so checking leaves no denial in the logs; edge's 403 where there is none.
  assert.match(
    section(clean.out, "payment"),
    /^✓ answers over mTLS: handshake as order\.internal on 127\.0\.0\.1:\d+, GET \/healthz: 200$/m,
  );
  assert.match(
    section(clean.out, "order"),
    /^✓ answers over mTLS: handshake as edge\.internal on 127\.0\.0\.1:\d+, GET \/healthz: 403 \(order\.accepts: /m,
  );
  for (const s of ["payment", "inventory"])
    assert.equal(eventsIn(readFileSync(join(tmp, "logs", `${s}.log`), "utf8"), "authz.denied").length, 0, s);

  // --json: the stable shape, the same verdicts.
  assert.equal(json.code, 0, json.out);
  const report = JSON.parse(json.out) as JsonReport;
  assert.deepEqual(Object.keys(report), ["ok", "checkedAt", "ca", "services", "supervisor"]);
  assert.equal(report.ok, true);
  assert.deepEqual(
    report.services.map((s) => [s.name, s.port, s.adminPort]),
    ["order", "payment", "inventory"].map((s) => [s, state.ports[s], state.adminPorts[s]]),
  );
  for (const c of [...report.ca.checks, ...report.services.flatMap((s) => s.checks)]) {
    assert.deepEqual(Object.keys(c), ["name", "title", "ok", "severity", "detail", "fix"]);
    assert.deepEqual([c.ok, c.severity, c.fix], [true, "ok", null], c.name);
  }
  assert.deepEqual(
    report.services[0]!.checks.map((c) => c.name),
    ["mtls", "admin", "certificate", "renewal", "trust-bundle", "crls", "policy", "clock"],
  );

  // 2. Revoke inventory: exit 1, inventory's certificate ×, with why and the fix; the others still ✓.
  // The certificate check reads the CA's files at once; inventory's /healthz judges by the CRLs
  // it holds, loaded within a second of the file's change: wait for that load (tls.reloaded), or
  // a compiled mesh:check can ask before it.
  const inventoryLog = join(tmp, "logs", "inventory.log");
  const reloads = () => eventsIn(readFileSync(inventoryLog, "utf8"), "tls.reloaded").length;
  const reloadsBefore = reloads();
  const revoke = await ca("revoke", "--domain", "inventory.internal");
  assert.equal(revoke.code, 0, revoke.out);
  await waitFor(() => reloads() > reloadsBefore, 10_000, "inventory to load the CRL that revokes it");
  const [revoked, revokedJsonRun] = await Promise.all([meshCheck(), meshCheck("--json")]);
  assert.equal(revoked.code, 1, revoked.out);
  assert.match(
    section(revoked.out, "inventory"),
    /^× certificate is valid\n {4}inventory serves a revoked certificate \(serial [0-9a-f]+, revoked .* UTC, reason unspecified\): every peer refuses it in the handshake.*\n {4}fix: npm run ca -- issue --domain inventory\.internal --dir \S+pki$/m,
  );
  // Its admin port's /healthz says so too: a service serving a revoked certificate is not healthy.
  assert.match(
    section(revoked.out, "inventory"),
    /^× admin port answers\n {4}http:\/\/127\.0\.0\.1:\d+\/healthz answered 503: inventory: its certificate \(CN=inventory\.internal, serial [0-9a-f]+\) is revoked by the CRLs it holds: every peer refuses it; it needs a new identity \(the certificate check says what to do\)$/m,
  );
  for (const s of ["order", "payment"]) assert.doesNotMatch(section(revoked.out, s), /^×/m);
  assert.match(revoked.out, /Status check results are ×: 2 failed/);
  const revokedJson = JSON.parse(revokedJsonRun.out) as JsonReport;
  const failed = revokedJson.services.flatMap((s) => s.checks.filter((c) => !c.ok).map((c) => `${s.name}/${c.name}`));
  assert.deepEqual(failed, ["inventory/admin", "inventory/certificate"]);
  assert.equal(revokedJson.ok, false);

  // The fix it names works: inventory loads its fresh certificate and the report is clean again.
  const fix = await ca("issue", "--domain", "inventory.internal");
  assert.equal(fix.code, 0, fix.out);
  await waitFor(async () => (await meshCheck()).code === 0, 10_000, "mesh:check to pass after the re-issue");

  // A report taken the moment the CA re-issues waits for the service to load it (about a second), rather than a false ×.
  assert.equal((await ca("revoke", "--domain", "inventory.internal")).code, 0);
  await waitFor(async () => (await meshCheck()).code === 1, 10_000, "inventory's revocation to show");
  const authority = await CertificateAuthority.open({ dir: join(tmp, "pki") });
  const reissued = await authority.issue({ domain: "inventory.internal" });
  authority.close();
  const facts = await gatherMesh({
    targets: ["order", "payment", "inventory"].map((n) => ({
      name: n,
      port: state.ports[n]!,
      adminPort: state.adminPorts[n]!,
    })),
    pki: join(tmp, "pki"),
    policyFile: policy,
  });
  const inv = facts.services.find((x) => x.name === "inventory")!;
  assert.equal(inv.mtls.served?.serial, reissued.serial);
  assert.equal(inv.ledger?.status, "VALID");

  // 3. A broken bundle.pem: every service keeps the bundle it had, which is no longer the file: ×, and `ca bundle` fixes it.
  const bundle = join(tmp, "pki", "bundle.pem");
  writeFileSync(bundle, readFileSync(bundle, "utf8").replace(/\n[A-Za-z0-9+/]{20}/, "\n!!!!"));
  const stale = await meshCheck();
  assert.equal(stale.code, 1, stale.out);
  for (const s of ["order", "payment", "inventory"]) {
    assert.match(
      section(stale.out, s),
      new RegExp(
        `^× holds the CA's current trust bundle\\n {4}${s} holds a trust bundle \\(sha256 [0-9a-f]{12}…\\) other than the one the CA publishes in .*bundle\\.pem.*\\n {4}fix: npm run ca -- bundle --dir \\S+pki$`,
        "m",
      ),
    );
  }
  assert.equal((await ca("bundle")).code, 0);
  await waitFor(async () => (await meshCheck()).code === 0, 10_000, "mesh:check to pass after ca bundle");

  // 4. A broken policy edit: the services keep the old policy, which is not the file on disk: × naming file:line.
  writeFileSync(policy, `${readFileSync(policy, "utf8")}\n[payment]\nacepts = []\n`);
  const bad = await meshCheck();
  assert.equal(bad.code, 1, bad.out);
  for (const s of ["order", "payment", "inventory"]) {
    assert.match(
      section(bad.out, s),
      new RegExp(
        `^× policy is the file on disk\\n {4}.*policy\\.toml on disk does not load \\(.*policy\\.toml:\\d+(:\\d+)?: .*\\), so ${s} keeps its previous policy.*\\n {4}fix: npm run mesh:logs -- --service ${s} --event policy\\.reload_failed --no-follow$`,
        "m",
      ),
    );
  }

  // A valid edit is taken up, and mesh_policy_info follows it: clean again.
  writeFileSync(policy, `${readFileSync(join(ROOT, "mesh-policy.toml"), "utf8")}\n# edited by the test\n`);
  await waitFor(async () => (await meshCheck()).code === 0, 10_000, "mesh:check to pass after a valid policy edit");

  // 5. A service gone (mesh:up stopped; one merely killed is restarted: mesh-up-supervise.test.ts): × "nothing listens", fix mesh:up.
  up!.kill("SIGTERM");
  await new Promise((r) => up!.once("exit", r));
  const gone = await meshCheck();
  assert.equal(gone.code, 1, gone.out);
  assert.match(
    section(gone.out, "inventory"),
    /^× answers over mTLS\n {4}nothing listens on 127\.0\.0\.1:\d+: inventory is not running\n {4}fix: npm run mesh:up$/m,
  );
});

test("mesh:check with no mesh to check: one line, exit 2", async () => {
  // A mesh.json whose CA folder is gone, for the second run; the three runs side by side.
  const logs = join(tmp, "stale-logs");
  mkdirSync(logs);
  writeFileSync(
    join(logs, "mesh.json"),
    JSON.stringify({ pki: join(tmp, "no-pki"), ports: { order: 1, payment: 2, inventory: 3 } }),
  );
  const [r, noCa, flag] = await Promise.all([
    run(["scripts/mesh-check.ts", "--logs", join(tmp, "nowhere")]),
    run(["scripts/mesh-check.ts", "--logs", logs]),
    run(["scripts/mesh-check.ts", "--bogus"]),
  ]);
  assert.equal(r.code, 2);
  assert.match(
    r.out,
    /^mesh:check: no .*nowhere\/mesh\.json with the services' ports: is the mesh up\? \(npm run mesh:up\), or pass --logs\n$/,
  );
  // A mesh.json whose CA folder is gone: one line naming it, exit 2, nothing created there.
  assert.equal(noCa.code, 2);
  assert.match(noCa.out, /^mesh:check: no CA in .*no-pki: is the mesh up\? \(npm run mesh:up\), or pass --pki\n$/);
  assert.equal(existsSync(join(tmp, "no-pki")), false);
  assert.equal(flag.code, 2);
  assert.doesNotMatch(flag.out, /\n\s+at /);
});
