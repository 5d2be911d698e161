// The admin listener: plain HTTP on loopback only, GET /metrics (Prometheus text format),
// GET /healthz and GET /readyz, like Linkerd's proxy admin port. Knows nothing of the CA or the
// services: both use it.
import { createServer, type Server } from "node:http";
import { isIP } from "node:net";
import { httpDate, nowMs } from "./clock.ts";

/** What /metrics serves: a prom-client Registry fits as it is. */
export interface Exposition {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export interface AdminOptions {
  exposition: Exposition;
  port: number;
  /** A loopback address; anything else is refused before binding. */
  host?: string;
  /** What /healthz answers: 200 while ok, 503 otherwise, with the reason in the body. */
  healthy?: () => boolean | Health;
  /** What /readyz answers, likewise (default: the same as /healthz). */
  ready?: () => boolean | Health;
}

/** A verdict and, when it is not ok, why, in words (the body of the 503). */
export interface Health {
  readonly ok: boolean;
  readonly reason?: string;
}

export interface Admin {
  readonly host: string;
  readonly port: number;
  /** "http://127.0.0.1:7412" */
  readonly url: string;
  close(): Promise<void>;
}

export class AdminHostError extends Error {
  readonly code = "ADMIN_NOT_LOOPBACK";
  constructor(host: string) {
    super(
      `--admin-host ${JSON.stringify(host)} is not a loopback address: the admin listener serves metrics without authentication, so it binds only to 127.0.0.1 (or another 127.x.y.z) or ::1`,
    );
    this.name = "AdminHostError";
  }
}

/** Literal loopback addresses only: a name could resolve anywhere, and 0.0.0.0 is every interface. */
export function isLoopback(host: string): boolean {
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || host === "0:0:0:0:0:0:0:1";
  return false;
}

/**
 * Host headers a loopback listener answers to. Anything else is a page on some other site
 * that had its DNS name point at 127.0.0.1 (DNS rebinding) trying to read the metrics.
 */
function hostAllowed(header: string | undefined): boolean {
  if (header === undefined) return true; // HTTP/1.0: no browser sends that
  const h = header.startsWith("[") ? header.slice(1, header.indexOf("]")) : header.replace(/:\d+$/, "");
  return h === "localhost" || isLoopback(h);
}

function verdict(f: (() => boolean | Health) | undefined): Health {
  try {
    const v = f?.() ?? true;
    return typeof v === "boolean" ? { ok: v } : v;
  } catch (e) {
    // A check that throws is no evidence of health.
    return {
      ok: false,
      reason: `the health check failed: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`,
    };
  }
}

export function startAdmin(o: AdminOptions): Promise<Admin> {
  const host = o.host ?? "127.0.0.1";
  if (!isLoopback(host)) return Promise.reject(new AdminHostError(host));
  const server: Server = createServer(
    { maxHeaderSize: 8 * 1024, headersTimeout: 5_000, requestTimeout: 10_000 },
    (req, res) => {
      const url = req.url ?? "/";
      const path = url.includes("?") ? url.slice(0, url.indexOf("?")) : url;
      const answer = (status: number, type: string, body: string, extra: Record<string, string> = {}) => {
        res.writeHead(status, {
          "content-type": type,
          "content-length": Buffer.byteLength(body),
          "cache-control": "no-store",
          // This process's clock (MESH_CLOCK_OFFSET_MS moves it), which mesh:check compares with its own.
          date: httpDate(nowMs()),
          ...extra,
        });
        res.end(body);
      };
      if (path !== "/metrics" && path !== "/healthz" && path !== "/readyz")
        return answer(
          404,
          "text/plain; charset=utf-8",
          "not found: this admin listener serves GET /metrics and GET /healthz, and GET /readyz\n",
        );
      if (req.method !== "GET" && req.method !== "HEAD")
        return answer(405, "text/plain; charset=utf-8", "method not allowed\n", { allow: "GET, HEAD" });
      if (!hostAllowed(req.headers.host))
        return answer(421, "text/plain; charset=utf-8", "misdirected request: use the loopback address\n");
      if (path === "/healthz" || path === "/readyz") {
        const h = verdict(path === "/readyz" ? (o.ready ?? o.healthy) : o.healthy);
        const verdictWord = path === "/readyz" ? "not ready" : "unhealthy";
        return answer(
          h.ok ? 200 : 503,
          "text/plain; charset=utf-8",
          h.ok ? "ok\n" : `${verdictWord}${h.reason ? `: ${h.reason}` : ""}\n`,
        );
      }
      o.exposition.metrics().then(
        (text) => answer(200, o.exposition.contentType, text),
        (e: unknown) =>
          answer(
            500,
            "text/plain; charset=utf-8",
            `metrics failed: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}\n`,
          ),
      );
    },
  );
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, host, () => {
      server.off("error", reject);
      const a = server.address();
      const port = typeof a === "object" && a ? a.port : o.port;
      const shown = host.includes(":") ? `[${host}]` : host;
      resolve({
        host,
        port,
        url: `http://${shown}:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
