// The calls the mesh actually saw, read back from the services' logs (request,
// request.summary, authz.denied, authz.would_deny lines), plus mesh:probe's pairs: what a
// candidate policy is replayed against. Log lines are untrusted input: every field is checked.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { CALLERS, SERVICES, isIdentityName, isServiceName } from "../../services/mesh/names.ts";

export interface SeenCall {
  readonly caller: string;
  readonly service: string;
  readonly method: string;
  readonly path: string;
  /** How many times it was seen in the logs (0 for a probe pair the logs never showed). */
  count: number;
  /** Answered (request, request.summary) and let-through-in-audit (authz.would_deny) counts: one call writes both, so count is the larger. */
  answered: number;
  audited: number;
  /** Where it comes from: "logs", "probe", or both. */
  readonly sources: Set<"logs" | "probe">;
}

const EVENTS = new Set(["request", "request.summary", "authz.denied", "authz.would_deny"]);
const METHODS = new Set(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]);
/** mesh:probe's path (scripts/probe.ts). */
export const PROBE_PATH = "/healthz";
/** A log file, or one rotated away (lib/rotating-file.ts names them <name>.log.1, .2, …). */
const LOG_FILE = /\.log(\.\d+)?$/;

/** "15m" → 900000. Accepts s, m, h, d; a bare number is minutes. Null for anything else. */
export function parseSince(s: string): number | null {
  const m = /^(\d{1,6})(s|m|h|d)?$/.exec(s.trim());
  if (!m) return null;
  const n = Number(m[1]);
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? "m") as "s" | "m" | "h" | "d"];
  return n > 0 ? n * unit : null;
}

export class SeenCalls {
  private readonly calls = new Map<string, SeenCall>();
  /** Log lines read and lines taken. */
  linesRead = 0;
  linesTaken = 0;

  add(
    caller: string,
    service: string,
    method: string,
    path: string,
    count: number,
    source: "logs" | "probe",
    kind: "answered" | "audited" | "denied" = "answered",
  ): void {
    const key = `${caller} ${service} ${method} ${path}`;
    let c = this.calls.get(key);
    if (!c) {
      c = { caller, service, method, path, count: 0, answered: 0, audited: 0, sources: new Set() };
      this.calls.set(key, c);
    }
    c.sources.add(source);
    if (source !== "logs") return;
    // A denied call writes authz.denied alone; one let through in audit mode writes authz.would_deny and its request line.
    if (kind === "audited") c.audited += count;
    else c.answered += count;
    c.count = Math.max(c.answered, c.audited);
  }

  /** Every caller → callee GET /healthz, as mesh:probe asks it. */
  addProbePairs(): void {
    for (const caller of CALLERS)
      for (const service of SERVICES) this.add(caller, service, "GET", PROBE_PATH, 0, "probe");
  }

  /** One JSON log line; ignored unless it is one of the four events, in the window, well formed. */
  addLine(raw: string, since: number): void {
    this.linesRead++;
    if (!raw.includes('"event"')) return;
    let l: Record<string, unknown>;
    try {
      l = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof l !== "object" || l === null || typeof l.event !== "string" || !EVENTS.has(l.event)) return;
    const t = typeof l.time === "string" ? Date.parse(l.time) : typeof l.time === "number" ? l.time : NaN;
    if (!(t >= since)) return;
    const { service, peer, method } = l;
    // request.summary names the route pattern ("/stock/:sku"), not the path: a pattern matches itself.
    const path = l.event === "request.summary" ? l.route : l.path;
    if (typeof service !== "string" || !isServiceName(service)) return;
    if (typeof peer !== "string" || !isIdentityName(peer)) return;
    if (typeof method !== "string" || !METHODS.has(method)) return;
    if (typeof path !== "string" || !path.startsWith("/") || path.length > 2048) return;
    // An abandoned request or a handler error line has no verdict of its own to compare.
    const count =
      l.event === "request.summary" && typeof l.count === "number" && Number.isSafeInteger(l.count) && l.count > 0
        ? l.count
        : 1;
    this.linesTaken++;
    this.add(peer, service, method, path, count, "logs", l.event === "authz.would_deny" ? "audited" : "answered");
  }

  /** Every <name>.log and rotated <name>.log.N in `dir`. */
  addLogDir(dir: string, since: number): string[] {
    const files = readdirSync(dir)
      .filter((f) => LOG_FILE.test(f))
      .sort();
    for (const f of files) {
      let text: string;
      try {
        text = readFileSync(join(dir, f), "utf8");
      } catch {
        continue; // rotated away between the listing and the read
      }
      for (const raw of text.split("\n")) if (raw) this.addLine(raw, since);
    }
    return files;
  }

  all(): SeenCall[] {
    return [...this.calls.values()];
  }
}
