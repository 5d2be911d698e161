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
  stats,
  timeCommands,
  type CommandTiming,
  type Rate,
  type Stats,
} from "./measure.ts";
import { cliStartupCost, printCliStartup, type CliStartup } from "./startup.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));

// Sized so the whole CA bench stays well under three minutes on two cores.
const RATE_ROUND_MS = 2_000; // section 1: two interleaved rounds per side
const WARMUP_MS = 500;
const SMALL_ROWS = 100;
const LARGE_ROWS = 100_000;
const OP_ROUNDS = 40; // section 2: issue and revoke samples per ledger size
const LIST_ROUNDS = 9;
const CLI_RUNS = 5;
const FLAT_TARGET = 2; // issue and revoke at 100,000 rows: at most 2× their cost at 100
const ISSUE_TARGET = 0.25; // issue 16: in-process issue at ≥ 25% of the crypto ceiling
const TMPFS = "/dev/shm";

export interface IssuanceRate {
  issue: Rate;
  ceiling: Rate;
  /** issue / ceiling: the share of the bare crypto rate the CA reaches. */
  ratio: number;
  /** Issue 16's target for that share. */
  target: number;
  pass: boolean;
  /**
   * The same ca.issue with the CA's folder on tmpfs (/dev/shm), where fsync returns at once:
   * what issuing costs beyond the disk. Absent when there is no /dev/shm.
   */
  memory?: { issue: Rate; ratio: number; dir: string };
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

    await rateFor(ceiling, WARMUP_MS);
    await rateFor(issue, WARMUP_MS);
    if (mem) await rateFor(issueMem, WARMUP_MS);
    const ceilingRounds: Rate[] = [];
    const issueRounds: Rate[] = [];
    const memRounds: Rate[] = [];
    for (let round = 0; round < 2; round++) {
      ceilingRounds.push(await rateFor(ceiling, RATE_ROUND_MS));
      issueRounds.push(await rateFor(issue, RATE_ROUND_MS));
      if (mem) memRounds.push(await rateFor(issueMem, RATE_ROUND_MS));
    }
    const issueRate = combineRates(issueRounds);
    const ceilingRate = combineRates(ceilingRounds);
    const ratio = issueRate.perSec / ceilingRate.perSec;
    const rate: IssuanceRate = {
      issue: issueRate,
      ceiling: ceilingRate,
      ratio,
      target: ISSUE_TARGET,
      pass: ratio >= ISSUE_TARGET,
    };
    if (mem) {
      const memRate = combineRates(memRounds);
      rate.memory = { issue: memRate, ratio: memRate.perSec / ceilingRate.perSec, dir: TMPFS };
    }
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
  const w = [48, 14];
  console.log("1. In-process issuance rate (back to back, fresh CA in a temp dir)");
  console.log(
    col(
      [
        "ca.issue({domain}): key + sign + ledger + files",
        `${r.issue.perSec.toFixed(1)} ops/s`,
        `(${ms(1000 / r.issue.perSec)}/op, ${r.issue.ops} certs)`,
      ],
      w,
    ),
  );
  console.log(
    col(
      [
        "ceiling: WebCrypto P-256 generateKey + sign",
        `${r.ceiling.perSec.toFixed(1)} ops/s`,
        `(${ms(1000 / r.ceiling.perSec)}/op)`,
      ],
      w,
    ),
  );
  if (r.memory)
    console.log(
      col(
        [
          `the same, the CA's folder on tmpfs (${r.memory.dir})`,
          `${r.memory.issue.perSec.toFixed(1)} ops/s`,
          `(${ms(1000 / r.memory.issue.perSec)}/op: fsync costs nothing there)`,
        ],
        w,
      ),
    );
  console.log(
    col(
      [
        "ratio issue / ceiling",
        r.ratio.toFixed(3),
        `(the CA issues at ${(r.ratio * 100).toFixed(1)}% of the bare crypto rate; target ≥ ${r.target}: ${r.pass ? "PASS" : "FAIL"})`,
      ],
      w,
    ),
  );
  if (r.memory)
    console.log(
      col(
        [
          "ratio issue on tmpfs / ceiling",
          r.memory.ratio.toFixed(3),
          "(what issuing costs beyond the disk's fsyncs: the certificate path, ledger and files)",
        ],
        w,
      ),
    );
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
