// The flag parsers the service and the sidecar entry points share (commander argParsers): one
// line each on bad input, exit 2 through commander.
import { InvalidArgumentError } from "commander";
import { isLoopback } from "../lib/admin-http.ts";

/** A TCP port, 0 (any free one) to 65535, written in decimal digits. */
export function port(v: string): number {
  const n = Number(v);
  if (!/^\d{1,5}$/.test(v) || n > 65535) throw new InvalidArgumentError("must be a port number 0-65535");
  return n;
}

export function count(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError("must be a whole number (0: no limit)");
  return n;
}

/** The admin listener has no authentication: loopback only. */
export function loopback(v: string): string {
  if (!isLoopback(v))
    throw new InvalidArgumentError(
      "must be a loopback address such as 127.0.0.1 or ::1: the admin listener has no authentication",
    );
  return v;
}
