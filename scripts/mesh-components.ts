// One process of mesh:up (the CA server, a service, the dashboard) as the supervisor starts it:
// detached into its own process group, writing its log to <logs>/<name>.log itself with
// --log-file (rotated by size, MESH_LOG_MAX_SIZE/MESH_LOG_KEEP, lib/rotating-file.ts) and its
// stderr (and any stray stdout) appended to <logs>/<name>.stderr, with no pipe to mesh:up, which
// it must be able to outlive; both read back by following the files (across rotations), to echo
// them and to see when it is ready.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { followFile, sizeOf, type Follower } from "./log-follow.ts";
import { isEvent } from "../lib/events.ts";
import { parseLine, type MeshLine } from "./mesh-format.ts";
import { describeExit, type ComponentSpec } from "./supervisor.ts";
import { ROOT } from "./launch.ts";
import { rotateIfLarger, rotationFromEnv } from "../lib/rotating-file.ts";

export interface RunnerOptions {
  name: string;
  logs: string;
  /** Where its stdout goes (default <logs>/<name>.log). */
  outFile?: string;
  /**
   * The command line and environment of a start (`restarts`: how many came before). `logFile` is
   * where a mesh part writes its log itself (its --log-file, rotated: an fd would not follow a
   * rotation), and it says so with `ownLog`; otherwise its stdout is appended to `logFile`. `file`:
   * the program, else this Node; `cwd`: else the project's folder.
   */
  command(
    restarts: number,
    logFile: string,
  ): { args: string[]; env: NodeJS.ProcessEnv; file?: string; cwd?: string; ownLog?: boolean };
  /** Whether this stdout line says the process is ready (listening); may record what it learns. */
  isReady(line: MeshLine | null, text: string): boolean;
  onLine?(line: MeshLine | null, text: string): void;
  onStderr?(text: string): void;
}

/** Stdout lines kept to say why a start failed. */
const TAIL_LINES = 20;

export class Runner implements ComponentSpec {
  readonly name: string;
  readonly outFile: string;
  readonly errFile: string;
  /** Ready at least once: from then on, a death is restarted (before, it is a failed start). */
  everReady = false;
  proc: ChildProcess | undefined;
  private readonly out: Follower;
  private readonly err: Follower;
  private errTail: string[] = [];
  private pending: { resolve(): void; reject(e: Error): void } | undefined;
  private readyP: Promise<void> = Promise.resolve();

  constructor(private readonly o: RunnerOptions) {
    this.name = o.name;
    this.outFile = o.outFile ?? join(o.logs, `${o.name}.log`);
    this.errFile = join(o.logs, `${o.name}.stderr`);
    // Only what this run of mesh:up starts is read back, not what an earlier one wrote.
    this.out = followFile(this.outFile, (t) => this.line(t), { from: sizeOf(this.outFile) });
    this.err = followFile(this.errFile, (t) => this.stderr(t), { from: sizeOf(this.errFile) });
  }

  /** Resolves when the latest start is ready; rejects when it exits first, saying how and why. */
  ready(): Promise<void> {
    return this.readyP;
  }

  /** A component that never got ready on its first start is not restarted: mesh:up reports it. */
  shouldRestart(): boolean {
    return this.everReady;
  }

  spawn(restarts: number): ChildProcess {
    const { args, env, file, cwd, ownLog } = this.o.command(restarts, this.outFile);
    // What the process writes through an inherited descriptor (stderr, an app's stdout) cannot be
    // rotated while it runs without losing lines: it is rotated here, when no process has it open.
    for (const f of ownLog ? [this.errFile] : [this.errFile, this.outFile]) {
      try {
        rotateIfLarger(f, rotationFromEnv());
      } catch {
        // a bad MESH_LOG_* is reported by mesh:up at start; a rename that fails leaves the file growing
      }
    }
    const out = ownLog ? undefined : openSync(this.outFile, "a", 0o600);
    const err = openSync(this.errFile, "a", 0o600);
    let proc: ChildProcess;
    try {
      // detached: its own process group, so a Ctrl-C in mesh:up's terminal reaches mesh:up alone,
      // which then stops everything in order; and it keeps running if mesh:up is killed outright.
      proc = spawn(file ?? process.execPath, args, {
        cwd: cwd ?? ROOT,
        detached: true,
        stdio: ["ignore", out ?? err, err],
        env,
      });
    } finally {
      if (out !== undefined) closeSync(out);
      closeSync(err);
    }
    this.proc = proc;
    this.errTail = [];
    this.readyP = new Promise<void>((resolve, reject) => {
      this.pending = { resolve, reject };
    });
    this.readyP.catch(() => {}); // a restart nobody awaits must not be an unhandled rejection
    proc.once("exit", (code, signal) => {
      // Its last lines may not have been read yet.
      this.out.poll();
      this.err.poll();
      const p = this.pending;
      if (!p) return;
      this.pending = undefined;
      const why = this.errTail.join("\n").trim();
      p.reject(new Error(`${describeExit(this.name, code, signal)} before it was ready${why ? `: ${why}` : ""}`));
    });
    return proc;
  }

  /** Ready by a test of its own rather than a line (a workload's app accepting connections). */
  markReady(): void {
    if (!this.pending) return;
    this.everReady = true;
    this.pending.resolve();
    this.pending = undefined;
  }

  stop(): void {
    this.out.stop();
    this.err.stop();
  }

  private line(text: string): void {
    const l = parseLine(text);
    if (this.pending && this.o.isReady(l, text)) {
      this.everReady = true;
      this.pending.resolve();
      this.pending = undefined;
    }
    this.o.onLine?.(l, text);
  }

  private stderr(text: string): void {
    this.errTail.push(text);
    if (this.errTail.length > TAIL_LINES) this.errTail.shift();
    this.o.onStderr?.(text);
  }
}

/** The CA's EST server as its own process: `ca serve` from the compiled bundle (bin/ca.mjs). */
export interface CaProcess {
  runner: Runner;
  /** Known once ready: https://127.0.0.1:<port>, and the admin listener's http://… */
  url: string;
  adminUrl: string;
}

/** JSON lines of the CA worth showing as mesh:up runs (the rest are in logs/ca.log). */
const CA_SHOWN = new Set([
  "ca.started",
  "est.enrolled",
  "est.refused",
  "est.refused_summary",
  "est.clock_skew",
  "est.error",
  "ca.reload_failed",
  "ca.tls_renewed",
  "admin.listening",
]);
/** What `ca serve` says on stderr for a person at its terminal: the banner says it for mesh:up. */
const CA_STDERR_QUIET = /^(CA serving EST on |  trust it with )/;

export function caProcess(o: {
  logs: string;
  pki: string;
  port: number;
  adminPort: number;
  lifetime: string;
  maxLifetime: string;
  ratePerName: number;
  ratePerAddress: number;
  /** Its component and log name (default "ca"; replicas: ca2, ca3), shown as its lines' prefix. */
  name?: string;
  /** The ledger's store (--store), when not the folder's SQLite. */
  store?: string;
  echo(line: MeshLine): void;
  onStderr(text: string): void;
}): CaProcess {
  const name = o.name ?? "ca";
  const ca: CaProcess = { runner: undefined as unknown as Runner, url: "", adminUrl: "" };
  let started = false;
  let admin = false;
  ca.runner = new Runner({
    name,
    logs: o.logs,
    command: (_restarts, logFile) => {
      started = admin = false;
      // A restart comes back on the ports of the first start: the services know the CA by its URL.
      const port = ca.url ? Number(new URL(ca.url).port) : o.port;
      const adminPort = ca.adminUrl ? Number(new URL(ca.adminUrl).port) : o.adminPort;
      return {
        args: [
          join(ROOT, "bin", "ca.mjs"),
          "serve",
          "--dir",
          o.pki,
          "--port",
          String(port),
          "--admin-port",
          String(adminPort),
          "--default-lifetime",
          o.lifetime,
          "--max-lifetime",
          o.maxLifetime,
          "--rate-per-name",
          String(o.ratePerName),
          "--rate-per-address",
          String(o.ratePerAddress),
          "--log-file",
          logFile,
          ...(o.store ? ["--store", o.store] : []),
        ],
        env: process.env, // MESH_CA_PASSPHRASE, if the CA's keys are encrypted
        ownLog: true,
      };
    },
    isReady: (l) => {
      if (isEvent(l, "ca.started")) {
        started = true;
        ca.url = l.url;
      }
      if (isEvent(l, "admin.listening") && l.url !== undefined) {
        admin = true;
        ca.adminUrl = l.url;
      }
      return started && admin;
    },
    onLine: (l) => {
      // A replica's lines say "ca" too (it is the same CA): the console tells them apart.
      if (l?.event && CA_SHOWN.has(l.event)) o.echo(name === "ca" ? l : { ...l, service: name });
    },
    onStderr: (text) => {
      if (!CA_STDERR_QUIET.test(text)) o.onStderr(text);
    },
  });
  return ca;
}

export interface ServiceProcessOptions {
  name: string;
  logs: string;
  pki: string;
  policy: string;
  port: number;
  upstreams: string[];
  /** Online: the service enrols and renews from the CA server; `token` gives the one-time token a start needs, if any. */
  identity?: { ca: string; state: string; lifetime: string; poll: number; token(restarts: number): string | undefined };
  onLine(line: MeshLine | null, text: string): void;
  onStderr(text: string): void;
}

/** A mesh service (bin/mesh-service.mjs); `port`/`adminPort` are known once it is ready, and kept for restarts. */
export interface ServiceProcess {
  runner: Runner;
  port: number;
  adminPort: number;
}

export function serviceProcess(o: ServiceProcessOptions): ServiceProcess {
  const s: ServiceProcess = { runner: undefined as unknown as Runner, port: 0, adminPort: 0 };
  let listening = false;
  let admin = false;
  s.runner = new Runner({
    name: o.name,
    logs: o.logs,
    command: (restarts, logFile) => {
      listening = admin = false;
      const port = s.port || o.port;
      const adminPort = s.adminPort || (o.port === 0 ? 0 : o.port + 10);
      const env: NodeJS.ProcessEnv = { ...process.env, MESH_ADMIN_PORT: String(adminPort) };
      // The token goes in the child's environment only (ps shows arguments); the service removes it once read.
      delete env.MESH_ENROL_TOKEN;
      const token = o.identity?.token(restarts);
      if (token) env.MESH_ENROL_TOKEN = token;
      const id = o.identity;
      return {
        args: [
          // The compiled bundle (bin/bundle.mjs): tsx's loader would cost each service ~30 MB and its start-up.
          join(ROOT, "bin", "mesh-service.mjs"),
          "--service",
          o.name,
          "--port",
          String(port),
          "--pki",
          o.pki,
          "--policy",
          o.policy,
          "--log-file",
          logFile,
          ...o.upstreams.flatMap((u) => ["--upstream", u]),
          ...(id ? ["--ca", id.ca, "--state", id.state, "--lifetime", id.lifetime, "--poll", String(id.poll)] : []),
        ],
        env,
        ownLog: true,
      };
    },
    isReady: (l) => {
      if (isEvent(l, "listening")) {
        listening = true;
        s.port = l.port;
      }
      if (isEvent(l, "admin.listening")) {
        admin = true;
        s.adminPort = l.port;
      }
      return listening && admin;
    },
    onLine: o.onLine,
    onStderr: o.onStderr,
  });
  return s;
}

/** The dashboard (scripts/mesh-dashboard.ts, compiled: bin/mesh-dashboard.mjs); its stdout is one line for people, so it goes to dashboard.out, not a .log. */
export interface DashboardProcess {
  runner: Runner;
  url: string;
}

export function dashboardProcess(o: {
  logs: string;
  pki: string;
  policy: string;
  port: number;
  onStderr(text: string): void;
}): DashboardProcess {
  const d: DashboardProcess = { runner: undefined as unknown as Runner, url: "" };
  d.runner = new Runner({
    name: "dashboard",
    logs: o.logs,
    outFile: join(o.logs, "dashboard.out"),
    command: (_restarts, logFile) => ({
      args: [
        // The compiled bundle (bin/bundle.mjs), as for the services: tsx's loader cost every start.
        join(ROOT, "bin", "mesh-dashboard.mjs"),
        "--logs",
        o.logs,
        "--pki",
        o.pki,
        "--policy",
        o.policy,
        "--port",
        String(d.url ? Number(new URL(d.url).port) : o.port),
        "--log-file",
        logFile,
      ],
      env: process.env,
      ownLog: true,
    }),
    isReady: (_l, text) => {
      const m = /^dashboard: (http:\/\/\S+)/.exec(text);
      if (m) d.url = m[1]!;
      return m !== null;
    },
    onStderr: o.onStderr,
  });
  return d;
}
