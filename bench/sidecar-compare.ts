// Two builds of the sidecar side by side, in one alternation per part, so this VM's drift falls
// on both alike (docs/bench.md, "The sidecar before and after the splice"):
// 1. c=1, servers unpinned: the app called directly, and through outbound + inbound sidecars of
//    each build (p50, p99, CPU per request of each process);
// 2. HTTP/1.1 keep-alive on 8 connections, servers on core 0 and the load client on core 1: the
//    in-process runtime, and each build's inbound sidecar + the app (CPU per request, ratio).
// The other build is a copy of a bundle made before a change (`node bin/bundle.mjs`, then copy
// .build/<id>/ into the tree, e.g. .build/old/, so that its imports resolve):
//   npx tsx bench/sidecar-compare.ts .build/old/services/sidecar.mjs
// Not part of `npm run bench`.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import { CertificateAuthority } from "../ca/index.ts";
import { parseJsonLine } from "../lib/events.ts";
import type { Plan, Target, TargetResult, Window } from "./sidecar-load.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TICK_US = 1_000_000 / Number(spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim() || 100);
const old = process.argv[2];
if (!old || !existsSync(old)) {
  process.stderr.write("usage: npx tsx bench/sidecar-compare.ts <the other build's services/sidecar.mjs>\n");
  process.exit(2);
}
const seconds = Number(process.env.SIDECAR_BENCH_SECONDS ?? 1.5);
const rounds = Number(process.env.SIDECAR_BENCH_ROUNDS ?? 8);
const dir = mkdtempSync(join(tmpdir(), "sidecar-compare-"));
const procs: ChildProcess[] = [];

async function start(name: string, args: string[], event = "listening"): Promise<{ pid: number; port: number }> {
  const log = join(dir, `${name}.log`);
  const out = openSync(log, "w");
  const p = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", out, "inherit"] });
  closeSync(out);
  procs.push(p);
  for (let i = 0; i < 400; i++) {
    for (const raw of readFileSync(log, "utf8").split("\n")) {
      const line = parseJsonLine(raw);
      if (line?.event === event && Number(line.port) > 0) return { pid: p.pid!, port: Number(line.port) };
    }
    if (p.exitCode !== null) throw new Error(`${name} exited with ${p.exitCode}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not log ${event} within 20 s`);
}

function repin(pids: number[], cores: string): void {
  for (const pid of pids) spawnSync("taskset", ["-a", "-p", "-c", cores, String(pid)], { stdio: "ignore" });
}

function load(plan: Plan, pin: boolean): Promise<TargetResult[]> {
  const cmd = pin ? ["taskset", "-c", "1", process.execPath] : [process.execPath];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd[0]!, [...cmd.slice(1), "--import", "tsx", "bench/sidecar-load.ts", JSON.stringify(plan)], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    p.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    p.on("close", (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim().split("\n").pop()!) as TargetResult[])
        : reject(new Error(`the load client failed (${code})`)),
    );
  });
}

function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** CPU µs per request in a window: of all the target's processes, or of the i-th. */
const cpu = (w: Window, i?: number) =>
  ((i === undefined ? w.ticks : w.perPid[i]![0] + w.perPid[i]![1]) * TICK_US) / w.ok;
const uptime = () => spawnSync("uptime").stdout.toString().trim();

try {
  const pki = join(dir, "pki");
  const ca = await CertificateAuthority.init({ dir: pki, name: "Sidecar Compare CA" });
  await ca.issue({ domain: "payment.internal" });
  await ca.issue({ domain: "order.internal" });
  ca.close();
  const policy = join(dir, "mesh-policy.toml");
  writeFileSync(policy, `[payment]\naccepts = ["order"]\n\n[order]\naccepts = []\n`);
  buildSync({
    entryPoints: [join(ROOT, "bench", "sidecar-app.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outfile: join(dir, "app.mjs"),
    logLevel: "error",
  });
  const common = ["--pki", pki, "--policy", policy, "--port", "0"];
  const app = await start("app", [join(dir, "app.mjs")]);
  const appUrl = `http://127.0.0.1:${app.port}`;
  const inProcess = await start("in-process", ["bin/mesh-service.mjs", "--service", "payment", ...common]);
  const builds = { this: "bin/mesh-sidecar.mjs", other: old };
  const inbound: Record<string, { pid: number; port: number }> = {};
  const outbound: Record<string, { pid: number; port: number }> = {};
  for (const [k, entry] of Object.entries(builds)) {
    inbound[k] = await start(`in-${k}`, [entry, "--service", "payment", "--app", appUrl, ...common]);
    outbound[k] = await start(
      `out-${k}`,
      [
        entry,
        "--service",
        "order",
        "--app",
        appUrl,
        "--upstream",
        `payment=127.0.0.1:${inbound[k]!.port}@0`,
        ...common,
      ],
      "outbound.listening",
    );
  }
  const all = procs.map((p) => p.pid!);
  console.log(`sidecar compare: this build against ${old}; ${rounds} rounds of ${seconds} s\n  ${uptime()}`);

  repin(all, `0-${cpus().length - 1}`);
  const c1 = (label: string, port: number, pids: number[]): Target => ({
    label,
    port,
    proto: "h1",
    tls: false,
    conns: 1,
    pids,
  });
  const lat = await load(
    {
      pki,
      seconds,
      rounds,
      targets: [
        c1("direct", app.port, [app.pid]),
        ...Object.keys(builds).map((k) =>
          c1(`through ${k}`, outbound[k]!.port, [outbound[k]!.pid, inbound[k]!.pid, app.pid]),
        ),
      ],
    },
    false,
  );
  const direct = lat[0]!;
  console.log("1. c=1 (outbound → mTLS → inbound → app), servers unpinned");
  for (const r of lat) {
    const per = r.windows[0]!.perPid.map((_, i) => median(r.windows.map((w) => cpu(w, i))).toFixed(0)).join("/");
    console.log(
      `   ${r.label.padEnd(13)} p50 ${r.p50.toFixed(3)} p99 ${r.p99.toFixed(3)} ms (added p50 +${(r.p50 - direct.p50).toFixed(3)}, p99 +${(r.p99 - direct.p99).toFixed(3)}); windows' p99 ${r.windows.map((w) => w.p99.toFixed(2)).join(" ")}; CPU ${median(r.windows.map((w) => cpu(w))).toFixed(0)} µs/request (${per}); n ${r.n}`,
    );
  }
  console.log(`   ${uptime()}`);

  repin(all, "0");
  const c8 = (label: string, port: number, pids: number[]): Target => ({
    label,
    port,
    proto: "h1",
    tls: true,
    conns: 8,
    pids,
  });
  const rate = await load(
    {
      pki,
      seconds,
      rounds,
      targets: [
        c8("in-process", inProcess.port, [inProcess.pid]),
        ...Object.keys(builds).map((k) => c8(`sidecar ${k}`, inbound[k]!.port, [inbound[k]!.pid, app.pid])),
      ],
    },
    true,
  );
  const base = rate[0]!;
  console.log("2. HTTP/1.1 keep-alive, 8 connections; servers on core 0, the load client on core 1");
  for (const r of rate) {
    const ratio = r.windows.map((w, i) => cpu(w) / cpu(base.windows[i]!));
    const alone = r.windows.map((w, i) => cpu(w, 0) / cpu(base.windows[i]!));
    const of =
      r === base
        ? ""
        : ` (sidecar ${median(r.windows.map((w) => cpu(w, 0))).toFixed(1)}, app ${median(r.windows.map((w) => cpu(w, 1))).toFixed(1)}) ÷ in-process ${median(ratio).toFixed(2)}× (rounds ${Math.min(...ratio).toFixed(2)}–${Math.max(...ratio).toFixed(2)}), the sidecar alone ${median(alone).toFixed(2)}×`;
    console.log(
      `   ${r.label.padEnd(13)} ${median(r.windows.map((w) => cpu(w))).toFixed(1)} µs/request${of}; ${median(r.windows.map((w) => w.rate)).toFixed(0)}/s`,
    );
  }
  console.log(`   ${uptime()}`);
} finally {
  for (const p of procs) {
    if (p.exitCode !== null || p.signalCode !== null) continue;
    p.kill("SIGTERM");
    await new Promise((r) => p.once("exit", r));
  }
  rmSync(dir, { recursive: true, force: true });
}
