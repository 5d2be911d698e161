// `npm run bench` parses its flags before it starts anything: --help answers and exits 0,
// a wrong flag or argument is exit 2 with one line, and neither starts a benchmark.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..");

/** bench/run.ts as npm runs it; killed (and failed) if it is still going after 30 s, i.e. benchmarking. */
function bench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/run.ts", ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `bench ${args.join(" ")} was still running after 30 s (it started benchmarking); it printed:\n${stdout.slice(0, 400)}`,
        ),
      );
    }, 30_000);
    child.on("close", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

test("npm run bench -- --help prints usage and exits 0 without benchmarking", async () => {
  for (const flag of ["--help", "-h"]) {
    const r = await bench([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: npm run bench -- \[options\]/);
    assert.match(r.stdout, /MESH_BENCH_ROUNDS/);
    assert.match(r.stdout, /Exit codes: 0 done, 1 .*, 2 bad flags/);
    assert.doesNotMatch(r.stdout, /Results written/);
    assert.equal(r.stderr, "");
  }
});

test("an unknown flag or a stray argument is exit 2 with one line, and nothing runs", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["--bogus"], /^error: unknown option '--bogus'\n$/],
    [["--hlep"], /^error: unknown option '--hlep' \(Did you mean --help\?\)\n$/],
    [["mesh"], /^error: too many arguments/],
  ];
  for (const [args, message] of cases) {
    const r = await bench(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stdout, "", "no benchmark output");
  }
});
