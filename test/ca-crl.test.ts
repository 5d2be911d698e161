// CRLs as a peer with a slow clock sees them: thisUpdate is backdated like a
// leaf's notBefore, so a fresh CRL is not "not yet valid" to openssl.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import { parseCrls } from "../ca/verify.ts";
import { BACKDATE_MS } from "../ca/profiles.ts";
import { buildCrl } from "../ca/crl.ts";
import { crlToPem, certToPem, x509 } from "../ca/x509.ts";
import { generateKeyPair } from "../ca/keys.ts";
import { createLeaf, randomSerial, validityFor } from "../ca/profiles.ts";
import { cleanup, openssl, tempDir } from "./helpers/ca.ts";

const NOW = new Date("2027-03-01T12:00:00Z");
const seconds = (d: Date) => String(Math.floor(d.getTime() / 1000));

describe("CRLs are backdated like certificates", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let certPath: string;
  before(async () => {
    dir = tempDir();
    ca = await CertificateAuthority.init({ dir, name: "Backdate CA", now: () => new Date(NOW) });
    certPath = (await ca.issue({ domain: "slow-clock.internal" })).certPath;
    await ca.revoke({ domain: (await ca.issue({ domain: "revoked.internal" })).domain }); // re-signs the CRL on revoke too
  });
  after(() => {
    ca.close();
    cleanup(dir);
  });

  it("thisUpdate is 5 minutes before the signing time, nextUpdate 30 days after it", () => {
    const crls = parseCrls(readFileSync(ca.paths.crls, "utf8"));
    assert.equal(crls.length, 1);
    assert.equal(crls[0]!.thisUpdate.toISOString(), new Date(NOW.getTime() - BACKDATE_MS).toISOString());
    assert.equal(crls[0]!.nextUpdate!.toISOString(), "2027-03-31T12:00:00.000Z");
  });

  it("openssl on a clock two minutes behind accepts the fresh CRL (crl_check_all), and still sees the revocation", () => {
    const behind = new Date(NOW.getTime() - 2 * 60_000);
    const ok = openssl([
      "verify",
      "-crl_check_all",
      "-CRLfile",
      ca.paths.crls,
      "-CAfile",
      ca.paths.bundle,
      "-attime",
      seconds(behind),
      certPath,
    ]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /: OK/);
    const revoked = openssl([
      "verify",
      "-crl_check_all",
      "-CRLfile",
      ca.paths.crls,
      "-CAfile",
      ca.paths.bundle,
      "-attime",
      seconds(NOW),
      `${ca.paths.certsDir}/revoked.internal.crt`,
    ]);
    assert.notEqual(revoked.code, 0);
    assert.match(revoked.out, /certificate revoked/);
  });

  it("our verify agrees at the same slow clock: the fresh CRL is valid, and what it lists is revoked", async () => {
    const behind = new Date(NOW.getTime() - 2 * 60_000);
    const r = await ca.verify({ pem: readFileSync(certPath, "utf8"), at: behind });
    assert.equal(r.ok, true, r.failed?.message);
    // Revoked at the CA's NOW, two minutes in this clock's future: still revoked, as openssl says.
    const gone = await ca.verify({
      pem: readFileSync(`${ca.paths.certsDir}/revoked.internal.crt`, "utf8"),
      at: behind,
    });
    assert.equal(gone.failed?.check, "revocation");
    const o = openssl([
      "verify",
      "-crl_check_all",
      "-CRLfile",
      ca.paths.crls,
      "-CAfile",
      ca.paths.bundle,
      "-attime",
      seconds(behind),
      `${ca.paths.certsDir}/revoked.internal.crt`,
    ]);
    assert.match(o.out, /certificate revoked/);
  });

  it("a CRL from the future (a CA clock an hour ahead) fails the crl check with a sentence about clocks; openssl agrees", async () => {
    const ahead = crlToPem(
      await buildCrl({
        issuer: await ca.signer("root-1"),
        number: 50,
        now: new Date(NOW.getTime() + 3_600_000),
        entries: new Uint8Array(),
      }),
    );
    const r = await ca.verify({ pem: readFileSync(certPath, "utf8"), crlPem: ahead });
    assert.equal(r.failed?.check, "crl");
    assert.match(
      r.failed!.message,
      /the CRL of Backdate CA is not valid until 2027-03-01 12:55 UTC \(is this clock behind the CA's\?\)/,
    );
    const file = join(dir, "ahead.pem");
    writeFileSync(file, ahead);
    const o = openssl([
      "verify",
      "-crl_check",
      "-CRLfile",
      file,
      "-CAfile",
      ca.paths.bundle,
      "-attime",
      seconds(NOW),
      certPath,
    ]);
    assert.notEqual(o.code, 0);
    assert.match(o.out, /CRL is not yet valid/);
  });

  describe("a CRL that cannot answer for the certificate is not used (as OpenSSL does not use it)", () => {
    const crlFrom = async (opts: { extensions?: x509.Extension[]; entryExtensions?: x509.Extension[] }) => {
      const root = await ca.signer("root-1");
      return x509.X509CrlGenerator.create({
        issuer: root.cert.subjectName,
        thisUpdate: new Date(NOW.getTime() - 60_000),
        nextUpdate: new Date(NOW.getTime() + 86_400_000),
        signingKey: root.key,
        signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
        extensions: opts.extensions,
        entries: opts.entryExtensions
          ? [
              {
                serialNumber: "01",
                revocationDate: new Date(NOW.getTime() - 120_000),
                extensions: opts.entryExtensions,
              },
            ]
          : [],
      });
    };
    const both = async (crl: x509.X509Crl, cert = certPath, untrusted?: string) => {
      const file = join(dir, `crl-${Math.random().toString(36).slice(2)}.pem`);
      writeFileSync(file, crlToPem(crl));
      const r = await ca.verify({ pem: readFileSync(cert, "utf8"), crlPem: crlToPem(crl), at: NOW });
      const o = openssl([
        "verify",
        "-crl_check",
        "-CRLfile",
        file,
        "-CAfile",
        ca.paths.bundle,
        ...(untrusted ? ["-untrusted", untrusted] : []),
        "-attime",
        seconds(NOW),
        cert,
      ]);
      return { r, o };
    };

    it("an issuing distribution point that covers only CA certificates", async () => {
      const idp = new x509.Extension("2.5.29.28", true, new Uint8Array([0x30, 0x03, 0x82, 0x01, 0xff]));
      const { r, o } = await both(await crlFrom({ extensions: [idp] }));
      assert.equal(r.failed?.check, "crl");
      assert.match(
        r.failed!.message,
        /^the CRL of Backdate CA carries an extension this verifier does not process \(2\.5\.29\.28\), so it cannot say what is revoked$/,
      );
      assert.notEqual(o.code, 0, o.out);
      assert.match(o.out, /different CRL scope|unable to get certificate CRL/);
    });

    it("an unknown critical CRL extension, and a critical entry extension", async () => {
      const odd = new x509.Extension("1.3.6.1.4.1.99999.1", true, new Uint8Array([0x05, 0x00]));
      for (const crl of [await crlFrom({ extensions: [odd] }), await crlFrom({ entryExtensions: [odd] })]) {
        const { r, o } = await both(crl);
        assert.equal(r.failed?.check, "crl");
        assert.match(r.failed!.message, /cannot say what is revoked/);
        assert.notEqual(o.code, 0, o.out);
        assert.match(o.out, /unhandled critical CRL extension/);
      }
    });

    it("a CA whose key usage lacks cRLSign", async () => {
      const root = await ca.signer("root-1");
      const keys = await generateKeyPair("ec-p256");
      const noCrlSign = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: [{ CN: ["No CRLSign CA"] }],
        issuer: root.cert.subjectName,
        ...validityFor(NOW, 365),
        publicKey: keys.publicKey,
        signingKey: root.key,
        signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      const signer = { cert: noCrlSign, key: keys.privateKey, keyType: "ec-p256" as const };
      const leafKeys = await generateKeyPair("ec-p256");
      const leaf = await createLeaf({
        names: { name: "nocrl.internal", dns: [], ip: [], uri: [] },
        publicKey: leafKeys.publicKey,
        keyType: "ec-p256",
        issuer: signer,
        validity: validityFor(NOW, 30),
      });
      const leafFile = join(dir, "nocrl.pem");
      const intFile = join(dir, "nocrl-int.pem");
      writeFileSync(leafFile, certToPem(leaf));
      writeFileSync(intFile, certToPem(noCrlSign));
      const intCrl = crlToPem(await buildCrl({ issuer: signer, number: 1, now: NOW, entries: new Uint8Array() }));
      const rootCrl = readFileSync(ca.paths.crls, "utf8");
      const r = await ca.verify({ pem: certToPem(leaf) + certToPem(noCrlSign), crlPem: rootCrl + intCrl, at: NOW });
      assert.equal(r.failed?.check, "crl");
      assert.match(
        r.failed!.message,
        /^No CRLSign CA may not sign CRLs \(its key usage lacks cRLSign\), so its CRL cannot be trusted$/,
      );
      const crlFile = join(dir, "nocrl-crls.pem");
      writeFileSync(crlFile, rootCrl + intCrl);
      const o = openssl([
        "verify",
        "-crl_check_all",
        "-CRLfile",
        crlFile,
        "-CAfile",
        ca.paths.bundle,
        "-untrusted",
        intFile,
        "-attime",
        seconds(NOW),
        leafFile,
      ]);
      assert.notEqual(o.code, 0, o.out);
      assert.match(o.out, /key usage does not include CRL signing/);
    });
  });
});
