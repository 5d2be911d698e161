// Three real services on 127.0.0.1: the authorization matrix, the order flow across
// services, hot reload of policy and certificates, and revocation without a restart.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { Client } from "undici";
import { freshPki, start, call, identity, type TestPki, type TestService } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

let pki: TestPki;
let pay: TestService;
let inv: TestService;
let ord: TestService;

before(async () => {
  pki = await freshPki();
  pay = await start(pki, "payment");
  inv = await start(pki, "inventory");
  ord = await start(pki, "order", {
    upstreams: { payment: `127.0.0.1:${pay.svc.port}`, inventory: `127.0.0.1:${inv.svc.port}` },
  });
});

after(async () => {
  await Promise.all([ord.svc.close(), pay.svc.close(), inv.svc.close()]);
  pki.cleanup();
});

const as = (name: string) => identity(pki, name);

test("an allowed call gets 200 and a request line", async () => {
  const r = await call(pki, pay.svc.port, "payment.internal", as("order"), "GET", "/healthz");
  assert.deepEqual(r, { status: 200, body: { service: "payment", caller: "order" } });
  const l = await pay.logs.wait(ev("request", (x) => x.path === "/healthz"));
  assert.equal(l.peer, "order");
  assert.equal(l.rule, "payment.accepts");
});

test("a denied call gets 403 saying who the caller was taken to be; the log names the rule", async () => {
  const since = pay.logs.lines.length;
  const r = await call(pki, pay.svc.port, "payment.internal", as("inventory"), "POST", "/charge", {
    orderId: "o-x",
    amount: 100,
  });
  assert.ok("status" in r);
  assert.equal(r.status, 403);
  assert.equal(r.body.error, "forbidden");
  assert.equal(r.body.caller, "inventory");
  assert.equal(r.body.identity, "inventory.internal");
  const l = await pay.logs.wait(ev("authz.denied"), 2_000, since);
  assert.equal(l.peer, "inventory");
  assert.equal(l.method, "POST");
  assert.equal(l.path, "/charge");
  assert.equal(l.rule, "payment.accepts");
  assert.match(String(l.hint), /add "inventory"/);
  // The route handler never ran: no charge was recorded, no request line.
  assert.equal(pay.logs.lines.slice(since).filter(ev("request")).length, 0);
});

test("order reserves, then charges, over mTLS with its own certificate", async () => {
  const r = await call(pki, ord.svc.port, "order.internal", as("edge"), "POST", "/orders", {
    sku: "widget",
    quantity: 3,
  });
  assert.ok("status" in r, JSON.stringify(r));
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.amount, 750);
  assert.equal(r.body.charge.caller, "order");
  assert.equal(r.body.reservation.quantity, 3);
  assert.ok(inv.logs.find(ev("request", (x) => x.path === "/reserve" && x.peer === "order")));
  assert.ok(pay.logs.find(ev("request", (x) => x.path === "/charge" && x.peer === "order")));
});

async function stock(sku: string): Promise<number> {
  const r = await call(pki, inv.svc.port, "inventory.internal", as("order"), "GET", `/stock/${sku}`);
  assert.ok("status" in r && r.status === 200, JSON.stringify(r));
  return (r as { body: { available: number } }).body.available;
}

test("a declined charge releases the reservation; out of stock charges nothing", async () => {
  const pianos = await stock("piano");
  const declined = await call(pki, ord.svc.port, "order.internal", as("edge"), "POST", "/orders", {
    sku: "piano",
    quantity: 1,
  });
  assert.ok("status" in declined);
  assert.equal(declined.status, 402, JSON.stringify(declined.body));
  assert.equal(declined.body.error, "payment_declined");
  assert.equal(declined.body.reservationReleased, true);
  assert.equal(await stock("piano"), pianos, "the reservation was released");

  const charges = pay.logs.lines.filter(ev("request", (x) => x.path === "/charge")).length;
  const out = await call(pki, ord.svc.port, "order.internal", as("edge"), "POST", "/orders", {
    sku: "gadget",
    quantity: 60,
  });
  assert.ok("status" in out);
  assert.equal(out.status, 409, "60 gadgets are more than the 20 in stock");
  assert.equal(out.body.inventory.error, "out_of_stock");
  assert.equal(
    pay.logs.lines.filter(ev("request", (x) => x.path === "/charge")).length,
    charges,
    "no charge attempted",
  );
});

test("bad bodies get 400 naming the field; unknown routes 404 after authz", async () => {
  const r = await call(pki, ord.svc.port, "order.internal", as("edge"), "POST", "/orders", {
    sku: "widget",
    quantity: -1,
  });
  assert.ok("status" in r);
  assert.equal(r.status, 400);
  assert.equal(r.body.field, "quantity");
  const nf = await call(pki, pay.svc.port, "payment.internal", as("order"), "GET", "/nope");
  assert.ok("status" in nf && nf.status === 404);
  const denied = await call(pki, pay.svc.port, "payment.internal", as("edge"), "GET", "/nope");
  assert.ok("status" in denied && denied.status === 403, "a stranger learns nothing about routes");
});

test("a policy edit changes decisions without a restart; a broken edit keeps the old policy", async () => {
  const original = readFileSync(pki.policyFile, "utf8");
  // A keep-alive connection that asks the same thing before and after: the connection's
  // memo of its last verdict must not outlive the policy it came from.
  const kept = new Client(`https://127.0.0.1:${pay.svc.port}`, {
    connect: { ca: readFileSync(pki.ca.paths.bundle), ...as("inventory"), servername: "payment.internal" },
  });
  const keptStatus = async () => {
    const res = await kept.request({ method: "GET", path: "/healthz" });
    await res.body.text();
    return res.statusCode;
  };
  assert.equal(await keptStatus(), 403);
  let since = pay.logs.lines.length;
  writeFileSync(
    pki.policyFile,
    original.replace(`[payment]\naccepts = ["order"]`, `[payment]\naccepts = ["order", "inventory"]`),
  );
  await pay.logs.wait(ev("policy.reloaded"), 5_000, since);
  let r = await call(pki, pay.svc.port, "payment.internal", as("inventory"), "GET", "/healthz");
  assert.ok("status" in r && r.status === 200, JSON.stringify(r));
  assert.equal(await keptStatus(), 200);

  since = pay.logs.lines.length;
  writeFileSync(pki.policyFile, `[payment]\naccepts = ["order", "inventory"]\nallow_all = true\n`);
  const failed = await pay.logs.wait(ev("policy.reload_failed"), 5_000, since);
  assert.match(String(failed.error), /mesh-policy\.toml:3: unknown key "allow_all"/);
  r = await call(pki, pay.svc.port, "payment.internal", as("inventory"), "GET", "/healthz");
  assert.ok("status" in r && r.status === 200, "the old policy is still in force");

  since = pay.logs.lines.length;
  writeFileSync(pki.policyFile, original);
  await pay.logs.wait(ev("policy.reloaded"), 5_000, since);
  r = await call(pki, pay.svc.port, "payment.internal", as("inventory"), "GET", "/healthz");
  assert.ok("status" in r && r.status === 403);
  assert.equal(await keptStatus(), 403);
  await kept.close();
});

test("a renewed certificate is served to new connections without a restart", async () => {
  const since = pay.logs.lines.length;
  const renewed = await pki.ca.renew({ domain: "payment.internal" });
  const l = await pay.logs.wait(
    ev("tls.reloaded", (x) => x.certChanged === true),
    5_000,
    since,
  );
  assert.equal(l.serial, renewed.serial.toLowerCase());
  const r = await call(pki, pay.svc.port, "payment.internal", as("order"), "GET", "/healthz");
  assert.ok("status" in r && r.status === 200);
});

test("revocation takes effect without a restart: new connections refused as revoked, keep-alive closed", async () => {
  // A keep-alive connection from order, open before the revocation.
  const order = as("order");
  const keep = new Client(`https://127.0.0.1:${pay.svc.port}`, {
    connect: { ca: readFileSync(pki.ca.paths.bundle), ...order, servername: "payment.internal" },
  });
  const first = await keep.request({ method: "GET", path: "/healthz" });
  assert.equal(first.statusCode, 200);
  await first.body.text();

  let since = pay.logs.lines.length;
  const ordSince = ord.logs.lines.length;
  await pki.ca.revoke({ domain: "inventory.internal", reason: "keyCompromise" });
  await pay.logs.wait(
    ev("tls.reloaded", (x) => x.trustChanged === true),
    5_000,
    since,
  );
  // order reloads the CRLs on its own watcher: on a loaded machine that can come a little later.
  await ord.logs.wait(
    ev("tls.reloaded", (x) => x.trustChanged === true),
    5_000,
    ordSince,
  );
  const refused = await call(pki, pay.svc.port, "payment.internal", as("inventory"), "GET", "/healthz");
  assert.ok("error" in refused, JSON.stringify(refused));
  const l = await pay.logs.wait(ev("tls.handshake_failed"), 3_000, since);
  assert.equal(l.reason, "revoked");
  // The fix it names works online too: a revoked identity cannot renew, and mesh:up enrols it afresh.
  assert.match(
    String(l.msg),
    /a revoked identity cannot renew: give the client a new one \(online: restart mesh:up, .*; file mode: npm run ca -- issue --domain <name>\)/,
  );
  assert.doesNotMatch(String(l.msg), /issue the client a new certificate/);
  assert.equal((l.peer as { subject: string }).subject, "CN=inventory.internal");
  // order is not revoked: its keep-alive connection is still served.
  const still = await keep.request({ method: "GET", path: "/healthz" });
  assert.equal(still.statusCode, 200);
  await still.body.text();

  // order's calls to the revoked inventory fail with a reason, not a hang: a caller checks
  // its callee against the CRLs too (issue 8, item 1).
  since = ord.logs.lines.length;
  const o = await call(pki, ord.svc.port, "order.internal", as("edge"), "POST", "/orders", {
    sku: "widget",
    quantity: 1,
  });
  assert.ok("status" in o);
  assert.equal(o.status, 502, "order refuses the revoked inventory");
  assert.equal(o.body.reason, "server_revoked");
  // inventory gets a fresh certificate, so what follows is about order's revocation alone.
  since = inv.logs.lines.length;
  await pki.ca.issue({ domain: "inventory.internal" });
  await inv.logs.wait(
    ev("tls.reloaded", (x) => x.certChanged === true),
    5_000,
    since,
  );

  // Now revoke order: its keep-alive connection is closed, its next connection refused,
  // and its own calls to payment fail as `rejected_in_handshake`.
  since = pay.logs.lines.length;
  await pki.ca.revoke({ domain: "order.internal" });
  await pay.logs.wait(
    ev("tls.reloaded", (x) => x.trustChanged === true),
    5_000,
    since,
  );
  await ord.logs.wait(ev("tls.reloaded"), 5_000);
  const closed = await pay.logs.wait(ev("tls.connections_closed"), 3_000, since);
  // The test's keep-alive connection and order's own pooled one: only order's, nobody else's.
  assert.ok((closed.peers as string[]).length >= 1);
  for (const p of closed.peers as string[]) assert.equal(p, "order (its certificate was revoked)");
  await assert.rejects(async () => {
    const again = await keep.request({ method: "GET", path: "/healthz" });
    await again.body.text();
  });
  assert.equal((await pay.logs.wait(ev("tls.handshake_failed"), 3_000, since)).reason, "revoked");
  await keep.close();

  since = ord.logs.lines.length;
  const failed = await call(pki, ord.svc.port, "order.internal", as("edge"), "POST", "/orders", {
    sku: "widget",
    quantity: 1,
  });
  assert.ok("status" in failed);
  assert.equal(failed.status, 502);
  assert.equal(failed.body.reason, "rejected_in_handshake");
  const up = await ord.logs.wait(ev("upstream.failed"), 3_000, since);
  assert.equal(up.reason, "rejected_in_handshake");
  assert.equal(up.upstream, "inventory");
});

test("an upstream that is down: 502 with upstream_down, promptly", async () => {
  await pay.svc.close();
  // order's own certificate is revoked by now; re-issue so only payment's absence matters.
  await pki.ca.issue({ domain: "order.internal" });
  await ord.logs.wait(
    ev("tls.reloaded", (x) => x.certChanged === true),
    5_000,
  );
  const before = await stockAs("widget");
  const since = ord.logs.lines.length;
  const t0 = Date.now();
  const r = await call(pki, ord.svc.port, "order.internal", as("edge"), "POST", "/orders", {
    sku: "widget",
    quantity: 2,
  });
  assert.ok(Date.now() - t0 < 3_000);
  assert.ok("status" in r);
  assert.equal(r.status, 502, JSON.stringify(r.body));
  assert.equal(r.body.reason, "upstream_down");
  assert.equal(r.body.reservationReleased, true);
  assert.equal((await ord.logs.wait(ev("upstream.failed"), 2_000, since)).reason, "upstream_down");
  assert.equal(await stockAs("widget"), before, "the reservation was released");
});

async function stockAs(sku: string): Promise<number> {
  const r = await call(pki, inv.svc.port, "inventory.internal", as("order"), "GET", `/stock/${sku}`);
  assert.ok("status" in r && r.status === 200, JSON.stringify(r));
  return (r as { body: { available: number } }).body.available;
}

test("no private key material ever reaches a log line", () => {
  const all = JSON.stringify([...pay.logs.lines, ...inv.logs.lines, ...ord.logs.lines]);
  assert.ok(pay.logs.lines.length > 10, "there are logs to check");
  assert.doesNotMatch(all, /PRIVATE KEY/);
  for (const n of ["order", "payment", "inventory"]) {
    const body = readFileSync(pki.ca.paths.leaf(`${n}.internal`).key, "utf8").split("\n")[1]!;
    assert.ok(body.length > 20);
    assert.equal(all.includes(body.slice(0, 24)), false, `${n}'s key appears in a log`);
  }
});

test("past its budget of request lines a second, a service counts requests into summaries and loses none", async () => {
  const busy = await start(pki, "payment", { requestLinesPerSecond: 5 });
  const client = new Client(`https://127.0.0.1:${busy.svc.port}`, {
    connect: { ca: readFileSync(pki.ca.paths.bundle), ...as("order"), servername: "payment.internal" },
  });
  try {
    for (let i = 0; i < 40; i++) {
      const r = await client.request({ method: "GET", path: "/healthz" });
      assert.equal(r.statusCode, 200);
      await r.body.text();
    }
  } finally {
    await client.close();
    await busy.svc.close(); // writes the summaries still counting
  }
  const lines = busy.logs.lines.filter(ev("request", (l) => l.path === "/healthz"));
  const summaries = busy.logs.lines.filter(ev("request.summary"));
  assert.ok(lines.length < 40 && summaries.length > 0, `${lines.length} lines, ${summaries.length} summaries`);
  assert.equal(lines.length + summaries.reduce((n, s) => n + Number(s.count), 0), 40);
  for (const s of summaries)
    assert.deepEqual(
      [s.peer, s.method, s.route, s.status, s.rule],
      ["order", "GET", "/healthz", 200, "payment.accepts"],
    );
});
