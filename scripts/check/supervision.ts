// mesh:check's view of mesh:up's supervision: which parts restarted lately (‼) and which it gave
// up on (×), read from the supervisor.* events in <logs>/mesh-up.log since this mesh:up started,
// and whether mesh:up itself still runs. Reading is gather-like I/O; judging is a pure function.
import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseEventLine } from "../../lib/events.ts";
import type { Check } from "./checks.ts";
import { processAlive } from "../../lib/process-alive.ts";

/** A restart within this long is worth a warning: the part may be crashing over and over. */
export const RECENT_RESTART_MS = 10 * 60_000;
/** mesh-up.log is read from its end, this much at most. */
const MAX_READ_BYTES = 4 * 1024 * 1024;

export interface ComponentFacts {
  readonly name: string;
  /** Times (ms) of each restart (supervisor.started with restarts > 0). */
  readonly restarts: readonly number[];
  readonly lastExit?: { readonly at: number; readonly code: number | null; readonly signal: string | null };
  /** Its last event is supervisor.gave_up: nothing runs it now. */
  readonly gaveUp: boolean;
}

export interface SupervisionFacts {
  readonly pid: number | null;
  readonly running: boolean;
  readonly components: readonly ComponentFacts[];
}

/** mesh:up's pid and start time, from the mesh.json it wrote. */
function meshRun(logs: string): { pid?: number; startedAt?: string } | null {
  try {
    const s = JSON.parse(readFileSync(join(logs, "mesh.json"), "utf8")) as { pid?: unknown; startedAt?: unknown };
    return {
      pid: Number.isSafeInteger(s.pid) && (s.pid as number) > 1 ? (s.pid as number) : undefined,
      startedAt: typeof s.startedAt === "string" ? s.startedAt : undefined,
    };
  } catch {
    return null;
  }
}

/** The supervisor events of the mesh:up that wrote mesh.json (those since it started). */
export function readSupervision(logs: string): SupervisionFacts | null {
  const mesh = meshRun(logs);
  const file = join(logs, "mesh-up.log");
  let text: string;
  try {
    const size = statSync(file).size;
    const n = Math.min(size, MAX_READ_BYTES);
    const buf = Buffer.alloc(n);
    const fd = openSync(file, "r");
    try {
      readSync(fd, buf, 0, n, size - n);
    } finally {
      closeSync(fd);
    }
    text = buf.toString("utf8");
  } catch {
    return null;
  }
  const since = mesh?.startedAt ? Date.parse(mesh.startedAt) : 0;
  const byName = new Map<string, { restarts: number[]; lastExit?: ComponentFacts["lastExit"]; gaveUp: boolean }>();
  for (const raw of text.split("\n")) {
    if (!raw.startsWith("{") || !raw.includes('"supervisor.')) continue;
    const l = parseEventLine(raw);
    if (l?.event !== "supervisor.started" && l?.event !== "supervisor.exited" && l?.event !== "supervisor.gave_up")
      continue;
    const at = Date.parse(l.time);
    if (!(at >= since)) continue;
    const c = byName.get(l.component) ?? { restarts: [], gaveUp: false };
    byName.set(l.component, c);
    if (l.event === "supervisor.started") {
      c.gaveUp = false;
      if (l.restarts > 0) c.restarts.push(at);
    } else if (l.event === "supervisor.exited") c.lastExit = { at, code: l.code, signal: l.signal };
    else c.gaveUp = true;
  }
  const pid = mesh?.pid ?? null;
  return {
    pid,
    running: pid !== null && processAlive(pid),
    components: [...byName].map(([name, c]) => ({ name, ...c })),
  };
}

const hhmmss = (ms: number) => `${new Date(ms).toISOString().slice(11, 19)} UTC`;
const how = (e: ComponentFacts["lastExit"]) =>
  e
    ? `${e.signal ? `killed by ${e.signal}` : `exited with code ${e.code ?? "?"}`} at ${hhmmss(e.at)}`
    : "how it died is not in the log";

/** One check per supervised part, and one for mesh:up itself. */
export function checkSupervision(f: SupervisionFacts | null, now: number): Check[] {
  const check = (
    name: string,
    title: string,
    severity: Check["severity"],
    detail: string,
    fix: string | null = null,
  ): Check => ({ name, title, ok: severity !== "error", severity, detail, fix });
  if (!f)
    return [
      check(
        "supervisor",
        "mesh:up supervises the mesh",
        "warning",
        "no logs/mesh-up.log: not started by this mesh:up, so nothing restarts a part that dies",
        "npm run mesh:up",
      ),
    ];
  const out: Check[] = [];
  out.push(
    f.running
      ? check(
          "supervisor",
          "mesh:up supervises the mesh",
          "ok",
          `mesh:up runs (pid ${f.pid}) and restarts any part that dies`,
        )
      : check(
          "supervisor",
          "mesh:up supervises the mesh",
          "warning",
          `mesh:up (pid ${f.pid ?? "?"}) is not running: the parts it started keep serving, but nothing restarts one that dies; the next mesh:up stops them and starts afresh`,
          "npm run mesh:up",
        ),
  );
  for (const c of f.components) {
    const title = `${c.name} keeps running`;
    const logsOf = `logs/${c.name}.stderr, npm run mesh:logs -- --service ${c.name} --no-follow`;
    if (c.gaveUp) {
      out.push(
        check(
          `supervisor:${c.name}`,
          title,
          "error",
          `mesh:up gave up on ${c.name} after ${c.restarts.length} restart${c.restarts.length === 1 ? "" : "s"} (last ${how(c.lastExit)}): it is not running; see ${logsOf}`,
          "stop mesh:up and start it again once the cause is fixed: npm run mesh:up",
        ),
      );
      continue;
    }
    const recent = c.restarts.filter((t) => now - t < RECENT_RESTART_MS);
    if (recent.length > 0) {
      out.push(
        check(
          `supervisor:${c.name}`,
          title,
          "warning",
          `${c.name} was restarted ${recent.length} time${recent.length === 1 ? "" : "s"} in the last ${RECENT_RESTART_MS / 60_000} minutes (last ${how(c.lastExit)}); see ${logsOf}`,
          null,
        ),
      );
      continue;
    }
    out.push(
      check(
        `supervisor:${c.name}`,
        title,
        "ok",
        c.restarts.length > 0
          ? `restarted ${c.restarts.length} time${c.restarts.length === 1 ? "" : "s"}, the last at ${hhmmss(c.restarts.at(-1)!)}`
          : "never restarted",
      ),
    );
  }
  return out;
}
