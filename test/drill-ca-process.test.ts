// The online drill's CA server runs in a process of its own. In the drill's process it froze
// everything for SQLite's busy timeout (20 s) whenever the drill's own CA handle held the write
// lock across an await (adding a generation signs its CRL) while a service's poll made the
// server write: the wait was synchronous, in the one event loop that had to release the lock.
// Here the drill's side holds the lock across an await while an mTLS cacerts call (which
// records the bundle its caller holds: a write) is in flight: this process keeps running, and
// the server answers once the lock is released.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CertificateAuthority } from "../ca/index.ts";
import { startDrillCa } from "../scripts/drill/ca-process.ts";
import type { MeshLine } from "../scripts/mesh-format.ts";
import { cleanup, tempDir } from "./helpers/ca.ts";
import { est } from "./helpers/est.ts";
import { ev } from "./helpers/events.ts";

test("the drill's CA server is its own process: a ledger lock the drill holds across an await freezes neither the drill nor the server for good", {
  timeout: 120_000,
}, async () => {
  const root = tempDir("mesh-drill-ca-");
  const pki = join(root, "pki");
  const ca = await CertificateAuthority.init({ dir: pki, name: "Acme Corp CA" });
  const edge = await ca.issue({ domain: "edge.internal" });
  const lines: MeshLine[] = [];
  const limits = { perAddress: { capacity: 100, perMinute: 100 }, perName: { capacity: 100, perMinute: 100 } };
  const server = await startDrillCa(
    { pki, lifetimeMs: 60_000, pollMs: 500, limits },
    { logFile: join(root, "ca.log"), onLine: (l) => lines.push(l) },
  );
  try {
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(server.proc.pid, process.pid);
    const bundle = readFileSync(ca.paths.bundle, "utf8");
    const mtls = { ca: bundle, cert: readFileSync(edge.certPath, "utf8"), key: readFileSync(edge.keyPath!, "utf8") };
    assert.equal((await est(server.url, { path: "/.well-known/est/cacerts", ...mtls })).status, 200);

    // This process's event loop, sampled while the lock is held.
    let last = Date.now();
    let longestStall = 0;
    const ticker = setInterval(() => {
      const now = Date.now();
      longestStall = Math.max(longestStall, now - last);
      last = now;
    }, 20);
    let answered: { status: number; at: number } | undefined;
    let released = 0;
    try {
      await ca.ledger.writeAsync(async () => {
        const call = est(server.url, { path: "/.well-known/est/cacerts", ...mtls }).then(
          (r) => (answered = { status: r.status, at: Date.now() }),
        );
        void call.catch(() => {});
        await sleep(2_000); // the lock is held, and this process runs on
        released = Date.now();
      });
      await waitFor(() => answered !== undefined, "the cacerts answer");
    } finally {
      clearInterval(ticker);
    }
    assert.ok(longestStall < 1_500, `this process stalled for ${longestStall} ms while holding the lock`);
    assert.equal(answered!.status, 200);
    assert.ok(
      answered!.at - released < 10_000,
      `the server answered ${answered!.at - released} ms after the lock was released`,
    );
    // The server's log lines reach the drill, and its own file.
    assert.ok(lines.some(ev("ca.started")));
    assert.match(readFileSync(join(root, "ca.log"), "utf8"), /"event":"ca.started"/);
  } finally {
    await server.stop();
    ca.close();
    cleanup(root);
  }
  assert.notEqual(server.proc.exitCode ?? server.proc.signalCode, null, "the CA server stopped");
});

async function waitFor(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}
