// The timeline of a failure drill for people: its phases (orders sent, failed and why, the
// refusals the services logged), the lines on both sides, the heal, and the checks.
import { bold, dim, green, red } from "../mesh-format.ts";
import type { StoryReport } from "./mesh.ts";
import { LEGEND } from "./timeline.ts";

const pad = (s: string | number, n: number) => String(s).padEnd(n);
const list = (r: Record<string, number>) =>
  Object.entries(r)
    .map(([k, v]) => `${k} ×${v}`)
    .join(", ");

export function storyTimeline(r: StoryReport): string {
  const out: string[] = [bold(`\nTimeline (${r.drill})`)];
  const whys = r.phases.map((p) => (p.failed === 0 ? "-" : list(p.reasons) || "?"));
  const whyWidth = Math.max(4, ...whys.map((w) => w.length)) + 2;
  out.push(
    dim(
      `${pad("phase", 12)}${pad("ms", 7)}${pad("sent", 6)}${pad("ok", 6)}${pad("failed", 8)}${pad("gap ms", 8)}${pad("why", whyWidth)}refusals`,
    ),
  );
  r.phases.forEach((p, i) => {
    const failed = p.failed === 0 ? green(pad(0, 8)) : p.safe ? red(pad(p.failed, 8)) : pad(p.failed, 8);
    out.push(
      `${pad(p.name, 12)}${pad(p.ms, 7)}${pad(p.sent, 6)}${pad(p.succeeded, 6)}${failed}${pad(p.longestGapMs, 8)}${dim(pad(whys[i]!, whyWidth))}${dim(list(p.handshakeFailures) || "-")}`,
    );
  });
  for (const l of LEGEND) out.push(dim(`  ${l}`));
  if (r.evidence.length) {
    out.push(bold("\nWhat each side said") + dim(" (the log lines to look for)"));
    for (const e of r.evidence)
      out.push(
        `  [${e.service}] ${e.event}${e.reason ? ` ${e.reason}` : ""}: ${dim(e.msg.length > 400 ? `${e.msg.slice(0, 399)}…` : e.msg)}`,
      );
  }
  out.push(`${bold("\nHeal")}  ${r.heal}`);
  out.push(bold("\nChecks"));
  for (const c of r.checks) out.push(`  ${c.ok ? green("✓") : red("✗")} ${c.name}: ${dim(c.detail)}`);
  out.push("");
  out.push(
    r.ok
      ? green(
          `The ${r.drill} drill went as it must: the break was seen and explained on both sides, and the mesh healed.`,
        )
      : red("The drill did not go as it must: see the checks above."),
  );
  return out.join("\n");
}
