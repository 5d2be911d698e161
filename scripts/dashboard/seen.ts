// The calls seen between each caller and callee, one entry per method and path, so each can be
// judged against the policy for its own route. Bounded: paths come from peers.
export interface Seen {
  method: string;
  path: string;
  status: number | null;
  text: string;
  at: string;
  atMs: number;
  count: number;
}

/** Kinds of call kept per caller and callee (the newest), and pairs kept. */
const PER_PAIR = 4;
const PAIRS_MAX = 400;

export class SeenCalls {
  private readonly pairs = new Map<string, Seen[]>();

  /** A call answered `status` (null: it failed before an answer, `path` then says how). */
  add(
    caller: string,
    service: string,
    method: string,
    path: string,
    status: number | null,
    atMs: number,
    at: string,
    n = 1,
  ): void {
    if (!caller || !service) return;
    const key = `${caller}>${service}`;
    let list = this.pairs.get(key);
    if (!list) {
      if (this.pairs.size >= PAIRS_MAX) return;
      this.pairs.set(key, (list = []));
    }
    const m = method.slice(0, 10);
    const p = path.slice(0, 200);
    const text = status === null ? p : `${status} ${m} ${p}`;
    const same = list.find((x) => x.method === m && x.path === p);
    if (same) {
      // The latest answer for this method and path is the one judged.
      Object.assign(same, { status, text, at, atMs: Math.max(same.atMs, atMs), count: same.count + n });
      return;
    }
    list.push({ method: m, path: p, status, text, at, atMs, count: n });
    if (list.length > PER_PAIR) {
      list.sort((a, b) => b.atMs - a.atMs);
      list.length = PER_PAIR;
    }
  }

  /** From caller to service, newest first. */
  between(caller: string, service: string): Seen[] {
    return [...(this.pairs.get(`${caller}>${service}`) ?? [])].sort((a, b) => b.atMs - a.atMs);
  }

  /** Every caller seen calling. */
  callers(): string[] {
    return [...new Set([...this.pairs.keys()].map((k) => k.slice(0, k.indexOf(">"))))];
  }
}
