// The README's "A fourth identity": its shell blocks, run as written and in order against a real
// online mesh:up in a fresh folder. shipping.internal enrols by hand with curl + openssl and a
// one-time token, is refused (403) before the policy grants it a route, then gets 200 from
// inventory on that route and 403 from payment. Only the ports differ: the test's are ephemeral.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { SHIPPED_POLICY_FILE } from "./mesh-fixtures.ts";
import { hasEvent } from "./helpers/events.ts";

const ROOT = join(import.meta.dirname, "..");
const TSX = import.meta.resolve("tsx");
const tmp = mkdtempSync(join(tmpdir(), "mesh-readme-shipping-"));
let up: ChildProcess | undefined;
after(() => {
  if (up && up.exitCode === null && up.signalCode === null) up.kill("SIGTERM");
  rmSync(tmp, { recursive: true, force: true });
});

/** The ```sh blocks of the README section `heading`, in order. */
function shellBlocks(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `no "## ${heading}" in the README`);
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/**
 * Runs one block with bash in the mesh's folder. `npm run -s ca -- …` there is the CA's CLI as
 * npm runs it (bin/ca.mjs): the folder is not the repository, so npm could not find the script.
 */
function sh(script: string): Promise<{ code: number; out: string; err: string }> {
  const prelude = `set -euo pipefail
npm() { if [ "$1 $2 $3 $4" = "run -s ca --" ]; then shift 4; node ${JSON.stringify(join(ROOT, "bin", "ca.mjs"))} "$@"; else echo "unexpected: npm $*" >&2; return 1; fi; }
`;
  return new Promise((resolve) => {
    execFile("bash", ["-c", prelude + script], { cwd: tmp, env: meshEnv(), timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr });
    });
  });
}

/** The commands as a reader runs them: mesh:up's defaults, none of a caller's MESH_* settings. */
function meshEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" };
  for (const k of Object.keys(env)) if (k.startsWith("MESH_")) delete env[k];
  return env;
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("README: a fourth identity enrolled by hand with a token, granted one route, 200 there and 403 elsewhere", {
  timeout: 120_000,
}, async () => {
  const blocks = shellBlocks(readFileSync(join(ROOT, "README.md"), "utf8"), "A fourth identity");
  assert.equal(blocks.length, 3, "enrol, grant, call");
  const [enrol, grant, call] = blocks as [string, string, string];
  assert.match(enrol, /\/\.well-known\/est\/simpleenroll/);
  assert.doesNotMatch(enrol + call, / -k\b|--insecure/);

  // A fresh folder where `npm run mesh:up` runs, as in a fresh clone: its own mesh-policy.toml,
  // and the shipped workloads (the apps in other languages the policy names), on free ports.
  copyFileSync(SHIPPED_POLICY_FILE, join(tmp, "mesh-policy.toml"));
  up = spawn(
    process.execPath,
    [
      "--import",
      TSX,
      join(ROOT, "scripts", "mesh-up.ts"),
      "--order-port",
      "0",
      "--payment-port",
      "0",
      "--inventory-port",
      "0",
      "--ca-port",
      "0",
      "--dashboard-port",
      "0",
      "--workloads",
      join(ROOT, "mesh-workloads.toml"),
      "--workload-ports",
      "any",
    ],
    { cwd: tmp, stdio: ["ignore", "pipe", "pipe"], env: meshEnv() },
  );
  let upOut = "";
  up.stdout!.on("data", (c: Buffer) => (upOut += c));
  up.stderr!.on("data", (c: Buffer) => (upOut += c));
  const meshJson = join(tmp, "logs", "mesh.json");
  await waitFor(() => existsSync(meshJson) && /Ctrl-C stops everything/.test(upOut), 60_000, "mesh:up").catch(
    (e: Error) => {
      throw new Error(`${e.message}; it printed:\n${upOut}`);
    },
  );
  const state = JSON.parse(readFileSync(meshJson, "utf8")) as {
    ports: Record<string, number>;
    ca: { url: string };
    dashboard: string;
  };
  const caPort = new URL(state.ca.url).port;
  // The README's ports are mesh:up's defaults; the test's mesh listens on ephemeral ones.
  const ports = (s: string) =>
    s
      .replaceAll("127.0.0.1:7400", `127.0.0.1:${caPort}`)
      .replaceAll(":7403", `:${state.ports.inventory}`)
      .replaceAll(":7402", `:${state.ports.payment}`);

  const e = await sh(ports(enrol));
  assert.equal(e.code, 0, e.out + e.err);
  assert.equal(e.out.trim(), "shipping/cert.pem: OK", "openssl verify accepts what the CA issued");
  assert.equal(statSync(join(tmp, "shipping")).mode & 0o777, 0o700, "the key's folder is private");
  // The secrets themselves are 0600 too, whatever the reader's umask (the block sets its own).
  for (const f of ["token", "auth.hdr", "key.pem"])
    assert.equal(statSync(join(tmp, "shipping", f)).mode & 0o777, 0o600, `shipping/${f} is 0600`);
  assert.match(readFileSync(join(tmp, "shipping", "cert.pem"), "utf8"), /subject=\/?CN ?= ?shipping\.internal/);
  await waitFor(
    () => /\[ca\] +\S+ est\.enrolled: enrolled shipping\.internal/.test(upOut),
    5_000,
    "mesh:up to show the enrolment",
  );
  assert.doesNotMatch(upOut, /mt1\./, "the token is never shown");

  // The token works once: the same enrolment again is refused, and nothing is issued.
  const again = await sh(
    `curl -sS --cacert shipping/bundle.pem -H @shipping/auth.hdr -H "Content-Type: application/pkcs10" -H "Content-Transfer-Encoding: base64" --data-binary @shipping/csr.b64 -w '\\n%{http_code}' ${state.ca.url}/.well-known/est/simpleenroll`,
  );
  assert.match(again.out, /the enrolment token was already used.*\n401$/s, again.out + again.err);

  // Before the grant: shipping is a caller the mesh knows (its certificate is the CA's), and the policy does not name it.
  const before = await sh(ports(call));
  assert.match(
    before.out,
    /"error":"forbidden","caller":"shipping","identity":"shipping\.internal","rule":"inventory\.accepts"/,
  );

  const g = await sh(grant);
  assert.equal(g.code, 0, g.err);
  const invLog = join(tmp, "logs", "inventory.log");
  await waitFor(
    () => hasEvent(readFileSync(invLog, "utf8"), "policy.reloaded"),
    10_000,
    "inventory to reload the policy",
  );

  // Each command, and under it the answer the README shows (curl prints bodies without a newline).
  const pairs = [...call.matchAll(/^(curl .*)\n# (\{.*\})$/gm)].map((m) => ({ cmd: m[1]!, shown: m[2]! }));
  assert.equal(pairs.length, 2);
  for (const { cmd, shown } of pairs) {
    const c = await sh(`${ports(cmd)} -w '\\n%{http_code}'`);
    assert.equal(c.code, 0, c.err);
    const status = shown.includes('"error":"forbidden"') ? "403" : "200";
    assert.equal(c.out, `${shown}\n${status}`, cmd);
  }
  assert.ok(readFileSync(invLog, "utf8").includes('"peer":"shipping"'), "inventory logged the request as shipping's");

  // mesh:up's dashboard shows the fourth identity: a caller in the policy matrix, its edges with their counts.
  type Snap = {
    matrix: { callers: string[] };
    edges: Array<{ from: string; to: string; allowed: number; denied: number }>;
  };
  let snap: Snap = { matrix: { callers: [] }, edges: [] };
  const edge = (to: string) => snap.edges.find((e) => e.from === "shipping" && e.to === to);
  const t0 = Date.now();
  do {
    await new Promise((r) => setTimeout(r, 250)); // the dashboard reads the logs a few times a second
    snap = (await (await fetch(new URL("snapshot.json", state.dashboard))).json()) as Snap;
  } while (!((edge("inventory")?.allowed ?? 0) >= 1) && Date.now() - t0 < 5_000);
  assert.ok(snap.matrix.callers.includes("shipping"), JSON.stringify(snap.matrix.callers));
  assert.ok((edge("inventory")?.allowed ?? 0) >= 1, JSON.stringify(snap.edges));
  assert.ok((edge("payment")?.denied ?? 0) >= 1, JSON.stringify(snap.edges));

  // shipping holds a certificate, so naming it was never worth a warning; a name nobody holds yet,
  // added to the policy while the mesh runs, is (mesh:up reads each new version of the file).
  assert.doesNotMatch(upOut, /policy\.unknown_caller/);
  appendFileSync(
    join(tmp, "mesh-policy.toml"),
    `\n[[payment.routes]]\nmethod = "GET"\npath = "/refunds/:id"\naccepts = ["billing"]\n`,
  );
  await waitFor(
    () =>
      /warning: policy\.unknown_caller billing: .*lets "billing" call \(payment\.routes\[0\]\), but no certificate for billing\.internal exists yet/.test(
        upOut,
      ),
    10_000,
    "mesh:up to warn about billing",
  );
  assert.doesNotMatch(upOut, /policy\.unknown_caller shipping/);

  up.kill("SIGTERM");
  await new Promise((r) => up!.once("exit", r));
});
