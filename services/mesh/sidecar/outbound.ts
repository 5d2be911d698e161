// The sidecar's outbound side: for each upstream the workload declares, a plain-HTTP listener on
// loopback that the app calls (HTTP/1.1 or h2c, told apart by the first bytes). Each request goes
// on over mTLS with the workload's own identity, to a callee that must prove it *is* the
// upstream named (its certificate's one identity, not merely any mesh certificate), trusted and
// not revoked. The app never holds a key.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import {
  connect as h2connect,
  createServer as h2Server,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from "node:http2";
import { createServer as netServer, type Server as NetServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import {
  checkServerIdentity,
  connect as tlsConnect,
  createSecureContext,
  type PeerCertificate,
  type SecureContext,
} from "node:tls";
import type { MeshLogger } from "../log.ts";
import type { MeshMetrics } from "../metrics.ts";
import { TLS_CIPHERS, type TlsMaterial } from "../material.ts";
import { dnsName } from "../names.ts";
import { identityOf } from "../peer-identity.ts";
import { httpErrorReason, upstreamReason } from "../reasons.ts";
import { isGrpc, sendGrpcStatus, GRPC_UNAVAILABLE } from "../grpc-status.ts";
import { forwardable } from "./headers.ts";
import { relay, H2Connection, type Dial } from "./relay.ts";
import { Http1Splice, type ConnGate } from "./splice.ts";
import type { SpliceAdmission } from "../forward.ts";

export interface OutboundRoute {
  /** The upstream's mesh name: the identity its certificate must carry. */
  readonly name: string;
  /** Where its mTLS listener is (host:port). */
  readonly addr: string;
  /** The loopback port the app calls (0 picks one; see Outbound#ports). */
  readonly listenPort: number;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n");
/** Idle time before a pooled connection to an upstream is closed (the mesh servers close at 5 s). */
export const UPSTREAM_IDLE_MS = 4_000;
/** The app's connections to an outbound port: node:http's defaults, which bounded them before the splice. */
const APP_LIMITS: ConnGate["limits"] = {
  headersTimeoutMs: 60_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderSize: 16 * 1024,
};

/** The callee must be exactly `name`: the host-name check, then the mesh's own identity rules. */
export function calleeCheck(name: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (host, cert) => {
    const e = checkServerIdentity(host, cert);
    if (e) return e;
    const id = identityOf(cert);
    if (id.ok && id.identity.name === name) return undefined;
    const err = new Error(
      id.ok
        ? `the callee presented the identity ${id.identity.name}, not ${name}`
        : `the callee's certificate is no mesh identity: ${id.detail}`,
    ) as Error & { code: string };
    err.code = "MESH_WRONG_IDENTITY";
    return err;
  };
}

class Lane {
  private context: SecureContext;
  private readonly h2: H2Connection;
  readonly servername: string;
  /** `<name>.internal:<port>`: the authority (Host) of every call to the upstream. */
  private readonly authority: string;
  private readonly h2Dial: Dial;
  /** The app's HTTP/1.1 calls, spliced to mTLS connections to the upstream (splice.ts). */
  private readonly spliced: Http1Splice<ConnGate>;
  private readonly gate: ConnGate;
  readonly h2c: Http2Server;
  readonly net: NetServer;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly route: OutboundRoute,
    material: TlsMaterial,
    private readonly service: string,
    private readonly log: MeshLogger,
    private readonly metrics: MeshMetrics | undefined,
  ) {
    this.servername = dnsName(route.name);
    this.context = contextOf(material);
    const [host, port] = splitAddr(route.addr);
    const check = calleeCheck(route.name);
    this.h2 = new H2Connection(() =>
      h2connect(`https://${route.addr}`, {
        host,
        port,
        servername: this.servername,
        secureContext: this.context,
        checkServerIdentity: check,
      }),
    );
    this.authority = `${this.servername}:${port}`;
    this.h2Dial = {
      protocol: "h2",
      scheme: "https",
      authority: this.authority,
      session: () => this.h2.session(),
      lastError: () => this.h2.lastError(),
    };
    this.spliced = new Http1Splice<ConnGate>({
      // No TLS session reuse: every new connection is judged under the current trust.
      dial: () =>
        tlsConnect({
          host,
          port,
          servername: this.servername,
          secureContext: this.context,
          checkServerIdentity: check,
          ALPNProtocols: ["http/1.1"],
        }),
      headText: (h) => {
        // The app's headers less hop-by-hop ones and any XFCC (http1-head.ts); the upstream's authority as Host.
        let text = `${h.method} ${h.target} ${h.version}\r\n`;
        for (const l of h.lines)
          if (!(l.charCodeAt(4) === 58 /* : */ && l.slice(0, 4).toLowerCase() === "host")) text += `${l}\r\n`;
        if (h.teTrailers) text += "te: trailers\r\n";
        return `${text}host: ${this.authority}\r\n\r\n`;
      },
      failed: (method, path, _gate, e) => {
        const r = this.logFailed(method, path, e);
        return {
          status: 502,
          body: this.failedBody(r),
          done: () => this.metrics?.outboundCall(this.route.name, r.reason),
        };
      },
      idleMs: UPSTREAM_IDLE_MS,
    });
    // As relay()'s done counts a call: a 403 or a 5xx from the callee is a failed call too (client.ts).
    const admitted: SpliceAdmission = {
      allow: true,
      done: (status) => this.metrics?.outboundCall(this.route.name, callReason(status)),
    };
    this.gate = {
      limits: APP_LIMITS,
      admit: () => admitted,
      draining: () => false,
      clientError: (code, detail) => {
        const { reason, status, sentence } = httpErrorReason(Object.assign(new Error(detail), { code }), APP_LIMITS);
        this.log.warn(
          { event: "http.client_error", reason, peer: "app", code, detail },
          `the app's call to ${this.route.name}: ${sentence}`,
        );
        return status;
      },
    };
    const handle = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) =>
      this.onRequest(req, res);
    this.h2c = h2Server(handle);
    this.net = netServer((sock) => {
      this.sockets.add(sock);
      sock.once("close", () => this.sockets.delete(sock));
      sock.once("data", (first: Buffer) => {
        sock.pause();
        const h2 = first
          .subarray(0, PREFACE.length)
          .equals(PREFACE.subarray(0, Math.min(first.length, PREFACE.length)));
        if (h2) {
          // node:http2 reads a native socket from its handle, past anything unshifted: hand it
          // a stream that replays the first bytes instead.
          this.h2c.emit("connection", replaying(sock, first));
        } else {
          sock.unshift(first);
          this.spliced.splice(sock, this.gate);
        }
        sock.resume();
      });
      sock.on("error", () => sock.destroy());
    });
  }

  /** The app's HTTP/2 (h2c) calls: relayed as streams to an h2 connection to the upstream. */
  private onRequest(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void {
    const headers: OutgoingHttpHeaders = forwardable(req.headers);
    let reason: string | undefined;
    relay(req, res, this.h2Dial, {
      headers,
      done: (status) => this.metrics?.outboundCall(this.route.name, reason ?? callReason(status)),
      failed: (e) => {
        const r = this.failed(req, res, e);
        reason = r.reason;
        return r.status;
      },
    });
  }

  private failed(
    req: IncomingMessage | Http2ServerRequest,
    res: ServerResponse | Http2ServerResponse,
    e: Error,
  ): { status: number; reason: string } {
    const r = this.logFailed(req.method, req.url, e);
    if (isGrpc(req)) {
      sendGrpcStatus(res, undefined, GRPC_UNAVAILABLE, `${r.reason}: ${r.sentence}`);
      return { status: 200, reason: r.reason };
    }
    const text = this.failedBody(r);
    res.writeHead(502, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
    return { status: 502, reason: r.reason };
  }

  private failedBody(r: { reason: string; sentence: string }): string {
    return JSON.stringify({
      error: "upstream_unavailable",
      upstream: this.route.name,
      reason: r.reason,
      message: r.sentence,
      from: this.service,
    });
  }

  /** Logs a call that failed (upstream.failed); its reason and sentence. */
  private logFailed(
    method: string | undefined,
    path: string | undefined,
    e: Error,
  ): { reason: string; sentence: string } {
    const name = this.route.name;
    const code = (e as { code?: string }).code;
    const r =
      code === "MESH_WRONG_IDENTITY"
        ? {
            reason: "server_name_mismatch" as const,
            code,
            sentence: `the server at ${this.route.addr} is not ${name}: ${e.message}; the call was refused`,
          }
        : upstreamReason(e, name, this.route.addr);
    this.log.warn(
      {
        event: "upstream.failed",
        side: "outbound",
        upstream: name,
        addr: this.route.addr,
        method,
        path,
        reason: r.reason,
        code: r.code,
      },
      r.sentence,
    );
    return r;
  }

  /** New calls use the new material; pooled connections to callees are re-made under it. */
  setMaterial(m: TlsMaterial): void {
    this.context = contextOf(m);
    this.spliced.retire();
    this.h2.retire();
  }

  close(): Promise<void> {
    this.spliced.close();
    this.h2.close();
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.net.close(() => resolve()));
  }
}

/** A duplex over `sock` that yields `first` before the rest of what `sock` reads. */
function replaying(sock: Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read: () => void sock.resume(),
    write: (chunk: Buffer, _enc, cb) => void sock.write(chunk, cb),
    final: (cb) => {
      sock.end();
      cb();
    },
    destroy: (err, cb) => {
      sock.destroy();
      cb(err);
    },
  });
  d.push(first);
  sock.on("data", (c: Buffer) => {
    if (!d.push(c)) sock.pause();
  });
  sock.once("end", () => d.push(null));
  sock.once("close", () => d.destroy());
  return d;
}

/** How a call answered with `status` is counted (as client.ts counts). */
function callReason(status: number): string | undefined {
  return status === 403 ? "forbidden" : status >= 500 ? "upstream_error" : status === 499 ? "cancelled" : undefined;
}

function contextOf(m: TlsMaterial): SecureContext {
  // CRLs on: a revoked callee fails the handshake (CERT_REVOKED), as in client.ts.
  return createSecureContext({
    ca: m.ca,
    cert: m.cert,
    key: m.key,
    crl: m.crl,
    minVersion: "TLSv1.2",
    ciphers: TLS_CIPHERS,
  });
}

function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(":");
  return [addr.slice(0, i).replace(/^\[|\]$/g, ""), Number(addr.slice(i + 1))];
}

export class Outbound {
  private readonly lanes: Lane[];
  constructor(
    service: string,
    routes: readonly OutboundRoute[],
    material: TlsMaterial,
    log: MeshLogger,
    metrics?: MeshMetrics,
  ) {
    this.lanes = routes.map((r) => new Lane(r, material, service, log, metrics));
  }

  /** Listens on loopback only; returns name -> port the app calls. */
  async listen(host = "127.0.0.1"): Promise<Record<string, number>> {
    const ports: Record<string, number> = {};
    for (const l of this.lanes) {
      await new Promise<void>((resolve, reject) => {
        l.net.once("error", reject);
        l.net.listen(l.route.listenPort, host, () => {
          l.net.off("error", reject);
          resolve();
        });
      });
      const a = l.net.address();
      ports[l.route.name] = typeof a === "object" && a ? a.port : l.route.listenPort;
    }
    return ports;
  }

  setMaterial(m: TlsMaterial): void {
    for (const l of this.lanes) l.setMaterial(m);
  }

  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.close()));
  }
}
