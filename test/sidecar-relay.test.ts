// What the sidecar's HTTP/1.1 relay carries, both ways, through its fast path (headers as Node's
// raw lists, no pipe for a request without a body, the answer relayed by hand): bodies sent with
// a length, chunked, or as an HTTP/2 stream with no length at all; repeated headers in order;
// hop-by-hop headers and a forged XFCC dropped; a large answer intact to HTTP/1.1 and HTTP/2
// callers; and the outbound side carrying a body to the upstream.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect as h2connect } from "node:http2";
import { readFileSync } from "node:fs";
import type { AddressInfo, Socket } from "node:net";
import { EventEmitter, once } from "node:events";
import { APP_IDLE_MS } from "../services/mesh/sidecar/inbound.ts";
import { freshPki, LogSink, identity, type TestPki } from "./mesh-fixtures.ts";
import { startService, type RunningService } from "../services/mesh/runtime.ts";
import { createLogger } from "../services/mesh/log.ts";
import { sidecarApp } from "../services/mesh/sidecar/index.ts";

const POLICY = `[payment]
accepts = ["order"]

[order]
accepts = []
`;

/** What the app saw of one request. */
interface Seen {
  method: string;
  url: string;
  raw: string[];
  body: string;
}

const BIG = Buffer.alloc(1024 * 1024, "x");

let pki: TestPki;
const closers: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of closers.reverse()) await c();
  pki?.cleanup();
});

/**
 * An app that records each request and answers with two cookies, or 1 MiB at /big. It keeps
 * idle connections for a minute and tells each connection's close (`closed`).
 */
async function recordingApp(): Promise<{ port: number; seen: Seen[]; closed: EventEmitter }> {
  const closed = new EventEmitter();
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      seen.push({ method: req.method!, url: req.url!, raw: req.rawHeaders, body });
      if (req.url === "/big") {
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": BIG.length });
        res.end(BIG);
        return;
      }
      res.setHeader("set-cookie", ["a=1", "b=2"]);
      res.writeHead(201, { "content-type": "text/plain", connection: "keep-alive, x-hop", "x-hop": "no" });
      res.end(`got ${body.length}`);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on("connection", (sock: Socket) => {
    const opened = performance.now();
    sock.once("close", () => closed.emit("close", performance.now() - opened));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return { port: (server.address() as AddressInfo).port, seen, closed };
}

let app: Awaited<ReturnType<typeof recordingApp>>;
let payment: RunningService;

async function sidecar(name: string, appPort: number, outbound: { name: string; addr: string }[] = []) {
  let ports: Record<string, number> = {};
  const svc = await startService({
    service: name,
    app: sidecarApp({
      app: { kind: "tcp", host: "127.0.0.1", port: appPort },
      outbound: outbound.map((o) => ({ ...o, listenPort: 0 })),
      onOutbound: (p) => (ports = { ...p }),
    }),
    pkiDir: pki.dir,
    policyFile: pki.policyFile,
    port: 0,
    log: createLogger(name, new LogSink()),
  });
  closers.push(() => svc.close());
  return { svc, ports };
}

interface Answer {
  status: number;
  raw: string[];
  body: Buffer;
}

function collect(res: IncomingMessage, resolve: (a: Answer) => void, reject: (e: Error) => void): void {
  const chunks: Buffer[] = [];
  res.on("data", (c: Buffer) => chunks.push(c));
  res.on("end", () => resolve({ status: res.statusCode!, raw: res.rawHeaders, body: Buffer.concat(chunks) }));
  res.on("error", reject);
}

/** HTTP/1.1 over mTLS as order; `chunks` are written one by one (no content-length: chunked). */
function h1(port: number, method: string, path: string, headers: Record<string, string | string[]>, chunks: string[]) {
  return new Promise<Answer>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        servername: "payment.internal",
        ca: readFileSync(pki.ca.paths.bundle),
        ...identity(pki, "order"),
        agent: false,
        headers,
      },
      (res) => collect(res, resolve, reject),
    );
    req.on("error", reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

/** HTTP/2 over mTLS as order; a body is sent as DATA frames with no content-length. */
function h2(port: number, method: string, path: string, body?: string) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
    const s = h2connect(`https://127.0.0.1:${port}`, {
      servername: "payment.internal",
      ca: readFileSync(pki.ca.paths.bundle),
      ...identity(pki, "order"),
    });
    s.on("error", reject);
    const st = s.request({ ":method": method, ":path": path }, { endStream: body === undefined });
    let headers: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    st.on("response", (h) => (headers = h));
    st.on("data", (c: Buffer) => chunks.push(c));
    st.on("end", () => {
      s.close();
      resolve({ status: Number(headers[":status"]), headers, body: Buffer.concat(chunks) });
    });
    st.on("error", reject);
    if (body !== undefined) {
      st.write(body.slice(0, 3));
      setImmediate(() => st.end(body.slice(3)));
    }
  });
}

/** Lower-case name → values, in order, from a raw list. */
function valuesOf(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

test("HTTP/1.1 caller: bodies by length and chunked reach the app; repeated headers kept in order; hop-by-hop and forged XFCC dropped", {
  timeout: 60_000,
}, async () => {
  pki = await freshPki(POLICY);
  app = await recordingApp();
  payment = (await sidecar("payment", app.port)).svc;

  const get = await h1(payment.port, "GET", "/plain?q=1", { "x-rep": ["one", "two"] }, []);
  assert.equal(get.status, 201);
  assert.equal(get.body.toString(), "got 0");
  assert.deepEqual(valuesOf(get.raw, "set-cookie"), ["a=1", "b=2"], "both cookies, in order");
  assert.deepEqual(valuesOf(get.raw, "x-hop"), [], "a header the app named in Connection does not pass");
  let seen = app.seen.at(-1)!;
  assert.equal(seen.method, "GET");
  assert.equal(seen.url, "/plain?q=1");
  assert.deepEqual(valuesOf(seen.raw, "x-rep"), ["one", "two"]);
  assert.deepEqual(valuesOf(seen.raw, "host"), [`127.0.0.1:${payment.port}`], "the authority the caller asked for");
  assert.equal(valuesOf(seen.raw, "x-forwarded-client-cert").length, 1);
  assert.match(valuesOf(seen.raw, "x-forwarded-client-cert")[0]!, /URI=spiffe:\/\/internal\/order/);

  const sized = await h1(
    payment.port,
    "POST",
    "/sized",
    {
      "content-type": "text/plain",
      "content-length": "11",
      connection: "keep-alive, x-secret",
      "x-secret": "hop",
      "x-forwarded-client-cert": "By=evil;URI=spiffe://internal/payment",
    },
    ["hello", " world"],
  );
  assert.equal(sized.body.toString(), "got 11");
  seen = app.seen.at(-1)!;
  assert.equal(seen.body, "hello world");
  assert.deepEqual(valuesOf(seen.raw, "x-secret"), []);
  assert.deepEqual(valuesOf(seen.raw, "x-forwarded-client-cert").length, 1);
  assert.doesNotMatch(valuesOf(seen.raw, "x-forwarded-client-cert")[0]!, /evil/);

  const chunked = await h1(payment.port, "PUT", "/chunked", { "content-type": "text/plain" }, ["ab", "cd", "ef"]);
  assert.equal(chunked.body.toString(), "got 6");
  assert.equal(app.seen.at(-1)!.body, "abcdef");
});

test("HTTP/2 caller to an HTTP/1.1 app: a body with no length arrives whole, a GET has none; 1 MiB answers arrive intact over both protocols", {
  timeout: 60_000,
}, async () => {
  const post = await h2(payment.port, "POST", "/stream", "streamed body");
  assert.equal(post.status, 201);
  assert.equal(post.body.toString(), "got 13");
  assert.deepEqual(post.headers["set-cookie"], ["a=1", "b=2"]);
  assert.equal(app.seen.at(-1)!.body, "streamed body");

  const get = await h2(payment.port, "GET", "/nobody");
  assert.equal(get.body.toString(), "got 0");
  const seen = app.seen.at(-1)!;
  assert.equal(seen.method, "GET");
  assert.deepEqual(
    valuesOf(seen.raw, "transfer-encoding"),
    [],
    "no body announced for a GET that ended with its headers",
  );

  const big2 = await h2(payment.port, "GET", "/big");
  assert.equal(big2.body.length, BIG.length);
  assert.ok(big2.body.equals(BIG));
  const big1 = await h1(payment.port, "GET", "/big", {}, []);
  assert.equal(big1.body.length, BIG.length);
  assert.ok(big1.body.equals(BIG));
});

test("outbound HTTP/1.1: the app's POST body reaches the upstream with the upstream's authority", {
  timeout: 60_000,
}, async () => {
  const order = await sidecar("order", app.port, [{ name: "payment", addr: `127.0.0.1:${payment.port}` }]);
  const r = await new Promise<Answer>((resolve, reject) => {
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port: order.ports.payment,
        method: "POST",
        path: "/via-outbound",
        headers: { "content-type": "text/plain", "x-forwarded-client-cert": "By=forged" },
      },
      (res) => collect(res, resolve, reject),
    );
    req.on("error", reject);
    req.end("from the app");
  });
  assert.equal(r.status, 201);
  assert.equal(r.body.toString(), "got 12");
  const seen = app.seen.at(-1)!;
  assert.equal(seen.url, "/via-outbound");
  assert.equal(seen.body, "from the app");
  assert.deepEqual(valuesOf(seen.raw, "host"), [`payment.internal:${payment.port}`]);
  const xfcc = valuesOf(seen.raw, "x-forwarded-client-cert");
  assert.equal(xfcc.length, 1);
  assert.match(xfcc[0]!, /URI=spiffe:\/\/internal\/order/, "seen as order, and the app's forged copy is gone");
});

test("the sidecar closes an idle connection to the app itself, long before the app would (a request on one the app is closing would be lost)", {
  timeout: 60_000,
}, async () => {
  const gone = once(app.closed, "close");
  const r = await h1(payment.port, "GET", "/idle", {}, []);
  assert.equal(r.status, 201);
  // The app keeps idle connections for 60 s: a close now is the sidecar's.
  const [aliveMs] = (await gone) as [number];
  assert.ok(aliveMs >= APP_IDLE_MS * 0.9, `closed after ${aliveMs} ms, before the idle timeout`);
  assert.ok(aliveMs < 30_000, `closed after ${aliveMs} ms`);
});
