// prom-client's default process metrics, once per process, for any registry that wants them.
import { Registry, collectDefaultMetrics, type Metric } from "prom-client";

/**
 * Gauges prom-client names like counters, which `promtool check metrics` flags (`_total` is
 * for counters); sum(nodejs_active_handles) etc. say the same by type.
 */
const MISNAMED_DEFAULTS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

let processRegistry: Registry | undefined;

/**
 * Registers the process metrics (CPU, memory, fds, event-loop lag, GC, …) in `registry`. Each
 * collectDefaultMetrics() keeps an event-loop timer and a GC observer running for good, so one
 * set is made per process and shared by every registry in it.
 */
export function addProcessMetrics(registry: Registry): void {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
    for (const name of MISNAMED_DEFAULTS) processRegistry.removeSingleMetric(name);
  }
  // getMetricsAsArray() is typed as the JSON shape, but it returns the metric objects.
  for (const m of processRegistry.getMetricsAsArray()) registry.registerMetric(m as unknown as Metric);
}

/** The process metrics alone, as an exposition of their own (for a process whose other metrics are not prom-client's). */
export function processExposition(): Registry {
  const registry = new Registry();
  addProcessMetrics(registry);
  return registry;
}
