// The benchmark's load client (run pinned to its own core): new connections per second,
// or keep-alive requests per second at N connections, with latency percentiles and, given
// the server's pid, the server's CPU ticks during the measured window only.
import { request, type RequestOptions } from "node:https";
import { createSecureContext } from "node:tls";
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
        agent: false,
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
    req.end();
  });
}

async function newConnections(): Promise<void> {
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

await (mode === "conn" ? newConnections().then(end) : keepAlive());
lat.sort((a, b) => a - b);
const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? 0;
console.log(
  JSON.stringify({ ok, errors, seconds: elapsed, rate: ok / elapsed, p50: pct(50), p99: pct(99), serverTicks: ticks }),
);
