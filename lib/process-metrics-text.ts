// The process metrics prom-client's collectDefaultMetrics() exposes (15.x: CPU, memory, file
// descriptors, event-loop delay, active resources, heap and heap spaces, GC, version), under the
// same names, types and HELP, written by hand (lib/prom-text.ts) for a process that has no other
// use for prom-client: loading it costs `ca serve` about 2 MB of resident memory at rest, which
// decided issue 16's 1.3× target (docs/bench.md). The three gauges prom-client names like
// counters (nodejs_active_{handles,requests,resources}_total) are left out, as
// lib/process-metrics.ts removes them from prom-client's set: `promtool check metrics` flags them.
// Nothing runs at import; the event-loop monitor and the GC observer start on first use.
import { readdirSync, readFileSync } from "node:fs";
import { constants, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from "node:perf_hooks";
import { getHeapSpaceStatistics } from "node:v8";
import { familyText, HistogramFamily, seriesFamily, type Family, type Labels } from "./prom-text.ts";

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
};
/** prom-client's DEFAULT_GC_DURATION_BUCKETS. */
const GC_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5];
/** prom-client's eventLoopMonitoringPrecision default, in ms. */
const LOOP_RESOLUTION_MS = 10;

const START_SECONDS = Math.round(Date.now() / 1000 - process.uptime());
const VERSION = process.version.slice(1).split(".");

type Series = ReadonlyArray<readonly [Labels, number]>;
const one = (value: number | undefined): Series => (value === undefined ? [] : [[{}, value]]);
const gauge = (name: string, help: string, series: Series): Family => seriesFamily("gauge", name, help, series);
const counter = (name: string, help: string, series: Series): Family => seriesFamily("counter", name, help, series);

/** The process's own metrics, one set per process (its monitors run for good once started). */
export class ProcessMetrics {
  private readonly loop: IntervalHistogram;
  private readonly gc = new HistogramFamily(
    "nodejs_gc_duration_seconds",
    "Garbage collection duration by kind, one of major, minor, incremental or weakcb.",
    GC_BUCKETS,
  );
  /** The lag measured after the previous scrape (prom-client's gauge likewise shows the last one measured). */
  private lag = 0;
  private readonly maxFds = maxOpenFiles();

  private constructor() {
    this.loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.loop.enable();
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? -1];
        if (kind) this.gc.observe({ kind }, entry.duration / 1000);
      }
    }).observe({ entryTypes: ["gc"] });
  }

  private static instance: ProcessMetrics | undefined;

  /** The process's set, its monitors started on the first call. */
  static get(): ProcessMetrics {
    ProcessMetrics.instance ??= new ProcessMetrics();
    return ProcessMetrics.instance;
  }

  /** The exposition's text, read now (families()). */
  text(): string {
    return this.families().map(familyText).join("");
  }

  /** Every family, read now; the event-loop delay figures cover the time since the previous call. */
  families(): Family[] {
    const cpu = process.cpuUsage();
    const status = procStatus();
    const memory = safeMemoryUsage();
    const start = process.hrtime.bigint();
    setImmediate(() => {
      this.lag = Number(process.hrtime.bigint() - start) / 1e9;
    });
    const loop = this.loop;
    const delay = (ns: number) => ns / 1e9;
    const loopFigures: Array<[string, string, number]> = [
      ["min", "The minimum recorded event loop delay.", delay(loop.min)],
      ["max", "The maximum recorded event loop delay.", delay(loop.max)],
      ["mean", "The mean of the recorded event loop delays.", delay(loop.mean)],
      ["stddev", "The standard deviation of the recorded event loop delays.", delay(loop.stddev)],
      ["p50", "The 50th percentile of the recorded event loop delays.", delay(loop.percentile(50))],
      ["p90", "The 90th percentile of the recorded event loop delays.", delay(loop.percentile(90))],
      ["p99", "The 99th percentile of the recorded event loop delays.", delay(loop.percentile(99))],
    ];
    loop.reset();
    const spaces = getHeapSpaceStatistics().map((s) => ({ ...s, space: s.space_name.replace(/_space$/, "") }));
    const bySpace = (k: "space_size" | "space_used_size" | "space_available_size"): Series =>
      spaces.map((s) => [{ space: s.space }, s[k]] as const);
    const internals = process as unknown as { _getActiveHandles?(): object[]; _getActiveRequests?(): object[] };
    return [
      counter("process_cpu_user_seconds_total", "Total user CPU time spent in seconds.", one(cpu.user / 1e6)),
      counter("process_cpu_system_seconds_total", "Total system CPU time spent in seconds.", one(cpu.system / 1e6)),
      counter(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        one((cpu.user + cpu.system) / 1e6),
      ),
      gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", one(START_SECONDS)),
      gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        one(status ? status.VmRSS : memory?.rss),
      ),
      ...(status
        ? [
            gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", one(status.VmSize)),
            gauge("process_heap_bytes", "Process heap size in bytes.", one(status.VmData)),
          ]
        : []),
      gauge("process_open_fds", "Number of open file descriptors.", one(openFds())),
      ...(this.maxFds === undefined
        ? []
        : [gauge("process_max_fds", "Maximum number of open file descriptors.", one(this.maxFds))]),
      gauge("nodejs_eventloop_lag_seconds", "Lag of event loop in seconds.", one(this.lag)),
      ...loopFigures.map(([k, help, v]) => gauge(`nodejs_eventloop_lag_${k}_seconds`, help, one(v))),
      gauge(
        "nodejs_active_resources",
        "Number of active resources that are currently keeping the event loop alive, grouped by async resource type.",
        countBy(process.getActiveResourcesInfo(), (r) => r),
      ),
      gauge(
        "nodejs_active_handles",
        "Number of active libuv handles grouped by handle type. Every handle type is C++ class name.",
        countBy(internals._getActiveHandles?.() ?? [], (h) => h?.constructor?.name),
      ),
      gauge(
        "nodejs_active_requests",
        "Number of active libuv requests grouped by request type. Every request type is C++ class name.",
        countBy(internals._getActiveRequests?.() ?? [], (r) => r?.constructor?.name),
      ),
      ...(memory
        ? [
            gauge("nodejs_heap_size_total_bytes", "Process heap size from Node.js in bytes.", one(memory.heapTotal)),
            gauge("nodejs_heap_size_used_bytes", "Process heap size used from Node.js in bytes.", one(memory.heapUsed)),
            gauge("nodejs_external_memory_bytes", "Node.js external memory size in bytes.", one(memory.external)),
          ]
        : []),
      gauge(
        "nodejs_heap_space_size_total_bytes",
        "Process heap space size total from Node.js in bytes.",
        bySpace("space_size"),
      ),
      gauge(
        "nodejs_heap_space_size_used_bytes",
        "Process heap space size used from Node.js in bytes.",
        bySpace("space_used_size"),
      ),
      gauge(
        "nodejs_heap_space_size_available_bytes",
        "Process heap space size available from Node.js in bytes.",
        bySpace("space_available_size"),
      ),
      gauge("nodejs_version_info", "Node.js version info.", [
        [{ version: process.version, major: VERSION[0]!, minor: VERSION[1]!, patch: VERSION[2]! }, 1],
      ]),
      this.gc.family(),
    ];
  }
}

/** VmRSS, VmSize and VmData from /proc/self/status, in bytes; undefined off Linux. */
function procStatus(): { VmRSS: number; VmSize: number; VmData: number } | undefined {
  let text: string;
  try {
    text = readFileSync("/proc/self/status", "utf8");
  } catch {
    return undefined;
  }
  const kb = (field: string) => {
    const m = new RegExp(`^${field}:\\s*(\\d+) kB$`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { VmRSS: kb("VmRSS"), VmSize: kb("VmSize"), VmData: kb("VmData") };
}

/** Open descriptors, less the one reading the folder (as prom-client counts). */
function openFds(): number | undefined {
  try {
    return readdirSync("/proc/self/fd").length - 1;
  } catch {
    return undefined;
  }
}

function maxOpenFiles(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.split(/ {2,}/)[1];
    return soft === undefined || soft === "unlimited" ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

function safeMemoryUsage(): NodeJS.MemoryUsage | undefined {
  try {
    return process.memoryUsage();
  } catch {
    return undefined; // it can throw on some platforms (prom-client's issue 67)
  }
}

/** How many of each kind, in the order first seen. */
function countBy<T>(items: readonly T[], kind: (item: T) => string | undefined): Series {
  const counts = new Map<string, number>();
  for (const item of items) {
    const k = kind(item);
    if (k !== undefined) counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([type, n]) => [{ type }, n] as const);
}
