// When a service's own certificate changes it drains older connections without losing a request.
// An idle keep-alive connection used to be ended one second after the change; a caller that
// picked it from its pool at that moment (a loaded machine: the FIN not read yet) lost its
// request, "other side closed" (the online drill lost three orders that way in a safe phase).
// Now an idle one is left to the keep-alive timeout, which the mesh's callers stay under, and
// its next request is answered with "Connection: close".
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect, type TLSSocket } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { freshPki, start, identity } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

/** Reads one HTTP/1.1 response (headers and a Content-Length body) from the socket. */
function response(sock: TLSSocket, ms = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const done = (err?: Error) => {
      clearTimeout(timer);
      sock.off("data", onData);
      sock.off("close", onClose);
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (d: Buffer) => {
      text += d.toString("latin1");
      const head = text.indexOf("\r\n\r\n");
      const length = /content-length: *(\d+)/i.exec(text);
      if (head >= 0 && length && text.length >= head + 4 + Number(length[1])) done();
    };
    const onClose = () => done(new Error(`connection closed with ${JSON.stringify(text.slice(0, 80))} read`));
    const timer = setTimeout(() => done(new Error("no answer")), ms);
    sock.on("data", onData);
    sock.once("close", onClose);
  });
}

test("own certificate renewed: a request sent on an idle keep-alive connection after the drain's grace is answered (with Connection: close), not dropped", async () => {
  const pki = await freshPki();
  const pay = await start(pki, "payment", { limits: { drainGraceMs: 300 } });
  try {
    const order = identity(pki, "order");
    const sock = connect({
      host: "127.0.0.1",
      port: pay.svc.port,
      servername: "payment.internal",
      ca: readFileSync(pki.ca.paths.bundle),
      cert: order.cert,
      key: order.key,
    });
    await new Promise<void>((resolve, reject) => sock.once("secureConnect", () => resolve()).once("error", reject));
    sock.on("error", () => {});
    const get = "GET /healthz HTTP/1.1\r\nHost: payment.internal\r\n\r\n";
    sock.write(get);
    assert.match(await response(sock), /^HTTP\/1\.1 200 /);

    const since = pay.logs.lines.length;
    await pki.ca.renew({ domain: "payment.internal" });
    assert.ok(pay.svc.reloadTls());
    await pay.logs.wait(
      ev("tls.connections_closed", (l) => l.why === "this service's certificate changed"),
      5_000,
      since,
    );
    // Past the grace, well within the keep-alive timeout (5 s): a pooled connection a caller may pick.
    await sleep(900);
    sock.write(get);
    const second = await response(sock);
    assert.match(second, /^HTTP\/1\.1 200 /);
    assert.match(second, /\r\nConnection: close\r\n/i, "told to go: the next connection judges the new certificate");
    sock.destroy();
  } finally {
    await pay.svc.close();
    pki.cleanup();
  }
});
