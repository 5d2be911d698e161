// Identity mode's metrics against a real CA server: the EST client's calls timed by operation
// and outcome (the enrolment's too, made before the service existed), and the renewal heartbeat
// moving when the agent renews; the scrape passes the real `promtool check metrics`.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { join } from "node:path";
import { world, startIn, type World } from "./identity-fixtures.ts";
import { parse, promtool, value } from "./helpers/prom.ts";

const worlds: World[] = [];
after(async () => {
  for (const w of worlds) await w.cleanup();
});

test("EST calls are timed by operation and outcome, and a renewal moves the heartbeat", async () => {
  const w = await world();
  worlds.push(w);
  const pay = await startIn(w, "payment", { lifetime: "1h", pollMs: 60_000 });
  try {
    const m = pay.svc.metrics;
    let s = parse(await m.registry.metrics());
    // Enrolment: an unverified cacerts (the token's pin), a verified one, simpleenroll, crls.
    assert.equal(value(s, "mesh_identity_ca_request_duration_seconds_count", { operation: "enrol", outcome: "ok" }), 1);
    assert.equal(
      value(s, "mesh_identity_ca_request_duration_seconds_count", { operation: "cacerts", outcome: "ok" }),
      2,
    );
    assert.equal(value(s, "mesh_identity_ca_request_duration_seconds_count", { operation: "crls", outcome: "ok" }), 1);
    assert.equal(
      value(s, "mesh_identity_ca_request_duration_seconds_count", { operation: "renew", outcome: "ok" }),
      undefined,
      "no series before its first call",
    );
    // The heartbeat counts from when the identity was obtained (the state folder's certificate file).
    const obtained = statSync(join(w.stateDir("payment"), "cert.pem")).mtimeMs / 1000;
    assert.equal(value(s, "mesh_identity_cert_last_renewal_timestamp_seconds"), obtained);

    const before = Date.now();
    assert.equal(await pay.svc.identity.renew("test"), true);
    s = parse(await m.registry.metrics());
    assert.equal(value(s, "mesh_identity_ca_request_duration_seconds_count", { operation: "renew", outcome: "ok" }), 1);
    assert.ok(value(s, "mesh_identity_cert_last_renewal_timestamp_seconds")! * 1000 >= before - 1);
    assert.equal(value(s, "mesh_identity_cert_renewals_total"), 1);
    const left = value(s, "mesh_identity_cert_validity_remaining_seconds")!;
    assert.ok(left > 3000 && left <= 3600, `validity left ${left}`);

    // The CA gone: a renewal fails as unreachable, and is timed as such.
    await w.ca.server.close();
    assert.equal(await pay.svc.identity.renew("test"), false);
    const text = await m.registry.metrics();
    s = parse(text);
    assert.equal(
      value(s, "mesh_identity_ca_request_duration_seconds_count", { operation: "renew", outcome: "unreachable" }),
      1,
    );
    const lint = await promtool(["check", "metrics"], text);
    assert.deepEqual(lint, { code: 0, out: "" }, lint.out);
  } finally {
    await pay.svc.close();
  }
});
