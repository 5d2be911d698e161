// The drills' phase bookkeeping: each phase begun, noted and ended, its report built from the
// traffic's counts and the services' logs once the drill is over.
import type { LogBook } from "./logbook.ts";
import { longestGap, type PhaseCounts, type Traffic } from "./traffic.ts";

export type PhaseName = "baseline" | "careless" | "recovery" | "trust-both" | "reissue" | "drop-old" | "proof";

export interface PhaseReport extends PhaseCounts {
  name: PhaseName;
  title: string;
  /** A safe phase must lose no request. */
  safe: boolean;
  startedAt: string;
  ms: number;
  /** The longest stretch within the phase without a successful order (see traffic.ts longestGap). */
  longestGapMs: number;
  /**
   * tls.handshake_failed lines the services logged during the phase, "payment:unknown_ca" → count:
   * log lines from any client (the drill's own old-certificate and probe calls too), not orders.
   */
  handshakeFailures: Record<string, number>;
  /** upstream.failed lines order logged, "payment:server_untrusted" → count: the same failures as `reasons`, seen by order. */
  upstreamFailures: Record<string, number>;
  notes: string[];
}

export interface Phase {
  name: PhaseName;
  title: string;
  safe: boolean;
  at: number;
  notes: string[];
}

export class PhaseLog {
  private current: Phase | undefined;
  private readonly ended: Array<Phase & { until: number }> = [];

  /** `record` writes the phase's start where the timeline reads it (drill.log). */
  constructor(
    private readonly say: (line: string) => void,
    private readonly record: (phase: Phase) => void,
    private readonly traffic: Traffic,
    private readonly book: LogBook,
  ) {}

  /** The phase in progress. */
  get name(): PhaseName {
    return this.current!.name;
  }

  begin(name: PhaseName, title: string, safe: boolean): void {
    this.current = { name, title, safe, at: Date.now(), notes: [] };
    this.traffic.phase = name;
    this.say(`\n▶ ${title}`);
    this.record(this.current);
  }

  note(s: string): void {
    this.current!.notes.push(s);
    this.say(`  ${s}`);
  }

  end(): void {
    this.ended.push({ ...this.current!, until: Date.now() });
  }

  /**
   * Counts are read when the drill is over, so a request still in flight at a
   * phase's end is counted, success or failure, in the phase that sent it.
   */
  reports(): PhaseReport[] {
    return this.ended.map((c) => ({
      name: c.name,
      title: c.title,
      safe: c.safe,
      startedAt: new Date(c.at).toISOString(),
      ms: c.until - c.at,
      ...(this.traffic.counts.get(c.name) ?? { sent: 0, succeeded: 0, failed: 0, reasons: {} }),
      longestGapMs: longestGap(this.traffic.successes, c.at, c.until),
      handshakeFailures: this.book.tally(c.at, c.until, "tls.handshake_failed", (l) => l.reason),
      upstreamFailures: this.book.tally(
        c.at,
        c.until,
        "upstream.failed",
        (l) => `${String(l.upstream)}:${String(l.reason)}`,
      ),
      notes: c.notes,
    }));
  }
}
