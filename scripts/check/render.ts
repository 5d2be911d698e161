// mesh:check's report as text, in the manner of `linkerd check`: a heading per group, one
// line per check (✓ ‼ ×), and under each warning or error what is wrong and the fix.
import { bold, dim, green, red, yellow } from "../mesh-format.ts";
import type { Check, Report } from "./checks.ts";

const MARK = { ok: "✓", warning: "‼", error: "×" } as const;

/**
 * Details quote what services sent (certificate subjects, CRL issuers, rules): control
 * characters are shown escaped, so a hostile value cannot move the cursor or recolour the terminal.
 */
export function printable(s: string): string {
  return s.replace(
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function line(c: Check): string[] {
  const paint = c.severity === "ok" ? green : c.severity === "warning" ? yellow : red;
  if (c.severity === "ok") return [`${paint(MARK.ok)} ${c.title}: ${dim(printable(c.detail))}`];
  // A check that depends on one that failed above: one line, since its fix is the one shown there.
  if (c.detail.startsWith("not checked: ")) return [`${paint(MARK[c.severity])} ${c.title}: ${printable(c.detail)}`];
  const out = [`${paint(MARK[c.severity])} ${c.title}`, `    ${printable(c.detail)}`];
  if (c.fix) out.push(`    fix: ${bold(printable(c.fix))}`);
  return out;
}

function group(heading: string, checks: readonly Check[]): string[] {
  return ["", heading, "-".repeat(heading.length), ...checks.flatMap(line)];
}

export function renderText(r: Report): string {
  const out = [...group(`mesh CA (${printable(r.ca.dir)})`, r.ca.checks)];
  for (const s of r.services)
    out.push(...group(`${s.name} :${s.port}${s.adminPort === null ? "" : ` (admin :${s.adminPort})`}`, s.checks));
  if (r.supervisor) out.push(...group("mesh:up (restarts)", r.supervisor.checks));
  const all = [...r.ca.checks, ...r.services.flatMap((s) => s.checks), ...(r.supervisor?.checks ?? [])];
  const errors = all.filter((c) => c.severity === "error").length;
  const warnings = all.filter((c) => c.severity === "warning").length;
  out.push("");
  if (errors > 0)
    out.push(
      red(
        `Status check results are ${MARK.error}: ${errors} failed, ${warnings} warning${warnings === 1 ? "" : "s"}, ${all.length} checks`,
      ),
    );
  else if (warnings > 0)
    out.push(
      yellow(
        `Status check results are ${MARK.warning}: ${warnings} warning${warnings === 1 ? "" : "s"}, ${all.length} checks`,
      ),
    );
  else out.push(green(`Status check results are ${MARK.ok}: ${all.length} checks`));
  return `${out.join("\n")}\n`;
}

export function renderJson(r: Report): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}
