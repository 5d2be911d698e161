// Starts one mesh service as its own process that ends with its launcher (--exit-with-parent)
// and hands each of its JSON log lines to the caller: the rotation drill's way. mesh:up
// supervises its processes instead (supervisor.ts, mesh-components.ts).
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { isEvent } from "../lib/events.ts";
import { RotatingFile, rotationFromEnv, type RotatingFileOptions } from "../lib/rotating-file.ts";
import { parseLine, type MeshLine } from "./mesh-format.ts";
import { describeExit } from "./supervisor.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export interface LaunchOptions {
  service: string;
  port: number;
  pki: string;
  policy: string;
  /** "payment=127.0.0.1:7402" for each service it calls. */
  upstreams?: string[];
  /** Every log line is appended here as it was written; the file rotates by size (lib/rotating-file.ts). */
  logFile?: string;
  /** Default: MESH_LOG_MAX_SIZE and MESH_LOG_KEEP, else 10 MiB and 5 rotated files. */
  logRotation?: RotatingFileOptions;
  /** Each stdout line, parsed when it is a log line (null otherwise). */
  onLine?: (line: MeshLine | null, text: string) => void;
  onStderr?: (text: string) => void;
  /** Called when the service exits after it was listening. */
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
  env?: NodeJS.ProcessEnv;
  /**
   * Identity mode: the service enrols with (a token in `env.MESH_ENROL_TOKEN`, never an argument)
   * and renews from the CA's EST server, keeping its own state folder; `pki` is then not read.
   */
  identity?: { ca: string; state: string; lifetime?: string; poll?: number; renewAt?: number };
}

export interface Launched {
  readonly name: string;
  readonly port: number;
  readonly proc: ChildProcess;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export { describeExit };

export function launchService(o: LaunchOptions): Promise<Launched> {
  const args = [
    // The compiled bundle (bin/bundle.mjs): tsx's loader would cost each service ~30 MB and its start-up.
    join(ROOT, "bin", "mesh-service.mjs"),
    "--service",
    o.service,
    "--port",
    String(o.port),
    "--pki",
    resolve(o.pki),
    "--policy",
    resolve(o.policy),
    ...(o.upstreams ?? []).flatMap((u) => ["--upstream", u]),
    ...(o.identity
      ? [
          "--ca",
          o.identity.ca,
          "--state",
          resolve(o.identity.state),
          ...(o.identity.lifetime ? ["--lifetime", o.identity.lifetime] : []),
          ...(o.identity.poll ? ["--poll", String(o.identity.poll)] : []),
          ...(o.identity.renewAt ? ["--renew-at", String(o.identity.renewAt)] : []),
        ]
      : []),
    "--exit-with-parent", // end with mesh:up or the drill; a service started on its own outlives its shell
  ];
  // Opened first: a bad MESH_LOG_MAX_SIZE must fail before a process is started.
  const file = o.logFile
    ? new RotatingFile(o.logFile, o.logRotation ?? rotationFromEnv(o.env ?? process.env))
    : undefined;
  // A log that cannot be written (disk full, folder removed) is said once; the service runs on.
  file?.once("error", (e) => o.onStderr?.(`cannot write ${o.logFile}: ${e.message}`));
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: o.env ?? process.env,
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
  return new Promise((resolvePort, reject) => {
    let listening = false;
    createInterface({ input: proc.stdout! }).on("line", (text) => {
      file?.write(`${text}\n`);
      const line = parseLine(text);
      if (isEvent(line, "listening") && !listening) {
        listening = true;
        resolvePort({ name: o.service, port: line.port, proc, stop });
      }
      o.onLine?.(line, text);
    });
    let stderr = "";
    createInterface({ input: proc.stderr! }).on("line", (text) => {
      stderr += `${text}\n`;
      o.onStderr?.(text);
    });
    proc.on("exit", (code, signal) => {
      file?.end();
      if (!listening)
        reject(
          new Error(`${describeExit(o.service, code, signal)} before listening${stderr ? `: ${stderr.trim()}` : ""}`),
        );
      else o.onExit?.(code, signal);
    });
  });
}
