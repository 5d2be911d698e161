// The workloads of mesh-workloads.toml as mesh:up runs them: for each, its sidecar (the bundled
// bin/mesh-sidecar.mjs, component `<name>`, enrolled like a service) and, when the file gives a
// command, its app (component `<name>-app`), both supervised like every other part. Every port
// is fixed before anything starts (a 0 becomes a free port), so a workload may call any other
// in any order, and a restart comes back where its callers expect it.
import { createConnection, createServer, type Server } from "node:net";
import { dirname, join, resolve } from "node:path";
import { upstreamEnvName, type Workload } from "../services/mesh/workloads.ts";
import type { MeshLine } from "./mesh-format.ts";
import { Runner } from "./mesh-components.ts";
import { ROOT } from "./launch.ts";

/** A workload with every port decided. */
export interface PlacedWorkload {
  readonly name: string;
  readonly workload: Workload;
  /** The sidecar's mTLS port and its admin (metrics, healthz) port. */
  readonly port: number;
  readonly adminPort: number;
  /** Where the sidecar forwards: http://127.0.0.1:<port> or unix:/path. */
  readonly app: string;
  /** Upstream name → the loopback port the app calls it on. */
  readonly outbound: ReadonlyMap<string, number>;
}

/** Free loopback ports, all held until every one is chosen so that none is handed out twice. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      servers.push(s);
      await new Promise<void>((ok, ko) => s.once("error", ko).listen(0, "127.0.0.1", () => ok()));
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((ok) => s.close(() => ok()))));
  }
}

/**
 * Decide every port: the file's, or a free one where it says 0 (or where `anyPorts`: every
 * port of every workload, for tests and a second mesh on one host). The admin port is the
 * sidecar's + 10, as the services', or free when that is 0.
 */
export async function placeWorkloads(list: readonly Workload[], anyPorts: boolean): Promise<PlacedWorkload[]> {
  const want = (p: number) => (anyPorts ? 0 : p);
  let zeros = 0;
  for (const w of list) {
    zeros += want(w.port) === 0 ? 2 : 0;
    if (w.app.kind === "port" && want(w.app.port) === 0) zeros++;
    for (const p of w.upstreams.values()) if (want(p) === 0) zeros++;
  }
  const free = await freePorts(zeros);
  const next = (p: number) => (want(p) === 0 ? free.shift()! : p);
  return list.map((w) => {
    const port = next(w.port);
    const adminPort = want(w.port) === 0 ? free.shift()! : w.port + 10;
    const app =
      w.app.kind === "port"
        ? `http://127.0.0.1:${next(w.app.port)}`
        : w.app.kind === "socket"
          ? `unix:${w.app.path}`
          : w.app.address.kind === "unix"
            ? `unix:${w.app.address.path}`
            : `http://${w.app.address.host.includes(":") ? `[${w.app.address.host}]` : w.app.address.host}:${w.app.address.port}`;
    const outbound = new Map([...w.upstreams].map(([u, p]) => [u, next(p)] as const));
    return { name: w.name, workload: w, port, adminPort, app, outbound };
  });
}

/** The app's environment: where it listens, and the URL of each upstream through its sidecar. */
export function appEnv(p: PlacedWorkload): Record<string, string> {
  const env: Record<string, string> = { MESH_SERVICE: p.name };
  if (p.app.startsWith("http://")) env.MESH_APP_PORT = new URL(p.app).port;
  else env.MESH_APP_SOCKET = p.app.slice("unix:".length);
  env.MESH_APP_ADDRESS = p.app;
  for (const [u, port] of p.outbound) env[upstreamEnvName(u)] = `http://127.0.0.1:${port}`;
  return env;
}

export interface WorkloadSidecarOptions {
  placed: PlacedWorkload;
  logs: string;
  pki: string;
  policy: string;
  /** Where each upstream's mTLS listener is, by name (the built-in services and the other workloads). */
  addressOf(name: string): string;
  identity?: { ca: string; state: string; lifetime: string; poll: number; token(restarts: number): string | undefined };
  onLine(line: MeshLine | null, text: string): void;
  onStderr(text: string): void;
}

/** The sidecar of a workload, component `<name>`: ready once its mTLS, admin and every outbound listener are up. */
export function workloadSidecar(o: WorkloadSidecarOptions): Runner {
  const p = o.placed;
  const seen = new Set<string>();
  return new Runner({
    name: p.name,
    logs: o.logs,
    command: (restarts, logFile) => {
      seen.clear();
      const env: NodeJS.ProcessEnv = { ...process.env };
      // The token in its environment only (ps shows arguments); the sidecar removes it once read.
      delete env.MESH_ENROL_TOKEN;
      const token = o.identity?.token(restarts);
      if (token) env.MESH_ENROL_TOKEN = token;
      const id = o.identity;
      return {
        args: [
          join(ROOT, "bin", "mesh-sidecar.mjs"),
          "--service",
          p.name,
          "--app",
          p.app,
          "--app-protocol",
          p.workload.protocol,
          "--port",
          String(p.port),
          "--admin-port",
          String(p.adminPort),
          "--pki",
          o.pki,
          "--policy",
          o.policy,
          ...[...p.outbound].flatMap(([u, port]) => ["--upstream", `${u}=${o.addressOf(u)}@${port}`]),
          "--log-file",
          logFile,
          ...(id ? ["--ca", id.ca, "--state", id.state, "--lifetime", id.lifetime, "--poll", String(id.poll)] : []),
        ],
        env,
        ownLog: true,
      };
    },
    isReady: (l) => {
      if (l?.event === "listening" || l?.event === "admin.listening") seen.add(l.event);
      if (l?.event === "outbound.listening") seen.add(`outbound:${String(l.upstream)}`);
      return (
        seen.has("listening") &&
        seen.has("admin.listening") &&
        [...p.outbound.keys()].every((u) => seen.has(`outbound:${u}`))
      );
    },
    onLine: o.onLine,
    onStderr: o.onStderr,
  });
}

export interface WorkloadAppOptions {
  placed: PlacedWorkload;
  logs: string;
  /** The folder the workloads file is in: commands run from there. */
  cwd: string;
  onLine(text: string): void;
  onStderr(text: string): void;
}

/**
 * The app of a workload, component `<name>-app`, from its command (`node` is this Node). Its
 * output goes to <logs>/<name>-app.out and .stderr. Ready when its port or socket accepts a
 * connection: any app, in any language, with no line to print.
 */
export function workloadApp(o: WorkloadAppOptions): Runner {
  const p = o.placed;
  const [program, ...args] = p.workload.command!;
  let generation = 0;
  const runner: Runner = new Runner({
    name: `${p.name}-app`,
    logs: o.logs,
    // Not a .log: the app's output is its own, not the mesh's JSON lines (mesh:logs and the
    // dashboard follow *.log); the sidecar logs every request it forwards.
    outFile: join(o.logs, `${p.name}-app.out`),
    command: () => {
      const mine = ++generation;
      void waitConnectable(
        p.app,
        () =>
          mine !== generation ||
          (runner.proc !== undefined && (runner.proc.exitCode !== null || runner.proc.signalCode !== null)),
      ).then((up) => {
        if (up && mine === generation) runner.markReady();
      });
      return {
        file: program === "node" ? process.execPath : program,
        args,
        cwd: o.cwd,
        env: { ...process.env, MESH_ENROL_TOKEN: undefined, ...appEnv(p) },
      };
    },
    isReady: () => false,
    onLine: (_l, text) => o.onLine(text),
    onStderr: o.onStderr,
  });
  return runner;
}

/** Polls until `app` (http://host:port or unix:/path) accepts a connection; false once `gone()`. */
async function waitConnectable(app: string, gone: () => boolean): Promise<boolean> {
  const target = app.startsWith("unix:")
    ? { path: app.slice(5) }
    : { host: new URL(app).hostname.replace(/^\[|\]$/g, ""), port: Number(new URL(app).port) };
  // A first poll after the process had a moment to start.
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    await new Promise((r) => setTimeout(r, delay));
    if (gone()) return false;
    const ok = await new Promise<boolean>((done) => {
      const s = createConnection(target as { port: number; host: string });
      s.once("connect", () => {
        s.destroy();
        done(true);
      });
      s.once("error", () => done(false));
    });
    if (ok) return true;
  }
}

/** The folder commands run from: the workloads file's own. */
export function workloadsCwd(file: string): string {
  return dirname(resolve(file));
}
