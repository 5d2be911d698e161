// The injectable clock (lib/clock.ts) and the file watcher driven by it: timers run in order of
// their due time only when the test clock is advanced, and the watcher's stat poll notices a file
// and reports a change once, with no time waited.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestClock, every, systemClock } from "../lib/clock.ts";
import { watchFiles } from "../services/mesh/reload.ts";

test("a TestClock runs timers only when advanced, in order of their due time, timers set by timers included", () => {
  const clock = new TestClock(1_000);
  const ran: string[] = [];
  clock.setTimeout(() => ran.push(`b@${clock.now()}`), 200);
  clock.setTimeout(() => {
    ran.push(`a@${clock.now()}`);
    clock.setTimeout(() => ran.push(`c@${clock.now()}`), 50);
  }, 100);
  const cancelled = clock.setTimeout(() => ran.push("never"), 150);
  clock.clearTimeout(cancelled);
  assert.deepEqual(ran, [], "nothing runs before an advance");
  clock.advance(99);
  assert.deepEqual(ran, []);
  clock.advance(200);
  assert.deepEqual(ran, ["a@1100", "c@1150", "b@1200"]);
  assert.equal(clock.now(), 1_299);
  assert.equal(clock.pending, 0);
});

test("every() repeats on the clock until stopped", () => {
  const clock = new TestClock(0);
  let n = 0;
  const stop = every(clock, 1_000, () => (n += 1));
  clock.advance(3_500);
  assert.equal(n, 3);
  stop();
  clock.advance(10_000);
  assert.equal(n, 3);
  assert.equal(clock.pending, 0);
});

test("the system clock's timers fire on real time", async () => {
  // The system clock's timers are unref'd (they never hold a process open): this one keeps the test alive meanwhile.
  const alive = setInterval(() => {}, 1_000);
  try {
    const at = systemClock.now();
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 20));
    assert.ok(systemClock.now() - at >= 15);
  } finally {
    clearInterval(alive);
  }
});

test("the watcher's stat poll, on a test clock: a file that appears is reported once, a later change once more", () => {
  const dir = mkdtempSync(join(tmpdir(), "mesh-watch-clock-"));
  // The folder does not exist yet, so fs.watch cannot see it: only the poll (on the test clock) can.
  const file = join(dir, "later", "policy.toml");
  const clock = new TestClock();
  const seen: number[] = [];
  const w = watchFiles([file], () => seen.push(clock.now()), { clock, pollMs: 1_000, debounceMs: 150 });
  try {
    clock.advance(5_000);
    assert.equal(w.polls, 5);
    assert.deepEqual(seen, [], "no file, no change");
    mkdirSync(join(dir, "later"));
    writeFileSync(file, "[payment]\n");
    const t0 = clock.now();
    clock.advance(1_000); // the poll notices; the debounce waits 150 ms more
    assert.deepEqual(seen, []);
    clock.advance(150);
    assert.deepEqual(seen, [t0 + 1_150]);
    clock.advance(10_000); // ten more polls: the same change is not reported again
    assert.equal(w.polls, 16);
    assert.equal(seen.length, 1, "one report for one change");
    writeFileSync(file, "[payment]\naccepts = []\n");
    clock.advance(1_150);
    assert.equal(seen.length, 2);
  } finally {
    w.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(clock.pending, 0, "close stops every timer");
});

test("with a settle window, a file still changing is not reported until it holds still", () => {
  const dir = mkdtempSync(join(tmpdir(), "mesh-watch-clock-"));
  const file = join(dir, "later", "policy.toml");
  const clock = new TestClock();
  let seen = 0;
  const w = watchFiles([file], () => (seen += 1), { clock, pollMs: 100, debounceMs: 50, settleMs: 500 });
  try {
    mkdirSync(join(dir, "later"));
    writeFileSync(file, "[pay");
    clock.advance(150); // polled, debounced: the settle window starts
    writeFileSync(file, '[payment]\naccepts = ["order"]\n'); // still being written
    clock.advance(500); // the settle check finds it changed: it waits again
    assert.equal(seen, 0);
    clock.advance(600);
    assert.equal(seen, 1);
  } finally {
    w.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
