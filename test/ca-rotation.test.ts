// The rotation's gates as pure functions of ledger facts (no server), and the rotations
// table: added to an older ledger on open, at most one unfinished rotation at a time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  NameConstraints,
  id_ce_nameConstraints,
} from "@peculiar/asn1-x509";
import Database from "better-sqlite3";
import { CertificateAuthority } from "../ca/authority.ts";
import { Ledger, type BundleHolderRow, type CurrentCertFact, type RotationRow } from "../ca/ledger.ts";
import { intermediateProfile } from "../ca/generations.ts";
import {
  enrolledIdentities,
  etagsOf,
  evaluatePrepare,
  evaluateRetire,
  inconsistency,
  prepareFacts,
  runRotation,
} from "../ca/rotation.ts";
import { x509 } from "../ca/x509.ts";
import { cleanup, tempDir } from "./helpers/ca.ts";

const PUBLISHED = "2026-12-01T10:00:00.000Z";
const OLD = '"old-bundle"';
const BOTH = '"both-bundle"';
const bundles = new Map([
  [OLD, [1]],
  [BOTH, [1, 2]],
]);

const cert = (name: string, generation: number, source: CurrentCertFact["source"] = "est-renew"): CurrentCertFact => ({
  name,
  serial: `${name.length}ab`,
  generation,
  notAfter: "2026-12-01T11:00:00.000Z",
  source,
});
const holder = (name: string, seenAt: string, servedEtag: string, heldEtag: string | null = null): BundleHolderRow => ({
  name,
  serial: "01",
  heldEtag,
  servedEtag,
  seenAt,
  remote: "127.0.0.1",
});

test("gate 1 waits for every enrolled identity and says why for each", () => {
  const certs = [
    cert("a.internal", 1, "est-enrol"),
    cert("b.internal", 1),
    cert("c.internal", 1),
    cert("d.internal", 1),
  ];
  const v = evaluatePrepare({
    toGeneration: 2,
    publishedAt: PUBLISHED,
    certs,
    bundles,
    holders: [
      holder("a.internal", "2026-12-01T10:00:05.000Z", BOTH), // fetched the new bundle: done
      holder("b.internal", "2026-12-01T09:59:00.000Z", OLD), // polled before publication
      holder("c.internal", "2026-12-01T10:00:05.000Z", OLD, OLD), // polled after, but the server still served the old one
      // d.internal never polled with its certificate
    ],
  });
  assert.equal(v.passed, false);
  assert.equal(v.total, 4);
  assert.deepEqual(
    v.waitingFor.map((w) => w.name),
    ["b.internal", "c.internal", "d.internal"],
  );
  assert.match(v.waitingFor[0]!.why, /before generation 2 was published/);
  assert.match(v.waitingFor[1]!.why, /holds a bundle with generation 1 only/);
  assert.match(v.waitingFor[2]!.why, /never fetched cacerts/);
});

test("gate 1 takes the bundle a caller says it holds (If-None-Match, lists and W/ tags) as evidence", () => {
  const certs = [cert("a.internal", 1)];
  const at = (held: string | null, served = OLD) =>
    evaluatePrepare({
      toGeneration: 2,
      publishedAt: PUBLISHED,
      certs,
      bundles,
      holders: [holder("a.internal", "2026-12-01T10:00:01.000Z", served, held)],
    });
  assert.equal(at(`W/${BOTH}`).passed, true);
  assert.equal(at(`"x", ${BOTH}`).passed, true);
  assert.equal(at("*").passed, false, "* names no bundle");
  assert.equal(at('"unknown-etag"').passed, false, "an ETag the server never published proves nothing");
  assert.equal(at(null, BOTH).passed, true, "delivered with 200 counts");
  assert.deepEqual(etagsOf(' W/"a" , "b",*, junk'), ['"a"', '"b"']);
});

test("gate 1 passes when all hold it; the CA's own certificate and file-mode ones are not waited for (a note says so)", () => {
  const certs = [cert("a.internal", 1), cert("ca.internal", 1, "ca-server"), cert("files.internal", 1, "issue")];
  assert.deepEqual(
    enrolledIdentities(certs).map((c) => c.name),
    ["a.internal"],
  );
  const v = evaluatePrepare({
    toGeneration: 2,
    publishedAt: PUBLISHED,
    certs,
    bundles,
    holders: [holder("a.internal", "2026-12-01T10:00:01.000Z", BOTH)],
  });
  assert.equal(v.passed, true);
  assert.equal(v.total, 1);
  assert.equal(v.notes.length, 1);
  assert.match(v.notes[0]!, /files\.internal holds a file-mode certificate/);
  // No identity at all: nothing to wait for.
  assert.equal(
    evaluatePrepare({ toGeneration: 2, publishedAt: PUBLISHED, certs: [], bundles, holders: [] }).passed,
    true,
  );
});

test("gate 3 waits for every valid certificate of the old generation, whatever made it, and says what moves it", () => {
  const certs = [
    cert("a.internal", 2),
    cert("b.internal", 1),
    cert("ca.internal", 1, "ca-server"),
    cert("files.internal", 1, "issue"),
  ];
  const v = evaluateRetire({ fromGeneration: 1, certs });
  assert.equal(v.passed, false);
  assert.deepEqual(
    v.waitingFor.map((w) => w.name),
    ["b.internal", "ca.internal", "files.internal"],
  );
  assert.match(v.waitingFor[0]!.why, /Mesh-Renew-Now: 1/);
  assert.match(v.waitingFor[1]!.why, /ca serve replaces it/);
  assert.match(v.waitingFor[2]!.why, /run: npm run ca -- renew --domain files\.internal/);
  assert.equal(evaluateRetire({ fromGeneration: 1, certs: [cert("a.internal", 2)] }).passed, true);
});

test("gate 3 with --in-use also waits until each renewed identity has presented its new certificate", () => {
  const certs = [
    cert("a.internal", 2),
    cert("b.internal", 2),
    cert("c.internal", 2),
    cert("ca.internal", 2, "ca-server"),
  ];
  const presented = new Map([
    ["a.internal", { serial: "new-a", generation: 2, seen_at: PUBLISHED }], // polled with its new certificate
    ["b.internal", { serial: "old-b", generation: 1, seen_at: PUBLISHED }], // still presents the old one
  ]);
  const v = evaluateRetire({ fromGeneration: 1, certs, presented });
  assert.equal(v.passed, false);
  assert.equal(v.total, 3, "the three enrolled identities; the CA's own certificate is the server's business");
  assert.deepEqual(
    v.waitingFor.map((w) => w.name),
    ["b.internal", "c.internal"],
  );
  assert.match(
    v.waitingFor[0]!.why,
    /has not presented it yet: its last cacerts poll .* presented serial old-b of generation 1/,
  );
  assert.match(v.waitingFor[1]!.why, /has not polled cacerts with it yet/);
  presented.set("b.internal", { serial: "new-b", generation: 2, seen_at: PUBLISHED });
  presented.set("c.internal", { serial: "new-c", generation: 2, seen_at: PUBLISHED });
  assert.equal(evaluateRetire({ fromGeneration: 1, certs, presented }).passed, true);
  // Without --in-use, issued is enough.
  assert.equal(evaluateRetire({ fromGeneration: 1, certs }).passed, true);
});

test("a rotation stops when the CA was changed by hand under it", () => {
  const row = (phase: RotationRow["phase"]) => ({ id: 1, fromGeneration: 1, toGeneration: 2, phase }) as RotationRow;
  const states = (s: Record<number, string>) => (g: number) => s[g];
  assert.equal(
    inconsistency(row("prepare"), { signerGeneration: 1, rootState: states({ 1: "published", 2: "pending" }) }),
    null,
  );
  assert.match(
    inconsistency(row("retire"), { signerGeneration: 1, rootState: states({ 1: "published", 2: "published" }) })!,
    /generation 1 signs again/,
  );
  assert.match(
    inconsistency(row("activate"), { signerGeneration: 1, rootState: states({ 1: "retired", 2: "published" }) })!,
    /generation 1 was retired before/,
  );
  assert.match(
    inconsistency(row("retire"), { signerGeneration: 2, rootState: states({ 1: "published", 2: "retired" }) })!,
    /generation 2 was retired by hand/,
  );
});

test("ledger: an older ledger without the rotations table gains it on open; one unfinished rotation at a time", async () => {
  const root = tempDir();
  try {
    const dir = join(root, "pki");
    const ca = await CertificateAuthority.init({ dir, name: "Acme Corp CA" });
    ca.close();
    // As a ledger made before rotations existed.
    const raw = new Database(join(dir, "ca.db"));
    raw.exec("DROP TABLE rotations");
    raw.close();
    const ledger = Ledger.open(join(dir, "ca.db"));
    try {
      const now = "2026-12-01T10:00:00.000Z";
      const r = ledger.write(() =>
        ledger.insertRotation({ fromGeneration: 1, toGeneration: 2, startedAt: now, owner: "h:1" }),
      );
      assert.equal(r.phase, "prepare");
      assert.throws(
        () =>
          ledger.write(() =>
            ledger.insertRotation({ fromGeneration: 1, toGeneration: 3, startedAt: now, owner: "h:2" }),
          ),
        /UNIQUE constraint failed: index 'rotations_one_unfinished'/,
      );
      ledger.write(() => ledger.updateRotation(r.id, { phase: "done", finishedAt: now }, now));
      assert.equal(ledger.unfinishedRotation(), undefined);
      const next = ledger.write(() =>
        ledger.insertRotation({ fromGeneration: 2, toGeneration: 3, startedAt: now, owner: "h:2" }),
      );
      assert.equal(ledger.unfinishedRotation()?.id, next.id);
    } finally {
      ledger.close();
    }
  } finally {
    cleanup(root);
  }
});

test("prepareFacts reads the ledger's rows: a CLI-issued certificate is not an enrolled identity", async () => {
  const root = tempDir();
  try {
    const ca = await CertificateAuthority.init({ dir: join(root, "pki"), name: "Acme Corp CA" });
    await ca.issue({ domain: "files.internal" });
    const rot = ca.ledger.write(() =>
      ca.ledger.insertRotation({ fromGeneration: 1, toGeneration: 2, startedAt: PUBLISHED, owner: null }),
    );
    const f = prepareFacts(ca.ledger, { ...rot, publishedAt: PUBLISHED }, ca.now());
    assert.deepEqual(
      f.certs.map((c) => [c.name, c.generation, c.source]),
      [["files.internal", 1, "issue"]],
    );
    const v = evaluatePrepare(f);
    assert.equal(v.passed, true);
    assert.match(v.notes[0]!, /files\.internal/);
    ca.close();
  } finally {
    cleanup(root);
  }
});

test("runRotation copies an intermediate's profile only when it can do so exactly: excluded subtrees stop gate 1 with what to do, and an issuing CA made by hand is adopted", async () => {
  const root = tempDir();
  const ca = await CertificateAuthority.init({ dir: join(root, "pki"), name: "Acme Corp CA" });
  try {
    const int1 = await ca.createIntermediate({ name: "Acme Issuing CA", permitDns: ["internal"] });
    assert.deepEqual(intermediateProfile(ca, int1.id), {
      name: "Acme Issuing CA",
      permitDns: ["internal"],
      keyType: "ec-p256",
    });
    // Re-sign int-1 (same key, same subject) with an excluded subtree, which createIntermediate cannot write.
    const old = ca.issuerCert(int1.id);
    const rootSigner = await ca.signer("root-1");
    const nc = new NameConstraints({
      permittedSubtrees: new GeneralSubtrees([new GeneralSubtree({ base: new GeneralName({ dNSName: "internal" }) })]),
      excludedSubtrees: new GeneralSubtrees([
        new GeneralSubtree({ base: new GeneralName({ dNSName: "db.internal" }) }),
      ]),
    });
    const crafted = await x509.X509CertificateGenerator.create({
      serialNumber: "7f01",
      subject: old.subject,
      issuer: rootSigner.cert.subject,
      notBefore: old.notBefore,
      notAfter: old.notAfter,
      publicKey: old.publicKey,
      signingKey: rootSigner.key,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(nc)),
      ],
    });
    writeFileSync(ca.layout.issuer(int1.id).cert, crafted.toString("pem"));
    const events: string[] = [];
    const opts = { timeoutMs: 2000, intervalMs: 50, onEvent: (e: { msg: string }) => events.push(e.msg) };
    await assert.rejects(runRotation(ca, opts), (err: Error) => {
      assert.match(
        err.message,
        /^rotation 1 stays at gate 1 \(prepare\): the name constraints of Acme Issuing CA \(int-1\) hold more than permitted DNS names, which cannot be copied exactly .*; create the issuing CA of generation 2 by hand \(npm run ca -- intermediate --generation 2 --name NAME --permit-dns …\), then run npm run ca -- rotate again: it adopts it$/,
      );
      return true;
    });
    assert.equal(ca.signerId(), "int-1");
    assert.deepEqual(
      ca.generations().map((g) => [g.generation, g.root.state, g.intermediates.map((r) => r.id)]),
      [
        [1, "published", ["int-1"]],
        [2, "pending", []],
      ],
      "nothing signs or is trusted that was not before",
    );
    assert.equal(ca.ledger.unfinishedRotation()?.phase, "prepare");

    const byHand = await ca.createIntermediate({ name: "Acme Issuing CA G2", permitDns: ["internal"], generation: 2 });
    assert.equal(ca.signerId(), "int-1", "made under generation 2, it does not sign yet");
    const done = await runRotation(ca, opts);
    assert.equal(done.phase, "done");
    assert.ok(
      events.some((m) =>
        /adopted the issuing CA Acme Issuing CA G2 \(int-2, under generation 2, added earlier\)/.test(m),
      ),
      events.join("\n"),
    );
    assert.equal(ca.signerId(), byHand.id);
    assert.deepEqual(
      ca.ledger.issuers().map((r) => [r.id, r.state]),
      [
        ["root-1", "retired"],
        ["int-1", "retired"],
        ["root-2", "published"],
        ["int-2", "published"],
      ],
    );
  } finally {
    ca.close();
    cleanup(root);
  }
});

test("runRotation resumed at gate 1 after the new generation was published without an intermediate: it adds one and counts gate 1's evidence from then", async () => {
  const root = tempDir();
  const ca = await CertificateAuthority.init({ dir: join(root, "pki"), name: "Acme Corp CA" });
  try {
    await ca.createIntermediate({ name: "Acme Issuing CA", permitDns: ["internal"] });
    // As a run of older code left it: generation 2 added and published, no intermediate under it.
    await ca.addGeneration({});
    ca.publishBundle();
    const early = new Date(ca.now().getTime() - 60_000).toISOString();
    const row = ca.ledger.write(() =>
      ca.ledger.insertRotation({ fromGeneration: 1, toGeneration: 2, startedAt: early, owner: null }),
    );
    ca.ledger.write(() => ca.ledger.updateRotation(row.id, { publishedAt: early }, early));
    const events: string[] = [];
    const done = await runRotation(ca, { timeoutMs: 2000, intervalMs: 50, onEvent: (e) => events.push(e.msg) });
    assert.ok(
      events.some((m) =>
        /added the issuing CA Acme Issuing CA G2 \(int-2, under generation 2, permitted DNS internal, ec-p256\)/.test(
          m,
        ),
      ),
      events.join("\n"),
    );
    assert.ok(
      Date.parse(done.publishedAt!) > Date.parse(early),
      `published_at moved past the new intermediate's CRL: ${done.publishedAt}`,
    );
    assert.equal(ca.signerId(), "int-2");
    assert.equal(ca.issuerRow("int-2").state, "published", "created under a published root, it is published with it");
  } finally {
    ca.close();
    cleanup(root);
  }
});

test("runRotation after a crash that left the new intermediate's key without its ledger row: the key is kept, the intermediate takes the next id", async () => {
  const root = tempDir();
  const ca = await CertificateAuthority.init({ dir: join(root, "pki"), name: "Acme Corp CA" });
  try {
    await ca.createIntermediate({ name: "Acme Issuing CA", permitDns: ["internal"] });
    const stray = ca.layout.issuer("int-2");
    mkdirSync(stray.dir, { recursive: true });
    writeFileSync(stray.key, "a key written just before a crash\n", { mode: 0o600 });
    const done = await runRotation(ca, { timeoutMs: 2000, intervalMs: 50, onEvent: () => {} });
    assert.equal(done.phase, "done");
    assert.equal(readFileSync(stray.key, "utf8"), "a key written just before a crash\n", "never overwritten");
    assert.equal(ca.signerId(), "int-3");
    assert.deepEqual(
      ca.generation(2).intermediates.map((r) => [r.id, r.name]),
      [["int-3", "Acme Issuing CA G2"]],
    );
  } finally {
    ca.close();
    cleanup(root);
  }
});

test("runRotation awaits beforeActivate after gate 1 passed and before gate 2: both generations published, the old one still signs", async () => {
  const root = tempDir();
  const ca = await CertificateAuthority.init({ dir: join(root, "pki"), name: "Acme Corp CA" });
  try {
    const events: string[] = [];
    let seen: { phase: string; signer: number; published: number[]; events: string[] } | undefined;
    const done = await runRotation(ca, {
      timeoutMs: 2000,
      intervalMs: 50,
      onEvent: (e) => events.push(`${e.gate} ${e.state}`),
      beforeActivate: async () => {
        await new Promise((r) => setTimeout(r, 50)); // the run waits for it, across the event loop
        seen = {
          phase: ca.ledger.unfinishedRotation()!.phase,
          signer: ca.issuerRow(ca.signerId()).generation,
          published: ca
            .generations()
            .filter((g) => g.root.state === "published")
            .map((g) => g.generation),
          events: [...events],
        };
      },
    });
    assert.deepEqual(seen, {
      phase: "activate",
      signer: 1,
      published: [1, 2],
      events: events.slice(0, seen!.events.length),
    });
    assert.equal(seen!.events.at(-1), "prepare passed");
    assert.ok(!seen!.events.includes("activate started"), seen!.events.join(", "));
    assert.equal(done.phase, "done");
    assert.equal(ca.issuerRow(ca.signerId()).generation, 2);
  } finally {
    ca.close();
    cleanup(root);
  }
});
