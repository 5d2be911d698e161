// lib/crl.ts against the two other CRL writers in reach, openssl's `ca -gencrl` and
// @peculiar/x509's generator: what it encodes is byte for byte theirs, what it reads agrees
// with `openssl crl -text`, and a CRL that is not one is refused, not read as empty.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { buildCrl } from "../ca/crl.ts";
import { generateKeyPair } from "../ca/keys.ts";
import { createRoot, validityFor } from "../ca/profiles.ts";
import { crlToPem, x509 } from "../ca/x509.ts";
import { crlDates, crlFields, encodeEntries, revokedSerials, type CrlEntry } from "../lib/crl.ts";
import { children, firstChild, readTlv, sequence, tlv } from "../lib/der.ts";
import { pemToDer } from "../lib/pem.ts";

const dir = mkdtempSync(join(tmpdir(), "lib-crl-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function signer() {
  const keys = await generateKeyPair("ec-p256");
  const cert = await createRoot({
    name: "CRL Lib Test CA",
    keys,
    keyType: "ec-p256",
    validity: validityFor(new Date(), 10),
  });
  return { cert, key: keys.privateKey, keyType: "ec-p256" as const };
}

const second = (iso: string) => new Date(iso);
const ENTRIES: CrlEntry[] = [
  { serial: "01", revokedAt: second("2026-01-02T03:04:05Z"), reason: "unspecified" },
  { serial: "7a", revokedAt: second("2026-02-03T04:05:06Z"), reason: "keyCompromise" },
  { serial: "00ff01", revokedAt: second("2049-12-31T23:59:59Z"), reason: "superseded" },
  { serial: "80aa", revokedAt: second("2050-01-01T00:00:00Z"), reason: "privilegeWithdrawn" },
  {
    serial: "3c0ffee3c0ffee3c0ffee3c0ffee3c0ffee3c0ff",
    revokedAt: second("2026-03-04T05:06:07Z"),
    reason: "cessationOfOperation",
  },
];
const PECULIAR_REASON: Record<string, x509.X509CrlReason | undefined> = {
  unspecified: undefined,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  superseded: x509.X509CrlReason.superseded,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
};

test("revokedCertificates: byte for byte what @peculiar/x509's generator writes for the same entries", async () => {
  const issuer = await signer();
  const generate = (entries: CrlEntry[]) =>
    x509.X509CrlGenerator.create({
      issuer: issuer.cert.subjectName,
      thisUpdate: new Date(),
      nextUpdate: new Date(Date.now() + 86_400_000),
      signingKey: issuer.key,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
      entries: entries.map((e) => ({
        serialNumber: e.serial,
        revocationDate: e.revokedAt,
        reason: PECULIAR_REASON[e.reason],
      })),
    });
  const withReasons = ENTRIES.filter((e) => e.reason !== "unspecified");
  const theirs = await generate(withReasons);
  const revoked = crlFields(new Uint8Array(theirs.rawData)).revoked!;
  assert.deepEqual(Buffer.from(revoked.raw), Buffer.from(tlv(0x30, encodeEntries(withReasons))));
  assert.deepEqual(revokedSerials(new Uint8Array(theirs.rawData)), [
    "7a",
    "ff01",
    "80aa",
    "3c0ffee3c0ffee3c0ffee3c0ffee3c0ffee3c0ff",
  ]);
  // Without a reason, @peculiar/x509 writes an empty crlEntryExtensions (30 00), which RFC 5280's
  // SIZE (1..MAX) forbids; the CA writes none (5.3.1: "unspecified" SHOULD NOT be used as a code).
  const bare = children(crlFields(new Uint8Array((await generate(ENTRIES.slice(0, 1))).rawData)).revoked!)[0]!;
  assert.equal(Buffer.from(bare.raw).toString("hex"), "3014020101170d3236303130323033303430355a3000");
  assert.equal(
    Buffer.from(encodeEntries(ENTRIES.slice(0, 1))).toString("hex"),
    "3012020101170d3236303130323033303430355a",
  );
});

test("the CA's CRL as openssl reads it: issuer, dates, serials and reasons agree with crlDates and revokedSerials", async () => {
  const issuer = await signer();
  const now = new Date();
  const der = await buildCrl({ issuer, number: 7, now, entries: encodeEntries(ENTRIES) });
  const file = join(dir, "ours.crl");
  writeFileSync(file, crlToPem(der));
  const text = execFileSync("openssl", ["crl", "-in", file, "-noout", "-text"], { encoding: "utf8" });
  const serials = [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) =>
    m[1]!.toLowerCase().replace(/^0+(?=.)/, ""),
  );
  assert.deepEqual(revokedSerials(der), serials);
  assert.deepEqual(
    [...text.matchAll(/CRL Reason Code:\s*\n\s*(.+)/g)].map((m) => m[1]!.trim()),
    ["Key Compromise", "Superseded", "Privilege Withdrawn", "Cessation Of Operation"],
  );
  const d = crlDates(der);
  assert.equal(d.issuer, "CN=CRL Lib Test CA");
  const opensslDate = (field: string) =>
    new Date(
      execFileSync("openssl", ["crl", "-in", file, "-noout", `-${field}`], { encoding: "utf8" })
        .split("=")[1]!
        .trim(),
    );
  assert.equal(d.thisUpdate.toISOString(), opensslDate("lastupdate").toISOString());
  assert.equal(d.nextUpdate!.toISOString(), opensslDate("nextupdate").toISOString());
});

test("a CRL made by `openssl ca -gencrl`: the serials and dates openssl lists", () => {
  const ca = join(dir, "openssl-ca");
  mkdirSync(ca, { recursive: true });
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      join(ca, "key.pem"),
      "-out",
      join(ca, "cert.pem"),
      "-subj",
      "/O=Acme/CN=OpenSSL Test CA",
      "-days",
      "10",
    ],
    { stdio: "ignore" },
  );
  // index.txt: R, expiry, revocation time and reason, serial, file, subject (tab-separated).
  const lines = [
    ["R", "300101000000Z", "260102030405Z,keyCompromise", "0A"],
    ["R", "300101000000Z", "260203040506Z", "00FF01"],
    ["V", "300101000000Z", "", "0B"],
  ];
  writeFileSync(join(ca, "index.txt"), lines.map((l) => `${l.join("\t")}\tunknown\t/CN=x\n`).join(""));
  writeFileSync(join(ca, "crlnumber"), "01\n");
  writeFileSync(
    join(ca, "ca.cnf"),
    `[ca]\ndefault_ca=d\n[d]\ndatabase=${join(ca, "index.txt")}\ncrlnumber=${join(ca, "crlnumber")}\ncertificate=${join(ca, "cert.pem")}\nprivate_key=${join(ca, "key.pem")}\ndefault_md=sha256\ndefault_crl_days=3\n`,
  );
  const out = join(ca, "crl.pem");
  execFileSync("openssl", ["ca", "-gencrl", "-config", join(ca, "ca.cnf"), "-out", out], { stdio: "ignore" });
  const pem = execFileSync("openssl", ["crl", "-in", out], { encoding: "utf8" });
  const der = pemToDer(pem);
  assert.deepEqual(revokedSerials(der), ["a", "ff01"]);
  const d = crlDates(der);
  assert.equal(d.issuer, "O=Acme, CN=OpenSSL Test CA");
  assert.ok(d.nextUpdate && Math.abs(d.nextUpdate.getTime() - d.thisUpdate.getTime() - 3 * 86_400_000) < 2000);
});

test("what is not a CRL is refused, however it is cut", async () => {
  const issuer = await signer();
  const der = await buildCrl({ issuer, number: 1, now: new Date(), entries: encodeEntries(ENTRIES) });
  // Every truncation of a real CRL: an error (its outer length no longer fits), never a shorter list.
  for (let n = 0; n < der.length; n += 7)
    assert.throws(() => revokedSerials(der.subarray(0, n)), /truncated|not a CRL/, `cut at ${n}`);
  assert.throws(() => revokedSerials(new Uint8Array(issuer.cert.rawData)), /not a CRL/);
  assert.throws(() => crlDates(new Uint8Array([0x30, 0x80, 0, 0])), /indefinite length/);
  // A revoked entry without its serial, and one whose first field is not an INTEGER.
  const head = children(firstChild(readTlv(der, 0))!, 16)
    .slice(0, 4)
    .map((t) => t.raw); // version, algorithm, issuer, thisUpdate
  for (const entry of [sequence([]), sequence([tlv(0x04, new Uint8Array([1]))])]) {
    const forged = sequence([sequence([...head, sequence([entry])])]);
    assert.throws(() => revokedSerials(forged), /has no serial number/);
  }
});
