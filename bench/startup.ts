// CLI start-up: `list` and `status` from the compiled bundle (bin/ca.mjs) against `node -e 0`,
// alternating in the same run, with the issue's target; tsx and npm shown beside them.
// Alone: `npx tsx bench/startup.ts`.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CertificateAuthority } from "../ca/index.ts";
import { stats, timeCommands, type CommandTiming, type Stats } from "./measure.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
export const STARTUP_RUNS = 11;
/** Issue 8: list and status within 3× a bare `node -e 0`. */
export const STARTUP_TARGET = 3;
const CERTS = 20;

export interface StartupCommand {
  timing: CommandTiming;
  /** Median over rounds of this round's command ÷ this round's `node -e 0`. */
  ratio?: number;
  range?: [number, number];
  overheadMs?: number;
  target?: number;
  pass?: boolean;
}

export interface CliStartup {
  baseline: CommandTiming;
  commands: StartupCommand[];
  pass: boolean;
}

/** Times each command against node -e 0 in alternating rounds; the first run of each (a warm-up) also rebuilds a stale bundle. */
export async function cliStartupCost(dir?: string): Promise<CliStartup> {
  const root = dir ?? mkdtempSync(join(tmpdir(), "mtls-bench-startup-"));
  try {
    const ca = await CertificateAuthority.init({ dir: join(root, "pki"), name: "Bench Startup CA" });
    for (let i = 0; i < CERTS; i++) await ca.issue({ domain: `svc${i}.startup.internal` });
    const pki = ca.layout.dir;
    ca.close();
    const node = process.execPath;
    const plan = [
      { label: "node -e 0", cmd: node, args: ["-e", "0"] },
      {
        label: "node bin/ca.mjs list --dir <pki>",
        cmd: node,
        args: ["bin/ca.mjs", "list", "--dir", pki],
        target: STARTUP_TARGET,
      },
      {
        label: "node bin/ca.mjs status --dir <pki>",
        cmd: node,
        args: ["bin/ca.mjs", "status", "--dir", pki],
        target: STARTUP_TARGET,
      },
      {
        label: "node --import tsx ca/cli.ts list --dir <pki>",
        cmd: node,
        args: ["--import", "tsx", "ca/cli.ts", "list", "--dir", pki],
      },
      { label: "npm run ca -- list --dir <pki>", cmd: "npm", args: ["run", "ca", "--", "list", "--dir", pki] },
    ];
    const [baseline, ...timings] = timeCommands(plan, STARTUP_RUNS, REPO) as [CommandTiming, ...CommandTiming[]];
    const commands = timings.map((timing, i): StartupCommand => {
      const target = plan[i + 1]!.target;
      if (!timing.samples || !baseline.samples)
        return { timing, target, pass: target === undefined ? undefined : false };
      const perRound: Stats = stats(timing.samples.map((t, r) => t / baseline.samples![r]!));
      return {
        timing,
        ratio: perRound.median,
        range: [perRound.min, perRound.max],
        overheadMs: timing.stats!.median - baseline.stats!.median,
        target,
        pass: target === undefined ? undefined : perRound.median <= target,
      };
    });
    return { baseline, commands, pass: commands.every((c) => c.pass !== false) };
  } finally {
    if (!dir) rmSync(root, { recursive: true, force: true });
  }
}

const ms = (v: number) => `${v.toFixed(1)} ms`;

export function printCliStartup(s: CliStartup): void {
  console.log(
    `\n3. CLI start-up: wall time of one command against node -e 0, alternating (median of ${STARTUP_RUNS} rounds, ${CERTS} certificates)`,
  );
  console.log(`   ${"command".padEnd(46)}${"median".padEnd(11)}${"÷ node -e 0 (rounds)".padEnd(24)}target`);
  console.log(
    `   ${s.baseline.label.padEnd(46)}${(s.baseline.stats ? ms(s.baseline.stats.median) : "FAILED").padEnd(11)}1.00`,
  );
  for (const c of s.commands) {
    const t = c.timing;
    const median = t.stats ? ms(t.stats.median) : `FAILED (exit ${t.failed!.status}: ${t.failed!.error})`;
    const ratio =
      c.ratio !== undefined ? `${c.ratio.toFixed(2)} (${c.range![0].toFixed(2)}–${c.range![1].toFixed(2)})` : "—";
    const verdict = c.target === undefined ? "" : `≤ ${c.target}×  ${c.pass ? "PASS" : "FAIL"}`;
    console.log(`   ${t.label.padEnd(46)}${median.padEnd(11)}${ratio.padEnd(24)}${verdict}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await cliStartupCost();
  printCliStartup(r);
  if (!r.pass) process.exitCode = 1;
}
