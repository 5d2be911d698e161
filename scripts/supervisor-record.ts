// What a supervisor leaves on disk so that its components can be found after it is gone:
// <logs>/mesh-up.pids, rewritten atomically on every start, with each process's id and its
// start time (so a recycled pid is never mistaken for a component). The components outlive a
// supervisor killed with SIGKILL on purpose (see docs/mesh.md); the next mesh:up finds them here.
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { signalGroup } from "./supervisor.ts";
import { processAlive } from "../lib/process-alive.ts";

export interface RecordedProcess {
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot; null where /proc is not there. */
  readonly startTime: string | null;
}

export interface SupervisorRecord {
  readonly supervisor: RecordedProcess;
  readonly components: Readonly<Record<string, RecordedProcess>>;
}

/** The start time of a live process, or null (gone, or no /proc). */
export function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count from the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

export function recordOf(pid: number): RecordedProcess {
  return { pid, startTime: startTimeOf(pid) };
}

/**
 * Whether the process recorded is still the same one running: "unknown" when a process has its
 * pid but no start time can tell (no /proc), since a pid may have been given to another since.
 */
export function sameProcess(p: RecordedProcess): "yes" | "no" | "unknown" {
  if (!processAlive(p.pid)) return "no";
  const now = startTimeOf(p.pid);
  if (p.startTime === null || now === null) return "unknown";
  return now === p.startTime ? "yes" : "no";
}

/** Only a process known to be the one recorded is ever signalled. */
export function stillRunning(p: RecordedProcess): boolean {
  return sameProcess(p) === "yes";
}

export function writeRecord(file: string, r: SupervisorRecord): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(r, null, 2)}\n`);
  renameSync(tmp, file);
}

export function readRecord(file: string): SupervisorRecord | null {
  try {
    const r = JSON.parse(readFileSync(file, "utf8")) as SupervisorRecord;
    const ok = (p: unknown): p is RecordedProcess =>
      typeof p === "object" &&
      p !== null &&
      Number.isSafeInteger((p as RecordedProcess).pid) &&
      (p as RecordedProcess).pid > 1;
    if (!ok(r.supervisor) || typeof r.components !== "object" || r.components === null) return null;
    return {
      supervisor: r.supervisor,
      components: Object.fromEntries(Object.entries(r.components).filter(([, p]) => ok(p))),
    };
  } catch {
    return null;
  }
}

export function removeRecord(file: string): void {
  rmSync(file, { force: true });
}

export interface Leftovers {
  /** The supervisor of the record, when it still runs. */
  readonly supervisor: RecordedProcess | null;
  /** Its components still running. */
  readonly orphans: readonly { readonly name: string; readonly pid: number }[];
}

export function leftovers(r: SupervisorRecord | null): Leftovers {
  if (!r) return { supervisor: null, orphans: [] };
  return {
    // Refusing to start is the safe answer when it cannot be told: the message names the pid.
    supervisor: sameProcess(r.supervisor) !== "no" && r.supervisor.pid !== process.pid ? r.supervisor : null,
    orphans: Object.entries(r.components)
      .filter(([, p]) => stillRunning(p))
      .map(([name, p]) => ({ name, pid: p.pid })),
  };
}

/** SIGTERM to each orphan's process group, SIGKILL after graceMs; resolves once all are gone. */
export async function stopOrphans(orphans: Leftovers["orphans"], r: SupervisorRecord, graceMs = 5_000): Promise<void> {
  const procs = orphans.map((o) => r.components[o.name]!);
  for (const p of procs) signalGroup(p.pid, "SIGTERM");
  const t0 = Date.now();
  while (procs.some(stillRunning)) {
    if (Date.now() - t0 > graceMs) for (const p of procs.filter(stillRunning)) signalGroup(p.pid, "SIGKILL");
    await new Promise((res) => setTimeout(res, 100));
  }
}
