// Every log line the drill's services write, parsed, with a way to wait for
// the line that proves something happened (a reload, a refusal).
import type { MeshLine } from "../mesh-format.ts";

export interface Entry {
  service: string;
  /** When the service logged it (ms since the epoch, from pino's time). */
  at: number;
  line: MeshLine;
}

interface Waiter {
  match: (e: Entry) => boolean;
  resolve: (e: Entry) => void;
}

export class LogBook {
  readonly entries: Entry[] = [];
  private waiters = new Set<Waiter>();

  add(service: string, line: MeshLine): void {
    const at = line.time ? Date.parse(line.time) : Date.now();
    const entry = { service, at, line };
    this.entries.push(entry);
    for (const w of this.waiters) {
      if (w.match(entry)) {
        this.waiters.delete(w);
        w.resolve(entry);
      }
    }
  }

  /** Lines since `since` (ms) that match. */
  since(since: number, match: (e: Entry) => boolean = () => true): Entry[] {
    return this.entries.filter((e) => e.at >= since && match(e));
  }

  /** The first line (already logged since `since`, or still to come) that matches; rejects after timeoutMs. */
  waitFor(what: string, since: number, match: (e: Entry) => boolean, timeoutMs = 10_000): Promise<Entry> {
    const seen = this.entries.find((e) => e.at >= since && match(e));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        match,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  /** Counts of "service:key" over one event's lines in a time window, e.g. handshake failure reasons. */
  tally(since: number, until: number, event: string, key: (line: MeshLine) => unknown): Record<string, number> {
    const out: Record<string, number> = {};
    for (const e of this.entries) {
      if (e.at < since || e.at > until || e.line.event !== event) continue;
      const k = `${e.service}:${String(key(e.line) ?? "?")}`;
      out[k] = (out[k] ?? 0) + 1;
    }
    return out;
  }
}
