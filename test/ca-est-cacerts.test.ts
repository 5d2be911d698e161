// cacerts: the trust bundle with an ETag, who holds which bundle, and the renew-now
// hint, while the real CLI adds, switches and retires root generations beside the server.
import assert from "node:assert/strict";
import { connect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { createToken } from "../ca/tokens.ts";
import { normalSerial } from "../ca/x509.ts";
import { ca as cli } from "./helpers/ca.ts";
import { PKCS10, certsOf, est, makeCsr, pemOf, startCa, type TestCa } from "./helpers/est.ts";
import { ev } from "./helpers/events.ts";

const CACERTS = "/.well-known/est/cacerts";

/** Polls until fn holds: the server must notice the CLI's change within about a second. */
async function within(ms: number, what: string, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`not within ${ms} ms: ${what}`);
}

/** The issuer CN of the certificate the CA server presents. */
function serverIssuer(t: TestCa): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port: t.server.listeningPort, ca: t.bundle() }, () => {
      const issuer = s.getPeerCertificate().issuer.CN;
      s.end();
      resolve(String(issuer));
    });
    s.on("error", reject);
  });
}

describe("EST cacerts", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({
      limits: { perAddress: { capacity: 100, perMinute: 100 }, perName: { capacity: 100, perMinute: 100 } },
    });
  });
  after(() => t.stop());

  it("serves every published root as base64 PKCS#7 with a strong ETag; If-None-Match gives 304", async () => {
    const r = await est(t.server.url, { path: CACERTS, ca: t.bundle() });
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "application/pkcs7-mime; smime-type=certs-only");
    assert.equal(r.headers["content-transfer-encoding"], "base64");
    const etag = r.headers.etag as string;
    assert.match(etag, /^"[A-Za-z0-9_-]{43}"$/);
    assert.deepEqual(
      certsOf(r.body).map((c) => c.subject),
      ["CN=Acme Corp CA"],
    );
    assert.ok(
      r.body.split("\n").every((l) => l.length <= 64),
      "base64 in lines openssl can read",
    );
    const same = await est(t.server.url, { path: CACERTS, ca: t.bundle(), headers: { "If-None-Match": etag } });
    assert.equal(same.status, 304);
    assert.equal(same.body, "");
    assert.equal(same.headers.etag, etag);
    assert.equal(
      (await est(t.server.url, { path: CACERTS, ca: t.bundle(), headers: { "If-None-Match": `"x", W/${etag}` } }))
        .status,
      304,
    );
    assert.equal(
      (await est(t.server.url, { path: CACERTS, ca: t.bundle(), headers: { "If-None-Match": '"stale"' } })).status,
      200,
    );
  });

  it("follows the CLI's rotation: new bundle within a second, who holds it, the renew-now hint, its own certificate", async () => {
    // An identity of generation 1.
    const { token } = createToken(t.ca, { domain: "svc.internal" });
    const csr = await makeCsr("svc.internal");
    const enrolled = await est(t.server.url, {
      method: "POST",
      path: "/.well-known/est/simpleenroll",
      headers: { ...PKCS10, Authorization: `Bearer ${token}` },
      body: csr.body,
      ca: t.bundle(),
    });
    assert.equal(enrolled.status, 200, enrolled.body);
    const g1 = { cert: pemOf(certsOf(enrolled.body)), key: csr.keyPem };
    const g1Serial = normalSerial(certsOf(enrolled.body)[0]!.serialNumber);

    const first = await est(t.server.url, { path: CACERTS, ca: t.bundle() });
    const e1 = first.headers.etag as string;
    const held = await est(t.server.url, { path: CACERTS, ca: t.bundle(), ...g1, headers: { "If-None-Match": e1 } });
    assert.equal(held.status, 304);
    assert.equal(held.headers["mesh-renew-now"], undefined, "generation 1 signs: no hint");
    let holder = t.ca.ledger.bundleHolders().find((h) => h.name === "svc.internal")!;
    assert.deepEqual(
      [holder.serial, holder.heldEtag, holder.servedEtag, holder.remote],
      [g1Serial, e1, e1, "127.0.0.1"],
    );
    assert.deepEqual(t.ca.ledger.bundleGenerations(e1), [1]);
    // Without a client certificate nobody is recorded.
    assert.equal(t.ca.ledger.bundleHolders().length, 1);

    // The CLI adds generation 2 and publishes it: the server serves the new bundle.
    assert.equal((await cli(["generation", "add", "--dir", t.dir])).code, 0);
    assert.equal((await cli(["bundle", "--dir", t.dir])).code, 0);
    let e2 = "";
    await within(1_500, "the bundle with generation 2", async () => {
      const r = await est(t.server.url, { path: CACERTS, ca: t.bundle(), headers: { "If-None-Match": e1 } });
      e2 = r.headers.etag as string;
      return r.status === 200 && certsOf(r.body).length === 2;
    });
    assert.notEqual(e2, e1);
    assert.deepEqual(t.ca.ledger.bundleGenerations(e2), [1, 2]);
    const fetched = await est(t.server.url, { path: CACERTS, ca: t.bundle(), ...g1, headers: { "If-None-Match": e1 } });
    assert.equal(fetched.status, 200);
    holder = t.ca.ledger.bundleHolders().find((h) => h.name === "svc.internal")!;
    assert.deepEqual([holder.heldEtag, holder.servedEtag], [e1, e2], "it said it held e1 and was served e2");
    assert.equal(fetched.headers["mesh-renew-now"], undefined, "generation 1 still signs");

    // Generation 2 signs: a generation-1 caller is told to renew now, and the server moves its own certificate.
    assert.equal((await cli(["generation", "use", "2", "--dir", t.dir])).code, 0);
    await within(
      1_500,
      "the renew-now hint",
      async () => (await est(t.server.url, { path: CACERTS, ca: t.bundle(), ...g1 })).headers["mesh-renew-now"] === "1",
    );
    const renewedTls = await t.lines.wait(ev("ca.tls_renewed", (l) => l.generation === 2));
    assert.equal(renewedTls.reason, "generation 2 signs now");
    assert.equal(await serverIssuer(t), "Acme Corp CA G2");

    // Renewing moves the identity to generation 2; the hint stops.
    const next = await makeCsr("svc.internal");
    const renewed = await est(t.server.url, {
      method: "POST",
      path: "/.well-known/est/simplereenroll",
      headers: PKCS10,
      body: next.body,
      ca: t.bundle(),
      ...g1,
    });
    assert.equal(renewed.status, 200, renewed.body);
    const [leaf] = certsOf(renewed.body);
    assert.equal(leaf!.issuer, "CN=Acme Corp CA G2");
    const g2 = { cert: pemOf([leaf!]), key: next.keyPem };
    const quiet = await est(t.server.url, { path: CACERTS, ca: t.bundle(), ...g2 });
    assert.equal(quiet.headers["mesh-renew-now"], undefined);

    // Nothing valid chains to generation 1 now (the server's own certificate moved too): the CLI may retire it.
    const retire = await cli(["generation", "retire", "1", "--dir", t.dir]);
    assert.equal(retire.code, 0, retire.stderr);
    await within(1_500, "the bundle without generation 1", async () => {
      const r = await est(t.server.url, { path: CACERTS, ca: t.bundle() });
      return (
        certsOf(r.body)
          .map((c) => c.subject)
          .join() === "CN=Acme Corp CA G2"
      );
    });
    // The superseded generation-1 certificate can never renew, whatever TLS thinks of it.
    const stale = await est(t.server.url, {
      method: "POST",
      path: "/.well-known/est/simplereenroll",
      headers: PKCS10,
      body: (await makeCsr("svc.internal")).body,
      ca: t.bundle(),
      ...g1,
    });
    assert.equal(stale.status, 403);
  });
});
