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
import { crlToPem } from "../ca/x509.ts";
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
  after(() => { ca.close(); cleanup(dir); });

  it("thisUpdate is 5 minutes before the signing time, nextUpdate 30 days after it", () => {
    const crls = parseCrls(readFileSync(ca.paths.crls, "utf8"));
    assert.equal(crls.length, 1);
    assert.equal(crls[0]!.thisUpdate.toISOString(), new Date(NOW.getTime() - BACKDATE_MS).toISOString());
    assert.equal(crls[0]!.nextUpdate!.toISOString(), "2027-03-31T12:00:00.000Z");
  });

  it("openssl on a clock two minutes behind accepts the fresh CRL (crl_check_all), and still sees the revocation", () => {
    const behind = new Date(NOW.getTime() - 2 * 60_000);
    const ok = openssl(["verify", "-crl_check_all", "-CRLfile", ca.paths.crls, "-CAfile", ca.paths.bundle, "-attime", seconds(behind), certPath]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /: OK/);
    const revoked = openssl(["verify", "-crl_check_all", "-CRLfile", ca.paths.crls, "-CAfile", ca.paths.bundle, "-attime", seconds(NOW),
      ca.paths.certsDir + "/revoked.internal.crt"]);
    assert.notEqual(revoked.code, 0);
    assert.match(revoked.out, /certificate revoked/);
  });

  it("our verify agrees at the same slow clock", async () => {
    const r = await ca.verify({ pem: readFileSync(certPath, "utf8"), at: new Date(NOW.getTime() - 2 * 60_000) });
    assert.equal(r.ok, true, r.failed?.message);
  });

  it("a CRL from the future (a CA clock an hour ahead) fails the crl check with a sentence about clocks; openssl agrees", async () => {
    const ahead = crlToPem(await buildCrl({ issuer: await ca.signer("root-1"), number: 50, now: new Date(NOW.getTime() + 3_600_000), entries: new Uint8Array() }));
    const r = await ca.verify({ pem: readFileSync(certPath, "utf8"), crlPem: ahead });
    assert.equal(r.failed?.check, "crl");
    assert.match(r.failed!.message, /the CRL of Backdate CA is not valid until 2027-03-01 12:55 UTC \(is this clock behind the CA's\?\)/);
    const file = join(dir, "ahead.pem");
    writeFileSync(file, ahead);
    const o = openssl(["verify", "-crl_check", "-CRLfile", file, "-CAfile", ca.paths.bundle, "-attime", seconds(NOW), certPath]);
    assert.notEqual(o.code, 0);
    assert.match(o.out, /CRL is not yet valid/);
  });
});
