// SPIFFE identities from the online CA: every leaf it signs carries exactly one URI SAN, the
// SPIFFE ID of the authenticated name (never the CSR's choice), and the trust bundle is served
// in the SPIFFE bundle format, checked field by field against the spec and against bundle.pem.
import assert from "node:assert/strict";
import { X509Certificate, createPublicKey } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "node:tls";
import { after, before, describe, it } from "node:test";
import pino from "pino";
import { createToken } from "../ca/tokens.ts";
import { loadPublished } from "../ca/server/published.ts";
import { SpiffeBundleEndpoint } from "../ca/server/spiffe-bundle.ts";
import { ca as cli, oneLineError, openssl, tempDir, cleanup } from "./helpers/ca.ts";
import { PKCS10, certsOf, est, makeCsr, pemOf, startCa, type TestCa } from "./helpers/est.ts";
import { ev } from "./helpers/events.ts";

const ENROL = "/.well-known/est/simpleenroll";
const REENROL = "/.well-known/est/simplereenroll";
const BUNDLE = "/.well-known/spiffe/bundle";

/** The subjectAltName extension as openssl prints it. */
function sanOf(pem: string): string {
  const dir = tempDir("mesh-spiffe-san-");
  try {
    writeFileSync(join(dir, "c.pem"), pem);
    const r = openssl(["x509", "-noout", "-ext", "subjectAltName", "-in", join(dir, "c.pem")]);
    assert.equal(r.code, 0, r.out);
    return r.out;
  } finally {
    cleanup(dir);
  }
}

const uris = (san: string) => [...san.matchAll(/URI:([^,\s]+)/g)].map((m) => m[1]);

describe("SPIFFE identities from the online CA", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({
      limits: { perAddress: { capacity: 100, perMinute: 100 }, perName: { capacity: 100, perMinute: 100 } },
    });
  });
  after(() => t.stop());

  it("enrolment and renewal give exactly one URI SAN, the SPIFFE ID of the authenticated name; a CSR's URIs are ignored", async () => {
    const { token } = createToken(t.ca, { domain: "shipping.internal" });
    // A hostile CSR: it asks to be payment, and for a second, non-SPIFFE URI.
    const csr = await makeCsr("shipping.internal", {
      sans: [
        { type: "dns", value: "shipping.internal" },
        { type: "url", value: "spiffe://internal/payment" },
        { type: "url", value: "https://evil.example/x" },
      ],
    });
    const r = await est(t.server.url, {
      method: "POST",
      path: ENROL,
      headers: { ...PKCS10, Authorization: `Bearer ${token}` },
      body: csr.body,
      ca: t.bundle(),
    });
    assert.equal(r.status, 200, r.body);
    const leaf = certsOf(r.body)[0]!;
    const san = sanOf(leaf.toString("pem"));
    assert.deepEqual(uris(san), ["spiffe://internal/shipping"], san);
    assert.match(san, /DNS:shipping\.internal/);
    const text = openssl(["x509", "-noout", "-text"], leaf.toString("pem")).out;
    assert.match(text, /CA:FALSE/);
    assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature\n/);
    assert.equal(
      (await t.lines.wait(ev("est.enrolled", (l) => l.name === "shipping.internal"))).spiffe_id,
      "spiffe://internal/shipping",
    );

    // Renewal over mTLS: the SPIFFE ID comes from the presented certificate's name again.
    const next = await makeCsr("shipping.internal", { sans: [{ type: "url", value: "spiffe://internal/order" }] });
    const rr = await est(t.server.url, {
      method: "POST",
      path: REENROL,
      headers: PKCS10,
      body: next.body,
      ca: t.bundle(),
      cert: pemOf(certsOf(r.body)),
      key: csr.keyPem,
    });
    assert.equal(rr.status, 200, rr.body);
    assert.deepEqual(uris(sanOf(certsOf(rr.body)[0]!.toString("pem"))), ["spiffe://internal/shipping"]);
  });

  it("the CA server's own certificate is an SVID too: spiffe://internal/ca", async () => {
    const san = await new Promise<string>((resolve, reject) => {
      const s = connect(
        { host: "127.0.0.1", port: t.server.listeningPort, ca: t.bundle(), servername: "ca.internal" },
        () => {
          const v = s.getPeerCertificate().subjectaltname ?? "";
          s.end();
          resolve(v);
        },
      );
      s.on("error", reject);
    });
    assert.deepEqual(uris(san), ["spiffe://internal/ca"]);
  });

  it("serves the trust bundle as a SPIFFE bundle: JWK set, x509-svid keys with x5c, sequence, refresh hint, ETag", async () => {
    const r = await est(t.server.url, { path: BUNDLE, ca: t.bundle() });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers["content-type"], "application/json");
    const etag = r.headers.etag as string;
    assert.match(etag, /^"[A-Za-z0-9_-]{43}"$/);
    const doc = JSON.parse(r.body) as Record<string, unknown>;
    checkBundle(doc, readFileSync(t.ca.paths.bundle, "utf8"));
    const seq1 = doc.spiffe_sequence as number;
    assert.equal(
      (await est(t.server.url, { path: BUNDLE, ca: t.bundle(), headers: { "If-None-Match": etag } })).status,
      304,
    );
    const head = await est(t.server.url, { method: "HEAD", path: BUNDLE, ca: t.bundle() });
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
    assert.equal((await est(t.server.url, { method: "POST", path: BUNDLE, ca: t.bundle(), body: "x" })).status, 405);

    // A new root generation published by the CLI: two keys, and the sequence grows.
    assert.equal((await cli(["generation", "add", "--dir", t.dir])).code, 0);
    assert.equal((await cli(["bundle", "--dir", t.dir])).code, 0);
    let doc2: Record<string, unknown> = doc;
    const deadline = Date.now() + 15_000;
    while ((doc2.keys as unknown[]).length !== 2 && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 100));
      doc2 = JSON.parse((await est(t.server.url, { path: BUNDLE, ca: t.bundle() })).body) as Record<string, unknown>;
    }
    assert.equal((doc2.keys as unknown[]).length, 2, "the new generation is served");
    checkBundle(doc2, readFileSync(t.ca.paths.bundle, "utf8"));
    assert.ok((doc2.spiffe_sequence as number) > seq1, `sequence grows: ${seq1} -> ${String(doc2.spiffe_sequence)}`);
    assert.equal(
      (await est(t.server.url, { path: BUNDLE, ca: t.bundle(), headers: { "If-None-Match": etag } })).status,
      200,
      "the old ETag is stale",
    );

    // A restarted server (a new endpoint over the same folder) keeps the number for the same roots.
    const again = new SpiffeBundleEndpoint(t.ca, pino({ level: "silent" })).current(loadPublished(t.ca));
    assert.equal((JSON.parse(again.body) as { spiffe_sequence: number }).spiffe_sequence, doc2.spiffe_sequence);
  });
});

describe("the trust domain at the CLI", () => {
  it("init --trust-domain keeps it; status and status --json show it; issue signs its SPIFFE ID; a bad one is a one-line error", async () => {
    const root = tempDir("mesh-spiffe-cli-");
    const dir = join(root, "pki");
    try {
      const init = await cli(["init", "--name", "Org CA", "--trust-domain", "example.org", "--dir", dir]);
      assert.equal(init.code, 0, init.stderr);
      assert.match(init.stdout, /trust domain example\.org/);
      const status = await cli(["status", "--json", "--dir", dir]);
      assert.equal(status.code, 0, status.stderr);
      const json = JSON.parse(status.stdout) as { trust_domain: string; trust_domain_source: string };
      assert.deepEqual([json.trust_domain, json.trust_domain_source], ["example.org", "config"]);
      assert.match(
        (await cli(["status", "--dir", dir])).stdout,
        /trust domain example\.org; SPIFFE IDs spiffe:\/\/example\.org\/<name>/,
      );
      const issued = await cli(["issue", "--domain", "order.example.org", "--dir", dir]);
      assert.equal(issued.code, 0, issued.stderr);
      assert.match(issued.stdout, /SPIFFE ID {4}spiffe:\/\/example\.org\/order\n/);
      const san = openssl([
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        join(dir, "certs", "order.example.org.crt"),
      ]).out;
      assert.deepEqual(uris(san), ["spiffe://example.org/order"]);
      for (const bad of ["Example.org", "example.org:8443", "spiffe://example.org", "ex ample"]) {
        const r = await cli(["init", "--name", "Bad", "--trust-domain", bad, "--dir", join(root, "bad")]);
        assert.equal(r.code, 2, bad);
        assert.match(oneLineError(r), /^error: --trust-domain .* is not a SPIFFE trust domain/);
      }
    } finally {
      cleanup(root);
    }
  });
});

/** SPIFFE_Trust_Domain_and_Bundle.md 4 and X509-SVID.md 6, field by field; x5c equals bundle.pem's roots. */
function checkBundle(doc: Record<string, unknown>, bundlePem: string): void {
  assert.deepEqual(Object.keys(doc).sort(), ["keys", "spiffe_refresh_hint", "spiffe_sequence"]);
  assert.ok(
    Number.isSafeInteger(doc.spiffe_sequence) && (doc.spiffe_sequence as number) > 0,
    "spiffe_sequence: a positive integer",
  );
  assert.ok(
    Number.isSafeInteger(doc.spiffe_refresh_hint) && (doc.spiffe_refresh_hint as number) > 0,
    "spiffe_refresh_hint: seconds, an integer",
  );
  assert.ok(Array.isArray(doc.keys));
  const roots = (bundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((p) =>
    new X509Certificate(p).raw.toString("base64"),
  );
  const served: string[] = [];
  for (const key of doc.keys as Record<string, unknown>[]) {
    assert.equal(key.use, "x509-svid");
    assert.equal("kid" in key, false, "x509-svid keys carry no kid");
    assert.equal(key.kty, "EC");
    assert.equal(key.crv, "P-256");
    for (const m of ["x", "y"]) assert.match(String(key[m]), /^[A-Za-z0-9_-]{43}$/, `${m}: 32 bytes base64url`);
    assert.ok(Array.isArray(key.x5c) && key.x5c.length === 1, "exactly one certificate per key");
    const b64 = (key.x5c as string[])[0]!;
    assert.match(b64, /^[A-Za-z0-9+/]+=*$/, "x5c is base64 (not base64url) DER");
    const cert = new X509Certificate(Buffer.from(b64, "base64"));
    assert.equal(cert.ca, true);
    assert.ok(cert.checkIssued(cert) && cert.verify(cert.publicKey), "a self-signed root");
    // The JWK's key members are the certificate's public key.
    const fromJwk = createPublicKey({
      key: { kty: key.kty, crv: key.crv, x: key.x, y: key.y } as import("node:crypto").JsonWebKey,
      format: "jwk",
    });
    assert.ok(
      fromJwk.export({ format: "der", type: "spki" }).equals(cert.publicKey.export({ format: "der", type: "spki" })),
    );
    served.push(b64);
  }
  assert.deepEqual(served.sort(), roots.sort(), "x5c certificates are bundle.pem's roots");
}
