// CRL deadlines as a service sees them: nextUpdate read from the DER agrees with openssl, a
// CRL within a week of lapsing is warned about at start-up and while running, and a lapsed
// one is said loudly at start-up (and every client is then indeed refused).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { CertificateAuthority } from "../ca/index.ts";
import { crlDates } from "../lib/crl.ts";
import { crlDeadlines } from "../services/mesh/crl-dates.ts";
import { pemBlocks, pemToDer } from "../lib/pem.ts";
import { freshPki, start, call, identity, type TestPki } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

const DAY = 86_400_000;
let pki: TestPki;

before(async () => {
  pki = await freshPki();
});

after(() => pki.cleanup());

/** Re-sign every CRL as if the CA's clock read `daysAgo` days ago (CRLs are valid 30 days). */
async function resignCrls(daysAgo: number): Promise<void> {
  const ca = await CertificateAuthority.open({ dir: pki.dir, now: () => new Date(Date.now() - daysAgo * DAY) });
  try {
    await ca.publishCrls();
  } finally {
    ca.close();
  }
}

test("issuer, thisUpdate and nextUpdate from the CRL's DER are what openssl reads", () => {
  const pem = pemBlocks(readFileSync(pki.ca.paths.crls, "utf8"), "X509 CRL")[0]!;
  const d = crlDates(pemToDer(pem));
  const out = execFileSync(
    "openssl",
    ["crl", "-noout", "-issuer", "-lastupdate", "-nextupdate", "-nameopt", "RFC2253"],
    { input: pem, encoding: "utf8" },
  );
  const field = (k: string) => new RegExp(`^${k}=(.*)$`, "m").exec(out)![1]!;
  assert.equal(d.issuer, field("issuer"));
  assert.equal(d.thisUpdate.getTime(), new Date(field("lastUpdate")).getTime());
  assert.equal(d.nextUpdate?.getTime(), new Date(field("nextUpdate")).getTime());
  assert.ok(d.nextUpdate!.getTime() > Date.now() + 20 * DAY, "a fresh CRL is valid for weeks");
  assert.deepEqual(crlDeadlines([pem], new Date()), [], "nothing to say about a fresh CRL");
  const soon = crlDeadlines([pem], new Date(d.nextUpdate!.getTime() - 2 * DAY));
  assert.deepEqual(soon, [
    { state: "expiring", issuer: d.issuer, nextUpdate: d.nextUpdate!.toISOString(), daysLeft: 2 },
  ]);
  assert.equal(crlDeadlines([pem], new Date(d.nextUpdate!.getTime() + 1_000))[0]?.state, "lapsed");
  assert.throws(() => crlDates(Buffer.from([0x30, 0x05, 0x30, 0x03, 0x02, 0x01])), /truncated|not a CRL/);
});

test("fresh CRLs: no crl line at start-up", async () => {
  const s = await start(pki, "payment", { watch: false });
  await s.svc.close();
  assert.deepEqual(
    s.logs.lines.filter((l) => String(l.event).startsWith("crl.")),
    [],
  );
});

test("a CRL three days from lapsing is warned about at start-up, naming its issuer and nextUpdate", async () => {
  await resignCrls(27);
  const s = await start(pki, "payment", { watch: false });
  try {
    const w = s.logs.find(ev("crl.expiring"));
    assert.ok(w, "a crl.expiring line");
    assert.equal(w.level, 40);
    assert.equal(w.issuer, "CN=Mesh Test CA");
    const next = crlDates(pemToDer(pemBlocks(readFileSync(pki.ca.paths.crls, "utf8"), "X509 CRL")[0]!)).nextUpdate!;
    assert.equal(w.nextUpdate, next.toISOString());
    assert.ok(Math.abs(Number(w.daysLeft) - 3) < 0.2, String(w.daysLeft));
    assert.match(String(w.msg), /npm run ca -- crl/);
    assert.match(String(w.msg), /mesh:up/);
    const r = await call(pki, s.svc.port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
    assert.ok("status" in r && r.status === 200, "not lapsed yet: clients are still served");
  } finally {
    await s.svc.close();
  }
});

test("a lapsed CRL is said loudly at start-up, and indeed every client is refused", async () => {
  await resignCrls(31);
  const s = await start(pki, "payment", { watch: false });
  try {
    const l = s.logs.find(ev("crl.lapsed"));
    assert.ok(l, "a crl.lapsed line");
    assert.equal(l.level, 50);
    assert.equal(l.issuer, "CN=Mesh Test CA");
    assert.ok(Number(l.daysLeft) < 0);
    assert.match(String(l.msg), /every client will be refused/);
    assert.match(String(l.msg), /re-sign the CRLs with npm run ca -- crl, or keep mesh:up running/);
    const r = await call(pki, s.svc.port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
    assert.ok("error" in r, `refused, got ${JSON.stringify(r)}`);
    const refused = await s.logs.wait(ev("tls.handshake_failed"));
    assert.equal(refused.tlsCode, "CRL_HAS_EXPIRED");
  } finally {
    await s.svc.close();
    await resignCrls(0);
  }
});

test("while running, the CRLs are checked again on a timer, against the service's clock", async () => {
  let offset = 0;
  const s = await start(pki, "payment", { watch: false, now: () => new Date(Date.now() + offset), crlCheckMs: 100 });
  try {
    await sleep(300);
    assert.equal(
      s.logs.find((l) => String(l.event).startsWith("crl.")),
      undefined,
      "nothing while the CRLs are fresh",
    );
    offset = 25 * DAY;
    const w = await s.logs.wait(ev("crl.expiring"), 3_000);
    assert.ok(Number(w.daysLeft) > 4 && Number(w.daysLeft) < 6, String(w.daysLeft));
    offset = 31 * DAY;
    const l = await s.logs.wait(ev("crl.lapsed"), 3_000);
    assert.match(String(l.msg), /every client will be refused/);
  } finally {
    await s.svc.close();
  }
});

test("CRLs re-signed while a service runs are checked when they are loaded", async () => {
  const s = await start(pki, "payment");
  try {
    assert.equal(
      s.logs.find((l) => String(l.event).startsWith("crl.")),
      undefined,
    );
    await resignCrls(26);
    await s.logs.wait(
      ev("tls.reloaded", (l) => l.trustChanged === true),
      5_000,
    );
    const w = await s.logs.wait(ev("crl.expiring"), 2_000);
    assert.ok(Math.abs(Number(w.daysLeft) - 4) < 0.2, String(w.daysLeft));
  } finally {
    await s.svc.close();
    await resignCrls(0);
  }
});
