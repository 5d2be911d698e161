// The runtime's side of a teaching toggle, on one real service (file mode, a fresh CA): a toggle
// folder put in place is served in real handshakes and taken away again; a broken one is refused
// with the identity kept; the dashboard's model keeps showing the toggle through a renewal.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:tls";
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { freshPki, identity, start, type TestPki, type TestService } from "./mesh-fixtures.ts";
import { install, remove } from "../scripts/toggle/install.ts";
import { toggleDirOf, togglePaths } from "../services/mesh/toggle.ts";
import { MeshModel } from "../scripts/dashboard/model.ts";
import { logged } from "./helpers/events.ts";
import { checkToggle } from "../scripts/check/checks.ts";
import type { ServiceFacts } from "../scripts/check/facts.ts";

let pki: TestPki | undefined;
let running: TestService | undefined;
after(async () => {
  await running?.svc.close();
  pki?.cleanup();
});

/** The serial the service presents in a real handshake (as edge). */
function presented(port: number, p: TestPki): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({
      host: "127.0.0.1",
      port,
      servername: "payment.internal",
      rejectUnauthorized: false,
      ...identity(p, "edge"),
    });
    s.once("secureConnect", () => {
      const serial = s.getPeerX509Certificate()?.serialNumber.toLowerCase() ?? "";
      s.end();
      resolve(serial);
    });
    s.once("error", reject);
  });
}

test("a toggle folder is served in place of the identity and taken away again; a broken one is refused, the identity kept", async () => {
  pki = await freshPki();
  running = await start(pki, "payment");
  const { svc, logs } = running;
  const own = svc.material().leaf.serial;
  const dir = toggleDirOf(pki.ca.paths.leaf("payment.internal").cert, "payment");
  assert.equal(dir, join(pki.dir, "toggles", "payment"), "file mode: pki/toggles/<service>");
  const t = togglePaths(dir);

  // A key that does not belong to the certificate: refused, the identity stays in force.
  const edge = identity(pki, "edge");
  const inventory = identity(pki, "inventory");
  install(t, { certPem: String(edge.cert), keyPem: String(inventory.key), kind: "broken", serial: "00" });
  const failed = await logs.waitEvent("tls.reload_failed", (l) => /teaching toggle/.test(l.error), 10_000);
  assert.match(failed.error, /does not belong to/);
  assert.equal(await presented(svc.port, pki), own);

  // A real certificate for another name, with its key: served (the watcher finds it), said once.
  const inventoryCert = new X509Certificate(inventory.cert);
  install(t, { certPem: String(inventory.cert), keyPem: String(inventory.key), kind: "other-name", serial: "x" });
  const on = await logs.waitEvent("toggle.on", () => true, 10_000);
  assert.equal(on.kind, "other-name");
  assert.equal(on.serial, inventoryCert.serialNumber.toLowerCase());
  assert.equal(await presented(svc.port, pki), on.serial);
  assert.equal(svc.material().leaf.serial, on.serial, "what /healthz and the metrics judge");
  assert.equal(svc.material().leaf.trustDomain, "internal", "its trust domain stays its own");
  // A reload with nothing changed (the agent's, after a renewal) keeps the toggle.
  assert.equal(svc.reloadTls(), true);
  assert.equal(await presented(svc.port, pki), on.serial);
  assert.equal(logs.lines.filter((l) => l.event === "toggle.on").length, 1, "said once");

  assert.equal(remove(t), true);
  const off = await logs.waitEvent("toggle.off", () => true, 10_000);
  assert.equal(off.kind, "other-name");
  await logs.waitEvent("tls.reloaded", (l) => l.certChanged && l.serial === own, 10_000);
  assert.equal(await presented(svc.port, pki), own);
  assert.equal(remove(t), false, "nothing left to remove");
  assert.equal(readFileSync(pki.ca.paths.leaf("payment.internal").cert).length > 0, true);
});

test("the dashboard shows the toggle and the identity presented, through the agent's renewals, until the restore", () => {
  const T = "2026-12-01T10:00:00.000Z";
  const m = new MeshModel();
  const at = (time: string) => ({ time });
  m.ingest(
    logged(
      "payment",
      {
        event: "listening",
        port: 7402,
        identity: "payment.internal",
        serial: "aa01",
        notAfter: "2026-12-01T11:00:00.000Z",
        trusts: ["CN=Mesh Dev CA"],
      },
      at(T),
    ),
  );
  m.ingest(
    logged(
      "payment",
      { event: "toggle.on", kind: "expired", serial: "bad1", notAfter: "2026-12-01T09:00:00.000Z", dir: "/s/toggle" },
      at("2026-12-01T10:01:00.000Z"),
    ),
  );
  m.ingest(
    logged(
      "payment",
      {
        event: "identity.renewed",
        serial: "aa02",
        issuer: "CN=Mesh Dev Issuing CA",
        root: "CN=Mesh Dev CA",
        generation: 1,
        notAfter: "2026-12-01T12:00:00.000Z",
        previous: "aa01",
        reason: "scheduled",
      },
      at("2026-12-01T10:02:00.000Z"),
    ),
  );
  let [s] = m.servicesView();
  assert.deepEqual([s!.toggle, s!.serial, s!.notAfter], ["expired", "bad1", "2026-12-01T09:00:00.000Z"]);
  assert.equal(s!.lastRenewal, "2026-12-01T10:02:00.000Z", "the renewal is still seen");
  m.ingest(
    logged(
      "payment",
      { event: "toggle.off", kind: "expired", serial: "bad1", dir: "/s/toggle" },
      at("2026-12-01T10:03:00.000Z"),
    ),
  );
  m.ingest(
    logged(
      "payment",
      {
        event: "tls.reloaded",
        certChanged: true,
        trustChanged: false,
        serial: "aa02",
        notAfter: "2026-12-01T12:00:00.000Z",
        trusts: ["CN=Mesh Dev CA"],
      },
      at("2026-12-01T10:03:00.000Z"),
    ),
  );
  [s] = m.servicesView();
  assert.deepEqual([s!.toggle, s!.serial], [null, "aa02"]);
});

test("mesh:check names a toggle that is on, with the restore as its fix, and says nothing of one that is off", () => {
  // checkToggle reads the name and the toggle only.
  const facts = (toggle: ServiceFacts["toggle"]) => ({ name: "payment", toggle }) as unknown as ServiceFacts;
  assert.equal(checkToggle(facts(null)), null);
  assert.equal(checkToggle(facts(undefined)), null);
  const c = checkToggle(facts({ kind: "revoked", serial: "3cf8", since: "2026-12-06T22:55:42.808Z" }))!;
  assert.equal(c.severity, "error");
  assert.equal(c.ok, false);
  assert.match(c.detail, /payment presents a teaching toggle \(revoked, serial 3cf8/);
  assert.equal(c.fix, "npm run mesh:toggle -- payment --restore");
});
