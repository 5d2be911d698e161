// Renders mesh log lines (pino JSON) for people: one line each, the event, who, what, why.

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

export interface MeshLine {
  time?: string;
  level?: number;
  service?: string;
  event?: string;
  msg?: string;
  [k: string]: unknown;
}

export function parseLine(text: string): MeshLine | null {
  if (!text.startsWith("{")) return null;
  try {
    return JSON.parse(text) as MeshLine;
  } catch {
    return null;
  }
}

/** "12:03:04 authz.denied inventory POST /charge rule=payment.accepts: <sentence>" */
export function formatLine(l: MeshLine, opts: { prefix?: boolean } = {}): string {
  const time = dim((l.time ?? "").slice(11, 19));
  const head = opts.prefix === false ? "" : `${servicePrefix(l.service ?? "?")} `;
  const ev = l.event ?? "log";
  const s = (k: string) => (l[k] === undefined ? "" : String(l[k]));
  switch (ev) {
    case "request":
      return `${head}${time} ${green("request")} ${s("peer")} ${s("method")} ${s("path")} -> ${s("status")} ${dim(`${s("ms")}ms`)}`;
    case "request.summary":
      return `${head}${time} ${green("request")} ${s("peer")} ${s("method")} ${s("route")} -> ${s("status")} ${bold(`×${s("count")}`)} ${dim(`avg ${s("msAvg")}ms, max ${s("msMax")}ms (summary of the rest of this second)`)}`;
    case "authz.denied":
      return `${head}${time} ${yellow("authz.denied")} ${s("peer")} ${s("method")} ${s("path")} rule=${s("rule")}: ${s("reason")}${l.hint ? dim(` (${s("hint")})`) : ""}`;
    case "authz.would_deny":
      return `${head}${time} ${yellow("authz.would_deny")} ${s("peer")} ${s("method")} ${s("path")} rule=${s("rule")} (audit, let through): ${s("reason")}${l.hint ? dim(` (${s("hint")})`) : ""}`;
    case "tls.handshake_failed": {
      const peer = l.peer as { subject?: string; issuer?: string; serial?: string } | undefined;
      const who = peer ? dim(` [${peer.subject} from ${peer.issuer}, serial ${peer.serial}]`) : "";
      return `${head}${time} ${red("tls.handshake_failed")} ${bold(s("reason"))} ${s("remote")}: ${s("msg")}${who}`;
    }
    case "http.client_error":
      return `${head}${time} ${red(ev)} ${bold(s("reason"))} ${s("peer") || "?"} ${s("remote")}: ${s("msg")}`;
    case "upstream.failed":
      return `${head}${time} ${red("upstream.failed")} -> ${s("upstream")} ${bold(s("reason"))}: ${s("msg")}`;
    case "policy.reload_failed":
    case "tls.reload_failed":
      return `${head}${time} ${red(ev)}: ${s("msg")}`;
    default:
      return `${head}${time} ${(l.level ?? 30) >= 50 ? red(ev) : ev}: ${s("msg")}`;
  }
}
