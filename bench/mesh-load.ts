// The benchmark's load client (run pinned to its own core): new connections per second (full
// handshakes, or resumed ones with a cached TLS session), or keep-alive requests per second at N
// connections, with latency percentiles and, given the server's pid, the server's CPU ticks
// during the measured window only.
import { Agent, request, type RequestOptions } from "node:https";
import { createSecureContext, type TLSSocket } from "node:tls";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Pool } from "undici";

const [mode, portS, pki, connsS, secondsS, serverPid] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string | undefined,
];
const port = Number(portS);
const conns = Number(connsS);
const seconds = Number(secondsS);
const tls = {
  ca: readFileSync(join(pki, "bundle.pem")),
  cert: readFileSync(join(pki, "certs", "order.internal.crt")),
  key: readFileSync(join(pki, "certs", "order.internal.key")),
  servername: "payment.internal",
};

// A real client builds its TLS context once; per-connection parsing would bench the client.
const secureContext = createSecureContext(tls);
const lat: number[] = [];
let ok = 0;
let errors = 0;
/** New connections that resumed a TLS session (isSessionReused()): all of them but the first in "resume" mode, none in "conn". */
let resumed = 0;
let deadline = Infinity;
let start = 0;
let ticksAtStart = 0;
let elapsed = 0;
let ticks = 0;

/** utime + stime of the server (fields 14 and 15 of /proc/<pid>/stat), or 0 without a pid. */
function serverTicks(): number {
  if (!serverPid || !existsSync(`/proc/${serverPid}/stat`)) return 0;
  const f = readFileSync(`/proc/${serverPid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return Number(rest[11]) + Number(rest[12]);
}

/**
 * Starts the measured window. Keep-alive calls it after its warm-up: otherwise the warm-up's
 * handshakes (64 of them at 64 connections) would count as time and server CPU of the
 * keep-alive phase, and the mesh's costlier handshake would leak into its per-request numbers.
 */
function begin(): void {
  start = performance.now();
  deadline = start + seconds * 1000;
  ticksAtStart = serverTicks();
}

function end(): void {
  elapsed = (performance.now() - start) / 1000;
  ticks = serverTicks() - ticksAtStart;
}

/**
 * "resume": one agent for every request, without keep-alive: each request is a new connection,
 * and the agent offers the TLS session (ticket) it kept from an earlier one, as Node's https
 * agent does by default. "conn": a fresh agent per request, so every handshake is a full one.
 */
const resumingAgent = mode === "resume" ? new Agent({ keepAlive: false, maxCachedSessions: 1 }) : undefined;

function once(): Promise<void> {
  return new Promise((resolve) => {
    const t = performance.now();
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: "/healthz",
        secureContext,
        servername: tls.servername,
        agent: resumingAgent ?? false,
        headers: { connection: "close" },
      } as RequestOptions,
      (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 200) ok++;
          else errors++;
          lat.push(performance.now() - t);
          resolve();
        });
      },
    );
    req.on("error", () => {
      errors++;
      resolve();
    });
    req.once("socket", (s: TLSSocket) =>
      s.once("secureConnect", () => {
        if (s.isSessionReused()) resumed++;
      }),
    );
    req.end();
  });
}

async function newConnections(): Promise<void> {
  // The first connection gets the session the others resume: outside the measured window.
  if (resumingAgent) await once();
  ok = errors = resumed = 0;
  lat.length = 0;
  begin();
  await Promise.all(
    Array.from({ length: conns }, async () => {
      while (performance.now() < deadline) await once();
    }),
  );
}

async function keepAlive(): Promise<void> {
  const pool = new Pool(`https://127.0.0.1:${port}`, { connections: conns, pipelining: 1, connect: tls });
  // Warm the connections up so handshakes are not counted as request latency.
  await Promise.all(
    Array.from({ length: conns }, () => pool.request({ method: "GET", path: "/healthz" }).then((r) => r.body.text())),
  );
  begin();
  await Promise.all(
    Array.from({ length: conns }, async () => {
      while (performance.now() < deadline) {
        const t = performance.now();
        try {
          const r = await pool.request({ method: "GET", path: "/healthz" });
          await r.body.text();
          if (r.statusCode === 200) ok++;
          else errors++;
        } catch {
          errors++;
        }
        lat.push(performance.now() - t);
      }
    }),
  );
  end();
  await pool.close();
}

await (mode === "conn" || mode === "resume" ? newConnections().then(end) : keepAlive());
lat.sort((a, b) => a - b);
const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? 0;
console.log(
  JSON.stringify({
    ok,
    errors,
    resumed,
    seconds: elapsed,
    rate: ok / elapsed,
    p50: pct(50),
    p99: pct(99),
    serverTicks: ticks,
  }),
);
