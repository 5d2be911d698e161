// Runs `npm run drill -- <name>` as its own process with a private TMPDIR, so whatever it leaves
// behind (keys, the CA's ledger, processes) can be listed afterwards. The script runs compiled
// once per test file (helpers/compiled.ts): in a private TMPDIR tsx's compile cache starts empty,
// so each run under tsx compiles the drill's whole module graph again. `{ tsx: true }` runs it as
// npm does (drill-impostor.test.ts keeps two such runs: --list, and a drill interrupted).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./ca.ts";
import { compiledScript } from "./compiled.ts";
import { parseLine, type MeshLine } from "../../scripts/mesh-format.ts";

export function privateTmp(): string {
  return mkdtempSync(join(tmpdir(), "drill-tmp-"));
}

/** Files below `dir` holding a key or the CA's ledger (tsx's compile cache aside). */
export function secretsBelow(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .filter((f) => !f.slice(dir.length).startsWith("/tsx-"))
    .filter((f) => /\.key$|ca\.db/.test(f) || holdsKey(f));
}

function holdsKey(f: string): boolean {
  try {
    return readFileSync(f, "utf8").includes("PRIVATE KEY");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

/** Processes whose command line mentions `text` (services get --state/--pki below the drill's folder, the CA child its pki). */
export function processesMentioning(text: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const c = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (c.includes(text)) out.push(`${pid}: ${c.replace(/\0/g, " ").slice(0, 200)}`);
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

export interface DrillRun {
  tmp: string;
  code: number | null;
  out: string;
  err: string;
  /** The output once `interruptWhen` matched and the signal was sent. */
  interrupted: boolean;
}

/** `drill <args>`; with `interrupt`, sends its signal once its pattern shows in the output; with `tsx`, under tsx's loader. */
export async function runDrillCli(
  args: string[],
  o: { interrupt?: { when: RegExp; signal: NodeJS.Signals }; tsx?: boolean } = {},
): Promise<DrillRun> {
  const tmp = privateTmp();
  const entry = o.tsx
    ? ["--import", "tsx", join(ROOT, "scripts", "drill-cli.ts")]
    : [await compiledScript("drill-cli")];
  const child = spawn(process.execPath, [...entry, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TMPDIR: tmp, NO_COLOR: "1" },
  });
  let out = "";
  let err = "";
  let interrupted = false;
  const look = () => {
    if (o.interrupt && !interrupted && o.interrupt.when.test(out + err)) {
      interrupted = true;
      child.kill(o.interrupt.signal);
    }
  };
  child.stdout.on("data", (d: Buffer) => ((out += d), look()));
  child.stderr.on("data", (d: Buffer) => ((err += d), look()));
  return new Promise((resolve) => child.on("close", (code) => resolve({ tmp, code, out, err, interrupted })));
}

/**
 * Runs `check` on a drill's run (it returns the drill's own folder, from its report), then checks
 * that nothing is left behind: the folder, a key below the run's TMPDIR, a process naming it. The
 * TMPDIR is removed when every assertion held, and kept and named when one failed.
 */
export async function checkLeavesNothing(r: DrillRun, check: () => Promise<string>): Promise<void> {
  let passed = false;
  try {
    assert.equal(existsSync(await check()), false);
    assert.deepEqual(secretsBelow(r.tmp), []);
    assert.deepEqual(processesMentioning(r.tmp), []);
    passed = true;
  } finally {
    if (passed) rmSync(r.tmp, { recursive: true, force: true });
    else console.log(`drill output kept in ${r.tmp}`);
  }
}

/** The mesh log lines of one file of a drill's logs folder (what mesh:logs would read). */
export function logLines(dir: string, file: string): MeshLine[] {
  return readFileSync(join(dir, file), "utf8")
    .split("\n")
    .map(parseLine)
    .filter((l): l is MeshLine => l !== null);
}
