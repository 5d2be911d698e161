// npm run mesh:logs as a user runs it, on a log folder written here: it prints and exits unless
// asked to follow (-f), stays quiet when its reader goes away (`| head`), and refuses a service
// that has no log, naming the ones that do.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compiledScript } from "./helpers/compiled.ts";

const ROOT = join(import.meta.dirname, "..");
const SCRIPT = join(ROOT, "scripts", "mesh-logs.ts");
const TSX = import.meta.resolve("tsx");

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

// The script compiled once for this file (helpers/compiled.ts): it runs a dozen times, and under
// tsx each start cost ~0.4 s of CPU more. The first run is under tsx, as npm runs it.
const COMPILED = await compiledScript("mesh-logs");

/**
 * Starts the real script (`tsx`: under tsx's loader); `done` resolves when it exits (or rejects
 * after `timeoutMs`, killing it).
 */
function meshLogs(args: string[], timeoutMs = 20_000, cwd = ROOT, o: { tsx?: boolean } = {}) {
  const entry = o.tsx ? ["--import", TSX, SCRIPT] : [COMPILED];
  const child = spawn(process.execPath, [...entry, ...args], {
    cwd,
    env: { ...process.env, NO_COLOR: "1", MESH_LOG_DIR: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const run: Run = { code: null, signal: null, stdout: "", stderr: "" };
  child.stdout.setEncoding("utf8").on("data", (c: string) => (run.stdout += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (run.stderr += c));
  const done = new Promise<Run>((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `mesh:logs ${args.join(" ")} did not exit within ${timeoutMs} ms; it printed:\n${run.stdout.slice(0, 500)}`,
        ),
      );
    }, timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(t);
      Object.assign(run, { code, signal });
      resolve(run);
    });
  });
  return { child, run, done };
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const line = (o: Record<string, unknown>) => `${JSON.stringify({ level: 30, ...o })}\n`;
const denied = (time: string) =>
  line({
    time,
    level: 40,
    service: "payment",
    event: "authz.denied",
    peer: "inventory",
    method: "POST",
    path: "/charge",
    rule: "payment.accepts",
    reason: "inventory is not listed in payment.accepts",
    msg: "denied",
  });
const request = (time: string, service = "inventory") =>
  line({
    time,
    level: 30,
    service,
    event: "request",
    peer: "order",
    method: "GET",
    path: "/stock/sku-1",
    status: 200,
    rule: "inventory.accepts",
    ms: 1,
    msg: "request",
  });
const handshake = (time: string) =>
  line({
    time,
    level: 40,
    service: "order",
    event: "tls.handshake_failed",
    reason: "no_client_cert",
    remote: "127.0.0.1:4000",
    msg: "the client sent no certificate",
  });

let logs: string;
before(() => {
  logs = mkdtempSync(join(tmpdir(), "mesh-logs-"));
  writeFileSync(join(logs, "payment.log"), denied("2026-01-01T00:00:03.000Z"));
  writeFileSync(join(logs, "inventory.log"), request("2026-01-01T00:00:01.000Z") + request("2026-01-01T00:00:04.000Z"));
  writeFileSync(join(logs, "order.log"), handshake("2026-01-01T00:00:02.000Z"));
  writeFileSync(join(logs, "mesh.json"), "{}\n");
});
after(() => rmSync(logs, { recursive: true, force: true }));

describe("mesh:logs", { concurrency: 3 }, () => {
  it("prints what is there, merged by time, and exits 0 without -f (the README's --failures step)", async () => {
    const all = await meshLogs(["--logs", logs], 20_000, ROOT, { tsx: true }).done;
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.stderr, "");
    const events = all.stdout
      .trimEnd()
      .split("\n")
      .map((l) => l.split(/\s+/).slice(0, 3).join(" "));
    assert.deepEqual(events, [
      "[inventory] 00:00:01 request",
      "[order] 00:00:02 tls.handshake_failed",
      "[payment] 00:00:03 authz.denied",
      "[inventory] 00:00:04 request",
    ]);

    const failures = await meshLogs(["--logs", logs, "--failures"]).done;
    assert.equal(failures.code, 0, failures.stderr);
    assert.deepEqual(
      failures.stdout
        .trimEnd()
        .split("\n")
        .map((l) => l.split(/\s+/)[2]),
      ["tls.handshake_failed", "authz.denied"],
    );
    assert.match(
      failures.stdout,
      /authz\.denied inventory POST \/charge rule=payment\.accepts: inventory is not listed in payment\.accepts/,
    );
  });

  it("-f / --follow prints what is there, then what is appended, until stopped", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mesh-logs-follow-"));
    try {
      const file = join(dir, "inventory.log");
      writeFileSync(file, request("2026-01-01T00:00:01.000Z"));
      for (const flag of ["-f", "--follow"]) {
        const { child, run, done } = meshLogs(["--logs", dir, flag, "--service", "inventory"]);
        await waitFor(() => run.stdout.includes("00:00:01 request"), 15_000, `the existing line (${flag})`);
        appendFileSync(file, request("2026-01-01T00:00:09.000Z"));
        await waitFor(() => run.stdout.includes("00:00:09 request"), 10_000, `the appended line (${flag})`);
        assert.equal(run.code, null, "still following");
        child.kill("SIGTERM");
        const r = await done;
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stderr, "");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a reader that stops early (| head) ends it quietly: no EPIPE stack trace", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mesh-logs-pipe-"));
    try {
      // Far more than a pipe buffer holds, so writes are still pending when the reader goes.
      let text = "";
      for (let i = 0; i < 20_000; i++)
        text += request(`2026-01-01T00:${String(Math.floor(i / 600) % 60).padStart(2, "0")}:00.000Z`, "payment");
      writeFileSync(join(dir, "payment.log"), text);
      const { child, run, done } = meshLogs(["--logs", dir]);
      await waitFor(() => run.stdout.length > 0, 15_000, "the first output");
      child.stdout.destroy();
      const r = await done;
      assert.equal(r.stderr, "", "nothing on stderr");
      assert.equal(r.code, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--service with no log is refused in one line that names the services that have one; nothing is printed", async () => {
    const r = await meshLogs(["--logs", logs, "--service", "nosuch"]).done;
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.equal(
      r.stderr,
      `mesh:logs: no log for service "nosuch" in ${logs} (services with logs: inventory, order, payment)\n`,
    );
    // One unknown among known ones is refused too, with -f as well (it would wait forever).
    const mixed = await meshLogs(["--logs", logs, "--service", "payment", "paymnt", "-f"]).done;
    assert.equal(mixed.code, 2);
    assert.match(
      mixed.stderr,
      /^mesh:logs: no log for service "paymnt" in .* \(services with logs: inventory, order, payment\)\n$/,
    );
    const ok = await meshLogs(["--logs", logs, "--service", "payment"]).done;
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^\[payment\]\s+00:00:03 authz\.denied/);
    assert.equal(ok.stdout.trimEnd().split("\n").length, 1);
  });

  it("an empty MESH_LOG_DIR means ./logs", async () => {
    // Run from a folder that has a ./logs; the spawn sets MESH_LOG_DIR="" for every run.
    const base = mkdtempSync(join(tmpdir(), "mesh-logs-cwd-"));
    try {
      mkdirSync(join(base, "logs"));
      writeFileSync(join(base, "logs", "payment.log"), denied("2026-01-01T00:00:03.000Z"));
      const here = await meshLogs(["--service", "payment"], 20_000, base).done;
      assert.equal(here.code, 0, here.stderr);
      assert.match(here.stdout, /^\[payment\]\s+00:00:03 authz\.denied/);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it("a missing log folder and an unknown flag are one-line errors, exit 2", async () => {
    const none = await meshLogs(["--logs", join(logs, "nope")]).done;
    assert.equal(none.code, 2);
    assert.match(none.stderr, /^mesh:logs: no log folder .*nope \(start the mesh with: npm run mesh:up\)\n$/);
    const bad = await meshLogs(["--logs", logs, "--folow"]).done;
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown option '--folow'/);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
  });
});
