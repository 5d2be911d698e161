// `ca rotate --plan`: what each gate would change for every caller → callee pair, from the ledger's
// facts, through the real CLI. The careless order's predicted break is held against what the
// services' own chain judgement (pathOf) and `openssl verify` say of the certificates the careless
// step then really issues; the online drill (test/drill-online.test.ts) holds the plan against a
// live mesh's calls.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { CertificateAuthority } from "../ca/authority.ts";
import { CARELESS_ORDER, planRotation, type RotationPlan } from "../ca/rotation-plan.ts";
import { runRotation } from "../ca/rotation.ts";
import { pemBlocks } from "../lib/pem.ts";
import { pathOf } from "../services/mesh/chain.ts";
import { ca, cleanup, openssl, tempDir } from "./helpers/ca.ts";

const POLICY = `[payment]
accepts = ["order"]

[inventory]
accepts = ["order"]

[order]
accepts = ["edge"]

[delivery]
accepts = ["order"]
`;

async function meshCa(dir: string): Promise<string> {
  const pki = join(dir, "pki");
  const c = await CertificateAuthority.init({ dir: pki, name: "Acme Corp CA" });
  for (const n of ["order", "payment", "inventory", "edge"]) await c.issue({ domain: `${n}.internal` });
  c.close();
  writeFileSync(join(dir, "policy.toml"), POLICY);
  return pki;
}

const plan = async (dir: string, ...args: string[]) => {
  const r = await ca(["rotate", "--plan", "--dir", join(dir, "pki"), "--policy", join(dir, "policy.toml"), ...args]);
  return { ...r, plan: args.includes("--json") && r.stdout ? (JSON.parse(r.stdout) as RotationPlan) : undefined };
};

const callsOf = (p: RotationPlan, gate: string) => p.steps.find((s) => s.gate === gate)!.calls;

test("rotate --plan on a fresh CA: the safe order breaks no call, each gate says what it changes", async () => {
  const dir = tempDir("rotate-plan-");
  try {
    await meshCa(dir);
    const text = await plan(dir);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^Rotation plan \(safe order: prepare → activate → retire\): generation 1 → 2$/m);
    assert.match(text.stdout, /3 calls: order → payment, order → inventory, edge → order/);
    assert.match(text.stdout, /not planned \(no valid certificate for delivery\): order → delivery/);
    assert.match(
      text.stdout,
      /gate 1\/3 prepare: add CN=Acme Corp CA G2 \(generation 2\) and publish bundle\.pem with generations 1, 2/,
    );
    assert.match(text.stdout, /payment +trusts 1 → 1, 2 \(reloads bundle\.pem from the folder\)/);
    assert.match(text.stdout, /order → payment +✓ throughout/);
    assert.match(text.stdout, /^Predicted: no call breaks at any gate$/m);

    const { code, plan: p } = await plan(dir, "--json");
    assert.equal(code, 0);
    assert.deepEqual(
      p!.steps.map((s) => s.gate),
      ["prepare", "activate", "retire"],
    );
    assert.equal(p!.firstBreak, null);
    for (const s of p!.steps) for (const c of s.calls) assert.ok(c.after.ok && c.during.every((o) => o.ok));
    // Which chain each side presents and what it trusts, gate by gate.
    const payment = (gate: string) =>
      p!.steps.find((s) => s.gate === gate)!.identities.find((i) => i.name === "payment")!;
    assert.deepEqual(payment("prepare").after.trusts, [1, 2]);
    assert.equal(payment("prepare").after.issuerSubject, "CN=Acme Corp CA");
    assert.equal(payment("activate").after.issuerSubject, "CN=Acme Corp CA G2");
    assert.deepEqual(payment("retire").after.trusts, [2]);
  } finally {
    cleanup(dir);
  }
});

test("rotate --plan --order careless predicts the break, and the careless step then really breaks it", async () => {
  const dir = tempDir("rotate-plan-");
  try {
    const pki = await meshCa(dir);
    const r = await plan(dir, "--order", "careless", "--json");
    assert.equal(r.code, 1, "a predicted break exits 1");
    const p = r.plan!;
    assert.equal(p.careless, true);
    assert.equal(p.firstBreak?.gate, "activate");
    assert.deepEqual(p.firstBreak.calls.sort(), ["edge → order", "order → inventory", "order → payment"]);
    const orderPayment = callsOf(p, "activate").find((c) => c.caller === "order" && c.callee === "payment")!;
    const byCaller = orderPayment.during.find((o) => o.refusedBy === "caller")!;
    assert.deepEqual(byCaller.caller, { event: "upstream.failed", reason: "server_untrusted" });
    assert.deepEqual(byCaller.callee, { event: "tls.handshake_failed", reason: "client_aborted" });
    // In the words order logs (test/drill.test.ts holds the same ending against order's log).
    assert.match(byCaller.why, /issued by CN=Acme Corp CA G2; order trusts only: CN=Acme Corp CA$/);
    const byCallee = orderPayment.during.find((o) => o.refusedBy === "callee")!;
    assert.equal(byCallee.callee?.reason, "unknown_ca");
    // Publishing afterwards heals it once everyone trusts both: the later gates say so.
    assert.ok(callsOf(p, "prepare").every((c) => c.after.ok));
    const text = await plan(dir, "--order", "careless");
    assert.equal(text.code, 1);
    assert.match(
      text.stdout,
      /gate 1\/3 activate: add CN=Acme Corp CA G2 \(generation 2\), which signs every new certificate, while bundle\.pem holds generation 1 only/,
    );
    assert.match(text.stdout, /order → payment +✗ caller refuses: server_untrusted \(callee logs client_aborted\)/);
    assert.match(
      text.stdout,
      /^Predicted: gate 1 \(activate\) breaks order → payment, order → inventory, edge → order$/m,
    );

    // The careless step, for real: the services' chain judgement and OpenSSL agree with the plan.
    const c = await CertificateAuthority.open({ dir: pki });
    try {
      const g2 = await c.addGeneration({});
      c.useGeneration(g2.generation);
      await c.renew({ domain: "payment.internal" });
    } finally {
      c.close();
    }
    const bundle = readFileSync(join(pki, "bundle.pem"), "utf8");
    const roots = pemBlocks(bundle, "CERTIFICATE").map((b) => new X509Certificate(b));
    const anchors = { roots, fingerprints: new Set(roots.map((x) => x.fingerprint256)) };
    const leaf = (n: string) => new X509Certificate(readFileSync(join(pki, "certs", `${n}.internal.crt`)));
    assert.equal(pathOf(leaf("payment"), anchors).anchor, "stranger", "order (bundle: generation 1) refuses payment");
    assert.equal(pathOf(leaf("order"), anchors).anchor, "trusted", "order's own certificate is still trusted");
    const verify = (n: string) =>
      openssl(["verify", "-CAfile", join(pki, "bundle.pem"), join(pki, "certs", `${n}.internal.crt`)]).code;
    assert.notEqual(verify("payment"), 0);
    assert.equal(verify("order"), 0);

    // Planned again now, in the middle of the careless rotation: the plan says where it stands,
    // that payment presents generation 2 to callers trusting generation 1, and that gate 1 heals it.
    const now = await plan(dir, "--json");
    assert.equal(now.code, 1, "the break is under way: order → payment fails until gate 1");
    const q = now.plan!;
    assert.match(q.notes.join("\n"), /generation 2 signs but is not in bundle\.pem: a careless rotation is under way/);
    assert.deepEqual(q.done, ["activate"]);
    assert.equal(q.steps[0]!.gate, "prepare");
    const op = callsOf(q, "prepare").find((x) => x.caller === "order" && x.callee === "payment")!;
    assert.ok(
      op.during.some((o) => o.caller?.reason === "server_untrusted"),
      "until order fetches the new bundle",
    );
    assert.ok(op.after.ok, "healed once everyone trusts generation 2");
  } finally {
    cleanup(dir);
  }
});

test("rotate --plan mid-rotation (after gate 1, trust-both): the remaining gates, every side trusting both", async () => {
  const dir = tempDir("rotate-plan-");
  try {
    const pki = await meshCa(dir);
    const c = await CertificateAuthority.open({ dir: pki });
    const stop = new AbortController();
    try {
      await assert.rejects(
        runRotation(c, {
          timeoutMs: 10_000,
          intervalMs: 50,
          onEvent: () => {},
          signal: stop.signal,
          beforeActivate: async () => stop.abort(),
        }),
        /interrupted before gate 2/,
      );
    } finally {
      c.close();
    }
    const r = await plan(dir, "--json");
    assert.equal(r.code, 0, r.stderr);
    const p = r.plan!;
    assert.deepEqual(p.rotation, { id: 1, phase: "activate" });
    assert.deepEqual(p.done, ["prepare"]);
    assert.deepEqual(
      p.steps.map((s) => s.gate),
      ["activate", "retire"],
    );
    for (const i of p.identities) assert.deepEqual(i.trusts, [1, 2], i.name);
    assert.equal(p.firstBreak, null);
    // The careless order has nothing left to break: the new root is trusted everywhere already.
    const careless = await plan(dir, "--order", "careless", "--json");
    assert.equal(careless.code, 0);
    assert.equal(careless.plan!.careless, false);
    assert.equal(careless.plan!.firstBreak, null);
    const text = await plan(dir);
    assert.match(text.stdout, /rotation 1 is at gate activate \(prepare done\)/);
    assert.match(text.stdout, /^gate 2\/3 activate: CN=Acme Corp CA G2 \(generation 2\) signs every new certificate$/m);

    // Gate 2 passed; gate 3 waits for the renewals (file mode: by hand): every identity still
    // presents generation 1. The plan renews them all before anyone drops generation 1, so no
    // call breaks in between (a plan mixing the two halves predicted one the drill never saw).
    const again = await CertificateAuthority.open({ dir: pki });
    try {
      await assert.rejects(
        runRotation(again, { timeoutMs: 200, intervalMs: 50, onEvent: () => {} }),
        /gate 3 \(retire\) timed out/,
      );
    } finally {
      again.close();
    }
    const retire = await plan(dir, "--json");
    assert.equal(retire.code, 0, retire.stdout);
    assert.deepEqual(retire.plan!.rotation, { id: 1, phase: "retire" });
    const step = retire.plan!.steps[0]!;
    assert.equal(step.gate, "retire");
    const payment = step.identities.find((i) => i.name === "payment")!;
    assert.equal(payment.before.generation, 1);
    assert.deepEqual(payment.mid?.trusts, [1, 2]);
    assert.equal(payment.mid?.generation, 2);
    assert.deepEqual(payment.after.trusts, [2]);
    assert.match(payment.change, /must be renewed by hand first \(npm run ca -- renew --domain payment\.internal/);
    assert.equal(retire.plan!.firstBreak, null);
  } finally {
    cleanup(dir);
  }
});

test("rotate --plan: bad input is one line on stderr and a non-zero exit, and changes nothing", async () => {
  const dir = tempDir("rotate-plan-");
  try {
    const oneLine = (r: { stderr: string; stdout: string }, re: RegExp) => {
      assert.equal(r.stdout, "");
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    };
    const noCa = await ca(["rotate", "--plan", "--dir", join(dir, "nothing")]);
    assert.equal(noCa.code, 4);
    oneLine(noCa, /^error: the CA is not initialised in /);

    const c = await CertificateAuthority.init({ dir: join(dir, "pki"), name: "Acme Corp CA" });
    c.close();
    const empty = await ca(["rotate", "--plan", "--dir", join(dir, "pki")]);
    assert.equal(empty.code, 3);
    oneLine(empty, /^error: nothing to plan: no identity holds a valid certificate from this CA/);

    await meshCa(join(dir, "m"));
    const pki = join(dir, "m", "pki");
    const order = await ca(["rotate", "--plan", "--dir", pki, "--order", "retire,activate"]);
    assert.equal(order.code, 2);
    oneLine(order, /^error: --order "retire,activate": give safe, careless, or the three gates/);
    // Without --plan, --order would be ignored while a real rotation starts: refused before anything.
    const noPlan = await ca(["rotate", "--dir", pki, "--order", "careless"]);
    assert.equal(noPlan.code, 2);
    oneLine(noPlan, /^error: --order and --policy go with --plan/);
    writeFileSync(join(dir, "bad.toml"), "[payment\naccepts = 1");
    const bad = await ca(["rotate", "--plan", "--dir", pki, "--policy", join(dir, "bad.toml")]);
    assert.equal(bad.code, 2);
    oneLine(bad, /bad\.toml is not valid TOML/);
    writeFileSync(join(dir, "shape.toml"), "[payment]\naccepts = 1\n");
    const shape = await ca(["rotate", "--plan", "--dir", pki, "--policy", join(dir, "shape.toml")]);
    assert.equal(shape.code, 2);
    oneLine(shape, /payment\.accepts must be a list of caller names/);
    const missing = await ca(["rotate", "--plan", "--dir", pki, "--policy", join(dir, "none.toml")]);
    assert.equal(missing.code, 2);
    oneLine(missing, /cannot read the policy .*none\.toml: ENOENT/);
    // The plan wrote nothing: no rotation, no generation 2.
    const after = await CertificateAuthority.open({ dir: pki });
    try {
      assert.equal(after.ledger.unfinishedRotation(), undefined);
      assert.deepEqual(
        after.generations().map((g) => g.generation),
        [1],
      );
    } finally {
      after.close();
    }
  } finally {
    cleanup(dir);
  }
});

test("planRotation, online careless: renewals refused by the agents, then each expiry refused from either side", () => {
  const id = (name: string) => ({
    name,
    dns: `${name}.internal`,
    serial: `${name}-serial`,
    issuer: "root-1",
    notAfter: "2026-12-06T12:00:00.000Z",
    online: true,
    trusts: [1],
    trustSeen: "its cacerts poll at 2026-12-06T11:59:00.000Z",
  });
  const p = planRotation(
    {
      now: "2026-12-06T11:59:30.000Z",
      from: 1,
      to: 2,
      cas: [
        { id: "root-1", generation: 1, subject: "CN=Acme Corp CA", parent: null },
        { id: "root-2", generation: 2, subject: "CN=Acme Corp CA G2", parent: null, planned: true },
      ],
      signer: "root-1",
      newSigner: "root-2",
      published: [1],
      identities: [id("order"), id("payment")],
      pairs: [{ caller: "order", callee: "payment" }],
      done: [],
      notes: [],
    },
    CARELESS_ORDER,
  );
  const step = p.steps[0]!;
  assert.equal(step.gate, "activate");
  for (const i of step.identities) {
    assert.equal(i.after.stranded?.why, "it does not chain to a root in the trust bundle", i.name);
    assert.equal(i.after.generation, 1, "it keeps serving its old certificate");
  }
  const call = step.calls[0]!;
  assert.ok(
    call.during.some((o) => o.ok),
    "until a certificate expires, calls go through",
  );
  const reasons = call.during.filter((o) => !o.ok).map((o) => `${o.caller!.reason}/${o.callee!.reason}`);
  assert.deepEqual(reasons.sort(), ["rejected_in_handshake/expired", "server_cert_expired/client_aborted"]);
  assert.equal(call.after.caller?.reason, "server_cert_expired");
  assert.deepEqual(p.firstBreak, { gate: "activate", calls: ["order → payment"] });
});
