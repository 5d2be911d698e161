// Retention, simulated (issue 13): what the ledger and a service's logs hold after weeks of
// running, with ca serve's retention and the launcher's log rotation, against without.
//
// The ledger: MESH_BENCH_WEEKS (default 3) simulated weeks of a mesh of
// MESH_BENCH_IDENTITIES (default 4) renewing at 2/3 of MESH_BENCH_LIFETIME_S (default 30 s);
// the clock is injected, each renewal is a real-sized row (the PEM of a real certificate) and
// supersedes the previous one, and the CA's retention run (7 days) comes every 10 simulated
// minutes, as in ca serve. The logs: MESH_BENCH_LOG_MB (default 2,458, about 2.4 GB: a busy
// service's week) of request lines through lib/rotating-file.ts at its defaults.
// Run: npx tsx bench/retention.ts
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  CertificateAuthority,
  DAY_MS,
  DEFAULT_RETENTION_MS,
  RETENTION_CHECK_MS,
  prune,
  type Ledger,
} from "../ca/index.ts";
import { eventLine } from "../lib/events.ts";
import { RotatingFile } from "../lib/rotating-file.ts";

const WEEKS = Number(process.env.MESH_BENCH_WEEKS ?? 3);
const IDENTITIES = Number(process.env.MESH_BENCH_IDENTITIES ?? 4);
const LIFETIME_MS = Number(process.env.MESH_BENCH_LIFETIME_S ?? 30) * 1000;
const LOG_BYTES = Number(process.env.MESH_BENCH_LOG_MB ?? 2458) * 1024 * 1024;
const MIB = 1024 * 1024;

function fileBytes(path: string): number {
  let n = 0;
  for (const f of [path, `${path}-wal`]) {
    try {
      n += statSync(f).size;
    } catch {
      /* no WAL */
    }
  }
  return n;
}

async function ledgerWeeks(withRetention: boolean): Promise<Array<{ week: number; rows: number; mib: number }>> {
  const dir = mkdtempSync(join(tmpdir(), "mesh-bench-retention-"));
  try {
    const start = new Date("2027-01-04T00:00:00Z");
    let now = start.getTime();
    const ca = await CertificateAuthority.init({ dir, name: "Retention Bench CA", now: () => new Date(now) });
    const sample = await ca.issue({ domain: "sample.internal", days: 1 });
    const pem = ca.ledger.bySerial(sample.serial)!.pem;
    const period = Math.round((LIFETIME_MS * 2) / 3);
    const names = Array.from({ length: IDENTITIES }, (_, i) => `svc${i}.internal`);
    const current = new Map<string, string>();
    const out: Array<{ week: number; rows: number; mib: number }> = [];
    const pruneMs: number[] = [];
    let nextPrune = now + RETENTION_CHECK_MS;
    for (let week = 1; week <= WEEKS; week++) {
      const end = start.getTime() + week * 7 * DAY_MS;
      while (now < end) {
        // One simulated retention interval of renewals per transaction.
        const until = Math.min(end, nextPrune);
        ca.ledger.write(() => {
          for (; now < until; now += period) {
            for (const name of names) {
              const serial = randomBytes(16).toString("hex").replace(/^0+/, "");
              const prev = current.get(name);
              if (prev) ca.ledger.markSuperseded(prev, serial);
              ca.ledger.insertCert({
                serial,
                name,
                sans: JSON.stringify({ dns: [name] }),
                issuerId: "root-1",
                keyType: "ec-p256",
                notBefore: new Date(now - 300_000).toISOString(),
                notAfter: new Date(now + LIFETIME_MS).toISOString(),
                status: "valid",
                revokedAt: null,
                reason: null,
                supersededBy: null,
                source: "est-renew",
                createdAt: new Date(now).toISOString(),
                pem,
              });
              current.set(name, serial);
            }
          }
        });
        if (now >= nextPrune) {
          if (withRetention) {
            const t = performance.now();
            await prune(ca, { olderThanMs: DEFAULT_RETENTION_MS });
            pruneMs.push(performance.now() - t);
          }
          // Renewals further apart than a check: the checks that fell in between found nothing new.
          while (nextPrune <= now) nextPrune += RETENTION_CHECK_MS;
        }
      }
      // The bench runs on the SQLite store (the default): its file size is what is measured.
      const db = (ca.ledger as Ledger).db;
      db.pragma("wal_checkpoint(TRUNCATE)");
      const rows = (db.prepare("SELECT count(*) AS n FROM certs").get() as { n: number }).n;
      out.push({ week, rows, mib: fileBytes(ca.paths.ledger) / MIB });
    }
    if (pruneMs.length > 0) {
      const sorted = [...pruneMs].sort((a, b) => a - b);
      console.log(
        `  retention runs: ${pruneMs.length}, median ${sorted[sorted.length >> 1]!.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`,
      );
    }
    ca.close();
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function logWeek(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "mesh-bench-logweek-"));
  try {
    const line = eventLine(
      { level: "info", service: "payment" },
      {
        event: "request",
        peer: "order",
        method: "POST",
        path: "/charge",
        status: 201,
        rule: "payment.accepts",
        ms: 0.42,
      },
      "request",
    );
    // Batches of lines, as the launcher's stream receives them under load.
    const batch = line.repeat(64);
    const out = new RotatingFile(join(dir, "payment.log"));
    let written = 0;
    let rotations = 0;
    out.on("error", (e) => {
      throw e;
    });
    const t = performance.now();
    while (written < LOG_BYTES) {
      if (!out.write(batch)) await new Promise((r) => out.once("drain", r));
      written += batch.length;
    }
    await new Promise<void>((r) => out.end(() => r()));
    const files = readdirSync(dir);
    const kept = files.reduce((n, f) => n + statSync(join(dir, f)).size, 0);
    rotations = Math.floor(written / (10 * MIB));
    console.log(
      `logs: ${(written / MIB).toFixed(0)} MiB written (${Math.round(written / line.length).toLocaleString("en")} lines of ${line.length} bytes) in ${((performance.now() - t) / 1000).toFixed(1)} s;`,
    );
    console.log(
      `  kept ${files.length} files, ${(kept / MIB).toFixed(1)} MiB (${files.sort().join(", ")}); about ${rotations} rotations`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(
  `ledger: ${IDENTITIES} identities renewing every ${((LIFETIME_MS * 2) / 3 / 1000).toFixed(0)} s (lifetime ${LIFETIME_MS / 1000} s), ${WEEKS} simulated weeks`,
);
for (const withRetention of [false, true]) {
  console.log(
    withRetention
      ? `with retention (${DEFAULT_RETENTION_MS / DAY_MS} days, every ${RETENTION_CHECK_MS / 60_000} simulated minutes):`
      : "without retention:",
  );
  const t = performance.now();
  for (const w of await ledgerWeeks(withRetention))
    console.log(`  after week ${w.week}: ${w.rows.toLocaleString("en")} rows, ca.db ${w.mib.toFixed(1)} MiB`);
  console.log(`  (${((performance.now() - t) / 1000).toFixed(1)} s)`);
}
if (LOG_BYTES > 0) await logWeek();
