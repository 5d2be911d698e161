// The process's idea of the time, and how two processes' clocks are compared.
//
// MESH_CLOCK_OFFSET_MS is a test and teaching knob, read here and nowhere else: it moves
// this process's clock by that many milliseconds (negative: behind), so a test or a drill can
// show what a skewed CA or service looks like without touching the machine's clock. The CA
// applies it to every date it judges and signs, a service to the dates it checks and sends;
// OpenSSL inside TLS still uses the real clock, so the runtimes check a peer's certificate dates
// against this clock themselves where it matters (the EST client does).
//
// Clocks are compared through HTTP's Date header (RFC 9110 6.6.1): every EST request from the
// identity agent carries one, and every answer from the CA does.

export const CLOCK_OFFSET_ENV = "MESH_CLOCK_OFFSET_MS";
/** Beyond this, two clocks are said to be skewed: HTTP dates have whole seconds, and a loaded request can wait a few. */
export const SKEW_THRESHOLD_MS = 30_000;
/** Ten years: anything larger is a typo, not a drill. */
const MAX_OFFSET_MS = 10 * 365 * 86_400_000;

export class ClockOffsetError extends Error {
  constructor(value: string) {
    super(
      `${CLOCK_OFFSET_ENV}=${JSON.stringify(value.slice(0, 40))} is not a whole number of milliseconds within ±10 years (e.g. -600000 for 10 minutes behind)`,
    );
    this.name = "ClockOffsetError";
  }
}

/** The offset MESH_CLOCK_OFFSET_MS asks for (0 when unset or empty); throws ClockOffsetError when it is not a number. */
export function clockOffsetMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[CLOCK_OFFSET_ENV];
  if (raw === undefined || raw.trim() === "") return 0;
  if (!/^[+-]?\d{1,12}$/.test(raw.trim())) throw new ClockOffsetError(raw);
  const ms = Number(raw.trim());
  if (Math.abs(ms) > MAX_OFFSET_MS) throw new ClockOffsetError(raw);
  return ms;
}

let cached: number | undefined;

/** This process's offset, read once; call it at start so a bad value fails there, not mid-request. */
export function processClockOffsetMs(): number {
  cached ??= clockOffsetMs();
  return cached;
}

/** Now, by this process's clock (the system clock moved by MESH_CLOCK_OFFSET_MS), in ms since the epoch. */
export function nowMs(): number {
  return Date.now() + processClockOffsetMs();
}

/** A clock for code that takes one: `base` (default the system clock) moved by this process's offset. */
export function offsetClock(base: () => Date = () => new Date()): () => Date {
  const offset = processClockOffsetMs();
  return offset === 0 ? base : () => new Date(base().getTime() + offset);
}

/** An HTTP date (IMF-fixdate) of a time. */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** The time in an HTTP Date header a peer sent, or null when absent or not an IMF-fixdate. Hostile input: bounded. */
export function parseHttpDate(header: unknown): number | null {
  if (typeof header !== "string" || header.length > 40) return null;
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(header)) return null;
  const ms = Date.parse(header);
  return Number.isFinite(ms) ? ms : null;
}

/** Whether an offset is large enough to be called clock skew. */
export function isSkewed(offsetMs: number): boolean {
  return Math.abs(offsetMs) >= SKEW_THRESHOLD_MS;
}

/** "2d 0h", "10m 3s", "45s": the size of an offset, for people. */
export function formatOffset(ms: number): string {
  // Rounded at the precision shown: an HTTP date has whole seconds, so 2 days can measure 1d 23h 59m 59.4s.
  const abs = Math.abs(ms);
  if (abs >= 86_400_000 - 1_800_000) {
    const h = Math.round(abs / 3_600_000);
    return `${Math.floor(h / 24)}d ${h % 24}h`;
  }
  if (abs >= 3_600_000 - 30_000) {
    const m = Math.round(abs / 60_000);
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }
  const s = Math.round(abs / 1000);
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${s}s`;
}

/** "this host's clock is 10m 0s ahead of the CA's": offsetMs is theirs minus ours' reference (positive: `who` is ahead). */
export function describeSkew(who: string, offsetMs: number, reference: string): string {
  return `${who} clock is ${formatOffset(offsetMs)} ${offsetMs >= 0 ? "ahead of" : "behind"} ${reference}`;
}

// Time for code that waits: now and timers behind one small interface, so a test can drive a
// renewal due in 40 minutes, or a watcher's poll, without waiting for it (SPIRE's clock.Mock,
// jose's currentDate). Production code takes `systemClock`; tests take a TestClock and advance it.

/** A timer handle of a Clock: opaque to its users. */
export type ClockTimer = { readonly __clockTimer: true } | NodeJS.Timeout;

export interface Clock {
  /** Now, in ms since the epoch. */
  now(): number;
  /** Calls fn once, ms from now; the timer does not keep the process alive. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(t: ClockTimer | undefined): void;
}

/** The machine's clock (not moved by MESH_CLOCK_OFFSET_MS: see nowMs for that), with Node's timers, unref'd. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    t.unref();
    return t;
  },
  clearTimeout(t) {
    if (t !== undefined) clearTimeout(t as NodeJS.Timeout);
  },
};

/**
 * The machine's timers, with now by this process's clock (MESH_CLOCK_OFFSET_MS): what a service
 * judges its own certificate's dates by (when to renew, when it has expired), as it judges its
 * peers' (services/mesh/clock-dates.ts). A delay is a delay on either clock.
 */
export const processClock: Clock = {
  now: () => nowMs(),
  setTimeout: (fn, ms) => systemClock.setTimeout(fn, ms),
  clearTimeout: (t) => systemClock.clearTimeout(t),
};

/** "" with the machine's clock; else how this process's clock is set, for a sentence about a date judged by it. */
export function processClockNote(): string {
  const offset = processClockOffsetMs();
  return offset === 0
    ? ""
    : ` (by this host's clock, which ${CLOCK_OFFSET_ENV} sets ${formatOffset(offset)} ${offset > 0 ? "ahead of" : "behind"} the machine's)`;
}

/** Calls fn every ms on a clock, each call timed from the end of the previous one; returns the stop. */
export function every(clock: Clock, ms: number, fn: () => void): () => void {
  let t: ClockTimer | undefined;
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    fn();
    if (!stopped) t = clock.setTimeout(tick, ms);
  };
  t = clock.setTimeout(tick, ms);
  return () => {
    stopped = true;
    clock.clearTimeout(t);
  };
}

interface Pending {
  readonly __clockTimer: true;
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock that moves only when told: `advance(ms)` runs every timer due by then, in order of
 * their due time (timers a timer sets are run too if they fall within the advance).
 */
export class TestClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: Pending[] = [];

  constructor(start: number | Date = Date.now()) {
    this.t = typeof start === "number" ? start : start.getTime();
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const p: Pending = { __clockTimer: true, at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(p);
    return p;
  }

  clearTimeout(t: ClockTimer | undefined): void {
    this.timers = this.timers.filter((p) => p !== t);
  }

  /** How many timers wait. */
  get pending(): number {
    return this.timers.length;
  }

  /** When the next timer is due, or undefined. */
  nextAt(): number | undefined {
    return this.timers.reduce<number | undefined>((m, p) => (m === undefined || p.at < m ? p.at : m), undefined);
  }

  /** Moves the clock ms forward, running each timer at its due time. */
  advance(ms: number): void {
    const end = this.t + Math.max(0, ms);
    for (;;) {
      const due = this.timers.filter((p) => p.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((p) => p !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }

  /** Sets the clock to a time (forward only), running the timers due by then. */
  set(to: number | Date): void {
    this.advance((typeof to === "number" ? to : to.getTime()) - this.t);
  }
}
