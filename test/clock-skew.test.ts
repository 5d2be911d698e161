// Clock skew named as clock skew, on both sides, with real processes: `ca serve` and
// `services/main.ts --ca`, each clock moved by MESH_CLOCK_OFFSET_MS (lib/clock.ts) instead of
// the machine's. Before: a CA 10 minutes behind made the service say "expired", and a service
// 2 days ahead said "cannot reach the CA".
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ROOT, ca as cli, cleanup, tempDir } from "./helpers/ca.ts";
import { PKCS10, est, makeCsr, startCa, type LogLine } from "./helpers/est.ts";
import { ev, hasEvent, evAny } from "./helpers/events.ts";

// The compiled CLI, as `npm run ca` runs it (bin/ca.mjs): it starts in a third of tsx's time.
const CLI = join(ROOT, "bin", "ca.mjs");
const MINUTE = 60_000;
const DAY = 86_400_000;
const CLEAN = {
  MESH_PKI_DIR: "",
  MESH_CA_PASSPHRASE: "",
  MESH_CA_NOW: "",
  MESH_CA_ADMIN_PORT: "",
  MESH_ENROL_TOKEN: "",
  MESH_CLOCK_OFFSET_MS: "",
};

interface Served {
  url: string;
  pki: string;
  lines(): LogLine[];
  wait(pred: (l: LogLine) => boolean, ms?: number): Promise<LogLine>;
  stop(): Promise<void>;
}

/** `ca serve` on a fresh CA in `work`, its clock moved by offsetMs. */
async function serve(work: string, offsetMs: number): Promise<Served> {
  const pki = join(work, "pki");
  const init = await cli(["init", "--name", "Skew Test CA", "--dir", pki]);
  assert.equal(init.code, 0, init.stderr);
  const child: ChildProcess = spawn(process.execPath, [CLI, "serve", "--dir", pki, "--port", "0"], {
    cwd: work,
    env: { ...process.env, ...CLEAN, MESH_CLOCK_OFFSET_MS: String(offsetMs) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let text = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (text += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  const lines = () =>
    text
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as LogLine);
  const wait = async (pred: (l: LogLine) => boolean, ms = 20_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = lines().find(pred);
      if (found) return found;
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`no such CA line within ${ms} ms:\n${text}\n${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const started = await wait(ev("ca.started"));
  return {
    url: String(started.url),
    pki,
    lines,
    wait,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** services/main.ts --ca for payment, its clock moved by offsetMs; resolves when it exits or enrols. */
async function payment(
  work: string,
  s: Served,
  offsetMs: number,
  lifetime: string,
): Promise<{ code: number | null; out: string; err: string }> {
  const token = await cli(["token", "--domain", "payment.internal", "--dir", s.pki]);
  assert.equal(token.code, 0, token.stderr);
  const file = join(work, `payment-${lifetime}.token`);
  writeFileSync(file, token.stdout, { mode: 0o600 });
  const child = spawn(
    process.execPath,
    [
      // The compiled service (services/main.ts), as mesh:up starts it.
      join(ROOT, "bin", "mesh-service.mjs"),
      "--service",
      "payment",
      "--port",
      "0",
      "--ca",
      s.url,
      "--state",
      join(work, `state-${lifetime}`),
      "--token-file",
      file,
      "--policy",
      join(ROOT, "mesh-policy.toml"),
      "--lifetime",
      lifetime,
    ],
    {
      cwd: work,
      env: { ...process.env, ...CLEAN, MESH_CLOCK_OFFSET_MS: String(offsetMs) },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const deadline = Date.now() + 30_000;
  while (child.exitCode === null && !hasEvent(out, "identity.agent_started") && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  if (child.exitCode === null) child.kill("SIGTERM");
  return { code: await exited, out, err };
}

/** "10m 0s" give or take the second an HTTP date cannot resolve. */
function near(text: string, minutes: number): boolean {
  const m = /(\d+)m (\d+)s/.exec(text);
  return m !== null && Math.abs(Number(m[1]) * 60 + Number(m[2]) - minutes * 60) <= 2;
}

describe("a CA whose clock is 10 minutes behind", () => {
  const work = tempDir("mesh-skew-ca-");
  let s: Served;
  after(async () => {
    await s?.stop();
    cleanup(work);
  });

  it("refuses a 2-minute certificate the service would find expired, and both sides say clock skew and by how much", async () => {
    s = await serve(work, -10 * MINUTE);
    const r = await payment(work, s, 0, "2m");
    assert.equal(r.code, 2, r.out + r.err);
    const line = r.err.trim();
    assert.equal(line.split("\n").length, 1, line);
    assert.match(
      line,
      /^payment: cannot start: the CA refused \/\.well-known\/est\/simpleenroll \(400\): clock skew: your clock is \d+m \d+s ahead of this CA's/,
    );
    assert.match(line, /clock skew: the CA's clock is \d+m \d+s behind this host's$/);
    assert.ok(near(line, 10), line);
    assert.ok(
      !/expired/.test(line.replace(/would be expired or nearly so/, "")),
      `no "expired" but in the CA's reason: ${line}`,
    );
    assert.ok(!existsSync(join(work, "state-2m", "cert.pem")), "nothing enrolled");
    // The CA: a clock_skew refusal of its own (the token had verified) and an est.clock_skew line naming payment.
    const refused = await s.wait(ev("est.refused", (l) => l.reason === "clock_skew"));
    assert.equal(refused.name, "payment.internal");
    assert.equal(refused.authenticated, true);
    const skew = await s.wait(ev("est.clock_skew", (l) => l.name === "payment.internal"));
    assert.ok(Math.abs(Number(skew.clock_offset_ms) - 10 * MINUTE) < 3_000, JSON.stringify(skew));
    assert.match(String(skew.msg), /^clock skew: payment\.internal's clock is \d+m \d+s ahead of this CA's$/);
  });

  it("still issues what stays usable: an hour-long certificate, with the skew in the CA's log", async () => {
    const r = await payment(work, s, 0, "1h");
    assert.ok(hasEvent(r.out, "identity.enrolled"), r.out + r.err);
    const enrolled = await s.wait(ev("est.enrolled", (l) => l.name === "payment.internal"));
    assert.ok(
      Date.parse(String(enrolled.not_after)) - Date.now() > 45 * MINUTE,
      "valid for 50 minutes by the real clock",
    );
  });
});

describe("a service whose clock is 2 days ahead", () => {
  const work = tempDir("mesh-skew-svc-");
  let s: Served;
  after(async () => {
    await s?.stop();
    cleanup(work);
  });

  it("says clock skew and by how much, not 'cannot reach the CA'; the CA logs the skew of that address", async () => {
    s = await serve(work, 0);
    const r = await payment(work, s, 2 * DAY, "1h");
    assert.equal(r.code, 2, r.out + r.err);
    const line = r.err.trim();
    assert.equal(line.split("\n").length, 1, line);
    assert.match(
      line,
      /^payment: cannot start: clock skew: this host's clock is 2d 0h ahead of the CA's \(the CA's Date header says [A-Z][a-z]{2}, \d{2} /,
    );
    assert.match(line, /the CA's certificate looks expired from here/);
    assert.doesNotMatch(line, /cannot reach the CA/);
    const skew = await s.wait(ev("est.clock_skew"));
    assert.equal(skew.authenticated, false);
    assert.equal(skew.remote, "127.0.0.1");
    assert.ok(Math.abs(Number(skew.clock_offset_ms) - 2 * DAY) < 3_000, JSON.stringify(skew));
    assert.match(String(skew.msg), /^clock skew: 127\.0\.0\.1's clock is 2d 0h ahead of this CA's$/);
    // The token was never sent: no enrolment was attempted.
    assert.equal(s.lines().filter(evAny("est.enrolled", "est.refused")).length, 0);
  });
});

it("a MESH_CLOCK_OFFSET_MS that is not a number: one line, exit 2", async () => {
  const work = tempDir("mesh-skew-bad-");
  try {
    const r = await cli(["init", "--name", "Skew Test CA", "--dir", join(work, "pki")], {
      env: { MESH_CLOCK_OFFSET_MS: "ten minutes" },
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr.trim(), /MESH_CLOCK_OFFSET_MS="ten minutes" is not a whole number of milliseconds/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
  } finally {
    cleanup(work);
  }
});

it("any refusal to a client whose Date is off says clock skew; the CA's Date is its own clock", async () => {
  const t = await startCa({ refusalLog: { linesPerInterval: 100 } });
  try {
    t.shift(-10 * MINUTE); // the CA's clock, as MESH_CLOCK_OFFSET_MS would move it
    const ahead = new Date(Date.now()).toUTCString();
    const r = await est(t.server.url, {
      method: "POST",
      path: "/.well-known/est/simpleenroll",
      headers: { ...PKCS10, Date: ahead, Authorization: `Bearer mt1.${"a".repeat(43)}.${"b".repeat(43)}` },
      body: (await makeCsr("shipping.internal")).body,
      ca: t.bundle(),
    });
    assert.equal(r.status, 401);
    assert.match(
      r.body,
      /^the enrolment token is unknown to this CA \(note: clock skew, your clock is \d+m \d+s ahead of this CA's; fix the clock that is wrong\)\n$/,
    );
    assert.ok(near(r.body, 10), r.body);
    assert.ok(
      Math.abs(Date.parse(String(r.headers.date)) - (Date.now() - 10 * MINUTE)) < 5_000,
      `the CA's Date is its clock: ${r.headers.date}`,
    );
    const refused = await t.lines.wait(ev("est.refused", (l) => l.reason === "token_unknown"));
    assert.ok(Math.abs(Number(refused.clock_offset_ms) - 10 * MINUTE) < 3_000);
    const skew = await t.lines.wait(ev("est.clock_skew"));
    assert.equal(skew.authenticated, false);
    assert.equal(skew.name, "shipping.internal");
    // No Date, no comparison: curl is not told anything about clocks.
    const plain = await est(t.server.url, {
      method: "POST",
      path: "/.well-known/est/simpleenroll",
      headers: { ...PKCS10, Authorization: `Bearer mt1.${"a".repeat(43)}.${"b".repeat(43)}` },
      body: (await makeCsr("shipping.internal")).body,
      ca: t.bundle(),
    });
    assert.equal(plain.body, "the enrolment token is unknown to this CA\n");
  } finally {
    await t.stop();
  }
});

describe("a service whose clock is 54 s ahead", () => {
  const work = tempDir("mesh-skew-renew-");
  let s: Served;
  after(async () => {
    await s?.stop();
    cleanup(work);
  });

  it("schedules its renewal by its own clock: early by the machine's, the clock named", async () => {
    s = await serve(work, 0);
    // More than a third of the life apart, so that no jitter makes the two schedules meet.
    const offset = 54_000;
    const r = await payment(work, s, offset, "120s");
    const started = r.out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as LogLine)
      .find(ev("identity.agent_started"));
    assert.ok(started, r.out + r.err);
    const enrolled = await s.wait(ev("est.enrolled", (l) => l.name === "payment.internal"));
    const notAfter = Date.parse(String(enrolled.not_after));
    // nextRenewal is by payment's clock; by the machine's it is `offset` earlier. Counted from
    // receipt by its own clock, the 120 s life has 66 s left by that clock: renewal at 2/3 of
    // those (±10%), 72 to 81 s before the end. On the machine's clock (the defect) it came at
    // 2/3 of 120 s (±10%) by a clock read 54 s ahead: 86 s or more before the end.
    const dueByMachine = Date.parse(String(started.nextRenewal)) - offset;
    const beforeEnd = (notAfter - dueByMachine) / 1000;
    assert.ok(beforeEnd > 68 && beforeEnd < 83.5, `renews ${beforeEnd} s before expiry by the machine's clock`);
    assert.match(
      String(started.msg),
      /renews at .* \(by this host's clock, which MESH_CLOCK_OFFSET_MS sets 54s ahead of the machine's\)$/,
    );
  });
});
