// The drill's timeline for people: per phase, orders sent, succeeded and failed
// and why, the refusals the services logged, and how long each hot reload took.
import { bold, dim, green, red } from "../mesh-format.ts";
import type { DrillReport } from "./drill.ts";

const pad = (s: string | number, n: number) => String(s).padEnd(n);
const list = (r: Record<string, number>) =>
  Object.entries(r)
    .map(([k, v]) => `${k} ×${v}`)
    .join(", ");

/** What each column of the phase table means: one thing each. */
export const LEGEND = [
  "ms              how long the phase lasted",
  "sent/ok/failed  orders the traffic client placed during the phase (counted where sent), answered 201 / not; each order once",
  "gap ms          the longest stretch within the phase without a successful order (from its start, between answers, to its end)",
  "why             why the failed orders failed, as the traffic client saw them (status, then order's upstream:reason); - when none did",
  "refusals        handshake refusals the services logged during the phase (service:reason), from any client, the drill's own",
  "                old-certificate and probe calls included: log lines, not orders (a refused order also shows in why)",
];

export function timeline(r: DrillReport): string {
  const out: string[] = [bold("\nTimeline")];
  // Only the traffic client's own count: order's upstream.failed lines and the callee's refusals
  // describe the same failed orders again, so they are not added here (they are in the report).
  const whys = r.phases.map((p) => (p.failed === 0 ? "-" : list(p.reasons) || "?"));
  const whyWidth = Math.max(4, ...whys.map((w) => w.length)) + 2;
  out.push(
    dim(
      `${pad("phase", 12)}${pad("ms", 7)}${pad("sent", 6)}${pad("ok", 6)}${pad("failed", 8)}${pad("gap ms", 8)}${pad("why", whyWidth)}refusals`,
    ),
  );
  r.phases.forEach((p, i) => {
    const failed = p.failed === 0 ? green(pad(0, 8)) : p.safe ? red(pad(p.failed, 8)) : pad(p.failed, 8);
    const refusals = list(p.handshakeFailures) || "-";
    out.push(
      `${pad(p.name, 12)}${pad(p.ms, 7)}${pad(p.sent, 6)}${pad(p.succeeded, 6)}${failed}${pad(p.longestGapMs, 8)}${dim(pad(whys[i]!, whyWidth))}${dim(refusals)}`,
    );
  });
  for (const l of LEGEND) out.push(dim(`  ${l}`));
  if (r.gates?.length) {
    out.push(
      bold("\nRotation gates") +
        dim(" (runRotation against the online mesh; also rotate.gate lines in logs/drill.log)"),
    );
    const t0 = Date.parse(r.gates[0]!.at);
    for (const g of r.gates) {
      // A waiting gate's message names whom it waits for (bounded); the full list is in report.json.
      out.push(
        `  +${pad(`${((Date.parse(g.at) - t0) / 1000).toFixed(1)}s`, 7)} ${pad(g.gate, 9)} ${pad(g.state, 8)} ${g.msg.length > 150 ? `${g.msg.slice(0, 149)}…` : g.msg}`,
      );
    }
  }
  if (r.online) {
    const o = r.online;
    out.push(
      dim(
        `  certificates live ${o.lifetimeMs / 1000} s, services poll every ${o.pollMs} ms; ${o.renewals} renewal(s) during the drill; careless generation ${o.carelessGeneration} broke ${o.victims.join(", ") || "no one"}; the hands-off rotation took ${(o.rotationMs / 1000).toFixed(1)} s (${((o.rotationMs / o.lifetimeMs) * 100).toFixed(1)}% of a certificate's life)`,
      ),
    );
  }
  if (r.reloads.length)
    out.push(bold("\nHot reloads") + dim(" (CA write → tls.reloaded; → first new handshake with the new certificate)"));
  for (const x of r.reloads) {
    out.push(
      `  ${pad(x.phase, 11)} ${pad(x.who, 10)} ${pad(x.what, 12)} ${pad(`${x.reloadMs} ms`, 8)}${x.effectMs !== undefined ? ` → ${x.effectMs} ms` : ""}`,
    );
  }
  out.push(bold("\nChecks"));
  for (const c of r.checks) out.push(`  ${c.ok ? green("✓") : red("✗")} ${c.name}: ${dim(c.detail)}`);
  out.push("");
  out.push(
    r.ok
      ? green(
          `The careless rotation broke as expected; the safe rotation moved the whole mesh from generation ${r.generations.old} to ${r.generations.new} without losing a request (longest stretch without a successful order: ${r.longestSafeGapMs} ms).`,
        )
      : red("The drill did not go as it must: see the checks above."),
  );
  return out.join("\n");
}
