// `npm run drill -- expiry` for real, with 20 s certificates: the CA server process stopped,
// renewals fail loudly (renew_failed CA_UNREACHABLE, expiring, expired, each before the next),
// mesh:check's certificate check warns then fails, calls fail as expired on both sides, the CA's
// return heals nothing by itself, a new token and a restart do. Exit 0 only if every check held;
// nothing left behind.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { StoryReport } from "../scripts/drill/mesh.ts";
import { parseLine, type MeshLine } from "../scripts/mesh-format.ts";
import { checkLeavesNothing, runDrillCli } from "./helpers/drill-run.ts";
import { ev } from "./helpers/events.ts";

test("drill expiry: the CA goes away, every identity expires loudly, both sides say expired, re-enrolment heals; nothing left behind", {
  timeout: 180_000,
}, async () => {
  const r = await runDrillCli(["expiry", "--json", "--dwell", "500", "--rate", "20"]);
  await checkLeavesNothing(r, async () => {
    assert.equal(r.code, 0, `${r.err}\n${r.out.slice(-4000)}`);
    const report = JSON.parse(r.out) as StoryReport;
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ["baseline", "ca-down", "ca-back", "re-enrol", "after"],
    );
    assert.ok(
      report.checks.some((c) => c.name === "the metrics moved" && c.ok),
      "the metrics a dashboard shows moved",
    );
    assert.ok(
      report.checks.every((c) => c.ok),
      JSON.stringify(report.checks),
    );
    assert.deepEqual(new Set(report.facts.victims as string[]), new Set(["payment", "inventory", "order", "edge"]));
    const mc = report.facts.mesh_check as Record<string, { severity: string; detail: string }>;
    assert.equal(mc.expiring!.severity, "warning");
    assert.match(mc.expired!.detail, /expired on .*: every peer refuses it/);
    assert.equal(mc.healed!.severity, "ok");

    // In the services' own logs, in order: renew_failed (CA unreachable), expiring, expired.
    const lines = (f: string): MeshLine[] =>
      readFileSync(join(report.logs, f), "utf8")
        .split("\n")
        .map(parseLine)
        .filter((l): l is MeshLine => l !== null);
    for (const s of ["payment", "inventory", "order"]) {
      const events = lines(`${s}.log`).map((l) => String(l.event));
      const at = (e: string) => events.indexOf(e);
      assert.ok(
        at("identity.renew_failed") >= 0 &&
          at("identity.renew_failed") < at("identity.expiring") &&
          at("identity.expiring") < at("identity.expired"),
        `${s}: ${events.filter((e) => e.startsWith("identity.")).join(", ")}`,
      );
      assert.ok(lines(`${s}.log`).some(ev("identity.renew_failed", (l) => l.code === "CA_UNREACHABLE")));
      assert.match(String(lines(`${s}.log`).find(ev("identity.expired"))!.msg), /enrol again: make a token/);
    }
    // Both sides: order refused edge's expired certificate, and said payment's had expired.
    const order = lines("order.log");
    assert.ok(
      order.some(ev("tls.handshake_failed", (l) => l.reason === "expired")),
      "callee: tls.handshake_failed expired",
    );
    assert.ok(
      order.some(ev("upstream.failed", (l) => l.reason === "server_cert_expired")),
      "caller: upstream.failed server_cert_expired",
    );
    const down = report.phases.find((p) => p.name === "ca-down")!;
    assert.ok(
      down.failed > 0 && Object.keys(down.reasons).some((k) => /expired/.test(k)),
      JSON.stringify(down.reasons),
    );
    // The CA back changed nothing by itself; the re-enrolment did, and the mesh renews again.
    assert.ok(report.phases.find((p) => p.name === "ca-back")!.failed > 0);
    assert.equal(report.phases.find((p) => p.name === "after")!.failed, 0);
    assert.ok(lines("payment.log").filter(ev("identity.enrolled")).length >= 2, "payment enrolled afresh");

    return report.dir;
  });
});
