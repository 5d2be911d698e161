// Compiles the CLI, the service and mesh:up's dashboard (ca/cli.ts, services/main.ts,
// services/sidecar.ts, scripts/mesh-dashboard.ts) into one esbuild bundle
// in .build/ (git-ignored) and rebuilds it whenever a source file it was built from changed,
// so running compiled code never runs stale code. Plain JavaScript: it must run before any
// TypeScript can. `node bin/bundle.mjs` builds now (npm's prepare script runs it).
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const BUILD_DIR = join(ROOT, ".build");
const POINTER = join(BUILD_DIR, "current.json");
export const ENTRIES = ["ca/cli.ts", "services/main.ts", "services/sidecar.ts", "scripts/mesh-dashboard.ts"];
// Superseded builds stay this long: a process started from one may still import a lazy chunk.
const KEEP_OLD_MS = 24 * 3600_000;

/** How a missing file (a tsconfig.json that is not there) is recorded: its appearing is a change. */
const GONE = [0, -1];

/** [mtime, size] of a file, or null when it is gone. */
function stamp(path) {
  try {
    const st = statSync(path);
    return [st.mtimeMs, st.size];
  } catch {
    return null;
  }
}

/**
 * The current build, or null when it must be rebuilt: no build yet, a build from another
 * checkout, or any file it was compiled from (this file included) changed, appeared or went.
 * One stat per source file: well under a millisecond.
 */
export function currentBuild() {
  let pointer;
  try {
    pointer = JSON.parse(readFileSync(POINTER, "utf8"));
  } catch {
    return null;
  }
  if (pointer.root !== ROOT || !Array.isArray(pointer.inputs)) return null;
  for (const [file, mtime, size] of pointer.inputs) {
    const now = stamp(join(ROOT, file)) ?? GONE;
    if (now[0] !== mtime || now[1] !== size) return null;
  }
  const dir = join(BUILD_DIR, pointer.id);
  if (!ENTRIES.every((e) => stamp(join(dir, outName(e))))) return null;
  return { id: pointer.id, dir };
}

const outName = (entry) => entry.replace(/\.ts$/, ".mjs");

/**
 * A module's import.meta.url is its own source file's URL, as under tsx: bundled, it would
 * be the bundle's, and a path made relative to it would point into .build/.
 */
export const sourceMeta = {
  name: "source-import-meta",
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      if (args.path.includes("/node_modules/")) return undefined;
      const text = readFileSync(args.path, "utf8");
      if (!text.includes("import.meta")) return undefined;
      const contents = text
        .replaceAll("import.meta.url", JSON.stringify(pathToFileURL(args.path).href))
        .replaceAll("import.meta.dirname", JSON.stringify(dirname(args.path)))
        .replaceAll("import.meta.filename", JSON.stringify(args.path));
      return { contents, loader: "ts" };
    });
  },
};

/**
 * Builds into a fresh folder and switches the pointer to it with one rename, so a process
 * starting meanwhile loads either the old build or the new one, never half of each; two
 * processes building at once both end with a complete build.
 */
export async function build() {
  const { build: esbuild } = await import("esbuild");
  const started = Date.now();
  const result = await esbuild({
    absWorkingDir: ROOT,
    entryPoints: ENTRIES,
    outbase: ROOT,
    bundle: true,
    // Chunks: what a command imports with import() is loaded only when that command runs.
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // Dependencies are loaded from node_modules as they are: upgrading one needs no rebuild.
    packages: "external",
    sourcemap: "linked",
    outExtension: { ".js": ".mjs" },
    outdir: "out",
    write: false,
    metafile: true,
    logLevel: "silent",
    plugins: [sourceMeta],
  });
  const id = createHash("sha256")
    .update(result.outputFiles.map((f) => f.hash).join())
    .digest("hex")
    .slice(0, 16);
  const dir = join(BUILD_DIR, id);
  if (!stamp(dir)) {
    const tmp = join(BUILD_DIR, `tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    for (const f of result.outputFiles) {
      const path = join(tmp, relative(join(ROOT, "out"), f.path));
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, f.contents);
    }
    try {
      renameSync(tmp, dir);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      if (!stamp(dir)) throw err; // not another process's identical build: a real failure
    }
  }
  // Besides the sources: this file (the build's settings) and tsconfig.json, which esbuild reads too.
  const inputs = [
    ...Object.keys(result.metafile.inputs),
    relative(ROOT, fileURLToPath(import.meta.url)),
    "tsconfig.json",
  ].map((file) => {
    const s = stamp(join(ROOT, file)) ?? GONE;
    // Changed while esbuild read it: record it as unknown so that the next run rebuilds.
    // (File times come from a coarse kernel clock, a few ms behind Date.now(): hence the margin.)
    return s[0] >= started - 100 ? [file, -1, -1] : [file, ...s];
  });
  const tmpPointer = `${POINTER}.${process.pid}.${randomBytes(4).toString("hex")}`;
  writeFileSync(tmpPointer, `${JSON.stringify({ id, root: ROOT, built: new Date().toISOString(), inputs })}\n`);
  renameSync(tmpPointer, POINTER);
  removeOld(id);
  return { id, dir };
}

function removeOld(keep) {
  for (const name of readdirSync(BUILD_DIR)) {
    if (name === keep || name === "current.json") continue;
    const s = stamp(join(BUILD_DIR, name));
    if (s && Date.now() - s[0] > KEEP_OLD_MS) rmSync(join(BUILD_DIR, name), { recursive: true, force: true });
  }
}

/**
 * The build to run: the current one, or a fresh one when any source changed. The rebuild runs
 * in a child process, so that a service started from a stale build does not keep esbuild's
 * JavaScript side in its memory for its lifetime.
 */
export function ensureBuild() {
  for (let attempt = 0; attempt < 3; attempt++) {
    const current = currentBuild();
    if (current) return current;
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--quiet"], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    if (r.status !== 0) {
      process.stderr.write(`error: could not compile ${ENTRIES.join(", ")} (run: node bin/bundle.mjs)\n`);
      process.exit(70);
    }
  }
  // Sources kept changing while they were compiled (an editor saving, a checkout running):
  // the newest build is at least as new as the sources were when this run started.
  const { id } = JSON.parse(readFileSync(POINTER, "utf8"));
  return { id, dir: join(BUILD_DIR, id) };
}

/** Runs one entry point (e.g. "ca/cli.ts") from the bundle, in this process. */
export async function runEntry(entry) {
  // Only with MESH_DEBUG are stack traces shown; then they should name the .ts sources.
  if (process.env.MESH_DEBUG) process.setSourceMapsEnabled(true);
  const { dir } = ensureBuild();
  await import(pathToFileURL(join(dir, outName(entry))).href);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes("--check");
  const fresh = currentBuild();
  if (check) {
    console.log(fresh ? `up to date: ${relative(ROOT, fresh.dir)}` : "stale: a source changed since the last build");
    process.exitCode = fresh ? 0 : 1;
  } else {
    const t = performance.now();
    try {
      const b = await build();
      if (!process.argv.includes("--quiet"))
        console.log(
          `built ${ENTRIES.join(", ")} into ${relative(ROOT, b.dir)}/ in ${Math.round(performance.now() - t)} ms`,
        );
    } catch (err) {
      // esbuild's message names the file, line and column of each error.
      process.stderr.write(`${err.message}\n`);
      process.exitCode = 1;
    }
  }
}
