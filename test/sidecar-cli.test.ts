// The sidecar as users run it: the bundled entry (npm run sidecar) as its own process, in front
// of a Python app (standard library only), in file mode and in identity mode (enrolled with a
// one-time token); renewal swaps the certificate under a request in flight.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { freshPki, LogSink, call, identity } from "./mesh-fixtures.ts";
import { world, callAs } from "./identity-fixtures.ts";
import { createLogger } from "../services/mesh/log.ts";
import { parseToken } from "../services/mesh/identity-agent/bootstrap.ts";
import { startIdentityService } from "../services/mesh/identity-agent/service.ts";
import { sidecarApp } from "../services/mesh/sidecar/index.ts";
import { curl } from "./helpers/sidecar.ts";
import { ev } from "./helpers/events.ts";

const ROOT = join(import.meta.dirname, "..");
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

/** Starts a process and resolves with it and a reader of its stdout lines. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env });
  children.push(child);
  const lines: string[] = [];
  const waiters: Array<{ pred: (l: string) => boolean; resolve: (l: string) => void }> = [];
  let stderr = "";
  child.stderr!.on("data", (c) => (stderr += c));
  createInterface({ input: child.stdout! }).on("line", (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w.pred(l) ? w.resolve(l) : waiters.push(w);
  });
  const line = (pred: (l: string) => boolean, ms = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const seen = lines.find(pred);
      if (seen) return resolve(seen);
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `no such line from ${cmd} in ${ms} ms; stdout:\n${lines.slice(-5).join("\n")}\nstderr: ${stderr}`,
            ),
          ),
        ms,
      );
      waiters.push({ pred, resolve: (l) => (clearTimeout(t), resolve(l)) });
      child.once("exit", (code) => (clearTimeout(t), reject(new Error(`${cmd} exited ${code}: ${stderr}`))));
    });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, line, exited, stderr: () => stderr };
}

async function pythonApp(): Promise<number> {
  const py = run("python3", [join(ROOT, "test", "fixtures", "xfcc_app.py")]);
  return Number(await py.line((l) => /^\d+$/.test(l), 30_000));
}

const event = (name: string) => (l: string) => l.includes(`"event":"${name}"`);

test("npm run sidecar in file mode, in front of a Python app: order is served and named, edge refused, bad flags exit 2 with one line", async () => {
  const pki = await freshPki(`[pyapp]\naccepts = ["order"]\n`);
  after(() => pki.cleanup());
  await pki.ca.issue({ domain: "pyapp.internal" });
  const appPort = await pythonApp();
  const sc = run(process.execPath, [
    "bin/mesh-sidecar.mjs",
    "--service",
    "pyapp",
    "--app",
    `http://127.0.0.1:${appPort}`,
    "--port",
    "0",
    "--pki",
    pki.dir,
    "--policy",
    pki.policyFile,
  ]);
  const port = (JSON.parse(await sc.line(event("listening"))) as { port: number }).port;

  const ok = await call(pki, port, "pyapp.internal", identity(pki, "order"), "GET", "/who");
  assert.ok("status" in ok, JSON.stringify(ok));
  assert.equal(ok.status, 200);
  assert.equal(ok.body.app, "python");
  assert.equal(ok.body.xfcc.length, 1);
  assert.match(
    ok.body.xfcc[0],
    /^By=spiffe:\/\/internal\/pyapp;Hash=[0-9a-f]{64};Subject="CN=order\.internal";URI=spiffe:\/\/internal\/order;DNS=order\.internal$/,
  );

  const leaf = pki.ca.paths.leaf("edge.internal");
  const denied = await curl([
    "--resolve",
    `pyapp.internal:${port}:127.0.0.1`,
    "--cacert",
    pki.ca.paths.bundle,
    "--cert",
    leaf.cert,
    "--key",
    leaf.key,
    "-w",
    "\\n%{http_code}",
    `https://pyapp.internal:${port}/who`,
  ]);
  const [text, status] = denied.stdout.trimEnd().split("\n");
  assert.equal(status, "403");
  assert.equal(JSON.parse(text!).caller, "edge");
  await sc.line((l) => event("authz.denied")(l) && l.includes('"peer":"edge"'));

  // Bad flags: one line, exit 2, no stack.
  const bad = run(process.execPath, [
    "bin/mesh-sidecar.mjs",
    "--service",
    "pyapp",
    "--app",
    "http://10.1.2.3:80",
    "--pki",
    pki.dir,
    "--policy",
    pki.policyFile,
  ]);
  assert.equal(await bad.exited, 2);
  assert.match(bad.stderr(), /loopback address/);
  assert.doesNotMatch(bad.stderr(), /\n\s+at /);

  sc.child.kill("SIGTERM");
  assert.equal(await sc.exited, 0);
});

test("npm run sidecar in identity mode: enrols with a one-time token, keeps its key in its own state folder, serves the Python app", async () => {
  const w = await world(`[pyapp]\naccepts = ["edge"]\n`);
  after(() => w.cleanup());
  const appPort = await pythonApp();
  const tokenFile = join(w.root, "token");
  writeFileSync(tokenFile, w.token("pyapp"), { mode: 0o600 });
  const state = w.stateDir("pyapp");
  const sc = run(process.execPath, [
    "bin/mesh-sidecar.mjs",
    "--service",
    "pyapp",
    "--app",
    `http://127.0.0.1:${appPort}`,
    "--port",
    "0",
    "--ca",
    w.ca.server.url,
    "--state",
    state,
    "--token-file",
    tokenFile,
    "--policy",
    w.policyFile,
  ]);
  await sc.line(event("identity.enrolled"));
  const port = (JSON.parse(await sc.line(event("listening"))) as { port: number }).port;
  const r = await callAs(w, w.edge, port, "pyapp.internal", "GET", "/who");
  assert.ok("status" in r, JSON.stringify(r));
  assert.equal(r.status, 200);
  assert.match(JSON.parse(r.body).xfcc[0], /URI=spiffe:\/\/internal\/edge/);
  const { statSync } = await import("node:fs");
  assert.equal(statSync(join(state, "key.pem")).mode & 0o777, 0o600);
  sc.child.kill("SIGTERM");
  assert.equal(await sc.exited, 0);
});

test("identity mode: a renewal swaps the sidecar's certificate without dropping the request in flight", async () => {
  const w = await world(`[slowapp]\naccepts = ["edge"]\n`);
  after(() => w.cleanup());
  // An app that answers only when told: the renewal happens while the request waits.
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let arrived!: () => void;
  const inApp = new Promise<void>((r) => (arrived = r));
  const app = createServer((req, res) => {
    arrived();
    void held.then(() => res.end(JSON.stringify({ xfcc: req.headers["x-forwarded-client-cert"] })));
  });
  await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
  after(() => app.close());
  const logs = new LogSink();
  const svc = await startIdentityService({
    service: "slowapp",
    app: sidecarApp({ app: { kind: "tcp", host: "127.0.0.1", port: (app.address() as AddressInfo).port } }),
    policyFile: w.policyFile,
    port: 0,
    log: createLogger("slowapp", logs),
    identity: {
      caUrl: w.ca.server.url,
      stateDir: w.stateDir("slowapp"),
      token: parseToken(w.token("slowapp"), "test"),
      pollMs: 60_000,
    },
  });
  after(() => svc.close());
  const before = svc.identity.identity.serial;
  const pending = callAs(w, w.edge, svc.port, "slowapp.internal", "GET", "/slow");
  await inApp;
  assert.equal(await svc.identity.renew("test"), true);
  await logs.wait(ev("tls.reloaded", (l) => l.certChanged === true));
  assert.notEqual(svc.identity.identity.serial, before);
  release();
  const r = await pending;
  assert.ok("status" in r, JSON.stringify(r));
  assert.equal(r.status, 200);
  assert.match(JSON.parse(r.body).xfcc, /URI=spiffe:\/\/internal\/edge/);
  const again = await callAs(w, w.edge, svc.port, "slowapp.internal", "GET", "/after");
  assert.ok("status" in again && again.status === 200);
});
