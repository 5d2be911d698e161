// The TLS parameters a service uses as server and as client: TLS 1.2 with ECDHE and AEAD
// suites only (no CBC, no SHA-1 MAC), checked with real openssl and a real undici call.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import { freshPki, start, LogSink, type TestPki, type TestService } from "./mesh-fixtures.ts";
import { Upstreams, UpstreamError } from "../services/mesh/client.ts";
import { loadMaterial, materialPaths } from "../services/mesh/material.ts";
import { createLogger } from "../services/mesh/log.ts";
import { ev } from "./helpers/events.ts";

let pki: TestPki;
let pay: TestService;

before(async () => {
  pki = await freshPki();
  pay = await start(pki, "payment", { watch: false });
});

after(async () => {
  await pay.svc.close();
  pki.cleanup();
});

/** openssl s_client in a child process (never spawnSync: the server lives in this process). */
function sClient(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const order = pki.ca.paths.leaf("order.internal");
    const child = execFile(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${pay.svc.port}`,
        "-servername",
        "payment.internal",
        "-CAfile",
        pki.ca.paths.bundle,
        "-cert",
        order.cert,
        "-key",
        order.key,
        ...args,
      ],
      { timeout: 10_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
    child.stdin?.end();
  });
}

test("TLS 1.2 with an AEAD suite is accepted (control)", async () => {
  for (const cipher of ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"]) {
    const r = await sClient(["-tls1_2", "-cipher", cipher]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`Cipher is ${cipher}`));
  }
});

test("TLS 1.2 with a CBC or SHA-1 suite is refused in the handshake", async () => {
  for (const cipher of [
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
  ]) {
    const since = pay.logs.lines.length;
    const r = await sClient(["-tls1_2", "-cipher", cipher]);
    assert.notEqual(r.code, 0, `${cipher} was accepted:\n${r.out}`);
    assert.match(r.out, /handshake failure|no shared cipher/, cipher);
    const l = await pay.logs.wait(ev("tls.handshake_failed"), 3_000, since);
    assert.equal(l.tlsCode, "ERR_SSL_NO_SHARED_CIPHER", cipher);
    assert.equal(l.reason, "no_shared_cipher", cipher);
    assert.match(
      String(l.msg),
      /offered no cipher suite the mesh accepts \(TLS 1\.2 needs ECDHE with AES-GCM or ChaCha20-Poly1305, never CBC or SHA-1/,
    );
    assert.match(String(l.remote), /^127\.0\.0\.1:\d+$/);
    // One failure, one line.
    assert.equal(pay.logs.lines.slice(since).length, 1, JSON.stringify(pay.logs.lines.slice(since)));
  }
});

test("as a client, a service refuses a callee that offers only CBC suites", async () => {
  const p = pki.ca.paths.leaf("payment.internal");
  const weak: TlsServer = createTlsServer(
    {
      cert: readFileSync(p.cert),
      key: readFileSync(p.key),
      ciphers: "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA",
      maxVersion: "TLSv1.2",
    },
    (s) => s.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"),
  );
  let handshakes = 0;
  weak.on("secureConnection", () => handshakes++);
  await new Promise<void>((r) => weak.listen(0, "127.0.0.1", r));
  const port = (weak.address() as { port: number }).port;
  const logs = new LogSink();
  const up = new Upstreams(
    "order",
    loadMaterial(materialPaths(pki.dir, "order.internal"), "order.internal"),
    { payment: `127.0.0.1:${port}` },
    createLogger("order", logs),
  );
  try {
    await assert.rejects(up.call("payment", "GET", "/healthz"), (e: unknown) => e instanceof UpstreamError);
    assert.equal(handshakes, 0);
    const l = await logs.wait(ev("upstream.failed"));
    assert.equal(l.upstream, "payment");
    assert.equal(l.code, "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE");
    assert.equal(l.reason, "server_tls_mismatch");
    assert.match(
      String(l.msg),
      /agreed on no TLS version or cipher suite \(the mesh allows TLS 1\.2 or later, and in TLS 1\.2 only ECDHE suites with AES-GCM or ChaCha20-Poly1305\)/,
    );
  } finally {
    await up.close();
    await new Promise((r) => weak.close(r));
  }
});

/** The certificates a server sends, in order, as `openssl s_client -showcerts` prints them. */
async function sentChain(port: number, from: TestPki): Promise<Array<{ subject: string; issuer: string }>> {
  const order = from.ca.paths.leaf("order.internal");
  const out = await new Promise<string>((resolve) => {
    const child = execFile(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${port}`,
        "-servername",
        "payment.internal",
        "-showcerts",
        "-cert",
        order.cert,
        "-key",
        order.key,
      ],
      { timeout: 10_000 },
      (_e, stdout, stderr) => resolve(stdout + stderr),
    );
    child.stdin?.end();
  });
  const chain = out.slice(out.indexOf("Certificate chain"), out.indexOf("---\nServer certificate"));
  return [...chain.matchAll(/^ *\d+ s:(.*)\n *i:(.*)$/gm)].map((m) => ({
    subject: m[1]!.trim(),
    issuer: m[2]!.trim(),
  }));
}

test("a service sends its leaf and intermediates, never the root, even from a full-chain file, as server and as caller", async () => {
  const two = await freshPki(undefined, "Chain Root CA");
  try {
    await two.ca.createIntermediate({ name: "Chain Issuing CA" });
    await two.ca.renew({ domain: "payment.internal" });
    await two.ca.renew({ domain: "order.internal" });
    // A "full chain" file: leaf, intermediate, and the self-signed root at the end.
    const p = two.ca.paths.leaf("payment.internal");
    writeFileSync(p.cert, readFileSync(p.cert, "utf8") + readFileSync(two.ca.paths.root(1).cert, "utf8"));
    const svc = await start(two, "payment", { watch: false });
    try {
      assert.deepEqual(await sentChain(svc.svc.port, two), [
        { subject: "CN = payment.internal", issuer: "CN = Chain Issuing CA" },
        { subject: "CN = Chain Issuing CA", issuer: "CN = Chain Root CA" },
      ]);
    } finally {
      await svc.svc.close();
    }

    // As a caller too: a server that records the chain the client sent, as sent.
    const o = two.ca.paths.leaf("order.internal");
    writeFileSync(o.cert, readFileSync(o.cert, "utf8") + readFileSync(two.ca.paths.root(1).cert, "utf8"));
    const p2 = two.ca.paths.leaf("payment.internal");
    const seen: string[][] = [];
    const recorder = createTlsServer(
      {
        cert: readFileSync(p2.cert),
        key: readFileSync(p2.key),
        ca: readFileSync(two.ca.paths.bundle),
        requestCert: true,
        rejectUnauthorized: false,
      },
      (s) => {
        const chain: string[] = [];
        for (let c = s.getPeerX509Certificate(), n = 0; c && n < 5; c = c.issuerCertificate, n++) chain.push(c.subject);
        seen.push(chain);
        s.once("data", () =>
          s.end(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
          ),
        );
      },
    );
    await new Promise<void>((r) => recorder.listen(0, "127.0.0.1", r));
    const up = new Upstreams(
      "order",
      loadMaterial(materialPaths(two.dir, "order.internal"), "order.internal"),
      { payment: `127.0.0.1:${(recorder.address() as { port: number }).port}` },
      createLogger("order", new LogSink()),
    );
    try {
      const r = await up.call("payment", "GET", "/healthz");
      assert.equal(r.status, 200);
      assert.deepEqual(seen, [["CN=order.internal", "CN=Chain Issuing CA"]]);
    } finally {
      await up.close();
      await new Promise((r) => recorder.close(r));
    }
  } finally {
    two.cleanup();
  }
});
