// `npm run bench`: the CA bench, the mesh bench when bench/mesh.ts exists, the sidecar bench,
// the rotation bench, then every result as JSON in bench-results/latest.json (git-ignored).
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";

// First, before anything is written (help included): `| head` ends it quietly.
endQuietlyOnClosedOutput();

// Flags first: `--help` or a typo must never start seven minutes of benchmarks.
new Command("npm run bench --")
  .description(
    "Run the CA, mesh, sidecar and rotation benchmarks (about ten minutes on 2 cores); results go to bench-results/latest.json.",
  )
  .addHelpText(
    "after",
    `
Environment:
  MESH_BENCH_SECONDS        seconds per mesh load round (default 2)
  MESH_BENCH_ROUNDS         back-to-back mesh rounds (default 4)
  MESH_BENCH_PAIRED_ROUNDS  side-by-side mesh rounds (default twice the rounds)
  MESH_BENCH_HANDSHAKE_SECONDS  seconds per handshake-bench phase (default 3)
  MESH_BENCH_HANDSHAKE_ROUNDS   handshake-bench rounds, mesh and bare Node side by side (default 6)
  MESH_BENCH_HANDSHAKE_WARMUP   seconds of each warm-up phase of the handshake bench (default 3)
  MESH_BENCH_EST_SECONDS    seconds per EST rate round (default 1)
  MESH_BENCH_EST_ROUNDS     EST rate rounds per side, interleaved (default 4)
  MESH_BENCH_EST_CLIENTS    EST clients in flight (default 8)
  MESH_BENCH_EST_LIFETIME   certificate lifetime of the EST bench's mesh, seconds (default 10)
  MESH_BENCH_EST_POLL_MS    its services' poll interval (default 500)
  MESH_BENCH_EST_WATCH      seconds of renewals watched under traffic (default 20)
  MESH_BENCH_REPLICA_SECONDS   seconds per CA-replica rate round (default 2)
  MESH_BENCH_REPLICA_ROUNDS    CA-replica rate rounds per side, interleaved (default 3)
  MESH_BENCH_REPLICA_FAILOVERS kill -9 failovers timed (default 3)
  SIDECAR_BENCH_SECONDS     seconds per sidecar bench window (default 1.5)
  SIDECAR_BENCH_ROUNDS      alternating sidecar bench rounds (default 8)
  SIDECAR_BENCH_CONNS       connections (HTTP/1.1) and streams (HTTP/2) in flight (default 8)

One part alone: npx tsx bench/mesh.ts, npx tsx bench/mesh-handshake.ts, npx tsx bench/sidecar.ts, npx tsx bench/rotation.ts,
npx tsx bench/est.ts, npx tsx bench/est-rss.ts, npx tsx bench/replicas.ts
(the last needs PostgreSQL: PGHOST, default /var/run/postgresql). See docs/bench.md.

Exit codes: 0 done, 1 a bench failed or the rotation lost a request, 2 bad flags.`,
  )
  // One line per error: commander puts "(Did you mean …?)" on a line of its own.
  .configureOutput({ outputError: (str, write) => write(str.replace(/\n(?!$)/g, " ")) })
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2))
  .parse();

// Loaded after the flags are parsed, so --help answers at once.
const { runCaBench } = await import("./ca.ts");
const { runRotationBench } = await import("./rotation.ts");
const { runEstBench } = await import("./est.ts");
const { runHandshakeBench } = await import("./mesh-handshake.ts");
const { runEstRssBench } = await import("./est-rss.ts");
const { runReplicaBench } = await import("./replicas.ts");
const { runSidecarBench } = await import("./sidecar.ts");

const meshUrl = new URL("./mesh.ts", import.meta.url);
const resultsDir = fileURLToPath(new URL("../bench-results/", import.meta.url));

/** The mesh bench is written separately: run it if it is there, say so if it is not. */
async function runMesh(): Promise<unknown> {
  if (!existsSync(meshUrl)) {
    console.log("\nbench/mesh.ts does not exist yet: no mesh bench.");
    return { skipped: "bench/mesh.ts does not exist" };
  }
  const mod = (await import(meshUrl.href)) as { runMeshBench?: unknown };
  if (typeof mod.runMeshBench !== "function") {
    console.log("\nbench/mesh.ts exports no runMeshBench function: no mesh bench.");
    return { skipped: "bench/mesh.ts exports no runMeshBench" };
  }
  console.log("");
  return await (mod.runMeshBench as () => Promise<unknown>)();
}

const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  node: process.version,
  platform: `${process.platform} ${process.arch}`,
  cpus: { count: cpus().length, model: cpus()[0]?.model ?? "unknown" },
  // 1, 5 and 15 minute load averages at the start: the machine may be shared.
  loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
};
results.ca = await runCaBench();
try {
  results.mesh = await runMesh();
} catch (err) {
  // Keep the CA numbers even when the mesh bench breaks, but fail the run.
  console.error(`\nthe mesh bench failed: ${(err as Error).stack ?? err}`);
  results.mesh = { error: (err as Error).message };
  process.exitCode = 1;
}
try {
  const handshakes = await runHandshakeBench();
  results.handshakes = handshakes;
  // Its targets are printed PASS/FAIL and kept, as the other benches' are (a ratio on a shared
  // machine informs); a failed handshake, or sessions that never resume, is a broken mesh.
  if (handshakes.errors > 0 || !handshakes.verdict.resumes) process.exitCode = 1;
} catch (err) {
  console.error(`\nthe handshake bench failed: ${(err as Error).stack ?? err}`);
  results.handshakes = { error: (err as Error).message };
  process.exitCode = 1;
}
try {
  const sidecar = await runSidecarBench();
  results.sidecar = sidecar;
  // Its targets are printed PASS/FAIL and kept in the results, as the mesh bench's are; a
  // request that failed is a broken sidecar and fails the run.
  if (sidecar.errors > 0) process.exitCode = 1;
} catch (err) {
  console.error(`\nthe sidecar bench failed: ${(err as Error).stack ?? err}`);
  results.sidecar = { error: (err as Error).message };
  process.exitCode = 1;
}
try {
  const rotation = await runRotationBench();
  results.rotation = rotation;
  // Timings on a shared machine only inform; a request lost in a safe phase is a broken mesh.
  if (rotation.safeFailures > 0) process.exitCode = 1;
} catch (err) {
  console.error(`\nthe rotation bench failed: ${(err as Error).stack ?? err}`);
  results.rotation = { error: (err as Error).message };
  process.exitCode = 1;
}
try {
  const est = await runEstBench();
  results.est = est;
  // The online CA's targets (docs/bench.md): a failed one fails the run.
  if (!est.pass) process.exitCode = 1;
} catch (err) {
  console.error(`\nthe EST bench failed: ${(err as Error).stack ?? err}`);
  results.est = { error: (err as Error).message };
  process.exitCode = 1;
}
try {
  // Issue 16's memory target is reported, not enforced: see docs/bench.md for where it stands.
  results.estRss = await runEstRssBench();
} catch (err) {
  console.error(`\nthe EST memory bench failed: ${(err as Error).stack ?? err}`);
  results.estRss = { error: (err as Error).message };
  process.exitCode = 1;
}
try {
  const replicas = await runReplicaBench();
  results.replicas = replicas;
  if (!replicas.pass) process.exitCode = 1;
} catch (err) {
  console.error(`\nthe CA replica bench failed: ${(err as Error).stack ?? err}`);
  results.replicas = { error: (err as Error).message };
  process.exitCode = 1;
}
mkdirSync(resultsDir, { recursive: true });
writeFileSync(`${resultsDir}latest.json`, `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nResults written to bench-results/latest.json`);
