// `npm run drill -- clock-skew` for real: payment's clock 10 minutes ahead, 10 minutes behind, 2 days ahead
// (MESH_CLOCK_OFFSET_MS on its process only): it refuses its callers (expired, not yet valid) by its clock and
// says the clock is why, the CA and mesh:check name the clock and by how much, order's calls
// fail; restarted without the skew, payment carries on from its own state folder. Exit 0 only if
// every check held; nothing left behind. A skew too small to matter is a failed drill.
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { runClockSkewDrill } from "../scripts/drill/clock-skew.ts";
import type { StoryReport } from "../scripts/drill/mesh.ts";
import { checkLeavesNothing, runDrillCli, logLines as lines } from "./helpers/drill-run.ts";
import { ev } from "./helpers/events.ts";

test("drill clock-skew: minutes and days ahead, each side names the clock; fixed, payment carries on; nothing left behind", {
  timeout: 120_000,
}, async () => {
  const r = await runDrillCli(["clock-skew", "--json", "--dwell", "500", "--rate", "20"]);
  await checkLeavesNothing(r, async () => {
    assert.equal(r.code, 0, `${r.err}\n${r.out.slice(-4000)}`);
    const report = JSON.parse(r.out) as StoryReport;
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ["baseline", "minutes", "behind", "days", "heal", "after"],
    );
    assert.ok(report.checks.length >= 25 && report.checks.every((c) => c.ok), JSON.stringify(report.checks));

    // payment: its refusals name its clock and the size of the skew, for each skew.
    const payment = lines(report.logs, "payment.log");
    for (const [reason, by] of [
      ["expired", "10m 0s ahead of"],
      ["not_yet_valid", "10m 0s behind"],
      ["expired", "2d 0h ahead of"],
    ])
      assert.ok(
        payment.some(
          (l) =>
            l.event === "tls.handshake_failed" &&
            l.reason === reason &&
            String(l.msg).includes(`which MESH_CLOCK_OFFSET_MS sets ${by} the machine's`) &&
            /fix the clock \(NTP\), not the certificate/.test(String(l.msg)),
        ),
        `payment named its clock, ${by}`,
      );
    // Days ahead, even the CA's certificate looks expired to payment's agent, and it says why.
    assert.ok(
      payment.some(
        (l) => l.event === "trust.poll_failed" && /this host's clock is 2d 0h ahead of the CA's/.test(String(l.reason)),
      ),
    );
    // The CA: the skew, by name or address, and by how much; once for each size.
    const ca = lines(report.logs, "ca.log").filter(ev("est.clock_skew"));
    assert.ok(
      ca.some((l) => /payment\.internal's clock is (9m 59s|10m 0s|10m 1s) ahead of this CA's/.test(String(l.msg))),
    );
    assert.ok(ca.some((l) => /clock is 2d 0h ahead of this CA's/.test(String(l.msg))));
    assert.ok(ca.some((l) => /clock is (9m 59s|10m 0s|10m 1s) behind this CA's/.test(String(l.msg))));
    // order, the caller: its calls refused, and payment's clock named as the likely cause, with
    // the skew read from payment's Date (services/mesh/callee-clock.ts); mesh:probe's cell too.
    const order = lines(report.logs, "order.log").filter(
      (l) =>
        l.event === "upstream.failed" &&
        l.upstream === "payment" &&
        l.reason === "rejected_in_handshake" &&
        l.clock === "callee",
    );
    for (const [refused, by] of [
      ["expired", /payment's clock is (9m 59s|10m 0s|10m 1s) ahead of ours/],
      ["not_yet_valid", /payment's clock is (9m 59s|10m 0s|10m 1s) behind ours/],
      ["expired", /payment's clock is 2d 0h ahead of ours/],
    ] as const)
      assert.ok(
        order.some(
          (l) =>
            l.refusedFor === refused &&
            by.test(String(l.msg)) &&
            /^payment refused our certificate as .*, but by this host's clock it is valid .*: the callee's clock is the likely cause/.test(
              String(l.msg),
            ),
        ),
        `order named payment's clock: ${by}`,
      );
    for (const name of ["minutes", "behind", "days"])
      assert.ok(
        report.checks.some((c) => c.name === `${name}: mesh:probe's order → payment names the callee's clock` && c.ok),
      );
    const skews = report.facts.skews as Array<{ phase: string; meshCheck: { severity: string; detail: string } }>;
    for (const s of skews) assert.equal(s.meshCheck.severity, "error", s.meshCheck.detail);
    assert.equal((report.facts.meshCheck as { healed: { severity: string } }).healed.severity, "ok");
    // Healed without a new token: the state folder carried on.
    assert.equal(payment.filter(ev("identity.enrolled")).length, 1);
    assert.equal(report.phases.find((p) => p.name === "after")!.failed, 0);

    return report.dir;
  });
});

test("drill clock-skew whose story does not happen (5 s ahead, within what certificates tolerate): not ok", {
  timeout: 120_000,
}, async () => {
  const report = await runClockSkewDrill({ skews: [{ phase: "seconds", ms: 5_000 }], dwellMs: 300, rate: 20 });
  try {
    assert.equal(report.ok, false);
    const failed = new Set(report.checks.filter((c) => !c.ok).map((c) => c.name));
    for (const name of [
      "seconds: payment refused its callers by its clock and said so",
      "seconds: the CA named payment's clock and by how much",
      "seconds: mesh:check's clock check failed",
      "seconds: order's calls to the running payment were refused",
      "seconds: order named payment's clock as the likely cause, and by how much",
      "seconds: mesh:probe's order → payment names the callee's clock",
    ])
      assert.ok(failed.has(name), `${name} should fail: ${JSON.stringify(report.checks)}`);
    assert.equal(existsSync(report.dir), false);
  } finally {
    rmSync(join(report.dir, ".."), { recursive: true, force: true });
  }
});
