// lib/process-metrics-text.ts, prom-client's default process metrics written by hand (and lib/process-metrics.ts,
// the same in a prom-client Registry for the services): the same
// families (names, types, HELP, label names) as prom-client's collectDefaultMetrics() less the
// three it misnames, values that agree with what the process and the kernel say, and the real
// `promtool check metrics` finds nothing to flag.
import assert from "node:assert/strict";
import { test } from "node:test";
import { collectDefaultMetrics, Registry } from "prom-client";
import { addProcessMetrics } from "../lib/process-metrics.ts";
import { ProcessMetrics } from "../lib/process-metrics-text.ts";
import { parse, promtool, value } from "./helpers/prom.ts";

/** "# HELP"/"# TYPE" lines and each family's label names, per family: what a dashboard relies on. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (m) out.set(`${m[2]} ${m[1]}`, m[3]!);
  }
  for (const s of parse(text)) {
    const family = s.name.replace(/_(bucket|sum|count)$/, "");
    const key = `${out.has(`${s.name} TYPE`) ? s.name : family} labels`;
    const names = Object.keys(s.labels)
      .filter((l) => l !== "le")
      .sort()
      .join(",");
    const seen = out.get(key);
    out.set(key, seen === undefined || seen === names ? names : `${seen}|${names}`);
  }
  return out;
}

test("the same families as prom-client's defaults, less the three misnamed gauges; promtool accepts it", async () => {
  const reg = new Registry();
  collectDefaultMetrics({ register: reg });
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"])
    reg.removeSingleMetric(name);
  const mine = ProcessMetrics.get();
  // Some garbage and some delay, so the GC histogram and the loop figures have series in both.
  for (let i = 0; i < 5; i++) {
    Array.from({ length: 200_000 }, (_, j) => ({ j }));
    await new Promise((r) => setTimeout(r, 20));
  }
  (globalThis as { gc?: () => void }).gc?.();
  const theirs = families(await reg.metrics());
  const ours = families(mine.text());
  // A family with no series in one of them (no request in flight now) has no label names to compare.
  for (const [key, v] of theirs) {
    if (key.endsWith(" labels") && !ours.has(key)) continue;
    assert.equal(ours.get(key), v, key);
  }
  for (const key of ours.keys()) if (!key.endsWith(" labels")) assert.ok(theirs.has(key), `${key}: not prom-client's`);
  assert.equal(
    [...ours.keys()].filter((k) => k.endsWith(" TYPE")).length,
    [...theirs.keys()].filter((k) => k.endsWith(" TYPE")).length,
  );

  const lint = await promtool(["check", "metrics"], mine.text());
  assert.deepEqual(lint, { code: 0, out: "" }, `promtool check metrics:\n${lint.out}`);
});

test("the values agree with the process: CPU since start, memory, descriptors, heap, version", async () => {
  const m = ProcessMetrics.get();
  const before = process.cpuUsage();
  const s = parse(m.text());
  const after = process.cpuUsage();
  const cpu = value(s, "process_cpu_seconds_total")!;
  assert.ok(cpu >= (before.user + before.system) / 1e6 && cpu <= (after.user + after.system) / 1e6, `${cpu}`);
  assert.ok(
    Math.abs(value(s, "process_cpu_user_seconds_total")! + value(s, "process_cpu_system_seconds_total")! - cpu) < 1e-6,
  );
  const rss = value(s, "process_resident_memory_bytes")!;
  assert.ok(
    Math.abs(rss - process.memoryUsage().rss) < 16 * 1024 * 1024,
    `${rss} against ${process.memoryUsage().rss}`,
  );
  assert.ok(value(s, "process_virtual_memory_bytes")! > rss);
  const start = value(s, "process_start_time_seconds")!;
  assert.ok(Math.abs(start - (Date.now() / 1000 - process.uptime())) <= 1, `${start}`);
  assert.ok(value(s, "process_open_fds")! >= 3);
  assert.ok(value(s, "process_max_fds")! >= value(s, "process_open_fds")!);
  assert.ok(value(s, "nodejs_heap_size_used_bytes")! > 0);
  assert.ok(value(s, "nodejs_heap_space_size_used_bytes", { space: "old" })! > 0);
  const [major, minor, patch] = process.version.slice(1).split(".");
  assert.equal(value(s, "nodejs_version_info", { version: process.version, major, minor, patch }), 1);
  // A timer keeps the loop alive: it is counted among the active resources.
  const timer = setTimeout(() => {}, 10_000);
  try {
    assert.ok(value(parse(m.text()), "nodejs_active_resources", { type: "Timeout" })! >= 1);
  } finally {
    clearTimeout(timer);
  }
});

test("event-loop delay: a blocked loop shows in the next scrape's figures, and the lag of the last scrape", async () => {
  const m = ProcessMetrics.get();
  m.text(); // resets the figures
  await new Promise((r) => setTimeout(r, 30)); // the monitor's first tick after a reset only starts its clock
  const until = Date.now() + 120;
  while (Date.now() < until) {
    /* block the loop for 120 ms */
  }
  await new Promise((r) => setTimeout(r, 30));
  const s = parse(m.text());
  assert.ok(
    value(s, "nodejs_eventloop_lag_max_seconds")! >= 0.1,
    `max ${value(s, "nodejs_eventloop_lag_max_seconds")}`,
  );
  assert.ok(value(s, "nodejs_eventloop_lag_p99_seconds")! >= value(s, "nodejs_eventloop_lag_p50_seconds")!);
  assert.ok(value(s, "nodejs_eventloop_lag_seconds")! > 0, "the lag measured after the previous scrape");
});

test("in a prom-client Registry (the services'), the same families and series; promtool accepts it", async () => {
  const reg = new Registry();
  addProcessMetrics(reg);
  const viaRegistry = await reg.metrics();
  const direct = ProcessMetrics.get().text();
  const shape = (text: string) =>
    parse(text)
      .map((s) => `${s.name}{${Object.keys(s.labels).sort().join(",")}}`)
      .filter((k) => !k.startsWith("nodejs_active_") && !k.startsWith("nodejs_gc_")) // these come and go
      .sort();
  assert.deepEqual(shape(viaRegistry), shape(direct));
  assert.deepEqual(families(viaRegistry).get("process_cpu_seconds_total TYPE"), "counter");
  const lint = await promtool(["check", "metrics"], viaRegistry);
  assert.deepEqual(lint, { code: 0, out: "" }, `promtool check metrics:\n${lint.out}`);
});
