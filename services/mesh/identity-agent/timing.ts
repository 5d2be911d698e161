// When to renew and when to retry: pure functions of the certificate's dates, the clock and a
// random draw, so the choice is testable and documented once (docs/identity.md).

export interface Schedule {
  /** Fraction of the lifetime after which to renew (step-ca 2/3, SPIRE 1/2). */
  fraction: number;
  /** Relative jitter on that fraction: 0.1 spreads 2/3 over 0.60–0.73. */
  jitter: number;
}

export const DEFAULT_SCHEDULE: Schedule = { fraction: 2 / 3, jitter: 0.1 };

/**
 * `--renew-at` / MESH_RENEW_AT: the fraction of the life at which to renew, a decimal from 0.1 to
 * 0.9 (the jitter stays); undefined when the text is not one. SPIRE renews at 0.5; the tests renew
 * short certificates at 1/3 so that a renewal comes sooner without less time left to retry it.
 */
export function renewFraction(text: string): number | undefined {
  const n = Number(text);
  return /^0?\.\d{1,6}$/.test(text) && n >= 0.1 && n <= 0.9 ? n : undefined;
}

/** The default schedule, or renewal at `fraction` of the life (a renewFraction) with the default jitter. */
export function scheduleAt(fraction: number | undefined): Schedule {
  return fraction === undefined ? DEFAULT_SCHEDULE : { ...DEFAULT_SCHEDULE, fraction };
}

/**
 * The lifetime counts from when this service got the certificate, not from its notBefore:
 * the CA backdates notBefore (5 minutes, for clock skew), and with a lifetime of seconds a
 * backdated start would put the renewal time in the past and renew without end (step-ca's
 * TLSRenewer counts from "now" for the same reason).
 */
export function renewAt(
  cert: { notBefore: number; notAfter: number; receivedAt: number },
  s: Schedule,
  random: () => number,
  now: number,
): number {
  const start = Math.max(cert.notBefore, Math.min(cert.receivedAt, now));
  const period = Math.max(0, cert.notAfter - start);
  const f = s.fraction * (1 + s.jitter * (2 * random() - 1));
  return start + period * Math.min(0.95, Math.max(0.05, f));
}

/**
 * After the n-th failure in a row: exponential from base to cap with ±20% jitter, scaled to the
 * lifetime so a certificate of seconds retries in fractions of a second and one of a day in
 * seconds to minutes; never later than shortly before expiry.
 */
export function retryDelay(failures: number, period: number, untilExpiry: number, random: () => number): number {
  const base = Math.max(200, Math.min(5_000, period / 30));
  const cap = Math.max(base, Math.min(300_000, period / 10));
  const d = Math.min(cap, base * 2 ** Math.max(0, failures - 1)) * (0.8 + 0.4 * random());
  return Math.round(Math.max(100, Math.min(d, untilExpiry - 250)));
}

/** Bounds of the deadline of one renewal call (docs/identity.md, "Bounded in time"). */
export interface CallDeadline {
  minMs: number;
  maxMs: number;
}

export const DEFAULT_CALL_DEADLINE: CallDeadline = { minMs: 2_000, maxMs: 15_000 };

/**
 * Checks bounds given by a caller: whole milliseconds, 100 ms ≤ minMs ≤ maxMs ≤ 10 minutes.
 * Throws a RangeError that names what is wrong.
 */
export function checkCallDeadline(d: CallDeadline): CallDeadline {
  const ok = (n: number) => Number.isInteger(n) && n >= 100 && n <= 600_000;
  if (!ok(d.minMs) || !ok(d.maxMs) || d.minMs > d.maxMs)
    throw new RangeError(
      `a renewal call's deadline bounds must be whole milliseconds with 100 <= minMs <= maxMs <= 600000 (got minMs ${d.minMs}, maxMs ${d.maxMs})`,
    );
  return d;
}

/**
 * The deadline of one renewal call: a third of the time the certificate has left, within the
 * bounds, so a CA that accepts and never answers leaves room for retries before expiry.
 */
export function renewalCallMs(leftMs: number, d: CallDeadline = DEFAULT_CALL_DEADLINE): number {
  return Math.round(Math.min(d.maxMs, Math.max(d.minMs, leftMs / 3)));
}

/** Node timers hold at most 2^31-1 ms. */
export function timerDelay(ms: number): number {
  return Math.max(0, Math.min(ms, 2 ** 31 - 1));
}
