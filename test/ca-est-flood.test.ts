// Issue 13, "the CA cannot be starved": junk-token enrolments naming payment.internal, from 40
// loopback source addresses at once, while the real payment service renews 15-second
// certificates over mTLS against the CA's default limits. Before the fix the junk spent
// payment's per-name budget and payment's renewals got 429 until its certificate expired.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { DEFAULT_LIMITS } from "../ca/server/server.ts";
import { DEFAULT_REFUSAL_LOG } from "../ca/server/refusal-log.ts";
import { ROOT } from "./helpers/ca.ts";
import { POLICY, startIn, world } from "./identity-fixtures.ts";
import { ev } from "./helpers/events.ts";
import { parse } from "./helpers/prom.ts";

const TSX = import.meta.resolve("tsx");

test("a junk-token flood naming payment.internal from 40 addresses: payment renews on time, the log stays bounded, metrics count every refusal", {
  timeout: 180_000,
}, async () => {
  const w = await world(POLICY, DEFAULT_LIMITS);
  // 15-second certificates renewed at a third of their life (not 2/3): the two renewals under the
  // flood come 5 s apart (10 s with 30 s ones), each still judged against when it was planned,
  // with 10 s of the old certificate left; two renewals stay within payment's renewal bucket (5 at
  // once), so a 429 here is the flood's doing (a flood of 10 s answers thousands, not 200).
  const pay = await startIn(w, "payment", {
    lifetime: "15s",
    pollMs: 60_000,
    schedule: { fraction: 1 / 3, jitter: 0 },
  });
  const flooder = spawn(
    process.execPath,
    [
      "--import",
      TSX,
      join(ROOT, "test", "helpers", "junk-flood.ts"),
      w.ca.server.url,
      "payment.internal",
      "2",
      "40",
      "8",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  flooder.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  flooder.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => flooder.once("exit", resolve));
  const floodStart = Date.now();
  try {
    const deadline = Date.now() + 30_000;
    while (!err.includes("flooding") && flooder.exitCode === null && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    assert.ok(err.includes("flooding"), `the flood did not start: ${err}`);

    // Two renewals under the flood, each when the agent had planned it.
    for (let i = 1; i <= 2; i++) {
      const planned = pay.svc.identity.nextRenewal;
      const since = pay.logs.lines.length;
      const renewed = await pay.logs.wait(
        (l) => l.event === "identity.renewed" || l.event === "identity.renew_failed" || l.event === "identity.expired",
        60_000,
        since,
      );
      assert.equal(renewed.event, "identity.renewed", `renewal ${i} under the flood: ${JSON.stringify(renewed)}`);
      const late = Date.now() - planned;
      assert.ok(late < 10_000, `renewal ${i} came ${late} ms after it was planned`);
    }
  } finally {
    flooder.kill("SIGTERM");
    await exited;
    await pay.svc.close();
  }
  const flood = JSON.parse(out.trim()) as { sent: number; statuses: Record<string, number>; errors: number };
  const elapsedS = (Date.now() - floodStart) / 1000;
  try {
    assert.equal(flood.statuses["200"], undefined, "no junk token got a certificate");
    const answered = Object.values(flood.statuses).reduce((a, b) => a + b, 0);
    assert.ok(answered > 200, `a flood, not a trickle: ${JSON.stringify(flood)}`);
    assert.ok((flood.statuses["429"] ?? 0) > 0 && (flood.statuses["401"] ?? 0) > 0, JSON.stringify(flood));
    assert.equal(pay.logs.lines.filter(ev("identity.renew_failed")).length, 0);

    const lines = w.ca.lines;
    // The CA renewed payment and never refused it, while the junk claimed its name.
    assert.ok(lines.events("est.renewed").filter((l) => l.name === "payment.internal").length >= 2);
    assert.deepEqual(
      lines.events("est.refused").filter((l) => l.authenticated === true),
      [],
    );
    // Bounded lines: a few of their own per interval, then summaries naming the flood's sources and target.
    const own = lines.events("est.refused").length + lines.events("tls.handshake_failed").length;
    const intervals = Math.ceil(elapsedS / (DEFAULT_REFUSAL_LOG.intervalMs / 1000)) + 1;
    assert.ok(
      own <= DEFAULT_REFUSAL_LOG.linesPerInterval * intervals,
      `${own} refusal lines for ${answered} refusals over ${intervals} intervals`,
    );
    await w.ca.server.close(); // flushes the last interval's summary
    const summaries = lines.events("est.refused_summary");
    assert.ok(summaries.length >= 1 && summaries.length <= intervals, `${summaries.length} summaries`);
    const counted = summaries.reduce((n, s) => n + Number(s.total), 0);
    assert.ok(counted >= answered, `every refusal is in a summary total: ${counted} of ${answered}`);
    const biggest = summaries.reduce((a, b) => (Number(b.total) > Number(a.total) ? b : a));
    // The names junk claimed (known only for what got past the gate to its CSR): payment's, and only that.
    const named = new Set(summaries.flatMap((x) => (x.top_names as Array<{ name: string }>).map((n) => n.name)));
    assert.deepEqual([...named], ["payment.internal"]);
    const remotes = biggest.top_remotes as Array<{ remote: string; count: number }>;
    assert.ok(
      remotes.length === 10 && remotes.every((r) => /^127\.0\.0\.(\d+)$/.test(r.remote) && r.remote !== "127.0.0.1"),
      JSON.stringify(remotes),
    );
    assert.ok(Number(biggest.remotes) > 10 && Number(biggest.remotes) <= 41, `${biggest.remotes} distinct sources`);
    assert.ok(lines.all.length < 300, `${lines.all.length} CA log lines in all for ${answered} junk requests`);

    // Metrics count every one.
    const refused = parse(await w.ca.server.metrics.registry.metrics());
    const enrolRefusals = refused
      .filter((v) => v.name === "mesh_ca_requests_refused_total" && v.labels.route === "/.well-known/est/simpleenroll")
      .reduce((n, v) => n + v.value, 0);
    assert.ok(
      enrolRefusals >= answered && enrolRefusals <= flood.sent,
      `${enrolRefusals} counted, ${answered} answered, ${flood.sent} sent`,
    );
  } finally {
    await w.cleanup();
  }
});
