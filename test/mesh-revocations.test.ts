// The services read revoked serials straight from CRL DER (Node parses no CRLs):
// checked against CRLs from the CA and from another encoder, with and without
// nextUpdate, empty and long.
import assert from "node:assert/strict";
import { test } from "node:test";
import { buildCrl } from "../ca/crl.ts";
import { generateKeyPair } from "../ca/keys.ts";
import { createRoot, randomSerial, validityFor } from "../ca/profiles.ts";
import { crlToPem, normalSerial, x509 } from "../ca/x509.ts";
import { encodeEntries, revokedSerials } from "../lib/crl.ts";
import { revokedSet } from "../services/mesh/revocations.ts";

async function signer() {
  const keys = await generateKeyPair("ec-p256");
  const cert = await createRoot({
    name: "Revocation Test CA",
    keys,
    keyType: "ec-p256",
    validity: validityFor(new Date(), 10),
  });
  return { cert, key: keys.privateKey, keyType: "ec-p256" as const };
}

test("serials from the CA's own CRLs: none, one, and a thousand", async () => {
  const issuer = await signer();
  for (const n of [0, 1, 1000]) {
    const serials = Array.from({ length: n }, () => randomSerial());
    const der = await buildCrl({
      issuer,
      number: 1,
      now: new Date(),
      entries: encodeEntries(serials.map((serial) => ({ serial, revokedAt: new Date(), reason: "keyCompromise" }))),
    });
    assert.deepEqual(revokedSerials(der).sort(), serials.map(normalSerial).sort());
    // The parser agrees with @peculiar/x509's reading of the same bytes.
    const parsed = new x509.X509Crl(crlToPem(der));
    assert.equal(parsed.entries.length, n);
  }
});

test("serials from another encoder, without nextUpdate, with leading-zero serials", async () => {
  const issuer = await signer();
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.cert.subjectName,
    thisUpdate: new Date(),
    signingKey: issuer.key,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
    entries: [
      { serialNumber: "00ff01", revocationDate: new Date() },
      { serialNumber: "7a", revocationDate: new Date(), reason: x509.X509CrlReason.superseded },
    ],
  });
  assert.equal(crl.nextUpdate, undefined);
  assert.deepEqual(revokedSerials(new Uint8Array(crl.rawData)).sort(), ["7a", "ff01"]);
  assert.deepEqual([...revokedSet([crlToPem(crl)])].sort(), ["7a", "ff01"]);
});

test("a CRL that does not parse is an error, not an empty list", () => {
  assert.throws(() => revokedSerials(new Uint8Array([0x30, 0x05, 0x02, 0x01])), /truncated|not a CRL/);
  assert.throws(() => revokedSet(["-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"]));
});
