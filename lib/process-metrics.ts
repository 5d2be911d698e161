// The process metrics (lib/process-metrics-text.ts, prom-client's default set written by hand)
// in a prom-client Registry, for the services, whose other metrics are prom-client's: one set of
// monitors per process, the same families and numbers as `ca serve`'s exposition.
import type { Metric, Registry } from "prom-client";
import { ProcessMetrics } from "./process-metrics-text.ts";
import type { Family } from "./prom-text.ts";

/** What prom-client's Registry reads of a metric: its name, and its values when scraped. */
interface FamilyMetric {
  name: string;
  help: string;
  type: Family["type"];
  aggregator: "sum";
  get(): Promise<{
    name: string;
    help: string;
    type: Family["type"];
    aggregator: "sum";
    values: Array<{ value: number; labels: Family["samples"][number]["labels"]; metricName: string }>;
  }>;
}

// One reading serves every family of one scrape (prom-client asks each family in the same turn).
let reading: Family[] | undefined;
function current(): Family[] {
  if (!reading) {
    reading = ProcessMetrics.get().families();
    setImmediate(() => {
      reading = undefined;
    });
  }
  return reading;
}

/** Registers the process metrics (CPU, memory, fds, event-loop delay, GC, …) in `registry`. */
export function addProcessMetrics(registry: Registry): void {
  for (const { name, help, type } of current()) {
    const metric: FamilyMetric = {
      name,
      help,
      type,
      aggregator: "sum",
      async get() {
        const f = current().find((x) => x.name === name);
        const values = (f?.samples ?? []).map((s) => ({ value: s.value, labels: s.labels, metricName: s.name }));
        return { name, help, type, aggregator: "sum", values };
      },
    };
    registry.registerMetric(metric as unknown as Metric);
  }
}
