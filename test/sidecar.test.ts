// The sidecar in front of an app it does not contain: the inbound side authenticates, applies
// the policy and names the caller in XFCC; the outbound side calls other services with the
// workload's identity and refuses a callee that is not the one named, or revoked.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { request } from "node:http";
import { execFile } from "node:child_process";
import { freshPki, LogSink, call, identity, type TestPki } from "./mesh-fixtures.ts";
import { startService, type RunningService } from "../services/mesh/runtime.ts";
import { createLogger } from "../services/mesh/log.ts";
import { loadMaterial, materialPaths } from "../services/mesh/material.ts";
import { Upstreams } from "../services/mesh/client.ts";
import { appNamed } from "../services/apps/index.ts";
import { sidecarApp, type OutboundRoute } from "../services/mesh/sidecar/index.ts";
import { echoApp, curl, parseXfcc, type EchoApp } from "./helpers/sidecar.ts";
import { ev } from "./helpers/events.ts";

const POLICY = `[billing]
accepts = ["order"]

[[billing.routes]]
method = "GET"
path = "/secret"
accepts = []

[payment]
accepts = ["order", "billing"]

[inventory]
accepts = ["order", "billing"]

[order]
accepts = ["edge"]

[greeter]
accepts = ["frontend"]

[[greeter.routes]]
method = "POST"
path = "/greet.Greeter/Secret"
accepts = []
`;

let pki: TestPki;
const closers: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of closers.reverse()) await c();
  pki?.cleanup();
});

async function setup(): Promise<TestPki> {
  if (!pki) {
    pki = await freshPki(POLICY);
    for (const n of ["billing", "greeter", "frontend"]) await pki.ca.issue({ domain: `${n}.internal` });
  }
  return pki;
}

async function sidecar(
  name: string,
  app: string,
  outbound: OutboundRoute[] = [],
  appProtocol: "http1" | "h2c" = "http1",
): Promise<{ svc: RunningService; logs: LogSink; ports: Record<string, number> }> {
  const logs = new LogSink();
  let ports: Record<string, number> = {};
  const svc = await startService({
    service: name,
    app: sidecarApp({
      app: { kind: "tcp", host: "127.0.0.1", port: Number(app) },
      outbound,
      appProtocol,
      onOutbound: (p) => (ports = { ...p }),
    }),
    pkiDir: pki.dir,
    policyFile: pki.policyFile,
    port: 0,
    log: createLogger(name, logs),
  });
  closers.push(() => svc.close());
  return { svc, logs, ports };
}

async function builtIn(name: string): Promise<{ svc: RunningService; logs: LogSink }> {
  const logs = new LogSink();
  const svc = await startService({
    service: name,
    app: appNamed(name)!,
    pkiDir: pki.dir,
    policyFile: pki.policyFile,
    port: 0,
    log: createLogger(name, logs),
  });
  closers.push(() => svc.close());
  return { svc, logs };
}

function leafFiles(name: string) {
  return pki.ca.paths.leaf(`${name}.internal`);
}

function derSha256(name: string): string {
  return createHash("sha256")
    .update(new X509Certificate(readFileSync(leafFiles(name).cert)).raw)
    .digest("hex");
}

let app: EchoApp;
let billing: { svc: RunningService; logs: LogSink; ports: Record<string, number> };

test("inbound: a TS mesh service (order) is let through and named in XFCC; edge is refused with the reason", async () => {
  await setup();
  app = await echoApp();
  closers.push(() => app.close());
  billing = await sidecar("billing", String(app.port));

  const order = new Upstreams(
    "order",
    loadMaterial(materialPaths(pki.dir, "order.internal"), "order.internal"),
    { billing: `127.0.0.1:${billing.svc.port}` },
    createLogger("order", new LogSink()),
  );
  closers.push(() => order.close());
  const r = await order.call("billing", "GET", "/whoami?x=1");
  assert.equal(r.status, 200);
  const body = r.body as { path: string; xfcc: string };
  assert.equal(body.path, "/whoami?x=1");
  const pairs = parseXfcc(body.xfcc);
  assert.deepEqual(pairs, [
    ["By", "spiffe://internal/billing"],
    ["Hash", derSha256("order")],
    ["Subject", "CN=order.internal"],
    ["URI", "spiffe://internal/order"],
    ["DNS", "order.internal"],
  ]);
  const line = await billing.logs.wait(ev("request", (l) => l.peer === "order"));
  assert.equal(line.status, 200);

  // edge is not in billing's accepts: 403 with the rule, logged as for any service.
  const denied = await call(pki, billing.svc.port, "billing.internal", identity(pki, "edge"), "GET", "/whoami");
  assert.ok("status" in denied);
  assert.equal(denied.status, 403);
  assert.equal(denied.body.caller, "edge");
  const why = await billing.logs.wait(ev("authz.denied", (l) => l.peer === "edge"));
  assert.equal(why.rule, "billing.accepts");
  assert.equal(app.seen.length, 1, "a denied request never reaches the app");
});

test("curl: allowed and denied certificates; a forged XFCC from the caller never reaches the app", async () => {
  const bundle = pki.ca.paths.bundle;
  const url = `https://billing.internal:${billing.svc.port}/whoami`;
  const resolve = `billing.internal:${billing.svc.port}:127.0.0.1`;
  const forged = "By=spiffe://internal/billing;URI=spiffe://internal/payment;DNS=payment.internal";
  const ok = await curl([
    "--resolve",
    resolve,
    "--cacert",
    bundle,
    "--cert",
    leafFiles("order").cert,
    "--key",
    leafFiles("order").key,
    "-H",
    `X-Forwarded-Client-Cert: ${forged}`,
    "-H",
    `x-forwarded-client-cert: ${forged}`,
    url,
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  const seen = JSON.parse(ok.stdout) as { xfcc: string };
  assert.ok(!seen.xfcc.includes("payment"), seen.xfcc);
  assert.ok(!seen.xfcc.includes(","), `one element only: ${seen.xfcc}`);
  assert.match(seen.xfcc, /;URI=spiffe:\/\/internal\/order;/);
  assert.equal(
    app.seen.at(-1)!["x-forwarded-client-cert"],
    seen.xfcc,
    "the app got exactly one XFCC header, the sidecar's",
  );

  // A per-route rule: GET /secret accepts nobody, whoever billing.accepts lets in.
  const secret = await curl([
    "--resolve",
    resolve,
    "--cacert",
    bundle,
    "--cert",
    leafFiles("order").cert,
    "--key",
    leafFiles("order").key,
    "-w",
    "\\n%{http_code}",
    `https://billing.internal:${billing.svc.port}/secret`,
  ]);
  const [text, status] = secret.stdout.trimEnd().split("\n");
  assert.equal(status, "403");
  assert.match(JSON.parse(text!).rule, /billing\.routes\[0\]/);

  const edge = await curl([
    "--resolve",
    resolve,
    "--cacert",
    bundle,
    "--cert",
    leafFiles("edge").cert,
    "--key",
    leafFiles("edge").key,
    "-w",
    "\\n%{http_code}",
    url,
  ]);
  assert.equal(edge.stdout.trimEnd().split("\n").at(-1), "403");
});

test("h2: curl --http2 and openssl s_client -alpn h2 negotiate h2, and the request is served over it", async () => {
  const resolve = `billing.internal:${billing.svc.port}:127.0.0.1`;
  const r = await curl([
    "--http2",
    "--resolve",
    resolve,
    "--cacert",
    pki.ca.paths.bundle,
    "--cert",
    leafFiles("order").cert,
    "--key",
    leafFiles("order").key,
    "-w",
    "\\n%{http_version}",
    `https://billing.internal:${billing.svc.port}/h2`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split("\n");
  assert.equal(lines.at(-1), "2");
  assert.match(JSON.parse(lines[0]!).xfcc, /URI=spiffe:\/\/internal\/order/);
  // Async: the server runs in this process, a synchronous child would starve it.
  const out = await new Promise<string>((resolve) => {
    const c = execFile(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${billing.svc.port}`,
        "-servername",
        "billing.internal",
        "-alpn",
        "h2",
        "-cert",
        leafFiles("order").cert,
        "-key",
        leafFiles("order").key,
        "-CAfile",
        pki.ca.paths.bundle,
      ],
      { encoding: "utf8", timeout: 15_000 },
      (_e, stdout) => resolve(stdout),
    );
    c.stdin!.end();
  });
  assert.match(out, /ALPN protocol: h2/);
  assert.match(out, /Verify return code: 0 \(ok\)/);
});

test("the app down: 503 with reason app_down, logged as upstream.failed", async () => {
  const gone = await echoApp();
  const port = gone.port;
  await gone.close();
  const s = await sidecar("billing", String(port));
  const r = await call(pki, s.svc.port, "billing.internal", identity(pki, "order"), "GET", "/whoami");
  assert.ok("status" in r);
  assert.equal(r.status, 503);
  assert.equal(r.body.reason, "app_down");
  const line = await s.logs.wait(ev("upstream.failed"));
  assert.equal(line.reason, "app_down");
  assert.equal(line.upstream, "app");
  const req = await s.logs.wait(ev("request", (l) => l.status === 503));
  assert.equal(req.peer, "order");
});

function plainGet(port: number, path: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false, timeout: 10_000 }, (res) => {
      let t = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (t += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: t ? JSON.parse(t) : undefined }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("outbound: the app calls payment on loopback in plain HTTP and is seen as billing; a callee with another identity, or revoked, is refused", async () => {
  await setup();
  const payment = await builtIn("payment");
  const inventory = await builtIn("inventory");
  const s = await sidecar("billing", "1", [
    { name: "payment", addr: `127.0.0.1:${payment.svc.port}`, listenPort: 0 },
    // Names payment but dials inventory: a mesh certificate, but not payment's.
    { name: "payment-impostor", addr: `127.0.0.1:${inventory.svc.port}`, listenPort: 0 },
  ]);
  const ok = await plainGet(s.ports.payment!, "/healthz");
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, { service: "payment", caller: "billing" });

  const wrong = await plainGet(s.ports["payment-impostor"]!, "/healthz");
  assert.equal(wrong.status, 502);
  assert.equal(wrong.body.reason, "server_name_mismatch");
  const failed = await s.logs.wait(ev("upstream.failed", (l) => l.upstream === "payment-impostor"));
  assert.equal(failed.reason, "server_name_mismatch");
  assert.equal(inventory.logs.find(ev("request")), undefined, "nothing reached the impostor");

  const since = s.logs.lines.length;
  await pki.ca.revoke({ domain: "payment.internal", reason: "keyCompromise" });
  await s.logs.wait(
    ev("tls.reloaded", (l) => l.trustChanged === true),
    10_000,
    since,
  );
  const revoked = await plainGet(s.ports.payment!, "/healthz");
  assert.equal(revoked.status, 502);
  assert.equal(revoked.body.reason, "server_revoked");

  // Counted as the built-in client's calls are (mesh_outbound_http_requests_total), labelled by
  // the upstream's mesh name as main's metrics label every mesh name.
  const text = await s.svc.metrics.registry.metrics();
  assert.match(text, /mesh_outbound_http_requests_total\{callee="payment",outcome="ok",reason="none"\} 1\b/);
  assert.match(
    text,
    /mesh_outbound_http_requests_total\{callee="payment",outcome="failed",reason="server_revoked"\} 1\b/,
  );
  assert.match(
    text,
    /mesh_outbound_http_requests_total\{callee="payment-impostor",outcome="failed",reason="server_name_mismatch"\} 1\b/,
  );
});

test("gRPC through two sidecars: unary, server-streaming and bidirectional with trailers and status codes intact; a denied call is PERMISSION_DENIED with the reason", async () => {
  await setup();
  const grpc = await import("@grpc/grpc-js");
  const loader = await import("@grpc/proto-loader");
  const def = loader.loadSync(join(import.meta.dirname, "fixtures", "greeter.proto"));
  const pkg = grpc.loadPackageDefinition(def) as any;
  const xfccOf = (m: import("@grpc/grpc-js").Metadata) => String(m.get("x-forwarded-client-cert")[0] ?? "");
  const server = new grpc.Server();
  server.addService(pkg.greet.Greeter.service, {
    SayHello: (call: any, cb: any) => {
      const trailer = new grpc.Metadata();
      trailer.set("x-app-trailer", "kept");
      cb(null, { message: `hello ${call.request.name}`, caller: xfccOf(call.metadata) }, trailer);
    },
    Count: (call: any) => {
      for (let i = 1; i <= call.request.n; i++) call.write({ message: "tick", i, caller: xfccOf(call.metadata) });
      call.end();
    },
    Secret: (_call: any, cb: any) => cb(null, { message: "should never run" }),
    Fail: (_call: any, cb: any) => cb({ code: grpc.status.NOT_FOUND, details: "no such greeting" }),
    Chat: (call: any) => {
      call.on("data", (m: { name: string }) => call.write({ message: `echo ${m.name}` }));
      call.on("end", () => call.end());
    },
  });
  const appPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  closers.push(() => new Promise<void>((r) => server.tryShutdown(() => r())));

  const greeter = await sidecar("greeter", String(appPort), [], "h2c");
  const frontend = await sidecar("frontend", "1", [
    { name: "greeter", addr: `127.0.0.1:${greeter.svc.port}`, listenPort: 0 },
  ]);
  const client = new pkg.greet.Greeter(`127.0.0.1:${frontend.ports.greeter}`, grpc.credentials.createInsecure());
  closers.push(() => client.close());

  // Unary: the answer, the trailer, and the caller as the greeter's sidecar saw it.
  const trailers: import("@grpc/grpc-js").Metadata[] = [];
  const hello = await new Promise<any>((resolve, reject) => {
    const c = client.SayHello({ name: "mesh" }, (e: unknown, r: unknown) => (e ? reject(e) : resolve(r)));
    c.on("status", (st: { metadata: import("@grpc/grpc-js").Metadata }) => trailers.push(st.metadata));
  });
  assert.equal(hello.message, "hello mesh");
  assert.match(
    hello.caller,
    /^By=spiffe:\/\/internal\/greeter;Hash=[0-9a-f]{64};Subject="CN=frontend.internal";URI=spiffe:\/\/internal\/frontend;DNS=frontend.internal$/,
  );
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(trailers[0]?.get("x-app-trailer"), ["kept"]);

  // Server streaming: every message, in order, then OK.
  const got: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const st = client.Count({ n: 5 });
    st.on("data", (m: { i: number }) => got.push(m.i));
    st.on("error", reject);
    st.on("end", resolve);
  });
  assert.deepEqual(got, [1, 2, 3, 4, 5]);

  // Bidirectional: each answer arrives before the next message is sent (nothing buffered).
  const chat = client.Chat();
  const echoes: string[] = [];
  const next = () => new Promise<string>((r) => chat.once("data", (m: { message: string }) => r(m.message)));
  for (const w of ["a", "b", "c"]) {
    const answer = next();
    chat.write({ name: w });
    echoes.push(await answer);
  }
  chat.end();
  await new Promise<void>(
    (resolve, reject) => (
      chat.on("status", (st: { code: number }) => (st.code === 0 ? resolve() : reject(new Error(`status ${st.code}`)))),
      chat.on("error", reject)
    ),
  );
  assert.deepEqual(echoes, ["echo a", "echo b", "echo c"]);

  // The app's own error status passes through as it was sent.
  const failed = await new Promise<any>((resolve) => client.Fail({ name: "x" }, (e: unknown) => resolve(e)));
  assert.equal(failed.code, grpc.status.NOT_FOUND);
  assert.equal(failed.details, "no such greeting");

  // The policy refuses Secret: PERMISSION_DENIED with the reason, not a broken stream.
  const denied = await new Promise<any>((resolve) => client.Secret({ name: "x" }, (e: unknown) => resolve(e)));
  assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
  assert.match(
    denied.details,
    /frontend may not call POST \/greet\.Greeter\/Secret on greeter \(rule greeter\.routes\[0\]/,
  );
  const line = await greeter.logs.wait(ev("authz.denied"));
  assert.equal(line.peer, "frontend");
  assert.equal(line.path, "/greet.Greeter/Secret");

  // A gRPC client holding a mesh certificate calls a sidecar directly over mTLS; its app is
  // down: UNAVAILABLE with the reason, not a broken stream.
  const dead = await sidecar("greeter", "1", [], "h2c");
  const front = identity(pki, "frontend");
  const creds = grpc.credentials.createSsl(
    readFileSync(pki.ca.paths.bundle),
    Buffer.from(front.key),
    Buffer.from(front.cert),
  );
  const direct = new pkg.greet.Greeter(`127.0.0.1:${dead.svc.port}`, creds, {
    "grpc.ssl_target_name_override": "greeter.internal",
    "grpc.default_authority": "greeter.internal",
  });
  closers.push(() => direct.close());
  const down = await new Promise<any>((resolve) => direct.SayHello({ name: "x" }, (e: unknown) => resolve(e)));
  assert.equal(down.code, grpc.status.UNAVAILABLE);
  assert.match(down.details, /^app_down: /);
  const gone = await dead.logs.wait(ev("upstream.failed"));
  assert.equal(gone.reason, "app_down");
});

test("h2: a new certificate drains an HTTP/2 connection with GOAWAY, and the stream under way still gets its answer", async () => {
  await setup();
  const { connect } = await import("node:http2");
  const { createServer } = await import("node:http");
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let arrived!: () => void;
  const inApp = new Promise<void>((r) => (arrived = r));
  const slow = createServer((_req, res) => {
    arrived();
    void held.then(() => res.end("late but whole"));
  });
  await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
  closers.push(() => new Promise<void>((r) => (slow.close(() => r()), slow.closeAllConnections())));
  const s = await sidecar("billing", String((slow.address() as import("node:net").AddressInfo).port));

  const order = identity(pki, "order");
  const session = connect(`https://127.0.0.1:${s.svc.port}`, {
    servername: "billing.internal",
    ca: readFileSync(pki.ca.paths.bundle),
    cert: order.cert,
    key: order.key,
  });
  closers.push(() => void session.destroy());
  const goaway = new Promise<void>((r) => session.once("goaway", () => r()));
  const stream = session.request({ ":path": "/slow" });
  stream.end();
  let body = "";
  stream.setEncoding("utf8").on("data", (c) => (body += c));
  const status = new Promise<number>((r) => stream.once("response", (h) => r(Number(h[":status"]))));
  const ended = new Promise<void>((r) => stream.once("end", () => r()));
  await inApp;

  const since = s.logs.lines.length;
  await pki.ca.renew({ domain: "billing.internal" });
  await s.logs.wait(
    ev("tls.reloaded", (l) => l.certChanged === true),
    10_000,
    since,
  );
  await Promise.race([
    goaway,
    new Promise((_, reject) => setTimeout(() => reject(new Error("no GOAWAY after the certificate changed")), 5_000)),
  ]);
  release();
  assert.equal(await status, 200);
  await ended;
  assert.equal(body, "late but whole");
});

test("the built-in services speak h2 on the same listener: curl --http2 GET and a JSON POST to inventory", async () => {
  await setup();
  const inventory = await builtIn("inventory");
  const port = inventory.svc.port;
  const tls = [
    "--http2",
    "--resolve",
    `inventory.internal:${port}:127.0.0.1`,
    "--cacert",
    pki.ca.paths.bundle,
    "--cert",
    leafFiles("order").cert,
    "--key",
    leafFiles("order").key,
    "-w",
    "\\n%{http_version} %{http_code}",
  ];
  const get = await curl([...tls, `https://inventory.internal:${port}/stock/widget`]);
  const [getBody, getStatus] = get.stdout.trimEnd().split("\n");
  assert.equal(getStatus, "2 200", get.stderr);
  assert.equal(JSON.parse(getBody!).sku, "widget");
  const post = await curl([
    ...tls,
    "-H",
    "content-type: application/json",
    "--data",
    JSON.stringify({ orderId: "o-h2", sku: "widget", quantity: 2 }),
    `https://inventory.internal:${port}/reserve`,
  ]);
  const [postBody, postStatus] = post.stdout.trimEnd().split("\n");
  assert.equal(postStatus, "2 201", post.stderr);
  assert.equal(JSON.parse(postBody!).quantity, 2);
  const line = await inventory.logs.wait(ev("request", (l) => l.path === "/reserve"));
  assert.equal(line.status, 201);
});

test("inbound to an app on a unix socket", async () => {
  await setup();
  const { createServer } = await import("node:http");
  const sockPath = join(pki.root, "app.sock");
  const unixApp = createServer((req, res) =>
    res.end(JSON.stringify({ via: "unix", xfcc: req.headers["x-forwarded-client-cert"] })),
  );
  await new Promise<void>((r) => unixApp.listen(sockPath, r));
  closers.push(() => new Promise<void>((r) => (unixApp.close(() => r()), unixApp.closeAllConnections())));
  const logs = new LogSink();
  const svc = await startService({
    service: "billing",
    app: sidecarApp({ app: { kind: "unix", path: sockPath } }),
    pkiDir: pki.dir,
    policyFile: pki.policyFile,
    port: 0,
    log: createLogger("billing", logs),
  });
  closers.push(() => svc.close());
  const r = await call(pki, svc.port, "billing.internal", identity(pki, "order"), "GET", "/x");
  assert.ok("status" in r, JSON.stringify(r));
  assert.equal(r.status, 200);
  assert.equal(r.body.via, "unix");
  assert.match(r.body.xfcc, /URI=spiffe:\/\/internal\/order/);
});

test("h2: an idle HTTP/2 connection is closed after the keep-alive timeout, as HTTP/1.1 ones are", async () => {
  await setup();
  const { connect } = await import("node:http2");
  const logs = new LogSink();
  const svc = await startService({
    service: "inventory",
    app: appNamed("inventory")!,
    pkiDir: pki.dir,
    policyFile: pki.policyFile,
    port: 0,
    log: createLogger("inventory", logs),
    limits: { keepAliveTimeoutMs: 300 },
  });
  closers.push(() => svc.close());
  const order = identity(pki, "order");
  const session = connect(`https://127.0.0.1:${svc.port}`, {
    servername: "inventory.internal",
    ca: readFileSync(pki.ca.paths.bundle),
    cert: order.cert,
    key: order.key,
  });
  closers.push(() => void session.destroy());
  const closed = new Promise<void>((r) => session.once("close", () => r()));
  const stream = session.request({ ":path": "/stock/widget" });
  stream.end();
  const status = await new Promise<number>((r) => stream.once("response", (h) => r(Number(h[":status"]))));
  stream.resume();
  assert.equal(status, 200);
  await Promise.race([
    closed,
    new Promise((_, reject) => setTimeout(() => reject(new Error("the idle h2 connection was not closed")), 10_000)),
  ]);
});

test("h2: a request body that stops coming is cut off after the request timeout, as over HTTP/1.1", async () => {
  await setup();
  const { connect } = await import("node:http2");
  const logs = new LogSink();
  const svc = await startService({
    service: "inventory",
    app: appNamed("inventory")!,
    pkiDir: pki.dir,
    policyFile: pki.policyFile,
    port: 0,
    log: createLogger("inventory", logs),
    limits: { requestTimeoutMs: 300 },
  });
  closers.push(() => svc.close());
  const order = identity(pki, "order");
  const session = connect(`https://127.0.0.1:${svc.port}`, {
    servername: "inventory.internal",
    ca: readFileSync(pki.ca.paths.bundle),
    cert: order.cert,
    key: order.key,
  });
  closers.push(() => void session.destroy());
  session.on("error", () => {});
  const stream = session.request({ ":path": "/reserve", ":method": "POST", "content-type": "application/json" });
  stream.on("error", () => {});
  stream.write('{"orderId":"slow",'); // and nothing more
  const closed = new Promise<number>((r) => stream.once("close", () => r(stream.rstCode)));
  const code = await Promise.race([
    closed,
    new Promise<number>((_, reject) =>
      setTimeout(() => reject(new Error("the stalled h2 request was not cut off")), 10_000),
    ),
  ]);
  assert.equal(code, 8 /* NGHTTP2_CANCEL */);
  const line = await logs.wait(ev("request", (l) => l.path === "/reserve"));
  assert.equal(line.abandoned, true);
});
