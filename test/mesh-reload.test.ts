// Policy hot reload against a real service: a file rewritten in place slowly is never
// applied half-written, an empty file on reload is a failed reload, and each change of
// the file is logged once (a good policy restored after a broken one included).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { openSync, closeSync, ftruncateSync, writeSync, writeFileSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "undici";
import { freshPki, start, call, identity, type TestPki, type TestService } from "./mesh-fixtures.ts";
import { ev, evAny } from "./helpers/events.ts";

let pki: TestPki;
let pay: TestService;
/** Each watcher's stat polls so far, and who waits for more. */
const polls = { tls: 0, policy: 0 };
let pollWaiters: Array<() => boolean> = [];

/**
 * Resolves once the watcher has polled the files n more times: the positive evidence that it
 * looked again, where a test asserts that a change was NOT reported a second time.
 */
function polled(watcher: "tls" | "policy", n = 3): Promise<void> {
  const target = polls[watcher] + n;
  return new Promise((resolve) => {
    const check = () => (polls[watcher] >= target ? (resolve(), true) : false);
    if (!check()) pollWaiters.push(check);
  });
}

before(async () => {
  pki = await freshPki();
  // A short stat poll (still real time and real files), counted so a test waits for polls, not time.
  pay = await start(pki, "payment", {
    watchPoll: {
      pollMs: 100,
      onPoll: (w) => {
        polls[w] += 1;
        pollWaiters = pollWaiters.filter((done) => !done());
      },
    },
  });
});

after(async () => {
  await pay.svc.close();
  pki.cleanup();
});

const as = (name: string) => identity(pki, name);
const status = async (who: string) => {
  const r = await call(pki, pay.svc.port, "payment.internal", as(who), "GET", "/healthz");
  return "status" in r ? r.status : r.error;
};

test("a policy rewritten in place slowly is applied only once complete: no 403 while it is written", async () => {
  const original = readFileSync(pki.policyFile, "utf8");
  // [payment] comes last, so every prefix of the new file that parses leaves payment without
  // a table: applied, it would deny order.
  const next = `[inventory]\naccepts = ["order"]\n\n[order]\naccepts = ["edge"]\n\n[payment]\naccepts = ["order", "inventory"]\n`;
  assert.equal(await status("inventory"), 403);
  const since = pay.logs.lines.length;

  const client = new Client(`https://127.0.0.1:${pay.svc.port}`, {
    connect: { ca: readFileSync(pki.ca.paths.bundle), ...as("order"), servername: "payment.internal" },
  });
  const statuses: number[] = [];
  let writing = true;
  const caller = (async () => {
    while (writing) {
      const r = await client.request({ method: "GET", path: "/healthz" });
      await r.body.text();
      statuses.push(r.statusCode);
      await sleep(20);
    }
  })();

  // Truncate, pause, then append a line at a time: what a slow script or editor does.
  const fd = openSync(pki.policyFile, "r+");
  ftruncateSync(fd, 0);
  await sleep(300);
  for (const piece of next.split(/(?<=\n)/)) {
    writeSync(fd, piece);
    await sleep(120);
  }
  closeSync(fd);
  const reloaded = await pay.logs.wait(ev("policy.reloaded"), 5_000, since);
  writing = false;
  await caller;
  await client.close();

  assert.ok(statuses.length > 20, `the client kept calling (${statuses.length} calls)`);
  assert.deepEqual(
    statuses.filter((s) => s !== 200),
    [],
    "every call during the rewrite was allowed",
  );
  assert.deepEqual(
    (reloaded.accepts as Record<string, string[]>).payment,
    ["order", "inventory"],
    "the complete file was applied",
  );
  const applied = pay.logs.lines.slice(since).filter(ev("policy.reloaded"));
  assert.equal(applied.length, 1, "one reload for one rewrite");
  assert.equal(await status("inventory"), 200, "the new policy is in force");
  assert.equal(await status("order"), 200);

  writeFileSync(pki.policyFile, original);
  await pay.logs.wait(ev("policy.reloaded"), 5_000, pay.logs.lines.indexOf(reloaded) + 1);
  assert.equal(await status("inventory"), 403);
});

test("an empty policy file on reload is a failed reload that keeps the policy in force", async () => {
  const original = readFileSync(pki.policyFile, "utf8");
  const since = pay.logs.lines.length;
  writeFileSync(pki.policyFile, "");
  const failed = await pay.logs.wait(ev("policy.reload_failed"), 5_000, since);
  assert.match(String(failed.error), /policy file is empty/);
  assert.match(String(failed.msg), /kept the previous policy/);
  assert.equal(await status("order"), 200, "the old policy still decides");
  assert.equal(pay.logs.lines.slice(since).filter(ev("policy.reloaded")).length, 0);

  const mark = pay.logs.lines.length;
  writeFileSync(pki.policyFile, original);
  const back = await pay.logs.wait(ev("policy.reloaded"), 5_000, mark);
  assert.deepEqual((back.accepts as Record<string, string[]>).payment, ["order"]);
});

test("one broken change is one reload_failed line; restoring the good policy logs policy.reloaded", async () => {
  const original = readFileSync(pki.policyFile, "utf8");
  const since = pay.logs.lines.length;
  writeFileSync(pki.policyFile, `[payment]\naccepts = ["order"]\nallow_all = true\n`);
  await pay.logs.wait(ev("policy.reload_failed"), 5_000, since);
  // Past three of the watcher's stat polls, which used to report the same change a second time.
  await polled("policy");
  const failures = pay.logs.lines.slice(since).filter(ev("policy.reload_failed"));
  assert.equal(failures.length, 1, failures.map((l) => l.error).join("\n"));
  assert.match(String(failures[0]!.error), /:3: unknown key "allow_all"/);
  assert.equal(await status("order"), 200);

  const mark = pay.logs.lines.length;
  writeFileSync(pki.policyFile, original);
  const restored = await pay.logs.wait(ev("policy.reloaded"), 5_000, mark);
  assert.deepEqual((restored.accepts as Record<string, string[]>).payment, ["order"]);
  await polled("policy");
  assert.equal(
    pay.logs.lines.slice(mark).filter(evAny("policy.reloaded", "policy.reload_failed")).length,
    1,
    "one line for one change",
  );
});

test("at start-up, a service whose table is missing says loudly that it accepts nobody", async () => {
  const original = readFileSync(pki.policyFile, "utf8");
  const since = pay.logs.lines.length;
  writeFileSync(pki.policyFile, `[inventory]\naccepts = ["order"]\n`);
  // The running payment applies it (a valid policy), and warns that it now accepts nobody.
  const dropped = await pay.logs.wait(ev("policy.table_missing"), 5_000, since);
  assert.equal(dropped.level, 40);
  assert.ok(pay.logs.lines.slice(since).some(ev("policy.reloaded")));
  const lonely = await start(pki, "payment", { watch: false });
  try {
    const l = lonely.logs.find(ev("policy.table_missing"));
    assert.ok(l, "a policy.table_missing line");
    assert.ok(Number(l.level) >= 50, "logged as an error");
    assert.match(String(l.msg), /no \[payment\] table/);
    assert.match(String(l.msg), /accepts nobody/);
    const r = await call(pki, lonely.svc.port, "payment.internal", as("order"), "GET", "/healthz");
    assert.ok("status" in r && r.status === 403);
  } finally {
    await lonely.svc.close();
    // The running payment must be back on the original before the next test calls it.
    const mark = pay.logs.lines.length;
    writeFileSync(pki.policyFile, original);
    await pay.logs.wait(ev("policy.reloaded"), 5_000, mark);
  }
  const ok = await start(pki, "inventory", { watch: false });
  await ok.svc.close();
  assert.equal(ok.logs.find(ev("policy.table_missing")), undefined, "no warning when the table is there");
});

test("a broken CRL file is one tls.reload_failed line; restoring it logs tls.reloaded", async () => {
  const crls = pki.ca.paths.crls;
  const good = readFileSync(crls);
  const since = pay.logs.lines.length;
  writeFileSync(crls, "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n");
  const failed = await pay.logs.wait(ev("tls.reload_failed"), 5_000, since);
  assert.match(String(failed.error), /crls\.pem/);
  await polled("tls");
  assert.equal(pay.logs.lines.slice(since).filter(ev("tls.reload_failed")).length, 1, "one line for one broken change");
  assert.equal(await status("order"), 200, "the previous material is still served");

  const mark = pay.logs.lines.length;
  writeFileSync(crls, good);
  const back = await pay.logs.wait(ev("tls.reloaded"), 5_000, mark);
  assert.equal(back.restored, true);
  await polled("tls");
  assert.equal(pay.logs.lines.slice(mark).filter((l) => String(l.event).startsWith("tls.reload")).length, 1);
});
