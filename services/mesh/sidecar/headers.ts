// The headers a proxy must not pass on (RFC 9110 7.6.1, RFC 9113 8.2.2), and the one header
// only the sidecar may set.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { XFCC } from "./xfcc.ts";

const HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
  "host",
  XFCC,
]);

/**
 * A copy without pseudo-headers, hop-by-hop headers (those named in Connection too), Host and
 * XFCC: whatever copy of XFCC a caller sent never passes. `te: trailers` stays (gRPC needs it).
 */
export function forwardable(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const named =
    typeof h.connection === "string"
      ? h.connection
          .toLowerCase()
          .split(",")
          .map((s) => s.trim())
      : [];
  for (const k in h) {
    if (k.charCodeAt(0) === 58 /* ':' */ || HOP.has(k) || (named.length > 0 && named.includes(k))) continue;
    if (k === "te") {
      if (String(h.te).toLowerCase().includes("trailers")) out.te = "trailers";
      continue;
    }
    out[k] = h[k];
  }
  return out;
}
