// services/main.ts as a person runs it: started with setsid from a shell that exits at once,
// it keeps serving; started with --exit-with-parent (what the rotation drill passes), it
// ends with the process that started it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freshPki, call, identity, type TestPki } from "./mesh-fixtures.ts";
import { eventsIn } from "./helpers/events.ts";

let pki: TestPki;
const started: number[] = [];
type Detached = Awaited<ReturnType<typeof startDetached>>;
// The service the second test owns starts beside the first test's: its parent check (a poll
// once a second, which logs nothing) runs all through the first test, not in a sleep of its own.
let owned: Promise<Detached>;

before(async () => {
  pki = await freshPki();
  owned = startDetached("owned", ["--exit-with-parent"]);
  // Not awaited here: the first test runs meanwhile. Its failure is the second test's.
  owned.catch(() => {});
});

after(() => {
  for (const pid of started) if (alive(pid)) process.kill(pid, "SIGTERM");
  pki.cleanup();
});

/** True while the process runs (a zombie nobody has reaped yet counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/**
 * `setsid sh -c 'node … services/main.ts … &'` from a shell that stays until the test hangs it
 * up (a terminal closed), so the service is re-parented while it runs, as under nohup.
 */
async function startDetached(
  name: string,
  extra: string[],
): Promise<{ pid: number; port: number; listeningAt: number; hangUp(): Promise<void> }> {
  const log = join(pki.root, `${name}.log`);
  const args = [
    "--import",
    "tsx",
    "services/main.ts",
    "--service",
    "payment",
    "--port",
    "0",
    "--pki",
    pki.dir,
    "--policy",
    pki.policyFile,
    ...extra,
  ];
  const quoted = [process.execPath, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  const shell = spawn("setsid", ["sh", "-c", `${quoted} </dev/null >'${log}' 2>&1 & echo $!; exec sleep 600`], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  let out = "";
  shell.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
  for (let i = 0; i < 100 && !out.includes("\n"); i++) await sleep(50);
  const pid = Number(out.trim());
  assert.ok(Number.isInteger(pid) && pid > 0, `a pid, got ${JSON.stringify(out)}`);
  started.push(pid);
  for (let i = 0; i < 200; i++) {
    const text = existsSync(log) ? readFileSync(log, "utf8") : "";
    const line = eventsIn(text, "listening")[0];
    if (line) {
      const hangUp = async () => {
        const gone = once(shell, "exit");
        shell.kill("SIGHUP");
        await gone;
      };
      return { pid, port: line.port, listeningAt: Date.now(), hangUp };
    }
    if (!alive(pid)) assert.fail(`the service exited before listening: ${text}`);
    await sleep(100);
  }
  assert.fail(`the service did not start: ${readFileSync(log, "utf8")}`);
}

/** A process's parent pid, from /proc (undefined once it is gone). */
function ppid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

test("a service started with setsid from a shell that exits keeps serving", async () => {
  const { pid, port, hangUp } = await startDetached("standalone", []);
  const shellPid = ppid(pid);
  await hangUp();
  // No parent check runs without --exit-with-parent, so there is no poll to wait for: the event
  // is the service re-parented (its shell gone), then it must still answer.
  for (let i = 0; i < 100 && alive(pid) && ppid(pid) === shellPid; i++) await sleep(50);
  assert.notEqual(ppid(pid), shellPid, "the service was re-parented");
  assert.ok(alive(pid), "the service is still running after its shell exited");
  const r = await call(pki, port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
  assert.deepEqual(r, { status: 200, body: { service: "payment", caller: "order" } });
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
  assert.equal(alive(pid), false, "SIGTERM still stops it");
});

test("with --exit-with-parent it ends when the process that started it is gone", async () => {
  const { pid, port, listeningAt, hangUp } = await owned;
  const r = await call(pki, port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
  assert.ok("status" in r && r.status === 200, "it serves while its parent runs");
  // At least 1.5 s with its parent alive (a poll or more), mostly spent while the first test ran.
  await sleep(Math.max(0, listeningAt + 1_500 - Date.now()));
  assert.ok(alive(pid), "and keeps running while its parent does");
  await hangUp();
  for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
  assert.equal(alive(pid), false, "the service ended with its parent");
});
