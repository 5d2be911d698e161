// The mesh's command-line scripts compiled once per test file, for the suites that run them
// dozens of times (mesh:toggle, mesh:check, mesh:probe, mesh:logs, npm run policy), for mesh:up in
// the files that start it most, and for the drills' CLIs (drill, drill:rotate), which tests run
// with a private TMPDIR, where tsx's compile cache starts empty every time. Loading a script's
// module graph through tsx's loader costs each process ~0.3-1 s of CPU more than the same code
// compiled (measured on the 2-core CI machine; docs/testing.md); the code is the same sources,
// compiled by the same esbuild tsx uses, as bin/bundle.mjs compiles the CLI and the services. The
// output goes under .scratch/ (git-ignored) so that the bundle's imports of node_modules resolve
// as the sources' do. Every script keeps at least one run in the suite under tsx, as npm runs it.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
// A module's import.meta stays its own source file's, as under tsx (bin/bundle.mjs does the same):
// bundled, a path made relative to it would point into .scratch/.
import { sourceMeta } from "../../bin/bundle.mjs";
import { ROOT } from "./ca.ts";

export type Script =
  | "mesh-toggle"
  | "mesh-check"
  | "mesh-probe"
  | "mesh-up"
  | "mesh-logs"
  | "drill-cli"
  | "drill-rotate"
  | "policy/main";
const SCRIPTS: Script[] = [
  "mesh-toggle",
  "mesh-check",
  "mesh-probe",
  "mesh-up",
  "mesh-logs",
  "drill-cli",
  "drill-rotate",
  "policy/main",
];

let built: Promise<string> | undefined;

async function buildAll(): Promise<string> {
  const scratch = join(ROOT, ".scratch");
  mkdirSync(scratch, { recursive: true });
  const dir = mkdtempSync(join(scratch, "test-scripts-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  await build({
    absWorkingDir: ROOT,
    entryPoints: SCRIPTS.map((s) => `scripts/${s}.ts`),
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    packages: "external",
    outdir: dir,
    outExtension: { ".js": ".mjs" },
    logLevel: "silent",
    plugins: [sourceMeta],
  });
  return dir;
}

/** The path of `scripts/<name>.ts` compiled (built on the first call in this process): run it with `node <path>`. */
export async function compiledScript(name: Script): Promise<string> {
  built ??= buildAll();
  return join(await built, `${name}.mjs`);
}
