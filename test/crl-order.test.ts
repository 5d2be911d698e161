// A service never goes back to an older CRL: the cRLNumber read from the DER agrees with
// openssl's, grows with each revocation, and olderCrls() names the issuer whose CRL in a newly
// fetched set is older than the one in force (two fetches racing, a CA replica behind the others).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { CertificateAuthority } from "../ca/index.ts";
import { crlDates } from "../lib/crl.ts";
import { olderCrls } from "../services/mesh/crl-dates.ts";

const crlDatesOfPem = (pem: string) => crlDates(pemToDer(pem));
import { pemBlocks, pemToDer } from "../lib/pem.ts";
import { cleanup, tempDir } from "./helpers/ca.ts";

test("cRLNumber from the DER is openssl's; olderCrls flags a set that would undo a revocation, and nothing else", async () => {
  const dir = tempDir("mesh-crl-order-");
  const ca = await CertificateAuthority.init({ dir, name: "Acme Corp CA" });
  try {
    await ca.issue({ domain: "a.internal" });
    await ca.issue({ domain: "b.internal" });
    const before = pemBlocks(readFileSync(ca.paths.crls, "utf8"), "X509 CRL");
    await ca.revoke({ domain: "a.internal" });
    const after = pemBlocks(readFileSync(ca.paths.crls, "utf8"), "X509 CRL");
    assert.equal(before.length, 1);
    assert.equal(after.length, 1);
    for (const pem of [...before, ...after]) {
      const out = execFileSync("openssl", ["crl", "-noout", "-crlnumber"], { input: pem, encoding: "utf8" });
      const hex = /crlNumber=(?:0x)?([0-9A-Fa-f]+)/.exec(out)?.[1];
      assert.ok(hex, out);
      assert.equal(crlDatesOfPem(pem).number, BigInt(`0x${hex}`));
    }
    assert.ok(crlDatesOfPem(after[0]!).number! > crlDatesOfPem(before[0]!).number!);

    assert.deepEqual(olderCrls(before, after), ["CN=Acme Corp CA"], "the set from before the revocation is older");
    assert.deepEqual(olderCrls(after, before), [], "a newer set is fine");
    assert.deepEqual(olderCrls(after, after), [], "the same set is fine");
    // A generation added: its CRL is new, the old one's is the same: nothing older.
    await ca.addGeneration({});
    const withG2 = pemBlocks(readFileSync(ca.paths.crls, "utf8"), "X509 CRL");
    assert.equal(withG2.length, 2);
    assert.deepEqual(olderCrls(withG2, after), []);
    // An issuer present in one set only is no evidence either way (a generation retired).
    assert.deepEqual(olderCrls(after, withG2), []);
    // Garbage is left to the material's own checks, not taken as older.
    assert.deepEqual(olderCrls(["-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----"], after), []);
  } finally {
    ca.close();
    cleanup(dir);
  }
});
