// One request relayed to a target and its answer relayed back, over HTTP/1.1 or HTTP/2, with
// bodies streamed both ways and trailers kept (gRPC's status lives in them). Used by the
// sidecar's inbound side (to the app) and outbound side (to another mesh service).
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders, RequestOptions, ServerResponse } from "node:http";
import { constants, type ClientHttp2Session, type ClientHttp2Stream, type Http2ServerResponse } from "node:http2";
import type { MeshRequest, MeshResponse } from "../app.ts";
import { forwardable, forwardableList } from "./headers.ts";

export type Dial =
  | { readonly protocol: "http1"; request(o: RequestOptions): ClientRequest }
  | {
      readonly protocol: "h2";
      session(): ClientHttp2Session;
      readonly scheme: "http" | "https";
      readonly authority: string;
      lastError(): Error | undefined;
    };

export interface RelayHooks {
  /**
   * Headers to send: the caller's, filtered, plus whatever the side adds (XFCC). A flat list
   * (forwardableList) only towards HTTP/1.1; an HTTP/2 target takes an object.
   */
  readonly headers: OutgoingHttpHeaders | string[];
  /** Whether the caller's request has a body; when known to be false, nothing is piped. */
  readonly body?: boolean;
  /** The target could not be reached or broke before answering: answer the caller, return the status sent. */
  failed(e: Error): number;
  /** The exchange is over (answered, or the caller went away: 499). */
  done(status: number): void;
}

const { NGHTTP2_FLAG_END_STREAM, NGHTTP2_CANCEL } = constants;

export function relay(req: MeshRequest, res: MeshResponse, dial: Dial, hooks: RelayHooks): void {
  let status = 0;
  let over = false;
  const finish = () => {
    if (over) return;
    over = true;
    hooks.done(status || 499);
  };
  const fail = (e: Error) => {
    if (res.headersSent) {
      // Mid-answer: nothing honest can be added; the caller sees the stream break.
      destroy(res);
      status ||= 502;
    } else {
      status = hooks.failed(e);
    }
  };
  const path = req.url ?? "/";
  const method = req.method ?? "GET";
  if (dial.protocol === "http1") {
    const up = dial.request({ method, path, headers: hooks.headers as RequestOptions["headers"] });
    res.once("close", () => {
      if (!res.writableFinished) up.destroy();
      finish();
    });
    up.on("response", (ur: IncomingMessage) => {
      status = ur.statusCode ?? 502;
      // Http2ServerResponse#writeHead takes the same flat list at run time (its types say object only).
      const out = res as ServerResponse;
      out.writeHead(status, forwardableList(ur.rawHeaders));
      // By hand rather than ur.pipe(res): a pipe's half-dozen listeners on both streams, set up
      // and torn down, were a visible share of a small request's cost. Backpressure as a pipe's.
      ur.on("data", (chunk: Buffer) => {
        if (!out.write(chunk)) {
          ur.pause();
          res.once("drain", () => ur.resume());
        }
      });
      ur.once("end", () => {
        if (ur.rawTrailers.length > 0) res.addTrailers(ur.trailers as Record<string, string>);
        res.end();
      });
      ur.on("error", () => destroy(res));
    });
    up.on("error", fail);
    if (hooks.body === false) {
      req.resume();
      up.end();
    } else {
      req.on("error", () => up.destroy());
      req.pipe(up);
    }
    return;
  }
  let up: ClientHttp2Stream;
  try {
    up = dial.session().request({
      ":method": method,
      ":path": path,
      ":scheme": dial.scheme,
      ":authority": dial.authority,
      ...(Array.isArray(hooks.headers) ? listToObject(hooks.headers) : hooks.headers),
    });
  } catch (e) {
    fail(e as Error);
    finish();
    return;
  }
  res.once("close", () => {
    if (!res.writableFinished && !up.closed) up.close(NGHTTP2_CANCEL);
    finish();
  });
  up.on("response", (h, flags) => {
    status = Number(h[":status"]) || 502;
    const out = forwardable(h);
    if (flags & NGHTTP2_FLAG_END_STREAM) {
      // Trailers-only (a gRPC error status): one HEADERS frame that ends the stream, as sent.
      if ("stream" in res) res.stream.respond({ ":status": status, ...out }, { endStream: true });
      else {
        res.writeHead(status, out);
        res.end();
      }
      return;
    }
    res.writeHead(status, out);
    up.pipe(res as Http2ServerResponse);
  });
  up.on("trailers", (t) => res.addTrailers(forwardable(t) as Record<string, string>));
  up.on("error", (e: Error) => fail(dial.lastError() ?? e));
  req.on("error", () => up.close(NGHTTP2_CANCEL));
  req.pipe(up);
}

function listToObject(list: readonly string[]): OutgoingHttpHeaders {
  const o: Record<string, string | string[]> = {};
  for (let i = 0; i < list.length; i += 2) {
    const k = list[i]!;
    const seen = o[k];
    o[k] = seen === undefined ? list[i + 1]! : [...(Array.isArray(seen) ? seen : [seen]), list[i + 1]!];
  }
  return o;
}

function destroy(res: MeshResponse): void {
  if ("stream" in res) res.stream.close(NGHTTP2_CANCEL);
  else res.destroy();
}

/** One HTTP/2 connection to a target, made when first needed and again after it closes. */
export class H2Connection {
  private s: ClientHttp2Session | undefined;
  private err: Error | undefined;
  constructor(private readonly connect: () => ClientHttp2Session) {}

  session(): ClientHttp2Session {
    if (this.s && !this.s.closed && !this.s.destroyed) return this.s;
    this.err = undefined;
    const s = this.connect();
    s.on("error", (e) => (this.err = e));
    s.once("close", () => {
      if (this.s === s) this.s = undefined;
    });
    s.on("goaway", () => {
      if (this.s === s) this.s = undefined;
    });
    this.s = s;
    return s;
  }

  lastError(): Error | undefined {
    return this.err;
  }

  /** New streams go to a new connection; streams under way finish on this one. */
  retire(): void {
    const s = this.s;
    this.s = undefined;
    if (s && !s.closed) s.close();
  }

  close(): void {
    const s = this.s;
    this.s = undefined;
    s?.destroy();
  }
}
