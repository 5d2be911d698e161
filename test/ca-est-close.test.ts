// Closing the CA server while a service opens its CRL long poll: the call that comes in while
// the server closes (its TLS handshake was under way, so closeAllConnections could not see it) is
// answered at once, not held for its wait. Held, it kept close() (SIGTERM, a test's cleanup)
// waiting up to 55 s: 25 s in every identity test that closed the CA right after a renewal.
import assert from "node:assert/strict";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { test } from "node:test";
import { HeldCalls } from "../ca/server/crl-watch.ts";
import { est, startCa } from "./helpers/est.ts";
import type { ServerResponse } from "node:http";

test("HeldCalls: after close() nothing more is held (the caller answers at once)", () => {
  const calls = new HeldCalls();
  const res = { once: () => res } as unknown as ServerResponse;
  let answered = 0;
  assert.equal(
    calls.hold("127.0.0.1", 60_000, res, () => answered++),
    true,
  );
  calls.close();
  assert.equal(calls.size, 0);
  assert.equal(answered, 0, "a call held at close goes with its connection, unanswered");
  assert.equal(
    calls.hold("127.0.0.1", 60_000, res, () => answered++),
    false,
    "a call arriving after close is not held",
  );
  assert.equal(calls.size, 0);
});

test("a CRL long poll whose handshake spans the server's close is answered, and close() waits neither for its 30 s nor for a keep-alive", {
  timeout: 30_000,
}, async () => {
  const t = await startCa();
  try {
    const ca = t.bundle();
    const url = new URL(t.server.url);
    const etag = String((await est(t.server.url, { path: "/.well-known/est/crls", ca })).headers.etag);
    // The TCP connection is accepted; its TLS handshake has not begun when close() starts.
    const raw = netConnect({ host: url.hostname, port: Number(url.port) });
    await new Promise<void>((resolve, reject) => raw.once("connect", resolve).once("error", reject));
    const t0 = Date.now();
    const closed = t.server.close().then(() => Date.now() - t0);
    const tls = tlsConnect({ socket: raw, ca, servername: "localhost", rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => tls.once("secureConnect", resolve).once("error", reject));
    tls.write(`GET /.well-known/est/crls?wait=30 HTTP/1.1\r\nHost: ${url.host}\r\nIf-None-Match: ${etag}\r\n\r\n`);
    let got = "";
    tls.setEncoding("latin1").on("data", (d: string) => (got += d));
    const ended = new Promise<void>((resolve) => tls.once("close", () => resolve()));
    const closeMs = await closed;
    await ended;
    // Not the 30 s wait, nor Node's 5 s keep-alive timeout: the answer closes the connection.
    assert.ok(closeMs < 3_000, `close() took ${closeMs} ms`);
    assert.match(got, /^HTTP\/1\.1 304 /, `answered at once, not held: ${JSON.stringify(got.slice(0, 200))}`);
    assert.match(got, /\r\nconnection: close\r\n/i, "and the connection closed with it");
  } finally {
    await t.stop();
  }
});
