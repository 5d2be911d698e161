// A --dir left in the middle of a careless rotation (a drill killed in that phase) is refused at
// once, with what state it is in and how to recover, and changed in no way; the recovery it
// names works.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import { checkStartState } from "../scripts/drill/drill.ts";
import { ROOT, ca as caCli, fingerprint } from "./helpers/ca.ts";
import { compiledScript } from "./helpers/compiled.ts";

const tmp = mkdtempSync(join(tmpdir(), "drill-state-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** What the drill leaves when killed during its careless phase: generation 2 signs, nobody trusts it, payment holds its certificate. */
async function carelessState(dir: string): Promise<void> {
  const ca = await CertificateAuthority.init({ dir, name: "Acme Corp CA" });
  for (const n of ["order", "payment", "inventory", "edge"]) await ca.issue({ domain: `${n}.internal` });
  const g = await ca.addGeneration({});
  ca.useGeneration(g.generation);
  await ca.renew({ domain: "payment.internal" });
  ca.close();
}

/** drill:rotate compiled once for the file (helpers/compiled.ts; drill.test.ts runs it under tsx, as npm does). */
async function drill(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [await compiledScript("drill-rotate"), ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((r) => child.on("close", (code) => r({ code, stdout, stderr })));
}

test("a --dir left mid careless rotation is refused at once, unchanged; the roll-back it names makes the drill pass", {
  timeout: 90_000,
}, async () => {
  const dir = join(tmp, "pki");
  await carelessState(dir);
  const before = fingerprint(dir);

  const r = await drill(["--dir", dir, "--rate", "10", "--dwell", "300"]);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.equal(r.stdout, "", "nothing started: no progress printed");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  const msg = lines[0]!;
  assert.match(msg, /^drill:rotate: the CA in .* is in the middle of a careless rotation/);
  assert.match(
    msg,
    /generation 2 \(Acme Corp CA G2\) signs new certificates but is not in bundle\.pem, so nobody trusts it, and payment\.internal already holds a certificate from it; nothing was changed/,
  );
  assert.equal(fingerprint(dir), before, "the folder is unchanged");
  assert.equal(existsSync(join(dir, "drill")), false, "no logs, no policy, no service started");

  // Going forward (trust generation 2 too) is also accepted, on a copy.
  const forward = join(tmp, "forward");
  cpSync(dir, forward, { recursive: true });
  const fwdCommand = /`npm run ca -- (bundle --dir \S+)`/.exec(msg)?.[1];
  assert.ok(fwdCommand, msg);
  assert.equal((await caCli(fwdCommand.replace(dir, forward).split(" "))).code, 0);
  const fwd = await CertificateAuthority.open({ dir: forward });
  assert.doesNotThrow(() => checkStartState(fwd));
  fwd.close();

  // The roll-back commands, exactly as printed, then the drill again on the same folder.
  const rollBack = [...msg.matchAll(/`npm run ca -- ([^`]+)`/g)]
    .map((m) => m[1]!)
    .filter((c) => !c.startsWith("bundle"));
  assert.deepEqual(rollBack, [`generation use 1 --dir ${dir}`, `renew --domain payment.internal --dir ${dir}`]);
  for (const c of rollBack) {
    const done = await caCli(c.split(" "));
    assert.equal(done.code, 0, done.stderr);
  }
  // Enough traffic per phase that each safe phase sees some even on a loaded machine.
  const again = await drill(["--file-mode", "--dir", dir, "--rate", "40", "--dwell", "300"]);
  assert.equal(again.code, 0, again.stdout + again.stderr);
  assert.match(again.stdout, /moved the whole mesh from generation 1 to 3 without losing a request/);
  assert.match(again.stdout, /^CA state \(keys included\): /m, "a --dir is the user's: kept");
  assert.ok(existsSync(join(dir, "roots", "1", "ca.key")));
});
