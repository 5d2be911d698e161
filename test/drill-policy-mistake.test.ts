// `npm run drill -- policy-mistake` for real: a candidate that drops order from payment's rule goes
// through what-if (exit 1, the break predicted) and audit mode (authz.would_deny with the rule and
// the fix, nothing denied), then is enforced (403s naming the rule and the fix on both sides) and
// reverted by hot reload. Exit 0 only if every check held; nothing left behind. And a run whose
// story does not happen (a harmless candidate) is a failed drill.
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { DRILL_POLICY } from "../scripts/drill/drill.ts";
import type { StoryReport } from "../scripts/drill/mesh.ts";
import { runPolicyMistakeDrill } from "../scripts/drill/policy-mistake.ts";
import { checkLeavesNothing, runDrillCli, logLines as lines } from "./helpers/drill-run.ts";
import { ev } from "./helpers/events.ts";

test("drill policy-mistake: what-if predicts it, audit logs it and denies nothing, enforced 403s name rule and fix, revert heals", {
  timeout: 120_000,
}, async () => {
  const r = await runDrillCli(["policy-mistake", "--json", "--dwell", "500", "--rate", "20"]);
  await checkLeavesNothing(r, async () => {
    assert.equal(r.code, 0, `${r.err}\n${r.out.slice(-4000)}`);
    const report = JSON.parse(r.out) as StoryReport;
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ["baseline", "what-if", "audit", "enforce", "revert", "after"],
    );
    assert.ok(report.checks.length >= 14 && report.checks.every((c) => c.ok), JSON.stringify(report.checks));
    // what-if, run as a user runs it, exited 1 and named the call; enforcement then denied exactly that.
    const wi = report.facts.whatIf as { exitCode: number; changes: Array<{ caller: string; rule: string }> };
    assert.equal(wi.exitCode, 1);
    assert.ok(wi.changes.some((c) => c.caller === "order" && c.rule === "payment.accepts"));
    assert.deepEqual(
      [...(report.facts.predicted as string[])].sort(),
      [...(report.facts.deniedWhenEnforced as string[])].sort(),
    );
    assert.ok((report.facts.predicted as string[]).includes("order → payment POST /charge"));

    // The lines a person looks for, in the services' own logs, in the right phases.
    const phaseAt = (name: string) => Date.parse(report.phases.find((p) => p.name === name)!.startedAt);
    const payment = lines(report.logs, "payment.log");
    const wouldDeny = payment.filter(ev("authz.would_deny"));
    assert.ok(wouldDeny.length > 0, "audit mode logged authz.would_deny");
    assert.equal(wouldDeny[0]!.rule, "payment.accepts");
    assert.match(String(wouldDeny[0]!.hint), /add "order" to that accepts list/);
    const denied = payment.filter(ev("authz.denied", (l) => l.peer === "order"));
    assert.ok(denied.length > 0);
    // Nothing was denied before enforcement (the audit phase included), and the first denial names the fix.
    assert.ok(
      denied.every((l) => Date.parse(String(l.time)) >= phaseAt("enforce")),
      "no authz.denied before the enforce phase",
    );
    assert.match(String(denied[0]!.hint), /add "order" to that accepts list/);
    assert.ok(
      lines(report.logs, "order.log").some(
        (l) => l.event === "upstream.failed" && l.reason === "forbidden" && l.rule === "payment.accepts",
      ),
      "order said payment refused it, naming the rule",
    );
    assert.ok(payment.filter(ev("policy.reloaded")).length >= 3, "audit, enforce, revert reloaded");
    const enforce = report.phases.find((p) => p.name === "enforce")!;
    assert.ok((enforce.reasons["502 payment:forbidden"] ?? 0) > 0, JSON.stringify(enforce.reasons));
    assert.equal(report.phases.find((p) => p.name === "after")!.failed, 0);

    return report.dir;
  });
});

test("drill policy-mistake whose story does not happen (a harmless candidate): not ok, the checks say what was missing", {
  timeout: 120_000,
}, async () => {
  const report = await runPolicyMistakeDrill({ candidate: DRILL_POLICY, dwellMs: 300, rate: 20 });
  try {
    assert.equal(report.ok, false);
    const failed = new Set(report.checks.filter((c) => !c.ok).map((c) => c.name));
    for (const name of [
      "what-if predicted the break before it was enforced",
      "audit mode logged the break with the rule and the fix",
      "enforced, payment's 403 names the rule and the fix",
      "orders failed while it was enforced",
      "what-if's prediction is what enforcement denied",
    ])
      assert.ok(failed.has(name), `${name} should fail: ${JSON.stringify(report.checks)}`);
    assert.equal((report.facts.whatIf as { exitCode: number }).exitCode, 0, "what-if saw no change");
    assert.equal(existsSync(report.dir), false);
  } finally {
    rmSync(join(report.dir, ".."), { recursive: true, force: true });
  }
});
