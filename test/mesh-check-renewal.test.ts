// mesh:check's renewal heartbeat end to end: a real service holding a certificate past 2/3 of its
// life (a 90-day certificate obtained 70 days ago, 20 days from expiry) is ×, before it expires,
// with the sentence and the fix; after the fix the check passes. The facts come from the real
// /metrics over a real admin listener and a real mTLS handshake (scripts/check/gather.ts).
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { CertificateAuthority } from "../ca/index.ts";
import { startAdmin, type Admin } from "../lib/admin-http.ts";
import { checkMesh } from "../scripts/check/checks.ts";
import { gatherMesh } from "../scripts/check/gather.ts";
import { freshPki, start, type TestPki, type TestService } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

const DAY = 86_400_000;
let pki: TestPki;
let pay: TestService;
let admin: Admin;

before(async () => {
  pki = await freshPki();
  // The same CA with its clock 70 days back: the renewal it makes is what a service would hold had nobody renewed since.
  const past = await CertificateAuthority.open({ dir: pki.dir, now: () => new Date(Date.now() - 70 * DAY) });
  await past.renew({ domain: "payment.internal" });
  past.close();
  pay = await start(pki, "payment");
  admin = await startAdmin({ exposition: pay.svc.metrics.registry, port: 0 });
});
after(async () => {
  await admin?.close();
  await pay?.svc.close();
  pki?.cleanup();
});

async function renewalCheck() {
  const facts = await gatherMesh({
    targets: [{ name: "payment", port: pay.svc.port, adminPort: admin.port }],
    pki: pki.dir,
    policyFile: pki.policyFile,
  });
  const report = checkMesh(facts, Date.now());
  const checks = report.services[0]!.checks;
  return {
    renewal: checks.find((c) => c.name === "renewal")!,
    certificate: checks.find((c) => c.name === "certificate")!,
    facts,
  };
}

test("a certificate past 2/3 of its life with no renewal is ×, with the sentence and the fix, and the fix clears it", async () => {
  const { renewal, certificate, facts } = await renewalCheck();
  assert.ok(
    facts.services[0]!.admin.lastRenewalAt! < Date.now() - 69 * DAY,
    "the heartbeat counts from the certificate's start",
  );
  assert.equal(certificate.severity, "ok", `the certificate itself is valid: ${certificate.detail}`);
  assert.equal(renewal.severity, "error");
  assert.match(
    renewal.detail,
    /^payment's certificate is overdue for renewal: obtained .* UTC, due at .* UTC \(2\/3 of its life\), still in force, and it expires in \d+ hours; once it does, every peer refuses payment \("Ready, then expired"\)/,
  );
  assert.equal(renewal.fix, "npm run ca -- renew --domain payment.internal");

  // The fix it names: the renewed certificate is loaded, and the heartbeat moves to now.
  const since = pay.logs.lines.length;
  await pki.ca.renew({ domain: "payment.internal" });
  await pay.logs.wait(ev("tls.reloaded"), 10_000, since);
  const fixed = await renewalCheck();
  assert.equal(fixed.renewal.severity, "ok", fixed.renewal.detail);
  assert.match(fixed.renewal.detail, /^obtained .* UTC; next renewal due .* \(in \d+ days\)$/);
});
