// The sidecar's outbound side: for each upstream the workload declares, a plain-HTTP listener on
// loopback that the app calls (HTTP/1.1 or h2c, told apart by the first bytes). Each request goes
// on over mTLS with the workload's own identity, to a callee that must prove it *is* the
// upstream named (its certificate's one identity, not merely any mesh certificate), trusted and
// not revoked. The app never holds a key.
import {
  createServer as h1Server,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server as H1Server,
  type ServerResponse,
} from "node:http";
import { Agent, request as httpsRequest, type RequestOptions } from "node:https";
import {
  connect as h2connect,
  createServer as h2Server,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from "node:http2";
import { createServer as netServer, type Server as NetServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { checkServerIdentity, createSecureContext, type PeerCertificate, type SecureContext } from "node:tls";
import type { MeshLogger } from "../log.ts";
import type { MeshMetrics } from "../metrics.ts";
import { TLS_CIPHERS, type TlsMaterial } from "../material.ts";
import { dnsName } from "../names.ts";
import { identityOf } from "../peer-identity.ts";
import { upstreamReason } from "../reasons.ts";
import { isGrpc, sendGrpcStatus, GRPC_UNAVAILABLE } from "../grpc-status.ts";
import { forwardable, forwardableList, type RawScan } from "./headers.ts";
import { relay, H2Connection, type Dial } from "./relay.ts";

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
  private agent: Agent;
  private readonly h2: H2Connection;
  readonly servername: string;
  /** `<name>.internal:<port>`: the authority (Host) of every call to the upstream. */
  private readonly authority: string;
  private readonly h1Dial: Dial;
  private readonly h2Dial: Dial;
  readonly h1: H1Server;
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
    this.agent = newAgent();
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
    // Made once, not per request; setMaterial() makes it again with the new context and pool.
    this.h1Dial = h1Dial(
      host,
      port,
      this.servername,
      check,
      () => this.context,
      () => this.agent,
    );
    const handle = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) =>
      this.onRequest(req, res);
    this.h1 = h1Server(handle);
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
          this.h1.emit("connection", sock);
        }
        sock.resume();
      });
      sock.on("error", () => sock.destroy());
    });
  }

  private onRequest(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void {
    const h2 = req.httpVersionMajor === 2;
    let headers: OutgoingHttpHeaders | string[];
    let body: boolean | undefined;
    if (h2) headers = forwardable(req.headers);
    else {
      // As the inbound side does: from the raw list, no header object built on either side.
      const scan: RawScan = { authority: undefined, body: false };
      headers = forwardableList(req.rawHeaders, scan);
      headers.push("host", this.authority);
      body = scan.body;
    }
    let reason: string | undefined;
    relay(req, res, h2 ? this.h2Dial : this.h1Dial, {
      headers,
      body,
      // As client.ts counts: a 403 or a 5xx from the callee is a failed call too.
      done: (status) =>
        this.metrics?.outboundCall(
          this.route.name,
          reason ??
            (status === 403
              ? "forbidden"
              : status >= 500
                ? "upstream_error"
                : status === 499
                  ? "cancelled"
                  : undefined),
        ),
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
        method: req.method,
        path: req.url,
        reason: r.reason,
        code: r.code,
      },
      r.sentence,
    );
    if (isGrpc(req)) {
      sendGrpcStatus(res, undefined, GRPC_UNAVAILABLE, `${r.reason}: ${r.sentence}`);
      return { status: 200, reason: r.reason };
    }
    const text = JSON.stringify({
      error: "upstream_unavailable",
      upstream: name,
      reason: r.reason,
      message: r.sentence,
      from: this.service,
    });
    res.writeHead(502, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
    return { status: 502, reason: r.reason };
  }

  /** New calls use the new material; pooled connections to callees are re-made under it. */
  setMaterial(m: TlsMaterial): void {
    this.context = contextOf(m);
    const old = this.agent;
    this.agent = newAgent();
    old.destroy();
    this.h2.retire();
  }

  close(): Promise<void> {
    this.agent.destroy();
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

/** HTTP/1.1 over mTLS to the upstream, with the context and pool in force when each call starts. */
function h1Dial(
  host: string,
  port: number,
  servername: string,
  checkServerIdentity: ReturnType<typeof calleeCheck>,
  context: () => SecureContext,
  agent: () => Agent,
): Dial {
  return {
    protocol: "http1",
    request: (o) =>
      httpsRequest({
        ...o,
        host,
        port,
        servername,
        secureContext: context(),
        checkServerIdentity,
        agent: agent(),
      } as RequestOptions),
  };
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

function newAgent(): Agent {
  // No TLS session reuse: every new connection is judged under the current trust. Idle
  // connections closed after UPSTREAM_IDLE_MS, under the mesh servers' 5 s keep-alive timeout,
  // as client.ts does: never reuse one the server is closing (the request would be lost).
  return new Agent({ keepAlive: true, keepAliveMsecs: 1_000, maxCachedSessions: 0, timeout: UPSTREAM_IDLE_MS });
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
