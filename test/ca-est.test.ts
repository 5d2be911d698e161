// The online CA over real sockets: EST enrolment with one-time tokens, renewal over
// mTLS, refusals with the right status and reason, and nothing changed by a refusal.
import assert from "node:assert/strict";
import { sqliteLedger } from "../ca/ledger.ts";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { RateLimiter } from "../ca/rate-limit.ts";
import { createToken, hashToken } from "../ca/tokens.ts";
import { normalSerial } from "../ca/x509.ts";
import { openssl } from "./helpers/ca.ts";
import { PKCS10, certsOf, est, makeCsr, pemOf, startCa, type TestCa } from "./helpers/est.ts";
import { ev } from "./helpers/events.ts";

const ENROL = "/.well-known/est/simpleenroll";
const REENROL = "/.well-known/est/simplereenroll";
const HIGH = {
  perAddress: { capacity: 1000, perMinute: 1000 },
  perName: { capacity: 100, perMinute: 100 },
  unauthenticated: { capacity: 1000, perMinute: 1000 },
};
/** These suites look at each refusal's own line: room for all of them (the aggregation has its own tests, est-abuse.test.ts). */
const LOUD = { linesPerInterval: 1000 };

function certCount(t: TestCa): number {
  return (sqliteLedger(t.ca.ledger).db.prepare("SELECT count(*) AS n FROM certs").get() as { n: number }).n;
}

async function enrolOnce(t: TestCa, name: string, query = "") {
  // Some tests enrol a live name again on purpose.
  const { token } = createToken(t.ca, { domain: name, replace: true });
  const csr = await makeCsr(name);
  const r = await est(t.server.url, {
    method: "POST",
    path: ENROL + query,
    headers: { ...PKCS10, Authorization: `Bearer ${token}` },
    body: csr.body,
    ca: t.bundle(),
  });
  assert.equal(r.status, 200, r.body);
  const certs = certsOf(r.body);
  return { token, csr, certs, pem: pemOf(certs) };
}

describe("EST simpleenroll with a one-time token", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({ limits: HIGH, refusalLog: LOUD });
  });
  after(() => t.stop());

  it("issues a 1h leaf for exactly the CSR's name, with the CRL distribution point, once", async () => {
    const { token } = createToken(t.ca, { domain: "shipping.internal" });
    const csr = await makeCsr("shipping.internal");
    const headers = { ...PKCS10, Authorization: `Bearer ${token}` };
    const r = await est(t.server.url, { method: "POST", path: ENROL, headers, body: csr.body, ca: t.bundle() });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers["content-type"], "application/pkcs7-mime; smime-type=certs-only");
    assert.equal(r.headers["content-transfer-encoding"], "base64");
    const [leaf, ...rest] = certsOf(r.body);
    assert.equal(rest.length, 0, "no intermediate here: the leaf only");
    assert.equal(leaf!.subject, "CN=shipping.internal");
    const life = leaf!.notAfter.getTime() - Date.now();
    assert.ok(life > 59 * 60_000 && life <= 3_600_000, `default lifetime 1h, got ${life} ms`);
    const text = openssl(["x509", "-noout", "-ext", "subjectAltName,crlDistributionPoints"], leaf!.toString("pem")).out;
    assert.match(text, /DNS:shipping\.internal/);
    assert.ok(text.includes(`URI:${t.server.url}/crl/root-1.crl`), text);
    // The key in the CSR is the key certified.
    assert.deepEqual(
      Buffer.from(leaf!.publicKey.rawData),
      Buffer.from(await crypto.subtle.exportKey("spki", csr.keys.publicKey)),
    );
    const ledgerRow = t.ca.ledger.bySerial(normalSerial(leaf!.serialNumber))!;
    assert.equal(ledgerRow.source, "est-enrol");
    assert.equal(ledgerRow.status, "valid");
    const tok = t.ca.ledger.token(hashToken(token))!;
    assert.equal(tok.usedBy, ledgerRow.serial);
    assert.ok(tok.usedAt);
    const line = await t.lines.wait(ev("est.enrolled", (l) => l.name === "shipping.internal"));
    assert.equal(line.serial, ledgerRow.serial);
    assert.equal(line.remote, "127.0.0.1");

    // The second time: refused, and nothing issued.
    const count = certCount(t);
    const again = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers,
      body: (await makeCsr("shipping.internal")).body,
      ca: t.bundle(),
    });
    assert.equal(again.status, 401);
    assert.equal(again.body, "the enrolment token was already used: ask for a new one\n");
    assert.equal(again.headers["www-authenticate"], 'Bearer realm="est"');
    assert.equal(certCount(t), count);
    assert.equal(t.ca.ledger.current("shipping.internal")!.serial, ledgerRow.serial);
    const refused = await t.lines.wait(ev("est.refused", (l) => l.reason === "token_used"));
    assert.equal(refused.name, "shipping.internal");
    assert.equal(refused.status, 401);
    assert.ok(!t.lines.raw().includes(token.split(".")[1]!), "the token never reaches the log");
    assert.ok(!/PRIVATE KEY/.test(t.lines.raw()));
  });

  it("spends a token once even when five requests race with it", async () => {
    const { token } = createToken(t.ca, { domain: "racer.internal" });
    const headers = { ...PKCS10, Authorization: `Bearer ${token}` };
    const bodies = await Promise.all([1, 2, 3, 4, 5].map(() => makeCsr("racer.internal")));
    const count = certCount(t);
    const replies = await Promise.all(
      bodies.map((c) => est(t.server.url, { method: "POST", path: ENROL, headers, body: c.body, ca: t.bundle() })),
    );
    assert.deepEqual(
      replies.map((r) => r.status).sort(),
      [200, 401, 401, 401, 401],
      replies.map((r) => r.body).join(""),
    );
    for (const r of replies.filter((x) => x.status === 401))
      assert.equal(r.body, "the enrolment token was already used: ask for a new one\n");
    assert.equal(certCount(t), count + 1);
  });

  it("refuses a token for another name without saying which name it is for; the token stays unused", async () => {
    const { token } = createToken(t.ca, { domain: "billing.internal" });
    const count = certCount(t);
    const r = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: { ...PKCS10, Authorization: `Bearer ${token}` },
      body: (await makeCsr("payroll.internal")).body,
      ca: t.bundle(),
    });
    assert.equal(r.status, 403);
    assert.equal(r.body, "the enrolment token is not valid for payroll.internal\n");
    assert.ok(!r.body.includes("billing"));
    assert.equal(certCount(t), count);
    assert.equal(t.ca.ledger.token(hashToken(token))!.usedAt, null);
    // …and it still works for its own name.
    const ok = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: { ...PKCS10, Authorization: `Bearer ${token}` },
      body: (await makeCsr("billing.internal")).body,
      ca: t.bundle(),
    });
    assert.equal(ok.status, 200, ok.body);
  });

  it("refuses an expired token (the CA's clock moved on), and an unknown or missing one", async () => {
    const { token } = createToken(t.ca, { domain: "late.internal", ttlMs: 10 * 60_000 });
    const body = (await makeCsr("late.internal")).body;
    const count = certCount(t);
    t.shift(11 * 60_000);
    try {
      const r = await est(t.server.url, {
        method: "POST",
        path: ENROL,
        headers: { ...PKCS10, Authorization: `Bearer ${token}` },
        body,
        ca: t.bundle(),
      });
      assert.equal(r.status, 401);
      assert.equal(r.body, "the enrolment token has expired: ask for a new one\n");
    } finally {
      t.shift(0);
    }
    assert.equal(t.ca.ledger.token(hashToken(token))!.usedAt, null);
    const forged = `mt1.${randomBytes(32).toString("base64url")}.${token.split(".")[2]}`;
    const unknown = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: { ...PKCS10, Authorization: `Bearer ${forged}` },
      body,
      ca: t.bundle(),
    });
    assert.equal(unknown.status, 401);
    assert.equal(unknown.body, "the enrolment token is unknown to this CA\n");
    const missing = await est(t.server.url, { method: "POST", path: ENROL, headers: PKCS10, body, ca: t.bundle() });
    assert.equal(missing.status, 401);
    assert.match(missing.body, /^enrolment needs a one-time token: Authorization: Bearer <token>/);
    const odd = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: { ...PKCS10, Authorization: "Bearer not-a-token" },
      body,
      ca: t.bundle(),
    });
    assert.equal(odd.status, 401);
    assert.match(odd.body, /malformed/);
    assert.equal(certCount(t), count);
  });

  it("refuses CSRs that ask for more than the one name (403) or are not CSRs (400)", async () => {
    const { token } = createToken(t.ca, { domain: "wide.internal" });
    const auth = { ...PKCS10, Authorization: `Bearer ${token}` };
    const count = certCount(t);
    const extra = await makeCsr("wide.internal", {
      sans: [
        { type: "dns", value: "wide.internal" },
        { type: "dns", value: "payment.internal" },
      ],
    });
    let r = await est(t.server.url, { method: "POST", path: ENROL, headers: auth, body: extra.body, ca: t.bundle() });
    assert.equal(r.status, 403);
    assert.match(r.body, /asks for 1 name\(s\) besides its CN wide\.internal/);
    const ip = await makeCsr("wide.internal", { sans: [{ type: "ip", value: "10.0.0.1" }] });
    r = await est(t.server.url, { method: "POST", path: ENROL, headers: auth, body: ip.body, ca: t.bundle() });
    assert.equal(r.status, 403);
    const twoCn = await makeCsr("wide.internal", { cn: ["wide.internal", "payment.internal"] });
    r = await est(t.server.url, { method: "POST", path: ENROL, headers: auth, body: twoCn.body, ca: t.bundle() });
    assert.equal(r.status, 400);
    assert.match(r.body, /has 2 CNs/);
    r = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: auth,
      body: Buffer.from("not a csr at all").toString("base64"),
      ca: t.bundle(),
    });
    assert.equal(r.status, 400);
    assert.match(r.body, /not a DER PKCS#10 certificate request/);
    r = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: auth,
      body: "%%% not base64 %%%",
      ca: t.bundle(),
    });
    assert.equal(r.status, 400);
    assert.match(r.body, /not base64/);
    // A CSR whose signature does not match its content (one byte of the name flipped).
    const good = Buffer.from((await makeCsr("wide.internal")).body, "base64");
    const at = good.indexOf(Buffer.from("wide.internal"));
    good[at] = "v".charCodeAt(0);
    r = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: auth,
      body: good.toString("base64"),
      ca: t.bundle(),
    });
    assert.equal(r.status, 400);
    assert.match(r.body, /signature does not verify/);
    assert.equal(certCount(t), count);
    assert.equal(t.ca.ledger.token(hashToken(token))!.usedAt, null, "a refused request does not spend the token");
  });

  it("bounds the body (413), checks the media type (415), the path (404) and the method (405)", async () => {
    const { token } = createToken(t.ca, { domain: "edge.internal" });
    const auth = { ...PKCS10, Authorization: `Bearer ${token}` };
    const big = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: auth,
      body: "A".repeat(20 * 1024),
      ca: t.bundle(),
    });
    assert.equal(big.status, 413);
    assert.match(big.body, /larger than 16384 bytes/);
    const pem = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/x-pem-file" },
      body: (await makeCsr("edge.internal")).body,
      ca: t.bundle(),
    });
    assert.equal(pem.status, 415);
    assert.match(pem.body, /Content-Type: application\/pkcs10/);
    const nf = await est(t.server.url, { path: "/.well-known/est/serverkeygen", ca: t.bundle() });
    assert.equal(nf.status, 404);
    const get = await est(t.server.url, { path: ENROL, ca: t.bundle() });
    assert.equal(get.status, 405);
    assert.equal(get.headers.allow, "POST");
    assert.equal(t.ca.ledger.token(hashToken(token))!.usedAt, null);
    const refusals = t.lines.events("est.refused").map((l) => `${l.status} ${l.reason}`);
    for (const want of ["413 body_too_large", "415 wrong_media_type", "404 not_found", "405 method_not_allowed"])
      assert.ok(refusals.includes(want), `${want} logged: ${refusals}`);
  });

  it("takes ?lifetime= up to the maximum, and refuses more", async () => {
    const { certs } = await enrolOnce(t, "brief.internal", "?lifetime=5m");
    const life = certs[0]!.notAfter.getTime() - Date.now();
    assert.ok(life > 4 * 60_000 && life <= 5 * 60_000, `${life}`);
    const { token } = createToken(t.ca, { domain: "greedy.internal" });
    const r = await est(t.server.url, {
      method: "POST",
      path: `${ENROL}?lifetime=48h`,
      headers: { ...PKCS10, Authorization: `Bearer ${token}` },
      body: (await makeCsr("greedy.internal")).body,
      ca: t.bundle(),
    });
    assert.equal(r.status, 400);
    assert.equal(r.body, "lifetime 48h is longer than the 24h allowed\n");
  });
});

describe("EST with an intermediate that the CLI adds while the server runs", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({ limits: HIGH, refusalLog: LOUD });
  });
  after(() => t.stop());

  it("answers with leaf + intermediate, names the intermediate's CRL, and serves it", async () => {
    const { ca: cli } = await import("./helpers/ca.ts");
    const made = await cli(["intermediate", "--name", "Acme Issuing CA", "--dir", t.dir]);
    assert.equal(made.code, 0, made.stderr);
    const { certs } = await enrolOnce(t, "chained.internal");
    assert.deepEqual(
      certs.map((c) => c.subject),
      ["CN=chained.internal", "CN=Acme Issuing CA"],
    );
    const dir = join(t.dir, "..");
    writeFileSync(join(dir, "leaf.pem"), certs[0]!.toString("pem"));
    writeFileSync(join(dir, "int.pem"), certs[1]!.toString("pem"));
    writeFileSync(join(dir, "root.pem"), t.bundle());
    assert.match(
      openssl(["verify", "-CAfile", join(dir, "root.pem"), "-untrusted", join(dir, "int.pem"), join(dir, "leaf.pem")])
        .out,
      /leaf\.pem: OK/,
    );
    assert.ok(
      openssl(["x509", "-noout", "-ext", "crlDistributionPoints"], certs[0]!.toString("pem")).out.includes(
        `URI:${t.server.url}/crl/int-1.crl`,
      ),
    );
    let status = 0;
    for (
      const deadline = Date.now() + 1_500;
      status !== 200 && Date.now() < deadline;
      await new Promise((r) => setTimeout(r, 100))
    ) {
      status = (await est(t.server.url, { path: "/crl/int-1.crl", ca: t.bundle() })).status;
    }
    assert.equal(status, 200, "the intermediate's CRL is served within 1.5 s");
    assert.equal((await est(t.server.url, { path: "/crl/int-9.crl", ca: t.bundle() })).status, 404);
  });
});

describe("EST simplereenroll over mTLS", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({ limits: HIGH, refusalLog: LOUD });
  });
  after(() => t.stop());

  it("renews with a new key: a new certificate, the old one SUPERSEDED; the old one cannot renew again", async () => {
    const first = await enrolOnce(t, "orders.internal");
    const next = await makeCsr("orders.internal");
    const r = await est(t.server.url, {
      method: "POST",
      path: REENROL,
      headers: PKCS10,
      body: next.body,
      ca: t.bundle(),
      cert: first.pem,
      key: first.csr.keyPem,
    });
    assert.equal(r.status, 200, r.body);
    const [leaf] = certsOf(r.body);
    const oldSerial = normalSerial(first.certs[0]!.serialNumber);
    const newSerial = normalSerial(leaf!.serialNumber);
    assert.notEqual(newSerial, oldSerial);
    assert.equal(leaf!.subject, "CN=orders.internal");
    assert.deepEqual(
      Buffer.from(leaf!.publicKey.rawData),
      Buffer.from(await crypto.subtle.exportKey("spki", next.keys.publicKey)),
    );
    const old = t.ca.ledger.bySerial(oldSerial)!;
    assert.equal(old.status, "superseded");
    assert.equal(old.supersededBy, newSerial);
    assert.equal(t.ca.ledger.bySerial(newSerial)!.source, "est-renew");
    const line = await t.lines.wait(ev("est.renewed", (l) => l.serial === newSerial));
    assert.equal(line.previous, oldSerial);

    const count = certCount(t);
    const again = await est(t.server.url, {
      method: "POST",
      path: REENROL,
      headers: PKCS10,
      body: (await makeCsr("orders.internal")).body,
      ca: t.bundle(),
      cert: first.pem,
      key: first.csr.keyPem,
    });
    assert.equal(again.status, 403);
    assert.match(again.body, /was already renewed: renew with the newest certificate/);
    assert.equal(certCount(t), count);
  });

  it("refuses the same key, another name, and a caller without a certificate", async () => {
    const first = await enrolOnce(t, "stock.internal");
    const count = certCount(t);
    const same = await makeCsr("stock.internal", { keys: first.csr.keys });
    let r = await est(t.server.url, {
      method: "POST",
      path: REENROL,
      headers: PKCS10,
      body: same.body,
      ca: t.bundle(),
      cert: first.pem,
      key: first.csr.keyPem,
    });
    assert.equal(r.status, 403);
    assert.equal(r.body, "the CSR carries the current certificate's key: a renewal must bring a new key\n");
    r = await est(t.server.url, {
      method: "POST",
      path: REENROL,
      headers: PKCS10,
      body: (await makeCsr("payment.internal")).body,
      ca: t.bundle(),
      cert: first.pem,
      key: first.csr.keyPem,
    });
    assert.equal(r.status, 403);
    assert.match(r.body, /asks for payment\.internal, but the certificate presented is stock\.internal's/);
    r = await est(t.server.url, {
      method: "POST",
      path: REENROL,
      headers: PKCS10,
      body: (await makeCsr("stock.internal")).body,
      ca: t.bundle(),
    });
    assert.equal(r.status, 401);
    assert.match(r.body, /needs the current certificate, presented over mTLS/);
    assert.equal(certCount(t), count);
    assert.equal(t.ca.ledger.current("stock.internal")!.serial, normalSerial(first.certs[0]!.serialNumber));
  });

  it("refuses a certificate from another CA (TLS does not trust it)", async () => {
    const other = await startCa({ limits: HIGH, refusalLog: LOUD });
    try {
      const foreign = await enrolOnce(other, "stock2.internal");
      const r = await est(t.server.url, {
        method: "POST",
        path: REENROL,
        headers: PKCS10,
        body: (await makeCsr("stock2.internal")).body,
        ca: t.bundle(),
        cert: foreign.pem,
        key: foreign.csr.keyPem,
      });
      assert.equal(r.status, 403);
      assert.match(r.body, /not trusted by the published bundle/);
    } finally {
      await other.stop();
    }
  });

  it("refuses a revoked identity: revoked by the CLI while the server runs", async () => {
    const first = await enrolOnce(t, "revoked.internal");
    const serial = normalSerial(first.certs[0]!.serialNumber);
    const { ca: cli } = await import("./helpers/ca.ts");
    const rv = await cli(["revoke", "--domain", "revoked.internal", "--dir", t.dir]);
    assert.equal(rv.code, 0, rv.stderr);
    const count = certCount(t);
    const r = await est(t.server.url, {
      method: "POST",
      path: REENROL,
      headers: PKCS10,
      body: (await makeCsr("revoked.internal")).body,
      ca: t.bundle(),
      cert: first.pem,
      key: first.csr.keyPem,
    });
    assert.equal(r.status, 403);
    assert.equal(
      r.body,
      `the certificate ${serial} is revoked: a revoked identity cannot renew (enrol again with a new token)\n`,
    );
    assert.equal(certCount(t), count);
    const line = await t.lines.wait(ev("est.refused", (l) => l.reason === "cert_revoked"));
    assert.equal(line.serial, serial);
    assert.equal(line.name, "revoked.internal");
    // The server serves the re-signed CRL within a second of the CLI's change.
    const deadline = Date.now() + 1_500;
    let listed = false;
    while (!listed && Date.now() < deadline) {
      const crls = await est(t.server.url, { path: "/crls.pem", ca: t.bundle() });
      listed = openssl(["crl", "-noout", "-text"], crls.body).out.toLowerCase().includes(`serial number: ${serial}`);
      if (!listed) await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(listed, "the revocation is in /crls.pem within 1.5 s");
    const der = await est(t.server.url, { path: "/crl/root-1.crl", ca: t.bundle() });
    assert.equal(der.status, 200);
    assert.equal(der.headers["content-type"], "application/pkix-crl");
    const file = join(t.dir, "..", "root-1.crl");
    writeFileSync(file, Buffer.from(der.body, "latin1"));
    const parsed = openssl(["crl", "-inform", "DER", "-in", file, "-noout", "-text"]).out.toLowerCase();
    assert.ok(parsed.includes(`serial number: ${serial}`), parsed);
  });
});

describe("EST rate limits", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({
      limits: { perAddress: { capacity: 3, perMinute: 3 }, perName: { capacity: 2, perMinute: 2 } },
      refusalLog: LOUD,
    });
  });
  after(() => t.stop());

  it("charges bad tokens to the address, never to the name they claim; a valid token still enrols; the name's own budget is separate", async () => {
    const junk = { ...PKCS10, Authorization: `Bearer mt1.${"a".repeat(43)}.${"b".repeat(43)}` };
    const statuses: number[] = [];
    let last = undefined as Awaited<ReturnType<typeof est>> | undefined;
    for (let i = 0; i < 4; i++) {
      last = await est(t.server.url, {
        method: "POST",
        path: ENROL,
        headers: junk,
        body: (await makeCsr("busy.internal")).body,
        ca: t.bundle(),
      });
      statuses.push(last.status);
    }
    assert.deepEqual(
      statuses,
      [401, 401, 401, 429],
      "three failures from this address, then its failure budget is empty",
    );
    assert.match(last!.body, /^too many requests from this address failed to authenticate: retry in \d+s\n$/);
    assert.ok(Number(last!.headers["retry-after"]) >= 1);
    // busy.internal's own enrolments are untouched by the junk that named it, from this very address.
    for (let i = 0; i < 2; i++) await enrolOnce(t, "busy.internal");
    const { token } = createToken(t.ca, { domain: "busy.internal", replace: true });
    const third = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: { ...PKCS10, Authorization: `Bearer ${token}` },
      body: (await makeCsr("busy.internal")).body,
      ca: t.bundle(),
    });
    assert.equal(third.status, 429, "the name's enrolment budget (2) is spent by its own enrolments");
    assert.match(third.body, /^too many requests: busy\.internal may enrol 2 times a minute; retry in \d+s\n$/);
    assert.equal(t.ca.ledger.token(hashToken(token))!.usedAt, null, "a refused enrolment does not spend its token");
    const limited = t.lines.events("est.refused").filter((l) => l.reason === "rate_limited");
    // The address's 429 comes before the body is read: no name is known, none charged.
    assert.deepEqual(
      limited.map((l) => [l.name, l.authenticated]),
      [
        [null, false],
        ["busy.internal", true],
      ],
    );
  });
});

describe("RateLimiter (token buckets)", () => {
  it("allows a burst, then one per refill interval, and says when to retry", () => {
    let now = 0;
    const rl = new RateLimiter({ capacity: 2, perMinute: 6 }, () => now);
    assert.deepEqual([rl.take("a"), rl.take("a")], [{ ok: true }, { ok: true }]);
    assert.deepEqual(rl.take("a"), { ok: false, retryAfterSeconds: 10 });
    assert.deepEqual(rl.take("b"), { ok: true }, "keys are separate");
    now = 9_000;
    assert.deepEqual(rl.take("a"), { ok: false, retryAfterSeconds: 1 });
    now = 10_000;
    assert.deepEqual(rl.take("a"), { ok: true });
    now = 10 * 60_000;
    assert.deepEqual(
      [rl.take("a"), rl.take("a"), rl.take("a").ok],
      [{ ok: true }, { ok: true }, false],
      "refills only up to the burst",
    );
  });

  it("forgets the least recently used key beyond its bound", () => {
    const rl = new RateLimiter({ capacity: 1, perMinute: 1 }, () => 0, 2);
    rl.take("a");
    rl.take("b");
    rl.take("c"); // evicts a
    assert.deepEqual(rl.take("a"), { ok: true });
    assert.equal(rl.take("c").ok, false);
  });
});
