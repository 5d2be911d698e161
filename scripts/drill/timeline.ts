// The drill's timeline for people: per phase, requests sent, succeeded and
// failed, the refusals seen, and how long each hot reload took.
import { bold, dim, green, red } from "../mesh-format.ts";
import type { DrillReport } from "./drill.ts";

const pad = (s: string | number, n: number) => String(s).padEnd(n);
const list = (r: Record<string, number>) => Object.entries(r).map(([k, v]) => `${k} ×${v}`).join(", ");

export function timeline(r: DrillReport): string {
  const out: string[] = [bold("\nTimeline")];
  out.push(dim(`${pad("phase", 12)}${pad("ms", 7)}${pad("sent", 6)}${pad("ok", 6)}${pad("failed", 8)}${pad("gap ms", 8)}why`));
  for (const p of r.phases) {
    const why = [list(p.reasons), list(p.handshakeFailures), list(p.upstreamFailures)].filter(Boolean).join("; ");
    const failed = p.failed === 0 ? green(pad(0, 8)) : p.safe ? red(pad(p.failed, 8)) : pad(p.failed, 8);
    out.push(`${pad(p.name, 12)}${pad(p.ms, 7)}${pad(p.sent, 6)}${pad(p.succeeded, 6)}${failed}${pad(p.longestGapMs, 8)}${dim(why || "-")}`);
  }
  out.push(bold("\nHot reloads") + dim(" (CA write → tls.reloaded; → first new handshake with the new certificate)"));
  for (const x of r.reloads) {
    out.push(`  ${pad(x.phase, 11)} ${pad(x.who, 10)} ${pad(x.what, 12)} ${pad(`${x.reloadMs} ms`, 8)}${x.effectMs !== undefined ? ` → ${x.effectMs} ms` : ""}`);
  }
  out.push(bold("\nChecks"));
  for (const c of r.checks) out.push(`  ${c.ok ? green("✓") : red("✗")} ${c.name}: ${dim(c.detail)}`);
  out.push("");
  out.push(r.ok
    ? green(`The careless rotation broke as expected; the safe rotation moved the whole mesh from generation ${r.generations.old} to ${r.generations.new} without losing a request (longest gap between successes: ${r.longestSafeGapMs} ms).`)
    : red("The drill did not go as it must: see the checks above."));
  return out.join("\n");
}
