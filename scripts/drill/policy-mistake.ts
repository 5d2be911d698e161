// The policy-mistake drill: an edit to payment's rule that drops `order` (the only caller payment
// needs), put through the tools that catch it before it is enforced: `npm run policy -- what-if`
// on the candidate (it predicts the break and exits 1), then the candidate in audit mode (payment
// logs `authz.would_deny` with the rule and the fix and lets every call through), then enforced
// (403s: payment's `authz.denied` names the rule and the fix, order's `upstream.failed forbidden`
// names the rule, orders fail), then reverted by hot reload, and the orders flow again. The
// checks hold only if what-if's prediction is exactly what enforcement then denied.
import { execFile } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decide, loadPolicy, parsePolicy } from "../../services/mesh/policy.ts";
import { ROOT } from "../launch.ts";
import { probeMesh, type ProbeCell } from "../probe.ts";
import { changeLine, type Change } from "../policy/what-if.ts";
import { DRILL_POLICY, runWith, type Setup } from "./drill.ts";
import type { FailureDrillOptions } from "./impostor.ts";
import type { Entry } from "./logbook.ts";
import { DrillMesh, evidence, SERVICES, type Evidence, type StoryReport } from "./mesh.ts";

/** The mistake: payment's accepts list rewritten for a new caller, and `order` lost on the way. */
export const CANDIDATE_POLICY = DRILL_POLICY.replace(
  '[payment]\naccepts = ["order"]',
  '[payment]\n# The edit: inventory may now charge (refunds); "order" was dropped by mistake.\naccepts = ["inventory"]',
);

/** What `npm run policy -- what-if --json` prints (the fields the drill reads). */
interface WhatIfJson {
  calls: number;
  breaking: number;
  changes: Array<Change & { sources: string[] }>;
}

const callKey = (c: { caller: string; service: string; method: string; path: string }) =>
  `${c.caller} → ${c.service} ${c.method} ${c.path}`;

export interface PolicyMistakeOptions extends FailureDrillOptions {
  /** The candidate policy (default CANDIDATE_POLICY); its audit form adds mode = "audit" to [payment]. A test gives a harmless one to see the checks fail. */
  candidate?: string;
}

export function runPolicyMistakeDrill(o: PolicyMistakeOptions = {}): Promise<StoryReport> {
  return runWith(o, policyMistake);
}

/** `npm run policy -- <args>` as a user runs it: its exit code and output. */
function policyCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", join(ROOT, "scripts", "policy", "main.ts"), ...args],
      { cwd: ROOT, timeout: 60_000, maxBuffer: 4 << 20 },
      (e, out, err) => resolve({ code: e ? (typeof e.code === "number" ? e.code : 2) : 0, out, err }),
    );
  });
}

/** Orders through payment after a reload that end a wait for a line the story did not produce. */
const QUIET_ORDERS = 20;

/** Puts a policy in force the way an operator saves one (a whole file, renamed into place); waits for every service to reload it. */
async function putPolicy(mesh: DrillMesh, text: string): Promise<string[]> {
  parsePolicy(text, "the drill's policy"); // a drill bug, not a drill result, if it does not parse
  // The same policy again is no change: no service reloads it, so there is no line to wait for.
  if (readFileSync(mesh.policy, "utf8") === text) return [];
  const at = Date.now();
  writeFileSync(`${mesh.policy}.new`, text);
  renameSync(`${mesh.policy}.new`, mesh.policy);
  const reloaded = await Promise.all(
    SERVICES.map((s) =>
      mesh.line(
        `${s} to reload the policy`,
        at - 50,
        (e) => e.service === s && e.line.event === "policy.reloaded",
        10_000,
      ),
    ),
  );
  return SERVICES.filter((_, i) => reloaded[i]);
}

async function probe(mesh: DrillMesh): Promise<ProbeCell[]> {
  const identities = Object.fromEntries(
    [...SERVICES, "edge"].map((s) => [s, { cert: mesh.stateOf(s).cert, key: mesh.stateOf(s).key }]),
  );
  const { cells } = await probeMesh({
    pki: mesh.setup.pki,
    policy: loadPolicy(mesh.policy),
    ports: mesh.ports,
    logs: mesh.logs,
    identities,
  });
  return cells;
}

async function policyMistake(o: PolicyMistakeOptions, setup: Setup): Promise<StoryReport> {
  const mesh = await DrillMesh.open(setup, { lifetimeMs: o.lifetimeMs ?? 60_000, pollMs: o.pollMs ?? 1_000 });
  const { dwell, pause } = setup;
  const candidateFile = join(setup.work, "candidate.toml");
  const checks: StoryReport["checks"] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  const rule = "payment.accepts";
  const candidate = o.candidate ?? CANDIDATE_POLICY;
  const auditPolicy = candidate.replace("[payment]\n", '[payment]\nmode = "audit"\n');
  const metric = (name: string) => mesh.metric("payment", name, { caller: "order", rule });
  try {
    await mesh.up();
    const original = loadPolicy(mesh.policy);
    await mesh.begin("baseline", "1. Baseline: the policy in force lets order call payment, orders flowing", true);
    await pause(dwell);

    // 2. What-if: the candidate replayed against the calls the logs show, nothing reloaded -------------
    await mesh.begin(
      "what-if",
      "2. A candidate edit (payment accepts inventory instead of order), checked with npm run policy -- what-if before anything reloads",
      true,
    );
    writeFileSync(candidateFile, candidate);
    const whatIfArgs = ["what-if", candidateFile, "--policy", mesh.policy, "--logs", mesh.logs, "--since", "10m"];
    const wi = await policyCli([...whatIfArgs, "--json"]);
    let prediction: WhatIfJson | undefined;
    try {
      prediction = JSON.parse(wi.out) as WhatIfJson;
    } catch {
      mesh.note(`what-if printed no JSON (exit ${wi.code}): ${wi.err.trim().slice(0, 300)}`);
    }
    mesh.note(`$ npm run policy -- what-if candidate.toml --policy policy.toml --logs logs  (exit ${wi.code})`);
    for (const c of prediction?.changes ?? []) mesh.note(`  ${changeLine({ ...c, sources: c.sources })}`);
    const predicted = new Set((prediction?.changes ?? []).filter((c) => c.breaking).map(callKey));
    await pause(dwell / 2);

    // 3. Audit: the candidate in force with mode = "audit": logged, counted, let through -------------
    await mesh.begin(
      "audit",
      '3. The candidate in force in audit mode (mode = "audit" on payment): what it would deny is logged and let through',
      true,
    );
    const auditAt = Date.now();
    const auditReloaded = await putPolicy(mesh, auditPolicy);
    mesh.note(`policy.reloaded by ${auditReloaded.join(", ") || "nobody"}`);
    // Every order calls payment: once enough got through the reloaded policy without the line, it is not coming.
    const wouldDeny = await mesh.line(
      "payment to log authz.would_deny",
      auditAt,
      (e) => e.service === "payment" && e.line.event === "authz.would_deny" && e.line.peer === "order",
      10_000,
      { after: Date.now(), orders: QUIET_ORDERS },
    );
    if (wouldDeny)
      mesh.note(
        `[payment] authz.would_deny rule=${String(wouldDeny.line.rule)}: ${String(wouldDeny.line.msg)}; fix: ${String(wouldDeny.line.hint)}`,
      );
    await pause(dwell);
    const wouldDenyCount = await metric("mesh_inbound_http_authz_would_deny_total");
    mesh.note(`payment's mesh_inbound_http_authz_would_deny_total{caller="order",rule="${rule}"} ${wouldDenyCount}`);
    const auditEnd = Date.now();

    // 4. Enforced: the 403s ------------------------------------------------------------------------
    // The audit's orders in flight finish first: one denied after the reload would be the enforcement's.
    mesh.traffic!.paused = true;
    await mesh.traffic!.settle();
    mesh.traffic!.paused = false;
    await mesh.begin(
      "enforce",
      "4. The candidate enforced (the mode line deleted): order's calls to payment are denied",
      false,
    );
    const enforceAt = Date.now();
    const deniedBefore = await metric("mesh_inbound_http_authz_deny_total");
    const enforceReloaded = await putPolicy(mesh, candidate);
    mesh.note(`policy.reloaded by ${enforceReloaded.join(", ") || "nobody"}`);
    // Orders that get through the enforced policy end the waits: an enforced break fails them all.
    const quiet = { after: Date.now(), orders: QUIET_ORDERS };
    const [callee, caller] = await Promise.all([
      mesh.line(
        "payment to deny order",
        enforceAt,
        (e) => e.service === "payment" && e.line.event === "authz.denied" && e.line.peer === "order",
        10_000,
        quiet,
      ),
      mesh.line(
        "order to say payment refused it",
        enforceAt,
        (e) =>
          e.service === "order" &&
          e.line.event === "upstream.failed" &&
          e.line.upstream === "payment" &&
          e.line.reason === "forbidden",
        10_000,
        quiet,
      ),
    ]);
    if (callee)
      mesh.note(
        `[payment] authz.denied rule=${String(callee.line.rule)}: ${String(callee.line.msg)}; fix: ${String(callee.line.hint)}`,
      );
    if (caller) mesh.note(`[order] upstream.failed forbidden: ${String(caller.line.msg)}`);
    const cells = await probe(mesh);
    const orderToPayment = cells.find((c) => c.caller === "order" && c.callee === "payment");
    mesh.note(
      `mesh:probe: order → payment ${orderToPayment?.observed ?? "not probed"} (policy: ${orderToPayment?.expected ?? "?"}); ${cells.filter((c) => c.ok).length}/${cells.length} calls match the policy in force`,
    );
    await pause(dwell);
    const deniedAfter = await metric("mesh_inbound_http_authz_deny_total");
    mesh.note(
      `payment's mesh_inbound_http_authz_deny_total{caller="order",rule="${rule}"}: ${deniedBefore} → ${deniedAfter}`,
    );
    const enforceEnd = Date.now();

    // 5. Revert, by hot reload -----------------------------------------------------------------------
    await mesh.begin(
      "revert",
      "5. Heal: the edit reverted (the previous policy saved back); the services hot-reload it",
      false,
    );
    const revertReloaded = await putPolicy(mesh, DRILL_POLICY);
    mesh.note(`policy.reloaded by ${revertReloaded.join(", ") || "nobody"}`);
    const healed = mesh.traffic!.mark();
    await pause(dwell);
    mesh.traffic!.unmark(healed);
    mesh.note(`${healed.failed} of ${healed.sent} order(s) sent after the revert failed`);
    await mesh.begin("after", "6. After: the mesh as before", true);
    await pause(dwell);

    const phases = await mesh.report();
    const phase = (n: string) => phases.find((p) => p.name === n)!;
    const between = (from: number, to: number, event: string) =>
      mesh.book.entries.filter((e) => e.at >= from && e.at <= to && e.line.event === event);
    // What enforcement denied that the previous policy allowed: the break the edit caused.
    const newlyDenied = new Set(
      between(enforceAt, enforceEnd, "authz.denied")
        .map((e) => ({
          caller: String(e.line.peer),
          service: e.service,
          method: String(e.line.method),
          path: String(e.line.path),
        }))
        .filter((c) => decide(original, c.service, c.caller, c.method, c.path).allow)
        .map(callKey),
    );
    const auditDenied = between(auditAt, auditEnd, "authz.denied");
    const audited = new Set(
      between(auditAt, auditEnd, "authz.would_deny").map((e) =>
        callKey({
          caller: String(e.line.peer),
          service: e.service,
          method: String(e.line.method),
          path: String(e.line.path),
        }),
      ),
    );
    const same = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((x) => b.has(x));
    const list = (s: Set<string>) => [...s].sort().join("; ") || "none";

    check(
      "what-if predicted the break before it was enforced",
      wi.code === 1 && predicted.has("order → payment POST /charge"),
      `exit ${wi.code}; would be denied: ${list(predicted)}`,
    );
    check(
      "audit mode logged the break with the rule and the fix",
      !!wouldDeny && wouldDeny.line.rule === rule && /add "order"/.test(String(wouldDeny.line.hint)),
      wouldDeny
        ? `authz.would_deny rule=${String(wouldDeny.line.rule)}; hint: ${String(wouldDeny.line.hint)}`
        : "no authz.would_deny from payment",
    );
    check(
      "no call was denied during the audit",
      auditDenied.length === 0 && phase("audit").failed === 0 && phase("audit").sent > 0,
      `${auditDenied.length} authz.denied line(s); ${phase("audit").failed} of ${phase("audit").sent} orders failed`,
    );
    check(
      "the audit counter moved",
      (wouldDenyCount ?? 0) > 0,
      `mesh_inbound_http_authz_would_deny_total{caller="order",rule="${rule}"} ${wouldDenyCount}`,
    );
    check(
      "enforced, payment's 403 names the rule and the fix",
      !!callee && callee.line.rule === rule && /add "order"/.test(String(callee.line.hint)),
      callee ? `authz.denied rule=${String(callee.line.rule)}; hint: ${String(callee.line.hint)}` : "no authz.denied",
    );
    check(
      "order said payment refused it, naming the rule",
      !!caller && caller.line.rule === rule,
      caller ? `upstream.failed forbidden rule=${String(caller.line.rule)}` : "no upstream.failed forbidden",
    );
    check(
      "orders failed while it was enforced",
      phase("enforce").failed > 0 && Object.keys(phase("enforce").reasons).some((r) => /payment:forbidden/.test(r)),
      `${phase("enforce").failed} of ${phase("enforce").sent}: ${JSON.stringify(phase("enforce").reasons)}`,
    );
    check(
      "the deny counter moved and the probe saw the 403",
      deniedBefore !== undefined &&
        deniedAfter !== undefined &&
        deniedAfter > deniedBefore &&
        orderToPayment?.observed === `403 ${rule}`,
      `mesh_inbound_http_authz_deny_total ${deniedBefore} → ${deniedAfter}; probe order → payment: ${orderToPayment?.observed}`,
    );
    check(
      "what-if's prediction is what enforcement denied",
      predicted.size > 0 && same(predicted, newlyDenied),
      `predicted: ${list(predicted)}; denied (allowed before): ${list(newlyDenied)}`,
    );
    check(
      "audit mode saw every call enforcement denied",
      [...newlyDenied].filter((k) => !k.endsWith(" GET /healthz")).every((k) => audited.has(k)),
      `would_deny: ${list(audited)}`,
    );
    check(
      "the revert healed the mesh",
      revertReloaded.length === SERVICES.length && healed.failed === 0 && healed.sent > 0,
      `reloaded by ${revertReloaded.join(", ")}; ${healed.failed} of ${healed.sent} failed after it`,
    );

    const ev: Evidence[] = [wouldDeny, callee, caller].filter((e): e is Entry => !!e).map(evidence);
    return mesh.finish({
      drill: "policy-mistake",
      phases,
      evidence: ev,
      heal: 'the operator saves the previous policy back (or adds "order" to payment.accepts, the fix authz.denied names); every service hot-reloads it (policy.reloaded) and the next call goes through. Before enforcing an edit: npm run policy -- what-if <candidate> (exit 1 when a call that succeeds would be denied), and a while with mode = "audit" watching authz.would_deny',
      checks,
      facts: {
        candidate,
        whatIf: {
          exitCode: wi.code,
          command: `npm run policy -- ${whatIfArgs.join(" ")}`,
          changes: prediction?.changes,
        },
        predicted: [...predicted],
        deniedWhenEnforced: [...newlyDenied],
        wouldDenyInAudit: [...audited],
        probe: cells,
        metrics: { wouldDeny: wouldDenyCount, denied: [deniedBefore, deniedAfter] },
      },
    });
  } finally {
    await mesh.close();
  }
}
