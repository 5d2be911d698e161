// A caller checks its callee's certificate against the CRLs, like the callee checks its
// callers: once the CA revokes inventory, order refuses it on a new connection
// (server_revoked) and closes the keep-alive connection it already had to it, while its
// connection to payment, which nobody revoked, stays. curl and openssl agree.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { freshPki, start, call, identity, type TestPki, type TestService } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

let pki: TestPki;
let pay: TestService;
let inv: TestService;
let order: TestService;

before(async () => {
  pki = await freshPki();
  pay = await start(pki, "payment");
  inv = await start(pki, "inventory");
  order = await start(pki, "order", {
    upstreams: { payment: `127.0.0.1:${pay.svc.port}`, inventory: `127.0.0.1:${inv.svc.port}` },
  });
});

after(async () => {
  await order.svc.close();
  await pay.svc.close();
  await inv.svc.close();
  pki.cleanup();
});

function connections(s: TestService): Promise<number> {
  return new Promise((resolve, reject) => s.svc.server.https.getConnections((e, n) => (e ? reject(e) : resolve(n))));
}

/** The server's count of open connections once it has settled (a close takes a moment to arrive). */
async function settled(s: TestService, want: number, ms = 2_000): Promise<number> {
  const until = Date.now() + ms;
  let n = await connections(s);
  while (n !== want && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 25));
    n = await connections(s);
  }
  return n;
}

function placeOrder() {
  return call(pki, order.svc.port, "order.internal", identity(pki, "edge"), "POST", "/orders", {
    sku: "widget",
    quantity: 1,
  });
}

/** A real client in a child process (never spawnSync: the servers live in this process). */
function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
    child.stdin?.end();
  });
}

test("a revoked callee: pooled connection closed, new call refused with server_revoked, curl and openssl agree", async () => {
  const first = await placeOrder();
  assert.equal("status" in first && first.status, 201, JSON.stringify(first));
  // order keeps one pooled keep-alive connection to each callee.
  assert.equal(await connections(inv), 1);
  assert.equal(await connections(pay), 1);
  let payHandshakes = 0;
  pay.svc.server.https.on("secureConnection", () => payHandshakes++);

  const since = order.logs.lines.length;
  const invSince = inv.logs.lines.length;
  const revoked = await pki.ca.revoke({ domain: "inventory.internal", reason: "keyCompromise" });
  await order.logs.wait(
    ev("tls.reloaded", (l) => l.trustChanged === true),
    5_000,
    since,
  );

  // The pooled connection to the revoked callee is closed at once, and said so in order's log.
  const closed = await order.logs.wait(ev("tls.connections_closed"), 2_000, since);
  assert.equal(closed.side, "caller");
  assert.equal(closed.why, "trust withdrawn");
  assert.deepEqual(closed.peers, ["inventory (its certificate was revoked)"]);
  assert.equal(await settled(inv, 0), 0);
  // Nobody revoked payment: its connection stays (no new handshake for the next charge).
  assert.equal(await connections(pay), 1);

  // A new call to inventory is refused in order's handshake: nothing reaches inventory.
  const second = await placeOrder();
  assert.ok("status" in second, JSON.stringify(second));
  assert.equal(second.status, 502);
  assert.equal(second.body.reason, "server_revoked");
  const failed = await order.logs.wait(ev("upstream.failed"), 2_000, since);
  assert.equal(failed.reason, "server_revoked");
  assert.equal(failed.upstream, "inventory");
  assert.equal(failed.code, "CERT_REVOKED");
  assert.equal((failed.peer as { subject?: string; serial?: string }).subject, "CN=inventory.internal");
  assert.equal((failed.peer as { serial?: string }).serial, revoked.serial.toLowerCase().replace(/^0+/, ""));
  assert.match(
    String(failed.msg),
    /^inventory's certificate at 127\.0\.0\.1:\d+ has been revoked by the CA, so the call was refused; inventory needs a new identity \(online: restart mesh:up/,
  );
  assert.equal(inv.logs.lines.slice(invSince).filter(ev("request")).length, 0, "no request reached the revoked callee");
  assert.equal(payHandshakes, 0, "payment was neither called nor reconnected");

  // curl --crlfile and openssl -crl_check refuse the same certificate.
  const order_ = pki.ca.paths.leaf("order.internal");
  const c = await run("curl", [
    "-sS",
    "--max-time",
    "5",
    "--cacert",
    pki.ca.paths.bundle,
    "--crlfile",
    pki.ca.paths.crls,
    "--resolve",
    `inventory.internal:${inv.svc.port}:127.0.0.1`,
    "--cert",
    order_.cert,
    "--key",
    order_.key,
    `https://inventory.internal:${inv.svc.port}/healthz`,
  ]);
  assert.notEqual(c.code, 0, c.out);
  assert.match(c.out, /revoked/i);
  const o = await run("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${inv.svc.port}`,
    "-servername",
    "inventory.internal",
    "-CAfile",
    pki.ca.paths.bundle,
    "-CRL",
    pki.ca.paths.crls,
    "-crl_check",
    "-verify_return_error",
    "-cert",
    order_.cert,
    "-key",
    order_.key,
  ]);
  assert.notEqual(o.code, 0, o.out);
  assert.match(o.out, /verify error:num=23:certificate revoked/);
});

test("a call in flight when the callee is revoked fails as callee_withdrawn (this caller closed it), not rejected_in_handshake", async () => {
  // A callee that takes the request and never answers, serving inventory's real certificate.
  const { createServer } = await import("node:https");
  const { readFileSync } = await import("node:fs");
  const { Upstreams, UpstreamError } = await import("../services/mesh/client.ts");
  const { loadMaterial, materialPaths } = await import("../services/mesh/material.ts");
  const { createLogger } = await import("../services/mesh/log.ts");
  const { LogSink } = await import("./mesh-fixtures.ts");
  const p = await freshPki();
  const leaf = p.ca.paths.leaf("inventory.internal");
  let arrived!: () => void;
  const got = new Promise<void>((r) => (arrived = r));
  const slow = createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, () => arrived());
  await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
  const logs = new LogSink();
  const material = () => loadMaterial(materialPaths(p.dir, "order.internal"), "order.internal");
  const up = new Upstreams(
    "order",
    material(),
    { inventory: `127.0.0.1:${(slow.address() as { port: number }).port}` },
    createLogger("order", logs),
    { timeoutMs: 10_000 },
  );
  try {
    const pending = up.call("inventory", "GET", "/stock/widget").then(
      () => assert.fail("the call cannot succeed"),
      (e: unknown) => e,
    );
    await got;
    await p.ca.revoke({ domain: "inventory.internal" });
    up.setMaterial(material());
    const err = await pending;
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.reason, "callee_withdrawn");
    assert.match(
      err.message,
      /^this caller closed its connection to inventory at 127\.0\.0\.1:\d+ mid-call: inventory's certificate is no longer accepted \(its certificate was revoked\)/,
    );
    const failed = await logs.wait(ev("upstream.failed"));
    assert.equal(failed.reason, "callee_withdrawn");
    assert.doesNotMatch(String(failed.msg), /refused our certificate/);
  } finally {
    slow.closeAllConnections();
    await new Promise((r) => slow.close(r));
    p.cleanup();
  }
});
