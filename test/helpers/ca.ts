// Test helpers for the CA: run the real CLI as a process, run the real
// openssl, and fingerprint a state folder to prove a failure changed nothing.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import Database from "better-sqlite3";

export const ROOT = new URL("../..", import.meta.url).pathname;
// The compiled bundle, as `npm run ca` runs it (bin/ca.mjs, rebuilt when a source changed):
// it starts in a third of the time tsx takes to load and compile the sources, and the suite
// starts the CLI a few hundred times.
const CLI = join(ROOT, "bin", "ca.mjs");

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CA's CLI in a child process, as `npm run ca` does, without npm's noise. */
export function ca(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; input?: string } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: {
        ...process.env,
        MESH_PKI_DIR: "",
        MESH_CA_PASSPHRASE: "",
        MESH_CA_NOW: "",
        MESH_CA_CRASH_AT: "",
        MESH_CA_STORE: "",
        ...opts.env,
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(opts.input ?? "");
  });
}

export function openssl(args: string[], input?: string): { code: number | null; out: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8", input });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

export function tempDir(prefix = "mesh-ca-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A fingerprint of everything in a state folder: every file's mode and
 * content hash, and every ledger row. Equal fingerprints mean nothing changed.
 */
export function fingerprint(dir: string): string {
  const files: string[] = [];
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const name of entries.sort()) {
      // The SQLite files change on open (WAL checkpoints) and come and go while other
      // processes read the ledger; the ledger is compared by its rows instead.
      if (/^ca\.db(-wal|-shm|-journal)?$/.test(name)) continue;
      const path = join(d, name);
      const st = statSync(path);
      if (st.isDirectory()) walk(path);
      else {
        files.push(
          `${relative(dir, path)} ${(st.mode & 0o777).toString(8)} ${createHash("sha256").update(readFileSync(path)).digest("hex")}`,
        );
      }
    }
  };
  walk(dir);
  return [...files, ...ledgerRows(dir)].join("\n");
}

export function ledgerRows(dir: string): string[] {
  let db: Database.Database;
  try {
    db = new Database(join(dir, "ca.db"), { readonly: true, fileMustExist: true });
  } catch {
    return ["(no ledger)"];
  }
  try {
    const rows = [
      ...db.prepare("SELECT * FROM meta ORDER BY key").all(),
      ...db.prepare("SELECT * FROM issuers ORDER BY id").all(),
      ...db.prepare("SELECT * FROM certs ORDER BY serial").all(),
    ];
    return rows.map((r) => JSON.stringify(r));
  } finally {
    db.close();
  }
}

/** The only line an expected failure prints: one line, "error: …", no stack trace. */
export function oneLineError(r: Run): string {
  const lines = r.stderr
    .trimEnd()
    .split("\n")
    .filter((l) => !l.startsWith("warning: "));
  if (lines.length !== 1) throw new Error(`expected one error line, got:\n${r.stderr}`);
  if (/\n\s+at /.test(r.stderr)) throw new Error(`stack trace printed:\n${r.stderr}`);
  return lines[0]!;
}
