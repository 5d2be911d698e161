// A peer certificate's dates judged by this process's clock. OpenSSL judges them by the
// machine's clock, which is this process's clock unless MESH_CLOCK_OFFSET_MS (lib/clock.ts, a
// test and teaching knob) moves it: then the runtime judges them again by the moved clock, so a
// skewed service refuses its peers as a host with that clock would, and says the clock is why.
import type { PeerCertificate } from "node:tls";
import { formatOffset, nowMs, processClockOffsetMs } from "../../lib/clock.ts";

export interface ClockRefusal {
  reason: "expired" | "not_yet_valid";
  /** The OpenSSL code a host with this clock would have reported. */
  code: "CERT_HAS_EXPIRED" | "CERT_NOT_YET_VALID";
  sentence: string;
}

/**
 * `cert`: an X509Certificate or Node's PeerCertificate (the same date strings), so a handshake
 * parses nothing more for this when the clock is the machine's.
 * Null when the process's clock is the machine's (OpenSSL has judged already) or the dates hold
 * by it; else why `who` (e.g. "the client's certificate (CN=order.internal, serial …)") is refused.
 */
export function datesByProcessClock(
  cert: { readonly validFrom: string; readonly validTo: string } | PeerCertificate | undefined,
  /** Named only when refusing: a handshake with the machine's clock builds no sentence. */
  who: string | (() => string),
): ClockRefusal | null {
  const offset = processClockOffsetMs();
  if (offset === 0 || !cert) return null;
  const now = nowMs();
  const name = typeof who === "function" ? who() : who;
  const clock = `by this host's clock (${new Date(now).toISOString()}), which MESH_CLOCK_OFFSET_MS sets ${formatOffset(offset)} ${offset > 0 ? "ahead of" : "behind"} the machine's`;
  const hint =
    "a certificate every other service accepts looks wrong only here because this host's clock is wrong: fix the clock (NTP), not the certificate";
  const to = Date.parse("validTo" in cert ? cert.validTo : cert.valid_to);
  if (now > to)
    return {
      reason: "expired",
      code: "CERT_HAS_EXPIRED",
      sentence: `${name} expired on ${new Date(to).toISOString()} ${clock}: ${hint}`,
    };
  const from = Date.parse("validFrom" in cert ? cert.validFrom : cert.valid_from);
  if (now < from)
    return {
      reason: "not_yet_valid",
      code: "CERT_NOT_YET_VALID",
      sentence: `${name} is valid only from ${new Date(from).toISOString()} ${clock}: ${hint}`,
    };
  return null;
}
