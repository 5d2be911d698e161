// Every log line the drill's services write, parsed, with a way to wait for
// the line that proves something happened (a reload, a refusal).
import { asEvent, type EventName, type LoggedEvent } from "../../lib/events.ts";
import type { MeshLine } from "../mesh-format.ts";

/** One catalogued event a service logged (lib/events.ts): narrow on line.event, or ask for one event by name. */
export interface Entry<E extends EventName = EventName> {
  service: string;
  /** When the service logged it (ms since the epoch, from pino's time). */
  at: number;
  line: LoggedEvent<E> & Loose<E>;
}

/**
 * An entry of any event (found by a predicate) also reads as a bag of fields, unknown-typed,
 * for code that has not narrowed it; one asked for by name ({ event }) is exactly that event.
 */
type Loose<E extends EventName> = [EventName] extends [E] ? Record<string, unknown> : unknown;

interface Waiter {
  match: (e: Entry) => boolean;
  resolve: (e: Entry) => void;
}

/** A match on one event, or on any entry. */
type Match<E extends EventName> = { event: E; where?: (e: Entry<E>) => boolean };
const matcher = <E extends EventName>(m: Match<E> | ((e: Entry) => boolean)) =>
  typeof m === "function"
    ? m
    : (e: Entry): e is Entry<E> => e.line.event === m.event && (m.where?.(e as Entry<E>) ?? true);

export class LogBook {
  readonly entries: Entry[] = [];
  private waiters = new Set<Waiter>();

  /** Keeps a catalogued event; anything else (a stack trace, a line the catalogue does not know) is not evidence. */
  add(service: string, raw: MeshLine): void {
    const line = asEvent(raw);
    if (!line) return;
    const at = Date.parse(line.time) || Date.now();
    const entry: Entry = { service, at, line };
    this.entries.push(entry);
    for (const w of this.waiters) {
      if (w.match(entry)) {
        this.waiters.delete(w);
        w.resolve(entry);
      }
    }
  }

  /** Lines since `since` (ms) that match: one event (`{ event, where }`), or any predicate. */
  since<E extends EventName>(since: number, match: Match<E> | ((e: Entry) => e is Entry<E>)): Entry<E>[];
  since(since: number, match?: (e: Entry) => boolean): Entry[];
  since<E extends EventName>(since: number, match: Match<E> | ((e: Entry) => boolean) = () => true): Entry[] {
    const m = matcher(match);
    return this.entries.filter((e) => e.at >= since && m(e));
  }

  /** The first line (already logged since `since`, or still to come) that matches; rejects after timeoutMs. */
  waitFor<E extends EventName>(
    what: string,
    since: number,
    match: Match<E>,
    timeoutMs?: number,
    cancel?: AbortSignal,
  ): Promise<Entry<E>>;
  waitFor(
    what: string,
    since: number,
    match: (e: Entry) => boolean,
    timeoutMs?: number,
    cancel?: AbortSignal,
  ): Promise<Entry>;
  waitFor<E extends EventName>(
    what: string,
    since: number,
    match: Match<E> | ((e: Entry) => boolean),
    timeoutMs = 10_000,
    /** Ends the wait (rejected) before its timeout: its timer then holds nothing open. */
    cancel?: AbortSignal,
  ): Promise<Entry> {
    const m = matcher(match);
    const seen = this.entries.find((e) => e.at >= since && m(e));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        match: m,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      cancel?.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          this.waiters.delete(w);
          reject(new Error(`no longer waiting for ${what}`));
        },
        { once: true },
      );
      this.waiters.add(w);
    });
  }

  /** Counts of "service:key" over one event's lines in a time window, e.g. handshake failure reasons. */
  tally<E extends EventName>(
    since: number,
    until: number,
    event: E,
    key: (line: LoggedEvent<E>) => unknown,
  ): Record<string, number> {
    const out: Record<string, number> = {};
    for (const e of this.since(since, { event })) {
      if (e.at > until) continue;
      const k = `${e.service}:${String(key(e.line) ?? "?")}`;
      out[k] = (out[k] ?? 0) + 1;
    }
    return out;
  }
}
