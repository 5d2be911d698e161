// Renders mesh log lines (pino JSON) for people: one line each, the event, who, what, why.
import { asEvent, parseJsonLine, type UnknownLine } from "../lib/events.ts";

const COLORS = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number, s: string) => (COLORS ? `\x1b[${code}m${s}\x1b[0m` : s);
export const dim = (s: string) => paint(2, s);
export const red = (s: string) => paint(31, s);
export const green = (s: string) => paint(32, s);
export const yellow = (s: string) => paint(33, s);
export const bold = (s: string) => paint(1, s);

const SERVICE_COLORS: Record<string, number> = { order: 36, payment: 35, inventory: 34 };

export function servicePrefix(service: string): string {
  return paint(SERVICE_COLORS[service] ?? 37, `[${service}]`.padEnd(12));
}

/** Any JSON line of a mesh log; asEvent (lib/events.ts) gives a catalogued event's typed fields. */
export type MeshLine = UnknownLine;

export function parseLine(text: string): MeshLine | null {
  return parseJsonLine(text) ?? null;
}

/** "12:03:04 authz.denied inventory POST /charge rule=payment.accepts: <sentence>" */
export function formatLine(l: MeshLine, opts: { prefix?: boolean } = {}): string {
  const time = dim(String(l.time ?? "").slice(11, 19));
  const head = opts.prefix === false ? "" : `${servicePrefix(String(l.service ?? "?"))} `;
  const msg = String(l.msg ?? "");
  const e = asEvent(l);
  switch (e?.event) {
    case "request":
      return `${head}${time} ${green("request")} ${e.peer ?? ""} ${e.method} ${e.path} -> ${e.status ?? ""} ${dim(`${e.ms ?? ""}ms`)}`;
    case "request.summary":
      return `${head}${time} ${green("request")} ${e.peer} ${e.method} ${e.route} -> ${e.status} ${bold(`×${e.count}`)} ${dim(`avg ${e.msAvg}ms, max ${e.msMax}ms (summary of the rest of this second)`)}`;
    case "authz.denied":
      return `${head}${time} ${yellow("authz.denied")} ${e.peer} ${e.method} ${e.path} rule=${e.rule}: ${e.reason}${e.hint ? dim(` (${e.hint})`) : ""}`;
    case "authz.would_deny":
      return `${head}${time} ${yellow("authz.would_deny")} ${e.peer} ${e.method} ${e.path} rule=${e.rule} (audit, let through): ${e.reason}${e.hint ? dim(` (${e.hint})`) : ""}`;
    case "tls.handshake_failed": {
      const who = e.peer ? dim(` [${e.peer.subject} from ${e.peer.issuer}, serial ${e.peer.serial}]`) : "";
      return `${head}${time} ${red("tls.handshake_failed")} ${bold(e.reason)} ${e.remote ?? ""}: ${msg}${who}`;
    }
    case "http.client_error":
      return `${head}${time} ${red(e.event)} ${bold(e.reason)} ${e.peer || "?"} ${e.remote ?? ""}: ${msg}`;
    case "upstream.failed":
      return `${head}${time} ${red("upstream.failed")} -> ${e.upstream} ${bold(e.reason)}: ${msg}`;
    case "policy.reload_failed":
    case "tls.reload_failed":
      return `${head}${time} ${red(e.event)}: ${msg}`;
    default: {
      // Any other line, a catalogued event or not: its name and its sentence.
      const ev = typeof l.event === "string" ? l.event : "log";
      return `${head}${time} ${(typeof l.level === "number" ? l.level : 30) >= 50 ? red(ev) : ev}: ${msg}`;
    }
  }
}
