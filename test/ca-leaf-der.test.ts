// The hand-written leaf encoder (ca/leaf-der.ts), CSR reader (ca/csr.ts) and PKCS#7 writer
// (lib/pkcs7.ts) against what they replaced: @peculiar/x509's generator and parser, byte for
// byte where the inputs are the same, and against openssl.
import assert from "node:assert/strict";
import { createPublicKey, generateKeyPairSync, KeyObject, webcrypto } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CsrFormatError, csrKey } from "../ca/csr.ts";
import { csrIdentity, EnrolError } from "../ca/enrol.ts";
import { generateKeyPair, publicKeyType, type KeyType } from "../ca/keys.ts";
import { leafTbs, leafTemplate, signLeafDer, type LeafFields } from "../ca/leaf-der.ts";
import { createIntermediate, createLeaf, createRoot, randomSerial, type Signer, validityFor } from "../ca/profiles.ts";
import { x509 } from "../ca/x509.ts";
import { children, readOne } from "../lib/der.ts";
import { derToPem } from "../lib/pem.ts";
import { certsOnlyDer } from "../lib/pkcs7.ts";
import { cleanup, openssl, tempDir } from "./helpers/ca.ts";

const NOW = new Date("2026-12-06T12:00:00.123Z");
const spkiOf = (k: CryptoKey) =>
  new Uint8Array(KeyObject.from(k as Parameters<typeof KeyObject.from>[0]).export({ format: "der", type: "spki" }));
const tbsOf = (der: Uint8Array) => Buffer.from(children(readOne(der), 3)[0]!.raw);

async function rootSigner(keyType: KeyType, name = `Root ${keyType}`): Promise<Signer> {
  const keys = await generateKeyPair(keyType);
  const cert = await createRoot({ name, keys, keyType, validity: validityFor(NOW, 3650) });
  return { cert, key: keys.privateKey, keyType };
}

/** The same leaf through both builders: the old one's certificate and the new one's DER. */
async function both(issuer: Signer, fields: Omit<LeafFields, "spki">, leafKey: CryptoKey) {
  const old = await createLeaf({
    names: fields.names,
    publicKey: leafKey,
    keyType: fields.keyType,
    issuer,
    validity: fields.validity,
    serial: fields.serial,
    cdp: fields.cdp,
  });
  const template = leafTemplate(new Uint8Array(issuer.cert.rawData), issuer.key, issuer.keyType);
  const f = { ...fields, spki: spkiOf(leafKey) };
  return { old: new Uint8Array(old.rawData), tbs: leafTbs(template, f), der: await signLeafDer(template, f) };
}

const NAMES = [
  { name: "payment.internal", dns: [], ip: [], uri: ["spiffe://internal/payment"] },
  {
    name: "api.internal",
    dns: ["api.internal", "api-2.internal"],
    ip: ["10.0.0.1", "::1", "2001:db8::8:800:200c:417a", "fe80:0:0:1::"],
    uri: ["spiffe://example.org/ns/api"],
  },
  { name: "*.wild.internal", dns: ["wild.internal"], ip: [], uri: [] }, // "*" is not PrintableString: UTF8String CN
];

describe("leaf DER: the same bytes as @peculiar/x509's generator", () => {
  for (const issuerType of ["ec-p256", "ec-p384", "rsa-2048", "ed25519"] as const) {
    for (const leafType of ["ec-p256", "rsa-2048", "ed25519"] as const) {
      it(`${issuerType} CA, ${leafType} leaf: identical TBSCertificate; signature verifies`, async () => {
        const issuer = await rootSigner(issuerType);
        const leafKeys = await generateKeyPair(leafType);
        for (const names of NAMES) {
          for (const cdp of [
            undefined,
            ["http://127.0.0.1:8443/crl/root-1.crl", "http://ca.internal/crl/root-1.crl"],
          ]) {
            const fields = {
              names,
              keyType: leafType,
              validity: validityFor(NOW, 90),
              serial: randomSerial(),
              cdp,
            };
            const r = await both(issuer, fields, leafKeys.publicKey);
            assert.deepEqual(Buffer.from(r.tbs), tbsOf(r.old), `${names.name} cdp=${cdp !== undefined}`);
            assert.deepEqual(tbsOf(r.der), Buffer.from(r.tbs));
            // RSA PKCS#1 v1.5 and Ed25519 sign deterministically: the whole certificate is the same.
            if (issuerType.startsWith("rsa") || issuerType === "ed25519") assert.deepEqual(r.der, r.old);
            const parsed = new x509.X509Certificate(r.der);
            assert.equal(await parsed.verify({ publicKey: issuer.cert.publicKey, signatureOnly: true }), true);
          }
        }
      });
    }
  }

  it("an intermediate with name constraints as issuer: same bytes, and its AKI is the intermediate's SKI", async () => {
    const root = await rootSigner("ec-p256");
    const keys = await generateKeyPair("ec-p256");
    const cert = await createIntermediate({
      name: "Issuing CA 1",
      publicKey: keys.publicKey,
      issuer: root,
      validity: validityFor(NOW, 365),
      permitDns: ["internal"],
    });
    const issuer: Signer = { cert, key: keys.privateKey, keyType: "ec-p256" };
    const leaf = await generateKeyPair("ec-p384");
    const r = await both(
      issuer,
      { names: NAMES[0]!, keyType: "ec-p384", validity: validityFor(NOW, 1), serial: randomSerial() },
      leaf.publicKey,
    );
    assert.deepEqual(Buffer.from(r.tbs), tbsOf(r.old));
    const parsed = new x509.X509Certificate(r.der);
    const aki = parsed.getExtension(x509.AuthorityKeyIdentifierExtension)!;
    assert.equal(aki.keyId, cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
    assert.equal(parsed.issuer, "CN=Issuing CA 1");
  });

  it("dates from 2050 on are GeneralizedTime, as RFC 5280 4.1.2.5 and the old builder have it", async () => {
    const issuer = await rootSigner("ec-p256");
    const leaf = await generateKeyPair("ec-p256");
    const validity = { notBefore: new Date("2049-12-31T23:59:59Z"), notAfter: new Date("2050-01-01T00:00:00Z") };
    const r = await both(
      issuer,
      { names: NAMES[0]!, keyType: "ec-p256", validity, serial: randomSerial() },
      leaf.publicKey,
    );
    assert.deepEqual(Buffer.from(r.tbs), tbsOf(r.old));
  });

  it("refuses a second URI SAN, as the old builder did", async () => {
    const issuer = await rootSigner("ec-p256");
    const leaf = await generateKeyPair("ec-p256");
    const t = leafTemplate(new Uint8Array(issuer.cert.rawData), issuer.key, issuer.keyType);
    const names = { name: "a.internal", dns: [], ip: [], uri: ["spiffe://internal/a", "spiffe://internal/b"] };
    assert.throws(
      () =>
        leafTbs(t, {
          names,
          spki: spkiOf(leaf.publicKey),
          keyType: "ec-p256",
          validity: validityFor(NOW, 1),
          serial: "41",
        }),
      /at most one URI SAN/,
    );
  });
});

describe("leaf DER: openssl agrees", () => {
  let dir: string;
  before(() => {
    dir = tempDir("mesh-leafder-");
  });
  after(() => cleanup(dir));

  for (const issuerType of ["ec-p256", "ec-p384", "rsa-2048", "ed25519"] as const) {
    it(`${issuerType}: openssl verify accepts the chain for purpose sslserver and sslclient; x509 -text shows the profile`, async () => {
      const issuer = await rootSigner(issuerType);
      const leaf = await generateKeyPair("ec-p256");
      const t = leafTemplate(new Uint8Array(issuer.cert.rawData), issuer.key, issuer.keyType);
      const der = await signLeafDer(t, {
        names: NAMES[1]!,
        spki: spkiOf(leaf.publicKey),
        keyType: "ec-p256",
        validity: validityFor(new Date(), 1),
        serial: randomSerial(),
        cdp: ["http://127.0.0.1:1/crl/root-1.crl"],
      });
      const rootFile = join(dir, `${issuerType}-root.pem`);
      const leafFile = join(dir, `${issuerType}-leaf.pem`);
      writeFileSync(rootFile, `${issuer.cert.toString("pem")}\n`);
      writeFileSync(leafFile, derToPem(der, "CERTIFICATE"));
      for (const purpose of ["sslserver", "sslclient"]) {
        const v = openssl(["verify", "-purpose", purpose, "-CAfile", rootFile, leafFile]);
        assert.equal(v.code, 0, v.out);
        assert.match(v.out, /: OK/);
      }
      const text = openssl(["x509", "-noout", "-text", "-in", leafFile]).out;
      assert.match(text, /Subject: CN ?= ?api\.internal/);
      assert.match(text, /CA:FALSE/);
      assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature\n/);
      assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
      assert.match(
        text,
        /DNS:api\.internal, DNS:api-2\.internal, IP Address:10\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1, IP Address:2001:DB8:0:0:8:800:200C:417A, IP Address:FE80:0:0:1:0:0:0:0, URI:spiffe:\/\/example\.org\/ns\/api/,
      );
      assert.match(text, /URI:http:\/\/127\.0\.0\.1:1\/crl\/root-1\.crl/);
      // A tampered signature: openssl refuses it.
      const bad = Buffer.from(der);
      bad[bad.length - 3]! ^= 0x01;
      writeFileSync(leafFile, derToPem(bad, "CERTIFICATE"));
      assert.notEqual(openssl(["verify", "-CAfile", rootFile, leafFile]).code, 0);
    });
  }
});

/** buildCrl as it was before (commit 4e0e7e4), through @peculiar/x509 and WebCrypto: the oracle. */
async function oldBuildCrl(issuer: Signer, entries: Uint8Array, number: number, now: Date): Promise<Uint8Array> {
  const { asn1Schema, asn1X509, subtle } = await import("../ca/x509.ts");
  const { signingAlgorithm } = await import("../ca/keys.ts");
  const { bitString, sequence, time, tlv } = await import("../lib/der.ts");
  const algorithm = { ...signingAlgorithm(issuer.keyType), ...issuer.key.algorithm } as Algorithm;
  const algId = new Uint8Array(asn1Schema.AsnConvert.serialize(new x509.AlgorithmProvider().toAsnAlgorithm(algorithm)));
  const ski = issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const extensions = [
    new x509.Extension(
      asn1X509.id_ce_cRLNumber,
      false,
      asn1Schema.AsnConvert.serialize(new asn1X509.CRLNumber(number)),
    ),
  ];
  if (ski) extensions.push(new x509.AuthorityKeyIdentifierExtension(ski.keyId));
  const parts = [
    new Uint8Array([2, 1, 1]),
    algId,
    new Uint8Array(issuer.cert.subjectName.toArrayBuffer()),
    time(new Date(now.getTime() - 5 * 60_000)),
    time(new Date(now.getTime() + 30 * 86_400_000)),
  ];
  if (entries.length > 0) parts.push(tlv(0x30, entries));
  parts.push(tlv(0xa0, sequence(extensions.map((e) => new Uint8Array(e.rawData)))));
  const tbs = sequence(parts);
  let signature = new Uint8Array(await subtle.sign(algorithm, issuer.key, tbs));
  if (algorithm.name === "ECDSA")
    signature = new Uint8Array(new x509.AsnEcSignatureFormatter().toAsnSignature(algorithm, signature)!);
  return sequence([tbs, algId, bitString(signature)]);
}

describe("CRLs: the same bytes as the @peculiar/x509 path they replaced", () => {
  for (const keyType of ["ec-p256", "ec-p384", "rsa-2048", "ed25519"] as const) {
    it(`${keyType} CA: identical tbsCertList (whole CRL for RSA and Ed25519); openssl verifies it`, async () => {
      const { buildCrl } = await import("../ca/crl.ts");
      const { encodeEntries } = await import("../lib/crl.ts");
      const issuer = await rootSigner(keyType);
      const entries = encodeEntries([
        { serial: "7f01", revokedAt: NOW, reason: "keyCompromise" },
        { serial: "41aa", revokedAt: NOW, reason: "unspecified" },
      ]);
      for (const [list, number] of [
        [new Uint8Array(0), 1],
        [entries, 300],
      ] as const) {
        const now = await buildCrl({ issuer, entries: list, number, now: NOW });
        const old = await oldBuildCrl(issuer, list, number, NOW);
        assert.deepEqual(tbsOf(now), tbsOf(old));
        if (keyType === "rsa-2048" || keyType === "ed25519") assert.deepEqual(Buffer.from(now), Buffer.from(old));
        const dir = tempDir("mesh-crl-");
        try {
          writeFileSync(join(dir, "ca.pem"), `${issuer.cert.toString("pem")}\n`);
          writeFileSync(join(dir, "crl.pem"), derToPem(now, "X509 CRL"));
          const v = openssl(["crl", "-in", join(dir, "crl.pem"), "-CAfile", join(dir, "ca.pem"), "-noout"]);
          assert.equal(v.code, 0, v.out);
          assert.match(v.out, /verify OK/);
        } finally {
          cleanup(dir);
        }
      }
    });
  }
});

describe("PKCS#7 certs-only: the same bytes as @peculiar/x509's X509Certificates", () => {
  it("one, two and three certificates", async () => {
    const a = await rootSigner("ec-p256", "A");
    const b = await rootSigner("rsa-2048", "B");
    for (const certs of [[a.cert], [a.cert, b.cert], [b.cert, a.cert, b.cert]]) {
      const old = Buffer.from(new x509.X509Certificates(certs).export("raw"));
      assert.deepEqual(Buffer.from(certsOnlyDer(certs.map((c) => new Uint8Array(c.rawData)))), old);
    }
  });
});

// --- CSRs ------------------------------------------------------------------------------------

/** csrIdentity as it was before ca/csr.ts (commit 4e0e7e4), through @peculiar/x509: the oracle. */
async function oldCsrIdentity(der: Uint8Array): Promise<{ name: string; keyType: KeyType; spki: Buffer }> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(Buffer.from(der));
  } catch {
    throw new EnrolError(
      "malformed_csr",
      "the body is not a DER PKCS#10 certificate request (base64-encode the DER CSR)",
    );
  }
  let keyType: KeyType;
  try {
    keyType = publicKeyType(csr.publicKey.rawData);
  } catch (err) {
    throw new EnrolError("malformed_csr", `the CSR's key is not supported: ${(err as Error).message}`);
  }
  let signed = false;
  try {
    signed = await csr.verify();
  } catch {
    /* unsigned */
  }
  if (!signed)
    throw new EnrolError(
      "malformed_csr",
      "the CSR's signature does not verify: it was altered or signed with another key",
    );
  const cn = csr.subjectName.getField("CN");
  if (cn.length !== 1)
    throw new EnrolError(
      "malformed_csr",
      `the CSR's subject has ${cn.length} CNs: a service certificate has exactly one`,
    );
  const { validateDnsName } = await import("../ca/names.ts");
  let name: string;
  try {
    name = validateDnsName(cn[0]!, { what: "the CSR's CN" });
  } catch (err) {
    throw new EnrolError("malformed_csr", (err as Error).message);
  }
  const san = csr.extensions.find(
    (e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension,
  );
  const others = (san?.names.items ?? []).filter((n) => !(n.type === "dns" && n.value === name) && n.type !== "url");
  if (others.length > 0)
    throw new EnrolError(
      "wrong_name",
      `the CSR asks for ${others.length} name(s) besides its CN ${name}: this CA signs exactly one name per certificate`,
    );
  return { name, keyType, spki: Buffer.from(csr.publicKey.rawData) };
}

const verdict = async (fn: () => Promise<{ name: string; keyType: KeyType; spki: Uint8Array }>) => {
  try {
    const r = await fn();
    return { ok: `${r.name} ${r.keyType} ${Buffer.from(r.spki).toString("hex")}` };
  } catch (err) {
    assert.ok(err instanceof EnrolError, String(err));
    return { code: err.code, message: err.message };
  }
};

/** A CSR made by openssl: key on `keyArgs`, subject, optional extensions. */
function opensslCsr(dir: string, tag: string, keyArgs: string[], subj: string, ext?: string): Buffer {
  const key = join(dir, `${tag}.key`);
  const csr = join(dir, `${tag}.csr`);
  const k = openssl([...keyArgs, "-out", key]);
  assert.equal(k.code, 0, k.out);
  const r = openssl([
    "req",
    "-new",
    "-key",
    key,
    "-subj",
    subj,
    "-outform",
    "DER",
    "-out",
    csr,
    ...(ext ? ["-addext", ext] : []),
  ]);
  assert.equal(r.code, 0, r.out);
  return Buffer.from(openssl(["base64", "-in", csr, "-A"]).out.trim(), "base64");
}

describe("CSRs: the DER reader gives the old verdicts, messages and keys", () => {
  let dir: string;
  const corpus: [string, Buffer][] = [];
  before(async () => {
    dir = tempDir("mesh-csr-");
    const ec = ["ecparam", "-name", "prime256v1", "-genkey", "-noout"];
    const good = opensslCsr(
      dir,
      "good",
      ec,
      "/CN=good.internal",
      "subjectAltName=DNS:good.internal,URI:spiffe://internal/x",
    );
    corpus.push(["openssl P-256 with SAN", good]);
    corpus.push([
      "openssl P-384",
      opensslCsr(dir, "p384", ["ecparam", "-name", "secp384r1", "-genkey", "-noout"], "/CN=p384.internal"),
    ]);
    corpus.push([
      "openssl RSA-2048",
      opensslCsr(dir, "rsa", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "/CN=rsa.internal"),
    ]);
    corpus.push(["openssl Ed25519", opensslCsr(dir, "ed", ["genpkey", "-algorithm", "ED25519"], "/CN=ed.internal")]);
    corpus.push([
      "P-192",
      opensslCsr(dir, "p192", ["ecparam", "-name", "prime192v1", "-genkey", "-noout"], "/CN=x.internal"),
    ]);
    corpus.push([
      "secp256k1",
      opensslCsr(dir, "k1", ["ecparam", "-name", "secp256k1", "-genkey", "-noout"], "/CN=x.internal"),
    ]);
    corpus.push(["two CNs", opensslCsr(dir, "two", ec, "/CN=a.internal/CN=b.internal")]);
    corpus.push(["no CN", opensslCsr(dir, "none", ec, "/O=Acme")]);
    corpus.push(["CN not a DNS name", opensslCsr(dir, "ip", ec, "/CN=127.0.0.1")]);
    corpus.push([
      "a second DNS name",
      opensslCsr(dir, "dns2", ec, "/CN=a.internal", "subjectAltName=DNS:a.internal,DNS:b.internal"),
    ]);
    corpus.push([
      "an IP SAN",
      opensslCsr(dir, "ipsan", ec, "/CN=a.internal", "subjectAltName=DNS:a.internal,IP:10.1.2.3"),
    ]);
    corpus.push(["an email SAN", opensslCsr(dir, "mail", ec, "/CN=a.internal", "subjectAltName=email:a@b.c")]);
    corpus.push(["a UTF8 CN", opensslCsr(dir, "utf8", ec, "/CN=ünï.internal")]);
    const flipped = Buffer.from(good);
    flipped[flipped.indexOf(Buffer.from("good.internal"))] = "h".charCodeAt(0);
    corpus.push(["bad signature (name flipped)", flipped]);
    const sig = Buffer.from(good);
    sig[sig.length - 2]! ^= 0x40;
    corpus.push(["bad signature (signature flipped)", sig]);
    corpus.push(["empty", Buffer.alloc(0)]);
    corpus.push(["garbage", Buffer.from("this is not DER at all, just text")]);
    corpus.push(["huge garbage", Buffer.alloc(256 * 1024, 0x30)]);
    corpus.push(["truncated", good.subarray(0, good.length - 10)]);
    corpus.push(["a certificate, not a CSR", Buffer.from((await rootSigner("ec-p256")).cert.rawData)]);
    corpus.push(["deep nesting", Buffer.from(`${"3080".repeat(200)}`, "hex")]);
  });
  after(() => cleanup(dir));

  it("every CSR of the corpus: the same verdict and message as the @peculiar/x509 path", async () => {
    assert.ok(corpus.length > 15);
    for (const [what, der] of corpus) {
      const now = await verdict(() => csrIdentity(der));
      const old = await verdict(() => oldCsrIdentity(der));
      assert.deepEqual(now, old, what);
    }
  });

  it("the refusals name what is wrong (the old messages, held here literally)", async () => {
    const by = async (what: string) => verdict(() => csrIdentity(corpus.find(([w]) => w === what)![1]));
    assert.match(
      (await by("P-192")).message!,
      /^the CSR's key is not supported: unsupported curve P-192 \(prime192v1\)/,
    );
    assert.match((await by("secp256k1")).message!, /^the CSR's key is not supported: unsupported curve secp256k1:/);
    assert.match((await by("bad signature (name flipped)")).message!, /signature does not verify/);
    assert.match((await by("bad signature (signature flipped)")).message!, /signature does not verify/);
    assert.match((await by("two CNs")).message!, /has 2 CNs/);
    assert.equal((await by("a second DNS name")).code, "wrong_name");
    assert.match((await by("garbage")).message!, /not a DER PKCS#10/);
    assert.match((await by("huge garbage")).message!, /not a DER PKCS#10/);
    assert.match((await by("a certificate, not a CSR")).message!, /not a DER PKCS#10/);
  });

  it("trailing bytes after the request are refused (the old parser ignored them)", async () => {
    const good = corpus[0]![1];
    const r = await verdict(() => csrIdentity(Buffer.concat([good, Buffer.from([0x05, 0x00])])));
    assert.equal(r.code, "malformed_csr");
    assert.match(r.message!, /not a DER PKCS#10/);
  });

  it("2,000 mutated CSRs (a byte changed, cut short, or a length byte altered): each is refused with an EnrolError or, untouched in substance, read as the original", async () => {
    const good = corpus[0]![1];
    const original = await csrIdentity(good);
    let seed = 16;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let refused = 0;
    for (let i = 0; i < 2000; i++) {
      const m = Buffer.from(good);
      const kind = i % 3;
      let der: Buffer = m;
      if (kind === 0) m[rand(m.length)] = rand(256);
      else if (kind === 1) der = m.subarray(0, rand(m.length));
      else m[1 + rand(8)] = rand(256); // the outer lengths live in the first bytes
      try {
        const id = await csrIdentity(der);
        assert.equal(id.name, original.name);
        assert.deepEqual(Buffer.from(id.spki), Buffer.from(original.spki));
      } catch (err) {
        assert.ok(err instanceof EnrolError, `mutation ${i}: ${(err as Error).stack}`);
        refused++;
      }
    }
    assert.ok(refused > 1500, `only ${refused} of 2,000 refused`);
  });

  it("a P-256 key read from its point's coordinates is the key its DER gives; off the curve, refused", async () => {
    for (let i = 0; i < 20; i++) {
      const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const spki = publicKey.export({ type: "spki", format: "der" });
      const parsed = { cns: [], sans: [], spki, signatureAlgorithm: "", info: new Uint8Array(), signature: spki };
      const { key, keyType } = csrKey(parsed);
      assert.equal(keyType, "ec-p256");
      assert.deepEqual(key.export({ type: "spki", format: "der" }), spki);
      assert.ok(key.equals(publicKey));
      const bad = Buffer.from(spki);
      bad[90]! ^= 0x01;
      assert.throws(() => createPublicKey({ key: bad, format: "der", type: "spki" }), "the DER import refuses it too");
      assert.throws(() => csrKey({ ...parsed, spki: bad }), CsrFormatError);
    }
    // In a whole CSR (the @peculiar/x509 path refused it too, with OpenSSL's "decode error").
    const off = Buffer.from(corpus[0]![1]);
    const head = off.indexOf(Buffer.from("3059301306072a8648ce3d020106082a8648ce3d030107034200", "hex"));
    assert.ok(head > 0);
    off[head + 90]! ^= 0x01; // the last byte of Y
    const r = await verdict(() => csrIdentity(off));
    assert.equal(r.code, "malformed_csr");
    assert.match(r.message!, /^the CSR's key is not supported: the public key is not readable/);
    assert.equal((await verdict(() => oldCsrIdentity(off))).code, "malformed_csr");
  });

  it("the key certified is the CSR's SubjectPublicKeyInfo, byte for byte", async () => {
    const id = await csrIdentity(corpus[0]![1]);
    const key = createPublicKey({ key: Buffer.from(id.spki), format: "der", type: "spki" });
    assert.equal(key.asymmetricKeyDetails?.namedCurve, "prime256v1");
  });

  it("a CSR made by WebCrypto through @peculiar/x509's generator (the tests' and agents' kind) reads the same", async () => {
    const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
    const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: [{ CN: ["web.internal"] }],
      keys,
      signingAlgorithm: alg,
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          { type: "dns", value: "web.internal" },
          { type: "url", value: "spiffe://internal/other" },
        ]),
      ],
    });
    const der = new Uint8Array(csr.rawData);
    assert.deepEqual(await verdict(() => csrIdentity(der)), await verdict(() => oldCsrIdentity(der)));
    assert.ok(!(await verdict(() => csrIdentity(der))).code);
  });
});
