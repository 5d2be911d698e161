// The online CA's resident memory at rest (issue 16: at most 1.3× a bare Node server): `ca serve`
// as deployed (bin/ca.mjs, compiled, limits on), against a bare Node https server with a
// certificate from the same CA (bench/mesh-bare.ts, compiled the same way), all idle after start;
// `ca serve` with and without an admin listener (`--admin-port 0`, as mesh:up runs it).
//   npx tsx bench/est-rss.ts
import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { RSS_SETTLE_MS, rssMb, stats } from "./measure.ts";
import { prepareServers } from "./mesh.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
export const EST_RSS_TARGET = 1.3;
const ROUNDS = 3;
const SAMPLES = 5;
const SAMPLE_GAP_MS = 300;

export interface EstRssResult {
  /** Medians over the rounds, MB. */
  caServeMb: number;
  bareMb: number;
  ratio: number;
  /** `ca serve --admin-port 0`: its /metrics listener and process metrics running. */
  adminMb: number;
  adminRatio: number;
  target: number;
  /** Both ratios within the target. */
  pass: boolean;
  rounds: Array<{ caServeMb: number; adminMb: number; bareMb: number }>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts a server and resolves when a stdout line matches `ready`. */
function start(args: string[], ready: RegExp): { proc: ChildProcess; ready: Promise<void> } {
  const proc = spawn(process.execPath, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr!.on("data", (d) => (err += d));
  return {
    proc,
    ready: new Promise((resolve, reject) => {
      createInterface({ input: proc.stdout! }).on("line", (l) => ready.test(l) && resolve());
      proc.once("exit", (code) => reject(new Error(`${args.join(" ")} exited with ${code}: ${err.trim()}`)));
    }),
  };
}

async function restingRss(proc: ChildProcess): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    samples.push(rssMb(proc.pid!));
    await sleep(SAMPLE_GAP_MS);
  }
  return stats(samples).median;
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await exited;
}

export async function runEstRssBench(): Promise<EstRssResult> {
  const dir = mkdtempSync(join(tmpdir(), "mtls-bench-est-rss-"));
  try {
    // The mesh bench's CA and bare server, compiled the same way.
    const { pki, bareJs } = await prepareServers(dir);
    // The admin-port server gets a copy of the CA's folder: two servers, two ledgers, no sharing.
    const adminPki = join(dir, "pki-admin");
    cpSync(pki, adminPki, { recursive: true });
    console.log(
      `\nEST server memory at rest (ca serve, and with --admin-port 0, against a bare Node https server, ${ROUNDS} rounds)`,
    );
    const rounds: EstRssResult["rounds"] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // All at once, so that whatever the machine does meanwhile falls on each.
      const started = /"event":"ca\.started"/;
      const serve = start([join(REPO, "bin", "ca.mjs"), "serve", "--dir", pki, "--port", "0"], started);
      const admin = start(
        [join(REPO, "bin", "ca.mjs"), "serve", "--dir", adminPki, "--port", "0", "--admin-port", "0"],
        started,
      );
      const bare = start([bareJs, pki, "payment.internal"], /"event":"listening"/);
      try {
        await Promise.all([serve.ready, admin.ready, bare.ready]);
        // At rest: at 3 s, as this bench read before, ca serve was mid-transient (60.6 MB there, 56.4 MB from 10 s on).
        await sleep(RSS_SETTLE_MS);
        const [caServeMb, adminMb, bareMb] = await Promise.all([
          restingRss(serve.proc),
          restingRss(admin.proc),
          restingRss(bare.proc),
        ]);
        rounds.push({ caServeMb, adminMb, bareMb });
        console.log(
          `   round ${round + 1}: ca serve ${caServeMb.toFixed(1)} MB (${(caServeMb / bareMb).toFixed(2)}×), with --admin-port ${adminMb.toFixed(1)} MB (${(adminMb / bareMb).toFixed(2)}×), bare ${bareMb.toFixed(1)} MB`,
        );
      } finally {
        await Promise.all([stop(serve.proc), stop(admin.proc), stop(bare.proc)]);
      }
    }
    const caServeMb = stats(rounds.map((r) => r.caServeMb)).median;
    const adminMb = stats(rounds.map((r) => r.adminMb)).median;
    const bareMb = stats(rounds.map((r) => r.bareMb)).median;
    const ratio = caServeMb / bareMb;
    const adminRatio = adminMb / bareMb;
    const pass = ratio <= EST_RSS_TARGET && adminRatio <= EST_RSS_TARGET;
    const verdict = (r: number) => `target ≤ ${EST_RSS_TARGET}×: ${r <= EST_RSS_TARGET ? "PASS" : "FAIL"}`;
    console.log(
      `   median: ca serve ${caServeMb.toFixed(1)} MB / bare ${bareMb.toFixed(1)} MB = ${ratio.toFixed(2)}×  (${verdict(ratio)})`,
    );
    console.log(
      `   median: ca serve --admin-port ${adminMb.toFixed(1)} MB / bare ${bareMb.toFixed(1)} MB = ${adminRatio.toFixed(2)}×  (${verdict(adminRatio)})`,
    );
    return { caServeMb, bareMb, ratio, adminMb, adminRatio, target: EST_RSS_TARGET, pass, rounds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await runEstRssBench();
  process.exitCode = r.pass ? 0 : 1;
}
