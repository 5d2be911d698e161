// A caller names its callee's clock when the callee refuses a certificate that is valid by the
// caller's clock: told by the mesh's server (400, Mesh-Refused, its Date), or by another TLS
// stack's alert (certificate_expired, here real `openssl s_server -attime`). Real CA, real
// processes; the skewed callee is a process of its own (MESH_CLOCK_OFFSET_MS).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { test } from "node:test";
import { calleeClockSentence } from "../services/mesh/callee-clock.ts";
import { Upstreams, UpstreamError } from "../services/mesh/client.ts";
import { loadMaterial, materialPaths } from "../services/mesh/material.ts";
import { createLogger } from "../services/mesh/log.ts";
import { freshPki, LogSink, type TestPki } from "./mesh-fixtures.ts";
import { ROOT } from "./helpers/ca.ts";

const MINUTE = 60_000;
const DAY = 86_400_000;
const YEARS = 730 * DAY;
const OWN = { notBefore: "2026-01-01T00:00:00.000Z", notAfter: "2026-01-01T00:01:00.000Z" };
const NOW = Date.parse("2026-01-01T00:00:20.000Z");

test("calleeClockSentence: valid here, refused there, is the callee's clock; expired here is ours", () => {
  const ahead = calleeClockSentence("payment", "expired", OWN, NOW + 10 * MINUTE, NOW);
  assert.equal(ahead.byClock, true);
  assert.equal(ahead.clockOffsetMs, 10 * MINUTE);
  assert.match(ahead.sentence, /^payment refused our certificate as expired, but by this host's clock it is valid/);
  assert.match(ahead.sentence, /the callee's clock is the likely cause: payment's clock is 10m 0s ahead of ours/);
  const behind = calleeClockSentence("payment", "not_yet_valid", OWN, NOW - 10 * MINUTE, NOW);
  assert.match(behind.sentence, /the callee's clock is the likely cause: payment's clock is 10m 0s behind ours/);
  // A TLS alert carries no Date: the least skew that explains it.
  const alert = calleeClockSentence("payment", "expired", OWN, null, NOW);
  assert.equal(alert.byClock, true);
  assert.match(
    alert.sentence,
    /the callee's clock is the likely cause: it would have to be at least 40s ahead of ours/,
  );
  // Expired by our clock too: our certificate, not anyone's clock.
  const ours = calleeClockSentence("payment", "expired", OWN, NOW + 2 * MINUTE, NOW + 2 * MINUTE);
  assert.equal(ours.byClock, false);
  assert.match(ours.sentence, /by this host's clock too \(it expired at 2026-01-01T00:01:00\.000Z\); renew it/);
  assert.doesNotMatch(ours.sentence, /callee's clock/);
});

function caller(pki: TestPki, port: number) {
  const logs = new LogSink();
  const up = new Upstreams(
    "order",
    loadMaterial(materialPaths(pki.dir, "order.internal"), "order.internal"),
    { payment: `127.0.0.1:${port}` },
    createLogger("order", logs),
  );
  return { logs, up };
}

async function refusedCall(up: Upstreams): Promise<void> {
  await assert.rejects(
    up.call("payment", "GET", "/healthz"),
    (e: unknown) => e instanceof UpstreamError && e.reason === "rejected_in_handshake",
  );
}

/** A child process until it prints `ready` on stdout (a regular expression with one group: the port). */
async function child(
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
): Promise<{ c: ChildProcess; port: number }> {
  const c = spawn(args[0]!, args.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`not ready in 20 s: ${out}`)), 20_000);
    const seen = (d: Buffer) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ c, port: Number(m[1]) });
      }
    };
    c.stdout!.on("data", seen);
    c.stderr!.on("data", seen);
    c.once("exit", (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
}

const stop = (c: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once("exit", () => resolve());
    c.kill("SIGTERM");
  });

test("a mesh callee whose clock is 2 years ahead: the caller names the callee's clock and by how much", async () => {
  const pki = await freshPki();
  const { c, port } = await child(
    [
      process.execPath,
      "--import",
      "tsx",
      "services/main.ts",
      "--service",
      "payment",
      "--port",
      "0",
      "--pki",
      pki.dir,
      "--policy",
      pki.policyFile,
    ],
    // Beyond any certificate freshPki issues.
    { MESH_CLOCK_OFFSET_MS: String(YEARS), MESH_ADMIN_PORT: "" },
    /listening on https:\/\/127\.0\.0\.1:(\d+)/,
  );
  const { logs, up } = caller(pki, port);
  try {
    await refusedCall(up);
    const l = await logs.waitEvent("upstream.failed");
    assert.equal(l.reason, "rejected_in_handshake");
    assert.equal(l.refusedFor, "expired");
    assert.equal(l.clock, "callee");
    assert.ok(Math.abs(Number(l.clock_offset_ms) - YEARS) < 3_000, JSON.stringify(l));
    assert.match(String(l.msg), /the callee's clock is the likely cause: payment's clock is 730d 0h ahead of ours/);
  } finally {
    await up.close();
    await stop(c);
    pki.cleanup();
  }
});

/** `openssl s_server` as payment, requiring a client certificate and judging it by a clock `offsetMs` from ours (-attime). */
function opensslCallee(pki: Awaited<ReturnType<typeof freshPki>>, offsetMs: number) {
  const p = pki.ca.paths.leaf("payment.internal");
  return child(
    [
      "openssl",
      "s_server",
      "-accept",
      "127.0.0.1:0",
      "-cert",
      p.cert,
      "-key",
      p.key,
      "-CAfile",
      `${pki.dir}/bundle.pem`,
      "-Verify",
      "3",
      "-verify_return_error",
      "-attime",
      String(Math.floor((Date.now() + offsetMs) / 1000)),
      "-www",
    ],
    {},
    /ACCEPT 127\.0\.0\.1:(\d+)/,
  );
}

test("an OpenSSL callee whose clock is 2 years ahead alerts certificate_expired: the caller names the callee's clock", async () => {
  const pki = await freshPki();
  const { c, port } = await opensslCallee(pki, YEARS);
  const { logs, up } = caller(pki, port);
  try {
    await refusedCall(up);
    const l = await logs.waitEvent("upstream.failed");
    assert.equal(l.code, "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED");
    assert.equal(l.clock, "callee");
    assert.match(
      String(l.msg),
      /^payment refused our certificate as expired, but by this host's clock it is valid .*the callee's clock is the likely cause: it would have to be at least .* ahead of ours/,
    );
  } finally {
    await up.close();
    await stop(c);
    pki.cleanup();
  }
});

test("an OpenSSL callee whose clock is a day behind alerts bad_certificate: the caller names the callee's clock, if it is the dates", async () => {
  const pki = await freshPki();
  const { c, port } = await opensslCallee(pki, -DAY);
  const { logs, up } = caller(pki, port);
  try {
    await refusedCall(up);
    const l = await logs.waitEvent("upstream.failed");
    assert.equal(l.code, "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE");
    assert.equal(l.refusedFor, "not_yet_valid");
    assert.equal(l.clock, "callee");
    assert.match(
      String(l.msg),
      /^payment refused our certificate \(TLS alert bad_certificate: .*\), and by this host's clock it is valid \(from .*\): if it is its dates, the callee's clock is the likely cause: it would have to be at least .* behind ours/,
    );
  } finally {
    await up.close();
    await stop(c);
    pki.cleanup();
  }
});
