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

/** What forwardableList() found besides the headers to pass on. */
export interface RawScan {
  /** The authority the caller asked for (`host`, or HTTP/2's `:authority`). */
  authority: string | undefined;
  /** HTTP/1.1 framing says a body follows (a non-zero content-length, or transfer-encoding). */
  body: boolean;
}

/** A header value Node would refuse to send (CR, LF, NUL and other controls but tab). */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * forwardable() over Node's raw list (`rawHeaders`: name, value, name, value …, each repeat
 * kept), into a flat list of lower-case names that http.request and writeHead take as is. It
 * builds no header object on either side: on the sidecar's HTTP/1.1 path that was several µs of
 * each request. Node does not check the values of a list it is given, so this does: a value with
 * a control character is dropped (the parsers that produced them refuse those already).
 */
export function forwardableList(raw: readonly string[], scan?: RawScan): string[] {
  let named: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === "connection") {
      for (const s of raw[i + 1]!.toLowerCase().split(",")) (named ??= []).push(s.trim());
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const k = name.toLowerCase();
    if (scan) {
      if (k === "host" || k === ":authority") scan.authority ??= value;
      else if (k === "transfer-encoding" || (k === "content-length" && value !== "0")) scan.body = true;
    }
    if (k.charCodeAt(0) === 58 /* ':' */ || HOP.has(k) || named?.includes(k) || BAD_VALUE.test(value)) continue;
    if (k === "te") {
      if (value.toLowerCase().includes("trailers")) out.push("te", "trailers");
      continue;
    }
    out.push(k, value);
  }
  return out;
}
