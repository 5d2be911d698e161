// Keeps a set of processes running, like systemd's Restart= with RestartSec and StartLimitBurst:
// a component that dies is started again after an exponential backoff, up to `burst` restarts
// within `intervalMs`, after which the supervisor gives up on it (and only it). One child's death
// never touches another. Every start, exit, restart and give-up is a typed event.
import type { ChildProcess } from "node:child_process";

export interface RestartPolicy {
  /** The first restart waits this long (systemd's RestartSec). */
  baseMs: number;
  /** Each further restart in a row waits twice as long, up to this (RestartMaxDelaySec). */
  maxMs: number;
  /** More restarts than this within intervalMs and the component is given up (StartLimitBurst). */
  burst: number;
  /** The window the burst is counted in (StartLimitIntervalSec). */
  intervalMs: number;
}

/**
 * Half a second first (time for a port to be released), doubling to 30 s; five restarts in two
 * minutes and the component is given up on: something is wrong that a restart does not fix.
 */
export const DEFAULT_RESTART: RestartPolicy = { baseMs: 500, maxMs: 30_000, burst: 5, intervalMs: 120_000 };

/** The delay before restart number `attempt` (1, 2, …) in a row: base · 2^(attempt-1), capped. */
export function restartDelay(attempt: number, p: RestartPolicy): number {
  return Math.min(p.maxMs, p.baseMs * 2 ** Math.max(0, attempt - 1));
}

/** The events, as written to mesh-up.log (the dashboard reads them by these names and fields). */
export type SupervisorEvent =
  | { event: "supervisor.started"; component: string; pid: number; restarts: number }
  | { event: "supervisor.exited"; component: string; pid: number; code: number | null; signal: NodeJS.Signals | null }
  | { event: "supervisor.restarting"; component: string; attempt: number; delayMs: number }
  | { event: "supervisor.gave_up"; component: string; restarts: number };

export interface ComponentSpec {
  readonly name: string;
  /** Starts the process: called for the first start and for every restart. */
  spawn(restarts: number): ChildProcess;
  /**
   * Whether a death is restarted. A component that never became ready on its first start has a
   * problem a restart does not fix (a bad flag, a port taken): its owner reports it instead.
   */
  shouldRestart?(): boolean;
}

export type ComponentState = "running" | "waiting" | "gave_up" | "stopped";

export interface Component {
  readonly name: string;
  readonly state: ComponentState;
  /** The current process (the last one, once it has exited). */
  readonly proc: ChildProcess | undefined;
  /** Restarts since the supervisor started it. */
  readonly restarts: number;
}

/** "payment exited with code 3" / "payment was killed by SIGKILL" */
export function describeExit(name: string, code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `${name} was killed by ${signal}` : `${name} exited with code ${code ?? "?"}`;
}

class Supervised implements Component {
  state: ComponentState = "running";
  proc: ChildProcess | undefined;
  restarts = 0;
  /** When each restart within the window happened. */
  recent: number[] = [];
  timer: NodeJS.Timeout | undefined;
  constructor(readonly spec: ComponentSpec) {}
  get name(): string {
    return this.spec.name;
  }
}

export class Supervisor {
  private readonly components = new Map<string, Supervised>();
  private stopping = false;
  private readonly policy: RestartPolicy;

  constructor(
    private readonly o: { onEvent: (e: SupervisorEvent) => void; policy?: Partial<RestartPolicy>; now?: () => number },
  ) {
    this.policy = { ...DEFAULT_RESTART, ...o.policy };
  }

  /** Starts a component and keeps it running until stop(). Throws if spawning throws. */
  add(spec: ComponentSpec): Component {
    if (this.components.has(spec.name)) throw new Error(`${spec.name} is already supervised`);
    const c = new Supervised(spec);
    this.components.set(spec.name, c);
    this.launch(c);
    return c;
  }

  get(name: string): Component | undefined {
    return this.components.get(name);
  }

  list(): Component[] {
    return [...this.components.values()];
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  private launch(c: Supervised): void {
    let proc: ChildProcess;
    try {
      proc = c.spec.spawn(c.restarts);
    } catch (e) {
      if (c.restarts === 0) throw e;
      // A spawn that throws (EAGAIN, ENOMEM) is a failed start like any other.
      this.exited(c, undefined, null, null);
      return;
    }
    c.proc = proc;
    c.state = "running";
    proc.once("exit", (code, signal) => this.exited(c, proc, code, signal));
    // A pid is there once spawn succeeded; an ENOENT comes as an "error" and an exit.
    proc.once("error", () => {});
    if (proc.pid !== undefined)
      this.o.onEvent({ event: "supervisor.started", component: c.name, pid: proc.pid, restarts: c.restarts });
  }

  private exited(
    c: Supervised,
    proc: ChildProcess | undefined,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    if (proc?.pid !== undefined)
      this.o.onEvent({ event: "supervisor.exited", component: c.name, pid: proc.pid, code, signal });
    if (this.stopping || c.state === "stopped" || c.spec.shouldRestart?.() === false) {
      c.state = "stopped";
      return;
    }
    // Restart=always rather than on-failure: only the supervisor is meant to stop a component,
    // so a clean exit (an operator's `kill <pid>`, which services answer with code 0) is an
    // outage like a crash.
    const now = this.now();
    c.recent = c.recent.filter((t) => now - t < this.policy.intervalMs);
    if (c.recent.length >= this.policy.burst) {
      c.state = "gave_up";
      this.o.onEvent({ event: "supervisor.gave_up", component: c.name, restarts: c.restarts });
      return;
    }
    c.recent.push(now);
    const attempt = c.recent.length;
    const delayMs = restartDelay(attempt, this.policy);
    c.state = "waiting";
    this.o.onEvent({ event: "supervisor.restarting", component: c.name, attempt, delayMs });
    c.timer = setTimeout(() => {
      c.timer = undefined;
      if (this.stopping) return;
      c.restarts++;
      this.launch(c);
    }, delayMs);
  }

  /**
   * Stops every component: SIGTERM to each one's process group, SIGKILL after graceMs; resolves
   * once every process has exited. Nothing is restarted from then on.
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.components.values()].map((c) => stopOne(c, graceMs)));
  }
}

async function stopOne(c: Supervised, graceMs: number): Promise<void> {
  clearTimeout(c.timer);
  const p = c.proc;
  const pid = p?.pid;
  if (!p || pid === undefined || p.exitCode !== null || p.signalCode !== null) {
    c.state = "stopped";
    return;
  }
  const exited = new Promise<void>((r) => p.once("exit", () => r()));
  signalGroup(pid, "SIGTERM");
  const hard = setTimeout(() => signalGroup(pid, "SIGKILL"), graceMs);
  await exited;
  clearTimeout(hard);
  // Whatever it started in its group (esbuild's service process) goes with it.
  signalGroup(pid, "SIGKILL");
  c.state = "stopped";
}

/**
 * Signals the process group led by `pid`: components are spawned detached, each leading its
 * own group, which a terminal's Ctrl-C (sent to mesh:up's group) does not reach.
 */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    /* the group is gone */
  }
}
