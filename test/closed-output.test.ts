// Issue 14: every command line ends quietly when the reader of its output goes away
// (`| head -3`, `| true`): no "Error: write EPIPE", no stack, no exit 1, nothing left running.
// Each command runs as a real process whose stdout is a real pipe, closed by this side before
// (or, for a running mesh, after) the command writes to it.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect } from "node:tls";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ca, cleanup, tempDir } from "./helpers/ca.ts";
import { SHIPPED_POLICY_FILE } from "./mesh-fixtures.ts";

const ROOT = join(import.meta.dirname, "..");
const TSX = import.meta.resolve("tsx");

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * Runs `node [--import tsx] file args` with stdout on a pipe whose reading end is closed at once
 * (or when `closeWhen` says so, given what was read so far). Resolves when the process is gone.
 */
function withClosedStdout(
  file: string,
  args: string[],
  opts: {
    cwd?: string;
    tsx?: boolean;
    closeWhen?: (out: string) => boolean;
    env?: NodeJS.ProcessEnv;
    onOut?: (out: string) => void;
    /** Given the function that closes the reading end now, whatever was read. */
    closer?: (close: () => void) => void;
  } = {},
): Promise<Ended> {
  const child = spawn(process.execPath, [...(opts.tsx === false ? [] : ["--import", TSX]), join(ROOT, file), ...args], {
    cwd: opts.cwd ?? ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", ...opts.env },
  });
  let out = "";
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d));
  opts.closer?.(() => child.stdout.destroy());
  if (!opts.closeWhen) child.stdout.destroy();
  else {
    child.stdout.on("data", (d: Buffer) => {
      out += d;
      opts.onOut?.(out);
      if (opts.closeWhen!(out)) child.stdout.destroy();
    });
  }
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stderr }));
  });
}

function assertQuiet(r: Ended, what: string, code = 0): void {
  assert.doesNotMatch(r.stderr, /EPIPE|Error:|\n\s+at /, `${what}: no EPIPE and no stack on stderr:\n${r.stderr}`);
  assert.equal(r.signal, null, what);
  assert.equal(r.code, code, `${what} exits ${code}:\n${r.stderr}`);
}

describe("a closed stdout ends every command quietly", { concurrency: 2 }, () => {
  let work: string;
  before(async () => {
    work = tempDir("mesh-epipe-");
    const pki = join(work, "pki");
    assert.equal((await ca(["init", "--name", "Pipe CA", "--dir", pki])).code, 0);
    for (const n of ["a", "b", "c"])
      assert.equal((await ca(["issue", "--domain", `${n}.internal`, "--dir", pki])).code, 0);
    mkdirSync(join(work, "logs"));
    const line = (i: number) =>
      JSON.stringify({
        level: 40,
        time: "2026-12-01T00:00:00.000Z",
        service: "payment",
        event: "authz.denied",
        peer: "inventory",
        method: "POST",
        path: "/charge",
        rule: "payment.accepts",
        msg: `denied ${i}`,
      });
    writeFileSync(join(work, "logs", "payment.log"), `${Array.from({ length: 2000 }, (_, i) => line(i)).join("\n")}\n`);
  });
  after(() => cleanup(work));

  const cases: [string, string, string[], boolean?][] = [
    ["npm run ca -- --help (the compiled bundle)", "bin/ca.mjs", ["--help"], false],
    ["ca --help", "ca/cli.ts", ["--help"]],
    ["ca list --help", "ca/cli.ts", ["list", "--help"]],
    ["ca (usage)", "ca/cli.ts", []],
    ["mesh:probe --help", "scripts/mesh-probe.ts", ["--help"]],
    ["mesh:check --help", "scripts/mesh-check.ts", ["--help"]],
    ["mesh:logs --help", "scripts/mesh-logs.ts", ["--help"]],
    ["mesh:up --help", "scripts/mesh-up.ts", ["--help"]],
    ["mesh:dashboard --help", "scripts/mesh-dashboard.ts", ["--help"]],
    ["drill:rotate --help", "scripts/drill-rotate.ts", ["--help"]],
    ["bench --help", "bench/run.ts", ["--help"]],
  ];
  for (const [what, file, args, tsx] of cases) {
    it(what, async () => assertQuiet(await withClosedStdout(file, args, { tsx }), what));
  }

  it("ca list | true, and ca list --json", async () => {
    const pki = join(work, "pki");
    assertQuiet(await withClosedStdout("ca/cli.ts", ["list", "--dir", pki]), "ca list");
    assertQuiet(await withClosedStdout("ca/cli.ts", ["list", "--json", "--dir", pki]), "ca list --json");
  });

  it("mesh:logs | head: 2000 lines to a reader that left", async () => {
    assertQuiet(await withClosedStdout("scripts/mesh-logs.ts", ["--logs", join(work, "logs")]), "mesh:logs");
  });

  it("an error still exits with its own code when stdout is closed", async () => {
    // No CA there: exit 4 and the one-line error on stderr, which is still open.
    const r = await withClosedStdout("ca/cli.ts", ["list", "--dir", join(work, "nosuch")]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /^error: the CA is not initialised in /);
  });
});

describe("a running mesh: mesh:probe and mesh:check into a closed pipe, then mesh:up's own stdout closed", () => {
  let work: string;
  let upDone: Promise<Ended> | undefined;
  let pids: number[] = [];
  before(() => {
    work = tempDir("mesh-epipe-up-");
    copyFileSync(SHIPPED_POLICY_FILE, join(work, "mesh-policy.toml"));
  });
  after(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    cleanup(work);
  });

  it("probe and check end quietly; mesh:up stops every service and exits 0 when its reader goes", {
    timeout: 360_000,
  }, async () => {
    let upOut = "";
    let closeUpOut: (() => void) | undefined;
    const meshJson = join(work, "logs", "mesh.json");
    let ended: Ended | undefined;
    upDone = withClosedStdout(
      "scripts/mesh-up.ts",
      ["--order-port", "0", "--payment-port", "0", "--inventory-port", "0", "--ca-port", "0", "--dashboard-port", "0"],
      {
        cwd: work,
        onOut: (out) => {
          upOut = out;
        },
        closeWhen: () => false,
        closer: (close) => {
          closeUpOut = close;
        },
      },
    );
    void upDone.then((r) => (ended = r));
    const t0 = Date.now();
    while (!(/Ctrl-C stops everything/.test(upOut) && existsSync(meshJson))) {
      if (ended) throw new Error(`mesh:up ended early (${ended.code}): ${upOut}\n${ended.stderr}`);
      if (Date.now() - t0 > 240_000) throw new Error(`mesh:up not up after 240 s: ${upOut}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const state = JSON.parse(readFileSync(meshJson, "utf8")) as {
      pids: Record<string, number>;
      ports: Record<string, number>;
    };
    pids = Object.values(state.pids);
    assert.equal(pids.length, 3);

    const logs = join(work, "logs");
    assertQuiet(await withClosedStdout("scripts/mesh-probe.ts", ["--logs", logs], { cwd: work }), "mesh:probe | true");
    const check = await withClosedStdout("scripts/mesh-check.ts", ["--logs", logs], { cwd: work });
    assert.doesNotMatch(check.stderr, /EPIPE|\n\s+at /, check.stderr);
    assert.ok(
      check.code === 0 || check.code === 1,
      `mesh:check ends with its own verdict, not a crash: ${check.code}\n${check.stderr}`,
    );

    // Now mesh:up's reader goes away. mesh:up learns it at its next write, as any process does
    // (`| head` closes its end and the writer gets EPIPE): that next line is a stranger's
    // handshake, which every service logs and mesh:up echoes. The pipe is closed before the
    // stranger connects, so the line cannot slip through before it (which left mesh:up with
    // nothing more to write, waiting forever).
    closeUpOut!();
    const sock = connect({
      host: "127.0.0.1",
      port: state.ports.payment!,
      rejectUnauthorized: false,
      servername: "payment.internal",
    });
    sock.on("error", () => {});
    sock.on("secureConnect", () => sock.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      upDone,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`mesh:up still running 60 s after its stdout closed: ${upOut.slice(-2000)}`)),
          60_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    sock.destroy();
    assertQuiet(r, "mesh:up with its stdout closed");
    for (const pid of pids) {
      let alive = true;
      try {
        process.kill(pid, 0);
      } catch {
        alive = false;
      }
      assert.equal(alive, false, `service pid ${pid} was stopped with mesh:up`);
    }
  });
});
