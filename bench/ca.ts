// The CA part of `npm run bench`: issuance rate against bare WebCrypto, ledger
// cost at 100 against 100,000 rows, and CLI start-up, each as a ratio to a baseline.
import { randomBytes, webcrypto } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { CertificateAuthority } from "../ca/index.ts";
import { fillLedger, type LedgerShape } from "./fill.ts";
import {
  combineRates,
  interleaved,
  rateFor,
  rateInFlight,
  stats,
  timeCommands,
  type CommandTiming,
  type Rate,
  type Stats,
} from "./measure.ts";
import { cliStartupCost, printCliStartup, type CliStartup } from "./startup.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));

// Sized so the whole CA bench stays well under three minutes on two cores.
const RATE_ROUND_MS = 1_500; // section 1: two interleaved rounds per side and way
/** Section 1's target is read with this many issuances under way, as bench/est.ts's clients. */
const IN_FLIGHT = 8;
const WARMUP_MS = 500;
const SMALL_ROWS = 100;
const LARGE_ROWS = 100_000;
const OP_ROUNDS = 40; // section 2: issue and revoke samples per ledger size
const LIST_ROUNDS = 9;
const CLI_RUNS = 5;
const FLAT_TARGET = 2; // issue and revoke at 100,000 rows: at most 2× their cost at 100
const ISSUE_TARGET = 0.25; // issue 16: in-process issue at ≥ 25% of the crypto ceiling
const TMPFS = "/dev/shm";

/** ca.issue against the ceiling, both measured the same way (back to back, or IN_FLIGHT at once). */
export interface IssuanceSide {
  issue: Rate;
  ceiling: Rate;
  /** issue / ceiling: the share of the bare crypto rate the CA reaches. */
  ratio: number;
  /**
   * The same ca.issue with the CA's folder on tmpfs (/dev/shm), where fsync returns at once:
   * what issuing costs beyond the disk. Absent when there is no /dev/shm.
   */
  memory?: { issue: Rate; ratio: number; dir: string };
}

/**
 * Issue 16's target is read with IN_FLIGHT issuances under way and the ceiling measured with as
 * many key generations and signatures under way (the thread pool then uses both cores for
 * either); back to back, one at a time, is reported beside it.
 */
export interface IssuanceRate extends IssuanceSide {
  inFlight: number;
  /** Issue 16's target for that share. */
  target: number;
  pass: boolean;
  backToBack: IssuanceSide;
}

export interface OpScaling {
  op: "issue" | "revoke" | "list";
  small: Stats;
  large: Stats;
  /** large median / small median. */
  ratio: number;
  /** Only issue and revoke have a target: list reads every row by nature. */
  target?: number;
  pass?: boolean;
  /** list: the extra cost of one more row, from the two medians. */
  perRowUs?: number;
}

export interface CliScaling {
  command: string;
  small: CommandTiming;
  large: CommandTiming;
  ratio?: number;
}

export interface LedgerScaling {
  variant: string;
  description: string;
  small: LedgerShape;
  large: LedgerShape;
  fillSeconds: number;
  /** Rows ca.list() returned at the time list was measured (the ops above add some). */
  listedRows: { small: number; large: number };
  /** Entries in root-1's CRL after the last measured revoke. */
  crlEntries: { small: number; large: number };
  ops: OpScaling[];
  /** Absent for the variant that skips it. */
  cli?: CliScaling;
}

export interface CaBenchResult {
  issuanceRate: IssuanceRate;
  ledgerScaling: LedgerScaling[];
  cliStartup: CliStartup;
  seconds: number;
}

export async function runCaBench(): Promise<CaBenchResult> {
  const started = performance.now();
  const root = mkdtempSync(join(tmpdir(), "mtls-bench-ca-"));
  // A 100,000-row ledger is ~100 MB: do not leave it behind on Ctrl-C.
  const onInterrupt = () => {
    rmSync(root, { recursive: true, force: true });
    process.exit(130);
  };
  process.once("SIGINT", onInterrupt);
  try {
    console.log(`CA benchmark (node ${process.version}, temp dir ${root})`);
    console.log("Every ratio compares two numbers measured in this run; absolute times depend on the machine.\n");

    // The CA's own folder on tmpfs too, beside the disk one: the same code, without the fsyncs' cost.
    const memRoot = existsSync(TMPFS) ? mkdtempSync(join(TMPFS, "mtls-bench-ca-")) : undefined;
    let issuance: Awaited<ReturnType<typeof issuanceRate>>;
    try {
      issuance = await issuanceRate(join(root, "rate"), memRoot && join(memRoot, "rate"));
    } finally {
      if (memRoot) rmSync(memRoot, { recursive: true, force: true });
    }
    const { rate, samplePem } = issuance;
    printIssuanceRate(rate);

    console.log(
      `\n2. Ledger size: ${SMALL_ROWS} rows against ${LARGE_ROWS.toLocaleString("en")} rows (median per op, in-process unless marked CLI)`,
    );
    const variants: Variant[] = [
      {
        variant: "revoked-1pct",
        withCli: true,
        description: "1% of rows revoked, so root-1's CRL has ~1 entry at 100 rows and ~1,000 at 100,000",
        small: { rows: SMALL_ROWS, revoked: 1 },
        large: { rows: LARGE_ROWS, revoked: LARGE_ROWS / 100 },
      },
      {
        variant: "revoked-10",
        withCli: false, // CLI list does not depend on the CRL: timed once above
        description: "10 revoked rows at both sizes: the ledger's size alone",
        small: { rows: SMALL_ROWS, revoked: 10 },
        large: { rows: LARGE_ROWS, revoked: 10 },
      },
    ];
    const ledgerScaling: LedgerScaling[] = [];
    for (const v of variants) {
      const result = await ledgerScalingFor(join(root, v.variant), v, samplePem);
      printLedgerScaling(result);
      ledgerScaling.push(result);
    }

    const cliStartup = await cliStartupCost(join(root, "startup"));
    printCliStartup(cliStartup);

    const seconds = (performance.now() - started) / 1000;
    console.log(`\nCA bench took ${seconds.toFixed(0)} s.`);
    return { issuanceRate: rate, ledgerScaling, cliStartup, seconds };
  } finally {
    process.removeListener("SIGINT", onInterrupt);
    rmSync(root, { recursive: true, force: true });
  }
}

// --- 1. issuance rate ---------------------------------------------------------

export async function issuanceRate(dir: string, memDir?: string): Promise<{ rate: IssuanceRate; samplePem: string }> {
  const ca = await CertificateAuthority.init({ dir, name: "Bench Rate CA" });
  const mem = memDir ? await CertificateAuthority.init({ dir: memDir, name: "Bench Rate CA" }) : undefined;
  try {
    const first = await ca.issue({ domain: "template.rate.internal" });
    const samplePem = readFileSync(first.certPath, "utf8");

    // The ceiling: what issuing costs at the very least, a P-256 key pair and one ECDSA signature.
    const subtle = webcrypto.subtle;
    const tbs = randomBytes(300); // about the size of a leaf's to-be-signed part
    const ceiling = async () => {
      const keys = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
      await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, tbs);
    };
    let n = 0;
    const issue = () => ca.issue({ domain: `svc-${n++}.rate.internal` });
    const issueMem = () => mem!.issue({ domain: `svc-${n++}.rate.internal` });

    // Each side back to back (rateFor) and with IN_FLIGHT under way, in alternating order.
    const ways = [
      (fn: () => Promise<unknown>, ms: number) => rateFor(fn, ms),
      (fn: () => Promise<unknown>, ms: number) => rateInFlight(fn, ms, IN_FLIGHT),
    ];
    const sides = [ceiling, issue, ...(mem ? [issueMem] : [])];
    for (const way of ways) for (const side of sides) await way(side, WARMUP_MS);
    const rounds: Rate[][][] = ways.map(() => sides.map((): Rate[] => []));
    for (let round = 0; round < 2; round++) {
      const order = sides.map((_, i) => i);
      if (round === 1) order.reverse();
      for (const [w, way] of ways.entries())
        for (const i of order) rounds[w]![i]!.push(await way(sides[i]!, RATE_ROUND_MS));
    }
    const sideOf = (w: number): IssuanceSide => {
      const [ceilingRate, issueRate, memRate] = rounds[w]!.map(combineRates) as [Rate, Rate, Rate?];
      const side: IssuanceSide = {
        issue: issueRate,
        ceiling: ceilingRate,
        ratio: issueRate.perSec / ceilingRate.perSec,
      };
      if (memRate) side.memory = { issue: memRate, ratio: memRate.perSec / ceilingRate.perSec, dir: TMPFS };
      return side;
    };
    const inFlight = sideOf(1);
    const rate: IssuanceRate = {
      ...inFlight,
      inFlight: IN_FLIGHT,
      target: ISSUE_TARGET,
      pass: inFlight.ratio >= ISSUE_TARGET,
      backToBack: sideOf(0),
    };
    return { rate, samplePem };
  } finally {
    ca.close();
    mem?.close();
  }
}

// --- 2. ledger size -----------------------------------------------------------

async function filledCa(dir: string, shape: LedgerShape, pem: string): Promise<CertificateAuthority> {
  const ca = await CertificateAuthority.init({ dir, name: "Bench Ledger CA" });
  fillLedger(ca, shape, pem);
  return ca;
}

function crlEntries(ca: CertificateAuthority): number {
  return ca.ledger.revokedUnexpired("root-1", ca.now().toISOString()).length;
}

interface Variant {
  variant: string;
  description: string;
  small: LedgerShape;
  large: LedgerShape;
  withCli: boolean;
}

async function ledgerScalingFor(dir: string, v: Variant, pem: string): Promise<LedgerScaling> {
  const fillStart = performance.now();
  const small = await filledCa(join(dir, "small"), v.small, pem);
  const large = await filledCa(join(dir, "large"), v.large, pem);
  const fillSeconds = (performance.now() - fillStart) / 1000;
  const cas = [small, large];
  try {
    // Warm-up: loads the CA key into the signer cache, JIT-compiles, pulls the ledger into the page cache.
    for (const ca of cas) {
      for (let i = 0; i < 3; i++) {
        await ca.issue({ domain: `warm-${i}.bench.internal` });
        await ca.revoke({ domain: `warm-${i}.bench.internal` });
      }
      ca.list();
    }
    // Fresh names for issue; revoke then takes the same names back, so both CAs
    // gain the same rows and CRL entries and only the starting size differs.
    const name = (round: number) => `op-${round}.bench.internal`;
    const issue = await interleaved(
      cas.map((ca) => (round: number) => ca.issue({ domain: name(round) })),
      OP_ROUNDS,
    );
    const revoke = await interleaved(
      cas.map((ca) => (round: number) => ca.revoke({ domain: name(round) })),
      OP_ROUNDS,
    );
    const listedRows = { small: small.list().length, large: large.list().length };
    const list = await interleaved(
      cas.map((ca) => async () => ca.list()),
      LIST_ROUNDS,
    );

    const ops: OpScaling[] = [
      flat("issue", issue),
      flat("revoke", revoke),
      perRow(list, listedRows.large - listedRows.small),
    ];
    const cli = v.withCli ? cliList(small.layout.dir, large.layout.dir) : undefined;
    return {
      variant: v.variant,
      description: v.description,
      small: v.small,
      large: v.large,
      fillSeconds,
      listedRows,
      crlEntries: { small: crlEntries(small), large: crlEntries(large) },
      ops,
      cli,
    };
  } finally {
    for (const ca of cas) ca.close();
    rmSync(dir, { recursive: true, force: true }); // ~100 MB per large ledger
  }
}

function flat(op: "issue" | "revoke", samples: number[][]): OpScaling {
  const [small, large] = samples.map(stats) as [Stats, Stats];
  const ratio = large.median / small.median;
  return { op, small, large, ratio, target: FLAT_TARGET, pass: ratio <= FLAT_TARGET };
}

function perRow(samples: number[][], extraRows: number): OpScaling {
  const [small, large] = samples.map(stats) as [Stats, Stats];
  return {
    op: "list",
    small,
    large,
    ratio: large.median / small.median,
    perRowUs: ((large.median - small.median) / extraRows) * 1000,
  };
}

/** `list` spawned from the command line, start-up included, its table sent to /dev/null. */
function cliList(smallDir: string, largeDir: string): CliScaling {
  const args = (dir: string) => ["bin/ca.mjs", "list", "--dir", dir];
  const [small, large] = timeCommands(
    [
      { label: `${SMALL_ROWS} rows`, cmd: process.execPath, args: args(smallDir) },
      { label: `${LARGE_ROWS} rows`, cmd: process.execPath, args: args(largeDir) },
    ],
    CLI_RUNS,
    REPO,
  ) as [CommandTiming, CommandTiming];
  const ratio = small.stats && large.stats ? large.stats.median / small.stats.median : undefined;
  return { command: "node bin/ca.mjs list --dir X > /dev/null", small, large, ratio };
}

// --- the printed report -------------------------------------------------------

const ms = (v: number) => `${v < 1 ? v.toFixed(3) : v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`;
const times = (v: number) => `${v < 10 ? v.toFixed(2) : v.toFixed(0)}×`;
const count = (v: number) => v.toLocaleString("en");
const col = (cells: string[], widths: number[]) =>
  "   " +
  cells
    .map((c, i) => c.padEnd(widths[i] ?? 0))
    .join("  ")
    .trimEnd();
const timing = (t: CommandTiming) =>
  t.stats ? ms(t.stats.median) : `FAILED (exit ${t.failed!.status}: ${t.failed!.error})`;

export function printIssuanceRate(r: IssuanceRate): void {
  const w = [58, 16];
  console.log(
    `1. In-process issuance rate (fresh CA in a temp dir; ${r.inFlight} under way at once, then back to back)`,
  );
  const side = (s: IssuanceSide, how: string, target?: string) => {
    const line = (label: string, x: Rate, note: string) =>
      console.log(col([label, `${x.perSec.toFixed(1)} ops/s`, `(${ms(1000 / x.perSec)}/op${note})`], w));
    line(`ca.issue({domain}), ${how}`, s.issue, `, ${s.issue.ops} certs: key + sign + ledger + files`);
    line(`ceiling: WebCrypto P-256 generateKey + sign, ${how}`, s.ceiling, "");
    if (s.memory)
      line(`ca.issue, CA folder on tmpfs (${s.memory.dir}), ${how}`, s.memory.issue, ": fsync costs nothing there");
    console.log(
      col(
        [
          `ratio issue / ceiling, ${how}`,
          s.ratio.toFixed(3),
          `(${(s.ratio * 100).toFixed(1)}% of the bare crypto rate${target ?? ""})`,
        ],
        w,
      ),
    );
    if (s.memory)
      console.log(
        col(
          [
            `ratio issue on tmpfs / ceiling, ${how}`,
            s.memory.ratio.toFixed(3),
            "(what issuing costs beyond the disk's fsyncs)",
          ],
          w,
        ),
      );
  };
  side(r, `${r.inFlight} in flight`, `; target ≥ ${r.target}: ${r.pass ? "PASS" : "FAIL"}`);
  side(r.backToBack, "back to back");
}

function printLedgerScaling(s: LedgerScaling): void {
  console.log(`\n   ${s.variant}: ${s.description}`);
  console.log(
    `   (filled in ${s.fillSeconds.toFixed(1)} s; CRL after the runs: ${count(s.crlEntries.small)} vs ${count(s.crlEntries.large)} entries)`,
  );
  const w = [10, 12, 14, 8];
  console.log(col(["op", `${SMALL_ROWS} rows`, `${count(LARGE_ROWS)} rows`, "ratio", "target"], w));
  for (const o of s.ops) {
    const verdict =
      o.target !== undefined
        ? `≤ ${o.target}×  ${o.pass ? "PASS" : "FAIL"}`
        : `O(rows): ${o.perRowUs!.toFixed(2)} µs/row (${count(s.listedRows.small)} vs ${count(s.listedRows.large)} rows listed)`;
    console.log(col([o.op, ms(o.small.median), ms(o.large.median), times(o.ratio), verdict], w));
  }
  const c = s.cli;
  if (c)
    console.log(
      col(["CLI list", timing(c.small), timing(c.large), c.ratio !== undefined ? times(c.ratio) : "—", c.command], w),
    );
}
