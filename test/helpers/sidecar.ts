// Pieces of the sidecar suites: tiny apps that say what they were sent, and curl.
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { execFile } from "node:child_process";
import type { AddressInfo } from "node:net";

export interface EchoApp {
  server: Server;
  port: number;
  /** The headers of every request the app received, in order. */
  seen: IncomingHttpHeaders[];
  close(): Promise<void>;
}

/** An HTTP/1.1 app answering every request with what it saw: method, path, XFCC. */
export async function echoApp(): Promise<EchoApp> {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const text = JSON.stringify({
        app: "echo",
        method: req.method,
        path: req.url,
        xfcc: req.headers["x-forwarded-client-cert"] ?? null,
        body,
      });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

export interface CurlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function curl(args: string[]): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile("curl", ["-sS", "--max-time", "15", ...args], { encoding: "utf8" }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** XFCC's key=value pairs (one element; quoted values unquoted). */
export function parseXfcc(v: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const re = /([A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^;,]*)(;|,|$)/g;
  for (const m of v.matchAll(re)) {
    if (!m[1]) continue;
    const raw = m[2]!;
    out.push([m[1], raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw]);
    if (m[3] === "") break;
  }
  return out;
}
