// A peer that fails at the TLS level is one failure and one log line: a
// `tls.handshake_failed` with the remote address and a reason that names the fault, never
// also an `http.client_error` (that event is for authenticated peers only).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { connect } from "node:net";
import { freshPki, start, type TestPki, type TestService, type LogLine } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

let pki: TestPki;
let pay: TestService;

before(async () => {
  pki = await freshPki();
  pay = await start(pki, "payment", { watch: false, limits: { handshakeTimeoutMs: 400 } });
});

after(async () => {
  await pay.svc.close();
  pki.cleanup();
});

/** Sends `bytes` (or nothing) on a raw TCP connection and waits until the server closes it. */
function rawSocket(bytes: string | Buffer | null): Promise<number> {
  return new Promise((resolve) => {
    const s = connect(pay.svc.port, "127.0.0.1", () => {
      if (bytes !== null) s.write(bytes);
    });
    const local = new Promise<number>((r) => s.once("connect", () => r(s.localPort!)));
    s.on("error", () => {});
    s.on("close", () => void local.then(resolve));
    s.resume();
  });
}

function openssl(args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = execFile("openssl", args, { timeout: 10_000 }, (_e, stdout, stderr) => resolve(stdout + stderr));
    child.stdin?.end();
  });
}

/** The lines a failure produced, once the server has settled (a late second line would show). */
async function linesOf(since: number, first: (l: LogLine) => boolean): Promise<LogLine[]> {
  await pay.logs.wait(first, 3_000, since);
  await new Promise((r) => setTimeout(r, 150));
  return pay.logs.lines.slice(since);
}

test("plain HTTP on the TLS port: one line, protocol, with the remote address", async () => {
  const since = pay.logs.lines.length;
  const port = await rawSocket("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const lines = await linesOf(since, ev("tls.handshake_failed"));
  assert.deepEqual(
    lines.map((l) => [l.event, l.reason]),
    [["tls.handshake_failed", "protocol"]],
  );
  assert.equal(lines[0]!.remote, `127.0.0.1:${port}`);
  assert.match(String(lines[0]!.msg), /plain HTTP/);
});

test("garbage on the TLS port: one line, protocol", async () => {
  const since = pay.logs.lines.length;
  const port = await rawSocket("\x16\x03\x01\x00\x05garbagegarbagegarbage\x00\xff\xfe");
  const lines = await linesOf(since, ev("tls.handshake_failed"));
  assert.deepEqual(
    lines.map((l) => [l.event, l.reason]),
    [["tls.handshake_failed", "protocol"]],
  );
  assert.equal(lines[0]!.remote, `127.0.0.1:${port}`);
});

test("a socket that never completes a handshake: one line, handshake_timeout, with the remote address", async () => {
  const since = pay.logs.lines.length;
  const port = await rawSocket(null);
  const lines = await linesOf(since, ev("tls.handshake_failed"));
  assert.deepEqual(
    lines.map((l) => [l.event, l.reason]),
    [["tls.handshake_failed", "handshake_timeout"]],
  );
  assert.equal(lines[0]!.remote, `127.0.0.1:${port}`);
  assert.match(String(lines[0]!.msg), /did not complete a TLS handshake in 0\.4 s/);
});

test("a client offering TLS 1.0 only: one line, old_tls_version, said in words", async () => {
  const since = pay.logs.lines.length;
  const order = pki.ca.paths.leaf("order.internal");
  const out = await openssl([
    "s_client",
    "-connect",
    `127.0.0.1:${pay.svc.port}`,
    "-tls1",
    "-cipher",
    "DEFAULT@SECLEVEL=0",
    "-cert",
    order.cert,
    "-key",
    order.key,
  ]);
  assert.match(out, /alert protocol version|unsupported protocol|wrong version/i);
  const lines = await linesOf(since, ev("tls.handshake_failed"));
  assert.deepEqual(
    lines.map((l) => [l.event, l.reason]),
    [["tls.handshake_failed", "old_tls_version"]],
  );
  assert.match(String(lines[0]!.remote), /^127\.0\.0\.1:\d+$/);
  assert.match(String(lines[0]!.msg), /the client offered TLS 1\.0; the mesh requires TLS 1\.2 or later/);
});
