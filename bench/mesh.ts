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
  rssAfterFirstMb: number;
  rssAfterMb: number;
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
    if (m) return { proc, port: Number(m[1]), pid: findNodePid(proc.pid!) };
  }
  proc.kill("SIGKILL");
  throw new Error(`server ${args.join(" ")} did not start`);
}

/** With taskset in front, the node process is taskset's exec'd self: same pid. */
function findNodePid(pid: number): number {
  return pid;
}

function runLoad(mode: "conn" | "ka", port: number, pki: string, conns: number, seconds: number): Load {
  const [cmd, argv] = pinned(1, [process.execPath, "--import", "tsx", "bench/mesh-load.ts", mode, String(port), pki, String(conns), String(seconds)]);
  const r = spawnSync(cmd, argv, { cwd: ROOT, encoding: "utf8", timeout: (seconds + 30) * 1000 });
  if (r.status !== 0) throw new Error(`load client failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Load;
}

async function measure(server: string, args: string[], pki: string, dir: string, seconds: number): Promise<ServerRun> {
  const s = await startServer(args, join(dir, `${server}.log`));
  try {
    runLoad("ka", s.port, pki, 4, 1); // warm-up: JIT, session caches
    const rssIdleMb = rssMb(s.pid);
    const phases: Phase[] = [];
    const plan: Array<[string, "conn" | "ka", number]> = [
      ["new connections (8 in flight)", "conn", 8],
      ["keep-alive, 1 connection", "ka", 1],
      ["keep-alive, 16 connections", "ka", 16],
      ["keep-alive, 64 connections", "ka", 64],
    ];
    let rssAfterFirstMb = 0;
    for (const [name, mode, conns] of plan) {
      const before = cpuTicks(s.pid);
      const load = runLoad(mode, s.port, pki, conns, seconds);
      const cpuUs = (cpuTicks(s.pid) - before) * TICK_US;
      phases.push({ name, ...load, cpuUsPerReq: load.ok ? cpuUs / load.ok : 0 });
      if (!rssAfterFirstMb) rssAfterFirstMb = rssMb(s.pid);
    }
    // A second round of the heaviest phase: RSS must plateau, not grow with requests served.
    runLoad("conn", s.port, pki, 8, seconds);
    runLoad("ka", s.port, pki, 64, seconds);
    return { server, phases, rssIdleMb, rssAfterFirstMb, rssAfterMb: rssMb(s.pid) };
  } finally {
    s.proc.kill("SIGTERM");
    await new Promise((r) => s.proc.once("exit", r));
  }
}

export interface MeshBenchResult {
  pinned: boolean;
  seconds: number;
  bare: ServerRun;
  mesh: ServerRun;
  ratios: Array<{ phase: string; rate: number; cpuPerReq: number; p50: number; p99: number }>;
}

export async function runMeshBench(opts: { seconds?: number } = {}): Promise<MeshBenchResult> {
  const seconds = opts.seconds ?? Number(process.env.MESH_BENCH_SECONDS ?? 3);
  const dir = mkdtempSync(join(tmpdir(), "mesh-bench-"));
  try {
    const pki = join(dir, "pki");
    const ca = await CertificateAuthority.init({ dir: pki, name: "Mesh Bench CA" });
    await ca.issue({ domain: "payment.internal" });
    await ca.issue({ domain: "order.internal" });
    ca.close();
    const policy = join(dir, "mesh-policy.toml");
    writeFileSync(policy, `[payment]\naccepts = ["order"]\n`);

    console.log(`\nmesh bench: ${seconds} s per phase, server on core 0, load client on core 1${HAS_TASKSET ? "" : " (taskset missing: NOT pinned)"}`);
    const bare = await measure("bare", ["bench/mesh-bare.ts", pki, "payment.internal"], pki, dir, seconds);
    const mesh = await measure("mesh", ["services/main.ts", "--service", "payment", "--port", "0", "--pki", pki, "--policy", policy], pki, dir, seconds);

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
    for (const s of [bare, mesh]) console.log(`RSS ${s.server}: idle ${s.rssIdleMb} MB, after first phase ${s.rssAfterFirstMb} MB, after all load ${s.rssAfterMb} MB`);
    return { pinned: HAS_TASKSET, seconds, bare, mesh, ratios };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await runMeshBench();
