// `ca rotate` end to end: a real CA server on 127.0.0.1:0, the real CLI as a process, and
// real EST clients doing what a service does (enrol with a token, poll cacerts over mTLS
// with If-None-Match, renew with a new key when told Mesh-Renew-Now: 1). The test decides
import { sqliteLedger } from "../ca/ledger.ts";
// when each client acts, so it can show who each gate waits for.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createToken } from "../ca/tokens.ts";
import { x509 } from "../ca/x509.ts";
import { ROOT, cleanup, fingerprint, ledgerRows, openssl, tempDir, ca as cli, type Run } from "./helpers/ca.ts";
import { PKCS10, certsOf, est, makeCsr, pemOf, startCa, type TestCa } from "./helpers/est.ts";

// The compiled CLI, as `npm run ca` runs it (bin/ca.mjs): it starts in a third of tsx's time.
const CLI = join(ROOT, "bin", "ca.mjs");
/** The server reads the ledger every 100 ms (500 in production): the gates' moves show sooner. */
const POLL = { pollMs: 100 };

/** A mesh service's identity agent, by hand: its key, its certificate, the bundle it holds. */
class Service {
  private constructor(
    readonly name: string,
    private readonly t: TestCa,
    public cert: string,
    public key: string,
    public trust: string,
    public etag: string | null,
  ) {}

  static async enrol(t: TestCa, name: string): Promise<Service> {
    const { token } = createToken(t.ca, { domain: name, ttlMs: 600_000 });
    const csr = await makeCsr(name);
    const trust = t.bundle();
    const r = await est(t.server.url, {
      method: "POST",
      path: "/.well-known/est/simpleenroll",
      headers: { ...PKCS10, Authorization: `Bearer ${token}` },
      body: csr.body,
      ca: trust,
    });
    assert.equal(r.status, 200, r.body);
    return new Service(name, t, pemOf(certsOf(r.body)), csr.keyPem, trust, null);
  }

  /** GET cacerts over mTLS with If-None-Match; keeps a new bundle; says whether the CA hinted renew-now. */
  async poll(): Promise<{ status: number; renewNow: boolean }> {
    const r = await est(this.t.server.url, {
      path: "/.well-known/est/cacerts",
      headers: this.etag ? { "If-None-Match": this.etag } : {},
      ca: this.trust,
      cert: this.cert,
      key: this.key,
    });
    assert.ok(r.status === 200 || r.status === 304, `${this.name}: cacerts ${r.status} ${r.body}`);
    if (r.status === 200) {
      this.trust = pemOf(certsOf(r.body));
      this.etag = String(r.headers.etag);
    }
    return { status: r.status, renewNow: r.headers["mesh-renew-now"] === "1" };
  }

  /** Polls until the bundle it holds has `roots` roots (the server notices the CLI within a second). */
  async pollUntil(roots: number): Promise<void> {
    for (let i = 0; i < 100; i++) {
      await this.poll();
      if (this.roots() === roots) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${this.name} never got a bundle with ${roots} roots`);
  }

  roots(): number {
    return (this.trust.match(/BEGIN CERTIFICATE/g) ?? []).length;
  }

  /** simplereenroll over mTLS with the current certificate and a new key. */
  async renew(): Promise<void> {
    const csr = await makeCsr(this.name);
    const r = await est(this.t.server.url, {
      method: "POST",
      path: "/.well-known/est/simplereenroll",
      headers: PKCS10,
      body: csr.body,
      ca: this.trust,
      cert: this.cert,
      key: this.key,
    });
    assert.equal(r.status, 200, `${this.name}: renewal ${r.status} ${r.body}`);
    this.cert = pemOf(certsOf(r.body));
    this.key = csr.keyPem;
  }

  /** One round of what a service does: poll, and renew at once when told to. */
  async step(): Promise<boolean> {
    const { renewNow } = await this.poll();
    if (renewNow) await this.renew();
    return renewNow;
  }

  /** Polls as a service does until the CA hints renew-now (it notices the new signer within a second), then renews. */
  async renewWhenTold(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if (await this.step()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${this.name} was never told to renew`);
  }

  issuerCn(): string {
    return new x509.X509Certificate(x509.PemConverter.decode(this.cert)[0]!).issuer;
  }
}

interface GateEvent {
  event: string;
  gate: string;
  state: string;
  waitingFor: string[];
  why: Record<string, string>;
  msg: string;
  rotation: number;
}

const children = new Set<ReturnType<typeof spawn>>();
/** A failed test must not leave a rotate process waiting out its timeout. */
function killChildren(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  children.clear();
}

/** The rotate CLI as a process, its JSON lines parsed as they come. */
function rotate(dir: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, "rotate", "--dir", dir, "--json", "--interval", "100ms", ...args], {
    cwd: ROOT,
    env: { ...process.env, MESH_PKI_DIR: "", MESH_CA_PASSPHRASE: "", MESH_CA_NOW: "", MESH_CA_CRASH_AT: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const events: GateEvent[] = [];
  let waiters: Array<{ pred: (e: GateEvent) => boolean; resolve: (e: GateEvent) => void }> = [];
  let buf = "";
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => {
    stdout += d;
    buf += d;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!line.trim()) continue;
      const e = JSON.parse(line) as GateEvent;
      events.push(e);
      waiters = waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
    }
  });
  child.stderr.on("data", (d) => (stderr += d));
  const done = new Promise<Run>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  const wait = (pred: (e: GateEvent) => boolean, ms = 20_000) => {
    const found = events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise<GateEvent>((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `no such rotate.gate event within ${ms} ms; have:\n${events.map((e) => JSON.stringify(e)).join("\n")}\nstderr: ${stderr}`,
            ),
          ),
        ms,
      );
      waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(t);
          resolve(e);
        },
      });
    });
  };
  return { child, events, wait, done };
}

const same = (a: string[], b: string[]) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
const signer = (t: TestCa) => t.ca.ledger.getMeta("signer");
const rotationRow = (t: TestCa) =>
  sqliteLedger(t.ca.ledger).db.prepare("SELECT * FROM rotations ORDER BY id DESC LIMIT 1").get() as
    | { id: number; phase: string; from_generation: number; to_generation: number }
    | undefined;

test("rotate: gate 1 waits for every identity to hold the new root, gate 2 moves the signer, the hint makes clients renew, gate 3 waits for the old generation to drain, then retires it", {
  timeout: 120_000,
}, async () => {
  const t = await startCa(POLL);
  try {
    const [a, b, c] = await Promise.all(["a.internal", "b.internal", "c.internal"].map((n) => Service.enrol(t, n)));
    for (const s of [a!, b!, c!]) assert.equal((await s.poll()).renewNow, false);

    const run = rotate(t.dir, ["--timeout", "60s"]);
    // Gate 1: all three polled before the new root was published, so all three are waited for.
    const first = await run.wait((e) => e.gate === "prepare" && e.state === "waiting" && e.waitingFor.length === 3);
    assert.ok(same(first.waitingFor, ["a.internal", "b.internal", "c.internal"]), JSON.stringify(first));
    assert.match(first.why["c.internal"]!, /before generation 2 was published/);
    assert.equal(rotationRow(t)?.phase, "prepare");

    await a!.pollUntil(2);
    await b!.pollUntil(2);
    const onlyC = await run.wait(
      (e) => e.gate === "prepare" && e.state === "waiting" && same(e.waitingFor, ["c.internal"]),
    );
    assert.match(onlyC.msg, /1 of 3 enrolled identities/);
    // The gate holds: generation 1 still signs, and a second run is refused while this one lives.
    assert.equal(signer(t), "root-1");
    const second = await cli(["rotate", "--dir", t.dir, "--timeout", "5s"]);
    assert.equal(second.code, 3, second.stderr);
    assert.match(second.stderr, /rotation \d+ \(generation 1 → 2\) is in progress at gate prepare, run by .*:\d+/);

    await c!.pollUntil(2);
    await run.wait((e) => e.gate === "prepare" && e.state === "passed");
    await run.wait((e) => e.gate === "activate" && e.state === "passed");
    assert.equal(signer(t), "root-2", "gate 2 made generation 2 the signer");

    // Gate 3 waits for the three identities still on generation 1 (ca.internal follows on its own).
    await run.wait(
      (e) =>
        e.gate === "retire" && e.state === "waiting" && same(e.waitingFor, ["a.internal", "b.internal", "c.internal"]),
    );
    await a!.renewWhenTold();
    await b!.renewWhenTold();
    assert.match(a!.issuerCn(), /CN=Acme Corp CA G2/);
    const lastC = await run.wait(
      (e) => e.gate === "retire" && e.state === "waiting" && same(e.waitingFor, ["c.internal"]),
    );
    assert.match(lastC.why["c.internal"]!, /Mesh-Renew-Now: 1/);
    assert.equal(await a!.step(), false, "no hint once on the signing generation");
    assert.equal(t.ca.generation(1).root.state, "published", "gate 3 holds while c.internal chains to generation 1");

    await c!.renewWhenTold();
    const end = await run.done;
    assert.equal(end.code, 0, end.stderr);
    const retired = run.events.find((e) => e.gate === "retire" && e.state === "passed");
    assert.match(retired!.msg, /retired generation 1/);
    assert.equal(rotationRow(t)?.phase, "done");
    assert.equal(t.ca.generation(1).root.state, "retired");
    // bundle.pem holds generation 2 only, and every identity verifies against it with openssl.
    const bundle = join(t.dir, "bundle.pem");
    assert.equal((readFileSync(bundle, "utf8").match(/BEGIN CERTIFICATE/g) ?? []).length, 1);
    for (const s of [a!, b!, c!]) {
      const f = join(t.dir, `${s.name}.pem`);
      writeFileSync(f, s.cert);
      const v = openssl(["verify", "-CAfile", bundle, f]);
      assert.equal(v.code, 0, v.out);
    }
    // The clients pick up the bundle without generation 1 at their next poll.
    await a!.pollUntil(1);
    // Every gate was logged as rotate.gate with gate, state and waitingFor (the dashboard marks them).
    for (const e of run.events)
      assert.ok(e.event === "rotate.gate" && e.gate && e.state && Array.isArray(e.waitingFor), JSON.stringify(e));
    for (const line of end.stdout.trim().split("\n"))
      assert.equal(line.match(/"msg":/g)?.length, 1, `one msg per line: ${line}`);
  } finally {
    killChildren();
    await t.stop();
  }
});

test("rotate: killed after gate 1, a re-run resumes at gate 2 without adding another generation", {
  timeout: 120_000,
}, async () => {
  const t = await startCa(POLL);
  try {
    const a = await Service.enrol(t, "a.internal");
    const run = rotate(t.dir, ["--timeout", "60s"], { MESH_CA_CRASH_AT: "rotate:activate" });
    await run.wait((e) => e.gate === "prepare" && e.state === "waiting");
    await a.pollUntil(2);
    const killed = await run.done;
    assert.equal(killed.signal, "SIGKILL", killed.stderr);
    assert.equal(rotationRow(t)?.phase, "activate", "gate 1 passed and was recorded");
    assert.equal(signer(t), "root-1", "killed before the signer moved");

    const again = rotate(t.dir, ["--timeout", "60s"]);
    const resumed = await again.wait((e) => e.state === "started");
    assert.equal(resumed.gate, "activate");
    assert.match(resumed.msg, /resuming rotation 1 .* at gate 2 \(activate\)/);
    await again.wait((e) => e.gate === "activate" && e.state === "passed");
    assert.equal(signer(t), "root-2");
    await a.renewWhenTold();
    const end = await again.done;
    assert.equal(end.code, 0, end.stderr);
    assert.ok(!again.events.some((e) => e.gate === "prepare"), "gate 1 is not run again");
    assert.deepEqual(
      t.ca.generations().map((g) => [g.generation, g.root.state]),
      [
        [1, "retired"],
        [2, "published"],
      ],
    );
  } finally {
    killChildren();
    await t.stop();
  }
});

test("rotate: a gate that times out names who never arrived, exits non-zero, and a re-run changes nothing until they do", {
  timeout: 120_000,
}, async () => {
  const t = await startCa(POLL);
  try {
    const a = await Service.enrol(t, "a.internal");
    await Service.enrol(t, "b.internal"); // b never polls cacerts with its certificate
    const run = rotate(t.dir, ["--timeout", "4s"]);
    await run.wait((e) => e.gate === "prepare" && e.state === "waiting");
    await a.pollUntil(2);
    const r = await run.done;
    assert.equal(r.code, 3, r.stderr);
    const error = r.stderr.trimEnd().split("\n").at(-1)!;
    assert.match(
      error,
      /^error: gate 1 \(prepare\) timed out after 4\.0s: still waiting for b\.internal; rotation 1 stays at prepare/,
    );
    assert.match(error, /npm run ca -- rotate --dir \S+ --status/, "the suggestion carries the --dir given");
    const timeout = run.events.find((e) => e.state === "timeout")!;
    assert.deepEqual(timeout.waitingFor, ["b.internal"]);
    assert.match(timeout.why["b.internal"]!, /never fetched cacerts/);
    assert.equal(signer(t), "root-1");
    assert.equal(rotationRow(t)?.phase, "prepare");

    // The command the message names says who and why, and changes nothing.
    const before = fingerprint(t.dir);
    const status = await cli(["rotate", "--dir", t.dir, "--status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /Rotation 1: generation 1 → 2, at gate 1\/3 \(prepare\)/);
    assert.match(status.stdout, /waiting for 1 of 2:\n\s+b\.internal\s+has never fetched cacerts/);
    // Timing out again adopts the same generation and changes nothing else.
    const again = await cli(["rotate", "--dir", t.dir, "--timeout", "1s"]);
    assert.equal(again.code, 3, again.stderr);
    assert.match(again.stderr, /still waiting for b\.internal/);
    assert.equal(fingerprint(t.dir), before, "a timed-out re-run left the state folder and ledger as they were");
    assert.equal(t.ca.generations().length, 2);
  } finally {
    killChildren();
    await t.stop();
  }
});

test("rotate: Ctrl-C at a gate stops it cleanly, keeps its state and frees it for the next run to resume at once", {
  timeout: 60_000,
}, async () => {
  const t = await startCa(POLL);
  try {
    await Service.enrol(t, "a.internal"); // never polls: gate 1 waits
    const run = rotate(t.dir, ["--timeout", "60s"]);
    await run.wait((e) => e.gate === "prepare" && e.state === "waiting");
    run.child.kill("SIGINT");
    const r = await run.done;
    assert.equal(r.code, 3, r.stderr);
    assert.match(
      r.stderr,
      /^error: interrupted at gate 1 \(prepare\): rotation 1 stays there; run npm run ca -- rotate --dir \S+ again to carry on$/m,
    );
    assert.ok(run.events.some((e) => e.state === "interrupted" && same(e.waitingFor, ["a.internal"])));
    const row = sqliteLedger(t.ca.ledger).db.prepare("SELECT phase, owner FROM rotations WHERE id = 1").get() as {
      phase: string;
      owner: string | null;
    };
    assert.deepEqual(row, { phase: "prepare", owner: null }, "the lease is released, the phase kept");

    const again = rotate(t.dir, ["--timeout", "1s"]);
    const resumed = await again.wait((e) => e.state === "started");
    assert.match(resumed.msg, /resuming rotation 1 .* at gate 1 \(prepare\)/);
    const end = await again.done;
    assert.equal(end.code, 3);
    assert.match(end.stderr, /still waiting for a\.internal/);
    assert.equal(t.ca.generations().length, 2, "the resumed run adopted generation 2");
  } finally {
    killChildren();
    await t.stop();
  }
});

test("rotate without a server: file-mode certificates are not waited for at gate 1, gate 3 names them with the renew command, and the re-run after it finishes", {
  timeout: 60_000,
}, async () => {
  const root = tempDir();
  try {
    const dir = join(root, "pki");
    assert.equal((await cli(["init", "--dir", dir, "--name", "Acme Corp CA"])).code, 0);
    assert.equal((await cli(["issue", "--dir", dir, "--domain", "files.internal"])).code, 0);
    const first = await cli(["rotate", "--dir", dir, "--timeout", "1s"]);
    assert.equal(first.code, 3, first.stderr);
    assert.match(first.stdout, /not waited for: files\.internal holds a file-mode certificate/);
    assert.match(first.stdout, /gate 2\/3 activate passed/);
    assert.match(first.stderr, /files\.internal .*run: npm run ca -- renew --domain files\.internal/);
    assert.match(
      first.stderr,
      /^error: gate 3 \(retire\) timed out after 1\.0s: still waiting for files\.internal; rotation 1 stays at retire/m,
    );

    assert.equal((await cli(["renew", "--dir", dir, "--domain", "files.internal"])).code, 0);
    const second = await cli(["rotate", "--dir", dir, "--timeout", "5s"]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /resuming rotation 1 .* at gate 3 \(retire\)/);
    assert.match(second.stdout, /retired generation 1: bundle\.pem and crls\.pem carry generation 2/);
    const v = openssl(["verify", "-CAfile", join(dir, "bundle.pem"), join(dir, "certs", "files.internal.crt")]);
    assert.equal(v.code, 0, v.out);
    const status = await cli(["rotate", "--dir", dir, "--status"]);
    assert.match(status.stdout, /No rotation in progress/);
  } finally {
    cleanup(root);
  }
});

test("rotate --in-use: gate 3 holds after the renewal until the service has presented its new certificate, also when resumed without the flag", {
  timeout: 60_000,
}, async () => {
  const t = await startCa(POLL);
  try {
    const a = await Service.enrol(t, "a.internal");
    const run = rotate(t.dir, ["--timeout", "60s", "--in-use"]);
    await run.wait((e) => e.gate === "prepare" && e.state === "waiting");
    await a.pollUntil(2);
    await run.wait((e) => e.gate === "activate" && e.state === "passed");
    await a.renewWhenTold();
    const held = await run.wait(
      (e) => e.gate === "retire" && e.state === "waiting" && /has not presented it yet/.test(e.why["a.internal"] ?? ""),
    );
    assert.match(held.why["a.internal"]!, /presented serial [0-9a-f]+ of generation 1/);
    assert.equal(t.ca.generation(1).root.state, "published", "issued is not in use: generation 1 stays");
    // Stopped and resumed without the flag: the rotation remembers it.
    run.child.kill("SIGINT");
    assert.equal((await run.done).code, 3);
    const again = rotate(t.dir, ["--timeout", "60s"]);
    await again.wait(
      (e) => e.gate === "retire" && e.state === "waiting" && /has not presented it yet/.test(e.why["a.internal"] ?? ""),
    );
    assert.equal((await a.poll()).renewNow, false);
    const end = await again.done;
    assert.equal(end.code, 0, end.stderr);
    assert.equal(t.ca.generation(1).root.state, "retired");
  } finally {
    killChildren();
    await t.stop();
  }
});

/** The CN of every certificate in a PEM file, in file order. */
const cnsIn = (file: string) =>
  x509.PemConverter.decode(readFileSync(file, "utf8")).map(
    (d) => new x509.X509Certificate(d).subjectName.getField("CN")[0],
  );
const issuers = (dir: string) =>
  ledgerRows(dir)
    .map((l) => JSON.parse(l))
    .filter((r) => r.kind) as {
    id: string;
    kind: string;
    generation: number;
    name: string;
    state: string;
    parent: string | null;
  }[];

test("rotate with an issuing intermediate: the new generation gets one with the same name constraints and key type, it signs after activation (chain = leaf + it), and a crash after creating it does not make a second", {
  timeout: 90_000,
}, async () => {
  const root = tempDir();
  try {
    const dir = join(root, "pki");
    assert.equal((await cli(["init", "--dir", dir, "--name", "Mesh Dev CA"])).code, 0);
    const int1 = await cli([
      "intermediate",
      "--dir",
      dir,
      "--name",
      "Mesh Dev Issuing CA",
      "--permit-dns",
      "internal",
      "--key-type",
      "ec-p384",
    ]);
    assert.equal(int1.code, 0, int1.stderr);
    assert.equal((await cli(["issue", "--dir", dir, "--domain", "files.internal"])).code, 0);
    assert.deepEqual(
      cnsIn(join(dir, "certs", "files.internal.crt")).slice(1),
      ["Mesh Dev Issuing CA"],
      "the mesh sends leaf + intermediate, never the root",
    );

    // Killed right after gate 1 made the new intermediate, before it published anything.
    const killed = await cli(["rotate", "--dir", dir, "--timeout", "2s"], {
      env: { MESH_CA_CRASH_AT: "rotate:publish" },
    });
    assert.equal(killed.signal, "SIGKILL", killed.stderr);
    const made = issuers(dir).filter((r) => r.kind === "intermediate" && r.generation === 2);
    assert.deepEqual(
      made.map((r) => [r.id, r.name, r.parent, r.state]),
      [["int-2", "Mesh Dev Issuing CA G2", "root-2", "pending"]],
    );
    assert.equal(
      ledgerRows(dir)
        .map((l) => JSON.parse(l))
        .find((r) => r.key === "signer")?.value,
      "int-1",
      "the old intermediate signs until gate 2",
    );

    // The re-run adopts it, passes gates 1 and 2, and waits at gate 3 for the file-mode certificate.
    const first = await cli(["rotate", "--dir", dir, "--timeout", "1s"]);
    assert.equal(first.code, 3, first.stderr);
    assert.match(first.stdout, /resuming rotation 1 .* at gate 1 \(prepare\)/);
    assert.match(
      first.stdout,
      /adopted the issuing CA Mesh Dev Issuing CA G2 \(int-2, under generation 2, added earlier\)/,
    );
    assert.match(
      first.stdout,
      /gate 2\/3 activate passed .*generation 2 signs new certificates \(int-2, Mesh Dev Issuing CA G2\)/,
    );
    assert.deepEqual(
      issuers(dir)
        .filter((r) => r.kind === "intermediate")
        .map((r) => [r.id, r.generation, r.state]),
      [
        ["int-1", 1, "published"],
        ["int-2", 2, "published"],
      ],
      "no second intermediate",
    );

    // The new intermediate: under root-2, the same constraints and key type as the old one.
    const int2 = join(dir, "intermediates", "2", "ca.crt");
    const nc = openssl(["x509", "-in", int2, "-noout", "-ext", "nameConstraints"]);
    assert.match(nc.out, /X509v3 Name Constraints: critical\n\s+Permitted:\n\s+DNS:internal\n/);
    assert.equal(
      nc.out,
      openssl(["x509", "-in", join(dir, "intermediates", "1", "ca.crt"), "-noout", "-ext", "nameConstraints"]).out,
    );
    assert.match(
      openssl(["x509", "-in", int2, "-noout", "-issuer", "-text"]).out,
      /issuer=CN\s*=\s*Mesh Dev CA G2[\s\S]*ASN1 OID: secp384r1/,
    );

    // A leaf renewed now comes from int-2, its chain file is leaf + int-2, and openssl accepts it.
    const renewed = await cli(["renew", "--dir", dir, "--domain", "files.internal"]);
    assert.equal(renewed.code, 0, renewed.stderr);
    const leaf = join(dir, "certs", "files.internal.crt");
    assert.deepEqual(cnsIn(leaf), ["files.internal", "Mesh Dev Issuing CA G2"]);
    assert.match(openssl(["x509", "-in", leaf, "-noout", "-issuer"]).out, /CN\s*=\s*Mesh Dev Issuing CA G2/);
    const chain = join(root, "chain.pem");
    writeFileSync(
      chain,
      x509.PemConverter.decode(readFileSync(leaf, "utf8"))
        .slice(1)
        .map((d) => new x509.X509Certificate(d).toString("pem"))
        .join("\n"),
    );
    const v = openssl(["verify", "-CAfile", join(dir, "bundle.pem"), "-untrusted", chain, leaf]);
    assert.equal(v.code, 0, v.out);

    // Gate 3 passes; retiring generation 1 retires its intermediate, whose CRL is no longer published.
    const second = await cli(["rotate", "--dir", dir, "--timeout", "5s"]);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(
      issuers(dir).map((r) => [r.id, r.state]),
      [
        ["int-1", "retired"],
        ["int-2", "published"],
        ["root-1", "retired"],
        ["root-2", "published"],
      ],
    );
    const crls = readFileSync(join(dir, "crls.pem"), "utf8");
    const crlIssuers = [...crls.matchAll(/-----BEGIN X509 CRL-----[\s\S]*?-----END X509 CRL-----/g)].map((m) =>
      openssl(["crl", "-noout", "-issuer"], m[0]).out.trim(),
    );
    assert.deepEqual(
      crlIssuers.map((s) => s.replace(/^issuer=\s*CN\s*=\s*/, "")),
      ["Mesh Dev CA G2", "Mesh Dev Issuing CA G2"],
    );
    assert.equal(
      openssl([
        "verify",
        "-crl_check_all",
        "-CAfile",
        join(dir, "bundle.pem"),
        "-CRLfile",
        join(dir, "crls.pem"),
        "-untrusted",
        chain,
        leaf,
      ]).code,
      0,
    );
  } finally {
    cleanup(root);
  }
});

test("rotate online with an issuing intermediate: a re-run after gate 1 timed out adopts the new intermediate, and clients renew onto it", {
  timeout: 120_000,
}, async () => {
  const t = await startCa(POLL);
  try {
    await t.ca.createIntermediate({ name: "Mesh Dev Issuing CA", permitDns: ["internal"] });
    const a = await Service.enrol(t, "a.internal");
    assert.match(a.issuerCn(), /CN=Mesh Dev Issuing CA$/);
    const first = rotate(t.dir, ["--timeout", "3s"]);
    const made = await first.wait((e) => e.gate === "prepare" && /added the issuing CA/.test(e.msg));
    assert.match(
      made.msg,
      /added the issuing CA Mesh Dev Issuing CA G2 \(int-2, under generation 2, permitted DNS internal, ec-p256\): it signs from gate 2/,
    );
    assert.equal((await first.done).code, 3, "a.internal never polled: gate 1 timed out");
    const intermediates = () =>
      t.ca.ledger
        .issuers()
        .filter((r) => r.kind === "intermediate")
        .map((r) => [r.id, r.generation, r.parent]);
    assert.deepEqual(intermediates(), [
      ["int-1", 1, "root-1"],
      ["int-2", 2, "root-2"],
    ]);
    assert.equal(signer(t), "int-1");

    const again = rotate(t.dir, ["--timeout", "60s"]);
    await again.wait((e) => e.gate === "prepare" && e.state === "waiting");
    assert.ok(
      again.events.some((e) => /adopted the issuing CA Mesh Dev Issuing CA G2 \(int-2/.test(e.msg)),
      JSON.stringify(again.events),
    );
    await a.pollUntil(2);
    await again.wait((e) => e.gate === "activate" && e.state === "passed");
    assert.equal(signer(t), "int-2", "gate 2 made the new intermediate the signer");
    await a.renewWhenTold();
    const chain = x509.PemConverter.decode(a.cert).map((d) => new x509.X509Certificate(d).subject);
    assert.deepEqual(
      chain,
      ["CN=a.internal", "CN=Mesh Dev Issuing CA G2"],
      "served: leaf + the new intermediate, no root",
    );
    const end = await again.done;
    assert.equal(end.code, 0, end.stderr);
    assert.deepEqual(
      intermediates(),
      [
        ["int-1", 1, "root-1"],
        ["int-2", 2, "root-2"],
      ],
      "still one intermediate per generation",
    );
    assert.equal(t.ca.issuerRow("int-1").state, "retired");
  } finally {
    killChildren();
    await t.stop();
  }
});

test("rotate --interval: 100ms is the shortest a gate may poll; below it, one line and exit 2, nothing started", async () => {
  const root = tempDir();
  try {
    const dir = join(root, "pki");
    assert.equal((await cli(["init", "--dir", dir, "--name", "Acme Corp CA"])).code, 0);
    const before = fingerprint(dir);
    const r = await cli(["rotate", "--dir", dir, "--interval", "50ms"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--interval 50ms is shorter than the 100ms allowed/);
    assert.equal(fingerprint(dir), before, "no rotation started");
  } finally {
    cleanup(root);
  }
});
