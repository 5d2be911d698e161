// Every certificate profile checked by the real openssl: strict path
// validation, purposes, the three-level chain, CRLs, and the fields themselves.
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import { generateKeyPair } from "../ca/keys.ts";
import { createLeaf, validityFor } from "../ca/profiles.ts";
import { certToPem } from "../ca/x509.ts";
import { cleanup, openssl, tempDir } from "./helpers/ca.ts";

const text = (file: string) => openssl(["x509", "-in", file, "-noout", "-text"]).out;

describe("certificate profiles, checked by openssl", () => {
  let dir: string;
  let ca: CertificateAuthority;
  before(async () => {
    dir = tempDir();
    ca = await CertificateAuthority.init({ dir, name: "Acme Corp CA" });
  });
  after(() => {
    ca.close();
    cleanup(dir);
  });

  it("root: self-signed, CA:TRUE critical, keyCertSign+cRLSign critical, SKI", () => {
    const t = text(ca.paths.root(1).cert);
    assert.match(t, /Issuer: CN ?= ?Acme Corp CA/);
    assert.match(t, /Subject: CN ?= ?Acme Corp CA/);
    assert.match(t, /X509v3 Basic Constraints: critical\s+CA:TRUE\s/);
    assert.match(t, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    assert.match(t, /X509v3 Subject Key Identifier/);
    assert.equal(openssl(["verify", "-x509_strict", "-CAfile", ca.paths.root(1).cert, ca.paths.root(1).cert]).code, 0);
  });

  it("leaf: passes strict verification as server and as client, with every field of the profile", async () => {
    const leaf = await ca.issue({ domain: "api.internal", ip: ["127.0.0.1"] });
    for (const purpose of ["sslserver", "sslclient"]) {
      const r = openssl(["verify", "-x509_strict", "-purpose", purpose, "-CAfile", ca.paths.bundle, leaf.certPath]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /: OK/);
    }
    const t = text(leaf.certPath);
    assert.match(t, /Subject: CN ?= ?api\.internal\n/);
    assert.match(t, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
    assert.match(t, /X509v3 Key Usage: critical\s+Digital Signature\n/);
    assert.match(t, /X509v3 Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    // The SPIFFE ID in the default trust domain, "internal": the name relative to it.
    assert.match(
      t,
      /X509v3 Subject Alternative Name:\s+DNS:api\.internal, IP Address:127\.0\.0\.1, URI:spiffe:\/\/internal\/api\n/,
    );
    assert.match(t, /X509v3 Authority Key Identifier/);
    assert.match(t, /X509v3 Subject Key Identifier/);
    // A random positive serial of 16 bytes (at least 64 bits).
    const serial = /Serial Number:\s*\n\s*([0-9a-f:]+)/.exec(t)![1]!.replaceAll(":", "");
    assert.equal(serial.length, 32);
    assert.ok(parseInt(serial[0]!, 16) < 8, "serial must be positive");
    assert.equal(serial, leaf.serial);
    // notBefore backdated for clock skew; notAfter counted from now.
    assert.ok(leaf.notBefore.getTime() <= Date.now() - 60_000);
    assert.ok(Math.abs(leaf.notAfter.getTime() - (Date.now() + 90 * 86_400_000)) < 60_000);
    assert.equal(statSync(leaf.keyPath!).mode & 0o777, 0o600);
    assert.equal(statSync(leaf.certPath).mode & 0o777, 0o644);
    assert.match(readFileSync(leaf.keyPath!, "utf8"), /^-----BEGIN PRIVATE KEY-----/);
  });

  it("every key type makes certificates openssl accepts; RSA leaves add keyEncipherment", async () => {
    for (const keyType of ["ec-p384", "rsa-2048", "ed25519"] as const) {
      const leaf = await ca.issue({ domain: `${keyType}.internal`, keyType });
      const r = openssl(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca.paths.bundle, leaf.certPath]);
      assert.equal(r.code, 0, `${keyType}: ${r.out}`);
      const t = text(leaf.certPath);
      if (keyType === "rsa-2048") assert.match(t, /Digital Signature, Key Encipherment/);
      else assert.match(t, /Key Usage: critical\s+Digital Signature\n/);
    }
  });

  it("with a configured trust domain, every leaf carries exactly one URI SAN, its SPIFFE ID (issue, renew)", async () => {
    const d = tempDir();
    const td = await CertificateAuthority.init({ dir: d, name: "Spiffe CA", trustDomain: "acme.internal" });
    try {
      const leaf = await td.issue({ domain: "payment.internal" });
      assert.deepEqual(leaf.sans.uri, ["spiffe://acme.internal/payment.internal"]);
      assert.match(
        text(leaf.certPath),
        /X509v3 Subject Alternative Name:\s+DNS:payment\.internal, URI:spiffe:\/\/acme\.internal\/payment\.internal/,
      );
      assert.equal(
        openssl(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", td.paths.bundle, leaf.certPath]).code,
        0,
      );
      const renewed = await td.renew({ domain: "payment.internal" });
      assert.deepEqual(renewed.sans.uri, leaf.sans.uri, "renew keeps the SPIFFE ID");
      const sanExt = openssl(["x509", "-noout", "-ext", "subjectAltName", "-in", renewed.certPath]).out;
      assert.equal(sanExt.match(/URI:/g)?.length, 1, sanExt);
      assert.match(sanExt, /URI:spiffe:\/\/acme\.internal\/payment\.internal\n/);
      const under = await td.issue({ domain: "shipping.acme.internal" });
      assert.deepEqual(
        under.sans.uri,
        ["spiffe://acme.internal/shipping"],
        "a name under the trust domain is relative to it",
      );
      const wild = await td.issue({ domain: "*.wild.internal", allowWildcard: true });
      assert.deepEqual(wild.sans.uri, [], "a wildcard names no one workload: no SPIFFE ID");
      assert.equal(td.trustDomainSetting().source, "config");
      assert.deepEqual(JSON.parse(readFileSync(join(d, "spiffe.json"), "utf8")), { trust_domain: "acme.internal" });
      for (const bad of ["Not A Domain", "Upper.Case", "example.org:8443", "spiffe://example.org", "a/b", ""]) {
        await assert.rejects(
          CertificateAuthority.init({ dir: join(d, "bad"), name: "Bad", trustDomain: bad }),
          /--trust-domain .* is not a SPIFFE trust domain/,
          bad,
        );
        assert.equal(existsSync(join(d, "bad")), false, "nothing was written");
      }
    } finally {
      td.close();
      cleanup(d);
    }
  });

  it("a CA from before trust domains (no spiffe.json) keeps working in the default trust domain, internal", async () => {
    const d = tempDir();
    const old = await CertificateAuthority.init({ dir: d, name: "Old CA" });
    old.close();
    rmSync(join(d, "spiffe.json"));
    const reopened = await CertificateAuthority.open({ dir: d });
    try {
      assert.deepEqual(reopened.trustDomainSetting(), { trustDomain: "internal", source: "default" });
      const leaf = await reopened.issue({ domain: "order.internal" });
      assert.deepEqual(leaf.sans.uri, ["spiffe://internal/order"]);
    } finally {
      reopened.close();
      cleanup(d);
    }
  });

  it("a name with a comma cannot smuggle a second CN: subjects are structured", async () => {
    // The CLI refuses such a name; the library too, before anything is signed.
    await assert.rejects(ca.issue({ domain: "evil, CN=payment" }), /not a valid DNS name/);
  });

  it("three levels: root -> intermediate (pathLen:0, AKI/SKI, name constraints) -> leaf with its chain", async () => {
    const dir3 = tempDir();
    const ca3 = await CertificateAuthority.init({ dir: dir3, name: "Three CA" });
    try {
      const int = await ca3.createIntermediate({ name: "Three Issuing CA", permitDns: [".internal"] });
      const t = text(ca3.layout.issuer(int.id).cert);
      assert.match(t, /Issuer: CN ?= ?Three CA/);
      assert.match(t, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
      assert.match(t, /X509v3 Name Constraints: critical\s+Permitted:\s+DNS:internal/);
      assert.match(t, /X509v3 Authority Key Identifier/);
      const leaf = await ca3.issue({ domain: "payment.internal" });
      const pems = readFileSync(leaf.certPath, "utf8").match(/BEGIN CERTIFICATE/g) ?? [];
      assert.equal(pems.length, 2, "the leaf file carries the intermediate");
      const leafOnly = join(dir3, "leaf-only.crt");
      writeFileSync(leafOnly, readFileSync(leaf.certPath, "utf8").split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
      const intCert = ca3.layout.issuer(int.id).cert;
      for (const purpose of ["sslserver", "sslclient"]) {
        const r = openssl([
          "verify",
          "-x509_strict",
          "-purpose",
          purpose,
          "-CAfile",
          ca3.paths.bundle,
          "-untrusted",
          intCert,
          leafOnly,
        ]);
        assert.equal(r.code, 0, r.out);
      }
      // Without the intermediate the path cannot be built: it is really three levels.
      assert.notEqual(openssl(["verify", "-CAfile", ca3.paths.bundle, leafOnly]).code, 0);
      // The CA refuses a name outside the constraint before signing anything...
      await assert.rejects(
        ca3.issue({ domain: "payment.example.com" }),
        /outside the names Three Issuing CA may certify/,
      );
      // ...and one signed around that check fails openssl's name-constraint check.
      const keys = await generateKeyPair("ec-p256");
      const rogue = await createLeaf({
        names: { name: "payment.example.com", dns: [], ip: [], uri: [] },
        publicKey: keys.publicKey,
        keyType: "ec-p256",
        issuer: await ca3.signer(int.id),
        validity: validityFor(new Date(), 1),
      });
      const rogueFile = join(dir3, "rogue.crt");
      writeFileSync(rogueFile, certToPem(rogue));
      const r = openssl(["verify", "-x509_strict", "-CAfile", ca3.paths.bundle, "-untrusted", intCert, rogueFile]);
      assert.notEqual(r.code, 0);
      assert.match(r.out, /permitted subtree violation/);
    } finally {
      ca3.close();
      cleanup(dir3);
    }
  });

  it("CRLs: after a revoke, -crl_check_all fails that certificate with 'certificate revoked' and passes the rest", async () => {
    const dir4 = tempDir();
    const ca4 = await CertificateAuthority.init({ dir: dir4, name: "CRL CA" });
    try {
      await ca4.createIntermediate({ name: "CRL Issuing CA" });
      const a = await ca4.issue({ domain: "a.internal" });
      const b = await ca4.issue({ domain: "b.internal" });
      // The leaf file carries its chain; openssl takes intermediates from -untrusted.
      const check = (file: string) =>
        openssl([
          "verify",
          "-x509_strict",
          "-crl_check_all",
          "-CRLfile",
          ca4.paths.crls,
          "-CAfile",
          ca4.paths.bundle,
          "-untrusted",
          file,
          file,
        ]);
      assert.equal(check(a.certPath).code, 0, check(a.certPath).out);
      await ca4.revoke({ domain: "a.internal", reason: "keyCompromise" });
      const ra = check(a.certPath);
      assert.notEqual(ra.code, 0);
      assert.match(ra.out, /certificate revoked/);
      const rb = check(b.certPath);
      assert.equal(rb.code, 0, rb.out);
      const crlText = openssl(["crl", "-in", ca4.layout.issuer("int-1").crl, "-noout", "-text"]).out;
      assert.match(crlText, new RegExp(a.serial.toUpperCase()));
      assert.match(crlText, /Key Compromise/);
      assert.match(crlText, /X509v3 CRL Number/);
      // A revocation appends to the stored entries; a full re-sign rebuilds the same list.
      await ca4.revoke({ domain: "b.internal", reason: "superseded" });
      const serials = () =>
        [
          ...openssl(["crl", "-in", ca4.layout.issuer("int-1").crl, "-noout", "-text"]).out.matchAll(
            /Serial Number: ([0-9A-F]+)/g,
          ),
        ]
          .map((m) => m[1])
          .sort();
      const appended = serials();
      assert.deepEqual(appended, [a.serial.toUpperCase(), b.serial.toUpperCase()].sort());
      assert.match(check(b.certPath).out, /certificate revoked/);
      await ca4.publishCrls();
      assert.deepEqual(serials(), appended);
      assert.match(check(b.certPath).out, /certificate revoked/);
    } finally {
      ca4.close();
      cleanup(dir4);
    }
  });
});
