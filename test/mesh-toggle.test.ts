// npm run mesh:toggle against one real mesh:up (online, certificates of 20 s so the identity agent
// renews while toggles are on): each of the seven toggles is flipped, the refusal it causes is seen
// on the peer's side (its log line) and in mesh:probe's class, and the restore brings every call
// back with the very identity the service holds. Bad input: one line and a non-zero exit.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHIPPED_POLICY_FILE } from "./mesh-fixtures.ts";
import { compiledScript, type Script } from "./helpers/compiled.ts";

const ROOT = join(import.meta.dirname, "..");
let tmp: string;
let logs: string;
let state: string;
let up: ChildProcess | undefined;
let upOut = "";

interface Cell {
  caller: string;
  callee: string;
  observed: string;
  expected: string;
  ok: boolean;
}
interface Line {
  service: string;
  event: string;
  reason: string | null;
  msg: string;
}
interface Report {
  serial: string;
  presented: { serial: string; subject: string } | null;
  probe: Cell[];
  order: { status: number | null; outcome: string } | null;
  lines: Line[];
  health: { status: number; body: string } | null;
  dashboard: { identity: { serial: string; status: string } | null; toggle: string | null; edges: string[] } | null;
  exact?: boolean;
}

function toggle(args: string[], logDir = logs): Promise<{ code: number; out: string; err: string }> {
  return run("mesh-toggle", ["--logs", logDir, ...args]);
}

/** scripts/<script>.ts, compiled once for this file (helpers/compiled.ts): it runs ~25 times here. */
async function run(script: Script, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const js = await compiledScript(script);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [js, ...args],
      { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, timeout: 120_000 },
      (e, stdout, stderr) =>
        resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    );
  });
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}\n${upOut.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const events = (service: string) =>
  existsSync(join(logs, `${service}.log`))
    ? readFileSync(join(logs, `${service}.log`), "utf8")
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown> & { event: string; time: string })
    : [];

const cell = (r: Report, caller: string, callee: string) =>
  r.probe.find((c) => c.caller === caller && c.callee === callee)?.observed;
const line = (r: Report, service: string, event: string, reason: string) =>
  r.lines.find((l) => l.service === service && l.event === event && l.reason === reason);

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mesh-toggle-"));
  logs = join(tmp, "logs");
  state = join(tmp, "state");
  // edge may place orders, so a real order goes edge → order → inventory, payment.
  const policy = join(tmp, "policy.toml");
  writeFileSync(
    policy,
    readFileSync(SHIPPED_POLICY_FILE, "utf8").replace(/\[order\]\naccepts = \[[^\]]*\]/, '[order]\naccepts = ["edge"]'),
  );
  assert.match(readFileSync(policy, "utf8"), /\[order\]\naccepts = \["edge"\]/);
  up = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "scripts/mesh-up.ts",
      ...["--pki", join(tmp, "pki"), "--state", state, "--logs", logs, "--policy", policy],
      ...["--order-port", "0", "--payment-port", "0", "--inventory-port", "0", "--ca-port", "0"],
      ...["--dashboard-port", "0", "--lifetime", "20s", "--poll", "5", "--quiet"],
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } },
  );
  up.stdout!.on("data", (c: Buffer) => (upOut += c));
  up.stderr!.on("data", (c: Buffer) => (upOut += c));
  await waitFor(
    () => existsSync(join(logs, "mesh.json")) && /Ctrl-C stops everything/.test(upOut),
    90_000,
    "mesh:up to be ready",
  );
});

after(async () => {
  if (up && up.exitCode === null && up.signalCode === null) {
    const gone = new Promise((r) => up!.once("exit", r));
    up.kill("SIGTERM");
    await gone;
  }
  rmSync(tmp, { recursive: true, force: true });
});

test("bad input: one line on stderr and a non-zero exit, before anything is touched", async () => {
  const cases: Array<[string[], number, RegExp]> = [
    [["payment", "sideways"], 2, /"sideways" is not a toggle: use one of expired, not-yet-valid, foreign-ca/],
    [["payment"], 2, /name a kind for payment/],
    [["payment", "--restore", "expired"], 2, /--restore takes no kind/],
    [
      ["billing", "expired"],
      2,
      /"billing" is not a service of this mesh: toggle one of (order|payment|inventory), (order|payment|inventory), (order|payment|inventory)$/m,
    ],
    [["edge", "expired"], 2, /edge is mesh:up's own client identity and serves nothing/],
    [["Pay ment", "expired"], 2, /is not a service name/],
    [["payment", "expired"], 3, /no mesh is running: .*mesh\.json does not exist \(start one: npm run mesh:up\)/],
  ];
  const empty = join(tmp, "no-mesh-logs");
  const results = await Promise.all(cases.map(([args, code]) => toggle(args, code === 3 ? empty : logs)));
  for (const [i, [args, code, msg]] of cases.entries()) {
    const r = results[i]!;
    assert.equal(r.code, code, `${args.join(" ")}: ${r.err}`);
    assert.match(r.err, msg);
    assert.equal(r.err.trim().split("\n").length, 1, `one line: ${r.err}`);
    assert.doesNotMatch(r.err, /at .*\.ts:\d+/, "no stack trace");
  }
  for (const s of ["order", "payment", "inventory"]) assert.equal(existsSync(join(state, s, "toggle")), false);
  const list = await toggle(["--list"]);
  assert.equal(list.code, 0);
  assert.equal(list.out.trim().split("\n").length, 7, list.out);
});

// Each toggle: the service it is flipped on, what its peers log, and what mesh:probe shows.
const CASES: Array<{
  kind: string;
  service: string;
  check: (r: Report) => void;
  also?: () => Promise<void>;
}> = [
  {
    kind: "expired",
    service: "payment",
    check: (r) => {
      assert.equal(cell(r, "order", "payment"), "refused: server_cert_expired");
      assert.equal(cell(r, "payment", "inventory"), "refused: expired");
      assert.ok(line(r, "order", "upstream.failed", "server_cert_expired"), "order, the caller, says why");
      assert.ok(line(r, "inventory", "tls.handshake_failed", "expired"), "inventory, the callee, says why");
      assert.match(r.order!.outcome, /server_cert_expired/);
      assert.equal(r.health?.status, 503);
      assert.equal(r.dashboard?.identity?.status, "expired");
    },
  },
  {
    kind: "not-yet-valid",
    service: "payment",
    check: (r) => {
      assert.equal(cell(r, "order", "payment"), "refused: server_cert_not_yet_valid");
      assert.equal(cell(r, "payment", "inventory"), "refused: not_yet_valid");
      assert.match(line(r, "order", "upstream.failed", "server_cert_not_yet_valid")!.msg, /clock/);
      assert.ok(line(r, "inventory", "tls.handshake_failed", "not_yet_valid"));
      assert.equal(r.health?.status, 503);
    },
  },
  {
    kind: "foreign-ca",
    service: "payment",
    check: (r) => {
      assert.equal(cell(r, "order", "payment"), "refused: server_untrusted");
      assert.equal(cell(r, "payment", "inventory"), "refused: unknown_ca");
      assert.match(line(r, "order", "upstream.failed", "server_untrusted")!.msg, /Foreign Teaching CA/);
      assert.match(line(r, "inventory", "tls.handshake_failed", "unknown_ca")!.msg, /Foreign Teaching CA/);
    },
  },
  {
    kind: "revoked",
    service: "payment",
    check: (r) => {
      assert.equal(cell(r, "order", "payment"), "refused: server_revoked");
      assert.equal(cell(r, "payment", "inventory"), "refused: revoked");
      assert.ok(line(r, "order", "upstream.failed", "server_revoked"));
      assert.ok(line(r, "inventory", "tls.handshake_failed", "revoked"));
      assert.equal(r.dashboard?.identity?.status, "revoked");
    },
    // mesh:check names the toggle, and its fix is the restore (not a new certificate).
    also: async () => {
      const check = await run("mesh-check", ["--logs", logs]);
      assert.equal(check.code, 1, check.out);
      assert.match(check.out, /× presents its own identity\n\s+payment presents a teaching toggle \(revoked, serial/);
      assert.match(check.out, /fix: npm run mesh:toggle -- payment --restore/);
    },
  },
  {
    kind: "no-client-auth",
    service: "order",
    check: (r) => {
      assert.equal(cell(r, "order", "inventory"), "refused: bad_certificate");
      assert.equal(cell(r, "edge", "order"), "200", "as a server it still works");
      assert.match(
        line(r, "inventory", "tls.handshake_failed", "bad_certificate")!.msg,
        /may not be used for client authentication/,
      );
      assert.ok(line(r, "order", "upstream.failed", "rejected_in_handshake"), "order, the caller, was refused");
      assert.equal(r.order?.status, 502);
    },
  },
  {
    kind: "other-name",
    service: "order",
    check: (r) => {
      assert.match(r.presented!.subject, /CN=payment\.internal/);
      assert.equal(cell(r, "edge", "order"), "refused: server_name_mismatch");
      assert.equal(cell(r, "order", "inventory"), "403 inventory.accepts", "taken for payment, it is denied");
      assert.ok(
        r.lines.find((l) => l.service === "inventory" && l.event === "authz.denied" && /payment/.test(l.msg)),
        JSON.stringify(r.lines),
      );
      assert.match(r.order!.outcome, /server_name_mismatch/);
    },
  },
  {
    kind: "two-spiffe-ids",
    service: "payment",
    check: (r) => {
      assert.equal(cell(r, "order", "payment"), "refused: server_name_mismatch");
      assert.equal(cell(r, "payment", "inventory"), "refused: spiffe_ambiguous");
      assert.match(line(r, "order", "upstream.failed", "server_name_mismatch")!.msg, /spiffe_ambiguous/);
      assert.match(line(r, "inventory", "tls.handshake_failed", "spiffe_ambiguous")!.msg, /2 URI SANs/);
    },
  },
];

for (const c of CASES) {
  test(`${c.kind} on ${c.service}: refused on the peer's side and in the probe; the restore brings the calls back`, {
    timeout: 120_000,
  }, async () => {
    const flip = await toggle([c.service, c.kind, "--json"]);
    assert.equal(flip.code, 0, flip.err);
    const r = JSON.parse(flip.out) as Report;
    assert.equal(r.presented?.serial, r.serial, "the service presents the toggle in a real handshake");
    assert.equal(r.dashboard?.toggle, c.kind, "the dashboard's card says which toggle");
    assert.equal(r.dashboard?.identity?.serial, r.serial, "and shows the identity presented");
    c.check(r);
    await c.also?.();
    const dir = join(state, c.service, "toggle");
    assert.equal(statSync(join(dir, "key.pem")).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);

    if (c.kind === "expired") {
      // Renewal while toggled: the agent renews the identity it holds, and the toggle stays in force.
      const since = Date.now();
      await waitFor(
        () => events(c.service).some((l) => l.event === "identity.renewed" && Date.parse(l.time) >= since),
        40_000,
        `${c.service} to renew while toggled`,
      );
      const still = await toggle(["--status", "--json"]);
      assert.equal(
        (JSON.parse(still.out) as Array<{ service: string; toggle: { kind: string } | null }>).find(
          (s) => s.service === c.service,
        )?.toggle?.kind,
        "expired",
      );
      assert.equal(
        events(c.service).some((l) => l.event === "toggle.off" && Date.parse(l.time) >= since),
        false,
        "the renewal did not take the toggle away",
      );
    }

    const back = await toggle([c.service, "--restore", "--json"]);
    assert.equal(back.code, 0, back.err);
    const b = JSON.parse(back.out) as Report;
    // The identity it holds: one the agent enrolled or renewed (the agent renews every ~13 s here).
    const held = events(c.service)
      .filter((l) => l.event === "identity.enrolled" || l.event === "identity.renewed")
      .map((l) =>
        String(l.serial)
          .toLowerCase()
          .replace(/^0+(?=.)/, ""),
      );
    assert.equal(b.exact, true);
    assert.equal(b.presented?.serial, b.serial, "it presents the identity it holds again");
    assert.ok(held.includes(b.serial), `${b.serial} is one of ${c.service}'s own: ${held.join(", ")}`);
    for (const x of b.probe)
      assert.ok(x.ok, `after the restore ${x.caller} → ${x.callee}: ${x.observed}, not ${x.expected}`);
    assert.equal(cell(b, c.service === "order" ? "edge" : "order", c.service), "200");
    assert.equal(b.order?.status, 201, b.order?.outcome);
    assert.equal(b.health?.status, 200);
    assert.equal(b.dashboard?.toggle, null);
    assert.ok(held.includes(b.dashboard?.identity?.serial ?? ""), "the dashboard shows its own identity again");
    assert.equal(existsSync(dir), false);
    assert.deepEqual(
      readdirSync(join(state, c.service)).filter((f) => f.startsWith(".toggle") || f.startsWith("toggle")),
      [],
      "nothing left beside the identity",
    );
  });
}

test("a restore with no toggle on says so; a stopped mesh is no mesh", async () => {
  const r = await toggle(["inventory", "--restore"]);
  assert.equal(r.code, 0);
  assert.match(r.out, /inventory has no toggle on: it presents its own identity/);
  const gone = new Promise((res) => up!.once("exit", res));
  up!.kill("SIGTERM");
  await gone;
  const after = await toggle(["payment", "expired"]);
  assert.equal(after.code, 3, after.err);
  assert.match(after.err, /^mesh:toggle: no mesh is running/);
  assert.equal(existsSync(join(state, "payment", "toggle")), false, "nothing was installed");
});
