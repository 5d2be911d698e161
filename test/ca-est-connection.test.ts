// The renewal path keeps per connection what the handshake established (the presented
// certificate, parsed once), never the verdict: on one keep-alive connection a certificate
// superseded or revoked after its first request is refused on the next. The server refuses
// TLS 1.2 renegotiation, so a connection's certificate cannot change under the cache.
import assert from "node:assert/strict";
import { Agent, request } from "node:https";
import { connect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { createToken } from "../ca/tokens.ts";
import { PKCS10, certsOf, est, makeCsr, pemOf, startCa, type TestCa } from "./helpers/est.ts";

const REENROL = "/.well-known/est/simplereenroll";

describe("what the CA server keeps per TLS connection", () => {
  let t: TestCa;
  let cert: string;
  let key: string;
  before(async () => {
    t = await startCa();
    const csr = await makeCsr("conn.internal");
    const r = await est(t.server.url, {
      method: "POST",
      path: "/.well-known/est/simpleenroll",
      headers: { ...PKCS10, Authorization: `Bearer ${createToken(t.ca, { domain: "conn.internal" }).token}` },
      body: csr.body,
      ca: t.bundle(),
    });
    assert.equal(r.status, 200, r.body);
    cert = pemOf(certsOf(r.body));
    key = csr.keyPem;
  });
  after(() => t?.stop());

  /** A POST on the agent's one connection; returns the status, body and the client's local port (the connection). */
  function post(agent: Agent, body: string): Promise<{ status: number; body: string; port: number }> {
    return new Promise((resolve, reject) => {
      const req = request(`${t.server.url}${REENROL}`, { method: "POST", agent, headers: PKCS10 }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, port: req.socket!.localPort! }));
      });
      req.on("error", reject);
      req.end(body);
    });
  }

  it("a certificate superseded, then one revoked, on the same connection: refused at its next request", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: t.bundle(), cert, key });
    try {
      const first = await post(agent, (await makeCsr("conn.internal")).body);
      assert.equal(first.status, 200, first.body);
      // Same connection, same presented certificate, now superseded by the renewal it just made.
      const second = await post(agent, (await makeCsr("conn.internal")).body);
      assert.equal(second.port, first.port, "the same connection");
      assert.equal(second.status, 403);
      assert.match(second.body, /already renewed/);
    } finally {
      agent.destroy();
    }
  });

  it("a certificate revoked between two requests on one connection: refused at the second", async () => {
    const csr = await makeCsr("conn2.internal");
    const r = await est(t.server.url, {
      method: "POST",
      path: "/.well-known/est/simpleenroll",
      headers: { ...PKCS10, Authorization: `Bearer ${createToken(t.ca, { domain: "conn2.internal" }).token}` },
      body: csr.body,
      ca: t.bundle(),
    });
    assert.equal(r.status, 200, r.body);
    const agent = new Agent({
      keepAlive: true,
      maxSockets: 1,
      ca: t.bundle(),
      cert: pemOf(certsOf(r.body)),
      key: csr.keyPem,
    });
    try {
      // Authenticated and current: refused only for bringing the same key.
      const first = await post(agent, (await makeCsr("conn2.internal", { keys: csr.keys })).body);
      assert.equal(first.status, 403);
      assert.match(first.body, /must bring a new key/);
      const serial = t.ca.ledger.current("conn2.internal")!.serial;
      t.ca.ledger.write(() => t.ca.ledger.markRevoked(serial, new Date().toISOString(), "keyCompromise"));
      const second = await post(agent, (await makeCsr("conn2.internal")).body);
      assert.equal(second.port, first.port, "the same connection");
      assert.equal(second.status, 403);
      assert.match(second.body, /revoked/);
    } finally {
      agent.destroy();
    }
  });

  it("TLS 1.2 renegotiation is refused: a connection's certificate cannot change", async () => {
    const sock = connect({
      host: "127.0.0.1",
      port: Number(new URL(t.server.url).port),
      ca: t.bundle(),
      cert,
      key,
      servername: "ca.internal",
      maxVersion: "TLSv1.2",
    });
    await new Promise<void>((resolve, reject) => {
      sock.once("secureConnect", () => resolve());
      sock.once("error", reject);
    });
    // Renegotiate, then ask for the bundle on the same connection: refused and closed, never served.
    const outcome = await new Promise<string>((resolve) => {
      let got = "";
      sock.setEncoding("latin1");
      sock.on("data", (d: string) => (got += d));
      sock.once("close", () => resolve(`closed: ${got.split("\r\n")[0]}`));
      sock.once("error", () => resolve(`closed: ${got.split("\r\n")[0]}`));
      sock.renegotiate({ rejectUnauthorized: false }, () => {
        sock.write("GET /.well-known/est/cacerts HTTP/1.1\r\nHost: ca.internal\r\n\r\n");
      });
      setTimeout(() => resolve(`still open: ${got.split("\r\n")[0]}`), 10_000).unref();
    });
    sock.destroy();
    assert.match(outcome, /^closed: (HTTP\/1\.1 400|$)/, "refused and closed, not served");
  });
});
