// The renewal path keeps per connection what the handshake established (the presented
// certificate, parsed once), never the verdict: on one keep-alive connection a certificate
// superseded or revoked after its first request is refused on the next. The server refuses
// TLS 1.2 renegotiation, so a connection's certificate cannot change under the cache, and
// resumes no TLS session (server.ts: no session tickets), so no later connection can carry an
// earlier handshake's certificate either.
import assert from "node:assert/strict";
import { Agent, request } from "node:https";
import { connect, type ConnectionOptions, type TLSSocket } from "node:tls";
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

  /** A raw TLS connection to the server that POSTs one renewal; whether it resumed, the session it got, the status line. */
  function renewOver(
    opts: ConnectionOptions,
    body: string,
  ): Promise<{ reused: boolean; session: Buffer | undefined; status: string }> {
    return new Promise((resolve, reject) => {
      let session: Buffer | undefined;
      let reused = false;
      let got = "";
      const sock: TLSSocket = connect({
        host: "127.0.0.1",
        port: Number(new URL(t.server.url).port),
        ca: t.bundle(),
        servername: "ca.internal",
        ...opts,
      });
      sock.on("session", (s: Buffer) => (session = s));
      sock.once("secureConnect", () => {
        reused = sock.isSessionReused();
        sock.write(
          `POST ${REENROL} HTTP/1.1\r\nHost: ca.internal\r\nContent-Type: application/pkcs10\r\n` +
            `Content-Transfer-Encoding: base64\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      });
      sock.setEncoding("latin1");
      sock.on("data", (d: string) => (got += d));
      sock.once("error", reject);
      sock.once("close", () => resolve({ reused, session, status: got.split("\r\n")[0] ?? "" }));
    });
  }

  for (const version of ["TLSv1.3", "TLSv1.2"] as const) {
    it(`no TLS session is resumed (${version}): a renewal offering the session of a since revoked certificate is a full handshake, and refused`, async () => {
      const name = `resume-${version === "TLSv1.3" ? "13" : "12"}.internal`;
      const csr = await makeCsr(name);
      const r = await est(t.server.url, {
        method: "POST",
        path: "/.well-known/est/simpleenroll",
        headers: { ...PKCS10, Authorization: `Bearer ${createToken(t.ca, { domain: name }).token}` },
        body: csr.body,
        ca: t.bundle(),
      });
      assert.equal(r.status, 200, r.body);
      const tls = { cert: pemOf(certsOf(r.body)), key: csr.keyPem, minVersion: version, maxVersion: version };
      // The first connection authenticates with the certificate; what it is offered to resume with is kept.
      const first = await renewOver(tls, (await makeCsr(name, { keys: csr.keys })).body);
      assert.match(first.status, /^HTTP\/1\.1 403/, "current, refused only for its same key");
      assert.ok(first.session, "the client was given a session to offer");
      const serial = t.ca.ledger.current(name)!.serial;
      t.ca.ledger.write(() => t.ca.ledger.markRevoked(serial, new Date().toISOString(), "keyCompromise"));
      // Offering that session, even without a certificate of its own: a full handshake, so no certificate at all.
      const bare = await renewOver(
        { session: first.session, minVersion: version, maxVersion: version },
        (await makeCsr(name)).body,
      );
      assert.equal(bare.reused, false, "the server resumed a session");
      assert.match(bare.status, /^HTTP\/1\.1 401/, bare.status);
      // And with the revoked certificate: a full handshake, the revocation found.
      const again = await renewOver({ ...tls, session: first.session }, (await makeCsr(name)).body);
      assert.equal(again.reused, false, "the server resumed a session");
      assert.match(again.status, /^HTTP\/1\.1 403/, again.status);
    });
  }

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
