// lib/der.ts, lib/pem.ts and lib/pkcs7.ts: hostile input refused with a DerError (never a
// RangeError, a hang or a stack overflow), and what they write agrees byte for byte with openssl.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { generateKeyPair } from "../ca/keys.ts";
import { createRoot, validityFor } from "../ca/profiles.ts";
import { certToPem, x509 } from "../ca/x509.ts";
import {
  children,
  DerError,
  firstChild,
  integerHex,
  oid,
  oidDer,
  readOne,
  readTime,
  readTlv,
  sequence,
  time,
  tlv,
} from "../lib/der.ts";
import { countPem, derToPem, firstPemDer, pemBlocks, pemDers, pemToDer } from "../lib/pem.ts";
import { pkcs7Certificates } from "../lib/pkcs7.ts";

const dir = mkdtempSync(join(tmpdir(), "lib-der-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The DER openssl makes of an ASN1_generate_nconf string (`openssl asn1parse -genstr`). */
function opensslGen(genstr: string): Buffer {
  const out = join(dir, "gen.der");
  const conf = join(dir, "gen.cnf"); // a file, not an argument: 70 kB of hex would pass the argument limit
  writeFileSync(conf, `asn1=${genstr}\n`);
  execFileSync("openssl", ["asn1parse", "-genconf", conf, "-noout", "-out", out]);
  return readFileSync(out);
}

const refuses = (bytes: number[], message: RegExp) => {
  assert.throws(
    () => readOne(new Uint8Array(bytes)),
    (e: unknown) => e instanceof DerError && message.test(e.message),
  );
};

test("hostile lengths: truncated, indefinite, over-long, past the container, multi-byte tags, trailing bytes", () => {
  refuses([], /truncated/);
  refuses([0x30], /truncated/);
  refuses([0x04, 0x03, 0x01, 0x02], /truncated/); // says 3, holds 2
  refuses([0x30, 0x80, 0x00, 0x00], /indefinite length/);
  refuses([0x04, 0x85, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00], /too large/); // five length bytes
  refuses([0x04, 0x84, 0xff, 0xff, 0xff, 0xff], /truncated/); // 4 GiB claimed, nothing there
  refuses([0x04, 0x82, 0x01], /truncated DER length/); // the length itself cut off
  refuses([0x1f, 0x81, 0x00, 0x00], /multi-byte/);
  refuses([0x05, 0x00, 0x00], /trailing bytes/);
  // A child that runs past its parent, though not past the buffer: bounded by the parent.
  const sneaky = new Uint8Array([0x30, 0x03, 0x04, 0x05, 0x01, 0x02, 0x03, 0x04, 0x05]);
  const parent = readTlv(sneaky, 0);
  assert.throws(() => children(parent), /truncated DER: a value runs past its container/);
  assert.throws(() => readTlv(sneaky, 2, parent.end), DerError);
});

test("nested depth and element counts are bounded; no recursion to overflow", () => {
  // 100,000 nested SEQUENCEs (the outer lengths need 3 bytes): walked iteratively, to the bottom.
  let v: Uint8Array = new Uint8Array([0x05, 0x00]);
  for (let i = 0; i < 100_000; i++) v = tlv(0x30, v);
  let t = readOne(v);
  let depth = 0;
  for (let c = firstChild(t); c; c = firstChild(c)) {
    t = c;
    depth++;
  }
  assert.equal(depth, 100_000);
  assert.equal(t.tag, 0x05);
  // A SEQUENCE of 20,000 NULLs: refused past the bound the caller gives.
  const many = sequence(Array.from({ length: 20_000 }, () => new Uint8Array([0x05, 0x00])));
  assert.equal(children(readOne(many), 20_000).length, 20_000);
  assert.throws(() => children(readOne(many)), /more than 10000 elements/);
  assert.throws(() => children(readOne(many), 3), /more than 3 elements/);
});

test("OBJECT IDENTIFIERs: read and written as openssl does; malformed ones refused", () => {
  for (const dotted of [
    "2.5.4.3",
    "1.2.840.113549.1.9.14",
    "1.2.840.10045.4.3.2",
    "2.999.3",
    "1.3.6.1.4.1.311.60.2.1.3",
  ]) {
    const ours = oidDer(dotted);
    assert.deepEqual(Buffer.from(ours), opensslGen(`OID:${dotted}`), dotted);
    assert.equal(oid(readOne(ours).body), dotted);
  }
  assert.throws(() => oid(new Uint8Array([0x55, 0x84])), DerError); // last byte continues
  assert.throws(() => oid(new Uint8Array()), DerError);
  assert.throws(() => oid(new Uint8Array(65).fill(0x01)), DerError);
});

test("lengths at every boundary, INTEGERs and times: byte for byte what openssl writes", () => {
  for (const n of [0, 1, 127, 128, 255, 256, 65_535, 65_536, 70_000]) {
    const body = new Uint8Array(n).fill(0x61);
    const ours = tlv(0x04, body);
    const theirs =
      n === 0 ? Buffer.from([0x04, 0x00]) : opensslGen(`FORMAT:HEX,OCTETSTRING:${Buffer.from(body).toString("hex")}`);
    assert.deepEqual(Buffer.from(ours), theirs, `length ${n}`);
    const back = readOne(ours);
    assert.equal(back.end - back.start, n);
  }
  for (const [hex, genstr] of [
    ["0", "INTEGER:0"],
    ["7f", "INTEGER:0x7f"],
    ["80", "INTEGER:0x80"],
    ["00ff", "INTEGER:0xff"],
    ["0000017a", "INTEGER:0x17a"],
    ["ffffffffffffffffffffffffffffffffffffffff", "INTEGER:0xffffffffffffffffffffffffffffffffffffffff"],
    ["abc", "INTEGER:0xabc"],
  ] as const) {
    assert.deepEqual(Buffer.from(integerHex(hex)), opensslGen(genstr), hex);
  }
  for (const [iso, genstr] of [
    ["2026-12-06T20:13:47.999Z", "UTCTIME:261206201347Z"],
    ["1950-01-01T00:00:00Z", "UTCTIME:500101000000Z"],
    ["2049-12-31T23:59:59Z", "UTCTIME:491231235959Z"],
    ["2050-01-01T00:00:00Z", "GENTIME:20500101000000Z"],
    ["9999-12-31T23:59:59Z", "GENTIME:99991231235959Z"],
  ] as const) {
    const ours = time(new Date(iso));
    assert.deepEqual(Buffer.from(ours), opensslGen(genstr), iso);
    assert.equal(
      readTime(readOne(ours)).toISOString(),
      new Date(Math.floor(Date.parse(iso) / 1000) * 1000).toISOString(),
    );
  }
  assert.throws(() => time(new Date("1949-12-31T23:59:59Z")), RangeError);
  assert.throws(() => time(new Date(Number.NaN)), RangeError);
  // Times outside RFC 5280's profile (fractions, offsets, no seconds) are refused when read.
  for (const s of ["2612062013Z", "261206201347+0100", "261206201347.5Z"]) {
    assert.throws(() => readTime(readOne(tlv(0x17, Buffer.from(s)))), /unsupported time/);
  }
  assert.throws(() => readTime(readOne(tlv(0x04, Buffer.from("261206201347Z")))), /unsupported time/);
});

test("PEM: blocks of one label out of a file with text between; DER and back as openssl writes it", async () => {
  const keys = await generateKeyPair("ec-p256");
  const cert = await createRoot({
    name: "PEM Test CA",
    keys,
    keyType: "ec-p256",
    validity: validityFor(new Date(), 10),
  });
  const file = join(dir, "ca.pem");
  writeFileSync(file, certToPem(cert));
  const opensslPem = execFileSync("openssl", ["x509", "-in", file], { encoding: "utf8" });
  const der = new Uint8Array(cert.rawData);
  assert.equal(derToPem(der, "CERTIFICATE"), opensslPem);
  const mixed = `subject=CN = PEM Test CA\r\n${opensslPem.replace(/\n/g, "\r\n")}junk\n-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n${opensslPem}`;
  assert.equal(countPem(mixed, "CERTIFICATE"), 2);
  assert.equal(countPem(mixed, "X509 CRL"), 1);
  assert.deepEqual(
    pemDers(mixed, "CERTIFICATE").map((b) => b.equals(der)),
    [true, true],
  );
  assert.deepEqual(firstPemDer(mixed, "CERTIFICATE"), Buffer.from(der));
  assert.equal(firstPemDer("no PEM here", "CERTIFICATE"), undefined);
  // A BEGIN without its END is no block; labels do not match each other's prefixes.
  assert.deepEqual(pemBlocks("-----BEGIN CERTIFICATE-----\nAAAA\n", "CERTIFICATE"), []);
  assert.deepEqual(pemBlocks(derToPem(der, "CERTIFICATE REQUEST"), "CERTIFICATE"), []);
  assert.deepEqual(pemToDer(pemBlocks(mixed, "X509 CRL")[0]!), Buffer.from([0, 0, 0]));
});

test("PKCS#7 certs-only: the certificates openssl crl2pkcs7 packs, in order; foreign DER refused", async () => {
  const pems: string[] = [];
  for (const name of ["P7 One", "P7 Two", "P7 Three"]) {
    const keys = await generateKeyPair("ec-p256");
    pems.push(certToPem(await createRoot({ name, keys, keyType: "ec-p256", validity: validityFor(new Date(), 10) })));
  }
  const bundle = join(dir, "bundle.pem");
  writeFileSync(bundle, pems.join(""));
  const p7 = execFileSync("openssl", ["crl2pkcs7", "-nocrl", "-certfile", bundle, "-outform", "DER"]);
  const certs = pkcs7Certificates(p7);
  assert.deepEqual(
    certs.map((c) => new x509.X509Certificate(new Uint8Array(c)).subject),
    ["CN=P7 One", "CN=P7 Two", "CN=P7 Three"],
  );
  assert.deepEqual(
    certs.map((c) => derToPem(c, "CERTIFICATE")),
    pems,
  );
  // What the CA writes through @peculiar/x509 reads the same.
  const peculiar = new Uint8Array(
    new x509.X509Certificates(pems.map((p) => new x509.X509Certificate(p))).export("raw"),
  );
  assert.deepEqual(pkcs7Certificates(peculiar), certs);
  assert.throws(() => pkcs7Certificates(p7.subarray(0, p7.length - 1)), /truncated/);
  assert.throws(() => pkcs7Certificates(Buffer.concat([p7, Buffer.from([0])])), /trailing bytes/);
  assert.throws(() => pkcs7Certificates(certs[0]!), /not a PKCS#7/);
  assert.throws(() => pkcs7Certificates(p7, 2), /more than 2 elements/);
});

test("a PKCS#10 request written with lib/der: openssl verifies it, and its schema re-encodes it to the same bytes", async () => {
  const { newKeyAndCsr } = await import("../services/mesh/identity-agent/csr.ts");
  const { AsnConvert } = await import("@peculiar/asn1-schema");
  const { CertificationRequest } = await import("@peculiar/asn1-csr");
  const { csr } = newKeyAndCsr("payment.internal");
  const file = join(dir, "req.der");
  writeFileSync(file, csr);
  const text = execFileSync("openssl", ["req", "-inform", "DER", "-in", file, "-verify", "-noout", "-text"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  assert.match(text, /Subject: CN\s*=\s*payment\.internal/);
  assert.match(text, /X509v3 Subject Alternative Name:\s*\n\s*DNS:payment\.internal/);
  assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  const reencoded = Buffer.from(AsnConvert.serialize(AsnConvert.parse(csr, CertificationRequest)));
  assert.deepEqual(reencoded, csr);
  const req = new x509.Pkcs10CertificateRequest(new Uint8Array(csr));
  assert.equal(await req.verify(), true);
});
