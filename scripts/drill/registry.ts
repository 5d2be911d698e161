// Every drill `npm run drill` knows, one module each: its name, one line on what it shows, and
// how to run it. `rotate` keeps its own command line (scripts/drill-rotate.ts, its many flags).
import type { FailureDrillOptions } from "./impostor.ts";
import type { StoryReport } from "./mesh.ts";

export interface FailureDrill {
  readonly name: string;
  readonly summary: string;
  /** Defaults that keep the drill well under a minute. */
  readonly lifetimeS: number;
  run(o: FailureDrillOptions): Promise<StoryReport>;
}

export const ROTATE = {
  name: "rotate",
  summary:
    "rotate the whole mesh to a new root CA with traffic flowing: the careless way breaks it, the safe way loses nothing (npm run drill:rotate)",
};

export const DRILLS: readonly FailureDrill[] = [
  {
    name: "expiry",
    summary:
      "the CA goes away: renewals fail loudly, certificates expire, calls fail as expired on both sides; the CA returns, the operator re-enrols the expired",
    // Short, yet no identity may renew before the CA stops (at 60 % of its life at the earliest:
    // 9 s; the CA stops ~2 s after payment enrolled on an idle machine, ~5 s on a busy one), or
    // the expiries lose the order the story needs; a check says so if one did.
    lifetimeS: 15,
    run: async (o) => (await import("./expiry.ts")).runExpiryDrill(o),
  },
  {
    name: "impostor",
    summary:
      "a look-alike CA (same name, another key) issues payment.internal: callers and callees refuse it and name it a look-alike; the real payment returns",
    lifetimeS: 60,
    run: async (o) => (await import("./impostor.ts")).runImpostorDrill(o),
  },
  {
    name: "stolen",
    summary:
      "a copy of order's key is used from elsewhere: the operator revokes it, every service refuses it within seconds and cuts its connection; the real order re-enrols",
    lifetimeS: 60,
    run: async (o) => (await import("./stolen.ts")).runStolenDrill(o),
  },
  {
    name: "policy-mistake",
    summary:
      "an edit drops order from payment's rule: what-if predicts the break, audit mode logs it and lets calls through, enforced the 403s name the rule and the fix; reverted by hot reload",
    lifetimeS: 60,
    run: async (o) => (await import("./policy-mistake.ts")).runPolicyMistakeDrill(o),
  },
  {
    name: "clock-skew",
    summary:
      "payment's clock runs minutes ahead, minutes behind, days ahead: it refuses its callers by its clock and says so; its callers, the CA and mesh:check name its clock; fixed, it carries on",
    // Less than the 10-minute skew (a fresh certificate must look expired to payment), more than
    // the drill (payment's own, which its wrong clock stops it renewing, must outlive the skews).
    lifetimeS: 180,
    run: async (o) => (await import("./clock-skew.ts")).runClockSkewDrill(o),
  },
];

export function listDrills(): string {
  const all = [ROTATE, ...DRILLS];
  const w = Math.max(...all.map((d) => d.name.length)) + 2;
  return all.map((d) => `${d.name.padEnd(w)}${d.summary}`).join("\n");
}
