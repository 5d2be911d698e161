// Prometheus's text exposition format (0.0.4), written by hand for a process that keeps a few
// metrics of its own: counters and histograms kept in Maps, gauges read when scraped. prom-client
// does the same with a heavier machinery: loaded alone into a bare Node process it costs about
// 13 MB of resident memory; in `ca serve` its metrics cost 1.5–2 MB at rest (docs/bench.md).
// https://prometheus.io/docs/instrumenting/exposition_formats/

export const PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels = Readonly<Record<string, string>>;

/** One series' labels as the exposition writes them, `{a="x",b="y"}` or "" without labels. */
function labelText(labels: Labels): string {
  const pairs = Object.entries(labels);
  if (pairs.length === 0) return "";
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function number(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "+Inf";
  if (n === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(n);
}

function header(name: string, help: string, type: "counter" | "gauge" | "histogram"): string {
  return `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
}

/** One family as data: its text is written from it, and a prom-client Registry can be handed it (lib/process-metrics.ts). */
export interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  /** Each sample under its own name (a histogram's `_bucket`, `_sum`, `_count`). */
  samples: Array<{ name: string; labels: Labels; value: number }>;
}

/** A counter or gauge family from its series, [labels, value] pairs (none: only its HELP and TYPE). */
export function seriesFamily(
  type: "counter" | "gauge",
  name: string,
  help: string,
  series: ReadonlyArray<readonly [Labels, number]>,
): Family {
  return { name, help, type, samples: series.map(([labels, value]) => ({ name, labels, value })) };
}

/** A family's HELP, TYPE and samples. */
export function familyText(f: Family): string {
  let out = header(f.name, f.help, f.type);
  for (const s of f.samples) out += `${s.name}${labelText(s.labels)} ${number(s.value)}\n`;
  return out;
}

/** A family of counters by label set, in the order each set was first seen. */
export class CounterFamily {
  private readonly series = new Map<string, { labels: Labels; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  /** Adds `by` (default 1; 0 makes the series exist). */
  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const s = this.series.get(key);
    if (s) s.value += by;
    else this.series.set(key, { labels, value: by });
  }

  text(): string {
    return familyText(
      seriesFamily(
        "counter",
        this.name,
        this.help,
        [...this.series.values()].map((s) => [s.labels, s.value] as const),
      ),
    );
  }
}

/** A family of histograms with fixed buckets, by label set. */
export class HistogramFamily {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  private readonly buckets: readonly number[];

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
  ) {
    this.buckets = [...buckets].sort((a, b) => a - b);
  }

  observe(labels: Labels, value: number): void {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    // Counted in the first bucket it fits; text() makes them cumulative.
    const i = this.buckets.findIndex((b) => value <= b);
    if (i >= 0) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  /** The same as data: each series' cumulative buckets, sum and count. */
  family(): Family {
    const samples: Family["samples"] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i]!;
        samples.push({ name: `${this.name}_bucket`, labels: { ...s.labels, le: number(le) }, value: cumulative });
      });
      samples.push({ name: `${this.name}_bucket`, labels: { ...s.labels, le: "+Inf" }, value: s.count });
      samples.push({ name: `${this.name}_sum`, labels: s.labels, value: s.sum });
      samples.push({ name: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: "histogram", samples };
  }

  text(): string {
    return familyText(this.family());
  }
}

/** A gauge family read at scrape time: its series as [labels, value] pairs (none: only its HELP and TYPE). */
export function gaugeText(name: string, help: string, series: ReadonlyArray<readonly [Labels, number]>): string {
  return familyText(seriesFamily("gauge", name, help, series));
}

/** A counter family computed at scrape time, likewise. */
export function counterText(name: string, help: string, series: ReadonlyArray<readonly [Labels, number]>): string {
  return familyText(seriesFamily("counter", name, help, series));
}
