import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { formatOffset } from "../../lib/clock.ts";
import { checkClock } from "../check/checks.ts";
import { probeMesh } from "../probe.ts";
import { loadPolicy } from "../../services/mesh/policy.ts";
import type { ServiceFacts } from "../check/facts.ts";
import { runWith, type Setup } from "./drill.ts";
import type { FailureDrillOptions } from "./impostor.ts";
import type { Entry } from "./logbook.ts";
import { DrillMesh, evidence, type Evidence, type StoryReport } from "./mesh.ts";

const MINUTE = 60_000;
const DAY = 86_400_000;
/**
 * The skews shown, in order. Ahead, a certificate issued now looks expired to payment at once;
 * behind by more than the CA's 5-minute backdating of notBefore, it looks not yet valid.
 */
export const SKEWS = [
  { phase: "minutes", ms: 10 * MINUTE },
  { phase: "behind", ms: -10 * MINUTE },
  { phase: "days", ms: 2 * DAY },
] as const;

/** "ahead" or "behind", and the reason a peer's certificate is refused for by such a clock. */
const direction = (ms: number) =>
  ms >= 0
    ? { word: "ahead", rel: "ahead of", reason: "expired" }
    : { word: "behind", rel: "behind", reason: "not_yet_valid" };
const BY_CLOCK = /MESH_CLOCK_OFFSET_MS sets/;
/** Orders through a restarted payment that end the waits of a skew whose story did not happen. */
const QUIET_ORDERS = 20;

export interface ClockSkewOptions extends FailureDrillOptions {
  /** The skews shown (default SKEWS). A test gives one too small to matter to see the checks fail. */
  skews?: ReadonlyArray<{ phase: string; ms: number }>;
}

export function runClockSkewDrill(o: ClockSkewOptions = {}): Promise<StoryReport> {
  return runWith(o, clockSkew);
}

/** mesh:check's "clock agrees with the CA host's" for one service, by its own pure function, from its admin port's Date. */
async function clockCheck(mesh: DrillMesh, service: string): Promise<{ severity: string; detail: string }> {
  const listening = mesh.book.since(0, (e) => e.service === service && e.line.event === "admin.listening").at(-1);
  const port = listening ? Number(listening.line.port) : null;
  let admin: ServiceFacts["admin"] = { port };
  if (port !== null) {
    const sentAt = Date.now();
    try {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(3_000) });
      await res.text();
      admin = { port, metrics: res.status, date: res.headers.get("date") ?? undefined, sentAt, receivedAt: Date.now() };
    } catch (e) {
      admin = { port, error: (e as Error).message };
    }
  }
  const facts: ServiceFacts = {
    name: service,
    port: mesh.ports[service]!,
    mtls: { identity: "edge.internal", served: undefined, verifyError: null },
    admin,
    ledger: undefined,
  };
  const r = checkClock(facts);
  return { severity: r.severity, detail: r.detail };
}

interface SkewSeen {
  phase: string;
  offsetMs: number;
  refusal?: Entry;
  caller?: Entry;
  ca?: Entry;
  own?: Entry;
  check: { severity: string; detail: string };
  refusals: [number | undefined, number | undefined];
  /** mesh:probe's order → payment cell. */
  probe: string;
}

/** mesh:probe's order → payment cell, with order's own certificate, as `npm run mesh:probe` shows it. */
async function probeOrderToPayment(mesh: DrillMesh): Promise<string> {
  const s = mesh.stateOf("order");
  try {
    const { cells } = await probeMesh({
      pki: mesh.setup.pki,
      policy: loadPolicy(mesh.policy),
      // Callers are the services of `ports` holding an identity: order only (edge and the strangers are the probe's own).
      ports: { payment: mesh.ports.payment!, order: mesh.ports.order! },
      logs: mesh.logs,
      identities: { order: { cert: s.cert, key: s.key } },
    });
    return cells.find((c) => c.caller === "order" && c.callee === "payment")?.observed ?? "no cell";
  } catch (e) {
    return `probe failed: ${(e as Error).message}`;
  }
}

async function clockSkew(o: ClockSkewOptions, setup: Setup): Promise<StoryReport> {
  const mesh = await DrillMesh.open(setup, {
    // Shorter than the 10 minutes a skew moves the clock (a caller's certificate must look expired
    // to payment), long enough that no renewal is due while payment's clock is wrong (a clock
    // ahead makes its own certificate look expired to it, and it stops renewing: identity.expired).
    lifetimeMs: o.lifetimeMs ?? 180_000,
    pollMs: o.pollMs ?? 1_000,
    // Each skew needs the CA's line about an unauthenticated peer (payment, once the CA's own
    // certificate looks invalid by its clock): the CA's 3 such lines per window, in a 2 s window.
    refusalLogMs: 2_000,
  });
  const { dwell, pause } = setup;
  const checks: StoryReport["checks"] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  try {
    await mesh.up();
    await mesh.begin("baseline", "1. Baseline: every clock agrees, orders flowing", true);
    const check0 = await clockCheck(mesh, "payment");
    mesh.note(`mesh:check, payment's clock: ${check0.severity}: ${check0.detail}`);
    await pause(dwell);

    const seen: SkewSeen[] = [];
    const skews = o.skews ?? SKEWS;
    for (const [i, skew] of skews.entries()) {
      const by = formatOffset(skew.ms);
      // The orders in flight finish first: a baseline order failing at payment's restart is the restart's, not the clock's.
      mesh.traffic!.paused = true;
      await mesh.traffic!.settle();
      await mesh.begin(
        skew.phase,
        `${i + 2}. payment's clock ${by} ${direction(skew.ms).word} (restarted with MESH_CLOCK_OFFSET_MS=${skew.ms}; the machine's clock untouched)`,
        false,
      );
      mesh.traffic!.paused = false;
      const at = Date.now();
      await mesh.stopService("payment");
      await mesh.startService("payment", { token: false, env: { MESH_CLOCK_OFFSET_MS: String(skew.ms) } });
      // Refusals from here on are the skewed process's (before: the restart's).
      const upAt = Date.now();
      const { word, reason } = direction(skew.ms);
      const REFUSED = { outcome: "refused", reason };
      const before = await mesh.metric("payment", "mesh_tls_handshakes_total", REFUSED);
      mesh.note(`payment restarted on :${mesh.ports.payment} from its own state folder, its clock ${by} ${word}`);
      // Waited for together: on a run where the story does not happen, the drill says so in one wait,
      // not four, and that wait ends once orders get through payment: a skewed payment fails them all.
      const quiet = { after: upAt, orders: QUIET_ORDERS };
      const quietNow = () => mesh.traffic!.successes.filter((t) => t > upAt).length >= QUIET_ORDERS;
      const [refusal, caller, ca, , probe] = await Promise.all([
        mesh.line(
          "payment to refuse a caller's certificate by its clock",
          at,
          (e) =>
            e.service === "payment" &&
            e.line.event === "tls.handshake_failed" &&
            e.line.reason === reason &&
            BY_CLOCK.test(String(e.line.msg)),
          15_000,
          quiet,
        ),
        // payment tells a caller it refused for dates, with its Date (services/mesh/callee-clock.ts):
        // order, whose certificate is valid by its own clock, names payment's.
        mesh.line(
          "order's call to payment to fail, naming payment's clock",
          upAt,
          (e) =>
            e.service === "order" &&
            e.line.event === "upstream.failed" &&
            e.line.upstream === "payment" &&
            e.line.reason === "rejected_in_handshake" &&
            e.line.clock === "callee",
          15_000,
          quiet,
        ),
        mesh.line(
          "the CA to name payment's clock",
          at,
          // By name once payment's request authenticated; by address when payment refused the CA's own
          // certificate first (by its clock it looks expired) and asked unauthenticated.
          (e) =>
            e.service === "ca" &&
            e.line.event === "est.clock_skew" &&
            (e.line.name === "payment.internal" || e.line.name === null) &&
            Math.abs(Number(e.line.clock_offset_ms) - skew.ms) < 5_000,
          // Unauthenticated, the CA logs 3 lines per window (2 s in this drill) and summarises the rest.
          10_000,
          quiet,
        ),
        setup
          .until(
            () => (mesh.traffic!.counts.get(skew.phase)?.failed ?? 0) > 0 || quietNow(),
            "an order to fail",
            15_000,
          )
          .catch(() => {}),
        probeOrderToPayment(mesh),
      ]);
      if (refusal) mesh.note(`[payment] tls.handshake_failed ${reason}: ${String(refusal.line.msg).slice(0, 400)}`);
      if (caller)
        mesh.note(`[order] upstream.failed ${String(caller.line.reason)}: ${String(caller.line.msg).slice(0, 400)}`);
      mesh.note(`mesh:probe, order → payment: ${probe}`);
      if (ca) mesh.note(`[ca] est.clock_skew: ${String(ca.line.msg)}`);
      const own = mesh.book.since(
        at,
        (e) =>
          e.service === "payment" &&
          (e.line.event === "trust.poll_failed" || e.line.event === "identity.renew_failed") &&
          /clock skew/.test(String(e.line.reason ?? e.line.msg)),
      )[0];
      if (own)
        mesh.note(`[payment] ${String(own.line.event)}: ${String(own.line.reason ?? own.line.msg).slice(0, 300)}`);
      const c = await clockCheck(mesh, "payment");
      mesh.note(`mesh:check, payment's clock: ${c.severity}: ${c.detail}`);
      await pause(dwell);
      const after = await mesh.metric("payment", "mesh_tls_handshakes_total", REFUSED);
      mesh.note(`payment's mesh_tls_handshakes_total{outcome="refused",reason="${reason}"}: ${before} → ${after}`);
      seen.push({
        phase: skew.phase,
        offsetMs: skew.ms,
        refusal,
        caller,
        ca,
        own,
        probe,
        check: c,
        refusals: [before, after],
      });
    }

    // The heal: the clock fixed --------------------------------------------------------------
    await mesh.begin(
      "heal",
      `${skews.length + 2}. Heal: payment's clock fixed (restarted without the skew), from its own state folder`,
      false,
    );
    await mesh.stopService("payment");
    // Its certificate was never the problem; but if the skewed phases outlasted it (a busy machine:
    // its renewals were refused meanwhile), it needs a new token like any expired identity.
    const expired =
      Date.parse(new X509Certificate(readFileSync(mesh.stateOf("payment").cert)).validTo) < Date.now() + 2_000;
    if (expired) mesh.note("payment's certificate expired while its clock was wrong: it enrols again with a new token");
    await mesh.startService("payment", { token: expired });
    const healed = mesh.traffic!.mark();
    await pause(dwell);
    mesh.traffic!.unmark(healed);
    const checkHealed = await clockCheck(mesh, "payment");
    mesh.note(
      `${healed.failed} of ${healed.sent} order(s) sent after the fix failed; mesh:check, payment's clock: ${checkHealed.severity}: ${checkHealed.detail}`,
    );
    await mesh.begin("after", `${skews.length + 3}. After: the mesh as before`, true);
    await pause(dwell);

    const phases = await mesh.report();
    const phase = (n: string) => phases.find((p) => p.name === n)!;
    check("mesh:check's clock check was ok before", check0.severity === "ok", `${check0.severity}: ${check0.detail}`);
    for (const s of seen) {
      const by = formatOffset(s.offsetMs);
      check(
        `${s.phase}: payment refused its callers by its clock and said so`,
        !!s.refusal && String(s.refusal.line.msg).includes(`${by} ${direction(s.offsetMs).word}`),
        s.refusal
          ? `tls.handshake_failed ${String(s.refusal.line.reason)}: …${String(s.refusal.line.msg).slice(-200)}`
          : "no such line",
      );
      check(
        `${s.phase}: the CA named payment's clock and by how much`,
        !!s.ca && String(s.ca.line.msg).includes(`${direction(s.offsetMs).rel} this CA's`),
        s.ca
          ? `${String(s.ca.line.msg)} (clock_offset_ms ${String(s.ca.line.clock_offset_ms)})`
          : `no est.clock_skew of about ${s.offsetMs} ms`,
      );
      if (s.offsetMs >= DAY)
        // Days ahead, even the CA's own certificate looks expired to payment: its agent says why.
        check(
          `${s.phase}: payment's agent named the clock`,
          !!s.own,
          s.own
            ? `${String(s.own.line.event)}: ${String(s.own.line.reason ?? s.own.line.msg).slice(0, 160)}`
            : "no line",
        );
      check(
        `${s.phase}: mesh:check's clock check failed`,
        s.check.severity === "error" && s.check.detail.includes(`${direction(s.offsetMs).rel} this host`),
        `${s.check.severity}: ${s.check.detail}`,
      );
      const calleeClock = s.caller ? Number(s.caller.line.clock_offset_ms) : Number.NaN;
      check(
        `${s.phase}: order named payment's clock as the likely cause, and by how much`,
        !!s.caller &&
          String(s.caller.line.msg).includes("the callee's clock is the likely cause") &&
          Math.abs(calleeClock - s.offsetMs) < 5_000,
        s.caller
          ? `upstream.failed clock=${String(s.caller.line.clock)} clock_offset_ms=${String(s.caller.line.clock_offset_ms)}: …${String(s.caller.line.msg).slice(-220)}`
          : "no upstream.failed naming payment's clock",
      );
      check(
        `${s.phase}: mesh:probe's order → payment names the callee's clock`,
        s.probe === `refused: ${direction(s.offsetMs).reason} (the callee's clock)`,
        s.probe,
      );
      check(
        `${s.phase}: order's calls to the running payment were refused`,
        !!s.caller && phase(s.phase).failed > 0,
        `${s.caller ? `order: upstream.failed ${String(s.caller.line.reason)}` : "no upstream.failed"}; ${phase(s.phase).failed} of ${phase(s.phase).sent} orders failed: ${JSON.stringify(phase(s.phase).reasons)}`,
      );
      check(
        `${s.phase}: payment's refusal counter moved`,
        s.refusals[0] !== undefined && s.refusals[1] !== undefined && s.refusals[1] > s.refusals[0],
        `mesh_tls_handshakes_total{outcome="refused",reason="${direction(s.offsetMs).reason}"}: ${s.refusals[0]} → ${s.refusals[1]}`,
      );
    }
    check(
      "fixing the clock healed the mesh",
      healed.failed === 0 && healed.sent > 0 && checkHealed.severity === "ok",
      `${healed.failed} of ${healed.sent} failed after it; mesh:check ${checkHealed.severity}`,
    );

    const ev: Evidence[] = seen
      .flatMap((s) => [s.refusal, s.own, s.ca, s.caller])
      .filter((e): e is Entry => !!e)
      .map(evidence);
    return mesh.finish({
      drill: "clock-skew",
      phases,
      evidence: ev,
      heal: "fix the clock of the host whose lines say so (timedatectl set-ntp true; here: payment restarted without MESH_CLOCK_OFFSET_MS): nothing else changes, its state folder and certificate are as they were and it carries on. A clock ahead makes fresh certificates look expired to that host only; a clock behind by more than the CA's 5-minute backdating makes them look not yet valid",
      checks,
      facts: {
        skews: seen.map((s) => ({
          phase: s.phase,
          offsetMs: s.offsetMs,
          meshCheck: s.check,
          refusals: s.refusals,
        })),
        meshCheck: { before: check0, healed: checkHealed },
      },
    });
  } finally {
    await mesh.close();
  }
}
