// Starts the online drill's CA server as a child process (ca-child.ts) and hands each of its log
// lines to the drill. Not in the drill's process: the drill changes the CA with handles of its
// own, and a handle that holds the ledger's write lock across an await (adding a generation signs
// its CRL) made the server's next write wait on SQLite's busy timeout inside the same event loop,
// which cannot release the lock meanwhile: the drill, its CA server and its traffic froze for
// 20 s (busy_timeout), and a renewal due then waited on a CA that accepted and never answered.
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { BucketSpec } from "../../ca/index.ts";
import { parseLine, type MeshLine } from "../mesh-format.ts";

export interface DrillCaConfig {
  pki: string;
  lifetimeMs: number;
  pollMs: number;
  limits: { perAddress: BucketSpec; perName: BucketSpec };
  /** Where to listen (default 0: any free port); a CA that comes back listens where it was. */
  port?: number;
  /** The window of the CA's summary of unauthenticated refusals (default the CA's 10 s). */
  refusalLogMs?: number;
}

export interface DrillCa {
  readonly url: string;
  readonly proc: ChildProcess;
  /** SIGTERM, then SIGKILL after graceMs; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
}

const CHILD = join(fileURLToPath(new URL(".", import.meta.url)), "ca-child.ts");

export function startDrillCa(
  cfg: DrillCaConfig,
  o: { logFile: string; onLine: (line: MeshLine) => void; startMs?: number },
): Promise<DrillCa> {
  const proc = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), CHILD, JSON.stringify(cfg)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const stop = async (graceMs = 5_000) => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const hard = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(hard);
    }
  };
  return new Promise((resolve, reject) => {
    let stderr = "";
    let started = false;
    const timer = setTimeout(() => {
      void stop();
      reject(
        new Error(
          `the drill's CA server did not start within ${(o.startMs ?? 60_000) / 1000} s${stderr ? `: ${stderr.trim()}` : ""}`,
        ),
      );
    }, o.startMs ?? 60_000);
    createInterface({ input: proc.stdout! }).on("line", (text) => {
      appendFileSync(o.logFile, `${text}\n`);
      const line = parseLine(text);
      if (!line) return;
      o.onLine(line);
      if (line.event === "ca.started" && !started) {
        started = true;
        clearTimeout(timer);
        resolve({ url: String(line.url), proc, stop });
      }
    });
    createInterface({ input: proc.stderr! }).on("line", (text) => (stderr += `${text}\n`));
    proc.once("exit", (code, signal) => {
      if (started) return;
      clearTimeout(timer);
      reject(
        new Error(
          `the drill's CA server exited (${signal ?? `code ${code}`}) before listening${stderr ? `: ${stderr.trim().slice(0, 2_000)}` : ""}`,
        ),
      );
    });
  });
}
