// `npm run drill -- impostor` for real: a look-alike CA (same subject, another key) issues
// payment.internal and order.internal; payment refuses its caller and order refuses its server,
// each naming it another CA with the same name; the real payment comes back. Exit 0 only if every
// check held; nothing is left behind, Ctrl-C included. Also `drill --list` and an unknown name.
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { StoryReport } from "../scripts/drill/mesh.ts";
import { parseLine } from "../scripts/mesh-format.ts";
import { checkLeavesNothing, processesMentioning, runDrillCli, secretsBelow } from "./helpers/drill-run.ts";

test("drill --list names every drill with one line each; an unknown name is a one-line error, exit 2", {
  timeout: 60_000,
}, async () => {
  const list = await runDrillCli(["--list"], { tsx: true });
  assert.equal(list.code, 0, list.err);
  const lines = list.out.trim().split("\n");
  assert.deepEqual(
    lines.map((l) => l.split(/\s+/)[0]),
    ["rotate", "expiry", "impostor", "stolen", "policy-mistake", "clock-skew"],
  );
  for (const l of lines) assert.ok(l.length > 40, l);
  const bad = await runDrillCli(["nope"]);
  assert.equal(bad.code, 2);
  assert.equal(bad.err.trim(), 'drill: no drill named "nope": npm run drill -- --list names them');
  const flag = await runDrillCli(["impostor", "--rate", "x"]);
  assert.equal(flag.code, 2);
  assert.doesNotMatch(flag.err, /\n\s+at /);
  // rotate is the rotation drill's own command line underneath.
  const rotate = await runDrillCli(["rotate", "--help"]);
  assert.equal(rotate.code, 0, rotate.err);
  assert.match(rotate.out, /^Usage: drill:rotate \[options\]/);
  assert.match(rotate.out, /--file-mode/);
  for (const r of [list, bad, flag, rotate]) rmSync(r.tmp, { recursive: true, force: true });
});

test("drill impostor: callers and callees refuse the look-alike and say so; the real payment heals; nothing left behind", {
  timeout: 120_000,
}, async () => {
  const r = await runDrillCli(["impostor", "--json", "--dwell", "1000", "--rate", "10"]);
  await checkLeavesNothing(r, async () => {
    assert.equal(r.code, 0, `${r.err}\n${r.out.slice(-3000)}`);
    const report = JSON.parse(r.out) as StoryReport;
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ["baseline", "impostor", "heal", "after"],
    );
    assert.ok(
      report.checks.some((c) => c.name === "payment's refusal counter moved" && c.ok),
      "the metrics a dashboard shows moved",
    );
    assert.ok(report.checks.length >= 7 && report.checks.every((c) => c.ok), JSON.stringify(report.checks));
    // Same name, another key: the report names both keys.
    const keys = report.facts.keys as { trusted: string; impostor: string };
    assert.match(keys.trusted, /^[0-9a-f]{16}$/);
    assert.notEqual(keys.trusted, keys.impostor);

    // The lines a person looks for, in the services' own logs.
    const lines = (f: string) =>
      readFileSync(join(report.logs, f), "utf8")
        .split("\n")
        .map(parseLine)
        .filter((l) => l !== null);
    const callee = lines("payment.log").find(
      (l) =>
        l.event === "tls.handshake_failed" &&
        l.reason === "unknown_ca" &&
        /another CA with the same name/.test(String(l.msg)),
    );
    assert.ok(callee, "payment said the caller's CA is a look-alike");
    assert.match(
      String(callee.msg),
      /chains up to CN=Acme Corp CA, but not to the CN=Acme Corp CA this service trusts \(the signature does not verify against its key\)/,
    );
    const caller = lines("order.log").find(
      (l) =>
        l.event === "upstream.failed" &&
        l.reason === "server_untrusted" &&
        /another CA with the same name/.test(String(l.msg)),
    );
    assert.ok(caller, "order said payment's CA is a look-alike");
    // The orders failed while it served, and none after the real payment came back.
    const broke = report.phases.find((p) => p.name === "impostor")!;
    assert.ok((broke.reasons["502 payment:server_untrusted"] ?? 0) > 0, JSON.stringify(broke.reasons));
    assert.equal(report.phases.find((p) => p.name === "after")!.failed, 0);

    // Nothing left behind: no key (the impostor's included), no process, no state.
    assert.equal(report.stateRemoved, true);
    assert.equal(existsSync(join(report.dir, "..", "impostor-pki")), false);
    return report.dir;
  });
});

test("drill impostor stopped with SIGINT while the impostor serves: everything stopped, no key left, exit 130", {
  timeout: 90_000,
}, async () => {
  const r = await runDrillCli(["impostor", "--dwell", "2000", "--rate", "5"], {
    interrupt: { when: /a process with the impostor's payment\.internal serves/, signal: "SIGINT" },
    tsx: true,
  });
  assert.ok(r.interrupted, r.out + r.err);
  assert.equal(r.code, 130, r.out + r.err);
  assert.match(r.err, /drill impostor: interrupted \(SIGINT\): everything stopped, the temporary CA state removed/);
  assert.doesNotMatch(r.err, /\n\s+at /);
  assert.deepEqual(secretsBelow(r.tmp), []);
  assert.deepEqual(processesMentioning(r.tmp), []);
  rmSync(r.tmp, { recursive: true, force: true });
});
