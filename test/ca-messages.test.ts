// Issue 14: messages that pointed the wrong way, each held to what it now says.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ca, cleanup, fingerprint, oneLineError, openssl, tempDir } from "./helpers/ca.ts";
import { PKCS10, est, startCa, type TestCa } from "./helpers/est.ts";
import { evaluatePrepare, SILENCE_GRACE_MS, type PrepareFacts } from "../ca/rotation.ts";

const CURVES = [
  ["prime192v1", "P-192 \\(prime192v1\\)"],
  ["secp256k1", "secp256k1"],
] as const;

/** A key on `curve` and a CSR for x.internal signed with it, by openssl. */
function csrOn(dir: string, curve: string): { pem: string; file: string } {
  const key = join(dir, `${curve}.key`);
  const file = join(dir, `${curve}.csr`);
  assert.equal(openssl(["ecparam", "-name", curve, "-genkey", "-noout", "-out", key]).code, 0);
  assert.equal(openssl(["req", "-new", "-key", key, "-subj", "/CN=x.internal", "-out", file]).code, 0);
  return { pem: readFileSync(file, "utf8"), file };
}

describe("a CSR on an unsupported curve says so, not 'signature does not verify'", () => {
  let work: string;
  let t: TestCa;
  before(async () => {
    work = tempDir("mesh-curves-");
    assert.equal((await ca(["init", "--name", "Curve CA", "--dir", join(work, "pki")])).code, 0);
    t = await startCa();
  });
  after(async () => {
    await t.stop();
    cleanup(work);
  });

  for (const [curve, shown] of CURVES) {
    it(`ca sign: ${curve}`, async () => {
      const { file } = csrOn(work, curve);
      const was = fingerprint(join(work, "pki"));
      const r = await ca(["sign", "--csr", file, "--dir", join(work, "pki")]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        oneLineError(r),
        new RegExp(
          `^error: the CSR's key is not supported: unsupported curve ${shown}: this CA signs EC keys on P-256 \\(prime256v1\\) or P-384 \\(secp384r1\\) only; or use rsa-2048, rsa-3072, ed25519$`,
        ),
      );
      assert.equal(fingerprint(join(work, "pki")), was);
    });

    it(`EST simpleenroll: ${curve} is a 400 that names the curve`, async () => {
      const { pem } = csrOn(work, curve);
      const der = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
      const r = await est(t.server.url, {
        method: "POST",
        path: "/.well-known/est/simpleenroll",
        headers: { ...PKCS10, Authorization: `Bearer mt1.${"A".repeat(43)}.${"B".repeat(43)}` },
        body: der.toString("base64"),
        ca: t.bundle(),
      });
      assert.equal(r.status, 400, r.body);
      assert.match(r.body, new RegExp(`unsupported curve ${shown}: this CA signs EC keys on P-256`));
      assert.doesNotMatch(r.body, /does not verify/);
    });
  }
});

describe("ca rotate: 'is its service running?' only after a grace", () => {
  const facts = (sinceMs: number): PrepareFacts => {
    const published = Date.parse("2027-01-01T00:00:00Z");
    return {
      toGeneration: 2,
      publishedAt: new Date(published).toISOString(),
      now: new Date(published + sinceMs).toISOString(),
      certs: [
        {
          name: "a.internal",
          serial: "01",
          generation: 1,
          source: "est-enrol",
          notAfter: "2027-02-01T00:00:00Z",
        } as PrepareFacts["certs"][number],
      ],
      holders: [
        {
          name: "a.internal",
          serial: "01",
          heldEtag: null,
          servedEtag: '"g1"',
          seenAt: new Date(published - 5_000).toISOString(),
          remote: "127.0.0.1",
        } as PrepareFacts["holders"][number],
      ],
      bundles: new Map([['"g1"', [1]]]),
    };
  };
  it("100 ms after publishing: waiting for its next poll", () => {
    const v = evaluatePrepare(facts(100));
    assert.equal(v.passed, false);
    assert.match(v.waitingFor[0]!.why, /: waiting for its next poll$/);
    assert.doesNotMatch(v.waitingFor[0]!.why, /running\?/);
  });
  it("after the grace: is its service running?", () => {
    const v = evaluatePrepare(facts(SILENCE_GRACE_MS));
    assert.match(v.waitingFor[0]!.why, /: is its service running\?$/);
  });
});

describe("npm run ca with no command", () => {
  let work: string;
  before(() => {
    work = tempDir("mesh-usage-");
  });
  after(() => cleanup(work));

  it("suggests init where there is no CA, and not once there is one (after mesh:up)", async () => {
    const empty = await ca([], { cwd: work });
    assert.match(empty.stdout, /npm run ca -- init --name "Acme Corp CA"/);
    assert.equal((await ca(["init", "--name", "Acme Corp CA", "--dir", join(work, "pki")])).code, 0);
    const exists = await ca([], { cwd: work });
    assert.equal(exists.code, 0);
    assert.doesNotMatch(exists.stdout, /npm run ca -- init/);
    assert.match(exists.stdout, /npm run ca -- status\s+the CA in \.\/pki/);
    // Every command it shows runs as shown, here, against that CA.
    for (const m of exists.stdout.matchAll(/npm run ca -- (status|list)\b/g)) {
      const r = await ca([m[1]!], { cwd: work });
      assert.equal(r.code, 0, `${m[0]}: ${r.stderr}`);
    }
  });

  it("a hint names paths relative to where the user stands, as the README shows them", async () => {
    const r = await ca(["list", "--dir", "nosuch"], { cwd: work });
    assert.equal(r.code, 4);
    assert.equal(
      oneLineError(r),
      `error: the CA is not initialised in nosuch (run: npm run ca -- init --dir nosuch --name "Acme Corp CA")`,
    );
    const env = await ca(["list"], { cwd: work, env: { MESH_PKI_DIR: "elsewhere" } });
    assert.equal(
      oneLineError(env),
      `error: the CA is not initialised in elsewhere (run: npm run ca -- init --name "Acme Corp CA")`,
      "MESH_PKI_DIR carries over by itself",
    );
  });
});
