// The compiled bundle (bin/bundle.mjs): built on first use, rebuilt whenever a source it was
// built from changed, and the CLI run through it. Each test works on a copy of the sources in
// a temp folder, so the repository's own .build/ is never touched.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./helpers/ca.ts";
import { hasEvent } from "./helpers/events.ts";

interface Copy {
  dir: string;
  run(args: string[], opts?: { pre?: string[]; cmd?: string }): { code: number | null; stdout: string; stderr: string };
  buildId(): string;
}

function copyOfSources(): Copy {
  const dir = mkdtempSync(join(tmpdir(), "mesh-build-"));
  // scripts/: the bundle compiles mesh:up's dashboard too (scripts/mesh-dashboard.ts).
  for (const d of ["bin", "ca", "services", "lib", "scripts"]) cpSync(join(ROOT, d), join(dir, d), { recursive: true });
  for (const f of ["package.json", "tsconfig.json"]) cpSync(join(ROOT, f), join(dir, f));
  symlinkSync(realpathSync(join(ROOT, "node_modules")), join(dir, "node_modules"));
  return {
    dir,
    run(args, opts = {}) {
      const r = spawnSync(opts.cmd ?? process.execPath, [...(opts.pre ?? []), ...args], {
        cwd: dir,
        encoding: "utf8",
        env: { ...process.env, MESH_PKI_DIR: "", MESH_CA_PASSPHRASE: "", MESH_CA_NOW: "" },
      });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    },
    buildId: () => (JSON.parse(readFileSync(join(dir, ".build", "current.json"), "utf8")) as { id: string }).id,
  };
}

const MESSAGE = "the CA is not initialised in";

test("the first run builds the bundle; later runs reuse it while no source changes", (t) => {
  const c = copyOfSources();
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  const first = c.run(["bin/ca.mjs", "list", "--dir", "missing"]);
  assert.equal(first.code, 4, first.stderr);
  assert.match(first.stderr, new RegExp(MESSAGE));
  const pointer = join(c.dir, ".build", "current.json");
  const built = statSync(pointer).mtimeMs;
  const id = c.buildId();
  assert.equal(c.run(["bin/bundle.mjs", "--check"]).code, 0);
  c.run(["bin/ca.mjs", "status", "--dir", "missing"]);
  assert.equal(statSync(pointer).mtimeMs, built, "an up-to-date bundle was rebuilt");
  assert.equal(c.buildId(), id);
});

test("a source edited after the build is compiled into the next run", (t) => {
  const c = copyOfSources();
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  assert.equal(c.run(["bin/ca.mjs", "list", "--dir", "missing"]).code, 4);
  const id = c.buildId();
  const view = join(c.dir, "ca", "view.ts");
  writeFileSync(view, readFileSync(view, "utf8").replace(MESSAGE, "NO CA WAS FOUND in"));
  assert.equal(c.run(["bin/bundle.mjs", "--check"]).code, 1, "--check called an edited source up to date");
  const r = c.run(["bin/ca.mjs", "list", "--dir", "missing"]);
  assert.match(r.stderr, /NO CA WAS FOUND in/, "the run used the stale bundle");
  assert.notEqual(c.buildId(), id);

  // A file put back with an old timestamp (a restore, a checkout keeping times) and the same size.
  writeFileSync(view, readFileSync(view, "utf8").replace("NO CA WAS FOUND in", "NO CA WAS THERE n"));
  utimesSync(view, new Date("2001-01-01"), new Date("2001-01-01"));
  assert.match(c.run(["bin/ca.mjs", "list", "--dir", "missing"]).stderr, /NO CA WAS THERE n/);
});

test("the CLI works through the bundle, and npm run ca runs it", (t) => {
  const c = copyOfSources();
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  const init = c.run(["bin/ca.mjs", "init", "--name", "Build Test CA", "--dir", "pki"]);
  assert.equal(init.code, 0, init.stderr);
  const issue = c.run(["bin/ca.mjs", "issue", "--domain", "payment.internal", "--dir", "pki"]);
  assert.equal(issue.code, 0, issue.stderr);
  const list = c.run(["bin/ca.mjs", "list", "--json", "--dir", "pki"]);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(
    (JSON.parse(list.stdout) as { domain: string; status: string }[]).map((r) => [r.domain, r.status]),
    [["payment.internal", "VALID"]],
  );
  const status = c.run(["run", "--silent", "ca", "--", "status", "--json", "--dir", "pki"], { cmd: "npm" });
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { signer: string; counts: Record<string, number> };
  assert.equal(s.signer, "root-1");
  assert.equal(s.counts.VALID, 1);
  // A failure is still one line without a trace.
  const bad = c.run(["bin/ca.mjs", "issue", "--domain", "127.0.0.1.", "--dir", "pki"]);
  assert.notEqual(bad.code, 0);
  assert.doesNotMatch(bad.stderr, /\n\s+at /);
});

test("list, status, issue and sign load no X.509 or ASN.1 library; init does", (t) => {
  const c = copyOfSources();
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  assert.equal(c.run(["bin/ca.mjs", "init", "--name", "Lazy CA", "--dir", "pki"]).code, 0);
  // A resolve hook that refuses the heavy libraries: whatever imports one fails.
  writeFileSync(
    join(c.dir, "hooks.mjs"),
    `export async function resolve(spec, ctx, next) {
  if (spec.startsWith("@peculiar/") || spec === "reflect-metadata") throw new Error("refused to load " + spec);
  return next(spec, ctx);
}\n`,
  );
  writeFileSync(
    join(c.dir, "refuse.mjs"),
    `import { register } from "node:module";\nregister("./hooks.mjs", import.meta.url);\n`,
  );
  // ca/x509.ts loads the library through require() (CommonJS), which the ESM hook does not see.
  writeFileSync(
    join(c.dir, "refuse.cjs"),
    `const Module = require("node:module");
const resolve = Module._resolveFilename;
Module._resolveFilename = function (spec, ...rest) {
  if (spec.startsWith("@peculiar/") || spec === "reflect-metadata") throw new Error("refused to load " + spec);
  return resolve.call(this, spec, ...rest);
};\n`,
  );
  const pre = ["--import", "./refuse.mjs", "--require", "./refuse.cjs"];
  // A CSR made by openssl, for sign.
  const csr = join(c.dir, "b.csr");
  const key = join(c.dir, "b.key");
  assert.equal(
    spawnSync("openssl", [
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      key,
      "-subj",
      "/CN=b.internal",
      "-out",
      csr,
    ]).status,
    0,
  );
  for (const args of [["list"], ["status"], ["issue", "--domain", "a.internal"], ["sign", "--csr", csr]]) {
    const r = c.run(["bin/ca.mjs", ...args, "--dir", "pki"], { pre });
    assert.equal(r.code, 0, `${args[0]} loaded a heavy library: ${r.stderr}`);
  }
  const init = c.run(["bin/ca.mjs", "init", "--name", "Another CA", "--dir", "pki2"], { pre });
  assert.notEqual(init.code, 0, "the hook refused nothing: this test proves nothing");
  assert.match(init.stderr, /refused to load (@peculiar\/|reflect-metadata)/);
});

/** Starts a service from the bundle; resolves with its first stdout line or, if it exits first, its stderr. */
function startService(c: Copy, pre: string[], args: string[]): Promise<{ listening: boolean; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...pre, "bin/mesh-service.mjs", ...args], {
      cwd: c.dir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
      if (hasEvent(out, "listening")) {
        child.kill("SIGKILL");
        resolve({ listening: true, output: out });
      }
    });
    child.stderr.on("data", (d) => (err += d));
    child.on("close", () => resolve({ listening: false, output: err }));
  });
}

test("a service that calls no other never loads undici; one that does, does", async (t) => {
  const c = copyOfSources();
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  for (const args of [
    ["init", "--name", "Svc CA"],
    ["issue", "--domain", "payment.internal"],
    ["issue", "--domain", "order.internal"],
  ]) {
    const r = c.run(["bin/ca.mjs", ...args, "--dir", "pki"]);
    assert.equal(r.code, 0, r.stderr);
  }
  writeFileSync(join(c.dir, "policy.toml"), `[payment]\naccepts = ["order"]\n`);
  // undici is CommonJS: refuse it at require() (however it is reached) and as an ES import.
  writeFileSync(
    join(c.dir, "no-undici.cjs"),
    `const Module = require("node:module");
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === "undici" || /[\\\\/]node_modules[\\\\/]undici[\\\\/]/.test(request)) throw new Error("refused to load undici");
  return load.call(this, request, ...rest);
};\n`,
  );
  writeFileSync(
    join(c.dir, "hooks.mjs"),
    `export async function resolve(spec, ctx, next) {
  if (spec === "undici") throw new Error("refused to load undici");
  return next(spec, ctx);
}\n`,
  );
  writeFileSync(
    join(c.dir, "refuse.mjs"),
    `import { register } from "node:module";\nregister("./hooks.mjs", import.meta.url);\n`,
  );
  const pre = ["--require", "./no-undici.cjs", "--import", "./refuse.mjs"];
  const common = ["--port", "0", "--pki", "pki", "--policy", "policy.toml"];
  const payment = await startService(c, pre, ["--service", "payment", ...common]);
  assert.ok(payment.listening, `payment did not start without undici: ${payment.output}`);
  const order = await startService(c, pre, ["--service", "order", ...common, "--upstream", "payment=127.0.0.1:1"]);
  assert.ok(!order.listening, "order started without undici: the refusal hooks prove nothing");
  assert.match(order.output, /refused to load undici/);
});
