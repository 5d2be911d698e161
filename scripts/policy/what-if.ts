// What-if: each call the mesh saw, decided by the policy in force and by a candidate, with
// decide(), the function the services use; the calls whose decision would change.
import { decide, type Decision, type Policy } from "../../services/mesh/policy.ts";
import { verdictOf, type Expectation } from "./tests-file.ts";
import type { SeenCall } from "./seen-calls.ts";

export interface Change {
  readonly caller: string;
  readonly service: string;
  readonly method: string;
  readonly path: string;
  readonly from: Expectation;
  readonly to: Expectation;
  /** The candidate's deciding rule, and where it is written. */
  readonly rule: string;
  readonly where?: string;
  readonly reason: string;
  readonly seen: number;
  readonly sources: readonly string[];
  /** A call that goes through today (allowed, or let through in audit mode) and would be denied. */
  readonly breaking: boolean;
}

export interface WhatIf {
  readonly calls: number;
  readonly changes: Change[];
  readonly unchanged: number;
}

const WORD: Record<Expectation, string> = { allow: "allowed", deny: "denied", would_deny: "would_deny" };

/** The rule's short name for a line of output: "payment.routes[1]" rather than "payment.routes[1] (POST /charge)". */
function ruleName(d: Decision): string {
  return d.rule.replace(/ \(.*\)$/, "");
}

export function whatIf(current: Policy, candidate: Policy, calls: readonly SeenCall[]): WhatIf {
  const changes: Change[] = [];
  for (const c of calls) {
    const now = verdictOf(decide(current, c.service, c.caller, c.method, c.path));
    const d = decide(candidate, c.service, c.caller, c.method, c.path);
    const then = verdictOf(d);
    if (now === then) continue;
    changes.push({
      caller: c.caller,
      service: c.service,
      method: c.method,
      path: c.path,
      from: now,
      to: then,
      rule: ruleName(d),
      where: d.where,
      reason: d.reason,
      seen: c.count,
      sources: [...c.sources].sort(),
      breaking: then === "deny",
    });
  }
  // The breaking ones first, then the most seen.
  changes.sort(
    (a, b) =>
      Number(b.breaking) - Number(a.breaking) ||
      b.seen - a.seen ||
      a.caller.localeCompare(b.caller) ||
      a.service.localeCompare(b.service),
  );
  return { calls: calls.length, changes, unchanged: calls.length - changes.length };
}

/** "allowed → denied: order → payment POST /charge, rule payment.routes[1] (candidate.toml:12), seen 37 times" */
export function changeLine(c: Change): string {
  const seen = c.sources.includes("logs") ? `seen ${c.seen} time${c.seen === 1 ? "" : "s"}` : "a mesh:probe pair";
  return `${WORD[c.from]} → ${WORD[c.to]}: ${c.caller} → ${c.service} ${c.method} ${c.path}, rule ${c.rule}${c.where ? ` (${c.where})` : ""}, ${seen}`;
}
