// A callee that refuses its caller's certificate for its dates, said so that the caller can name
// the callee's clock. A Node server judges a client's certificate only after the handshake and
// then closes the connection: no TLS alert tells the caller why (other TLS stacks send
// certificate_expired or bad_certificate). So the mesh's server answers such a refusal on
// HTTP/1.1 as nginx answers a failed client certificate (400), with its own clock in `Date` and
// the reason in `Mesh-Refused`, then closes. The caller compares that Date with its own clock and
// its certificate's dates with both: a certificate valid by the caller's clock, refused by the
// callee's, is the callee's clock (or the caller's) being wrong, and by how much.
import type { TLSSocket } from "node:tls";
import { describeSkew, formatOffset, httpDate, isSkewed, nowMs } from "../../lib/clock.ts";

export const REFUSED_HEADER = "mesh-refused";
/** The refusals a caller is told of: those a wrong clock on either side explains. */
export type DateRefusal = "expired" | "not_yet_valid";
const TOLD = new Set<string>(["expired", "not_yet_valid"]);
/** How long a refused connection may stay open for its answer to reach the caller. */
const LINGER_MS = 1_000;
const ANSWERED = Symbol("mesh.refusalAnswered");

/**
 * Tells a refused caller why, when the refusal is for the certificate's dates and the
 * connection speaks HTTP/1.1 (an h2 or gRPC caller only sees the connection closed): true when
 * answered, and the socket then closes by itself. Otherwise false: destroy it as before.
 */
export function answerDateRefusal(sock: TLSSocket, reason: string): boolean {
  if (!TOLD.has(reason) || (sock.alpnProtocol && sock.alpnProtocol !== "http/1.1") || !sock.writable) return false;
  const body = `${JSON.stringify({ error: `the client's certificate was refused (${reason}) by this service's clock (its Date)`, refused: reason })}\n`;
  (sock as TLSSocket & { [ANSWERED]?: true })[ANSWERED] = true;
  // Written before the request is read, as a server answers a request it will not take (RFC 9112 9.6).
  sock.end(
    `HTTP/1.1 400 Bad Request\r\nDate: ${httpDate(nowMs())}\r\nMesh-Refused: ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  // Closed by the caller on reading it; a caller that never reads is cut.
  setTimeout(() => sock.destroy(), LINGER_MS).unref();
  return true;
}

/** Whether this socket was refused with an answer (its request, parsed after it, is not served). */
export function refusalAnswered(sock: object): boolean {
  return (sock as { [ANSWERED]?: true })[ANSWERED] === true;
}

/** The refusal a callee's answer carries, or null for any other answer. Hostile input: only the known words. */
export function dateRefusalOf(headers: Record<string, string | string[] | undefined>): DateRefusal | null {
  const v = headers[REFUSED_HEADER];
  return v === "expired" || v === "not_yet_valid" ? v : null;
}

export interface OwnDates {
  notBefore: string;
  notAfter: string;
}

/**
 * Why `upstream` refused our certificate for its dates, in a caller's words. `calleeDate` is the
 * callee's Date (null when it sent none: a TLS alert), `now` our clock when the answer came.
 * The clock named is the callee's when our certificate is valid by ours, ours when it is not.
 */
export function calleeClockSentence(
  upstream: string,
  refusal: DateRefusal,
  own: OwnDates,
  calleeDate: number | null,
  now: number = nowMs(),
  /** A TLS alert bad_certificate: OpenSSL's for a certificate not yet valid, but for other faults too. */
  maybe = false,
): { byClock: boolean; clockOffsetMs: number | null; sentence: string } {
  const notBefore = Date.parse(own.notBefore);
  const notAfter = Date.parse(own.notAfter);
  const word = refusal === "expired" ? "expired" : "not yet valid";
  const validHere = now >= notBefore && now <= notAfter;
  const offset = calleeDate === null ? null : calleeDate - now;
  const refused = maybe
    ? `${upstream} refused our certificate (TLS alert bad_certificate: OpenSSL's alert for a certificate not yet valid, among other faults)`
    : `${upstream} refused our certificate as ${word}`;
  if (!validHere) {
    const ours = now > notAfter ? `it expired at ${own.notAfter}` : `it is valid only from ${own.notBefore}`;
    return {
      byClock: false,
      clockOffsetMs: offset,
      sentence: `${refused}: by this host's clock too (${ours}); ${now > notAfter ? "renew it (an expired identity enrols again with a new token)" : "check the clocks of the CA host and of this host (NTP)"}`,
    };
  }
  const bound =
    refusal === "expired"
      ? `at least ${formatOffset(notAfter - now)} ahead of ours (our certificate is valid until ${own.notAfter})`
      : `at least ${formatOffset(now - notBefore)} behind ours (our certificate is valid from ${own.notBefore})`;
  const measured =
    offset !== null && isSkewed(offset)
      ? `${describeSkew(`${upstream}'s`, offset, "ours")} (its Date header says ${httpDate(calleeDate!)})`
      : offset !== null
        ? `its Date header says ${httpDate(calleeDate!)}, close to ours: check this host's clock as well`
        : `it would have to be ${bound}`;
  if (maybe)
    return {
      byClock: true,
      clockOffsetMs: offset,
      sentence: `${refused}, and by this host's clock it is valid (from ${own.notBefore}): if it is its dates, the callee's clock is the likely cause: ${measured}; check the clock of ${upstream}'s host (NTP), and what it logged`,
    };
  return {
    byClock: true,
    clockOffsetMs: offset,
    sentence: `${refused}, but by this host's clock it is valid (until ${own.notAfter}): the callee's clock is the likely cause: ${measured}; fix the clock that is wrong (NTP on ${upstream}'s host), not the certificate`,
  };
}
