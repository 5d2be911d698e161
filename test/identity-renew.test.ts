// Renewal in identity mode against a real CA server, with lifetimes of seconds: under steady
// traffic between services with zero failed requests, refused for a revoked identity (which keeps
// serving until it expires, loudly), across a CA outage longer than a renewal interval, and at
// once on the CA's renew-now hint.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "undici";
import { CaServer } from "../ca/server/server.ts";
import { TestClock } from "../lib/clock.ts";
import { ca as cli } from "./helpers/ca.ts";
import { world, startIn, callAs, ROOMY_LIMITS, type World, type Result } from "./identity-fixtures.ts";
import type { LogSink } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

const worlds: World[] = [];
after(async () => {
  for (const w of worlds) await w.cleanup();
});
async function fresh(limits?: typeof ROOMY_LIMITS): Promise<World> {
  const w = await world(undefined, limits);
  worlds.push(w);
  return w;
}

/** Calls until stopped: fresh connections and one kept-alive connection, every result kept. */
function traffic(w: World, port: number, servername: string, method: string, path: string, body?: unknown) {
  const results: Result[] = [];
  let on = true;
  const fresh = (async () => {
    while (on) {
      results.push(await callAs(w, w.edge, port, servername, method, path, body));
      await sleep(15);
    }
  })();
  const client = new Client(`https://127.0.0.1:${port}`, {
    connect: { ca: w.ca.bundle(), cert: w.edge.cert, key: w.edge.key, servername },
  });
  const kept = (async () => {
    while (on) {
      try {
        const r = await client.request({
          method: method as "GET",
          path,
          body: body === undefined ? undefined : JSON.stringify(body),
          headers: body === undefined ? {} : { "content-type": "application/json" },
        });
        results.push({ status: r.statusCode, body: await r.body.text() });
      } catch (e) {
        results.push({ error: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
      }
      await sleep(15);
    }
  })();
  return {
    results,
    async stop() {
      on = false;
      await Promise.all([fresh, kept]);
      await client.close();
      return results;
    },
  };
}

const renewals = (logs: LogSink) => logs.lines.filter(ev("identity.renewed"));
async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test("renewal over mTLS with a new key, several times, under steady order -> inventory, payment traffic: zero failed requests", async () => {
  const w = await fresh();
  process.env.MESH_INVENTORY_STOCK = "widget=1000000";
  // Renewed at 1/3 of the life (±10 %): three renewals in ~6 s instead of ~12 s, each with 4 s left.
  const schedule = { fraction: 1 / 3, jitter: 0.1 };
  const pay = await startIn(w, "payment", { lifetime: "6s", pollMs: 1_000, schedule });
  const inv = await startIn(w, "inventory", { lifetime: "6s", pollMs: 1_000, schedule });
  const ord = await startIn(w, "order", {
    lifetime: "6s",
    pollMs: 1_000,
    schedule,
    upstreams: { payment: `127.0.0.1:${pay.svc.port}`, inventory: `127.0.0.1:${inv.svc.port}` },
  });
  const load = traffic(w, ord.svc.port, "order.internal", "POST", "/orders", { sku: "widget", quantity: 1 });
  try {
    await until(
      () => [pay, inv, ord].every((s) => renewals(s.logs).length >= 3),
      30_000,
      "three renewals of each service",
    ).catch((e) => {
      const seen = [pay, inv, ord].flatMap((s) =>
        s.logs.lines
          .filter((l) => /^(identity|trust|tls)\./.test(l.event ?? ""))
          .map((l) => JSON.stringify(l).slice(0, 400)),
      );
      throw new Error(`${(e as Error).message}:\n${seen.join("\n")}`);
    });
  } finally {
    await load.stop();
    for (const s of [ord, inv, pay]) await s.svc.close();
  }
  const failed = load.results.filter((r) => !("status" in r) || r.status !== 201);
  const story = () =>
    [pay, inv, ord]
      .flatMap((s) =>
        s.logs.lines
          .filter((l) => /^identity\./.test(l.event ?? ""))
          .map(
            (l) =>
              `${l.time} ${l.service} ${l.event} ${l.serial} notAfter=${l.notAfter} ${l.nextRenewal ?? ""} ${l.reason ?? ""}`,
          ),
      )
      .sort()
      .join("\n");
  assert.deepEqual(failed, [], `${failed.length} of ${load.results.length} requests failed\n${story()}`);
  assert.ok(load.results.length >= 20, `steady traffic: ${load.results.length} requests`);
  for (const s of [pay, inv, ord]) {
    const r = renewals(s.logs);
    // Each renewal names the one before it: a chain of distinct serials, each a new key (the CA refuses same_key).
    assert.equal(new Set(r.map((l) => l.serial)).size, r.length);
    for (let i = 1; i < r.length; i++) assert.equal(r[i]!.previous, r[i - 1]!.serial);
    assert.ok(r.every((l) => l.generation === 1 && l.reason === "scheduled" && typeof l.notAfter === "string"));
    assert.match(
      await s.svc.metrics.registry.metrics(),
      new RegExp(`mesh_identity_cert_renewals_total(\\{[^}]*\\})? ${r.length}\\b`),
    );
  }
  // The CA saw them as renewals over mTLS (simplereenroll), each from the previous certificate.
  const est = w.ca.lines.events("est.renewed");
  assert.ok(est.length >= 9, `${est.length} renewals at the CA`);
  assert.ok(est.every((l) => typeof l.previous === "string"));
});

test("a revoked identity is refused at renewal (renew_failed with the CA's reason), keeps serving until expiry with a loud warning, then says identity.expired and what to do", async () => {
  const w = await fresh();
  const pay = await startIn(w, "payment", { lifetime: "4s", pollMs: 60_000 });
  try {
    await w.ca.ca.revoke({ serial: pay.svc.identity.identity.serial, reason: "keyCompromise" });
    const failed = await pay.logs.wait(ev("identity.renew_failed"), 8_000);
    assert.equal(failed.status, 403);
    assert.match(String(failed.reason), /the CA refused \/\.well-known\/est\/simplereenroll \(403\): .*revoked/);
    assert.equal(failed.serial, pay.svc.identity.identity.serial);
    assert.equal(typeof failed.nextRetry, "string");
    const refused = await w.ca.lines.wait(ev("est.refused", (l) => l.reason === "cert_revoked"));
    assert.equal(refused.serial, pay.svc.identity.identity.serial);
    // Still serving with the revoked certificate until it expires (a peer with the new CRL would refuse it).
    const r = await callAs(w, w.edge, pay.svc.port, "payment.internal", "GET", "/healthz");
    assert.deepEqual(r, { status: 200, body: JSON.stringify({ service: "payment", caller: "edge" }) });
    const expiring = await pay.logs.wait(ev("identity.expiring"), 6_000);
    // Said by the failure or by its own timer, whichever comes first (a renewal may still be under way).
    assert.match(String(expiring.msg), /expires in \d+ s and (could not be|has not been) renewed/);
    const expired = await pay.logs.wait(ev("identity.expired"), 6_000);
    assert.equal(expired.level, 50);
    assert.match(
      String(expired.msg),
      /expired at .*: every peer now refuses this service and the CA will not renew it; enrol again: make a token \(npm run -s ca -- token --domain payment\.internal > token\) and restart this service with --token-file token or MESH_ENROL_TOKEN/,
    );
    assert.equal(renewals(pay.logs).length, 0);
    assert.match(
      await pay.svc.metrics.registry.metrics(),
      /mesh_identity_cert_renewal_failures_total(\{[^}]*\})? [1-9]/,
    );
  } finally {
    await pay.svc.close();
  }
});

test("the CA down for longer than a renewal interval and back: traffic unharmed, renewal resumes before expiry", async () => {
  const w = await fresh();
  // random() = 0.5: no jitter, renewal at exactly 1/3 of the life left when the certificate came
  // (3.3 s; at 2/3 the outage lasted 7.5 s), 6.7 s left to renew once the CA is back.
  const pay = await startIn(w, "payment", {
    lifetime: "10s",
    pollMs: 500,
    random: () => 0.5,
    schedule: { fraction: 1 / 3, jitter: 0.1 },
  });
  const load = traffic(w, pay.svc.port, "payment.internal", "GET", "/healthz");
  const port = w.ca.server.listeningPort;
  const first = pay.svc.identity.identity;
  const due = pay.svc.identity.nextRenewal;
  let downFor = 0;
  try {
    const downAt = Date.now();
    await w.ca.server.close();
    // Real time on purpose: the end-to-end test of an outage that outlasts the renewal time.
    await sleep(Math.max(0, due - Date.now()) + 800); // past the renewal time
    const failed = await pay.logs.wait(ev("identity.renew_failed"));
    assert.equal(failed.code, "CA_UNREACHABLE");
    downFor = Date.now() - downAt;
    w.ca.server = await CaServer.start({ ca: w.ca.ca, port, log: w.ca.server.log, limits: ROOMY_LIMITS });
    const renewed = await pay.logs.wait(ev("identity.renewed"), 5_000);
    assert.equal(renewed.previous, first.serial);
    assert.ok(Date.now() < Date.parse(first.notAfter), "renewed before the old certificate expired");
    await pay.logs.wait(ev("trust.poll_restored"), 3_000);
  } finally {
    await load.stop();
    await pay.svc.close();
  }
  assert.ok(
    downFor > due - Date.parse(first.notBefore) - 5 * 60_000 || downFor > 6_000,
    `the outage (${downFor} ms) outlasted the renewal interval`,
  );
  assert.ok(pay.logs.find(ev("trust.poll_failed")), "the failed polls were reported");
  const bad = load.results.filter((r) => !("status" in r) || r.status !== 200);
  assert.deepEqual(bad, [], `${bad.length} of ${load.results.length} requests failed`);
  assert.ok(load.results.length >= 50, `steady traffic: ${load.results.length} requests`);
});

test("a new generation published, then made the signer: the service takes the bundle, then renews at once on the renew-now hint", async () => {
  const w = await fresh();
  const pay = await startIn(w, "payment", { lifetime: "1h", pollMs: 250 });
  try {
    // The real CLI on the folder the server runs on, in the safe order: publish, then sign.
    const env = { MESH_PKI_DIR: w.ca.dir };
    assert.equal((await cli(["generation", "add"], { env })).code, 0);
    assert.equal((await cli(["bundle"], { env })).code, 0);
    const updated = await pay.logs.wait(
      ev("trust.updated", (l) => Array.isArray(l.roots) && l.roots.length === 2),
      5_000,
    );
    assert.deepEqual(updated.roots, ["Acme Corp CA", "Acme Corp CA G2"]);
    // Polling over mTLS with If-None-Match, the service tells the CA which bundle it holds (a rotation gate reads this).
    await until(
      () => w.ca.ca.ledger.bundleHolders().some((h) => h.name === "payment.internal" && h.heldEtag === updated.etag),
      3_000,
      "the CA to record the bundle payment holds",
    );
    assert.equal(renewals(pay.logs).length, 0, "no renewal for a bundle change alone");
    assert.equal((await cli(["generation", "use", "2"], { env })).code, 0);
    const hint = await pay.logs.wait(ev("identity.renew_now"), 5_000);
    assert.equal(hint.generation, 1);
    const renewed = await pay.logs.wait(ev("identity.renewed"), 5_000);
    assert.equal(renewed.reason, "renew-now hint");
    assert.equal(renewed.generation, 2);
    assert.equal(renewed.root, "Acme Corp CA G2");
    // Once on the signing generation, the hint stops: three more polls, and no second renewal.
    const polls = pay.svc.identity.polls;
    await until(() => pay.svc.identity.polls >= polls + 3, 5_000, "three more polls of the CA");
    assert.equal(renewals(pay.logs).length, 1);
    const r = await callAs(w, w.edge, pay.svc.port, "payment.internal", "GET", "/healthz");
    assert.deepEqual(r, { status: 200, body: JSON.stringify({ service: "payment", caller: "edge" }) });
  } finally {
    await pay.svc.close();
  }
});

test("rate-limited by the CA (429): the retry waits as long as Retry-After says, not the short backoff", async () => {
  // Per name (enrolments and renewals have a bucket each): one renewal at once, then one every 20 s.
  const w = await fresh({ ...ROOMY_LIMITS, perName: { capacity: 1, perMinute: 3 } });
  const pay = await startIn(w, "payment", { lifetime: "30s", pollMs: 60_000 });
  try {
    assert.equal(await pay.svc.identity.renew("test"), true);
    const before = Date.now();
    assert.equal(await pay.svc.identity.renew("test"), false);
    const failed = await pay.logs.wait(ev("identity.renew_failed"));
    assert.equal(failed.status, 429);
    assert.match(String(failed.reason), /\(429\): too many requests/);
    // The lifetime-scaled backoff would retry within ~1.2 s; Retry-After asks for seconds more.
    const wait = Date.parse(String(failed.nextRetry)) - before;
    assert.ok(wait >= 5_000, `retry after ${wait} ms`);
  } finally {
    await pay.svc.close();
  }
});

test("on a test clock, a certificate of an hour renews at two thirds of its life and expires, loudly, with no wait", async () => {
  const w = await fresh();
  const clock = new TestClock();
  const pay = await startIn(w, "payment", { lifetime: "1h", pollMs: 60_000, random: () => 0.5, clock });
  try {
    const agent = pay.svc.identity;
    const first = agent.identity;
    const due = agent.nextRenewal;
    const life = Date.parse(first.notAfter) - clock.now();
    assert.ok(
      Math.abs(due - clock.now() - (life * 2) / 3) < 5_000,
      `renewal due at 2/3 of the life (${due - clock.now()} ms of ${life})`,
    );
    clock.set(due - 1_000);
    await agent.poll(); // a round trip to the CA: a renewal started by the advance would be logged by now
    assert.equal(renewals(pay.logs).length, 0, "nothing before the renewal time");
    clock.set(due);
    const renewed = await pay.logs.wait(ev("identity.renewed"), 10_000);
    assert.equal(renewed.reason, "scheduled");
    assert.equal(renewed.previous, first.serial);
    assert.ok(agent.nextRenewal > due, "the next renewal is scheduled after this one");

    // The CA gone for good: the clock moved past the new certificate's end says identity.expired.
    await w.ca.server.close();
    clock.set(Date.parse(agent.identity.notAfter) + 1_000);
    const expired = await pay.logs.wait(ev("identity.expired"), 10_000);
    assert.equal(expired.serial, agent.identity.serial);
    assert.equal(expired.level, 50);
  } finally {
    await pay.svc.close();
  }
});
