// The sidecar's inbound side: a request the mesh server has authenticated and the policy has
// allowed goes on to the app, on a loopback port or a unix socket, with the caller named in
// XFCC; an app that does not answer gets the caller a 503 (gRPC: UNAVAILABLE) and a log line.
import { Agent, request, type OutgoingHttpHeaders } from "node:http";
import { connect as h2connect } from "node:http2";
import { connect as netConnect } from "node:net";
import type { Forward, ForwardPeer, MeshRequest, MeshResponse, Splice, SpliceGate } from "../app.ts";
import type { MeshLogger } from "../log.ts";
import type { TlsMaterial } from "../material.ts";
import { MeshError } from "../errors.ts";
import { isGrpc, sendGrpcStatus, GRPC_UNAVAILABLE } from "../grpc-status.ts";
import { isLoopback } from "../../../lib/admin-http.ts";
import { forwardable, forwardableList, type RawScan } from "./headers.ts";
import { relay, H2Connection, type Dial } from "./relay.ts";
import { ownSpiffeId, xfccElement, XFCC } from "./xfcc.ts";
import { Http1Splice } from "./splice.ts";

export type AppAddress =
  | { readonly kind: "tcp"; readonly host: string; readonly port: number }
  | { readonly kind: "unix"; readonly path: string };
/** How the app speaks: HTTP/1.1, or HTTP/2 without TLS (h2c, prior knowledge: a gRPC server). */
export type AppProtocol = "http1" | "h2c";

/** `http://127.0.0.1:8080`, `127.0.0.1:8080`, `[::1]:8080` or `unix:/run/app.sock`; loopback only. */
export function parseAppAddress(s: string): AppAddress {
  if (s.startsWith("unix:")) {
    const path = s.slice(5);
    if (!path.startsWith("/"))
      throw new MeshError(
        "BAD_ARGUMENT",
        `--app ${JSON.stringify(s.slice(0, 80))}: a unix socket needs an absolute path, e.g. unix:/run/app.sock`,
      );
    return { kind: "unix", path };
  }
  const m = /^(?:http:\/\/)?(\[[0-9a-fA-F:]+\]|[0-9.]+|localhost):(\d{1,5})\/?$/.exec(s);
  const host = m ? m[1]!.replace(/^\[|\]$/g, "") : "";
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535 || !(host === "localhost" || isLoopback(host))) {
    throw new MeshError(
      "BAD_ARGUMENT",
      `--app ${JSON.stringify(s.slice(0, 80))} must be the app's loopback address (http://127.0.0.1:8080) or a unix socket (unix:/run/app.sock): the app speaks plain HTTP, so it must not be reachable from the network`,
    );
  }
  return { kind: "tcp", host: host === "localhost" ? "127.0.0.1" : host, port };
}

export function describeApp(a: AppAddress): string {
  return a.kind === "unix" ? `unix:${a.path}` : `http://${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}

/**
 * How long a pooled connection to the app may stay idle. An app closes idle connections on
 * its own clock (Node 5 s, gunicorn 2 s); a request sent on one the app is closing at that
 * moment is lost (ECONNRESET: a 503 to the caller). Node's Agent honours an app's
 * `Keep-Alive: timeout=` hint only below its own timeout, and without one keeps idle sockets
 * forever: so the sidecar closes them first. A new loopback connection costs far less than a
 * lost request.
 */
export const APP_IDLE_MS = 1_000;

export interface InboundOptions {
  service: string;
  app: AppAddress;
  protocol: AppProtocol;
  log: MeshLogger;
  material: TlsMaterial;
}

export class Inbound {
  private by: string;
  private readonly dial: Dial;
  private readonly agent: Agent | undefined;
  private readonly h2: H2Connection | undefined;
  /** HTTP/1.1 callers to an HTTP/1.1 app: their connections spliced to the app's (splice.ts). */
  private readonly spliced: Http1Splice<SpliceGate> | undefined;
  /** XFCC per caller connection (the same certificate for every request on it). */
  private readonly xfcc = new WeakMap<ForwardPeer, { by: string; value: string }>();
  private readonly where: string;

  constructor(private readonly o: InboundOptions) {
    this.by = ownSpiffeId(o.service, o.material.cert);
    this.where = describeApp(o.app);
    const a = o.app;
    if (o.protocol === "http1") {
      const agent = new Agent({ keepAlive: true, keepAliveMsecs: 1_000, maxFreeSockets: 64, timeout: APP_IDLE_MS });
      this.agent = agent;
      const base = a.kind === "unix" ? { socketPath: a.path } : { host: a.host, port: a.port };
      this.dial = { protocol: "http1", request: (r) => request({ ...r, ...base, agent }) };
      this.spliced = new Http1Splice<SpliceGate>({
        dial: () => (a.kind === "unix" ? netConnect(a.path) : netConnect(a.port, a.host)),
        headText: (h, gate) => {
          // The caller's headers as sent, less hop-by-hop ones and any XFCC (see http1-head.ts); the sidecar's XFCC.
          let text = `${h.method} ${h.target} ${h.version}\r\n`;
          for (const l of h.lines) text += `${l}\r\n`;
          if (h.teTrailers) text += "te: trailers\r\n";
          return `${text}${XFCC}: ${this.xfccOf(gate.peer)}\r\n\r\n`;
        },
        failed: (method, path, gate, e) => ({
          status: 503,
          body: this.unavailableBody(this.logAppFailed(method, path, gate.peer, e)),
        }),
        idleMs: APP_IDLE_MS,
      });
    } else {
      const h2 = new H2Connection(() =>
        a.kind === "unix"
          ? h2connect("http://localhost", { createConnection: () => netConnect(a.path) })
          : h2connect(`http://${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`),
      );
      this.h2 = h2;
      this.dial = {
        protocol: "h2",
        scheme: "http",
        authority: a.kind === "unix" ? "localhost" : `${a.host}:${a.port}`,
        session: () => h2.session(),
        lastError: () => h2.lastError(),
      };
    }
  }

  /** HTTP/1.1 callers' connections, when the app speaks HTTP/1.1 (HTTP/2 callers still go through forward). */
  get splice(): Splice | undefined {
    return this.spliced?.splice;
  }

  readonly forward: Forward = (req, res, peer, done) => {
    const failed = (e: Error) => this.appFailed(req, res, peer, e);
    if (this.dial.protocol === "http1") {
      // From the raw list: no header object is built for the request or for the app's call.
      const scan: RawScan = { authority: undefined, body: false };
      const headers = forwardableList(req.rawHeaders, scan);
      headers.push(XFCC, this.xfccOf(peer));
      // The authority the caller asked for (it named this service), for apps that route by Host.
      if (scan.authority !== undefined) headers.push("host", scan.authority);
      // HTTP/2 says where the body ends by END_STREAM, not by a header.
      const body = "stream" in req ? !req.stream.endAfterHeaders : scan.body;
      relay(req, res, this.dial, { headers, body, done, failed });
      return;
    }
    const headers: OutgoingHttpHeaders = forwardable(req.headers);
    headers[XFCC] = this.xfccOf(peer);
    relay(req, res, this.dial, { headers, done, failed });
  };

  private xfccOf(peer: ForwardPeer): string {
    const seen = this.xfcc.get(peer);
    if (seen && seen.by === this.by) return seen.value;
    const value = xfccElement(this.by, peer);
    this.xfcc.set(peer, { by: this.by, value });
    return value;
  }

  private appFailed(req: MeshRequest, res: MeshResponse, peer: ForwardPeer, e: Error): number {
    const sentence = this.logAppFailed(req.method ?? "GET", req.url ?? "/", peer, e);
    if (isGrpc(req)) {
      sendGrpcStatus(res, undefined, GRPC_UNAVAILABLE, `app_down: ${sentence}`);
      return 200;
    }
    const text = this.unavailableBody(sentence);
    res.writeHead(503, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
    return 503;
  }

  /** Logs upstream.failed for the app; the sentence. */
  private logAppFailed(method: string, path: string, peer: ForwardPeer, e: Error): string {
    const code = (e as { code?: string }).code ?? "UNKNOWN";
    const sentence = `the app at ${this.where} did not answer ${method} ${path} (${code}); is it running, and is --app right?`;
    this.o.log.warn(
      {
        event: "upstream.failed",
        upstream: "app",
        addr: this.where,
        method,
        path,
        peer: peer.identity.name,
        reason: "app_down",
        code,
      },
      sentence,
    );
    return sentence;
  }

  private unavailableBody(sentence: string): string {
    return JSON.stringify({ error: "app_unavailable", reason: "app_down", service: this.o.service, message: sentence });
  }

  setMaterial(m: TlsMaterial): void {
    this.by = ownSpiffeId(this.o.service, m.cert);
  }

  close(): void {
    this.spliced?.close();
    this.agent?.destroy();
    this.h2?.close();
  }
}
