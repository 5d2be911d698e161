// The rotation drill's check that `ca rotate --plan` foretold what then happened: each gate's
// predicted outcomes per caller → callee pair against the refusals the drill's traffic met in the
// phase that gate drove, and the renewals the plan said would be refused against the services'
// identity.renew_failed lines.
import {
  CARELESS_ORDER,
  type GateName,
  type PlanStep,
  planFacts,
  planRotation,
  policyPairs,
  stepLines,
} from "../../ca/index.ts";
import type { LogBook } from "./logbook.ts";
import type { PhaseReport } from "./phases.ts";

/**
 * Before a gate: what `ca rotate --plan` says it will do to each call, from the CA's facts now
 * (online: the bundle each identity last fetched), printed; returned to be held against what happens.
 */
export function foretell(
  ca: Parameters<typeof planFacts>[0],
  policy: { text: string; file: string },
  order: readonly GateName[],
  gate: GateName,
  say: (line: string) => void,
): PlanStep | undefined {
  const plan = planRotation(planFacts(ca, policyPairs(policy.text, policy.file)), order);
  const step = plan.steps.find((x) => x.gate === gate);
  if (!step) return undefined;
  say(
    `  plan (npm run ca -- rotate --plan${order === CARELESS_ORDER ? " --order careless" : ""}), before gate ${gate}:`,
  );
  for (const l of stepLines(plan, step)) say(`    ${l}`);
  return step;
}

/** A refusal the drill saw: caller → callee, and the reason as the caller logged it. */
export interface Observed {
  caller: string;
  callee: string;
  reason: string;
  count: number;
}

/** A failed call that is not a handshake's outcome (a timeout, a 500): the plan does not speak of those. */
const HANDSHAKE = new Set([
  "server_untrusted",
  "server_cert_expired",
  "rejected_in_handshake",
  "callee_withdrawn",
  "server_revoked",
  "server_crl_missing",
  "server_crl_expired",
  "server_crl_not_yet_valid",
]);

/**
 * The drill's orders, read as calls: edge calls order (the traffic's own failures, "order:<reason>
 * (<code>)"), order calls payment and inventory (its 502 answers, "<callee>:<reason>").
 */
export function observedCalls(reasons: Record<string, number>): { refusals: Observed[]; other: string[] } {
  const refusals: Observed[] = [];
  const other: string[] = [];
  for (const [key, count] of Object.entries(reasons)) {
    // "order:<reason> (<code>)" from the traffic itself; "502 <callee>:<reason>" from order's answer.
    const m = /^(?:\d{3} )?([a-z0-9-]+):([a-z_]+)(?: \(.*\))?$/.exec(key);
    if (!m || !HANDSHAKE.has(m[2]!)) {
      other.push(`${key} ×${count}`);
      continue;
    }
    const callee = m[1]!;
    refusals.push({ caller: callee === "order" ? "edge" : "order", callee, reason: m[2]!, count });
  }
  return { refusals, other };
}

export interface PlanMatch {
  /** The drill's phase and the gate whose plan it is judged against. */
  phase: string;
  gate: string;
  ok: boolean;
  detail: string;
}

/** One gate's plan against one phase's observations. */
export function matchStep(step: PlanStep, phase: PhaseReport, book: LogBook): PlanMatch {
  const problems: string[] = [];
  const seen: string[] = [];
  const { refusals, other } = observedCalls(phase.reasons);
  const predictedBreaks = step.calls.filter((c) => !c.after.ok || c.during.some((o) => !o.ok));
  let foretold = 0;
  for (const r of refusals) {
    const call = step.calls.find((c) => c.caller === r.caller && c.callee === r.callee);
    const reasons = new Set(call ? [...call.during, call.after].filter((o) => !o.ok).map((o) => o.caller!.reason) : []);
    // A caller that closed its own connection (callee_withdrawn) saw the callee refused by its trust.
    const ok = reasons.has(r.reason) || (r.reason === "callee_withdrawn" && reasons.size > 0);
    seen.push(`${r.caller} → ${r.callee} ${r.reason} ×${r.count}`);
    if (ok) foretold++;
    else
      problems.push(
        `${r.caller} → ${r.callee} was refused (${r.reason}) but the plan said ${reasons.size ? [...reasons].join(" or ") : "✓"}`,
      );
  }
  // The renewals the plan said would be refused (the agent will not use a certificate it cannot
  // verify), and no other.
  const stranded = new Map(step.identities.filter((i) => i.after.stranded).map((i) => [i.name, i.after.stranded!]));
  const until = Date.parse(phase.startedAt) + phase.ms;
  const renewals = new Map<string, number>();
  for (const e of book.since(Date.parse(phase.startedAt), { event: "identity.renew_failed" })) {
    if (e.at > until) continue;
    const why = String(e.line.reason ?? "");
    const s = stranded.get(e.service);
    renewals.set(e.service, (renewals.get(e.service) ?? 0) + 1);
    if (s && [s.why, ...s.retries].some((w) => why.includes(w))) foretold++;
    else
      problems.push(
        `${e.service}'s renewal failed (${why.slice(0, 160)}) but the plan said ${s ? `only: ${[s.why, ...s.retries].join(" / ")}` : "it renews"}`,
      );
  }
  for (const [who, n] of renewals) seen.push(`${who}'s renewal refused ×${n}`);
  if (predictedBreaks.length > 0 && foretold === 0)
    problems.push(
      `the plan foretold a break (${predictedBreaks.map((c) => `${c.caller} → ${c.callee}`).join(", ")}) that was not seen`,
    );
  const said = predictedBreaks.length
    ? `plan: breaks ${predictedBreaks.map((c) => `${c.caller} → ${c.callee}`).join(", ")}`
    : "plan: ✓ for every call";
  return {
    phase: phase.name,
    gate: step.gate,
    ok: problems.length === 0,
    detail: `${phase.name} (gate ${step.gate}): ${said}; seen: ${seen.join(", ") || `no refusal in ${phase.sent} orders`}${other.length ? `; not handshake outcomes, not judged: ${other.join(", ")}` : ""}${problems.length ? `; MISMATCH: ${problems.join("; ")}` : ""}`,
  };
}

/** The report's check (a drill Check): every planned gate matched what its phase showed. */
export function planCheck(matches: PlanMatch[], expected: number): { name: string; ok: boolean; detail: string } {
  const bad = matches.filter((m) => !m.ok);
  return {
    name: "plan matched observation",
    ok: matches.length === expected && bad.length === 0,
    detail:
      matches.length === expected
        ? matches.map((m) => m.detail).join(" | ")
        : `only ${matches.length} of ${expected} gates were planned and observed: ${matches.map((m) => m.detail).join(" | ")}`,
  };
}
