// lib/prom-text.ts, the hand-written exposition the CA server uses instead of prom-client: the
// same observations through both give the same samples (prom-client is the reference), label
// values a peer could influence are escaped, and the real `promtool check metrics` accepts it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { CounterFamily, HistogramFamily, counterText, gaugeText } from "../lib/prom-text.ts";
import { promtool } from "./helpers/prom.ts";

/** Sample lines as "name{k=v,…} value" with the labels unescaped and sorted: comparable across writers. */
function samples(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const labels: string[] = [];
    const body = m[2] ?? "";
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/y;
    for (let at = 0; at < body.length; ) {
      re.lastIndex = at;
      const l = re.exec(body);
      assert.ok(l, `bad labels: ${body}`);
      labels.push(`${l[1]}=${l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c))}`);
      at = re.lastIndex;
    }
    out.push(`${m[1]}{${labels.sort().join(",")}} ${Number(m[3])}`);
  }
  return out.sort();
}

const HOSTILE = ['a "quoted" one', "back\\slash", "new\nline", "plain", "\\n literally"];

test("counters, histograms and gauges give prom-client's samples, hostile label values included; promtool accepts them", async () => {
  const reg = new Registry();
  const c = new Counter({ name: "t_requests_total", help: "Requests.", labelNames: ["route"], registers: [reg] });
  const h = new Histogram({
    name: "t_duration_seconds",
    help: "Durations.",
    labelNames: ["route", "outcome"],
    buckets: [0.001, 0.01, 0.1, 1],
    registers: [reg],
  });
  const g = new Gauge({ name: "t_things", help: "Things.", labelNames: ["status"], registers: [reg] });
  const ours = {
    c: new CounterFamily("t_requests_total", "Requests."),
    h: new HistogramFamily("t_duration_seconds", "Durations.", [1, 0.1, 0.01, 0.001]),
  };
  const gauges: Array<[{ status: string }, number]> = [];
  HOSTILE.forEach((v, i) => {
    c.inc({ route: v }, i + 1);
    ours.c.inc({ route: v }, i + 1);
    for (const x of [0.0005, 0.001, 0.05, 0.5, 3, 1e-7 * i]) {
      h.observe({ route: v, outcome: "ok" }, x);
      ours.h.observe({ route: v, outcome: "ok" }, x);
    }
    g.set({ status: v }, i * 1.5);
    gauges.push([{ status: v }, i * 1.5]);
  });
  // A series made to exist at 0, as the CA does for every reason up front.
  c.inc({ route: "zero" }, 0);
  ours.c.inc({ route: "zero" }, 0);
  const text = [ours.c.text(), ours.h.text(), gaugeText("t_things", "Things.", gauges)].join("\n");
  assert.deepEqual(samples(text), samples(await reg.metrics()));
  const lint = await promtool(["check", "metrics"], text);
  assert.deepEqual(lint, { code: 0, out: "" }, `promtool check metrics:\n${lint.out}`);
});

test("HELP text is escaped, and a family with no series is still a valid HELP and TYPE", async () => {
  const text = [
    gaugeText("t_empty", "Nothing yet \\ a backslash\nand a second line.", []),
    counterText("t_done_total", "Done.", [[{}, 2]]),
  ].join("\n");
  assert.match(text, /^# HELP t_empty Nothing yet \\\\ a backslash\\nand a second line\.$/m);
  assert.deepEqual(samples(text), ["t_done_total{} 2"]);
  const lint = await promtool(["check", "metrics"], text);
  assert.deepEqual(lint, { code: 0, out: "" }, `promtool check metrics:\n${lint.out}`);
});
