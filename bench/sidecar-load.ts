// The sidecar bench's load client (run pinned to its own core by bench/sidecar.ts): measured
// windows of GET /healthz against several targets in alternating order (A B C, C B A, …), so
// that this machine's drift falls on every target alike. Per window: requests answered, the
// rate, the latencies, and the CPU ticks the target's own processes spent in it
// (/proc/<pid>/stat), read at the window's edges only.
//   node --import tsx bench/sidecar-load.ts '<Plan as JSON>'
import { readFileSync } from "node:fs";
import { connect, type ClientHttp2Session } from "node:http2";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Pool } from "undici";

export interface Target {
  readonly label: string;
  readonly port: number;
  /** h1: HTTP/1.1 keep-alive, one request at a time on each of `conns` connections; h2: `conns` streams at once on one connection. */
  readonly proto: "h1" | "h2";
  /** mTLS as order (to payment.internal), or plain HTTP (an app, or a sidecar's outbound port). */
  readonly tls: boolean;
  readonly conns: number;
  /** The processes that serve it: their CPU ticks in the window are its server CPU. */
  readonly pids: readonly number[];
}

export interface Plan {
  readonly pki: string;
  readonly seconds: number;
  readonly rounds: number;
  readonly targets: readonly Target[];
}

export interface Window {
  ok: number;
  errors: number;
  seconds: number;
  rate: number;
  /** CPU ticks of all the target's processes in the window. */
  ticks: number;
  /** Per process, in the order of Target.pids: [user, system] ticks. */
  perPid: Array<[number, number]>;
  /** This load client's own CPU over the window, as a share of one core: near 1, it was the bottleneck. */
  clientBusy: number;
  p50: number;
  p99: number;
}

export interface TargetResult {
  label: string;
  windows: Window[];
  /** Percentiles over every request of every window, in ms. */
  p50: number;
  p99: number;
  n: number;
}

const plan = JSON.parse(process.argv[2] ?? "") as Plan;
const tls = {
  ca: readFileSync(join(plan.pki, "bundle.pem")),
  cert: readFileSync(join(plan.pki, "certs", "order.internal.crt")),
  key: readFileSync(join(plan.pki, "certs", "order.internal.key")),
  servername: "payment.internal",
};

/** [utime, stime] of each process (fields 14 and 15 of /proc/<pid>/stat), in clock ticks. */
function ticksOf(pids: readonly number[]): Array<[number, number]> {
  return pids.map((pid) => {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return [Number(rest[11]), Number(rest[12])];
  });
}

/** One request function per connection or stream, resolving with true on a 200. */
interface Client {
  one(): Promise<boolean>;
  close(): Promise<void>;
}

function h1Client(t: Target): Client {
  const pool = new Pool(`${t.tls ? "https" : "http"}://127.0.0.1:${t.port}`, {
    connections: t.conns,
    pipelining: 1,
    ...(t.tls ? { connect: tls } : {}),
  });
  return {
    async one() {
      const r = await pool.request({ method: "GET", path: "/healthz" });
      await r.body.text();
      return r.statusCode === 200;
    },
    close: () => pool.close(),
  };
}

function h2Client(t: Target): Client {
  const session: ClientHttp2Session = connect(`${t.tls ? "https" : "http"}://127.0.0.1:${t.port}`, t.tls ? tls : {});
  session.on("error", () => {});
  return {
    one: () =>
      new Promise((resolve) => {
        const s = session.request({ ":path": "/healthz" });
        let status = 0;
        s.on("response", (h) => (status = Number(h[":status"])));
        s.on("data", () => {});
        s.on("end", () => resolve(status === 200));
        s.on("error", () => resolve(false));
        s.end();
      }),
    close: () => new Promise((resolve) => session.close(() => resolve())),
  };
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/**
 * A fresh client per window, its connections made (and handshakes done) before the window
 * starts: only requests on open connections are measured, as a mesh caller's pool sees them.
 */
async function window(t: Target, seconds: number, lat: number[]): Promise<Window> {
  const client = t.proto === "h1" ? h1Client(t) : h2Client(t);
  await Promise.all(Array.from({ length: t.conns }, () => client.one().catch(() => false)));
  const mine: number[] = [];
  let ok = 0;
  let errors = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const ticks0 = ticksOf(t.pids);
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: t.conns }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        let good = false;
        try {
          good = await client.one();
        } catch {
          good = false;
        }
        if (good) ok++;
        else errors++;
        mine.push(performance.now() - t0);
      }
    }),
  );
  const perPid = ticksOf(t.pids).map(([u, s], i): [number, number] => [u - ticks0[i]![0], s - ticks0[i]![1]]);
  const ticks = perPid.reduce((a, [u, s]) => a + u + s, 0);
  const elapsed = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu0);
  const clientBusy = (used.user + used.system) / 1e6 / elapsed;
  await client.close();
  for (const x of mine) lat.push(x);
  mine.sort((a, b) => a - b);
  return {
    ok,
    errors,
    seconds: elapsed,
    rate: ok / elapsed,
    ticks,
    perPid,
    clientBusy,
    p50: pct(mine, 50),
    p99: pct(mine, 99),
  };
}

// A warm-up window each, not recorded: JIT compilation is no per-request cost.
for (const t of plan.targets) await window(t, Math.min(1, plan.seconds), []);
const lats = plan.targets.map((): number[] => []);
const windows = plan.targets.map((): Window[] => []);
for (let round = 0; round < plan.rounds; round++) {
  const order = plan.targets.map((_, i) => i);
  if (round % 2 === 1) order.reverse();
  for (const i of order) windows[i]!.push(await window(plan.targets[i]!, plan.seconds, lats[i]!));
}
const results: TargetResult[] = plan.targets.map((t, i) => {
  const sorted = lats[i]!.sort((a, b) => a - b);
  return { label: t.label, windows: windows[i]!, p50: pct(sorted, 50), p99: pct(sorted, 99), n: sorted.length };
});
console.log(JSON.stringify(results));
