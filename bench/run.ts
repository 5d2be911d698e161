// `npm run bench`: the CA bench, the mesh bench when bench/mesh.ts exists, the rotation
// bench, then every result as JSON in bench-results/latest.json (git-ignored).
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { runCaBench } from "./ca.ts";
import { runRotationBench } from "./rotation.ts";

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
  const rotation = await runRotationBench();
  results.rotation = rotation;
  // Timings on a shared machine only inform; a request lost in a safe phase is a broken mesh.
  if (rotation.safeFailures > 0) process.exitCode = 1;
} catch (err) {
  console.error(`\nthe rotation bench failed: ${(err as Error).stack ?? err}`);
  results.rotation = { error: (err as Error).message };
  process.exitCode = 1;
}
mkdirSync(resultsDir, { recursive: true });
writeFileSync(`${resultsDir}latest.json`, JSON.stringify(results, null, 2) + "\n");
console.log(`\nResults written to bench-results/latest.json`);
