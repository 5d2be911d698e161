// The cost of writing a log file with rotation, as the launcher writes a service's log: one
// write per line, a request line of ~250 bytes. Three writers, side by side in alternating
// rounds: fs.createWriteStream (what launch.ts used, no rotation: the baseline), lib/rotating-file.ts
// (logrotate's names), and pino-roll (SonicBoom, numbered names). Run: npx tsx bench/log-rotation.ts
import { createWriteStream, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Writable } from "node:stream";
// @ts-expect-error pino-roll ships no types
import pinoRoll from "pino-roll";
import { eventLine } from "../lib/events.ts";
import { RotatingFile } from "../lib/rotating-file.ts";

const LINES = Number(process.env.MESH_BENCH_LOG_LINES ?? 200_000);
const ROUNDS = Number(process.env.MESH_BENCH_ROUNDS ?? 4);
const MAX = 10 * 1024 * 1024;
const line = eventLine(
  { level: "info", service: "payment" },
  {
    event: "request",
    peer: "order.internal",
    method: "POST",
    path: "/charge",
    status: 200,
    rule: "order-charges",
    ms: 0.42,
  },
  "request",
);

type Make = (dir: string) => Promise<Writable & { end(cb?: () => void): unknown }>;
const writers: Record<string, Make> = {
  "fs.WriteStream (no rotation)": async (dir) => createWriteStream(join(dir, "payment.log"), { flags: "a" }),
  "RotatingFile 10 MiB x 5": async (dir) => new RotatingFile(join(dir, "payment.log"), { maxBytes: MAX, keep: 5 }),
  "pino-roll 10m, count 5": async (dir) =>
    pinoRoll({ file: join(dir, "payment"), size: "10m", limit: { count: 5 }, mkdir: true }),
};

async function once(make: Make): Promise<{ ms: number; files: number; bytes: number }> {
  const dir = mkdtempSync(join(tmpdir(), "mesh-bench-log-"));
  try {
    const out = await make(dir);
    const start = performance.now();
    for (let i = 0; i < LINES; i++) {
      // As launch.ts does: write, and wait for drain only when the stream asks.
      if (!out.write(line)) await new Promise((r) => out.once("drain", r));
    }
    // SonicBoom's end() takes no callback; both emit close once the file is closed.
    await new Promise<void>((r) => {
      out.once("close", () => r());
      out.end();
    });
    const ms = performance.now() - start;
    const files = readdirSync(dir);
    return { ms, files: files.length, bytes: files.reduce((n, f) => n + statSync(join(dir, f)).size, 0) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const results = new Map<string, number[]>();
const names = Object.keys(writers);
for (let round = 0; round < ROUNDS; round++) {
  for (const name of round % 2 ? [...names].reverse() : names) {
    const r = await once(writers[name]!);
    (results.get(name) ?? results.set(name, []).get(name)!).push(r.ms);
    if (round === 0)
      console.error(
        `${name}: ${r.files} file(s), ${(r.bytes / 1048576).toFixed(1)} MiB kept of ${((LINES * line.length) / 1048576).toFixed(1)} MiB written`,
      );
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const base = median(results.get(names[0]!)!);
console.log(
  `${LINES} lines of ${line.length} bytes, ${ROUNDS} alternating rounds, load ${(await import("node:os")).loadavg()[0]!.toFixed(1)}`,
);
for (const name of names) {
  const m = median(results.get(name)!);
  console.log(
    `  ${name.padEnd(30)} ${((m * 1000) / LINES).toFixed(2)} µs/line  ${(m / base).toFixed(2)}x the baseline`,
  );
}
