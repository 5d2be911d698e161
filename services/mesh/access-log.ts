// The access log: a `request` line for each answered request, up to a budget of lines per
// second; past it, the second's further requests are counted into one `request.summary`
// line per caller, route and status. Every request is in the log, as a line or in a count.
import { requestLogger, type MeshLogger, type RequestRecord } from "./log.ts";

/** Individual `request` lines per second and service, before summaries take over. */
export const DEFAULT_REQUEST_LINES_PER_SECOND = 100;

interface Bucket {
  readonly peer: string;
  readonly method: string;
  readonly route: string;
  readonly status: number;
  readonly rule: string;
  count: number;
  msSum: number;
  msMax: number;
}

export class AccessLog {
  private readonly line: (r: RequestRecord) => void;
  private budgetLeft: number;
  /** By route pattern, then a short list: no key string is built per request. */
  private readonly buckets = new Map<string, Bucket[]>();
  private readonly timer: NodeJS.Timeout | undefined;

  /** linesPerSecond 0: a line for every request, never a summary. */
  constructor(
    private readonly log: MeshLogger,
    private readonly linesPerSecond = DEFAULT_REQUEST_LINES_PER_SECOND,
  ) {
    this.line = requestLogger(log);
    this.budgetLeft = linesPerSecond > 0 ? linesPerSecond : Infinity;
    if (linesPerSecond > 0) this.timer = setInterval(() => this.endSecond(), 1_000).unref();
  }

  /** `route` is the route's pattern ("/stock/:sku"), so that summaries stay few. */
  record(r: RequestRecord, route: string): void {
    if (this.budgetLeft > 0) {
      this.budgetLeft--;
      this.line(r);
      return;
    }
    let list = this.buckets.get(route);
    if (!list) this.buckets.set(route, (list = []));
    for (const b of list) {
      if (b.peer === r.peer && b.status === r.status && b.method === r.method && b.rule === r.rule) {
        b.count++;
        b.msSum += r.ms;
        if (r.ms > b.msMax) b.msMax = r.ms;
        return;
      }
    }
    list.push({
      peer: r.peer,
      method: r.method,
      route,
      status: r.status,
      rule: r.rule,
      count: 1,
      msSum: r.ms,
      msMax: r.ms,
    });
  }

  /** Writes the summaries of the second now ending and restores the budget. */
  endSecond(): void {
    this.budgetLeft = this.linesPerSecond;
    for (const b of [...this.buckets.values()].flat()) {
      this.log.info(
        {
          event: "request.summary",
          peer: b.peer,
          method: b.method,
          route: b.route,
          status: b.status,
          rule: b.rule,
          count: b.count,
          msAvg: Math.round((b.msSum / b.count) * 100) / 100,
          msMax: b.msMax,
        },
        `${b.count} more ${b.method} ${b.route} from ${b.peer} answered ${b.status} this second, beyond ${this.linesPerSecond} request lines a second`,
      );
    }
    this.buckets.clear();
  }

  /** Writes what is still counted; call before the service stops. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.endSecond();
  }
}
