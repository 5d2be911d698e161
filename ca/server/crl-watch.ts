// GET /.well-known/est/crls: the CRLs, and a long poll on them. A service asks with the ETag it
// holds and ?wait=<seconds>; the call is held until the CRLs or the published bundle change
// (200 with the new CRLs) or the wait is over (304). A revocation then reaches every service as
// soon as this server notices it (its state poll, POLL_MS), instead of at each one's next poll.
// Not part of RFC 7030 (EST has no CRL operation); the ETag follows RFC 9110.
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError } from "./http.ts";
import { matchesEtag, type Published } from "./published.ts";

export const CRLS_WATCH_PATH = "/.well-known/est/crls";
/** The longest a call is held: below the 60 s idle timeout common in proxies. */
export const MAX_WAIT_S = 55;
/** The bundle's ETag beside the CRLs: a holder that sees it change fetches cacerts. */
export const BUNDLE_ETAG_HEADER = "Mesh-Bundle-ETag";

export interface HoldLimits {
  /** Calls held at once, in all. */
  total: number;
  /** Calls held at once from one address (a host runs several services). */
  perAddress: number;
}

/** A held call costs a socket and a timer: a few thousand are nothing, unbounded is a way in. */
export const DEFAULT_HOLD_LIMITS: HoldLimits = { total: 2048, perAddress: 256 };

interface Held {
  remote: string;
  timer: NodeJS.Timeout;
  answer: () => void;
}

/** The calls held open, each answered once: on a change, at its deadline, or never if its client left. */
export class HeldCalls {
  private readonly held = new Set<Held>();
  private readonly perAddress = new Map<string, number>();
  /** After close(), nothing more is held: a call that arrives while the server closes is answered at once. */
  private closed = false;

  constructor(private readonly limits: HoldLimits = DEFAULT_HOLD_LIMITS) {}

  get size(): number {
    return this.held.size;
  }

  /** Whether close() was called: the server is going, so an answer also closes its connection. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Holds `res` until changed() or `ms`; false (answer now) when a limit is reached. */
  hold(remote: string, ms: number, res: ServerResponse, answer: () => void): boolean {
    const mine = this.perAddress.get(remote) ?? 0;
    if (this.closed) return false;
    if (this.held.size >= this.limits.total || mine >= this.limits.perAddress) return false;
    const h: Held = { remote, answer, timer: setTimeout(() => this.release(h, true), ms) };
    this.held.add(h);
    this.perAddress.set(remote, mine + 1);
    res.once("close", () => this.release(h, false));
    return true;
  }

  /** Something watched changed: answer every held call now. */
  changed(): void {
    for (const h of [...this.held]) this.release(h, true);
  }

  /** The server is closing: its connections go with it. */
  close(): void {
    this.closed = true;
    for (const h of [...this.held]) this.release(h, false);
  }

  private release(h: Held, answer: boolean): void {
    if (!this.held.delete(h)) return;
    clearTimeout(h.timer);
    const n = (this.perAddress.get(h.remote) ?? 1) - 1;
    if (n > 0) this.perAddress.set(h.remote, n);
    else this.perAddress.delete(h.remote);
    if (answer) h.answer();
  }
}

/** ?wait=<whole seconds>, at most MAX_WAIT_S; absent: answer at once. */
function waitOf(url: URL): number {
  const w = url.searchParams.get("wait");
  if (w === null) return 0;
  if (!/^\d{1,4}$/.test(w))
    throw new HttpError(
      400,
      "bad_wait",
      `wait=${JSON.stringify(w.slice(0, 20))} is not a whole number of seconds (0-${MAX_WAIT_S})`,
    );
  return Math.min(Number(w), MAX_WAIT_S) * 1000;
}

/** GET /.well-known/est/crls[?wait=s]: every current CRL (PEM), with an ETag; held while If-None-Match still matches. */
export function crlsWatch(
  published: () => Published,
  calls: HeldCalls,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): void {
  const waitMs = waitOf(url);
  const held = req.headers["if-none-match"];
  const answer = (busy = false) => {
    if (res.writableEnded || res.destroyed) return;
    const p = published();
    const headers: Record<string, string> = {
      ETag: p.trustEtag,
      [BUNDLE_ETAG_HEADER]: p.etag,
      "Cache-Control": "no-cache",
    };
    // Over the limit: the caller is told to come back later rather than spin.
    if (busy) headers["Retry-After"] = String(Math.ceil(waitMs / 1000));
    // The server is closing: a kept-alive connection would hold its close() for the keep-alive timeout.
    if (calls.isClosed) headers.Connection = "close";
    if (matchesEtag(held, p.trustEtag)) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, {
      ...headers,
      "Content-Type": "application/x-pem-file",
      "Content-Length": String(Buffer.byteLength(p.crlsPem)),
    });
    res.end(p.crlsPem);
  };
  if (waitMs > 0 && matchesEtag(held, published().trustEtag)) {
    if (calls.hold(req.socket.remoteAddress ?? "unknown", waitMs, res, () => answer())) return;
    answer(true);
    return;
  }
  answer();
}
