// A root's generation travels as data (lib/generations.ts): the CA writes it beside bundle.pem
// and sends it on cacerts; the runtime's metrics and the identity agent's facts take it from
// there. A root whose name ends in " G7" is generation 2 if the ledger says so: before, the
// name was parsed back, and this root was reported as generation 7.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it, test } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import {
  formatGenerationsFile,
  formatRootGenerations,
  generationsPath,
  parseGenerationsFile,
  parseRootGenerations,
  readGenerations,
  rootSha256,
} from "../lib/generations.ts";
import { pemBlocks } from "../lib/pem.ts";
import { checkChain } from "../services/mesh/identity-agent/chain.ts";
import { loadMaterial, materialPaths } from "../services/mesh/material.ts";
import { MeshMetrics } from "../services/mesh/metrics.ts";
import { cleanup, tempDir } from "./helpers/ca.ts";
import { ev } from "./helpers/events.ts";

test("the cacerts header: one positive whole number per root, or nothing", () => {
  assert.equal(formatRootGenerations([1, 2, 10]), "1, 2, 10");
  assert.deepEqual(parseRootGenerations("1, 2, 10", 3), [1, 2, 10]);
  assert.deepEqual(parseRootGenerations("3", 1), [3]);
  for (const [value, count] of [
    ["1, 2", 3],
    ["1, 2, 3", 2],
    ["0", 1],
    ["-1", 1],
    ["1.5", 1],
    ["01", 1],
    ["two", 1],
    ["1,,2", 2],
    ["", 1],
    ["1234567", 1],
    [`${"1, ".repeat(1000)}1`, 1001],
    [undefined, 1],
    [["1"], 1],
  ] as const) {
    assert.equal(parseRootGenerations(value, count), undefined, JSON.stringify(value));
  }
});

test("the generations file: what the CA writes reads back; anything else is refused or, read from disk, empty", () => {
  const sha = "ab".repeat(32);
  assert.deepEqual(parseGenerationsFile(formatGenerationsFile([{ sha256: sha, generation: 2 }])), new Map([[sha, 2]]));
  for (const bad of [
    "",
    "{",
    "null",
    "[]",
    '{"roots":{}}',
    `{"roots":[{"sha256":"${sha}","generation":0}]}`,
    `{"roots":[{"sha256":"${sha.toUpperCase()}","generation":1}]}`,
    `{"roots":[{"sha256":"${sha}","generation":"1"}]}`,
    `{"roots":[null]}`,
    `{"roots":${JSON.stringify(Array.from({ length: 65 }, () => ({ sha256: sha, generation: 1 })))}}`,
    " ".repeat(20_000),
  ]) {
    assert.throws(() => parseGenerationsFile(bad), Error, bad.slice(0, 60));
  }
  assert.equal(generationsPath("/x/pki/bundle.pem"), "/x/pki/bundle.generations.json");
  assert.deepEqual(readGenerations("/nonexistent/bundle.pem"), new Map());
});

describe("a second generation named like a seventh", () => {
  let dir: string;
  let ca: CertificateAuthority;
  before(async () => {
    dir = tempDir();
    ca = await CertificateAuthority.init({ dir, name: "Acme Corp CA" });
    await ca.addGeneration({ name: "Acme Corp CA G7" });
    ca.publishBundle();
    ca.useGeneration(2);
    await ca.issue({ domain: "payment.internal" });
  });
  after(() => {
    ca.close();
    cleanup(dir);
  });

  const certInfo = async (m: MeshMetrics) =>
    (await m.registry.metrics()).split("\n").find((l) => l.startsWith("mesh_identity_cert_info{"));

  it("the CA writes each root's generation beside bundle.pem", () => {
    const roots = pemBlocks(readFileSync(ca.paths.bundle, "utf8"), "CERTIFICATE").map((p) => new X509Certificate(p));
    assert.deepEqual(
      roots.map((r) => r.subject),
      ["CN=Acme Corp CA", "CN=Acme Corp CA G7"],
    );
    assert.deepEqual(
      readGenerations(ca.paths.bundle),
      new Map([
        [rootSha256(roots[0]!.raw), 1],
        [rootSha256(roots[1]!.raw), 2],
      ]),
    );
  });

  it("the runtime's metric and the identity agent's facts say generation 2, from the data", async () => {
    const paths = materialPaths(dir, "payment.internal");
    const m = loadMaterial(paths, "payment.internal");
    assert.equal(
      await certInfo(new MeshMetrics("payment", m)),
      'mesh_identity_cert_info{issuer="CN=Acme Corp CA G7",root="CN=Acme Corp CA G7",generation="2"} 1',
    );
    const chain = pemBlocks(readFileSync(paths.cert, "utf8"), "CERTIFICATE").map((p) => new X509Certificate(p));
    const facts = checkChain(chain, m.trust.roots, "payment.internal", undefined, Date.now(), {
      generations: m.trust.generations,
    });
    assert.equal(facts.root, "Acme Corp CA G7");
    assert.equal(facts.generation, 2);
    assert.equal(checkChain(chain, m.trust.roots, "payment.internal").generation, null);
  });

  it("a state folder from before (no generations file) reports the generation unknown, not guessed from the name", async () => {
    rmSync(generationsPath(ca.paths.bundle));
    const m = loadMaterial(materialPaths(dir, "payment.internal"), "payment.internal");
    assert.equal(m.trust.generations.size, 0);
    assert.match((await certInfo(new MeshMetrics("payment", m)))!, /generation="unknown"/);
    // Any publication writes it again.
    ca.publishBundle();
    assert.equal(readGenerations(ca.paths.bundle).size, 2);
  });
});

test("an identity state folder from before the generations file learns them from the CA's 304, and the next renewal names its generation", async () => {
  const { world, startIn } = await import("./identity-fixtures.ts");
  const w = await world();
  try {
    const first = await startIn(w, "payment", { lifetime: "1h" });
    const file = generationsPath(join(w.stateDir("payment"), "bundle.pem"));
    assert.equal(readGenerations(join(w.stateDir("payment"), "bundle.pem")).size, 1, "enrolment wrote it");
    await first.svc.close();
    rmSync(file);
    const again = await startIn(w, "payment", { lifetime: "1h", token: null });
    try {
      const started = await again.logs.wait(ev("identity.agent_started"), 20_000);
      assert.equal(started.generation, null, "unknown, not guessed from the root's name");
      await again.svc.identity.poll(); // the bundle is unchanged: a 304, which carries the header
      assert.deepEqual([...readGenerations(join(w.stateDir("payment"), "bundle.pem")).values()], [1]);
      assert.equal(await again.svc.identity.renew("test"), true);
      const renewed = await again.logs.wait(ev("identity.renewed"), 20_000);
      assert.equal(renewed.generation, 1);
    } finally {
      await again.svc.close();
    }
  } finally {
    await w.cleanup();
  }
});
