// Timing helpers shared by the benchmarks: samples, medians, time-boxed rates
// and wall time of spawned commands. Only relative numbers are meant to be read.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

/** A summary of timing samples, in milliseconds. */
export interface Stats {
  n: number;
  median: number;
  min: number;
  max: number;
}

export function stats(samples: number[]): Stats {
  if (samples.length === 0) throw new Error("no samples to summarise");
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { n: sorted.length, median, min: sorted[0]!, max: sorted.at(-1)! };
}

/** Milliseconds one call of fn takes. */
export async function timeOnce(fn: () => unknown): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

export interface Rate {
  ops: number;
  seconds: number;
  perSec: number;
}

/**
 * Calls fn back to back (never concurrently: as one CLI command issues; rateInFlight for several) for
 * at least durationMs and returns how many calls completed per second.
 */
export function rateFor(fn: () => Promise<unknown>, durationMs: number): Promise<Rate> {
  return rateInFlight(fn, durationMs, 1);
}

/**
 * The same with `inFlight` calls under way at every moment (a new one starts as one ends), as
 * a server's clients or a caller issuing several certificates at once use it.
 */
export async function rateInFlight(fn: () => Promise<unknown>, durationMs: number, inFlight: number): Promise<Rate> {
  let ops = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        await fn();
        ops++;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  return { ops, seconds, perSec: ops / seconds };
}

/** Adds up rounds of the same measurement (taken interleaved with another) into one rate. */
export function combineRates(rounds: Rate[]): Rate {
  const ops = rounds.reduce((s, r) => s + r.ops, 0);
  const seconds = rounds.reduce((s, r) => s + r.seconds, 0);
  return { ops, seconds, perSec: ops / seconds };
}

/**
 * Runs several measurements in alternating rounds (A B, B A, A B, …) so that
 * drift — a warming disk cache, another process waking up — falls on all of
 * them alike instead of on whichever ran last. Returns the samples per task.
 */
export async function interleaved(tasks: ((round: number) => Promise<unknown>)[], rounds: number): Promise<number[][]> {
  const samples = tasks.map((): number[] => []);
  for (let round = 0; round < rounds; round++) {
    const order = tasks.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) samples[i]!.push(await timeOnce(() => tasks[i]!(round)));
  }
  return samples;
}

export interface CommandRun {
  ms: number;
  status: number | null;
  /** The last line the command wrote to stderr, to explain a failure. */
  lastError: string;
}

/**
 * Wall time of one command, start-up included; stdout goes to /dev/null.
 * spawnSync blocks this process on purpose: nothing else runs meanwhile.
 */
export function runCommand(cmd: string, args: string[], cwd: string): CommandRun {
  const start = performance.now();
  const r = spawnSync(cmd, args, {
    cwd,
    stdio: ["ignore", "ignore", "pipe"],
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
  });
  const ms = performance.now() - start;
  if (r.error) throw r.error;
  const lines = (r.stderr ?? "")
    .trim()
    .split("\n")
    .filter((l) => l.trim() !== "");
  return { ms, status: r.status, lastError: lines.at(-1) ?? "" };
}

export interface CommandTiming {
  label: string;
  /** Present when every measured run exited 0. */
  stats?: Stats;
  /** Each measured run's wall time in ms, in round order: round i of every command ran side by side. */
  samples?: number[];
  failed?: { status: number | null; error: string };
}

/** Times each command `runs` times after one warm-up run, interleaved like interleaved(). */
export function timeCommands(
  commands: { label: string; cmd: string; args: string[] }[],
  runs: number,
  cwd: string,
): CommandTiming[] {
  const samples = commands.map((): CommandRun[] => []);
  for (const c of commands) runCommand(c.cmd, c.args, cwd); // warm-up: file cache, tsx's transform cache
  for (let round = 0; round < runs; round++) {
    const order = commands.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) samples[i]!.push(runCommand(commands[i]!.cmd, commands[i]!.args, cwd));
  }
  return commands.map((c, i) => {
    const bad = samples[i]!.find((r) => r.status !== 0);
    if (bad) return { label: c.label, failed: { status: bad.status, error: bad.lastError } };
    return { label: c.label, stats: stats(samples[i]!.map((r) => r.ms)), samples: samples[i]!.map((r) => r.ms) };
  });
}

/**
 * When a server's memory is "at rest": after start, until start-up's garbage is collected. V8's
 * memory reducer runs its first memory-reducing GC about 8 s after start, which gives back what
 * start-up grew (`ca serve` and a bare server lose 1.3–4 MB then: measured every second for 20 s,
 * flat before 8 s and after 10 s). At 1–3 s a server is measured mid-transient.
 */
export const RSS_SETTLE_MS = 12_000;

/** A process's resident memory now, MB to 0.1 (Linux: /proc/<pid>/status); NaN when it cannot be read. */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 102.4) / 10 : Number.NaN;
}
