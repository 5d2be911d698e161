// Says when a client's clock is off the CA's (from its Date header, lib/clock.ts): an
// `est.clock_skew` line at most once a minute per authenticated name, and through the summarised
// refusal log for a client that has not authenticated (it could send any Date, as often as it likes).
import type { EventLogger } from "../../lib/events.ts";
import { describeSkew, isSkewed } from "../../lib/clock.ts";
import type { Call } from "./est.ts";
import type { RefusalLog } from "./refusal-log.ts";

const LINE_EVERY_MS = 60_000;
const MAX_NAMES = 1_000;

export class SkewLog {
  /** When each authenticated name last had a line, and the skew it said; the least recently logged go first past MAX_NAMES. */
  private readonly logged = new Map<string, { at: number; skewMs: number }>();

  constructor(
    private readonly log: EventLogger,
    private readonly refusals: RefusalLog,
  ) {}

  note(call: Call, route: string): void {
    if (call.skewMs === null || !isSkewed(call.skewMs)) return;
    const who = call.authenticated ?? call.claimed ?? call.remote;
    const line = () =>
      this.log.warn(
        {
          event: "est.clock_skew",
          name: call.authenticated ?? call.claimed,
          authenticated: call.authenticated !== null,
          remote: call.remote,
          route,
          ...skewFields(call),
        },
        `clock skew: ${describeSkew(`${who}'s`, call.skewMs!, "this CA's")}`,
      );
    if (call.authenticated === null) {
      this.refusals.note("clock_skew", call.remote, call.claimed, line);
      return;
    }
    const now = Date.now();
    const last = this.logged.get(call.authenticated);
    // Within the minute, a clock that moved again (by more than a skew) is news: said at once.
    if (last !== undefined && now - last.at < LINE_EVERY_MS && !isSkewed(call.skewMs - last.skewMs)) return;
    this.logged.delete(call.authenticated);
    if (this.logged.size >= MAX_NAMES) this.logged.delete(this.logged.keys().next().value!);
    this.logged.set(call.authenticated, { at: now, skewMs: call.skewMs });
    line();
  }
}

/** The client's clock minus the CA's, for a log line, when the client sent a Date. */
export function skewFields(call: Call): { clock_offset_ms?: number } {
  return call.skewMs === null ? {} : { clock_offset_ms: call.skewMs };
}
