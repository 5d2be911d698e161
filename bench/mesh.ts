// The mesh benchmark: the payment service against a bare Node https server with the same
// certificates and client-certificate verification, measured in the same run, each
// server pinned to core 0 and the load client to core 1. Only the ratios are meant to be read.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, existsSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CertificateAuthority } from "../ca/index.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TICK_US = 1_000_000 / Number(spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim() || 100);
const HAS_TASKSET = spawnSync("taskset", ["-c", "0", "true"]).status === 0;

interface Load {
  ok: number;
  errors: number;
  seconds: number;
  rate: number;
  p50: number;
  p99: number;
}

interface Phase extends Load {
  name: string;
  cpuUsPerReq: number;
}

interface ServerRun {
  server: string;
  phases: Phase[];
  rssIdleMb: number;
  rssAfterFirstMb: number; // after the first round of every phase
  rssAfterMb: number; // after the last round
}

function pinned(core: number, args: string[]): [string, string[]] {
  return HAS_TASKSET ? ["taskset", ["-c", String(core), ...args]] : [args[0]!, args.slice(1)];
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return Number(rest[11]) + Number(rest[12]); // utime + stime, fields 14 and 15
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 102.4) / 10 : 0;
}

/** Start a server pinned to core 0; its stdout goes to a file we poll for `listening`. */
async function startServer(args: string[], logFile: string): Promise<{ proc: ChildProcess; port: number; pid: number }> {
  const out = openSync(logFile, "w");
  const [cmd, argv] = pinned(0, [process.execPath, "--import", "tsx", ...args]);
  const proc = spawn(cmd, argv, { cwd: ROOT, stdio: ["ignore", out, "inherit"] });
  closeSync(out);
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const m = /"event":"listening"[^\n]*?"port":(\d+)/.exec(existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
    if (m) return { proc, port: Number(m[1]), pid: proc.pid! }; // taskset execs node: same pid
  }
  proc.kill("SIGKILL");
  throw new Error(`server ${args.join(" ")} did not start`);
}

function runLoad(mode: "conn" | "ka", port: number, pki: string, conns: number, seconds: number): Load {
  const [cmd, argv] = pinned(1, [process.execPath, "--import", "tsx", "bench/mesh-load.ts", mode, String(port), pki, String(conns), String(seconds)]);
  const r = spawnSync(cmd, argv, { cwd: ROOT, encoding: "utf8", timeout: (seconds + 30) * 1000 });
  if (r.status !== 0) throw new Error(`load client failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Load;
}

const PLAN: Array<[string, "conn" | "ka", number]> = [
  ["new connections (8 in flight)", "conn", 8],
  ["keep-alive, 1 connection", "ka", 1],
  ["keep-alive, 16 connections", "ka", 16],
  ["keep-alive, 64 connections", "ka", 64],
];

interface Started {
  name: string;
  proc: ChildProcess;
  port: number;
  pid: number;
  samples: Phase[][]; // per phase, one sample per repetition
  rss: number[]; // idle, then after each round
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function summarise(st: Started): ServerRun {
  const phases = st.samples.map((reps, i) => ({
    name: PLAN[i]![0],
    ok: reps.reduce((a, r) => a + r.ok, 0),
    errors: reps.reduce((a, r) => a + r.errors, 0),
    seconds: reps.reduce((a, r) => a + r.seconds, 0),
    rate: median(reps.map((r) => r.rate)),
    p50: median(reps.map((r) => r.p50)),
    p99: median(reps.map((r) => r.p99)),
    cpuUsPerReq: median(reps.map((r) => r.cpuUsPerReq)),
  }));
  return { server: st.name, phases, rssIdleMb: st.rss[0]!, rssAfterFirstMb: st.rss[1]!, rssAfterMb: st.rss.at(-1)! };
}

/**
 * Both servers run side by side (both pinned to core 0, only one loaded at a time); each
 * phase alternates bare and mesh `rounds` times and keeps the median, so a noisy
 * neighbour on the machine hits both alike.
 */
async function measureBoth(servers: Array<{ name: string; args: string[] }>, pki: string, dir: string, seconds: number, rounds: number): Promise<Started[]> {
  const started: Started[] = [];
  try {
    for (const sv of servers) {
      const s = await startServer(sv.args, join(dir, `${sv.name}.log`));
      started.push({ name: sv.name, ...s, samples: PLAN.map(() => []), rss: [] });
    }
    for (const st of started) {
      runLoad("ka", st.port, pki, 4, 1); // warm-up: JIT
      st.rss.push(rssMb(st.pid));
    }
    for (let round = 0; round < rounds; round++) {
      for (const [i, [, mode, conns]] of PLAN.entries()) {
        for (const st of round % 2 ? [...started].reverse() : started) {
          const before = cpuTicks(st.pid);
          const load = runLoad(mode, st.port, pki, conns, seconds);
          const cpuUs = (cpuTicks(st.pid) - before) * TICK_US;
          st.samples[i]!.push({ name: PLAN[i]![0], ...load, cpuUsPerReq: load.ok ? cpuUs / load.ok : 0 });
        }
      }
      for (const st of started) st.rss.push(rssMb(st.pid));
    }
    return started;
  } finally {
    for (const st of started) {
      st.proc.kill("SIGTERM");
      await new Promise((r) => st.proc.once("exit", r));
    }
  }
}

export interface MeshBenchResult {
  pinned: boolean;
  seconds: number;
  rounds: number;
  rssMb: Record<string, number[]>;
  bare: ServerRun;
  mesh: ServerRun;
  ratios: Array<{ phase: string; rate: number; cpuPerReq: number; p50: number; p99: number }>;
}

export async function runMeshBench(opts: { seconds?: number; rounds?: number } = {}): Promise<MeshBenchResult> {
  const seconds = opts.seconds ?? Number(process.env.MESH_BENCH_SECONDS ?? 2);
  const rounds = opts.rounds ?? Number(process.env.MESH_BENCH_ROUNDS ?? 3);
  const dir = mkdtempSync(join(tmpdir(), "mesh-bench-"));
  try {
    const pki = join(dir, "pki");
    const ca = await CertificateAuthority.init({ dir: pki, name: "Mesh Bench CA" });
    await ca.issue({ domain: "payment.internal" });
    await ca.issue({ domain: "order.internal" });
    ca.close();
    const policy = join(dir, "mesh-policy.toml");
    writeFileSync(policy, `[payment]\naccepts = ["order"]\n`);

    console.log(`\nmesh bench: ${rounds} rounds x ${seconds} s per phase and server (medians), servers on core 0, load client on core 1${HAS_TASKSET ? "" : " (taskset missing: NOT pinned)"}`);
    const runs = await measureBoth(
      [
        { name: "bare", args: ["bench/mesh-bare.ts", pki, "payment.internal"] },
        { name: "mesh", args: ["services/main.ts", "--service", "payment", "--port", "0", "--pki", pki, "--policy", policy] },
      ],
      pki,
      dir,
      seconds,
      rounds,
    );
    const bare = summarise(runs[0]!);
    const mesh = summarise(runs[1]!);
    const rss = Object.fromEntries(runs.map((r) => [r.name, r.rss]));

    const ratios = bare.phases.map((b, i) => {
      const m = mesh.phases[i]!;
      return { phase: b.name, rate: m.rate / b.rate, cpuPerReq: m.cpuUsPerReq / b.cpuUsPerReq, p50: m.p50 / b.p50, p99: m.p99 / b.p99 };
    });
    const f = (n: number, d = 0) => n.toFixed(d);
    console.log(`\n${"phase".padEnd(30)}${"bare/s".padStart(9)}${"mesh/s".padStart(9)}${"ratio".padStart(7)}  ${"CPU µs/req bare→mesh".padEnd(22)}${"p50 ms bare→mesh".padEnd(19)}p99 ms bare→mesh`);
    for (const [i, r] of ratios.entries()) {
      const b = bare.phases[i]!;
      const m = mesh.phases[i]!;
      console.log(
        `${r.phase.padEnd(30)}${f(b.rate).padStart(9)}${f(m.rate).padStart(9)}${f(r.rate, 2).padStart(7)}  ${`${f(b.cpuUsPerReq)}→${f(m.cpuUsPerReq)} (${f(r.cpuPerReq, 2)}x)`.padEnd(22)}${`${f(b.p50, 2)}→${f(m.p50, 2)}`.padEnd(19)}${f(b.p99, 2)}→${f(m.p99, 2)}`,
      );
    }
    const errs = [...bare.phases, ...mesh.phases].reduce((a, p) => a + p.errors, 0);
    console.log(`errors: ${errs}`);
    for (const [name, r] of Object.entries(rss)) console.log(`RSS ${name} (MB): idle ${r[0]}, after each round ${r.slice(1).join(", ")}`);
    return { pinned: HAS_TASKSET, seconds, rounds, bare, mesh, ratios, rssMb: rss };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await runMeshBench();
