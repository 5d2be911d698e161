// The dashboard's web server: the page, its script and styles, and a server-sent event
// stream of snapshots. Read-only, loopback only, a strict Content-Security-Policy, and a Host
// check so that a web page elsewhere cannot read it through DNS rebinding.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { createRequire } from "node:module";
import { build } from "esbuild";
import { DashboardState, type Sources } from "./state.ts";

const WEB = join(import.meta.dirname, "..", "..", "web", "dashboard");
const require = createRequire(import.meta.url);

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const HEADERS = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

export class DashboardError extends Error {
  readonly code = "DASHBOARD";
}

export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1";
}

export interface DashboardOptions extends Sources {
  host?: string;
  port?: number;
  /** How often logs, ledger and policy are read (ms). */
  pollMs?: number;
}

export interface Dashboard {
  readonly url: string;
  readonly port: number;
  readonly state: DashboardState;
  close(): Promise<void>;
}

/** The page's assets, bundled once at start: the script from TypeScript by esbuild. */
async function assets(): Promise<Record<string, { type: string; body: Buffer }>> {
  const js = await build({
    entryPoints: [join(WEB, "main.ts")],
    bundle: true,
    format: "iife",
    target: "es2022",
    minify: true,
    write: false,
    logLevel: "silent",
  });
  return {
    "/": { type: "text/html; charset=utf-8", body: readFileSync(join(WEB, "index.html")) },
    "/app.js": { type: "text/javascript; charset=utf-8", body: Buffer.from(js.outputFiles[0]!.contents) },
    "/app.css": { type: "text/css; charset=utf-8", body: readFileSync(join(WEB, "style.css")) },
    "/uplot.css": { type: "text/css; charset=utf-8", body: readFileSync(require.resolve("uplot/dist/uPlot.min.css")) },
    "/favicon.svg": { type: "image/svg+xml", body: readFileSync(join(WEB, "favicon.svg")) },
  };
}

export async function startDashboard(o: DashboardOptions): Promise<Dashboard> {
  const host = o.host ?? "127.0.0.1";
  if (!isLoopback(host))
    throw new DashboardError(
      `the dashboard binds to loopback only (127.0.0.1, ::1 or localhost), not ${host}: it shows the mesh's identities and refusals`,
    );
  const files = await assets();
  const state = new DashboardState(o);
  state.refresh();
  const clients = new Set<ServerResponse>();
  let port = 0;

  const allowedHost = (h: string | undefined): boolean => {
    if (!h) return false;
    const m = /^(\[[0-9a-f:]+\]|[^:]+)(?::(\d+))?$/i.exec(h);
    if (!m) return false;
    const name = m[1]!.replace(/^\[|\]$/g, "");
    return isLoopback(name) && (m[2] === undefined || Number(m[2]) === port);
  };

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer, head: boolean) => {
    res.writeHead(status, {
      ...HEADERS,
      "content-type": type,
      "content-length": Buffer.byteLength(body),
      "cache-control": "no-store",
    });
    res.end(head ? undefined : body);
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) {
      res.setHeader("allow", "GET, HEAD");
      return send(res, 405, "text/plain; charset=utf-8", "the dashboard is read-only\n", false);
    }
    if (!allowedHost(req.headers.host))
      return send(
        res,
        421,
        "text/plain; charset=utf-8",
        "unexpected Host header: open the dashboard at its loopback address\n",
        head,
      );
    const path = (req.url ?? "/").split("?")[0]!;
    if (path === "/events") {
      res.writeHead(200, {
        ...HEADERS,
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        connection: "keep-alive",
      });
      if (head) return res.end();
      res.write(`retry: 2000\n\n`);
      res.write(frame(state));
      clients.add(res);
      req.on("close", () => clients.delete(res));
      return;
    }
    if (path === "/snapshot.json") return send(res, 200, "application/json", JSON.stringify(state.snapshot()), head);
    // The page comes with the state as it is now, so its first paint shows the mesh; the stream then updates it.
    if (path === "/")
      return send(res, 200, "text/html; charset=utf-8", page(files["/"]!.body.toString("utf8"), state), head);
    const f = files[path];
    if (!f) return send(res, 404, "text/plain; charset=utf-8", "not found\n", head);
    send(res, 200, f.type, f.body, head);
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;

  // Read the sources often; push when something changed, and at least once a second so the
  // timeline moves.
  let sentVersion = -1;
  let sentAt = 0;
  const tick = setInterval(() => {
    state.refresh();
    if (clients.size === 0) return;
    const now = Date.now();
    if (state.version() === sentVersion && now - sentAt < 1_000) return;
    sentVersion = state.version();
    sentAt = now;
    const data = frame(state);
    for (const c of clients) c.write(data);
  }, o.pollMs ?? 250);
  tick.unref();

  await new Promise<void>((res, rej) => {
    server.once("error", rej);
    server.listen(o.port ?? 0, host, () => res());
  });
  port = (server.address() as { port: number }).port;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    state,
    async close() {
      clearInterval(tick);
      for (const c of clients) c.end();
      clients.clear();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      state.close();
    },
  };
}

/**
 * The page with the current snapshot in a `<script type="application/json">` data block: the
 * CSP allows it (a data block is never run), and the page script reads it before its first
 * render. Every "<" is escaped, so no text in it (a hostile subject) can close the block.
 */
export function page(html: string, state: DashboardState): string {
  const json = JSON.stringify(state.snapshot())
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
  return html.replace(
    "<!--initial-state-->",
    () => `<script type="application/json" id="initial-state">${json}</script>`,
  );
}

function frame(state: DashboardState): string {
  return `event: snapshot\ndata: ${JSON.stringify(state.snapshot())}\n\n`;
}
