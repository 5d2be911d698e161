// A service whose CA is gone: it keeps serving its valid certificate, says so once (not at every
// retry), and renews as soon as the CA answers again, not at the end of a backoff of minutes.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { CaServer } from "../ca/server/server.ts";
import { world, startIn, callAs, ROOMY_LIMITS, type World } from "./identity-fixtures.ts";
import { ev } from "./helpers/events.ts";

const worlds: World[] = [];
after(async () => {
  for (const w of worlds) await w.cleanup();
});

test("the CA down: renewal failures are warned once, the service keeps serving, and renewal resumes at the first poll that gets through", async () => {
  const w = await world(undefined, ROOMY_LIMITS);
  worlds.push(w);
  // An hour's certificate: its retry backoff grows to minutes (timing.ts), what the fix must not wait out.
  const pay = await startIn(w, "payment", { lifetime: "1h", pollMs: 300, random: () => 0.5 });
  try {
    const first = pay.svc.identity.identity;
    const port = w.ca.server.listeningPort;
    await w.ca.server.close();
    for (let i = 0; i < 4; i++) assert.equal(await pay.svc.identity.renew("test"), false);
    const warned = pay.logs.lines.filter(ev("identity.renew_failed"));
    assert.equal(warned.length, 1, "four failures in a row while the CA is unreachable: one warning");
    assert.equal(warned[0]!.code, "CA_UNREACHABLE");
    assert.match(String(warned[0]!.msg), /as soon as the CA answers a poll again/);
    // Four failures of a one-hour certificate: the next retry is half a minute or more away.
    const backoffUntil = pay.svc.identity.nextRenewal;
    assert.ok(backoffUntil - Date.now() > 20_000, `backoff of ${backoffUntil - Date.now()} ms`);
    // Still serving its certificate meanwhile.
    const r = await callAs(w, w.edge, pay.svc.port, "payment.internal", "GET", "/healthz");
    assert.equal("status" in r ? r.status : r, 200);

    w.ca.server = await CaServer.start({ ca: w.ca.ca, port, log: w.ca.server.log, limits: ROOMY_LIMITS });
    const renewed = await pay.logs.wait(ev("identity.renewed"), 15_000);
    assert.ok(Date.now() < backoffUntil, "renewed before the backoff ran out");
    assert.equal(renewed.reason, "the CA answers again");
    assert.equal(renewed.previous, first.serial);
    assert.equal(renewed.failuresBefore, 4);
    assert.ok(pay.logs.find(ev("trust.poll_restored")));
    assert.equal(pay.logs.lines.filter(ev("trust.poll_failed")).length, 1, "the polls' failure is said once too");
  } finally {
    await pay.svc.close();
  }
});
