// Every kind of peer the mesh must refuse is refused in the TLS handshake, with the right
// reason in a parsed `tls.handshake_failed` line, and no HTTP byte of it is ever parsed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { join } from "node:path";
import { CertificateAuthority } from "../ca/index.ts";
import {
  freshPki,
  start,
  call,
  identity,
  type TestPki,
  type TestService,
  type Identity,
  type LogLine,
  LogSink,
} from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";
import { Upstreams, UpstreamError } from "../services/mesh/client.ts";
import { loadMaterial, materialPaths } from "../services/mesh/material.ts";
import { createLogger } from "../services/mesh/log.ts";

let pki: TestPki;
let foreign: TestPki;
let pay: TestService;
let port: number;

before(async () => {
  pki = await freshPki();
  foreign = await freshPki(undefined, "Foreign CA");
  // Certificates that are bad in time or revoked, all from the mesh's own CA.
  const past = await CertificateAuthority.open({ dir: pki.dir, now: () => new Date("2020-01-01T00:00:00Z") });
  await past.issue({ domain: "expired.internal", days: 30 });
  past.close();
  const future = await CertificateAuthority.open({ dir: pki.dir, now: () => new Date(Date.now() + 400 * 86_400_000) });
  await future.issue({ domain: "future.internal", days: 30 });
  future.close();
  await pki.ca.issue({ domain: "gone.internal" });
  await pki.ca.revoke({ domain: "gone.internal", reason: "keyCompromise" });
  pay = await start(pki, "payment", { limits: { handshakeTimeoutMs: 600 } });
  port = pay.svc.port;
});

after(async () => {
  await pay.svc.close();
  pki.cleanup();
  foreign.cleanup();
});

function leaf(name: string, from: TestPki = pki): Identity {
  const p = from.ca.paths.leaf(name);
  return { cert: readFileSync(p.cert), key: readFileSync(p.key) };
}

/** A leaf signed by the mesh root with openssl, for shapes the CA rightly refuses to make. */
function opensslLeaf(stem: string, subj: string, san: string): Identity {
  const root = pki.ca.paths.root(1);
  const d = pki.root;
  const key = join(d, `${stem}.key`);
  const csr = join(d, `${stem}.csr`);
  const crt = join(d, `${stem}.crt`);
  const ext = join(d, `${stem}.ext`);
  execFileSync(
    "openssl",
    [
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      key,
      "-out",
      csr,
      "-subj",
      subj,
    ],
    { stdio: "pipe" },
  );
  writeFileSync(
    ext,
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`,
  );
  execFileSync(
    "openssl",
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      root.cert,
      "-CAkey",
      root.key,
      "-set_serial",
      `0x${Date.now().toString(16)}`,
      "-days",
      "5",
      "-extfile",
      ext,
      "-out",
      crt,
    ],
    { stdio: "pipe" },
  );
  return { cert: readFileSync(crt), key: readFileSync(key) };
}

async function refused(
  who: Identity | null,
  opts: { maxVersion?: "TLSv1.2" | "TLSv1.3"; told?: boolean } = {},
): Promise<LogLine> {
  const since = pay.logs.lines.length;
  const r = await call(pki, port, "payment.internal", who, "POST", "/charge", { orderId: "x", amount: 1 }, opts);
  // A refusal for the certificate's dates is told (callee-clock.ts): a 400 before any request is read.
  if (opts.told)
    assert.ok("status" in r && r.status === 400, `expected the refusal told as 400, got ${JSON.stringify(r)}`);
  else assert.ok("error" in r, `expected the connection to be refused, got ${JSON.stringify(r)}`);
  const line = await pay.logs.wait(ev("tls.handshake_failed"), 3_000, since);
  // Nothing of the request reached HTTP handling.
  assert.equal(
    pay.logs.lines.slice(since).filter((l) => l.event === "request" || l.event === "authz.denied").length,
    0,
  );
  return line;
}

test("a service's own caller is served (control)", async () => {
  const r = await call(pki, port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
  assert.deepEqual(r, { status: 200, body: { service: "payment", caller: "order" } });
});

test("no client certificate, TLS 1.3 and TLS 1.2: no_client_cert", async () => {
  for (const maxVersion of ["TLSv1.3", "TLSv1.2"] as const) {
    const l = await refused(null, { maxVersion });
    assert.equal(l.reason, "no_client_cert", maxVersion);
    assert.match(String(l.remote), /^127\.0\.0\.1:\d+$/);
    assert.match(String(l.msg), /sent no certificate/);
  }
});

test("a certificate from another CA: unknown_ca, naming the CAs this service trusts", async () => {
  const l = await refused(leaf("order.internal", foreign));
  assert.equal(l.reason, "unknown_ca");
  const peer = l.peer as { subject: string; issuer: string; serial: string };
  assert.equal(peer.subject, "CN=order.internal");
  assert.equal(peer.issuer, "CN=Foreign CA");
  assert.match(peer.serial, /^[0-9a-f]{16,}$/);
  assert.deepEqual(l.trusts, ["CN=Mesh Test CA"]);
  assert.match(
    String(l.msg),
    /signed by CN=Foreign CA, a CA this service does not trust; payment trusts only: CN=Mesh Test CA/,
  );
});

test("expired and not-yet-valid certificates", async () => {
  const e = await refused(leaf("expired.internal"), { told: true });
  assert.equal(e.reason, "expired");
  assert.equal((e.peer as { subject: string }).subject, "CN=expired.internal");
  const f = await refused(leaf("future.internal"), { told: true });
  assert.equal(f.reason, "not_yet_valid");
});

test("an expired caller told so by a callee on the same clock: its own certificate, not a clock", async () => {
  const logs = new LogSink();
  const up = new Upstreams(
    "expired",
    loadMaterial(materialPaths(pki.dir, "expired.internal"), "expired.internal"),
    { payment: `127.0.0.1:${port}` },
    createLogger("order", logs),
  );
  try {
    await assert.rejects(
      up.call("payment", "GET", "/healthz"),
      (e: unknown) => e instanceof UpstreamError && e.reason === "rejected_in_handshake",
    );
    const l = await logs.waitEvent("upstream.failed");
    assert.equal(l.code, "MESH_REFUSED");
    assert.equal(l.refusedFor, "expired");
    assert.equal(l.clock, "own");
    assert.ok(Math.abs(Number(l.clock_offset_ms)) < 3_000, JSON.stringify(l));
    assert.match(
      String(l.msg),
      /^payment refused our certificate as expired: by this host's clock too \(it expired at 2020-/,
    );
  } finally {
    await up.close();
  }
});

test("a revoked certificate: revoked", async () => {
  const l = await refused(leaf("gone.internal"));
  assert.equal(l.reason, "revoked");
  assert.equal(l.tlsCode, "CERT_REVOKED");
});

test("the CA certificate used as a client certificate: bad_certificate", async () => {
  const root = pki.ca.paths.root(1);
  const l = await refused({ cert: readFileSync(root.cert), key: readFileSync(root.key) });
  assert.equal(l.reason, "bad_certificate");
  assert.match(String(l.msg), /CA certificate/);
});

test("ambiguous identities: two CNs, a CN not among the SANs", async () => {
  const two = await refused(opensslLeaf("twocn", "/CN=order.internal/CN=payment.internal", "DNS:order.internal"));
  assert.equal(two.reason, "ambiguous_identity");
  assert.match(String(two.msg), /2 common names/);
  const mismatch = await refused(opensslLeaf("mismatch", "/CN=order.internal", "DNS:inventory.internal"));
  assert.equal(mismatch.reason, "ambiguous_identity");
  assert.match(String(mismatch.msg), /not among the certificate's DNS SANs/);
});

function rawSocket(bytes: string | null): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1", () => {
      if (bytes !== null) s.write(bytes);
    });
    s.on("error", () => {});
    s.on("close", () => resolve());
    s.resume();
  });
}

test("plain HTTP, garbage and idle sockets are dropped without disturbing other clients", async () => {
  let since = pay.logs.lines.length;
  await rawSocket("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await pay.logs.wait(ev("tls.handshake_failed"), 3_000, since)).reason, "protocol");
  since = pay.logs.lines.length;
  await rawSocket("\x16\x03\x01\x00\x05garbagegarbagegarbage\x00\xff\xfe");
  assert.equal((await pay.logs.wait(ev("tls.handshake_failed"), 3_000, since)).reason, "protocol");

  // Five idle sockets that never speak; a real client is served meanwhile, promptly.
  since = pay.logs.lines.length;
  const t0 = Date.now();
  const idle = Array.from({ length: 5 }, () => rawSocket(null));
  const ok = await call(pki, port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
  assert.equal("status" in ok && ok.status, 200);
  assert.ok(Date.now() - t0 < 600, "the good client did not wait for the idle ones");
  await Promise.all(idle); // closed by the server's handshake timeout
  assert.ok(Date.now() - t0 < 3_000);
  const timeouts = pay.logs.lines
    .slice(since)
    .filter(ev("tls.handshake_failed", (l) => l.reason === "handshake_timeout"));
  assert.equal(timeouts.length, 5);
});

function curl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile("curl", ["-sS", "--max-time", "5", ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

test("curl with --cacert (never -k) is served, and refused without a certificate", async () => {
  const order = pki.ca.paths.leaf("order.internal");
  const base = ["--cacert", pki.ca.paths.bundle, "--resolve", `payment.internal:${port}:127.0.0.1`];
  const ok = await curl([
    ...base,
    "--cert",
    order.cert,
    "--key",
    order.key,
    "-H",
    "content-type: application/json",
    "-d",
    '{"orderId":"curl-1","amount":250}',
    `https://payment.internal:${port}/charge`,
  ]);
  assert.equal(ok.code, 0, ok.out);
  assert.equal(JSON.parse(ok.out).status, "captured");
  const since = pay.logs.lines.length;
  const no = await curl([...base, `https://payment.internal:${port}/charge`]);
  assert.notEqual(no.code, 0);
  assert.equal((await pay.logs.wait(ev("tls.handshake_failed"), 3_000, since)).reason, "no_client_cert");
});

/** A TLS connection with `who`'s certificate that sends `bytes` and then nothing more. */
function stalledPeer(port: number, who: Identity, bytes: string | null): Promise<{ answer: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let answer = "";
    const s = tlsConnect(
      { host: "127.0.0.1", port, servername: "payment.internal", ca: readFileSync(pki.ca.paths.bundle), ...who },
      () => {
        if (bytes !== null) s.write(bytes);
      },
    );
    s.setEncoding("utf8");
    s.on("data", (c: string) => (answer += c));
    s.on("error", () => {});
    s.on("close", () => resolve({ answer, ms: Date.now() - t0 }));
  });
}

test("after the handshake, stalled, oversized and malformed requests are answered, dropped and logged", async () => {
  const strict = await start(pki, "payment", {
    limits: { headersTimeoutMs: 300, requestTimeoutMs: 600, maxHeaderSize: 4096, maxBodyBytes: 1024 },
  });
  const p = strict.svc.port;
  const order = identity(pki, "order");
  try {
    const stalled = [
      stalledPeer(p, order, null), // says nothing at all
      stalledPeer(p, order, "GET /healthz HTTP/1.1\r\nHost: payment.internal\r\n"), // headers never end
      stalledPeer(
        p,
        order,
        'POST /charge HTTP/1.1\r\nHost: payment.internal\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"orderId":',
      ), // body never ends
    ];
    // Meanwhile a well-behaved caller is served at once.
    const ok = await call(pki, p, "payment.internal", order, "GET", "/healthz");
    assert.equal("status" in ok && ok.status, 200);
    for (const r of await Promise.all(stalled)) {
      assert.match(r.answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
      assert.ok(r.ms < 3_000, `closed after ${r.ms} ms`);
    }
    const timeouts = strict.logs.lines.filter(ev("http.client_error", (l) => l.reason === "request_timeout"));
    assert.equal(timeouts.length, 3);
    assert.equal(timeouts[0]!.peer, "order");
    assert.match(
      String(timeouts[0]!.msg),
      /did not send its request in time \(headers within 0\.3 s, the whole request within 0\.6 s\)/,
    );

    const big = await stalledPeer(
      p,
      order,
      `GET /healthz HTTP/1.1\r\nHost: payment.internal\r\nx-padding: ${"a".repeat(8000)}\r\n\r\n`,
    );
    assert.match(big.answer, /^HTTP\/1\.1 431 /);
    const tooLarge = await strict.logs.wait(
      (l) => l.event === "http.client_error" && l.reason === "headers_too_large",
      3_000,
    );
    assert.match(String(tooLarge.msg), /larger than 4096 bytes/);

    const junk = await stalledPeer(p, order, "GET /healthz HTTP/1.1\r\nHost payment.internal\r\n\r\n");
    assert.match(junk.answer, /^HTTP\/1\.1 400 /);
    assert.equal(
      (
        await strict.logs.wait(
          ev("http.client_error", (l) => l.reason === "bad_request"),
          3_000,
        )
      ).peer,
      "order",
    );

    const body = await call(pki, p, "payment.internal", order, "POST", "/charge", {
      orderId: "x".repeat(2000),
      amount: 1,
    });
    assert.equal("status" in body && body.status, 413);
    assert.equal("status" in body && body.body.error, "body_too_large");
    // No body reached the handler; the access log tells what each caller was answered.
    const charges = strict.logs.lines.filter(ev("request", (l) => l.path === "/charge"));
    assert.deepEqual(
      charges.map((l) => [l.status, l.abandoned]),
      [
        [408, true],
        [413, undefined],
      ],
    );
  } finally {
    await strict.svc.close();
  }
});
