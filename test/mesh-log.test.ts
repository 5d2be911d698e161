// The services' log plumbing: the hand-formatted `request` line is exactly pino's, and the
// batching sink delivers every line in order through a real pipe, bounds its memory when the
// reader is stuck (and says how many lines it dropped), and survives a reader that is gone.
import { once } from "node:events";
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { pino } from "pino";
import { createLogger, requestLogger, type RequestRecord } from "../services/mesh/log.ts";
import { LineSink } from "../services/mesh/log-sink.ts";
import { AccessLog } from "../services/mesh/access-log.ts";

class Collect {
  text = "";
  write(s: string): void {
    this.text += s;
  }
}

test("the request line is byte for byte what pino writes for the same record", () => {
  const records: RequestRecord[] = [
    { peer: "order", method: "GET", path: "/healthz", status: 200, rule: "payment.accepts", ms: 0.12 },
    {
      peer: "edge",
      method: "POST",
      path: '/a"b\\c/\u00e9/\u2028/\u0001\ttab',
      status: 403,
      rule: "order.routes[0]",
      ms: 0,
    },
    { peer: "inventory", method: "DELETE", path: "/stock/😀", status: 500, rule: "", ms: 1234.56 },
  ];
  for (const r of records) {
    const viaPino = new Collect();
    const viaTemplate = new Collect();
    createLogger("payment", viaPino).info({ event: "request", ...r }, "request");
    requestLogger(createLogger("payment", viaTemplate))(r);
    // The clock is read separately by each: compare everything but the time.
    const strip = (s: string) => s.replace(/"time":"[^"]+"/, '"time":"T"');
    assert.equal(strip(viaTemplate.text), strip(viaPino.text));
    assert.deepEqual(JSON.parse(viaTemplate.text).path, r.path);
  }
  // Child bindings and a raised level are honoured too.
  const child = new Collect();
  requestLogger(createLogger("payment", child).child({ zone: "a" }))(records[0]!);
  assert.match(child.text, /^\{"level":30,"time":"[^"]+","service":"payment","zone":"a","event":"request",/);
  const quiet = new Collect();
  const log = createLogger("payment", quiet);
  log.level = "warn";
  requestLogger(log)(records[0]!);
  assert.equal(quiet.text, "");
});

/** A child that reads its stdin only after `delayMs` and echoes it; resolves with what it echoed. */
function slowReader(delayMs: number) {
  const child = spawn(process.execPath, ["-e", `setTimeout(() => process.stdin.pipe(process.stdout), ${delayMs})`], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  const done = new Promise<string>((resolve) => child.on("close", () => resolve(out)));
  return { child, done };
}

test("the sink delivers every line, in order, through a pipe whose reader is slow to start", async () => {
  const { child, done } = slowReader(300);
  const sink = new LineSink(child.stdin, { batchChars: 4096, flushMs: 20 });
  const n = 5_000;
  for (let i = 0; i < n; i++) sink.write(`{"i":${i},"pad":"${"x".repeat(i % 50)}"}\n`);
  await sink.drained();
  assert.equal(sink.droppedLines, 0);
  child.stdin.end();
  const lines = (await done).trimEnd().split("\n");
  assert.equal(lines.length, n);
  for (const [i, l] of lines.entries()) assert.equal(JSON.parse(l).i, i);
});

test("with the reader stuck, the sink drops lines beyond its bound and then says how many", async () => {
  const { child, done } = slowReader(1_000);
  const sink = new LineSink(child.stdin, {
    batchChars: 1024,
    flushMs: 10,
    maxQueuedBytes: 256 * 1024,
    droppedLine: (count) => `{"event":"log.dropped","count":${count}}\n`,
  });
  const line = `{"pad":"${"x".repeat(200)}"}\n`;
  for (let i = 0; i < 10_000; i++) sink.write(line); // ~2.1 MB against a 256 KiB bound
  const dropped = sink.droppedLines;
  assert.ok(dropped > 5_000, `dropped ${dropped}`);
  assert.ok(child.stdin.writableLength < 256 * 1024 + 2048, `queued ${child.stdin.writableLength} bytes`);
  // Once the reader catches up, the next flush reports the drop, after the lines that made it.
  // The pipe drained is the reader caught up (an event, not a guess at how long it takes).
  if (child.stdin.writableLength > 0) await once(child.stdin, "drain");
  sink.write(`{"event":"after"}\n`);
  await sink.drained();
  child.stdin.end();
  const lines = (await done)
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(lines.length, 10_000 - dropped + 2);
  assert.deepEqual(lines.at(-2), { event: "after" });
  assert.deepEqual(lines.at(-1), { event: "log.dropped", count: dropped });
  assert.equal(sink.droppedLines, 0);
});

test("a reader that has gone away is not an error: lines are discarded and drained() resolves", async () => {
  const child = spawn(process.execPath, ["-e", "process.exit(0)"], { stdio: ["pipe", "ignore", "inherit"] });
  await new Promise((r) => child.on("close", r));
  const sink = new LineSink(child.stdin, { batchChars: 16 });
  for (let i = 0; i < 100; i++) sink.write(`{"i":${i}}\n`);
  await sink.drained();
  sink.write("more\n");
  await sink.drained();
  assert.ok(child.stdin.destroyed);
});

test("pino writes through the sink unchanged", async () => {
  const { child, done } = slowReader(0);
  const sink = new LineSink(child.stdin);
  const log = pino({ base: { service: "payment" } }, sink);
  log.info({ event: "listening", port: 1 }, "up");
  requestLogger(log)({ peer: "order", method: "GET", path: "/", status: 200, rule: "r", ms: 1 });
  await sink.drained();
  child.stdin.end();
  const lines = (await done)
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    lines.map((l) => [l.event, l.service]),
    [
      ["listening", "payment"],
      ["request", "payment"],
    ],
  );
});

test("the access log writes a line per request up to its budget, then counts the rest of the second", () => {
  const out = new Collect();
  const access = new AccessLog(createLogger("inventory", out), 3);
  const r = (i: number, status = 200): RequestRecord => ({
    peer: "order",
    method: "GET",
    path: `/stock/sku-${i}`,
    status,
    rule: "inventory.accepts",
    ms: i,
  });
  for (let i = 1; i <= 10; i++) access.record(r(i, i === 9 ? 404 : 200), "/stock/:sku");
  const lines = () =>
    out.text
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
  assert.deepEqual(
    lines().map((l) => [l.event, l.path]),
    [
      ["request", "/stock/sku-1"],
      ["request", "/stock/sku-2"],
      ["request", "/stock/sku-3"],
    ],
  );
  access.endSecond();
  const summaries = lines().slice(3);
  assert.deepEqual(
    summaries.map((l) => [l.event, l.peer, l.method, l.route, l.status, l.count, l.msAvg, l.msMax]),
    [
      ["request.summary", "order", "GET", "/stock/:sku", 200, 6, 6.67, 10],
      ["request.summary", "order", "GET", "/stock/:sku", 404, 1, 9, 9],
    ],
  );
  assert.match(
    summaries[0]!.msg,
    /^6 more GET \/stock\/:sku from order answered 200 this second, beyond 3 request lines a second$/,
  );
  // A new second: the budget is back, and nothing is counted twice.
  access.record(r(11), "/stock/:sku");
  access.close();
  assert.deepEqual(
    lines()
      .slice(5)
      .map((l) => [l.event, l.path]),
    [["request", "/stock/sku-11"]],
  );
  // Budget 0: every request its own line.
  const all = new Collect();
  const every = new AccessLog(createLogger("inventory", all), 0);
  for (let i = 1; i <= 500; i++) every.record(r(i), "/stock/:sku");
  every.close();
  assert.equal(all.text.trimEnd().split("\n").length, 500);
});
