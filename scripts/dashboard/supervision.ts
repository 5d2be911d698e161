// What mesh:up's supervisor says about the processes it runs (its `supervisor.*` lines in
// mesh-up.log): each component's restarts, its last exit, and whether it was given up on.
// Pure: fed parsed lines; every value from a line is bounded before it is kept.
import type { EventName } from "../../lib/events.ts";
import type { MeshLine } from "../mesh-format.ts";
import type { ComponentView } from "./view.ts";

/** Components kept: a log could name any number, the page shows a handful. */
const MAX_COMPONENTS = 32;
const NAME_MAX = 64;

const name = (v: unknown): string => (typeof v === "string" ? v.slice(0, NAME_MAX) : "");
const int = (v: unknown): number | null =>
  typeof v === "number" && Number.isFinite(v) ? Math.max(-1e9, Math.min(1e9, Math.trunc(v))) : null;
/** Signals are names like SIGKILL: anything else is not shown. */
const signal = (v: unknown): string | null => (typeof v === "string" && /^SIG[A-Z0-9]{1,10}$/.test(v) ? v : null);

export const SUPERVISOR_EVENTS = new Set<string>([
  "supervisor.started",
  "supervisor.exited",
  "supervisor.restarting",
  "supervisor.gave_up",
] satisfies EventName[]);

export class Supervision {
  private readonly components = new Map<string, ComponentView>();

  /** Takes one `supervisor.*` line; false when it is not one (or names no component). */
  ingest(l: MeshLine, time: string): boolean {
    if (!l.event || !SUPERVISOR_EVENTS.has(l.event)) return false;
    const component = name(l.component);
    if (!component) return false;
    let c = this.components.get(component);
    if (!c) {
      if (this.components.size >= MAX_COMPONENTS) return false;
      this.components.set(
        component,
        (c = {
          component,
          state: "running",
          pid: null,
          restarts: 0,
          lastExit: null,
          lastExitAt: null,
          attempt: null,
          delayMs: null,
        }),
      );
    }
    switch (l.event) {
      case "supervisor.started":
        c.state = "running";
        c.pid = int(l.pid);
        c.attempt = null;
        c.delayMs = null;
        break;
      case "supervisor.exited": {
        const code = int(l.code);
        const sig = signal(l.signal);
        c.state = "exited";
        c.lastExit = sig ? `killed by ${sig}` : `exited with code ${code ?? "?"}`;
        c.lastExitAt = time;
        break;
      }
      case "supervisor.restarting": {
        const attempt = int(l.attempt);
        c.state = "restarting";
        c.attempt = attempt;
        c.delayMs = int(l.delayMs);
        // Counted per line, not from `attempt`: a supervisor may count attempts afresh after a stable run.
        c.restarts++;
        break;
      }
      case "supervisor.gave_up": {
        c.state = "gave_up";
        const n = int(l.restarts);
        if (n !== null && n >= 0) c.restarts = n;
        c.attempt = null;
        c.delayMs = null;
        break;
      }
    }
    return true;
  }

  view(): ComponentView[] {
    return [...this.components.values()].map((c) => ({ ...c })).sort((a, b) => a.component.localeCompare(b.component));
  }
}
