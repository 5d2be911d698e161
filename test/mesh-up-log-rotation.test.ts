// Logs rotate under the supervised mesh:up (issue 13): every component writes its own log with
// --log-file, rotated by size (MESH_LOG_MAX_SIZE/MESH_LOG_KEEP), and mesh:up's follower reads
// each one across its rotations: it still sees a restarted CA's readiness lines, the console
// echoes every line, and mesh:logs finds every line in the rotated files.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RotatingFile } from "../lib/rotating-file.ts";
import { followFile } from "../scripts/log-follow.ts";
import { ev, evAny } from "./helpers/events.ts";
import { compiledScript } from "./helpers/compiled.ts";

// mesh:up compiled once for this file (helpers/compiled.ts): under tsx its module graph cost each
// start ~0.4 s of CPU more. mesh-up.test.ts starts it as npm does, under tsx.
const MESH_UP = await compiledScript("mesh-up");

const ROOT = join(import.meta.dirname, "..");
const tmp = mkdtempSync(join(tmpdir(), "mesh-up-logrot-"));
const started: ChildProcess[] = [];
after(() => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
  for (const pid of processesUnder(tmp)) signal(pid, "SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

function processesUnder(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, "utf8").includes(dir)) out.push(Number(p));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}
const signal = (pid: number, s: NodeJS.Signals) => {
  try {
    process.kill(pid, s);
  } catch {
    /* gone */
  }
};

async function waitFor(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const write = (out: RotatingFile, text: string) =>
  new Promise<void>((resolve, reject) => out.write(text, (e) => (e ? reject(e) : resolve())));

test("the follower reads every line once, in order, while the file rotates under it (several times between two polls)", async () => {
  const dir = join(tmp, "follow");
  mkdirSync(dir);
  const path = join(dir, "ca.log");
  const out = new RotatingFile(path, { maxBytes: 400, keep: 50 });
  await write(out, "before the follower\n");
  const seen: string[] = [];
  const f = followFile(path, (l) => seen.push(l), { from: 20, pollMs: 3_600_000 });
  let n = 0;
  for (let burst = 0; burst < 30; burst++) {
    // Bursts of 1 to 40 lines of ~30 bytes: up to three rotations between two reads.
    for (let k = 0; k < ((burst * 7) % 40) + 1; k++) await write(out, `{"seq":${n++},"pad":"${"x".repeat(10)}"}\n`);
    f.poll();
  }
  f.stop();
  await new Promise<void>((r) => out.end(() => r()));
  assert.ok(existsSync(`${path}.10`), "the file rotated many times");
  assert.deepEqual(
    seen,
    Array.from({ length: n }, (_, i) => `{"seq":${i},"pad":"${"x".repeat(10)}"}`),
  );
});

interface Line {
  event?: string;
  service?: string;
  serial?: string;
  time?: string;
}
const linesOf = (file: string): Line[] =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);
/** A log's lines across its rotated files, oldest first. */
function allLines(logs: string, base: string): Line[] {
  const rotated = readdirSync(logs)
    .map((f) => new RegExp(`^${base.replace(".", "\\.")}\\.(\\d+)$`).exec(f))
    .filter((m) => m !== null)
    .map((m) => Number(m![1]))
    .sort((a, b) => b - a);
  return [...rotated.map((k) => join(logs, `${base}.${k}`)), join(logs, base)].filter(existsSync).flatMap(linesOf);
}

test("mesh:up with MESH_LOG_MAX_SIZE=1000: every log rotates, the CA killed -9 is seen ready again through its rotated log, the console and mesh:logs miss no line", {
  timeout: 300_000,
}, async () => {
  const d = join(tmp, "up");
  mkdirSync(d);
  const logs = join(d, "logs");
  const policy = join(d, "policy.toml");
  writeFileSync(
    policy,
    `[payment]\naccepts = ["order"]\n\n[inventory]\naccepts = ["order"]\n\n[order]\naccepts = ["edge"]\n`,
  );
  const proc = spawn(
    process.execPath,
    [
      MESH_UP,
      "--pki",
      join(d, "pki"),
      "--logs",
      logs,
      "--state",
      join(d, "state"),
      "--policy",
      policy,
      "--order-port",
      "0",
      "--payment-port",
      "0",
      "--inventory-port",
      "0",
      "--ca-port",
      "0",
      "--dashboard-port",
      "0",
      // 15 s certificates renewed at 1/3 of their life: a renewal every ~5 s, the three each
      // service must show within ~15 s, with 10 s left to retry one the CA's kill held up.
      "--lifetime",
      "15s",
      "--renew-at",
      "0.33",
      "--poll",
      "1",
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", MESH_LOG_MAX_SIZE: "1000", MESH_LOG_KEEP: "500" },
    },
  );
  started.push(proc);
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c));
  proc.stderr!.on("data", (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  await waitFor(
    () => /Ctrl-C stops everything/.test(out),
    120_000,
    () => `mesh:up to be ready:\n${out}`,
  );
  // --renew-at reached every service through mesh:up: each schedules its first renewal at about
  // 1/3 of the life its certificate has left (the default 2/3 would be 0.6 or more).
  for (const name of ["payment", "order", "inventory"]) {
    const started = allLines(logs, `${name}.log`).find(ev("identity.agent_started"));
    assert.ok(started, `${name}'s identity.agent_started`);
    const at = Date.parse(started.time!);
    const share = (Date.parse(started.nextRenewal) - at) / (Date.parse(started.notAfter) - at);
    assert.ok(share > 0.2 && share < 0.45, `${name} renews at ${share.toFixed(2)} of the life left`);
  }
  await waitFor(
    () => ["ca", "payment", "order", "inventory"].every((n) => existsSync(join(logs, `${n}.log.2`))),
    150_000,
    () => `every log to rotate twice: ${readdirSync(logs).join(" ")}`,
  );

  // The CA dies; its restart is ready only once mesh:up reads ca.started and admin.listening from the rotated ca.log.
  const m = JSON.parse(readFileSync(join(logs, "mesh.json"), "utf8")) as { ca: { pid: number } };
  const echoedStarts = () => out.split("\n").filter((l) => /^\[ca\]\s.*ca\.started/.test(l)).length;
  assert.equal(echoedStarts(), 1, out);
  signal(m.ca.pid, "SIGKILL");
  await waitFor(
    () => /mesh:up: started ca again/.test(out) && echoedStarts() === 2,
    60_000,
    () => `the restarted CA's ca.started on the console:\n${out.slice(-3000)}`,
  );
  const restartedAt = Date.now();
  const caRotations = readdirSync(logs).filter((f) => /^ca\.log\.\d+$/.test(f)).length;

  // Unauthenticated refusals beyond a few are summarised by the restarted CA every 10 s: the console
  // shows the summary. Sent now, so that the wait for the summary overlaps the renewals'.
  const caUrl = (JSON.parse(readFileSync(join(logs, "mesh.json"), "utf8")) as { ca: { url: string } }).ca.url;
  for (let i = 0; i < 8; i++) {
    await new Promise<void>((resolve) => {
      const req = httpsRequest(
        `${caUrl}/.well-known/est/simpleenroll`,
        {
          method: "POST",
          rejectUnauthorized: false,
          agent: false,
          headers: {
            authorization: `Bearer mt1.${"a".repeat(43)}.${"b".repeat(43)}`,
            "content-type": "application/pkcs10",
          },
        },
        (res) => {
          res.resume();
          res.on("end", resolve);
        },
      );
      req.on("error", () => resolve());
      req.end("MIIB");
    });
  }
  // Renewals go on through the restarted CA, and its log goes on rotating.
  await waitFor(
    () => allLines(logs, "payment.log").some(ev("identity.renewed", (l) => Date.parse(l.time!) > restartedAt)),
    90_000,
    () => "payment to renew after the CA's restart",
  );
  await waitFor(
    () => readdirSync(logs).filter((f) => /^ca\.log\.\d+$/.test(f)).length > caRotations,
    90_000,
    () => "ca.log to rotate after the restart",
  );
  await waitFor(
    () => /^\[ca\]\s.*est\.refused_summary/m.test(out),
    60_000,
    () => `est.refused_summary on the console:\n${out.slice(-3000)}`,
  );

  proc.kill("SIGTERM");
  assert.equal(await exited, 0);
  // The dashboard writes its own output too (--log-file): its line is there, not lost with an fd.
  assert.match(readFileSync(join(logs, "dashboard.out"), "utf8"), /^dashboard: http:\/\/127\.0\.0\.1:\d+/m);

  // The console echoed every renewal each service logged, across all its rotations.
  for (const name of ["payment", "order", "inventory"]) {
    const renewed = allLines(logs, `${name}.log`).filter(ev("identity.renewed"));
    assert.ok(renewed.length >= 3, `${name} renewed ${renewed.length} times`);
    for (const r of renewed)
      assert.ok(out.includes(`serial ${r.serial}`), `${name}'s renewal ${r.serial} is not on mesh:up's console`);
  }
  // Every renewal a service logged, the CA logged too: no CA line was lost to a rotation or the kill.
  const caSerials = new Set(
    allLines(logs, "ca.log")
      .filter(evAny("est.renewed", "est.enrolled"))
      .map((l) => l.serial!.toLowerCase()),
  );
  for (const name of ["payment", "order", "inventory"]) {
    for (const r of allLines(logs, `${name}.log`).filter(evAny("identity.renewed", "identity.enrolled"))) {
      assert.ok(caSerials.has(r.serial!.toLowerCase()), `${name}'s ${r.event} ${r.serial} is not in ca.log*`);
    }
  }
  // mesh:logs shows every line of every rotated file, in the files' order.
  const logsOut = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      ["--import", "tsx", "scripts/mesh-logs.ts", "--logs", logs, "--json", "--service", "payment"],
      { cwd: ROOT, maxBuffer: 64 << 20, timeout: 60_000 },
      (e, stdout) => (e ? reject(e) : resolve(stdout)),
    ),
  );
  const shown = logsOut
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);
  assert.equal(shown.length, allLines(logs, "payment.log").length);
  assert.deepEqual(
    shown.filter(ev("identity.renewed")).map((l) => l.serial),
    allLines(logs, "payment.log")
      .filter(ev("identity.renewed"))
      .map((l) => l.serial),
  );
});

test("a bad MESH_LOG_MAX_SIZE stops mesh:up with one line and exit 2 before any part starts", async () => {
  const d = join(tmp, "bad");
  const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const p = spawn(
      process.execPath,
      [
        MESH_UP,
        "--pki",
        join(d, "pki"),
        "--logs",
        join(d, "logs"),
        "--state",
        join(d, "state"),
        "--ca-port",
        "0",
        "--order-port",
        "0",
        "--payment-port",
        "0",
        "--inventory-port",
        "0",
        "--dashboard-port",
        "0",
      ],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, NO_COLOR: "1", MESH_LOG_MAX_SIZE: "huge" },
      },
    );
    let out = "";
    p.stdout!.on("data", (c: Buffer) => (out += c));
    p.stderr!.on("data", (c: Buffer) => (out += c));
    p.on("exit", (code) => resolve({ code, out }));
  });
  assert.equal(r.code, 2, r.out);
  assert.equal(
    r.out,
    'mesh:up: MESH_LOG_MAX_SIZE="huge" is not a size: use bytes or a number with k, m or g, e.g. 10m\n',
  );
  assert.equal(existsSync(join(d, "pki")), false, "no CA was created");
});
