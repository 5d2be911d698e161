// The log of what unauthenticated peers cause: refusals, failed handshakes, skewed clocks. A peer
// controls how many of these there are, so each interval gets a few lines of their own and the
// rest are counted into one `est.refused_summary` line: by reason, the top source addresses and
// the top names claimed. Every map is bounded. (A 22,000-socket flood once wrote 27,000 lines.)
// Metrics still count every refusal; an authenticated refusal always keeps its own line.
import type { EventLogger } from "../../lib/events.ts";

export interface RefusalLogOptions {
  /** How long one interval lasts. */
  intervalMs?: number;
  /** Lines of their own per interval before the rest are only counted. */
  linesPerInterval?: number;
  /** Distinct addresses and names counted per interval; beyond, they are counted together. */
  maxKeys?: number;
  /** Addresses and names named in a summary. */
  top?: number;
}

export const DEFAULT_REFUSAL_LOG: Required<RefusalLogOptions> = {
  intervalMs: 10_000,
  linesPerInterval: 3,
  maxKeys: 1_000,
  top: 10,
};
/** Reasons are the server's own codes, plus OpenSSL's for handshakes: a handful, but bounded anyway. */
const MAX_REASONS = 64;
const OVERFLOW = "(others)";

export class RefusalLog {
  private readonly o: Required<RefusalLogOptions>;
  private left: number;
  private total = 0;
  private readonly reasons = new Map<string, number>();
  private readonly remotes = new Map<string, number>();
  private readonly names = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly log: EventLogger,
    opts: RefusalLogOptions = {},
  ) {
    this.o = { ...DEFAULT_REFUSAL_LOG, ...opts };
    this.left = this.o.linesPerInterval;
    this.timer = setInterval(() => this.flush(), this.o.intervalMs).unref();
  }

  /** One event an unauthenticated peer caused: `line` writes its own line while the interval's allowance lasts. */
  note(reason: string, remote: string, name: string | null, line: () => void): void {
    this.total++;
    count(this.reasons, reason, MAX_REASONS);
    count(this.remotes, remote, this.o.maxKeys);
    if (name) count(this.names, name, this.o.maxKeys);
    if (this.left > 0) {
      this.left--;
      line();
    }
  }

  /** Ends the interval: a summary when some events had no line of their own. */
  flush(): void {
    const logged = this.o.linesPerInterval - this.left;
    const suppressed = this.total - logged;
    if (suppressed > 0) {
      const byReason = Object.fromEntries([...this.reasons].sort((a, b) => b[1] - a[1]));
      const topRemotes = top(this.remotes, this.o.top).map(([remote, n]) => ({ remote, count: n }));
      const topNames = top(this.names, this.o.top).map(([name, n]) => ({ name, count: n }));
      const seconds = Math.round(this.o.intervalMs / 1000);
      this.log.warn(
        {
          event: "est.refused_summary",
          interval_s: seconds,
          total: this.total,
          logged,
          suppressed,
          by_reason: byReason,
          remotes: this.remotes.size,
          top_remotes: topRemotes,
          top_names: topNames,
        },
        `${this.total} unauthenticated requests refused or failed in ${seconds}s (${suppressed} without a line of their own): ${Object.entries(
          byReason,
        )
          .slice(0, 3)
          .map(([r, n]) => `${r} ${n}`)
          .join(", ")}; most from ${topRemotes
          .slice(0, 3)
          .map((r) => `${r.remote} (${r.count})`)
          .join(", ")}`,
      );
    }
    this.total = 0;
    this.reasons.clear();
    this.remotes.clear();
    this.names.clear();
    this.left = this.o.linesPerInterval;
  }

  /** Writes what is still counted; call when the server stops. */
  close(): void {
    clearInterval(this.timer);
    this.flush();
  }
}

/** Counts key in a map of at most `max` keys; a key that does not fit is counted as OVERFLOW. */
function count(m: Map<string, number>, key: string, max: number): void {
  const k = m.has(key) || m.size < max - 1 ? key : OVERFLOW;
  m.set(k, (m.get(k) ?? 0) + 1);
}

function top(m: Map<string, number>, n: number): Array<[string, number]> {
  return [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
}
