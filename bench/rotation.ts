// The rotation benchmark (issue 4): how soon a certificate or trust change on disk is in force
// (hot-reload latency), and the longest wait between successes while the mesh rotates its root.
import { readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runDrill, type DrillReport, type PhaseName } from "../scripts/drill/drill.ts";
import { parseEventLine } from "../lib/events.ts";
import { stats } from "./measure.ts";

const RATE = 50;
const DWELL_MS = 1_500;
/** services/mesh/reload.ts waits this long after the last file event before reloading: no reload can beat it. */
const DEBOUNCE_MS = 150;
const INTERVAL_MS = 1000 / RATE;

export interface Latency {
  n: number;
  medianMs: number;
  maxMs: number;
  medianVsDebounce: number;
  maxVsDebounce: number;
}

export interface RotationBenchResult {
  rate: number;
  dwellMs: number;
  debounceMs: number;
  requestIntervalMs: number;
  loadAverage: { before: number; after: number };
  /** CA write → first new handshake that shows the new certificate (the drill's effectMs). */
  certificate: Latency;
  /**
   * CA write → the service's tls.reloaded line for the same changes (reloadMs). The drill probes
   * for the new certificate only once that line has reached it through the service's log buffer
   * (flushed every 100 ms), so effectMs can exceed the true latency by up to that plus its 25 ms poll.
   */
  certificateReload: Latency;
  /** CA write → the service's tls.reloaded line for a new bundle or CRL set (the drill's reloadMs). */
  trust: Latency;
  gaps: {
    baselineMs: number;
    /** The longest over the safe phases after the baseline (trust-both, reissue, drop-old, proof). */
    safeRotationMs: number;
    safeRotationPhase: string;
    vsBaseline: number;
    vsInterval: number;
  };
  /** orderMedianMs: how long order took to answer, from its own request log lines (a cold mesh is slow). */
  phases: Array<{
    name: PhaseName;
    safe: boolean;
    sent: number;
    succeeded: number;
    failed: number;
    longestGapMs: number;
    orderMedianMs: number | null;
  }>;
  safeFailures: number;
  drillOk: boolean;
  failedChecks: string[];
}

function latency(ms: number[]): Latency {
  if (ms.length === 0) throw new Error("the drill reported no reload of this kind");
  const s = stats(ms);
  return {
    n: s.n,
    medianMs: s.median,
    maxMs: s.max,
    medianVsDebounce: s.median / DEBOUNCE_MS,
    maxVsDebounce: s.max / DEBOUNCE_MS,
  };
}

/**
 * The drill's folder is a fresh mkdtemp (…/mesh-drill-XXXX holding pki/ and logs/). Removed only
 * when it looks like one, so a drill that someday puts its CA elsewhere cannot make this delete it.
 */
function removeDrillDir(pki: string): void {
  const work = dirname(resolve(pki));
  if (basename(work).startsWith("mesh-drill-") && dirname(work) === resolve(tmpdir()))
    rmSync(work, { recursive: true, force: true });
  else console.log(`left the drill's folder in place (not a temporary drill folder): ${work}`);
}

/**
 * Median time order took per successful POST /orders, per phase, from its log (`request` lines
 * carry `ms`). It shows what the traffic's gaps alone cannot: whether the mesh was still warming up.
 */
function orderMedians(r: DrillReport): Map<PhaseName, number> {
  let text = "";
  try {
    text = readFileSync(join(r.logs, "order.log"), "utf8");
  } catch {
    return new Map();
  }
  const answers: Array<{ at: number; ms: number }> = [];
  for (const raw of text.split("\n")) {
    if (!raw.includes('"event":"request"')) continue;
    const l = parseEventLine(raw); // undefined for a torn last line
    if (l?.event === "request" && l.path === "/orders" && l.status === 201 && l.ms !== undefined)
      answers.push({ at: Date.parse(l.time), ms: l.ms });
  }
  const out = new Map<PhaseName, number>();
  for (const p of r.phases) {
    const from = Date.parse(p.startedAt);
    const ms = answers.filter((a) => a.at >= from && a.at < from + p.ms).map((a) => a.ms);
    if (ms.length > 0) out.set(p.name, stats(ms).median);
  }
  return out;
}

function summarise(r: DrillReport, loadBefore: number): RotationBenchResult {
  const served = r.reloads.filter((x) => x.what === "certificate" && x.effectMs !== undefined);
  const certificate = latency(served.map((x) => x.effectMs!));
  const certificateReload = latency(served.map((x) => x.reloadMs));
  const trust = latency(r.reloads.filter((x) => x.what === "trust").map((x) => x.reloadMs));
  const baseline = r.phases.find((p) => p.name === "baseline");
  if (!baseline) throw new Error("the drill reported no baseline phase");
  const rotation = r.phases.filter((p) => p.safe && p.name !== "baseline");
  const order = orderMedians(r);
  const worst = rotation.reduce((a, p) => (p.longestGapMs > a.longestGapMs ? p : a), rotation[0]!);
  return {
    rate: RATE,
    dwellMs: DWELL_MS,
    debounceMs: DEBOUNCE_MS,
    requestIntervalMs: INTERVAL_MS,
    loadAverage: { before: loadBefore, after: loadavg()[0]! },
    certificate,
    certificateReload,
    trust,
    gaps: {
      baselineMs: baseline.longestGapMs,
      safeRotationMs: worst.longestGapMs,
      safeRotationPhase: worst.name,
      vsBaseline: worst.longestGapMs / baseline.longestGapMs,
      vsInterval: worst.longestGapMs / INTERVAL_MS,
    },
    phases: r.phases.map((p) => ({
      name: p.name,
      safe: p.safe,
      sent: p.sent,
      succeeded: p.succeeded,
      failed: p.failed,
      longestGapMs: p.longestGapMs,
      orderMedianMs: order.get(p.name) ?? null,
    })),
    safeFailures: r.phases.filter((p) => p.safe).reduce((a, p) => a + p.failed, 0),
    drillOk: r.ok,
    failedChecks: r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`),
  };
}

function print(b: RotationBenchResult): void {
  const f = (n: number, d = 0) => n.toFixed(d);
  const row = (label: string, l: Latency) =>
    `${label.padEnd(44)}${String(l.n).padStart(3)}${f(l.medianMs).padStart(8)}${f(l.maxMs).padStart(8)}${f(l.medianVsDebounce, 2).padStart(11)}${f(l.maxVsDebounce, 2).padStart(9)}`;
  console.log(`\nhot-reload latency, CA write → in force (floor: the ${DEBOUNCE_MS} ms reload debounce)`);
  console.log(
    `${"change".padEnd(44)}${"n".padStart(3)}${"median".padStart(8)}${"max".padStart(8)}${"median÷150".padStart(11)}${"max÷150".padStart(9)}`,
  );
  console.log(row("certificate (first new handshake serving it)", b.certificate));
  console.log(row("  the same changes, to tls.reloaded", b.certificateReload));
  console.log(row("trust bundle / CRLs (tls.reloaded)", b.trust));

  console.log(
    `\n${"phase".padEnd(12)}${"safe".padEnd(6)}${"sent".padStart(6)}${"ok".padStart(6)}${"failed".padStart(8)}${"longest gap ms".padStart(16)}${"order answers, median ms".padStart(26)}`,
  );
  for (const p of b.phases) {
    const med = p.orderMedianMs === null ? "-" : f(p.orderMedianMs, 1);
    console.log(
      `${p.name.padEnd(12)}${(p.safe ? "yes" : "no").padEnd(6)}${String(p.sent).padStart(6)}${String(p.succeeded).padStart(6)}${String(p.failed).padStart(8)}${String(p.longestGapMs).padStart(16)}${med.padStart(26)}`,
    );
  }
  const g = b.gaps;
  console.log(
    `longest gap between successes in the safe rotation: ${g.safeRotationMs} ms (${g.safeRotationPhase}) = ${f(g.vsBaseline, 2)}× the baseline phase's ${g.baselineMs} ms, ${f(g.vsInterval, 1)}× the request interval (${INTERVAL_MS} ms at ${RATE}/s)`,
  );
  console.log(
    `failed requests in safe phases: ${b.safeFailures} ${b.safeFailures === 0 ? "PASS" : "FAIL (must be 0)"}`,
  );
  console.log(b.drillOk ? "drill checks: all passed" : `drill checks FAILED: ${b.failedChecks.join("; ")}`);
}

export async function runRotationBench(): Promise<RotationBenchResult> {
  const loadBefore = loadavg()[0]!;
  console.log(
    `\nrotation bench: the rotation drill at ${RATE} orders/s, ${DWELL_MS} ms per phase; load average ${loadBefore.toFixed(1)}`,
  );
  // The drill's progress lines are kept for a failure; its first one names its CA folder.
  const said: string[] = [];
  let report: DrillReport;
  try {
    report = await runDrill({ rate: RATE, dwellMs: DWELL_MS, say: (l) => said.push(l) });
  } catch (e) {
    console.log(said.slice(-10).join("\n"));
    const pki = /^CA in (.+): generation /.exec(said[0] ?? "")?.[1];
    if (pki) removeDrillDir(pki);
    throw e;
  }
  try {
    const b = summarise(report, loadBefore);
    print(b);
    console.log(`load average ${b.loadAverage.before.toFixed(1)} before, ${b.loadAverage.after.toFixed(1)} after`);
    return b;
  } finally {
    removeDrillDir(report.dir);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await runRotationBench();
