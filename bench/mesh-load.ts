// The benchmark's load client (run pinned to its own core): new connections per second,
// or keep-alive requests per second at N connections, with latency percentiles.
import { request, type RequestOptions } from "node:https";
import { createSecureContext } from "node:tls";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Pool } from "undici";

const [mode, portS, pki, connsS, secondsS] = process.argv.slice(2) as [string, string, string, string, string];
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
const deadline = performance.now() + seconds * 1000;

function once(): Promise<void> {
  return new Promise((resolve) => {
    const t = performance.now();
    const req = request({ host: "127.0.0.1", port, path: "/healthz", secureContext, servername: tls.servername, agent: false, headers: { connection: "close" } } as RequestOptions, (res) => {
      res.resume();
      res.on("end", () => {
        if (res.statusCode === 200) ok++;
        else errors++;
        lat.push(performance.now() - t);
        resolve();
      });
    });
    req.on("error", () => {
      errors++;
      resolve();
    });
    req.end();
  });
}

async function newConnections(): Promise<void> {
  await Promise.all(Array.from({ length: conns }, async () => {
    while (performance.now() < deadline) await once();
  }));
}

async function keepAlive(): Promise<void> {
  const pool = new Pool(`https://127.0.0.1:${port}`, { connections: conns, pipelining: 1, connect: tls });
  // Warm the connections up so handshakes are not counted as request latency.
  await Promise.all(Array.from({ length: conns }, () => pool.request({ method: "GET", path: "/healthz" }).then((r) => r.body.text())));
  await Promise.all(Array.from({ length: conns }, async () => {
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
  }));
  await pool.close();
}

const start = performance.now();
await (mode === "conn" ? newConnections() : keepAlive());
const elapsed = (performance.now() - start) / 1000;
lat.sort((a, b) => a - b);
const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? 0;
console.log(JSON.stringify({ ok, errors, seconds: elapsed, rate: ok / elapsed, p50: pct(50), p99: pct(99) }));
