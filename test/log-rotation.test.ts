// Log rotation (issue 13): lib/rotating-file.ts caps a log at maxBytes × (1 + keep) with
// logrotate's names, never splits a line, and mesh:logs -f follows a log across rotations
// without losing or repeating a line.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RotatingFile, rotateIfLarger, rotationFromEnv } from "../lib/rotating-file.ts";
import { LogTail } from "../scripts/dashboard/log-tail.ts";
import { freshPki, call, identity } from "./mesh-fixtures.ts";
import { hasEvent, ev, linesOf, eventsIn } from "./helpers/events.ts";

const ROOT = join(import.meta.dirname, "..");
const TSX = import.meta.resolve("tsx");

const line = (i: number) =>
  `${JSON.stringify({ level: 30, time: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i)).toISOString(), service: "payment", event: "request", seq: i, peer: "order", method: "GET", path: `/charge/${i}`, status: 200, ms: 1, msg: "request" })}\n`;

function write(out: RotatingFile, text: string): Promise<void> {
  return new Promise((resolve, reject) => out.write(text, (err) => (err ? reject(err) : resolve())));
}

function end(out: RotatingFile): Promise<void> {
  return new Promise((resolve) => out.end(() => resolve()));
}

async function waitFor(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "mesh-logrot-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("RotatingFile", () => {
  it("keeps the current file and `keep` rotated ones, each under maxBytes, whole lines only, newest last", async () => {
    const path = join(dir, "cap", "payment.log");
    (await import("node:fs")).mkdirSync(join(dir, "cap"));
    writeFileSync(path, line(-1)); // what a previous run left is appended to
    const rotations: string[] = [];
    const out = new RotatingFile(path, { maxBytes: 2_000, keep: 2, onRotate: (p) => rotations.push(p) });
    for (let i = 0; i < 200; i++) await write(out, line(i));
    await end(out);
    assert.deepEqual(readdirSync(join(dir, "cap")).sort(), ["payment.log", "payment.log.1", "payment.log.2"]);
    assert.ok(rotations.length > 10, `rotated only ${rotations.length} times`);
    const seqs: number[] = [];
    for (const f of ["payment.log.2", "payment.log.1", "payment.log"]) {
      const text = readFileSync(join(dir, "cap", f), "utf8");
      assert.ok(statSync(join(dir, "cap", f)).size <= 2_000, `${f} is over maxBytes`);
      assert.ok(text.endsWith("\n"), `${f} ends inside a line`);
      for (const raw of text.trimEnd().split("\n")) seqs.push((JSON.parse(raw) as { seq: number }).seq);
    }
    // The newest lines, in order, up to 199: the oldest went with the files past `keep`.
    assert.equal(seqs.at(-1), 199);
    assert.deepEqual(
      seqs,
      seqs.map((_, k) => 199 - seqs.length + 1 + k),
    );
  });

  it("MESH_LOG_MAX_SIZE and MESH_LOG_KEEP are read strictly", () => {
    assert.deepEqual(rotationFromEnv({}), { maxBytes: 10 * 1024 * 1024, keep: 5 });
    assert.deepEqual(rotationFromEnv({ MESH_LOG_MAX_SIZE: "512k", MESH_LOG_KEEP: "0" }), {
      maxBytes: 512 * 1024,
      keep: 0,
    });
    assert.throws(
      () => rotationFromEnv({ MESH_LOG_MAX_SIZE: "ten megs" }),
      /MESH_LOG_MAX_SIZE="ten megs" is not a size/,
    );
    assert.throws(() => rotationFromEnv({ MESH_LOG_KEEP: "-1" }), /MESH_LOG_KEEP="-1" is not a whole number/);
  });
});

describe("mesh:logs -f across rotations", () => {
  it("prints every line once, in order, while the log rotates under it (also twice between two of its reads)", async () => {
    const logs = join(dir, "follow");
    (await import("node:fs")).mkdirSync(logs);
    const path = join(logs, "payment.log");
    const out = new RotatingFile(path, { maxBytes: 4_000, keep: 5 });
    for (let i = 0; i < 10; i++) await write(out, line(i)); // history, printed first
    const child = spawn(
      process.execPath,
      ["--import", TSX, join(ROOT, "scripts", "mesh-logs.ts"), "--logs", logs, "-f", "--json"],
      { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const seqs = () =>
      stdout
        .split("\n")
        .filter(Boolean)
        .map((raw) => (JSON.parse(raw) as { seq: number }).seq);
    try {
      await waitFor(
        () => seqs().length >= 10,
        30_000,
        () => `history not printed: ${stdout}${stderr}`,
      );
      let next = 10;
      // Slowly: a rotation at most every few of mesh:logs' reads.
      for (let burst = 0; burst < 6; burst++) {
        for (let k = 0; k < 12; k++) await write(out, line(next++));
        const want = next;
        await waitFor(
          () => seqs().length >= want,
          30_000,
          () => `stuck at ${seqs().length} of ${want}: ${stderr}`,
        );
      }
      // Fast: ~3 rotations in one go, between two of its reads (it reads every 250 ms).
      for (let k = 0; k < 50; k++) await write(out, line(next++));
      const want = next;
      await waitFor(
        () => seqs().length >= want,
        30_000,
        () => `stuck at ${seqs().length} of ${want} after fast rotations: ${stderr}`,
      );
      assert.ok(existsRotated(path, 3), "the log did not rotate three times");
      assert.deepEqual(
        seqs(),
        Array.from({ length: want }, (_, i) => i),
      );
    } finally {
      child.kill("SIGTERM");
      await end(out);
    }
  });
});

describe("the dashboard's LogTail across rotations", () => {
  it("hands on every line once, in order, when the log rotated once or three times between polls", async () => {
    const logs = join(dir, "tail");
    (await import("node:fs")).mkdirSync(logs);
    const out = new RotatingFile(join(logs, "payment.log"), { maxBytes: 3_000, keep: 5 });
    const got: number[] = [];
    const tail = new LogTail(logs, (l) => got.push((l as unknown as { seq: number }).seq));
    let next = 0;
    for (const burst of [5, 20, 5, 60, 1]) {
      for (let k = 0; k < burst; k++) await write(out, line(next++));
      tail.poll();
      assert.deepEqual(
        got,
        Array.from({ length: next }, (_, i) => i),
        `after a burst of ${burst}`,
      );
    }
    await end(out);
  });
});

describe("a service's own --log-file", () => {
  it("rotates under MESH_LOG_MAX_SIZE/MESH_LOG_KEEP, whole lines only, and holds the shutdown line", () =>
    ownLogFile("services/main.ts", [], 200));
  it("a sidecar's too (mesh:up gives it --log-file): its app down, each 503 is a line", () =>
    ownLogFile("services/sidecar.ts", ["--app", "http://127.0.0.1:9"], 503));
});

describe("rotateIfLarger: what a component writes through its stderr descriptor", () => {
  it("rotates only a file past maxBytes, keeping `keep` older ones, and leaves a missing file alone", () => {
    const f = join(dir, "svc.stderr");
    assert.equal(rotateIfLarger(f, { maxBytes: 10, keep: 2 }), false);
    writeFileSync(f, "0123456789");
    assert.equal(rotateIfLarger(f, { maxBytes: 10, keep: 2 }), false, "exactly maxBytes stays");
    for (const gen of ["first\n".repeat(3), "second\n".repeat(3), "third\n".repeat(3)]) {
      writeFileSync(f, gen);
      assert.equal(rotateIfLarger(f, { maxBytes: 10, keep: 2 }), true);
    }
    assert.deepEqual(
      readdirSync(dir)
        .filter((n) => n.startsWith("svc.stderr"))
        .sort(),
      ["svc.stderr.1", "svc.stderr.2"],
    );
    assert.equal(readFileSync(`${f}.1`, "utf8"), "third\n".repeat(3));
    assert.equal(readFileSync(`${f}.2`, "utf8"), "second\n".repeat(3));
  });
});

async function ownLogFile(entry: string, extra: string[], expectStatus: number): Promise<void> {
  {
    const pki = await freshPki();
    const logs = join(pki.root, "svc-logs");
    (await import("node:fs")).mkdirSync(logs);
    const file = join(logs, "payment.log");
    const child = spawn(
      process.execPath,
      [
        "--import",
        TSX,
        entry,
        ...extra,
        "--service",
        "payment",
        "--port",
        "0",
        "--pki",
        pki.dir,
        "--policy",
        pki.policyFile,
        "--log-file",
        file,
      ],
      {
        cwd: ROOT,
        env: { ...process.env, MESH_LOG_MAX_SIZE: "4k", MESH_LOG_KEEP: "2", MESH_REQUEST_LINES_PER_SECOND: "0" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      const read = (f: string) => {
        try {
          return readFileSync(f, "utf8");
        } catch {
          return "";
        }
      };
      await waitFor(
        () => hasEvent(read(file), "listening"),
        60_000,
        () => `no listening line in ${file}`,
      );
      const port = eventsIn(read(file), "listening")[0]!.port;
      // Enough request lines (~250 bytes each) for several rotations, in several batches.
      for (let i = 0; i < 80; i++) {
        const r = await call(pki, port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
        assert.equal((r as { status: number }).status, expectStatus);
        if (i % 20 === 19) await new Promise((r) => setTimeout(r, 150)); // let the sink's 100 ms batch go
      }
      await waitFor(
        () => existsRotated(file, 2),
        30_000,
        () => `not rotated twice: ${readdirSync(logs).join(", ")}`,
      );
      child.kill("SIGTERM");
      assert.equal(await exited, 0);
      assert.equal(stdout, "", "the log went to stdout as well");
      assert.deepEqual(readdirSync(logs).sort(), ["payment.log", "payment.log.1", "payment.log.2"]);
      for (const f of readdirSync(logs)) {
        const text = read(join(logs, f));
        assert.ok(text.endsWith("\n"), `${f} ends inside a line`);
        for (const raw of text.trimEnd().split("\n")) JSON.parse(raw);
      }
      assert.ok(ev("shutdown")(linesOf(read(file)).at(-1) ?? {}), "the last line is shutdown");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      pki.cleanup();
    }
  }
}

function existsRotated(path: string, n: number): boolean {
  try {
    statSync(`${path}.${n}`);
    return true;
  } catch {
    return false;
  }
}
