// Durations as people type them on the command line and in a query string
// ("90s", "10m", "1h", "2d"), parsed strictly and bounded.
import { badInput } from "./errors.ts";

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * "10m" → 600000. Refuses anything but <whole number><s|m|h|d> within [min, max]; with
 * `milliseconds`, also <whole number>ms (a poll interval a test sets below a second).
 */
export function parseDuration(
  value: unknown,
  opts: { flag: string; min?: number; max?: number; milliseconds?: boolean },
): number {
  const text = String(value);
  const m = (opts.milliseconds ? /^(\d{1,9})(ms|s|m|h|d)$/ : /^(\d{1,9})(s|m|h|d)$/).exec(text);
  if (!m)
    throw badInput(
      `${opts.flag} ${JSON.stringify(text.slice(0, 40))} is not a duration: use a whole number and a unit, e.g. ${opts.milliseconds ? "500ms, " : ""}90s, 10m, 1h, 2d`,
    );
  const ms = m[2] === "ms" ? Number(m[1]) : Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  const min = opts.min ?? 1_000;
  if (ms < min) throw badInput(`${opts.flag} ${text} is shorter than the ${formatDuration(min)} allowed`);
  if (opts.max !== undefined && ms > opts.max)
    throw badInput(`${opts.flag} ${text} is longer than the ${formatDuration(opts.max)} allowed`);
  return ms;
}

/** 600000 → "10m", 5400000 → "90m", 86400000 → "24h": the largest unit that divides it exactly (days from 2d). */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${ms}ms`;
  if (ms >= 2 * UNIT_MS.d && ms % UNIT_MS.d === 0) return `${ms / UNIT_MS.d}d`;
  for (const [unit, size] of [
    ["h", UNIT_MS.h],
    ["m", UNIT_MS.m],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}
