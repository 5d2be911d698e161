// `verify --ca-file` for a foreign CA, as a user runs it: from a folder with
// no CA in it, with the help's own examples as written, and with or without
// that CA's CRLs. Revocation that was not checked is said, never implied.
import assert from "node:assert/strict";
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import { ca, cleanup, fingerprint, oneLineError, tempDir } from "./helpers/ca.ts";

describe("verify --ca-file works on its own for a foreign CA (issue 8, item 4)", () => {
  let foreignDir: string;
  let cwd: string;
  let localDir: string;
  let localBefore: string;

  before(async () => {
    foreignDir = tempDir("mesh-foreign-");
    const foreign = await CertificateAuthority.init({ dir: foreignDir, name: "Foreign Root" });
    await foreign.createIntermediate({ name: "Foreign Issuing CA" });
    const peer = await foreign.issue({ domain: "peer.partner.example" });
    const revoked = await foreign.issue({ domain: "gone.partner.example" });
    await foreign.revoke({ domain: revoked.domain });
    foreign.close();
    // The user's folder: the files the help names, and no CA.
    cwd = tempDir("mesh-user-");
    copyFileSync(peer.certPath, join(cwd, "peer.crt"));
    copyFileSync(revoked.certPath, join(cwd, "gone.crt"));
    copyFileSync(join(foreignDir, "bundle.pem"), join(cwd, "other-root.crt"));
    copyFileSync(join(foreignDir, "crls.pem"), join(cwd, "other-crls.pem"));
    copyFileSync(join(foreignDir, "roots", "1", "crl.pem"), join(cwd, "root-crl.pem"));
    copyFileSync(join(foreignDir, "intermediates", "1", "crl.pem"), join(cwd, "int-crl.pem"));
    writeFileSync(join(cwd, "not-a-crl.pem"), readFileSync(join(cwd, "other-root.crt")));
    // A local CA of the user's own, which a foreign check must neither need nor touch.
    localDir = tempDir("mesh-local-");
    assert.equal((await ca(["init", "--name", "Local CA", "--dir", localDir])).code, 0);
    localBefore = fingerprint(localDir);
  });
  after(() => {
    cleanup(foreignDir);
    cleanup(cwd);
    cleanup(localDir);
  });

  it("every --ca-file example of `verify --help` works as written, in a folder with no CA", async () => {
    const help = await ca(["verify", "--help"]);
    const examples = help.stdout
      .split("\n")
      .filter((l) => l.includes("npm run ca -- verify") && l.includes("--ca-file"));
    assert.ok(examples.length >= 2, help.stdout);
    const userBefore = fingerprint(cwd);
    for (const line of examples) {
      const args = line.replace(/#.*$/, "").split("npm run ca -- ")[1]!.trim().split(/\s+/);
      const r = await ca(args, { cwd });
      assert.equal(r.code, 0, `${line}\n${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /^peer\.crt: OK/);
      assert.match(r.stdout, /chain\s+peer\.partner\.example <- Foreign Issuing CA <- Foreign Root/);
      assert.doesNotMatch(r.stdout + r.stderr, /npm run ca -- crl/);
    }
    assert.equal(fingerprint(cwd), userBefore, "nothing written where the user stands");
    assert.equal(existsSync(join(cwd, "pki")), false);
  });

  it("--name checks the name the peer must hold, as openssl verify -verify_hostname does", async () => {
    const ok = await ca(
      ["verify", "--cert", "peer.crt", "--ca-file", "other-root.crt", "--name", "peer.partner.example"],
      { cwd },
    );
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const wrong = await ca(
      ["verify", "--cert", "peer.crt", "--ca-file", "other-root.crt", "--name", "gone.partner.example"],
      { cwd },
    );
    assert.equal(wrong.code, 1, wrong.stdout + wrong.stderr);
    assert.match(
      wrong.stdout,
      /^peer\.crt: FAILED \(name\)\n  peer\.partner\.example does not hold the name gone\.partner\.example \(its subjectAltName: DNS:peer\.partner\.example/,
    );
  });

  it("without a CRL it says plainly that revocation was NOT checked", async () => {
    const r = await ca(["verify", "--cert", "peer.crt", "--ca-file", "other-root.crt", "--purpose", "client"], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^peer\.crt: OK \(revocation NOT checked\)\n/);
    assert.match(
      r.stdout,
      /\n  revocation  NOT checked: no CRL was given \(add the issuing CA's CRLs with --crl-file\)$/m,
    );
    // A revoked certificate is not called revoked without its CRL: the report says what was not done.
    const gone = await ca(["verify", "--cert", "gone.crt", "--ca-file", "other-root.crt"], { cwd });
    assert.match(gone.stdout, /^gone\.crt: OK \(revocation NOT checked\)/);
  });

  it("with the foreign CA's CRLs (one file holding several, or repeated --crl-file) revocation is checked", async () => {
    for (const crlArgs of [
      ["--crl-file", "other-crls.pem"],
      ["--crl-file", "root-crl.pem", "--crl-file", "int-crl.pem"],
    ]) {
      const ok = await ca(["verify", "--cert", "peer.crt", "--ca-file", "other-root.crt", ...crlArgs], { cwd });
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, /^peer\.crt: OK\n/);
      assert.match(ok.stdout, /revocation  not revoked \(CRLs from --crl-file\)/);
      const gone = await ca(["verify", "--cert", "gone.crt", "--ca-file", "other-root.crt", ...crlArgs], { cwd });
      assert.equal(gone.code, 1);
      assert.match(
        gone.stdout,
        /^gone\.crt: FAILED \(revocation\)\n  gone\.partner\.example \(serial [0-9a-f]+\) was revoked on/,
      );
    }
  });

  it("a CRL missing for one CA of the path fails, pointing to --crl-file and never to `npm run ca -- crl`", async () => {
    const r = await ca(["verify", "--cert", "peer.crt", "--ca-file", "other-root.crt", "--crl-file", "root-crl.pem"], {
      cwd,
    });
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      /FAILED \(crl\)\n  no CRL signed by Foreign Issuing CA was found, so the revocation of peer\.partner\.example cannot be checked \(the CRLs come from --crl-file: add that CA's current CRL\)/,
    );
    assert.doesNotMatch(r.stdout + r.stderr, /npm run ca/);
  });

  it("an initialised --dir of another CA is neither needed nor read nor changed", async () => {
    const r = await ca(["verify", "--cert", "peer.crt", "--ca-file", "other-root.crt", "--dir", localDir], { cwd });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /OK \(revocation NOT checked\)/);
    const env = await ca(["verify", "--cert", join(cwd, "peer.crt"), "--ca-file", join(cwd, "other-root.crt")], {
      env: { MESH_PKI_DIR: localDir },
    });
    assert.equal(env.code, 0, env.stdout + env.stderr);
    assert.equal(fingerprint(localDir), localBefore);
  });

  it("the CA's own root, given as the certificate to verify, fails for every purpose (it printed OK before)", async () => {
    for (const purpose of ["mesh", "server", "client"]) {
      const r = await ca([
        "verify",
        "--cert",
        join(localDir, "roots", "1", "ca.crt"),
        "--purpose",
        purpose,
        "--dir",
        localDir,
      ]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(
        r.stdout,
        /ca\.crt: FAILED \(basic-constraints\)\n  Local CA is a CA certificate, not a service certificate: it is not accepted as a peer for any purpose \(OpenSSL: unsuitable certificate purpose\)/,
      );
    }
    assert.equal(fingerprint(localDir), localBefore);
  });

  it("bad files are one-line errors with exit 2 that name the flag and the file", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--crl-file", "nope.pem"], /^error: cannot read --crl-file nope\.pem \(ENOENT\)$/],
      [
        ["--crl-file", "not-a-crl.pem"],
        /^error: --crl-file not-a-crl\.pem holds no PEM CRL \(-----BEGIN X509 CRL-----\)$/,
      ],
    ];
    for (const [extra, message] of cases) {
      const r = await ca(["verify", "--cert", "peer.crt", "--ca-file", "other-root.crt", ...extra], { cwd });
      assert.equal(r.code, 2, r.stderr);
      assert.match(oneLineError(r), message);
      assert.equal(r.stdout, "");
    }
    const noCa = await ca(["verify", "--cert", "peer.crt", "--ca-file", "other-crls.pem"], { cwd });
    assert.equal(noCa.code, 2);
    assert.match(oneLineError(noCa), /^error: --ca-file other-crls\.pem holds no PEM certificate/);
    const noCert = await ca(["verify", "--cert", "missing.crt", "--ca-file", "other-root.crt"], { cwd });
    assert.equal(noCert.code, 2);
    assert.match(oneLineError(noCert), /^error: cannot read --cert missing\.crt \(ENOENT\)$/);
  });
});
