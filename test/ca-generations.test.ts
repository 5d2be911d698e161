// Root generations, the CA's half of rotation: add, publish, switch, re-issue,
// retire — and the refusals that prevent the careless-rotation outage.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import { parseCertificates, parseCrls } from "../ca/verify.ts";
import { ca as cli, cleanup, fingerprint, oneLineError, openssl, tempDir } from "./helpers/ca.ts";

const cns = (pem: string) => parseCertificates(pem).map((c) => c.subjectName.getField("CN")[0]);

describe("root generations", () => {
  let dir: string;
  let ca: CertificateAuthority;
  before(async () => {
    dir = tempDir();
    ca = await CertificateAuthority.init({ dir, name: "Acme Corp CA" });
    await ca.issue({ domain: "order.internal" });
    await ca.issue({ domain: "payment.internal" });
  });
  after(() => {
    ca.close();
    cleanup(dir);
  });

  it("a new generation has a distinct subject and is neither trusted nor signing until told", async () => {
    const g2 = await ca.addGeneration({});
    assert.equal(g2.name, "Acme Corp CA G2");
    assert.equal(g2.state, "pending");
    assert.deepEqual(cns(readFileSync(ca.paths.bundle, "utf8")), ["Acme Corp CA"]);
    assert.equal(ca.signerId(), "root-1");
    // Its CRL is already published: Node needs one for every CA in a chain.
    assert.deepEqual(
      parseCrls(readFileSync(ca.paths.crls, "utf8")).map((c) => c.issuerName.getField("CN")[0]),
      ["Acme Corp CA", "Acme Corp CA G2"],
    );
    await assert.rejects(
      ca.addGeneration({ name: "Acme Corp CA" }),
      /already exists here: every CA needs a distinct subject/,
    );
  });

  it("the careless rotation: a certificate from the unpublished generation comes with a warning, and peers reject it", async () => {
    ca.useGeneration(2);
    const payment = await ca.renew({ domain: "payment.internal" });
    assert.equal(payment.generation, 2);
    assert.match(payment.warnings.join("\n"), /generation 2 is not in the published trust bundle yet/);
    const r = openssl(["verify", "-CAfile", ca.paths.bundle, payment.certPath]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /unable to get local issuer certificate/);
  });

  it("retiring a generation is refused while valid certificates chain to it, or while it signs", async () => {
    const snap = fingerprint(dir);
    assert.throws(
      () => ca.retireGeneration(1),
      /cannot retire generation 1: 1 valid certificate\(s\) still chain to it \(order\.internal\); renew them from the new generation first, or pass --force/,
    );
    ca.useGeneration(1);
    assert.throws(() => ca.retireGeneration(1), /it signs new certificates/);
    ca.useGeneration(2);
    assert.throws(() => ca.retireGeneration(2), /it signs new certificates/);
    // Only the signer switches changed the ledger; files are untouched.
    assert.deepEqual(
      fingerprint(dir)
        .split("\n")
        .filter((l) => !l.startsWith("{")),
      snap.split("\n").filter((l) => !l.startsWith("{")),
    );
  });

  it("the safe order: publish both, re-issue all, retire the old one", async () => {
    const roots = ca.publishBundle();
    assert.deepEqual(
      roots.map((r) => r.name),
      ["Acme Corp CA", "Acme Corp CA G2"],
    );
    assert.deepEqual(cns(readFileSync(ca.paths.bundle, "utf8")), ["Acme Corp CA", "Acme Corp CA G2"]);
    // With both trusted, old and new certificates verify side by side.
    for (const name of ["order.internal", "payment.internal"]) {
      assert.equal(
        openssl(["verify", "-x509_strict", "-CAfile", ca.paths.bundle, ca.paths.leaf(name).cert]).code,
        0,
        name,
      );
    }
    const order = await ca.renew({ domain: "order.internal" });
    assert.equal(order.generation, 2);
    assert.deepEqual(order.warnings, []);
    const { retired, stillValid } = ca.retireGeneration(1);
    assert.equal(retired.state, "retired");
    assert.equal(stillValid, 0);
    assert.deepEqual(cns(readFileSync(ca.paths.bundle, "utf8")), ["Acme Corp CA G2"]);
    assert.deepEqual(
      parseCrls(readFileSync(ca.paths.crls, "utf8")).map((c) => c.issuerName.getField("CN")[0]),
      ["Acme Corp CA G2"],
    );
    assert.throws(() => ca.useGeneration(1), /generation 1 is retired/);
  });

  it("through the CLI: generation add/use/retire, bundle and status", async () => {
    const d = tempDir();
    try {
      assert.equal((await cli(["init", "--name", "Cli CA", "--dir", d])).code, 0);
      assert.equal((await cli(["intermediate", "--name", "Cli Issuing CA", "--dir", d])).code, 0);
      assert.equal((await cli(["issue", "--domain", "a.internal", "--dir", d])).code, 0);
      const add = await cli(["generation", "add", "--dir", d]);
      assert.equal(add.code, 0, add.stderr);
      assert.match(add.stdout, /Added Cli CA G2 \(root, generation 2/);
      const use = await cli(["generation", "use", "2", "--dir", d]);
      assert.match(use.stderr, /warning: generation 2 is not in the trust bundle yet/);
      const bundle = await cli(["bundle", "--dir", d]);
      assert.match(bundle.stdout, /with 2 root\(s\)/);
      const refused = await cli(["generation", "retire", "1", "--dir", d]);
      assert.equal(refused.code, 3);
      assert.match(oneLineError(refused), /1 valid certificate\(s\) still chain to it \(a\.internal\)/);
      const forced = await cli(["generation", "retire", "1", "--force", "--dir", d]);
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stderr, /warning: 1 valid certificate\(s\) still chain to it and will now be rejected/);
      const status = await cli(["status", "--dir", d]);
      assert.equal(status.code, 0);
      assert.match(status.stdout, /generation 1: Cli CA — retired/);
      assert.match(status.stdout, /generation 2: Cli CA G2 — trusted \(in bundle\.pem\)/);
      assert.match(status.stdout, /root-2 +root +expires \S+ +CRL #1 until \S+ +<- signs new certificates/);
      const json = JSON.parse((await cli(["status", "--json", "--dir", d])).stdout);
      assert.equal(json.signer, "root-2");
      assert.deepEqual(json.counts, { VALID: 1, EXPIRED: 0, REVOKED: 0, SUPERSEDED: 0 });
    } finally {
      cleanup(d);
    }
  });

  it("intermediate --generation N: created under that generation's root without taking over signing; an unknown or retired generation is a one-line error, exit 2, nothing changed", async () => {
    const d = tempDir();
    try {
      assert.equal((await cli(["init", "--name", "Gen CA", "--dir", d])).code, 0);
      assert.equal((await cli(["intermediate", "--name", "Gen Issuing CA", "--dir", d])).code, 0);
      assert.equal((await cli(["generation", "add", "--dir", d])).code, 0);
      const made = await cli([
        "intermediate",
        "--name",
        "Gen Issuing CA G2",
        "--permit-dns",
        "internal",
        "--generation",
        "2",
        "--dir",
        d,
      ]);
      assert.equal(made.code, 0, made.stderr);
      assert.match(made.stdout, /Created the issuing CA Gen Issuing CA G2 \(intermediate under generation 2; int-2;/);
      // The suggestion carries the --dir given, so it works when pasted.
      assert.ok(
        made.stdout.includes(
          `generation 2 does not sign yet: npm run ca -- generation use 2 --dir ${d} makes this issuing CA the signer`,
        ),
        made.stdout,
      );
      const int2 = join(d, "intermediates", "2", "ca.crt");
      assert.match(openssl(["x509", "-in", int2, "-noout", "-issuer"]).out, /CN\s*=\s*Gen CA G2/);
      assert.equal(openssl(["verify", "-CAfile", join(d, "roots", "2", "ca.crt"), int2]).code, 0);
      let status = JSON.parse((await cli(["status", "--json", "--dir", d])).stdout);
      assert.equal(status.signer, "int-1", "the signing generation's intermediate still signs");
      assert.deepEqual(
        status.generations.map((g: { intermediates: { id: string; state: string }[] }) =>
          g.intermediates.map((r) => [r.id, r.state]),
        ),
        [[["int-1", "published"]], [["int-2", "pending"]]],
      );
      // generation use picks it.
      assert.match((await cli(["generation", "use", "2", "--dir", d])).stdout, /signed by Gen Issuing CA G2/);
      assert.equal((await cli(["generation", "use", "1", "--dir", d])).code, 0);
      // Without --generation: under the signing generation's root, and it signs (unchanged).
      assert.equal((await cli(["intermediate", "--name", "Gen Issuing CA 1b", "--dir", d])).code, 0);
      status = JSON.parse((await cli(["status", "--json", "--dir", d])).stdout);
      assert.equal(status.signer, "int-3");
      assert.equal(status.generations[0].intermediates.at(-1).id, "int-3");

      assert.equal((await cli(["bundle", "--dir", d])).code, 0);
      assert.equal((await cli(["generation", "use", "2", "--dir", d])).code, 0);
      assert.equal((await cli(["generation", "retire", "1", "--dir", d])).code, 0);
      const before = fingerprint(d);
      for (const [gen, why] of [
        [
          "9",
          /^error: no root generation 9 in .*: --generation must name one that exists \(see: npm run ca -- status --dir \S+\)$/,
        ],
        [
          "1",
          /^error: generation 1 is retired: an issuing CA under it would never be trusted; pick one that is not retired \(see: npm run ca -- status --dir \S+\)$/,
        ],
        ["x", /^error: generation "x" is not a generation number/],
      ] as const) {
        const r = await cli(["intermediate", "--name", `Never ${gen}`, "--generation", gen, "--dir", d]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(oneLineError(r), why);
      }
      assert.equal(fingerprint(d), before, "a refused intermediate changed nothing");
    } finally {
      cleanup(d);
    }
  });

  it("warns when a CRL nears its nextUpdate, and crl re-signs every one", async () => {
    const d = tempDir();
    try {
      assert.equal((await cli(["init", "--name", "Stale CA", "--dir", d])).code, 0);
      const soon = { MESH_CA_NOW: new Date(Date.now() + 25 * 86_400_000).toISOString() };
      const list = await cli(["list", "--dir", d], { env: soon });
      assert.match(
        list.stderr,
        /warning: the CRL of Stale CA lapses in [\d.]+ days \(run: npm run ca -- crl --dir \S+\)/,
      );
      const crl = await cli(["crl", "--dir", d], { env: soon });
      assert.equal(crl.code, 0, crl.stderr);
      assert.match(crl.stdout, /Re-signed the CRL of Stale CA: next update/);
      assert.doesNotMatch((await cli(["list", "--dir", d], { env: soon })).stderr, /warning/);
    } finally {
      cleanup(d);
    }
  });
});
