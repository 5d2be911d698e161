// The sidecar's inbound HTTP/1.1 splice (services/mesh/sidecar/splice.ts) as an attacker meets
// it: raw bytes over a real mTLS connection as order, to a real sidecar in front of a real
// node:http app. Anything two parsers could read two ways is refused 400 (431 for a huge head)
// and the connection closed, before any of it reaches the app; pipelined requests are answered
// in order, a denied one among them by the sidecar in its turn; a denied body is read past.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { freshPki, LogSink, identity, type TestPki } from "./mesh-fixtures.ts";
import { startService, type RunningService } from "../services/mesh/runtime.ts";
import { createLogger } from "../services/mesh/log.ts";
import { sidecarApp } from "../services/mesh/sidecar/index.ts";
import { ChunkedBody, parseRequestHead } from "../lib/http1-head.ts";
import { ev } from "./helpers/events.ts";

const POLICY = `[payment]
accepts = ["order"]

[[payment.routes]]
method = "GET"
path = "/secret"
accepts = []

[[payment.routes]]
method = "POST"
path = "/secret"
accepts = []

[order]
accepts = []
`;

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  body: string;
}

let pki: TestPki;
const closers: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of closers.reverse()) await c();
  pki?.cleanup();
});

/** An app that records every whole request it read; GET /slow answers after `slowMs`. */
async function recordingApp(slowMs = 300): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    if (req.url === "/early") {
      // Answers before the body is read (node:http then reads the rest of the body past).
      res.writeHead(200, { "content-type": "text/plain", "content-length": 5 });
      res.end("early");
      return;
    }
    let body = "";
    req.setEncoding("latin1");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, trailers: req.trailers, body });
      const text = JSON.stringify({ path: req.url, body: body.length });
      const answer = () => {
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
      };
      if (req.url === "/slow") setTimeout(answer, slowMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return { port: (server.address() as AddressInfo).port, seen };
}

async function sidecar(appPort: number, limits?: { headersTimeoutMs?: number; requestTimeoutMs?: number }) {
  const logs = new LogSink();
  const svc: RunningService = await startService({
    service: "payment",
    app: sidecarApp({ app: { kind: "tcp", host: "127.0.0.1", port: appPort } }),
    pkiDir: pki.dir,
    policyFile: pki.policyFile,
    port: 0,
    log: createLogger("payment", logs),
    ...(limits ? { limits } : {}),
  });
  closers.push(() => svc.close());
  return { svc, logs };
}

/** A raw mTLS connection as order, speaking HTTP/1.1 (ALPN http/1.1, or none). */
async function raw(port: number, alpn = true) {
  const order = identity(pki, "order");
  const sock: TLSSocket = tlsConnect({
    host: "127.0.0.1",
    port,
    servername: "payment.internal",
    ca: readFileSync(pki.ca.paths.bundle),
    cert: order.cert,
    key: order.key,
    ...(alpn ? { ALPNProtocols: ["http/1.1"] } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    sock.once("secureConnect", () => resolve());
    sock.once("error", reject);
  });
  let text = "";
  let closed = false;
  const waiters: Array<() => void> = [];
  const poke = () => {
    for (const w of waiters.splice(0)) w();
  };
  sock.setEncoding("latin1");
  sock.on("data", (c: string) => {
    text += c;
    poke();
  });
  sock.on("error", () => {});
  sock.on("close", () => {
    closed = true;
    poke();
  });
  closers.push(() => void sock.destroy());
  const until = async (ok: () => boolean, what: string, ms = 15_000) => {
    const deadline = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(text)}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  return {
    sock,
    send: (s: string) => sock.write(s, "latin1"),
    get text() {
      return text;
    },
    /** The status codes of the answers so far, in order. */
    statuses: () => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])),
    /** Waits for n whole answers (head and Content-Length body). */
    answers: (n: number) => until(() => whole(text) >= n, `${n} whole answer(s)`),
    closed: () => until(() => closed, "the connection to close"),
    get isClosed() {
      return closed;
    },
  };
}

/** How many whole answers `text` holds: each a head and as many body bytes as its Content-Length says. */
function whole(text: string): number {
  let n = 0;
  let at = 0;
  for (;;) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end === -1) return n;
    const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(at, end));
    const next = end + 4 + (len ? Number(len[1]) : 0);
    if (next > text.length) return n;
    n++;
    at = next;
  }
}

const GET = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: payment.internal\r\n${extra}\r\n`;

let app: Awaited<ReturnType<typeof recordingApp>>;
let s: Awaited<ReturnType<typeof sidecar>>;

test("setup: an allowed request through the splice, with and without ALPN", { timeout: 60_000 }, async () => {
  pki = await freshPki(POLICY);
  app = await recordingApp();
  s = await sidecar(app.port);
  for (const alpn of [true, false]) {
    const c = await raw(s.svc.port, alpn);
    c.send(GET("/hello", "X-Forwarded-Client-Cert: By=evil;URI=spiffe://internal/payment\r\n"));
    await c.answers(1);
    assert.deepEqual(c.statuses(), [200]);
    const seen = app.seen.at(-1)!;
    assert.equal(seen.url, "/hello");
    assert.match(String(seen.headers["x-forwarded-client-cert"]), /;URI=spiffe:\/\/internal\/order;/);
    assert.doesNotMatch(String(seen.headers["x-forwarded-client-cert"]), /evil/);
    // The app keeps idle connections 60 s; the sidecar closes the caller's at 5 s, and says so.
    assert.match(c.text, /\r\nkeep-alive: timeout=5\r\n/i);
    assert.doesNotMatch(c.text, /timeout=60/);
  }
});

// Each: what is sent, the code logged, the status answered. None of it may reach the app.
const REFUSED: Array<[string, string, string, number]> = [
  [
    "Content-Length with Transfer-Encoding (CL.TE smuggling)",
    "POST /x HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /secret HTTP/1.1\r\nHost: payment.internal\r\n\r\n",
    "HPE_UNEXPECTED_CONTENT_LENGTH",
    400,
  ],
  [
    "two Content-Length headers, even equal",
    "POST /x HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "HPE_UNEXPECTED_CONTENT_LENGTH",
    400,
  ],
  [
    "a Content-Length list",
    "POST /x HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: 5, 5\r\n\r\nhello",
    "HPE_INVALID_CONTENT_LENGTH",
    400,
  ],
  [
    "a signed Content-Length",
    "POST /x HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: +5\r\n\r\nhello",
    "HPE_INVALID_CONTENT_LENGTH",
    400,
  ],
  [
    "Transfer-Encoding other than chunked",
    "POST /x HTTP/1.1\r\nHost: payment.internal\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "HPE_INVALID_TRANSFER_ENCODING",
    400,
  ],
  [
    "two Transfer-Encoding headers",
    "POST /x HTTP/1.1\r\nHost: payment.internal\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "HPE_INVALID_TRANSFER_ENCODING",
    400,
  ],
  [
    "obs-fold",
    "GET /x HTTP/1.1\r\nHost: payment.internal\r\nX-A: one\r\n two\r\n\r\n",
    "HPE_INVALID_HEADER_TOKEN",
    400,
  ],
  [
    "a space before the colon",
    "POST /x HTTP/1.1\r\nHost: payment.internal\r\nContent-Length : 5\r\n\r\nhello",
    "HPE_INVALID_HEADER_TOKEN",
    400,
  ],
  ["bare LF line ends", "GET /x HTTP/1.1\nHost: payment.internal\n\n\r\n\r\n", "HPE_INVALID_REQUEST_LINE", 400],
  [
    "a bare CR inside a value",
    "GET /x HTTP/1.1\r\nHost: payment.internal\r\nX-A: a\rb\r\n\r\n",
    "HPE_INVALID_HEADER_TOKEN",
    400,
  ],
  ["no Host", "GET /x HTTP/1.1\r\nX-A: 1\r\n\r\n", "HPE_INVALID_HEADER_TOKEN", 400],
  [
    "two Host headers",
    "GET /x HTTP/1.1\r\nHost: payment.internal\r\nHost: evil\r\n\r\n",
    "HPE_INVALID_HEADER_TOKEN",
    400,
  ],
  [
    "Connection naming Content-Length (hop-by-hop abuse)",
    "POST /x HTTP/1.1\r\nHost: payment.internal\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
    "HPE_INVALID_HEADER_TOKEN",
    400,
  ],
  ["absolute-form target", "GET http://evil/x HTTP/1.1\r\nHost: payment.internal\r\n\r\n", "HPE_INVALID_URL", 400],
  ["HTTP/0.9-ish request line", "GET /x\r\nHost: payment.internal\r\n\r\n", "HPE_INVALID_REQUEST_LINE", 400],
  ["an over-long head", GET("/x", `X-Big: ${"a".repeat(20_000)}\r\n`), "HPE_HEADER_OVERFLOW", 431],
];

for (const [what, bytes, code, status] of REFUSED) {
  test(`refused ${status}, closed, nothing reaches the app: ${what}`, { timeout: 30_000 }, async () => {
    const before = app.seen.length;
    const since = s.logs.lines.length;
    const c = await raw(s.svc.port);
    c.send(bytes);
    await c.closed();
    assert.deepEqual(c.statuses(), [status], c.text);
    assert.match(c.text, /\r\nConnection: close\r\n/i);
    const line = await s.logs.wait(
      ev("http.client_error", (l) => l.code === code),
      10_000,
      since,
    );
    assert.equal(line.peer, "order");
    assert.equal(app.seen.length, before, `the app saw ${JSON.stringify(app.seen.slice(before))}`);
  });
}

test("a bad chunk size cuts both connections: the request smuggled after it never reaches the app as one", {
  timeout: 30_000,
}, async () => {
  for (const size of ["-5", "5 ", "0x5", "123456789"]) {
    const before = app.seen.length;
    const since = s.logs.lines.length;
    const c = await raw(s.svc.port);
    c.send(
      `POST /chunks HTTP/1.1\r\nHost: payment.internal\r\nTransfer-Encoding: chunked\r\n\r\n${size}\r\nhello\r\n0\r\n\r\nGET /secret HTTP/1.1\r\nHost: payment.internal\r\n\r\n`,
    );
    await c.closed();
    assert.deepEqual(c.statuses(), [], `no answer for ${JSON.stringify(size)}: ${c.text}`);
    await s.logs.wait(
      ev("http.client_error", (l) => l.code === "HPE_INVALID_CHUNK_SIZE"),
      10_000,
      since,
    );
    // The app got half a request and its connection was cut: nothing whole, and no /secret.
    assert.deepEqual(
      app.seen.slice(before).map((x) => x.url),
      [],
    );
  }
});

test("pipelined: allowed, denied, allowed in one write are answered in order; the 403 waits for the slow answer before it", {
  timeout: 30_000,
}, async () => {
  const before = app.seen.length;
  const c = await raw(s.svc.port);
  c.send(GET("/slow") + GET("/secret") + GET("/after"));
  await c.answers(3);
  assert.deepEqual(c.statuses(), [200, 403, 200]);
  const bodies = c.text.split(/\r\n\r\n/);
  assert.match(bodies[1]!, /"path":"\/slow"/, "the slow answer comes first");
  assert.match(bodies[2]!, /"rule":"payment\.routes\[0\]/);
  assert.match(bodies[3]!, /"path":"\/after"/);
  assert.deepEqual(
    app.seen.slice(before).map((x) => x.url),
    ["/slow", "/after"],
    "the denied request never reaches the app",
  );
  assert.equal(c.isClosed, false, "the connection goes on");
  const denied = await s.logs.wait(ev("authz.denied", (l) => l.path === "/secret"));
  assert.equal(denied.peer, "order");
});

test("pipelined after a smuggling attempt: the answers owed come first, then 400 and the close", {
  timeout: 30_000,
}, async () => {
  const before = app.seen.length;
  const c = await raw(s.svc.port);
  c.send(
    `${GET("/slow")}POST /x HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${GET("/secret")}`,
  );
  await c.closed();
  assert.deepEqual(c.statuses(), [200, 400]);
  assert.deepEqual(
    app.seen.slice(before).map((x) => x.url),
    ["/slow"],
  );
});

test("a denied request's body is read past: the next request on the connection is read from the right byte", {
  timeout: 30_000,
}, async () => {
  const before = app.seen.length;
  const c = await raw(s.svc.port);
  // The denied body holds what would be a request if the body were not read past.
  const smuggled = GET("/smuggled");
  c.send(
    `POST /secret HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}` +
      `POST /secret HTTP/1.1\r\nHost: payment.internal\r\nTransfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n` +
      GET("/next"),
  );
  await c.answers(3);
  assert.deepEqual(c.statuses(), [403, 403, 200]);
  assert.deepEqual(
    app.seen.slice(before).map((x) => x.url),
    ["/next"],
  );
});

test("a denied request that waits for 100 Continue gets its 403 and the connection closes (its body may never come)", {
  timeout: 30_000,
}, async () => {
  const c = await raw(s.svc.port);
  c.send("POST /secret HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  await c.closed();
  assert.deepEqual(c.statuses(), [403]);
  assert.match(c.text, /\r\nconnection: close\r\n/i);
});

test("valid bodies pass intact: chunked with extensions and trailers, sized, split across writes; Connection: close honoured", {
  timeout: 30_000,
}, async () => {
  const c = await raw(s.svc.port);
  c.send("POST /chunked HTTP/1.1\r\nHost: payment.internal\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n");
  c.send("3;ext=1\r\nabc\r\n");
  c.send("a\r\n0123456789\r\n0\r\nX-Sum: 13\r\n\r\n");
  await c.answers(1);
  let seen = app.seen.at(-1)!;
  assert.equal(seen.body, "abc0123456789");
  assert.equal(seen.trailers["x-sum"], "13");
  assert.equal(seen.headers.te, "trailers");
  const body = "\u00e9t\u00e9".repeat(1000);
  const len = Buffer.byteLength(body, "latin1");
  c.send(`PUT /sized HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`);
  c.send(body.slice(0, 1000));
  c.send(body.slice(1000));
  await c.closed();
  assert.deepEqual(c.statuses(), [200, 200]);
  assert.match(c.text.split("HTTP/1.1 200")[2]!, /\r\nconnection: close\r\n/i, "told the connection ends");
  seen = app.seen.at(-1)!;
  assert.equal(seen.url, "/sized");
  assert.equal(seen.body, body);
  assert.equal(seen.headers.connection, undefined, "Connection is hop-by-hop");
});

test("a head that stalls is answered 408 after the headers timeout, logged, and closed", {
  timeout: 30_000,
}, async () => {
  const slow = await sidecar(app.port, { headersTimeoutMs: 300 });
  const before = app.seen.length;
  const c = await raw(slow.svc.port);
  c.send("GET /stalled HTTP/1.1\r\nHost: payment");
  await c.closed();
  assert.deepEqual(c.statuses(), [408]);
  await slow.logs.wait(ev("http.client_error", (l) => l.reason === "request_timeout"));
  assert.equal(app.seen.length, before);
});

test("a body that stops coming is cut off after the request timeout: both connections end, the app never gets it whole", {
  timeout: 30_000,
}, async () => {
  const slow = await sidecar(app.port, { requestTimeoutMs: 300 });
  const before = app.seen.length;
  const c = await raw(slow.svc.port);
  c.send("POST /upload HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: 10\r\n\r\nabc");
  await c.closed();
  assert.deepEqual(c.statuses(), []);
  await slow.logs.wait(ev("http.client_error", (l) => l.reason === "request_timeout"));
  const line = await slow.logs.wait(ev("request", (l) => l.path === "/upload"));
  assert.equal(line.status, 499);
  assert.equal(app.seen.length, before);
});

test("the app down: pipelined requests each get the sidecar's 503 in turn, a denied one its 403, and the connection goes on", {
  timeout: 30_000,
}, async () => {
  const gone = await recordingApp();
  const port = gone.port;
  await closers.pop()!();
  const down = await sidecar(port);
  const c = await raw(down.svc.port);
  c.send(GET("/one") + GET("/secret") + GET("/two"));
  await c.answers(3);
  assert.deepEqual(c.statuses(), [503, 403, 503]);
  assert.match(c.text, /"reason":"app_down"/);
  assert.equal(c.isClosed, false);
  const failed = await down.logs.wait(ev("upstream.failed", (l) => l.path === "/two"));
  assert.equal(failed.reason, "app_down");
});

test("an answer that comes before the body is all sent: that app connection is never handed to another caller", {
  timeout: 30_000,
}, async () => {
  const c = await raw(s.svc.port);
  c.send(
    "POST /early HTTP/1.1\r\nHost: payment.internal\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789",
  );
  await c.closed();
  assert.deepEqual(c.statuses(), [200]);
  // A new caller whose head would be read by the app as the rest of that body, were the
  // connection pooled.
  const next = await raw(s.svc.port);
  next.send(GET("/after-early"));
  await next.answers(1);
  assert.match(next.text, /"path":"\/after-early"/);
});

test("the chunked reader finds the same end fed whole or a byte at a time, and refuses what is malformed", () => {
  const body = Buffer.from("4;a=b\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT");
  const whole = new ChunkedBody();
  assert.equal(whole.feed(body, 0, body.length), body.length - 4);
  assert.ok(whole.done);
  const bytewise = new ChunkedBody();
  let end = -1;
  for (let i = 0; i < body.length && end === -1; i++) {
    const r = bytewise.feed(body, i, i + 1);
    if (bytewise.done) end = r;
  }
  assert.equal(end, body.length - 4);
  for (const bad of ["g\r\n", "5\n", "5\r\nhello!\r\n", "5 \r\n", "\r\n", "5\r\nhello\r\n0\r\n x: 1\r\n\r\n"]) {
    const c = new ChunkedBody();
    assert.equal(c.feed(Buffer.from(bad), 0, bad.length), -1, JSON.stringify(bad));
    assert.ok(c.error);
  }
  const head = parseRequestHead("GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nX-Keep: 2");
  assert.ok(head.ok);
  assert.deepEqual(
    head.lines,
    ["Host: h", "X-Keep: 2"],
    "hop-by-hop headers, and those Connection names, are left out",
  );
});

test("outbound: the app's pipelined calls are answered in order over mTLS as order; its smuggling attempt is refused 400 and never reaches the upstream", {
  timeout: 60_000,
}, async () => {
  const { connect } = await import("node:net");
  let ports: Record<string, number> = {};
  const order = await startService({
    service: "order",
    app: sidecarApp({
      app: { kind: "tcp", host: "127.0.0.1", port: 1 },
      outbound: [{ name: "payment", addr: `127.0.0.1:${s.svc.port}`, listenPort: 0 }],
      onOutbound: (p) => (ports = { ...p }),
    }),
    pkiDir: pki.dir,
    policyFile: pki.policyFile,
    port: 0,
    log: createLogger("order", new LogSink()),
  });
  closers.push(() => order.close());
  const plain = async (bytes: string) => {
    const sock = connect(ports.payment!, "127.0.0.1");
    closers.push(() => void sock.destroy());
    let text = "";
    sock.setEncoding("latin1");
    sock.on("data", (c: string) => (text += c));
    sock.on("error", () => {});
    const closed = new Promise<void>((r) => sock.once("close", () => r()));
    sock.write(bytes, "latin1");
    return { closed, text: () => text, sock };
  };
  const before = app.seen.length;
  const p = await plain(`${GET("/slow", "X-Forwarded-Client-Cert: By=forged\r\n")}${GET("/after")}`);
  const deadline = Date.now() + 15_000;
  while (whole(p.text()) < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(
    [...p.text().matchAll(/"path":"([^"]+)"/g)].map((m) => m[1]),
    ["/slow", "/after"],
  );
  const seen = app.seen.slice(before);
  assert.deepEqual(
    seen.map((x) => x.url),
    ["/slow", "/after"],
  );
  assert.equal(seen[0]!.headers.host, `payment.internal:${s.svc.port}`, "the upstream's authority");
  assert.match(String(seen[0]!.headers["x-forwarded-client-cert"]), /;URI=spiffe:\/\/internal\/order;/);
  assert.doesNotMatch(String(seen[0]!.headers["x-forwarded-client-cert"]), /forged/);
  p.sock.destroy();

  const bad = await plain(
    "POST /x HTTP/1.1\r\nHost: payment\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /secret HTTP/1.1\r\nHost: payment\r\n\r\n",
  );
  await bad.closed;
  assert.match(bad.text(), /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.equal(app.seen.length, before + 2, "nothing more reached the upstream's app");
});

test("a new certificate drains a spliced connection: its next answer says Connection: close and it closes, the answer whole", {
  timeout: 60_000,
}, async () => {
  const c = await raw(s.svc.port);
  c.send(GET("/before"));
  await c.answers(1);
  assert.doesNotMatch(c.text, /connection: close/i);
  const since = s.logs.lines.length;
  await pki.ca.renew({ domain: "payment.internal" });
  await s.logs.wait(
    ev("tls.reloaded", (l) => l.certChanged === true),
    15_000,
    since,
  );
  assert.equal(c.isClosed, false, "a connection is drained after its next answer, not cut");
  c.send(GET("/after-renewal"));
  await c.closed();
  assert.deepEqual(c.statuses(), [200, 200]);
  const second = c.text.slice(c.text.lastIndexOf("HTTP/1.1 200"));
  assert.match(second, /\r\nconnection: close\r\n/i);
  assert.doesNotMatch(second, /keep-alive/i, "the app's own Connection and Keep-Alive are replaced");
  assert.match(second, /"path":"\/after-renewal"/);
});
