// The supervisor on real processes: a child that keeps dying is restarted with a growing delay
// and given up after the burst, while its sibling runs on untouched; stop() ends every process
// group, SIGKILL for one that ignores SIGTERM. And mesh:check's verdict on the events.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Supervisor, restartDelay, DEFAULT_RESTART, type SupervisorEvent } from "../scripts/supervisor.ts";
import { checkSupervision, readSupervision } from "../scripts/check/supervision.ts";
import { EVENTS, LEVELS, type EventFields, type EventSpec } from "../lib/events.ts";

const node = (code: string) => () => spawn(process.execPath, ["-e", code], { detached: true, stdio: "ignore" });
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("restartDelay doubles from the base up to the cap", () => {
  const p = { ...DEFAULT_RESTART, baseMs: 500, maxMs: 30_000 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 8].map((n) => restartDelay(n, p)),
    [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000],
  );
});

test("a child that keeps dying is restarted with backoff, then given up; its sibling is never touched; stop() ends the rest", async (t) => {
  const events: SupervisorEvent[] = [];
  const s = new Supervisor({
    onEvent: (e) => events.push(e),
    policy: { baseMs: 50, maxMs: 400, burst: 3, intervalMs: 60_000 },
  });
  // Whatever an assertion does, nothing outlives the test (a child left running and restarted
  // would keep the test file's process, and npm test, from ever ending).
  t.after(() => s.stop(500));
  const steady = s.add({ name: "steady", spawn: node("setInterval(() => {}, 1000)") });
  const steadyPid = steady.proc!.pid!;
  s.add({ name: "crashy", spawn: node("process.exit(3)") });
  await until(
    () => events.some((e) => e.event === "supervisor.gave_up"),
    20_000,
    "the supervisor to give up on crashy",
  );
  const crashy = events.filter((e) => "component" in e && e.component === "crashy");
  assert.deepEqual(
    crashy.map((e) => e.event),
    [
      "supervisor.started",
      "supervisor.exited",
      "supervisor.restarting",
      "supervisor.started",
      "supervisor.exited",
      "supervisor.restarting",
      "supervisor.started",
      "supervisor.exited",
      "supervisor.restarting",
      "supervisor.started",
      "supervisor.exited",
      "supervisor.gave_up",
    ],
  );
  assert.deepEqual(
    crashy.filter((e) => e.event === "supervisor.restarting").map((e) => (e as { delayMs: number }).delayMs),
    [50, 100, 200],
  );
  assert.deepEqual(
    crashy.filter((e) => e.event === "supervisor.restarting").map((e) => (e as { attempt: number }).attempt),
    [1, 2, 3],
  );
  assert.ok(crashy.filter((e) => e.event === "supervisor.exited").every((e) => (e as { code: number }).code === 3));
  assert.deepEqual(crashy.at(-1), { event: "supervisor.gave_up", component: "crashy", restarts: 3 });
  assert.equal(s.get("crashy")!.state, "gave_up");
  // Its sibling: the same process all along, never an event after its start.
  assert.equal(s.get("steady")!.proc!.pid, steadyPid);
  assert.ok(alive(steadyPid));
  assert.deepEqual(
    events.filter((e) => "component" in e && e.component === "steady").map((e) => e.event),
    ["supervisor.started"],
  );

  // Killed outright: restarted, a new process.
  process.kill(steadyPid, "SIGKILL");
  await until(
    () => s.get("steady")!.proc!.pid !== steadyPid && s.get("steady")!.state === "running",
    10_000,
    "steady to be restarted",
  );
  const exited = events.find((e) => e.event === "supervisor.exited" && e.component === "steady");
  assert.deepEqual(exited, {
    event: "supervisor.exited",
    component: "steady",
    pid: steadyPid,
    code: null,
    signal: "SIGKILL",
  });

  const now = s.get("steady")!.proc!.pid!;
  await s.stop(2_000);
  assert.equal(alive(now), false);
  assert.equal(s.get("steady")!.state, "stopped");
});

test("stop(): SIGTERM to each process group, SIGKILL after the grace for one that ignores it; nothing is restarted", async (t) => {
  const events: SupervisorEvent[] = [];
  const s = new Supervisor({ onEvent: (e) => events.push(e), policy: { baseMs: 10 } });
  t.after(() => s.stop(500));
  // It ignores SIGTERM and has a child of its own in its group.
  const stubborn = s.add({
    name: "stubborn",
    spawn: node(
      `process.on("SIGTERM", () => {}); require("node:child_process").spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" }); setInterval(() => {}, 1000)`,
    ),
  });
  const polite = s.add({ name: "polite", spawn: node("setInterval(() => {}, 1000)") });
  await new Promise((r) => setTimeout(r, 500));
  const pgid = stubborn.proc!.pid!;
  const t0 = Date.now();
  await s.stop(700);
  assert.ok(Date.now() - t0 >= 600, "the stubborn one was given its grace");
  assert.equal(alive(pgid), false);
  assert.equal(alive(polite.proc!.pid!), false);
  assert.throws(() => process.kill(-pgid, 0), "no process left in its group (its own child included)");
  assert.equal(events.filter((e) => e.event === "supervisor.restarting").length, 0);
});

test("a part that never got ready is not restarted (shouldRestart false)", async (t) => {
  const events: SupervisorEvent[] = [];
  const s = new Supervisor({ onEvent: (e) => events.push(e), policy: { baseMs: 10 } });
  t.after(() => s.stop(500));
  s.add({ name: "bad-flags", spawn: node("process.exit(2)"), shouldRestart: () => false });
  await until(() => events.some((e) => e.event === "supervisor.exited"), 10_000, "exit");
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(
    events.map((e) => e.event),
    ["supervisor.started", "supervisor.exited"],
  );
  assert.equal(s.get("bad-flags")!.state, "stopped");
});

test("mesh:check on mesh-up.log: ‼ for a recent restart, × for a part given up, ✓ otherwise; only this run's events count", () => {
  const logs = mkdtempSync(join(tmpdir(), "supervision-"));
  try {
    const now = Date.parse("2026-12-06T12:00:00Z");
    const at = (min: number) => new Date(now - min * 60_000).toISOString();
    writeFileSync(join(logs, "mesh.json"), JSON.stringify({ pid: process.pid, startedAt: at(60) }));
    // Lines as mesh:up writes them: each event at its catalogued level, with a sentence.
    const line = (min: number, f: EventFields) =>
      JSON.stringify({
        level: LEVELS[(EVENTS[f.event] as EventSpec).level[0]!],
        time: at(min),
        service: "mesh-up",
        ...f,
        msg: f.event,
      });
    writeFileSync(
      join(logs, "mesh-up.log"),
      `${[
        line(120, { event: "supervisor.gave_up", component: "order", restarts: 5 }), // an earlier run: ignored
        ...["ca", "payment", "order", "dashboard"].map((c) =>
          line(59, { event: "supervisor.started", component: c, pid: 10, restarts: 0 }),
        ),
        line(30, { event: "supervisor.exited", component: "ca", pid: 10, code: null, signal: "SIGKILL" }),
        line(30, { event: "supervisor.started", component: "ca", pid: 11, restarts: 1 }),
        line(3, { event: "supervisor.exited", component: "payment", pid: 10, code: null, signal: "SIGKILL" }),
        line(3, { event: "supervisor.restarting", component: "payment", attempt: 1, delayMs: 500 }),
        line(3, { event: "supervisor.started", component: "payment", pid: 12, restarts: 1 }),
        line(2, { event: "supervisor.exited", component: "dashboard", pid: 10, code: 1, signal: null }),
        line(2, { event: "supervisor.gave_up", component: "dashboard", restarts: 0 }),
        "not json",
      ].join("\n")}\n`,
    );
    const checks = checkSupervision(readSupervision(logs), now);
    const by = (n: string) => checks.find((c) => c.name === n)!;
    assert.equal(by("supervisor").severity, "ok");
    assert.equal(by("supervisor:ca").severity, "ok");
    assert.match(by("supervisor:ca").detail, /^restarted 1 time, the last at 11:30:00 UTC$/);
    assert.equal(by("supervisor:payment").severity, "warning");
    assert.match(
      by("supervisor:payment").detail,
      /^payment was restarted 1 time in the last 10 minutes \(last killed by SIGKILL at 11:57:00 UTC\)/,
    );
    assert.equal(by("supervisor:order").severity, "ok", "the earlier run's gave_up does not count");
    assert.equal(by("supervisor:dashboard").severity, "error");
    assert.match(
      by("supervisor:dashboard").detail,
      /^mesh:up gave up on dashboard after 0 restarts \(last exited with code 1 at 11:58:00 UTC\)/,
    );
    assert.equal(by("supervisor:dashboard").ok, false);

    writeFileSync(join(logs, "mesh.json"), JSON.stringify({ pid: 2 ** 22 + 12345, startedAt: at(60) }));
    assert.equal(
      checkSupervision(readSupervision(logs), now).find((c) => c.name === "supervisor")!.severity,
      "warning",
      "mesh:up itself gone",
    );
  } finally {
    rmSync(logs, { recursive: true, force: true });
  }
});
