// The drill's timeline: each column means one thing. A failed order is counted once, a phase
// without failures has no reasons, and a phase's gap is its own, not carried over from the last.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { DrillReport, PhaseReport } from "../scripts/drill/drill.ts";
import { LEGEND, timeline } from "../scripts/drill/timeline.ts";
import { longestGap } from "../scripts/drill/traffic.ts";

const phase = (p: Partial<PhaseReport> & Pick<PhaseReport, "name">): PhaseReport => ({
  title: p.name,
  safe: true,
  startedAt: "2026-12-01T00:00:00.000Z",
  ms: 1000,
  sent: 20,
  succeeded: 20,
  failed: 0,
  reasons: {},
  longestGapMs: 60,
  handshakeFailures: {},
  upstreamFailures: {},
  notes: [],
  ...p,
});

// What the drill reports for a careless phase and a safe one with the drill's own deliberate refusals.
const report = {
  ok: true,
  dir: "/x/pki",
  stateRemoved: true,
  reportFile: "/x/report.json",
  logs: "/x/logs",
  withIntermediate: false,
  rate: 20,
  generations: { old: 1, new: 2 },
  reloads: [],
  explanations: [],
  probe: [],
  checks: [],
  longestSafeGapMs: 60,
  phases: [
    phase({
      name: "careless",
      safe: false,
      sent: 58,
      succeeded: 8,
      failed: 50,
      longestGapMs: 2400,
      reasons: { "502 payment:server_untrusted": 50 },
      handshakeFailures: { "payment:client_aborted": 49 },
      upstreamFailures: { "order:payment:server_untrusted": 50 },
    }),
    phase({ name: "drop-old", handshakeFailures: { "payment:unknown_ca": 8 } }),
  ],
} as DrillReport;

const row = (out: string, name: string) => out.split("\n").find((l) => l.startsWith(name))!;
const columns = (out: string) => {
  const header = out.split("\n").find((l) => l.startsWith("phase"))!;
  return { why: header.indexOf("why"), refusals: header.indexOf("refusals") };
};

test("a failed order is counted once in why; what the services logged is its own column", () => {
  const out = timeline(report);
  const { why, refusals } = columns(out);
  assert.ok(why > 0 && refusals > why, out);
  const careless = row(out, "careless");
  const whyCell = careless.slice(why, refusals).trim();
  assert.equal(whyCell, "502 payment:server_untrusted ×50");
  // The counts in why add up to the failed column: no order counted again from order's or payment's log.
  const counted = [...whyCell.matchAll(/×(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  assert.equal(counted, 50);
  assert.doesNotMatch(careless, /order:payment:server_untrusted/);
  assert.equal(careless.slice(refusals).trim(), "payment:client_aborted ×49");
});

test("a phase with no failed order shows no reason in why; its logged refusals stay under refusals", () => {
  const out = timeline(report);
  const { why, refusals } = columns(out);
  const dropOld = row(out, "drop-old");
  assert.match(dropOld, /^drop-old\s+1000\s+20\s+20\s+0\s+60\s/);
  assert.equal(dropOld.slice(why, refusals).trim(), "-");
  assert.equal(dropOld.slice(refusals).trim(), "payment:unknown_ca ×8");
});

test("the legend says what every column means", () => {
  const out = timeline(report);
  for (const l of LEGEND) assert.ok(out.includes(l));
  for (const col of ["ms", "sent/ok/failed", "gap ms", "why", "refusals"])
    assert.ok(
      LEGEND.some((l) => l.startsWith(`${col} `)),
      col,
    );
});

test("a phase's gap is measured within the phase, not carried over from the one before", () => {
  // Successes every 50 ms until 1000, an outage, then every 50 ms again from 2300.
  const successes = [
    ...Array.from({ length: 20 }, (_, i) => 50 + i * 50),
    ...Array.from({ length: 20 }, (_, i) => 2300 + i * 50),
  ];
  // The careless phase (0–2000) holds the outage up to its end; recovery (2000–3200) only its own 300 ms.
  assert.equal(longestGap(successes, 0, 2000), 1000);
  assert.equal(longestGap(successes, 2000, 3200), 300);
  // A steady phase: the interval; a phase with no success at all: all of it.
  assert.equal(longestGap(successes, 2300, 3000), 50);
  assert.equal(longestGap(successes, 1100, 1900), 800);
});
