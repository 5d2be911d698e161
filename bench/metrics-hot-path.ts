// What the metrics add to one request, side by side: the request path's hook calls (server.ts:
// MeshServer#onRequest and Exchange#done) with and without a MeshMetrics, in alternating rounds,
// next to what prom-client's own labelled children would cost for the same counts.
//   node --import tsx bench/metrics-hot-path.ts [--rounds 21] [--n 2000000]
import { Counter, Histogram, Registry } from "prom-client";
import { MeshMetrics, type SeriesMemo } from "../services/mesh/metrics.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
};
const ROUNDS = arg("--rounds", 21);
const N = arg("--n", 2_000_000);

/** A connection's memo of its last request, as server.ts keeps it (Routed). */
function memo(): SeriesMemo {
  return { method: "POST", decision: { rule: "payment.accepts" }, route: { path: "/charge" } };
}

let sink = 0;

/** The request path's shape: look the series up on the memo, then count the answer. */
function requests(metrics: MeshMetrics | undefined, n: number): void {
  const m = memo();
  for (let i = 0; i < n; i++) {
    // The access log reads the clock with or without metrics; here a made-up duration stands in
    // for it, since two clock reads (~100 ns each on this VM, and jittery) would drown the difference.
    const ms = (i & 1023) * 0.002;
    const series = metrics?.series(m, "order");
    series?.answered(201, ms);
    sink += ms;
  }
}

function promClientChildren(n: number): void {
  const r = new Registry();
  const c = new Counter({
    name: "c_total",
    help: "h",
    labelNames: ["caller", "route", "method", "status", "rule"],
    registers: [r],
  });
  const h = new Histogram({
    name: "h_seconds",
    help: "h",
    labelNames: ["caller", "route", "method"],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [r],
  });
  const child = c.labels({ caller: "order", route: "/charge", method: "POST", status: "201", rule: "payment.accepts" });
  const hChild = h.labels({ caller: "order", route: "/charge", method: "POST" });
  for (let i = 0; i < n; i++) {
    const ms = (i & 1023) * 0.002;
    child.inc();
    hChild.observe(ms / 1000);
    sink += ms;
  }
}

function time(f: () => void): number {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / N;
}

const metrics = new MeshMetrics("payment");
const variants: Record<string, () => void> = {
  "no metrics (baseline)": () => requests(undefined, N),
  "MeshMetrics (cells on the memo)": () => requests(metrics, N),
  "prom-client labels() children": () => promClientChildren(N),
};
const results: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (const f of Object.values(variants)) f(); // JIT warm-up
for (let round = 0; round < ROUNDS; round++) {
  // Side by side: every round runs each variant once, in an order that rotates.
  const names = Object.keys(variants);
  for (let i = 0; i < names.length; i++) {
    const name = names[(i + round) % names.length]!;
    results[name]!.push(time(variants[name]!));
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(results["no metrics (baseline)"]!);
console.log(`${ROUNDS} rounds of ${N} requests each, median ns per request:`);
for (const [name, xs] of Object.entries(results)) {
  const m = median(xs);
  console.log(`  ${name.padEnd(34)} ${m.toFixed(1).padStart(7)} ns   added ${(m - base).toFixed(1).padStart(6)} ns`);
}
// Paired differences per round, so a drift of the VM's speed between rounds cancels out.
const paired = results["MeshMetrics (cells on the memo)"]!.map((x, i) => x - results["no metrics (baseline)"]![i]!);
console.log(
  `  metrics - baseline, paired by round: median ${median(paired).toFixed(1)} ns, min ${Math.min(...paired).toFixed(1)}, max ${Math.max(...paired).toFixed(1)}`,
);
const text = await metrics.registry.metrics();
if (
  !text.includes(
    `mesh_inbound_http_requests_total{caller="order",route="/charge",method="POST",status="201",rule="payment.accepts"} ${(ROUNDS + 1) * N}`,
  )
)
  throw new Error("the counted requests do not add up");
if (sink === 0) console.log("");
