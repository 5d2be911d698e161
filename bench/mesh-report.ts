// The mesh bench's arithmetic and tables: the mesh against each baseline round by round,
// the verdict against the 10% targets, and whether a server's RSS kept growing.

/** One load run against one server, as bench/mesh-load.ts prints it, plus the server's CPU. */
export interface Sample {
  ok: number;
  errors: number;
  seconds: number;
  rate: number;
  p50: number;
  p99: number;
  cpuUsPerReq: number;
}

export type Metric = "rate" | "cpuUsPerReq" | "p50" | "p99";
const METRICS: readonly Metric[] = ["rate", "cpuUsPerReq", "p50", "p99"];

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface PhaseSummary extends Record<Metric, number> {
  name: string;
  ok: number;
  errors: number;
  /** Each round's rate, to see how much the machine moved under the bench. */
  roundRates: number[];
}

export interface PhaseRatios {
  phase: string;
  /** What identity caching itself costs: near 1, or the machine is noisier than the effect. */
  identityVsBare: Record<Metric, Spread>;
  meshVsBare: Record<Metric, Spread>;
  meshVsIdentity: Record<Metric, Spread>;
  /** mesh ÷ ident with both loaded at the same moment: what the verdict is taken from. */
  sideBySide: Record<Metric, Spread>;
}

export interface TargetCheck {
  ratio: Spread;
  limit: number;
  pass: boolean;
  /** Some rounds fell on the other side of the limit: the verdict is within the noise. */
  unsure: boolean;
}

export interface Verdict {
  phase: string;
  rate: TargetCheck;
  cpu: TargetCheck;
  pass: boolean;
}

export interface RssReport {
  server: string;
  idleMb: number;
  afterRoundsMb: number[];
  /** Idle → after the last round: buffers, JIT code and TLS state a loaded server keeps. */
  loadGrowthMb: number;
  /** After the first round → after the last: what a leak would look like. */
  roundsGrowthMb: number;
  grew: boolean;
}

/** The targets, against the bare server with identity cached per socket. */
export const TARGETS = { minRate: 0.9, maxCpu: 1.1 } as const;
/** RSS moves by a few MB between rounds for any Node server (V8, allocator): more is growth. */
const RSS_SLACK_MB = 5;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function summarise(name: string, rounds: Sample[]): PhaseSummary {
  const of = (m: Metric) => median(rounds.map((r) => r[m]));
  return {
    name,
    ok: rounds.reduce((a, r) => a + r.ok, 0),
    errors: rounds.reduce((a, r) => a + r.errors, 0),
    rate: of("rate"),
    cpuUsPerReq: of("cpuUsPerReq"),
    p50: of("p50"),
    p99: of("p99"),
    roundRates: rounds.map((r) => r.rate),
  };
}

/**
 * a ÷ b per round, then the median and range. The two servers of a round ran back to back,
 * so a slow patch on the machine mostly cancels within a pair; a ratio of medians would not.
 */
function paired(a: Sample[], b: Sample[], m: Metric): Spread {
  const rs = a.map((x, i) => x[m] / b[i]![m]).filter(Number.isFinite);
  if (rs.length === 0) return { median: NaN, min: NaN, max: NaN };
  return { median: median(rs), min: Math.min(...rs), max: Math.max(...rs) };
}

const allPaired = (a: Sample[], b: Sample[]) =>
  Object.fromEntries(METRICS.map((m) => [m, paired(a, b, m)])) as Record<Metric, Spread>;

export function ratios(
  phase: string,
  s: { bare: Sample[]; identity: Sample[]; mesh: Sample[] },
  together: { identity: Sample[]; mesh: Sample[] },
): PhaseRatios {
  return {
    phase,
    identityVsBare: allPaired(s.identity, s.bare),
    meshVsBare: allPaired(s.mesh, s.bare),
    meshVsIdentity: allPaired(s.mesh, s.identity),
    sideBySide: allPaired(together.mesh, together.identity),
  };
}

/**
 * Rate must stay at or above 90% of the identity baseline's, CPU per request at or below 110%,
 * judged on the side-by-side rounds: back-to-back rounds on this machine swing by ±30%.
 */
export function verdict(r: PhaseRatios): Verdict {
  const rate = r.sideBySide.rate;
  const cpu = r.sideBySide.cpuUsPerReq;
  const ratePass = rate.median >= TARGETS.minRate;
  const cpuPass = cpu.median <= TARGETS.maxCpu;
  return {
    phase: r.phase,
    rate: {
      ratio: rate,
      limit: TARGETS.minRate,
      pass: ratePass,
      unsure: ratePass ? rate.min < TARGETS.minRate : rate.max >= TARGETS.minRate,
    },
    cpu: {
      ratio: cpu,
      limit: TARGETS.maxCpu,
      pass: cpuPass,
      unsure: cpuPass ? cpu.max > TARGETS.maxCpu : cpu.min <= TARGETS.maxCpu,
    },
    pass: ratePass && cpuPass,
  };
}

export function rssReport(server: string, rss: number[]): RssReport {
  const [idleMb = 0, ...afterRoundsMb] = rss;
  const first = afterRoundsMb[0] ?? idleMb;
  const last = afterRoundsMb.at(-1) ?? idleMb;
  const roundsGrowthMb = round1(last - first);
  return {
    server,
    idleMb,
    afterRoundsMb,
    loadGrowthMb: round1(last - idleMb),
    roundsGrowthMb,
    grew: roundsGrowthMb > RSS_SLACK_MB,
  };
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
const signed = (n: number) => `${n >= 0 ? "+" : ""}${n}`;
const cols = (xs: string[], w: number) => xs.map((x) => x.padStart(w)).join("");

export function printTables(
  phases: PhaseSummary[][],
  rs: PhaseRatios[],
  vs: Verdict[],
  rounds: number,
  pairedRounds: number,
): void {
  const [bare, identity, mesh] = phases as [PhaseSummary[], PhaseSummary[], PhaseSummary[]];
  const W = 30;
  console.log(`\nmedians of ${rounds} rounds (bare = no identity work, ident = CN cached per socket, mesh = payment)`);
  console.log(
    `${"".padEnd(W)}${"rate /s".padStart(21)}  ${"server CPU µs/req".padStart(21)}  ${"p50 ms".padStart(21)}  ${"p99 ms".padStart(21)}`,
  );
  console.log(`${"phase".padEnd(W)}${[0, 1, 2, 3].map(() => cols(["bare", "ident", "mesh"], 7)).join("  ")}`);
  for (const [i, b] of bare.entries()) {
    const row = (m: Metric, d: number) =>
      cols(
        [b, identity[i]!, mesh[i]!].map((p) => f(p[m], d)),
        7,
      );
    console.log(`${b.name.padEnd(W)}${row("rate", 0)}  ${row("cpuUsPerReq", 0)}  ${row("p50", 2)}  ${row("p99", 1)}`);
  }

  console.log(`\nratios, median of per-round ratios (i/b = ident÷bare, m/b = mesh÷bare, m/i = mesh÷ident)`);
  console.log(
    `${"".padEnd(W)}${"rate".padStart(18)}  ${"CPU µs/req".padStart(18)}  ${"p50".padStart(12)}  ${"p99".padStart(12)}`,
  );
  console.log(
    `${"phase".padEnd(W)}${cols(["i/b", "m/b", "m/i"], 6)}  ${cols(["i/b", "m/b", "m/i"], 6)}  ${cols(["m/b", "m/i"], 6)}  ${cols(["m/b", "m/i"], 6)}`,
  );
  for (const r of rs) {
    const three = (m: Metric) =>
      cols(
        [r.identityVsBare[m], r.meshVsBare[m], r.meshVsIdentity[m]].map((x) => f(x.median, 2)),
        6,
      );
    const two = (m: Metric) =>
      cols(
        [r.meshVsBare[m], r.meshVsIdentity[m]].map((x) => f(x.median, 2)),
        6,
      );
    console.log(`${r.phase.padEnd(W)}${three("rate")}  ${three("cpuUsPerReq")}  ${two("p50")}  ${two("p99")}`);
  }

  console.log(
    `\ntargets against the identity-cached baseline: rate ≥ ${TARGETS.minRate.toFixed(2)}×, server CPU per request ≤ ${TARGETS.maxCpu.toFixed(2)}×,`,
  );
  console.log(
    `judged side by side (ident and mesh loaded at the same moment, ${pairedRounds} rounds; the back-to-back m/i above is for comparison)`,
  );
  const check = (c: TargetCheck) =>
    `${f(c.ratio.median, 2)} (rounds ${f(c.ratio.min, 2)}–${f(c.ratio.max, 2)}) ${c.pass ? "PASS" : "FAIL"}${c.unsure ? "?" : " "}`;
  for (const v of vs)
    console.log(
      `${v.phase.padEnd(W)}rate ${check(v.rate).padEnd(27)}  CPU ${check(v.cpu).padEnd(27)}  ${v.pass ? "PASS" : "FAIL"}`,
    );
  if (vs.some((v) => v.rate.unsure || v.cpu.unsure))
    console.log(`(? = some rounds fell on the other side of the limit: within this run's noise)`);
}

export function printRss(reports: RssReport[]): void {
  console.log(`\nRSS (MB): idle, then after each round`);
  for (const r of reports) {
    const grew = r.grew
      ? `GREW ${signed(r.roundsGrowthMb)} MB from the first round to the last`
      : `steady across rounds (${signed(r.roundsGrowthMb)} MB, first → last)`;
    console.log(
      `${r.server.padEnd(6)} ${String(r.idleMb).padStart(6)} → ${r.afterRoundsMb.map((x) => String(x).padStart(6)).join("")}   ${signed(r.loadGrowthMb)} MB over idle; ${grew}`,
    );
  }
}
