// How the CLI says things: what was made, where, who signed it, when it
// expires. Paths are shown relative to where the user stands.
import { relative } from "node:path";
import type { IssuedCert, ListedCert } from "./authority.ts";
import type { IssuerRow } from "./ledger.ts";
import { printable } from "./printable.ts";
import type { VerifyResult } from "./verify.ts";

const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

export function longDate(d: Date | string): string {
  const date = typeof d === "string" ? new Date(d) : d;
  return `${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()}`;
}

export function shortDate(d: string | Date): string {
  return (typeof d === "string" ? d : d.toISOString()).slice(0, 10);
}

export function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith("..") || rel === "" ? path : rel;
}

function inDays(to: Date, now: Date): string {
  const days = Math.round((to.getTime() - now.getTime()) / 86_400_000);
  return days >= 0 ? `in ${days} day${days === 1 ? "" : "s"}` : `${-days} days ago`;
}

export function issuedSummary(verb: string, c: IssuedCert, now: Date): string {
  const lines = [`${verb} ${c.domain}`];
  const names = [...c.sans.dns, ...c.sans.ip];
  lines.push(`  certificate  ${shown(c.certPath)}  (leaf${c.issuerId.startsWith("int-") ? " + chain" : ""})`);
  if (c.keyPath) lines.push(`  key          ${shown(c.keyPath)}  (0600: keep it secret)`);
  if (names.length > 0) lines.push(`  also valid   ${names.join(", ")}`);
  for (const id of c.sans.uri) lines.push(`  SPIFFE ID    ${id}`);
  lines.push(`  signed by    ${c.issuer} (generation ${c.generation})`);
  lines.push(`  serial       ${c.serial}`);
  lines.push(`  expires      ${longDate(c.notAfter)} (${inDays(c.notAfter, now)})`);
  if (c.supersedes) lines.push(`  supersedes   ${c.supersedes} (now SUPERSEDED)`);
  return lines.join("\n");
}

export function listTable(rows: ListedCert[]): string {
  const head = ["DOMAIN", "ISSUED", "EXPIRES", "STATUS", "SERIAL", "ISSUER"];
  const body = rows.map((r) => [r.domain, shortDate(r.issued), shortDate(r.notAfter), r.status, r.serial, r.issuer]);
  // A loop, not Math.max(...rows): spreading 100,000 rows overflows the stack.
  const widths = head.map((h) => h.length);
  for (const row of body) for (const [i, c] of row.entries()) widths[i] = Math.max(widths[i]!, c.length);
  const line = (cols: string[]) => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [line(head), ...body.map(line)].join("\n");
}

export function issuerLine(r: IssuerRow): string {
  const kind = r.kind === "root" ? `root, generation ${r.generation}` : `intermediate under generation ${r.generation}`;
  return `${r.name} (${kind}; ${r.id}; expires ${longDate(r.notAfter)})`;
}

/** `crlSource` says where the CRLs came from, for the revocation line. */
export function verifyReport(file: string, r: VerifyResult, crlSource = "crls.pem"): string {
  const names = r.chain.map((c) => printable(c.subjectName.getField("CN")[0] ?? c.subject));
  if (r.ok) {
    const leaf = r.chain[0]!;
    // An OK without revocation is not the same OK: say so where the eye lands first.
    const revocation = r.revocationChecked
      ? `not revoked (CRLs from ${crlSource})`
      : "NOT checked: no CRL was given (add the issuing CA's CRLs with --crl-file)";
    return `${shown(file)}: OK${r.revocationChecked ? "" : " (revocation NOT checked)"}\n  chain       ${names.join(" <- ")}\n  expires     ${longDate(leaf.notAfter)}\n  revocation  ${revocation}`;
  }
  return `${shown(file)}: FAILED (${r.failed!.check})\n  ${r.failed!.message}${names.length > 1 ? `\n  chain    ${names.join(" <- ")}` : ""}`;
}
