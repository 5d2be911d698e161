// The rotation drill end to end, as `npm run drill:rotate` runs it: real
// services, real traffic, a real CA. Its verdict is checked here against the
// parsed logs and counts, not just its exit code.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { runDrill, type DrillReport } from "../scripts/drill/drill.ts";
import { parseLine, type MeshLine } from "../scripts/mesh-format.ts";
import { ROOT } from "./helpers/ca.ts";
import { ev } from "./helpers/events.ts";

const logLines = (r: DrillReport, service: string): MeshLine[] =>
  readFileSync(join(r.logs, `${service}.log`), "utf8")
    .split("\n")
    .map(parseLine)
    .filter((l): l is MeshLine => l !== null);

test("the careless rotation breaks; the safe rotation loses nothing; generation 1 is locked out", {
  timeout: 90_000,
}, async () => {
  const report = await runDrill({ rate: 40, dwellMs: 500 });
  try {
    const phase = (n: string) => report.phases.find((p) => p.name === n)!;
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ["baseline", "careless", "recovery", "trust-both", "reissue", "drop-old", "proof"],
    );

    // The break is real and explained from both sides.
    assert.ok(phase("careless").failed > 0, "the careless rotation must break calls to payment");
    assert.ok(
      Object.keys(phase("careless").reasons).every((r) => r.includes("payment:server_untrusted")),
      JSON.stringify(phase("careless").reasons),
    );
    const orderLog = logLines(report, "order");
    const untrusted = orderLog.find(ev("upstream.failed", (l) => l.reason === "server_untrusted"));
    assert.ok(untrusted, "order logs why payment is refused");
    assert.equal((untrusted.peer as { issuer: string }).issuer, "CN=Acme Corp CA G2");
    assert.deepEqual(untrusted.trusts, ["CN=Acme Corp CA"]);
    assert.match(String(untrusted.msg), /issued by CN=Acme Corp CA G2; order trusts only: CN=Acme Corp CA$/);
    const paymentLog = logLines(report, "payment");
    assert.ok(
      paymentLog.some(
        (l) =>
          l.event === "tls.handshake_failed" &&
          l.reason === "client_aborted" &&
          /issued by CN=Acme Corp CA G2/.test(String(l.msg)),
      ),
    );

    // The timeline's columns: each failed order has one reason, and a phase's gap lies within it.
    for (const p of report.phases) {
      assert.equal(
        Object.values(p.reasons).reduce((n, x) => n + x, 0),
        p.failed,
        `${p.name}: ${JSON.stringify(p.reasons)}`,
      );
      assert.ok(p.longestGapMs <= p.ms, `${p.name}: gap ${p.longestGapMs} ms in a phase of ${p.ms} ms`);
    }

    // Zero failures in every safe phase, with traffic actually flowing through each.
    for (const p of report.phases.filter((x) => x.safe)) {
      assert.ok(p.sent >= 10, `${p.name}: traffic must flow (${p.sent} sent)`);
      assert.equal(p.failed, 0, `${p.name}: ${JSON.stringify(p.reasons)}`);
      assert.equal(p.succeeded, p.sent);
    }
    assert.match(report.refusal ?? "", /cannot retire generation 1: 4 valid certificate\(s\) still chain to it/);

    // Every reload took effect without a restart, and was measured.
    for (const who of ["payment", "inventory", "order"]) {
      assert.ok(
        report.reloads.some(
          (r) => r.phase === "reissue" && r.who === who && r.what === "certificate" && r.effectMs! > 0,
        ),
      );
      assert.ok(report.reloads.some((r) => r.phase === "drop-old" && r.who === who && r.what === "trust"));
    }
    assert.equal(paymentLog.filter(ev("listening")).length, 1, "payment was never restarted");

    // The proof: an old-generation certificate is refused for unknown_ca, and the straggler was cut.
    const refused = paymentLog.filter(ev("tls.handshake_failed", (l) => l.reason === "unknown_ca"));
    assert.ok(refused.some((l) => (l.peer as { issuer: string }).issuer === "CN=Acme Corp CA"));
    assert.ok(
      paymentLog.some(
        (l) =>
          l.event === "tls.connections_closed" &&
          (l.peers as string[] | undefined)?.includes("order (its CA is no longer trusted)"),
      ),
    );
    assert.ok(
      report.probe.length === 18 && report.probe.every((c) => c.ok),
      JSON.stringify(report.probe.filter((c) => !c.ok)),
    );
    // `ca rotate --plan` before each step foretold it: order → payment refused (server_untrusted)
    // after the careless renewal, no refusal at any safe step.
    const planned = report.checks.find((c) => c.name === "plan matched observation");
    assert.ok(planned?.ok, planned?.detail);
    assert.match(
      planned.detail,
      /careless \(gate activate\): plan: breaks [^;]*order → payment[^|]*seen: order → payment server_untrusted ×\d+/,
    );
    assert.match(planned.detail, /drop-old \(gate retire\): plan: ✓ for every call; seen: no refusal/);
    assert.ok(
      report.checks.every((c) => c.ok),
      JSON.stringify(report.checks.filter((c) => !c.ok)),
    );
    assert.equal(report.ok, true);
    assert.deepEqual(JSON.parse(readFileSync(report.reportFile, "utf8")).ok, true);
    // The temporary CA's keys did not outlive the run; the report and logs did.
    assert.equal(report.stateRemoved, true);
    assert.equal(existsSync(report.dir), false, `${report.dir} was left behind`);
  } finally {
    rmSync(dirname(report.dir), { recursive: true, force: true });
  }
});

/** Every file below a folder, but tsx's compile cache (it follows TMPDIR too). */
function filesBelow(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .filter((f) => !f.slice(dir.length).startsWith("/tsx-"));
}

test("npm run drill:rotate --file-mode --with-intermediate exits 0, prints the timeline and leaves no key in the temporary folder", {
  timeout: 90_000,
}, async () => {
  // A private TMPDIR, so what the drill leaves behind can be listed.
  const tmp = mkdtempSync(join(tmpdir(), "drill-tmp-"));
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(ROOT, "scripts", "drill-rotate.ts"),
      "--file-mode",
      "--with-intermediate",
      ...["--dwell", "400", "--rate", "40"],
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TMPDIR: tmp } },
  );
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const code = await new Promise<number | null>((r) => child.on("close", r));
  const reportFile = /Report: (\S+)/.exec(out)?.[1];
  try {
    assert.equal(code, 0, out);
    assert.match(out, /through an intermediate/);
    // The plan, printed before each step: the careless one foretells the break in the services' words.
    assert.match(out, /plan \(npm run ca -- rotate --plan --order careless\), before gate activate:/);
    assert.match(out, /order → payment +✗ caller refuses: server_untrusted \(callee logs client_aborted\)/);
    assert.match(out, /plan \(npm run ca -- rotate --plan\), before gate retire:/);
    assert.match(out, /Timeline\nphase\s+ms\s+sent\s+ok\s+failed/);
    assert.match(out, /without losing a request/);
    const report = JSON.parse(readFileSync(reportFile!, "utf8")) as DrillReport;
    assert.equal(report.withIntermediate, true);
    assert.ok(report.phases.find((p) => p.name === "careless")!.failed > 0);
    assert.match(out, /^CA state: removed with its keys/m);
    // The drill worked in the private TMPDIR; its report and logs are there, no key nor ledger is.
    assert.ok(reportFile!.startsWith(tmp), reportFile);
    const left = filesBelow(tmp);
    assert.ok(
      left.some((f) => f.endsWith("/logs/payment.log")),
      left.join("\n"),
    );
    const secrets = left.filter((f) => /\.key$|ca\.db/.test(f) || readFileSync(f, "utf8").includes("PRIVATE KEY"));
    assert.deepEqual(secrets, []);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
