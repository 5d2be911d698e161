// Path validation names the check that failed, for each way a chain can be
// wrong; openssl must agree that each crafted chain is bad.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority, type Check } from "../ca/index.ts";
import { generateKeyPair } from "../ca/keys.ts";
import { createLeaf, randomSerial, validityFor, type Signer } from "../ca/profiles.ts";
import { certToPem, x509 } from "../ca/x509.ts";
import { cleanup, openssl, tempDir } from "./helpers/ca.ts";

const DAY = 86_400_000;
const names = (name: string) => ({ name, dns: [], ip: [], uri: [] });

/** A CA certificate with whatever extensions a test needs, signed by `issuer`. */
async function craftCa(opts: {
  name: string;
  issuer: Signer;
  extensions: (k: CryptoKeyPair) => Promise<x509.Extension[]>;
  notBefore?: Date;
  notAfter?: Date;
}): Promise<Signer> {
  const keys = await generateKeyPair("ec-p256");
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [opts.name] }],
    issuer: opts.issuer.cert.subjectName,
    notBefore: opts.notBefore ?? new Date(Date.now() - DAY),
    notAfter: opts.notAfter ?? new Date(Date.now() + 365 * DAY),
    publicKey: keys.publicKey,
    signingKey: opts.issuer.key,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
    extensions: [
      ...(await opts.extensions(keys)),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(opts.issuer.cert.publicKey),
    ],
  });
  return { cert, key: keys.privateKey, keyType: "ec-p256" };
}

async function leafUnder(
  issuer: Signer,
  name: string,
  validity = validityFor(new Date(), 30),
): Promise<x509.X509Certificate> {
  const keys = await generateKeyPair("ec-p256");
  return createLeaf({ names: names(name), publicKey: keys.publicKey, keyType: "ec-p256", issuer, validity });
}

describe("verify: real path validation, each failure named", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let root: Signer;

  /** Verifies a chain (leaf first) with the CA and with openssl; returns the CA's verdict. */
  async function check(
    chain: x509.X509Certificate[],
    opts: { purpose?: "mesh" | "server" | "client"; at?: Date; crlPem?: string } = {},
  ) {
    const pem = chain.map(certToPem).join("");
    const file = join(dir, `chain-${Math.random().toString(36).slice(2)}.pem`);
    writeFileSync(file, pem);
    const result = await ca.verify({ pem, purpose: opts.purpose, at: opts.at, crlPem: opts.crlPem });
    const args = ["verify", "-x509_strict", "-CAfile", ca.paths.bundle, "-untrusted", file];
    if (opts.purpose === "client") args.push("-purpose", "sslclient");
    if (opts.at) args.push("-attime", String(Math.floor(opts.at.getTime() / 1000)));
    const ossl = openssl([...args, file]);
    return { result, openssl: ossl };
  }

  async function expectFailure(
    chain: x509.X509Certificate[],
    check_: Check,
    message: RegExp,
    opts: Parameters<typeof check>[1] = {},
  ) {
    const { result, openssl: ossl } = await check(chain, opts);
    assert.equal(result.ok, false, "the CA must reject it");
    assert.equal(result.failed!.check, check_, result.failed!.message);
    assert.match(result.failed!.message, message);
    if (!opts.crlPem) assert.notEqual(ossl.code, 0, `openssl must reject it too: ${ossl.out}`);
  }

  before(async () => {
    dir = tempDir();
    ca = await CertificateAuthority.init({ dir, name: "Verify Root" });
    root = await ca.signer("root-1");
  });
  after(() => {
    ca.close();
    cleanup(dir);
  });

  it("accepts a good three-level chain, and openssl agrees", async () => {
    await ca.createIntermediate({ name: "Verify Issuing CA" });
    const issued = await ca.issue({ domain: "good.internal" });
    const result = await ca.verify({ pem: readFileSync(issued.certPath, "utf8") });
    assert.equal(result.ok, true, result.failed?.message);
    assert.deepEqual(
      result.chain.map((c) => c.subjectName.getField("CN")[0]),
      ["good.internal", "Verify Issuing CA", "Verify Root"],
    );
    ca.useGeneration(1); // back to signing with the root's newest intermediate (unchanged)
  });

  it("an issuer without CA:TRUE (a leaf signing a leaf) fails basic-constraints", async () => {
    const leafKeys = await generateKeyPair("ec-p256");
    const fakeCa = await createLeaf({
      names: names("notaca.internal"),
      publicKey: leafKeys.publicKey,
      keyType: "ec-p256",
      issuer: root,
      validity: validityFor(new Date(), 30),
    });
    const victim = await leafUnder({ cert: fakeCa, key: leafKeys.privateKey, keyType: "ec-p256" }, "victim.internal");
    await expectFailure(
      [victim, fakeCa],
      "basic-constraints",
      /notaca\.internal signed victim\.internal but is not a CA/,
    );
  });

  it("a CA whose key usage lacks keyCertSign fails key-usage", async () => {
    const noSign = await craftCa({
      name: "No KeyCertSign CA",
      issuer: root,
      extensions: async () => [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.cRLSign, true),
      ],
    });
    const leaf = await leafUnder(noSign, "ku.internal");
    await expectFailure(
      [leaf, noSign.cert],
      "key-usage",
      /No KeyCertSign CA signed ku\.internal but its key usage does not allow signing certificates/,
    );
  });

  it("a CA below a pathLen:0 intermediate fails path-length", async () => {
    const ku = () => new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true);
    const int = await craftCa({
      name: "PathLen0 CA",
      issuer: root,
      extensions: async () => [new x509.BasicConstraintsExtension(true, 0, true), ku()],
    });
    const sub = await craftCa({
      name: "Sub CA",
      issuer: int,
      extensions: async () => [new x509.BasicConstraintsExtension(true, undefined, true), ku()],
    });
    const leaf = await leafUnder(sub, "deep.internal");
    await expectFailure(
      [leaf, sub.cert, int.cert],
      "path-length",
      /PathLen0 CA allows 0 CA\(s\) below it \(pathLen:0\) but 1 follow it/,
    );
  });

  it("a leaf without clientAuth fails extended-key-usage when used as a client", async () => {
    const keys = await generateKeyPair("ec-p256");
    const serverOnly = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: [{ CN: ["server-only.internal"] }],
      issuer: root.cert.subjectName,
      ...validityFor(new Date(), 30),
      publicKey: keys.publicKey,
      signingKey: root.key,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "server-only.internal" }]),
        await x509.AuthorityKeyIdentifierExtension.create(root.cert.publicKey),
      ],
    });
    await expectFailure([serverOnly], "extended-key-usage", /server-only\.internal is not allowed for clientAuth/, {
      purpose: "client",
    });
    assert.equal(
      (await check([serverOnly], { purpose: "server", crlPem: "" })).result.failed?.check,
      "crl",
      "as a server it gets as far as revocation",
    );
  });

  it("an expired link anywhere in the chain fails validity and names that link", async () => {
    const ku = () => new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true);
    const old = await craftCa({
      name: "Expired Issuing CA",
      issuer: root,
      notBefore: new Date(Date.now() - 30 * DAY),
      notAfter: new Date(Date.now() - DAY),
      extensions: async () => [new x509.BasicConstraintsExtension(true, 0, true), ku()],
    });
    const leaf = await leafUnder(old, "fresh.internal");
    await expectFailure([leaf, old.cert], "validity", /Expired Issuing CA expired on/);
  });

  it("not yet valid, and expired, leaves fail validity (clock injected, no sleeping)", async () => {
    const future = await CertificateAuthority.open({ dir, now: () => new Date(Date.now() + 10 * DAY) });
    const notYet = await future.issue({ domain: "future.internal", days: 30 });
    future.close();
    await expectFailure(
      [
        new x509.X509Certificate(
          `${readFileSync(notYet.certPath, "utf8").split("-----END CERTIFICATE-----")[0]}-----END CERTIFICATE-----`,
        ),
      ],
      "validity",
      /future\.internal is not valid until/,
    );
    const expired = await ca.issue({ domain: "short.internal", days: 1 });
    const r = await ca.verify({ pem: readFileSync(expired.certPath, "utf8"), at: new Date(Date.now() + 2 * DAY) });
    assert.equal(r.failed?.check, "validity");
    assert.match(r.failed!.message, /short\.internal expired on/);
  });

  it("a certificate from another CA fails trust and names the CAs that are trusted", async () => {
    const otherDir = tempDir();
    const other = await CertificateAuthority.init({ dir: otherDir, name: "Stranger CA" });
    try {
      const stranger = await other.issue({ domain: "stranger.internal" });
      await expectFailure(
        [new x509.X509Certificate(readFileSync(stranger.certPath, "utf8"))],
        "trust",
        /stranger\.internal was issued by "Stranger CA", which is not a trusted CA \(trusted: Verify Root\)/,
      );
    } finally {
      other.close();
      cleanup(otherDir);
    }
  });

  it("a missing CRL and a lapsed CRL fail the crl check; a revoked intermediate fails revocation", async () => {
    const issued = await ca.issue({ domain: "crl.internal" });
    const pem = readFileSync(issued.certPath, "utf8");
    const none = await ca.verify({ pem, crlPem: "" });
    assert.equal(none.failed?.check, "crl");
    assert.match(none.failed!.message, /no CRL signed by Verify Issuing CA was found/);
    const lapsed = await ca.verify({ pem, at: new Date(Date.now() + 31 * DAY) });
    assert.equal(lapsed.failed?.check, "crl");
    assert.match(lapsed.failed!.message, /the CRL of Verify Issuing CA lapsed on/);
    // Revoke the intermediate itself at the root: every leaf under it fails.
    const int = ca.issuerRow("int-1");
    const signer = await ca.signer("root-1");
    const { buildCrl } = await import("../ca/crl.ts");
    const { encodeEntries } = await import("../lib/crl.ts");
    const rootCrl = await buildCrl({
      issuer: signer,
      number: 99,
      now: new Date(),
      entries: encodeEntries([{ serial: int.serial, revokedAt: new Date(Date.now() - 1000), reason: "cACompromise" }]),
    });
    const { crlToPem } = await import("../ca/x509.ts");
    const intCrl = readFileSync(ca.layout.issuer("int-1").crl, "utf8");
    const r = await ca.verify({ pem, crlPem: crlToPem(rootCrl) + intCrl });
    assert.equal(r.failed?.check, "revocation");
    assert.match(r.failed!.message, /Verify Issuing CA \(serial [0-9a-f]+\) was revoked on .*, reason cACompromise/);
  });

  it("a name outside an intermediate's constraints fails name-constraints", async () => {
    const ku = () => new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true);
    const { AsnConvert } = await import("@peculiar/asn1-schema");
    const asn = await import("@peculiar/asn1-x509");
    const nc = new x509.Extension(
      asn.id_ce_nameConstraints,
      true,
      AsnConvert.serialize(
        new asn.NameConstraints({
          permittedSubtrees: new asn.GeneralSubtrees([
            new asn.GeneralSubtree({ base: new asn.GeneralName({ dNSName: "internal" }) }),
          ]),
        }),
      ),
    );
    const constrained = await craftCa({
      name: "Constrained CA",
      issuer: root,
      extensions: async () => [new x509.BasicConstraintsExtension(true, 0, true), ku(), nc],
    });
    const inside = await leafUnder(constrained, "ok.internal");
    const ok = await check([inside, constrained.cert], { crlPem: "" });
    assert.equal(ok.result.failed?.check, "crl", "the name passes; only the (deliberately absent) CRL stops it");
    const outside = await leafUnder(constrained, "bank.example.com");
    await expectFailure(
      [outside, constrained.cert],
      "name-constraints",
      /bank\.example\.com is outside the names Constrained CA may certify \(internal\)/,
    );
  });
});
