// The drill's temporary CA (root and service keys) does not outlive the run, whichever way it
// ends: a failure, Ctrl-C (SIGINT) or SIGTERM mid-run. Only --dir or --keep-state keep it.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { runDrill } from "../scripts/drill/drill.ts";
import { ROOT } from "./helpers/ca.ts";
import { compiledScript } from "./helpers/compiled.ts";

const made: string[] = [];
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** A private TMPDIR, so whatever the drill leaves there can be listed. */
function privateTmp(): string {
  const d = mkdtempSync(join(tmpdir(), "drill-tmp-"));
  made.push(d);
  return d;
}

/** Files below `dir` holding a key or the CA's ledger (tsx's compile cache, which follows TMPDIR, aside). */
function secretsBelow(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .filter((f) => !f.slice(dir.length).startsWith("/tsx-"))
    .filter((f) => /\.key$|ca\.db/.test(f) || holdsKey(f));
}

/** A file read while the drill runs may be renamed away in between (an atomic write's temporary). */
function holdsKey(f: string): boolean {
  try {
    return readFileSync(f, "utf8").includes("PRIVATE KEY");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

/** Processes whose command line mentions `text` (the services get --pki <folder>). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text)) pids.push(Number(pid));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

/** In-process runs read TMPDIR through os.tmpdir(), as the CLI does. */
async function withTmpdir<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const old = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  try {
    return await fn();
  } finally {
    if (old === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = old;
  }
}

/**
 * Runs the CLI (compiled once for the file: in a private TMPDIR tsx would compile it afresh each
 * run; drill.test.ts runs it under tsx) until `when` shows in its output, then sends `sig`. The
 * baseline lasts until a service has renewed on its own schedule: 15 s certificates renewed at 1/3
 * of their life (drill-online's) renew at ~5 s, where the default 60 s ones renewed at 2/3 took
 * 40 s. The careless phase that follows is interrupted as it begins.
 */
async function interrupt(sig: NodeJS.Signals, when: RegExp) {
  const tmp = privateTmp();
  const child = spawn(
    process.execPath,
    [
      await compiledScript("drill-rotate"),
      ...["--rate", "10", "--dwell", "1000", "--lifetime", "15", "--renew-at", "0.33", "--poll", "500"],
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TMPDIR: tmp, NO_COLOR: "1" } },
  );
  let out = "";
  let sent = false;
  let keysWhenSent: string[] = [];
  const onData = (d: Buffer) => {
    out += d;
    if (!sent && when.test(out)) {
      sent = true;
      keysWhenSent = secretsBelow(tmp);
      child.kill(sig);
    }
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  const code = await new Promise<number | null>((r) => child.on("close", r));
  return { tmp, out, code, sent, keysWhenSent };
}

test("a drill stopped with SIGINT in its careless phase stops its services and leaves no key behind", {
  timeout: 60_000,
}, async () => {
  const r = await interrupt("SIGINT", /▶ 2\. The careless rotation/);
  assert.ok(r.sent, r.out);
  assert.ok(
    r.keysWhenSent.some((f) => f.endsWith("/pki/roots/1/ca.key")),
    `the CA existed when interrupted: ${r.keysWhenSent.join(", ")}`,
  );
  assert.equal(r.code, 130, r.out);
  assert.match(r.out, /drill:rotate: interrupted \(SIGINT\): everything stopped, the temporary CA state removed/);
  assert.doesNotMatch(r.out, /\n\s+at /, "no stack trace");
  assert.deepEqual(secretsBelow(r.tmp), []);
  // The logs stay for the post-mortem; the services are gone.
  assert.ok(
    readdirSync(r.tmp).some((d) => d.startsWith("mesh-drill-") && existsSync(join(r.tmp, d, "logs", "payment.log"))),
  );
  assert.deepEqual(processesMentioning(r.tmp), []);
});

test("a drill stopped with SIGTERM during its baseline leaves no key behind either", { timeout: 60_000 }, async () => {
  const r = await interrupt("SIGTERM", /▶ 1\. Baseline/);
  assert.ok(r.sent, r.out);
  assert.ok(r.keysWhenSent.length > 0);
  assert.equal(r.code, 143, r.out);
  assert.deepEqual(secretsBelow(r.tmp), []);
  assert.deepEqual(processesMentioning(r.tmp), []);
});

test("a drill that fails mid-run removes its temporary CA; with keepState it keeps it", {
  timeout: 60_000,
}, async () => {
  // A failure inside the run: the progress callback throws as the careless phase begins.
  const failing = (line: string) => {
    if (line.includes("▶ 2.")) throw new Error("boom in the careless phase");
  };
  const tmp = privateTmp();
  await assert.rejects(
    withTmpdir(tmp, () => runDrill({ rate: 5, dwellMs: 200, say: failing })),
    /boom in the careless phase/,
  );
  assert.deepEqual(secretsBelow(tmp), []);
  assert.deepEqual(processesMentioning(tmp), []);

  const kept = privateTmp();
  let pki = "";
  await assert.rejects(
    withTmpdir(kept, () =>
      runDrill({ rate: 5, dwellMs: 200, keepState: true, say: failing, onPrepared: (w) => (pki = w.pki) }),
    ),
    /boom/,
  );
  assert.ok(existsSync(join(pki, "roots", "1", "ca.key")), "--keep-state keeps the CA, keys included");
  assert.ok(secretsBelow(kept).length > 0);
});
