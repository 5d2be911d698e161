// A skewed process (MESH_CLOCK_OFFSET_MS) judges its peers' certificate dates by its own clock,
// and says the clock is why; the CA says est.clock_skew again at once when a name's clock moves
// again within the minute. Real certificates from a real CA; each knob in a process of its own.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import { SkewLog } from "../ca/server/skew-log.ts";
import { RefusalLog } from "../ca/server/refusal-log.ts";
import type { Call } from "../ca/server/est.ts";
import type { EventLogger } from "../lib/events.ts";
import { ROOT } from "./helpers/ca.ts";

/** A fresh certificate for a day, issued by a CA on the machine's clock (in this process). */
const certFile = (async () => {
  const dir = mkdtempSync(join(tmpdir(), "clock-dates-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await CertificateAuthority.init({ dir, name: "Dates Test CA" });
  const leaf = await ca.issue({ domain: "order.internal", days: 1 });
  ca.close();
  return leaf.certPath;
})();

/** datesByProcessClock on that certificate, in a process whose clock is moved by `offset` ms. */
async function judge(offset: string): Promise<{ out: unknown; err: string }> {
  const script = `
    import { datesByProcessClock } from "./services/mesh/clock-dates.ts";
    import { X509Certificate } from "node:crypto";
    import { readFileSync } from "node:fs";
    const cert = new X509Certificate(readFileSync(process.argv[1]));
    console.log(JSON.stringify(datesByProcessClock(cert, "the client's certificate")));`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, await certFile], {
    cwd: ROOT,
    env: { ...process.env, MESH_CLOCK_OFFSET_MS: offset },
    encoding: "utf8",
  });
  return { out: r.status === 0 ? JSON.parse(r.stdout) : undefined, err: r.stderr };
}

test("no offset: nothing to judge (OpenSSL judged by the same clock); a day's certificate is fine a minute ahead", async () => {
  assert.equal((await judge("")).out, null);
  assert.equal((await judge("60000")).out, null);
});

test("two days ahead: expired by this host's clock, the offset named, the clock to fix", async () => {
  const { out, err } = await judge(String(2 * 86_400_000));
  const r = out as { reason: string; code: string; sentence: string };
  assert.ok(r, err);
  assert.equal(r.reason, "expired");
  assert.equal(r.code, "CERT_HAS_EXPIRED");
  assert.match(
    r.sentence,
    /^the client's certificate expired on .* by this host's clock \(.*\), which MESH_CLOCK_OFFSET_MS sets 2d 0h ahead of the machine's: .*fix the clock \(NTP\), not the certificate$/,
  );
});

test("ten minutes behind: not yet valid (the CA backdates only 5 minutes)", async () => {
  const r = (await judge(String(-10 * 60_000))).out as { reason: string; sentence: string };
  assert.equal(r.reason, "not_yet_valid");
  assert.match(r.sentence, /is valid only from .* which MESH_CLOCK_OFFSET_MS sets 10m 0s behind the machine's/);
});

test("a caller whose clock is 2 days ahead refuses its callee's certificate by that clock, and says the clock is why", async () => {
  const script = `
    import { calleeIdentity } from "./services/mesh/client.ts";
    import { upstreamReason } from "./services/mesh/reasons.ts";
    import { X509Certificate } from "node:crypto";
    import { readFileSync } from "node:fs";
    const cert = new X509Certificate(readFileSync(process.argv[1])).toLegacyObject();
    const err = calleeIdentity("order.internal", cert, "internal");
    console.log(JSON.stringify({ code: err?.code, why: err ? upstreamReason(err, "order", "127.0.0.1:7402") : null }));`;
  const run = async (offset: string) => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, await certFile], {
      cwd: ROOT,
      env: { ...process.env, MESH_CLOCK_OFFSET_MS: offset },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { code?: string; why: { reason: string; sentence: string } | null };
  };
  assert.deepEqual(await run(""), { why: null }, "the machine's clock: the certificate is fine");
  const skewed = await run(String(2 * 86_400_000));
  assert.equal(skewed.code, "CERT_HAS_EXPIRED");
  assert.equal(skewed.why!.reason, "server_cert_expired");
  assert.match(
    skewed.why!.sentence,
    /^the certificate of order\.internal expired on .* by this host's clock .*MESH_CLOCK_OFFSET_MS sets 2d 0h ahead/,
  );
});

test("the CA's est.clock_skew: once a minute per name, and again at once when that name's clock moves again", () => {
  const said: string[] = [];
  const log = {
    warn: (_f: unknown, msg: string) => said.push(msg),
    info: () => {},
    debug: () => {},
    error: () => {},
    isLevelEnabled: () => true,
  } as unknown as EventLogger;
  const skew = new SkewLog(log, new RefusalLog(log));
  const call = (skewMs: number) =>
    ({ remote: "127.0.0.1", skewMs, authenticated: "payment.internal", claimed: null }) as unknown as Call;
  skew.note(call(600_000), "/.well-known/est/cacerts");
  skew.note(call(601_000), "/.well-known/est/cacerts"); // the same clock, a second later: said already
  skew.note(call(2 * 86_400_000), "/.well-known/est/cacerts"); // moved again: news
  assert.deepEqual(said, [
    "clock skew: payment.internal's clock is 10m 0s ahead of this CA's",
    "clock skew: payment.internal's clock is 2d 0h ahead of this CA's",
  ]);
});

test("a file-mode service with a MESH_CLOCK_OFFSET_MS that is not a number: one line, exit 2, before anything else", () => {
  const r = spawnSync(
    process.execPath,
    ["bin/mesh-service.mjs", "--service", "payment", "--port", "0", "--pki", "/nonexistent"],
    { cwd: ROOT, env: { ...process.env, MESH_CLOCK_OFFSET_MS: "ten minutes" }, encoding: "utf8" },
  );
  assert.equal(r.status, 2, r.stderr);
  assert.equal(
    r.stderr.trim(),
    'payment: cannot start: MESH_CLOCK_OFFSET_MS="ten minutes" is not a whole number of milliseconds within ±10 years (e.g. -600000 for 10 minutes behind)',
  );
});
