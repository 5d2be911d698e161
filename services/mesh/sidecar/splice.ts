// The sidecar's inbound HTTP/1.1 path without a second HTTP stack: each authenticated caller
// connection is paired, while it has requests under way, with one plain connection to the app.
// Only request heads are read (strictly: lib/http1-head.ts); each is judged by the policy (the
// mesh server's gate), rewritten without hop-by-hop headers and any XFCC the caller sent, with
// the sidecar's XFCC added, and written to the app; the body's bytes follow as they are. The
// app's answers come back as they are too: requests go to the app in order on one connection,
// so its answers return in that order, and only their heads and framing are read to know where
// each ends (for the log, the metrics, and for answers the sidecar gives itself: a 403 or a 503
// is written in its turn, after the answers before it). Node's http server and client, with a
// second parse and serialisation of every request and answer, cost the sidecar several times
// the in-process runtime's CPU per request (docs/bench.md).
import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { ChunkedBody, parseRequestHead, parseResponseHead, type RequestHead } from "../../../lib/http1-head.ts";
import type { SpliceGate } from "../forward.ts";
import { pathOf } from "../paths.ts";

const CRLFCRLF = Buffer.from("\r\n\r\n");
/** An app's answer head may be larger than a request's (cookies), not unbounded. */
const MAX_ANSWER_HEAD = 64 * 1024;
/** An answer head's Keep-Alive line (never its first: the status line). */
const KEEP_ALIVE_LINE = /\r\nkeep-alive:[^\r]*/gi;
/** Pipelined requests read ahead of their answers; past this, the caller's connection is paused. */
const MAX_OUTSTANDING = 32;

/**
 * What a splice asks of its side for each caller connection: the mesh server's gate on the
 * inbound side (with the caller's certificate), a plain one on the outbound side.
 */
export type ConnGate = Omit<SpliceGate, "peer">;

/** The side's failure answer, and how it counts the failure instead of the request's own done(). */
export interface FailedAnswer {
  status: number;
  body: string;
  done?: (status: number) => void;
}

export interface SpliceOptions<G extends ConnGate> {
  /** A new connection to the target (the app in plain TCP, or an upstream in mTLS). */
  dial(): Socket;
  /** The head to send for an admitted request, ending in its blank line. */
  headText(h: RequestHead, gate: G): string;
  /** The target could not be reached or broke before answering `method path`: log it; what to answer. */
  failed(method: string, path: string, gate: G, e: Error): FailedAnswer;
  /** A target connection idle this long is closed (see inbound.ts, APP_IDLE_MS). */
  idleMs: number;
}

/** A request read and not yet answered, in the order the caller sent it. */
interface Outstanding {
  /** The sidecar's own answer (403, 503, 400), or undefined while the app's is awaited. */
  local: string | undefined;
  /** The caller's connection ends after this answer. */
  readonly closeAfter: boolean;
  readonly isHead: boolean;
  readonly method: string;
  readonly path: string;
  /** Logs and counts it (allowed requests only: a denial was logged when judged). */
  done: ((status: number) => void) | undefined;
  status: number;
  /** Some of the app's answer was passed on. */
  started: boolean;
}

/** What the caller's next bytes are; Stopped: nothing more is read, the connection ends after the answers owed. */
const In = { Head: 0, Length: 1, Chunked: 2, Stopped: 3 } as const;
type In = (typeof In)[keyof typeof In];
/** What the app's next bytes are. */
const Out = { Head: 0, Length: 1, Chunked: 2, UntilClose: 3 } as const;
type Out = (typeof Out)[keyof typeof Out];

/** What a target connection tells the caller connection that owns it. */
interface AppOwner {
  fromApp(chunk: Buffer): void;
  appDrained(): void;
  appClosed(c: AppConn, err: Error | undefined): void;
}

/** One connection to the target; owned by a caller's connection while it has requests under way. */
class AppConn {
  owner: AppOwner | undefined;
  idleSince = 0;
  private err: Error | undefined;
  constructor(
    readonly sock: Socket,
    pool: { forget(c: AppConn): void },
    /** The splice's generation it was made in (see retire()). */
    readonly generation: number,
  ) {
    sock.setNoDelay(true);
    sock.on("data", (c: Buffer) => {
      // Bytes nobody asked for: the app is not speaking HTTP/1.1 to us.
      if (this.owner) this.owner.fromApp(c);
      else sock.destroy();
    });
    sock.on("drain", () => this.owner?.appDrained());
    sock.on("error", (e) => {
      this.err = e;
    });
    sock.on("close", () => {
      pool.forget(this);
      const o = this.owner;
      this.owner = undefined;
      o?.appClosed(this, this.err);
    });
  }
}

/** One splice (a mesh server's, or an outbound lane's): its caller connections, the idle target connections, one timer for all limits. */
export class Http1Splice<G extends ConnGate> {
  private readonly idle: AppConn[] = [];
  private readonly conns = new Set<SpliceConnection<G>>();
  private timer: NodeJS.Timeout | undefined;
  private generation = 0;

  constructor(readonly o: SpliceOptions<G>) {}

  readonly splice = (sock: Socket, gate: G): void => {
    const c = new SpliceConnection<G>(this, sock, gate);
    this.conns.add(c);
    if (!this.timer) {
      // As node:http checks its timeouts (connectionsCheckingInterval): late by a period at most, never early.
      // Idle target connections go at idleMs and at most 250 ms later: well before the target's own timeout.
      const period = Math.min(250, this.o.idleMs / 4, Math.max(50, gate.limits.headersTimeoutMs / 4));
      this.timer = setInterval(() => this.sweep(), period).unref();
    }
  };

  acquire(owner: SpliceConnection<G>): AppConn {
    let c = this.idle.pop();
    while (c?.sock.destroyed) c = this.idle.pop();
    c ??= new AppConn(this.o.dial(), this, this.generation);
    c.owner = owner;
    return c;
  }

  release(c: AppConn): void {
    c.owner = undefined;
    if (c.generation !== this.generation) c.sock.destroy();
    if (c.sock.destroyed) return;
    if (c.sock.isPaused()) c.sock.resume();
    c.idleSince = performance.now();
    this.idle.push(c);
  }

  forget(c: AppConn): void {
    const i = this.idle.indexOf(c);
    if (i !== -1) this.idle.splice(i, 1);
  }

  ended(c: SpliceConnection<G>): void {
    this.conns.delete(c);
  }

  /** New material (an outbound side's): idle connections made under the old one are closed, busy ones when released. */
  retire(): void {
    this.generation++;
    for (const c of this.idle.splice(0)) c.sock.destroy();
  }

  private sweep(): void {
    const now = performance.now();
    for (const c of this.conns) c.check(now);
    // Oldest first: released connections are pushed in time order.
    while (this.idle.length > 0 && now - this.idle[0]!.idleSince >= this.o.idleMs) this.idle.shift()!.sock.destroy();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const c of this.idle.splice(0)) c.sock.destroy();
    for (const c of this.conns) c.sock.destroy();
  }
}

/** One caller's HTTP/1.1 connection. */
class SpliceConnection<G extends ConnGate> implements AppOwner {
  private inState: In = In.Head;
  /** Bytes read and not yet used: a head not yet whole, or pipelined requests held back. */
  private inPending: Buffer | undefined;
  private bodyLeft = 0;
  private chunks: ChunkedBody | undefined;
  /** The body being read goes to the app (else it is read past: a denied request's). */
  private bodyToApp = false;
  /**
   * The app connection holds a request whose body is not all there yet: it must not go back to
   * the pool (the next request on it would be read as the rest of that body).
   */
  private appMidRequest = false;
  /** When the head under way began arriving (0: none), and when the request whose body streams began. */
  private headSince = 0;
  private requestSince = 0;
  /** When the connection last fell idle (0: not idle). */
  private idleSince: number;
  private readonly queue: Outstanding[] = [];
  private app: AppConn | undefined;
  private corked: Socket | undefined;
  private corkedClient = false;
  private outState: Out = Out.Head;
  private outPending: Buffer | undefined;
  private outLeft = 0;
  private outChunks: ChunkedBody | undefined;
  /** The answer under way ends the caller's connection; and the app's (it said so, or its body runs to the close). */
  private outClose = false;
  private appCloses = false;
  /** Why the caller's reads are paused: the app's socket is full, or too many requests are outstanding. */
  private waitApp = false;
  private held = false;

  constructor(
    private readonly s: Http1Splice<G>,
    readonly sock: Socket,
    private readonly gate: G,
  ) {
    this.idleSince = performance.now();
    sock.setNoDelay(true);
    sock.on("data", (c: Buffer) => this.fromClient(c));
    sock.on("drain", () => this.app?.sock.resume());
    sock.on("end", () => {
      this.stopReading();
      if (this.queue.length === 0) sock.destroy();
    });
    sock.on("error", () => {});
    sock.on("close", () => this.clientClosed());
  }

  // ---- caller → app ----

  private fromClient(chunk: Buffer): void {
    if (this.inState === In.Stopped) return;
    let buf = chunk;
    if (this.inPending) {
      buf = Buffer.concat([this.inPending, chunk]);
      this.inPending = undefined;
    }
    this.consume(buf);
    // The head and the body bytes read at once go to the app in one write.
    const corked = this.corked;
    if (corked) {
      this.corked = undefined;
      corked.uncork();
    }
  }

  private consume(buf: Buffer): void {
    let i = 0;
    while (i < buf.length) {
      const state = this.inState;
      if (state === In.Stopped) return;
      if (state === In.Head) {
        if (this.queue.length >= MAX_OUTSTANDING) {
          this.inPending = buf.subarray(i);
          this.held = true;
          this.sock.pause();
          return;
        }
        // Empty lines before a request line are ignored (RFC 9112 2.2).
        while (i + 1 < buf.length && buf[i] === 13 && buf[i + 1] === 10) i += 2;
        if (i >= buf.length) return;
        const max = this.gate.limits.maxHeaderSize;
        const end = buf.indexOf(CRLFCRLF, i);
        if (end === -1 || end - i > max) {
          if (buf.length - i > max) {
            this.refuse("HPE_HEADER_OVERFLOW", `a request head over ${max} bytes`);
            return;
          }
          this.inPending = buf.subarray(i);
          if (this.headSince === 0) this.headSince = performance.now();
          this.idleSince = 0;
          return;
        }
        const head = parseRequestHead(buf.toString("latin1", i, end));
        i = end + 4;
        this.headSince = 0;
        if (!head.ok) {
          this.refuse(head.code, head.detail);
          return;
        }
        this.onHead(head);
        continue;
      }
      const from = i;
      if (state === In.Length) {
        const n = Math.min(this.bodyLeft, buf.length - i);
        i += n;
        this.bodyLeft -= n;
        this.toApp(buf, from, i);
        if (this.bodyLeft === 0) this.bodyEnded();
      } else {
        const to = this.chunks!.feed(buf, i, buf.length);
        if (to < 0) {
          this.refuse("HPE_INVALID_CHUNK_SIZE", this.chunks!.error!);
          return;
        }
        i = to;
        this.toApp(buf, from, i);
        if (this.chunks!.done) this.bodyEnded();
      }
    }
  }

  private onHead(h: RequestHead): void {
    this.idleSince = 0;
    const path = pathOf(h.target);
    const verdict = this.gate.admit(h.method, path);
    const hasBody = h.chunked || h.contentLength > 0;
    const closeAfter = h.close || this.gate.draining();
    if (!verdict.allow) {
      // Its body is read past to the next request, unless the caller may hold it back for a
      // 100 Continue that will never come: then the connection ends after the 403.
      const stop = closeAfter || (hasBody && h.expectContinue);
      this.answer(verdict.status, verdict.body, stop, undefined, h.method, path);
      if (stop) this.stopReading();
      else this.expectBody(h, false);
      return;
    }
    this.app ??= this.s.acquire(this);
    const text = this.s.o.headText(h, this.gate);
    this.queue.push({
      local: undefined,
      closeAfter,
      isHead: h.method === "HEAD",
      method: h.method,
      path,
      done: verdict.done,
      status: 0,
      started: false,
    });
    this.writeApp(text);
    this.expectBody(h, true);
  }

  private expectBody(h: RequestHead, toApp: boolean): void {
    this.bodyToApp = toApp;
    this.appMidRequest = toApp && (h.chunked || h.contentLength > 0);
    if (h.chunked) {
      this.chunks = new ChunkedBody();
      this.inState = In.Chunked;
    } else if (h.contentLength > 0) {
      this.bodyLeft = h.contentLength;
      this.inState = In.Length;
    } else {
      this.bodyEnded();
      return;
    }
    this.requestSince = performance.now();
  }

  private bodyEnded(): void {
    this.appMidRequest = false;
    this.inState = In.Head;
    this.chunks = undefined;
    this.requestSince = 0;
    // After a request that closes the connection nothing more is read.
    const last = this.queue.at(-1);
    if (last?.closeAfter) this.stopReading();
    else this.maybeIdle();
  }

  private toApp(buf: Buffer, from: number, to: number): void {
    if (from < to && this.bodyToApp && this.app) this.writeApp(buf.subarray(from, to));
  }

  private writeApp(data: string | Buffer): void {
    const sock = this.app!.sock;
    if (!this.corked) {
      sock.cork();
      this.corked = sock;
    }
    const ok = typeof data === "string" ? sock.write(data, "latin1") : sock.write(data);
    if (!ok && !this.waitApp) {
      this.waitApp = true;
      this.sock.pause();
    }
  }

  appDrained(): void {
    this.waitApp = false;
    if (!this.held) this.sock.resume();
  }

  private stopReading(): void {
    this.inState = In.Stopped;
    this.inPending = undefined;
    this.headSince = 0;
    this.requestSince = 0;
  }

  /**
   * A request that is not valid HTTP/1.1 (or too large): answered 400 (431) in its turn and the
   * connection closed; but once part of its body went to the app, the app holds half a request,
   * and both connections are cut.
   */
  private refuse(code: string, detail: string): void {
    const status = this.gate.clientError(code, detail);
    const midBody = this.inState !== In.Head && this.bodyToApp;
    this.stopReading();
    if (midBody) {
      this.app?.sock.destroy();
      this.sock.destroy();
      return;
    }
    this.answerRaw(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`, true);
  }

  /** A request read too slowly (node:http's headersTimeout and requestTimeout). */
  check(now: number): void {
    const l = this.gate.limits;
    if (this.headSince > 0 && now - this.headSince > l.headersTimeoutMs) this.timedOut();
    else if (this.requestSince > 0 && now - this.requestSince > l.requestTimeoutMs) this.timedOut();
    else if (this.idleSince > 0 && now - this.idleSince > l.keepAliveTimeoutMs) {
      this.idleSince = 0;
      this.stopReading();
      this.sock.destroySoon();
    }
  }

  private timedOut(): void {
    const midBody = this.inState !== In.Head;
    const status = this.gate.clientError("ERR_HTTP_REQUEST_TIMEOUT", "the request did not arrive in time");
    this.stopReading();
    if (midBody || this.queue.length > 0) {
      // The app holds part of this request, or owes earlier answers: nothing can be said in turn.
      if (midBody && this.bodyToApp) this.app?.sock.destroy();
      this.sock.destroy();
      return;
    }
    this.answerRaw(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`, true);
  }

  // ---- the sidecar's own answers, in turn ----

  private answer(
    status: number,
    body: string,
    close: boolean,
    done: ((status: number) => void) | undefined,
    method: string,
    path: string,
  ): void {
    const text = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${close ? "connection: close\r\n" : ""}\r\n${body}`;
    this.queue.push({ local: text, closeAfter: close, isHead: false, method, path, done, status, started: false });
    if (this.queue.length === 1) this.flushLocal();
  }

  private answerRaw(text: string, close: boolean): void {
    this.queue.push({
      local: text,
      closeAfter: close,
      isHead: false,
      method: "",
      path: "",
      done: undefined,
      status: 0,
      started: false,
    });
    if (this.queue.length === 1) this.flushLocal();
  }

  /** Writes the sidecar's answers now at the head of the queue; then the connection may be idle. */
  private flushLocal(): void {
    while (this.queue.length > 0 && this.queue[0]!.local !== undefined) {
      const p = this.queue.shift()!;
      if (!this.sock.destroyed) this.sock.write(p.local!);
      p.done?.(p.status);
      if (p.closeAfter) {
        this.endClient();
        return;
      }
    }
    if (this.held && this.queue.length < MAX_OUTSTANDING) {
      this.held = false;
      // Not from within the app's data handler that got us here: the held requests are read next tick.
      process.nextTick(() => {
        const b = this.inPending;
        this.inPending = undefined;
        if (!this.waitApp) this.sock.resume();
        if (b) this.fromClient(b);
      });
    }
    this.maybeIdle();
  }

  /** Nothing outstanding: the app connection goes back to the pool, and the caller's may end or idle. */
  private maybeIdle(): void {
    if (this.queue.length > 0) return;
    const reading = this.inState === In.Head;
    if (this.app && !this.appMidRequest && (reading || this.inState === In.Stopped)) {
      const a = this.app;
      this.app = undefined;
      this.s.release(a);
    }
    if (this.inState === In.Stopped) this.endClient();
    else if (reading && !this.inPending) this.idleSince = performance.now();
  }

  private endClient(): void {
    this.stopReading();
    if (!this.sock.destroyed) this.sock.destroySoon();
  }

  // ---- app → caller ----

  fromApp(chunk: Buffer): void {
    this.readApp(chunk);
    if (this.corkedClient) {
      this.corkedClient = false;
      this.sock.uncork();
    }
  }

  private readApp(chunk: Buffer): void {
    let buf = chunk;
    if (this.outPending) {
      buf = Buffer.concat([this.outPending, chunk]);
      this.outPending = undefined;
    }
    let i = 0;
    /** buf[flushed, i) is read and not yet passed on: passed in one write where possible. */
    let flushed = 0;
    while (i < buf.length) {
      const p = this.queue[0];
      if (!p || p.local !== undefined) {
        this.appBroke("the app answered a request it was not sent");
        return;
      }
      const state = this.outState;
      if (state === Out.Head) {
        const end = buf.indexOf(CRLFCRLF, i);
        if (end === -1) {
          if (buf.length - i > MAX_ANSWER_HEAD) {
            this.appBroke("an answer head over 64 KiB");
            return;
          }
          this.outPending = buf.subarray(i);
          break;
        }
        const r = parseResponseHead(buf.toString("latin1", i, end));
        if (!r.ok) {
          this.appBroke(`${r.code}: ${r.detail}`);
          return;
        }
        p.started = true;
        if (r.status < 200) {
          // 100 Continue, 103 Early Hints: passed on; the final answer follows. No upgrade was asked for.
          if (r.status === 101) {
            this.appBroke("101 Switching Protocols to a request without Upgrade");
            return;
          }
          i = end + 4;
          continue;
        }
        p.status = r.status;
        this.appCloses = r.close;
        this.outClose = r.close || p.closeAfter;
        // An app that says it keeps connections idle longer than the sidecar keeps the caller's
        // would have the caller reuse one the sidecar is closing (the request lost).
        const keepAliveS = Math.floor(this.gate.limits.keepAliveTimeoutMs / 1000);
        const longer = r.keepAliveS !== undefined && r.keepAliveS > keepAliveS;
        if (r.options || longer || (p.closeAfter && !r.close)) {
          // Rewritten, rarely: headers the app named in Connection are for its hop only, a caller
          // whose connection ends after this answer is told so, and a longer Keep-Alive is cut.
          // Corked: the rewritten head and the bytes after it leave in one write (one TLS record).
          if (!this.corkedClient) {
            this.corkedClient = true;
            this.sock.cork();
          }
          this.toClient(buf, flushed, i);
          const head = buf.toString("latin1", i, end);
          const text =
            r.options || (p.closeAfter && !r.close)
              ? rewritten(head, r.options, p.closeAfter, longer ? keepAliveS : undefined)
              : // Only the Keep-Alive (every answer of an app that keeps connections long): one replace.
                `${head.replace(KEEP_ALIVE_LINE, `\r\nkeep-alive: timeout=${keepAliveS}`)}\r\n\r\n`;
          this.sock.write(text, "latin1");
          flushed = end + 4;
        }
        i = end + 4;
        if (p.isHead || r.status === 204 || r.status === 304) this.outLeft = 0;
        else if (r.chunked) {
          this.outChunks = new ChunkedBody();
          this.outState = Out.Chunked;
          continue;
        } else if (r.contentLength >= 0) this.outLeft = r.contentLength;
        else {
          this.outState = Out.UntilClose;
          this.outClose = true;
          this.appCloses = true;
          continue;
        }
        this.outState = Out.Length;
        if (this.outLeft === 0) {
          this.toClient(buf, flushed, i);
          flushed = i;
          if (this.answered()) return;
        }
        continue;
      }
      if (state === Out.Length) {
        const n = Math.min(this.outLeft, buf.length - i);
        i += n;
        this.outLeft -= n;
        if (this.outLeft > 0) continue;
      } else if (state === Out.Chunked) {
        const to = this.outChunks!.feed(buf, i, buf.length);
        if (to < 0) {
          this.appBroke(`a chunked answer: ${this.outChunks!.error}`);
          return;
        }
        i = to;
        if (!this.outChunks!.done) continue;
      } else {
        i = buf.length;
        continue;
      }
      this.toClient(buf, flushed, i);
      flushed = i;
      if (this.answered()) return;
    }
    this.toClient(buf, flushed, i);
  }

  private toClient(buf: Buffer, from: number, to: number): void {
    if (from >= to || this.sock.destroyed) return;
    if (!this.sock.write(buf.subarray(from, to))) this.app?.sock.pause();
  }

  /** The answer at the head of the queue is complete. True when the connection is over. */
  private answered(): boolean {
    const p = this.queue.shift()!;
    this.outState = Out.Head;
    this.outChunks = undefined;
    p.done?.(p.status);
    if (this.outClose) {
      this.outClose = false;
      const a = this.app;
      this.app = undefined;
      // The caller's connection ends; the app's goes back to the pool unless the app ends it
      // or still waits for the rest of a body (an answer may come before the body is all sent).
      if (a && (this.appCloses || this.appMidRequest)) {
        a.owner = undefined;
        a.sock.destroy();
      } else if (a) this.s.release(a);
      this.endClient();
      return true;
    }
    this.flushLocal();
    return this.sock.destroyed;
  }

  /** The app broke HTTP/1.1: whatever it owes cannot be told apart any more; both connections end. */
  private appBroke(why: string): void {
    const a = this.app;
    this.app = undefined;
    this.appMidRequest = false;
    if (a) {
      a.owner = undefined;
      a.sock.destroy();
    }
    const p = this.queue.find((q) => q.local === undefined);
    if (p && !p.started) {
      // Nothing of its answer passed yet: the caller hears why, as for an app that went away.
      this.failOutstanding(Object.assign(new Error(why), { code: "EPROTO" }));
      this.stopReading();
      this.flushLocal();
      return;
    }
    this.sock.destroy();
  }

  appClosed(c: AppConn, err: Error | undefined): void {
    if (c !== this.app) return;
    this.app = undefined;
    this.appMidRequest = false;
    const head = this.queue[0];
    if (this.outState === Out.UntilClose && head) {
      // An answer without a length ends with the connection.
      this.answered();
      return;
    }
    if (!this.queue.some((q) => q.local === undefined)) {
      // Gone between requests, or while a request's body was still on its way to it.
      if (this.inState !== In.Head && this.bodyToApp) this.bodyToApp = false;
      return;
    }
    if (head && head.local === undefined && head.started) {
      // Mid-answer: nothing honest can be added; the caller sees the connection break.
      head.done?.(502);
      head.status = 502;
      this.queue.shift();
      this.sock.destroy();
      return;
    }
    // No answer under way: each request sent to the app gets the sidecar's 503 in its turn, and
    // the connection goes on (a body still coming is read past).
    // As node:http's client names a connection closed before an answer.
    this.failOutstanding(err ?? Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }));
    this.outState = Out.Head;
    this.outPending = undefined;
    if (this.inState !== In.Head) this.bodyToApp = false;
    this.flushLocal();
  }

  private failOutstanding(e: Error): void {
    for (const q of this.queue) {
      if (q.local !== undefined) continue;
      const f = this.s.o.failed(q.method, q.path, this.gate, e);
      q.status = f.status;
      if (f.done) q.done = f.done;
      q.local = `HTTP/1.1 ${f.status} ${STATUS_CODES[f.status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(f.body)}\r\n${q.closeAfter ? "connection: close\r\n" : ""}\r\n${f.body}`;
    }
  }

  private clientClosed(): void {
    this.s.ended(this);
    // Requests the caller did not stay for: logged as nginx's 499, or with the status under way.
    for (const q of this.queue) q.done?.(q.status || 499);
    // Reusable only between exchanges: nothing owed, no answer or body half-way.
    const clean = this.queue.length === 0 && this.outState === Out.Head && !this.outPending && !this.appMidRequest;
    this.queue.length = 0;
    this.stopReading();
    const a = this.app;
    this.app = undefined;
    if (!a) return;
    if (clean) this.s.release(a);
    else {
      a.owner = undefined;
      a.sock.destroy();
    }
  }
}

/**
 * An answer head (without its blank line) without the headers its Connection named (`options`),
 * with `close` saying Connection: close instead of its own Connection and Keep-Alive, and with
 * `keepAliveS` its Keep-Alive replaced by `timeout=<keepAliveS>`.
 */
function rewritten(
  head: string,
  options: readonly string[] | undefined,
  close: boolean,
  keepAliveS: number | undefined,
): string {
  let out = "";
  let connection: string[] | undefined;
  for (const line of head.split("\r\n")) {
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon).toLowerCase() : "";
    if (name === "connection") {
      // What is left of it once the hop-only names go: close or keep-alive.
      for (const t of line.slice(colon + 1).split(",")) {
        const o = t.trim().toLowerCase();
        if (o === "close" || o === "keep-alive") (connection ??= []).push(o);
      }
      continue;
    }
    if (((close || keepAliveS !== undefined) && name === "keep-alive") || options?.includes(name)) continue;
    out += `${line}\r\n`;
  }
  if (close) out += "connection: close\r\n";
  else {
    if (connection) out += `connection: ${connection.join(", ")}\r\n`;
    if (keepAliveS !== undefined) out += `keep-alive: timeout=${keepAliveS}\r\n`;
  }
  return `${out}\r\n`;
}
