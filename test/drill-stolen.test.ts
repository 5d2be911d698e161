// `npm run drill -- stolen` for real: a copy of order's key and certificate gets into payment;
// once revoked, every service refuses it within 5 s (the CRL long poll), payment cuts its live
// connection, the real order is refused too and enrols afresh; no order lost after that. Exit 0
// only if every check held; the thief's copy, the CA's keys and every process are gone.
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { StoryReport } from "../scripts/drill/mesh.ts";
import { parseLine, type MeshLine } from "../scripts/mesh-format.ts";
import { checkLeavesNothing, privateTmp, processesMentioning, runDrillCli, secretsBelow } from "./helpers/drill-run.ts";
import { ev } from "./helpers/events.ts";

test("drill stolen: revoked, the stolen copy is refused everywhere within seconds and its connection cut; order re-enrols; nothing left behind", {
  timeout: 120_000,
}, async () => {
  const r = await runDrillCli(["stolen", "--json", "--dwell", "1000", "--rate", "10"]);
  await checkLeavesNothing(r, async () => {
    assert.equal(r.code, 0, `${r.err}\n${r.out.slice(-4000)}`);
    const report = JSON.parse(r.out) as StoryReport;
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ["baseline", "revoke", "re-enrol", "after"],
    );
    assert.ok(
      report.checks.some((c) => c.name === "payment's refusal counter moved" && c.ok),
      "the metrics a dashboard shows moved",
    );
    assert.ok(
      report.checks.every((c) => c.ok),
      JSON.stringify(report.checks),
    );
    const within = report.facts.refusedInMs as Record<string, number>;
    for (const s of ["payment", "inventory", "order"])
      assert.ok(within[s]! >= 0 && within[s]! <= 5_000, `${s}: ${within[s]}`);

    const lines = (f: string): MeshLine[] =>
      readFileSync(join(report.logs, f), "utf8")
        .split("\n")
        .map(parseLine)
        .filter((l): l is MeshLine => l !== null);
    const serial = String(report.facts.serial);
    for (const s of ["payment", "inventory", "order"]) {
      const refused = lines(`${s}.log`).find(ev("tls.handshake_failed", (l) => l.reason === "revoked"));
      assert.ok(refused, `${s} refused the revoked certificate`);
      assert.match(String(refused.msg), /has been revoked by the CA/);
    }
    const cut = lines("payment.log").find(ev("tls.connections_closed", (l) => l.why === "trust withdrawn"));
    assert.match(JSON.stringify(cut?.peers), /order \(its certificate was revoked\)/);
    // The real order enrolled again, with a new certificate; the revoked serial is not served.
    const enrolled = lines("order.log").filter(ev("identity.enrolled"));
    assert.equal(enrolled.length, 2);
    assert.notEqual(String(enrolled[1]!.serial).toLowerCase(), serial);
    assert.equal(report.phases.find((p) => p.name === "after")!.failed, 0);

    assert.equal(existsSync(join(report.dir, "..", "thief")), false, "the thief's copy of the key is removed");
    return report.dir;
  });
});

test("drill stolen failing mid-run (after the theft): the thief's copy, the CA's keys and every process are gone", {
  timeout: 90_000,
}, async () => {
  const { runStolenDrill } = await import("../scripts/drill/stolen.ts");
  const tmp = privateTmp();
  const old = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  let work = "";
  try {
    await assert.rejects(
      runStolenDrill({
        rate: 5,
        dwellMs: 300,
        onPrepared: (w) => (work = w.work),
        say: (l) => {
          if (l.includes("▶ 2.")) throw new Error("boom as the revocation begins");
        },
      }),
      /boom as the revocation begins/,
    );
  } finally {
    if (old === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = old;
  }
  assert.ok(work.startsWith(tmp), work);
  assert.equal(existsSync(join(work, "thief")), false);
  assert.deepEqual(secretsBelow(tmp), []);
  assert.deepEqual(processesMentioning(tmp), []);
  rmSync(tmp, { recursive: true, force: true });
});
