// Audit mode: decide() unit cases with literal identities, then a real payment service whose
// policy audits: a call the rule would deny gets its answer, an authz.would_deny line and a
// counted metric; the same rule enforced (a hot reload) answers 403. The service's own log lines
// then feed `npm run policy -- what-if`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { auditedRules, decide, parsePolicy, smallestEdit } from "../services/mesh/policy.ts";
import { freshPki, start, call, identity, type TestPki, type TestService } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

const AUDIT = `[payment]
mode = "audit"
accepts = ["order"]

[inventory]
accepts = ["order"]

[[inventory.routes]]
method = "POST"
path = "/reserve"
accepts = ["order"]
mode = "audit"

[order]
accepts = ["edge"]
`;

test("audit mode: a call the rule would deny is allowed with wouldDeny and the deny's rule, reason and hint", () => {
  const p = parsePolicy(AUDIT, "p.toml");
  const d = decide(p, "payment", "inventory", "POST", "/charge");
  assert.equal(d.allow, true);
  assert.equal(d.wouldDeny, true);
  assert.equal(d.rule, "payment.accepts");
  assert.equal(d.where, "p.toml:3");
  assert.match(d.reason, /inventory is not listed in payment.accepts/);
  assert.match(String(d.hint), /add "inventory" to that accepts list \(p\.toml:3\)/);
  // A listed caller is a plain allow.
  assert.deepEqual(
    [
      decide(p, "payment", "order", "POST", "/charge").allow,
      decide(p, "payment", "order", "POST", "/charge").wouldDeny,
    ],
    [true, undefined],
  );
  // Per route: the route audits, the service's accepts enforces.
  const r = decide(p, "inventory", "payment", "POST", "/reserve");
  assert.deepEqual(
    [r.allow, r.wouldDeny, r.rule, r.where],
    [true, true, "inventory.routes[0] (POST /reserve)", "p.toml:8"],
  );
  const s = decide(p, "inventory", "payment", "GET", "/stock/widget");
  assert.deepEqual([s.allow, s.wouldDeny, s.rule], [false, undefined, "inventory.accepts"]);
  // What mesh:up warns about at start.
  assert.deepEqual(auditedRules(p), ["payment.accepts", "inventory.routes[0]"]);
  assert.deepEqual(auditedRules(parsePolicy(AUDIT.replaceAll(`mode = "audit"\n`, ""), "p.toml")), []);
});

test("audit mode fails closed: a route can enforce inside an auditing service; no table and no identity still deny", () => {
  const p = parsePolicy(
    `[payment]\nmode = "audit"\naccepts = ["order"]\n\n[[payment.routes]]\nmethod = "POST"\npath = "/refund"\naccepts = ["order"]\nmode = "enforce"\n`,
    "p.toml",
  );
  assert.equal(decide(p, "payment", "inventory", "POST", "/refund").allow, false);
  assert.equal(decide(p, "payment", "inventory", "POST", "/charge").allow, true);
  assert.equal(decide(p, "payment", null, "POST", "/charge").allow, false);
  const missing = decide(p, "inventory", "order", "GET", "/healthz");
  assert.deepEqual([missing.allow, missing.rule], [false, "default-deny"]);
  // A table with only a mode still needs accepts: it does not turn into "accept anybody".
  assert.throws(
    () => parsePolicy(`[payment]\nmode = "audit"\n`, "p.toml"),
    /^MeshError: p\.toml:1: \[payment\] needs "accepts"/,
  );
  assert.throws(
    () => parsePolicy(`[payment]\naccepts = []\nmode = "dry-run"\n`, "p.toml"),
    (e: Error) => e.message === `p.toml:3: payment.mode must be "enforce" or "audit" (got "dry-run")`,
  );
  assert.throws(
    () =>
      parsePolicy(
        `[payment]\naccepts = []\n\n[[payment.routes]]\nmethod = "GET"\npath = "/x"\naccepts = []\nmode = true\n`,
        "p.toml",
      ),
    /^MeshError: p\.toml:8: payment\.routes\[0\]\.mode must be "enforce" or "audit"/,
  );
});

test("smallestEdit: remove from the list that allowed, add to the list that denied, the route's line for a route rule", () => {
  const p = parsePolicy(
    `[payment]\naccepts = ["order"]\n\n[[payment.routes]]\nmethod = "POST"\npath = "/refund"\naccepts = ["order"]\n`,
    "p.toml",
  );
  const edit = (peer: string, svc: string, m: string, path: string) =>
    smallestEdit(p, svc, peer, decide(p, svc, peer, m, path));
  assert.equal(edit("order", "payment", "POST", "/charge"), `remove "order" from payment.accepts (p.toml:2)`);
  assert.equal(edit("inventory", "payment", "POST", "/charge"), `add "inventory" to payment.accepts (p.toml:2)`);
  assert.equal(
    edit("inventory", "payment", "POST", "/refund"),
    `add "inventory" to payment.routes[0].accepts (p.toml:4)`,
  );
  assert.equal(
    edit("order", "inventory", "GET", "/healthz"),
    `add a [inventory] table with accepts = ["order"] to p.toml`,
  );
});

let pki: TestPki;
let pay: TestService;

before(async () => {
  pki = await freshPki(AUDIT);
  pay = await start(pki, "payment");
});

after(async () => {
  await pay.svc.close();
  pki.cleanup();
});

async function wouldDenyCount(): Promise<number> {
  const m = await pay.svc.metrics.registry.getSingleMetricAsString("mesh_inbound_http_authz_would_deny_total");
  const line = m
    .split("\n")
    .find((l) => l.startsWith('mesh_inbound_http_authz_would_deny_total{caller="inventory",rule="payment.accepts"}'));
  return line ? Number(line.split(" ").pop()) : 0;
}

test("a real service in audit mode lets a would-be-denied call through, logs authz.would_deny and counts it; enforced, it is 403", async () => {
  const before = await wouldDenyCount();
  const since = pay.logs.lines.length;
  const r = await call(pki, pay.svc.port, "payment.internal", identity(pki, "inventory"), "POST", "/charge", {
    orderId: "o-audit",
    amount: 100,
  });
  assert.ok("status" in r, JSON.stringify(r));
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const l = await pay.logs.wait(ev("authz.would_deny"), 5_000, since);
  assert.deepEqual(
    [l.peer, l.method, l.path, l.rule, l.level],
    ["inventory", "POST", "/charge", "payment.accepts", 40],
  );
  assert.match(String(l.reason), /inventory is not listed in payment.accepts/);
  assert.match(String(l.hint), /add "inventory"/);
  const req = await pay.logs.wait(
    ev("request", (x) => x.path === "/charge"),
    5_000,
    since,
  );
  assert.equal(req.status, 201);
  assert.equal(await wouldDenyCount(), before + 1);
  // The caller the rule lists: no would_deny line, no count.
  const since2 = pay.logs.lines.length;
  const ok = await call(pki, pay.svc.port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
  assert.ok("status" in ok && ok.status === 200);
  await pay.logs.wait(
    ev("request", (x) => x.peer === "order"),
    5_000,
    since2,
  );
  assert.equal(pay.logs.lines.slice(since2).filter(ev("authz.would_deny")).length, 0);
  assert.equal(await wouldDenyCount(), before + 1);

  // Save the service's own lines as a log file: what-if replays them below.
  const logs = join(pki.root, "logs");
  mkdirSync(logs, { recursive: true });
  writeFileSync(join(logs, "payment.log"), `${pay.logs.lines.map((x) => JSON.stringify(x)).join("\n")}\n`);
  const enforced = AUDIT.replace(
    `mode = "audit"\naccepts = ["order"]\n\n[inventory]`,
    `accepts = ["order"]\n\n[inventory]`,
  );
  assert.notEqual(enforced, AUDIT);
  const candidate = join(pki.root, "enforced.toml");
  writeFileSync(candidate, enforced);
  const w = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      join(import.meta.dirname, "..", "scripts", "policy", "main.ts"),
      "what-if",
      candidate,
      "--policy",
      pki.policyFile,
      "--logs",
      logs,
      "--json",
    ],
    { encoding: "utf8", timeout: 60_000 },
  );
  assert.equal(w.status, 1, w.stderr);
  const res = JSON.parse(w.stdout);
  const change = res.changes.find(
    (c: { caller: string; service: string; method: string }) =>
      c.caller === "inventory" && c.service === "payment" && c.method === "POST",
  );
  assert.ok(change, w.stdout);
  assert.deepEqual(
    [change.from, change.to, change.rule, change.path, change.seen, change.breaking],
    ["would_deny", "deny", "payment.accepts", "/charge", 1, true],
  );

  // Enforce it: the same call is now 403 and authz.denied, with the same fields.
  const since3 = pay.logs.lines.length;
  writeFileSync(pki.policyFile, enforced);
  await pay.logs.wait(ev("policy.reloaded"), 10_000, since3);
  const denied = await call(pki, pay.svc.port, "payment.internal", identity(pki, "inventory"), "POST", "/charge", {
    orderId: "o-audit-2",
    amount: 100,
  });
  assert.ok("status" in denied && denied.status === 403, JSON.stringify(denied));
  const d = await pay.logs.wait(ev("authz.denied"), 5_000, since3);
  assert.deepEqual([d.peer, d.rule], ["inventory", "payment.accepts"]);
  assert.equal(pay.logs.lines.slice(since3).filter(ev("authz.would_deny")).length, 0);
  assert.equal(await wouldDenyCount(), before + 1);
});
