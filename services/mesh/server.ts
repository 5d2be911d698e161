// The mesh's mTLS server: refuses every peer without a trusted, unambiguous certificate
// before any HTTP byte is parsed, then authorizes each request against the policy.
import { randomBytes } from "node:crypto";
import {
  constants,
  createSecureServer,
  type Http2SecureServer,
  type ServerHttp2Session,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from "node:http2";
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { TLSSocket, SecureContextOptions } from "node:tls";
import type { Socket } from "node:net";
import { decide, type Decision, type Policy } from "./policy.ts";
import { presented, type PeerIdentity, type PresentedCert } from "./peer-identity.ts";
import { chainWithdrawn, withdrawn } from "./revocations.ts";
import { PeerCerts, type CertFacts } from "./peer-certs.ts";
import { resumedRefusal, sessionIdContext } from "./resumption.ts";
import { handshakeReason, clientErrorReason, httpErrorReason } from "./reasons.ts";
import { datesByProcessClock } from "./clock-dates.ts";
import { answerDateRefusal, refusalAnswered } from "./callee-clock.ts";
import { TLS_CIPHERS, type TlsMaterial } from "./material.ts";
import type { MeshLogger } from "./log.ts";
import { AccessLog } from "./access-log.ts";
import { compilePath, pathOf, NO_PARAMS, type PathMatcher } from "./paths.ts";
import { messageOf } from "./errors.ts";
import type { MeshMetrics, RequestSeries } from "./metrics.ts";
import type { Forward, ForwardPeer, Splice, SpliceAdmission, SpliceGate } from "./forward.ts";
import { isGrpc, sendGrpcStatus, GRPC_PERMISSION_DENIED } from "./grpc-status.ts";

export interface Reply {
  readonly status: number;
  readonly body: unknown;
}

export interface RequestContext {
  readonly peer: PeerIdentity;
  readonly method: string;
  readonly path: string;
  readonly params: Readonly<Record<string, string>>;
  readonly body: unknown;
}

export interface Route {
  readonly method: string;
  readonly path: string;
  handle(ctx: RequestContext): Reply | Promise<Reply>;
}

/** An error a handler throws to answer with a given status and JSON body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.error ?? status));
  }
}

export interface Limits {
  handshakeTimeoutMs: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxHeaderSize: number;
  maxBodyBytes: number;
  /** After a certificate change, when the drain starts watching for connections stuck past their request time (see drain()). */
  drainGraceMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  handshakeTimeoutMs: 3_000,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderSize: 16 * 1024,
  maxBodyBytes: 64 * 1024,
  drainGraceMs: 1_000,
};

export interface MeshServerOptions {
  service: string;
  material: TlsMaterial;
  policy: () => Policy;
  routes: readonly Route[];
  /** Instead of routes: every allowed request is handed to this (the sidecar, see app.ts). */
  forward?: Forward;
  /**
   * With forward: HTTP/1.1 connections are handed whole to this instead of node:http's parser
   * (the sidecar's inbound splice); HTTP/2 ones still go to node:http2 and forward.
   */
  splice?: Splice;
  log: MeshLogger;
  limits?: Partial<Limits>;
  /** `request` lines per second before per-second summaries (see AccessLog); 0: every request. */
  requestLinesPerSecond?: number;
  metrics?: MeshMetrics;
}

/** The PeerState of a socket, as a property: read through HTTP/2's proxy of the socket too. */
const PEER = Symbol("mesh.peer");
type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

interface PeerState {
  readonly identity: PeerIdentity;
  /** What its certificate says, shared by every connection that presents it. */
  readonly facts: CertFacts;
  /** It resumed a TLS session: Node gives its certificate without the chain it was verified with. */
  readonly resumed: boolean;
  /** What a forwarder needs of the caller's certificate, read once per connection when asked. */
  forward?: ForwardPeer;
  /** The HTTP/2 session on this connection, if it speaks h2 (drained with GOAWAY). */
  session?: ServerHttp2Session;
  readonly remote: string;
  /** Which of this server's certificates the connection was made under. */
  readonly epoch: number;
  /** Requests read and not yet answered on this connection. */
  inFlight: number;
  /** The status the connection was refused with after the handshake (see onClientError). */
  refused?: number;
  /** What the previous request on this connection was decided and routed to (see routed()). */
  last?: Routed;
}

/** A request's verdict and route: the same for the same policy, caller, method and path. */
interface Routed {
  readonly policy: Policy;
  readonly method: string;
  readonly path: string;
  readonly decision: Decision;
  readonly route: Route | undefined;
  readonly params: Readonly<Record<string, string>>;
  /** Some route has this path, for another method: 405 rather than 404. */
  readonly pathKnown: boolean;
  /** Its metrics series (see MeshMetrics#series). */
  series?: RequestSeries;
}

/** Requests remembered across connections (see MeshServer#routed), and the longest path remembered. */
const SHARED_ROUTED_MAX = 512;
const SHARED_PATH_MAX = 256;

interface CompiledRoute {
  readonly method: string;
  readonly match: PathMatcher;
  readonly route: Route;
}

export class MeshServer {
  /** HTTP/2 (ALPN h2) and HTTP/1.1 on one TLS listener. */
  readonly https: Http2SecureServer;
  private material: TlsMaterial;
  private epoch = 0;
  private sweeping?: NodeJS.Timeout;
  private readonly peers = new WeakMap<TLSSocket, PeerState>();
  /** Verdicts and routes shared by every connection, for sharedPolicy (see routed()). */
  private readonly shared = new Map<string, Routed>();
  private sharedPolicy: Policy | undefined;
  /** What each peer certificate says, judged once per certificate under the material in force. */
  private certs: PeerCerts;
  private readonly sockets = new Set<TLSSocket>();
  /** A socket's "close" listener, one function for all: no closure per connection. */
  private readonly forgetSocket: (this: TLSSocket) => void;
  private readonly routes: CompiledRoute[];
  private readonly limits: Limits;
  private readonly logs: ExchangeLogs;

  constructor(private readonly opts: MeshServerOptions) {
    this.material = opts.material;
    this.certs = new PeerCerts(opts.material.leaf.trustDomain);
    const sockets = this.sockets;
    this.forgetSocket = function (this: TLSSocket) {
      sockets.delete(this);
    };
    this.logs = { log: opts.log, access: new AccessLog(opts.log, opts.requestLinesPerSecond) };
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.routes = opts.routes.map((route) => ({ method: route.method, match: compilePath(route.path), route }));
    this.https = createSecureServer(
      {
        ...this.tlsOptions(opts.material),
        handshakeTimeout: this.limits.handshakeTimeoutMs,
        allowHTTP1: true,
        maxSessionMemory: 10,
        settings: { maxHeaderListSize: this.limits.maxHeaderSize },
      },
      (req: Req, res: Res) => this.onRequest(req, res),
    );
    // HTTP/1.1 connections go to node:http's parser, which reads its limits from the server
    // object (http2's constructor sets its own defaults there, so they are set after it).
    Object.assign(this.https, {
      maxHeaderSize: this.limits.maxHeaderSize,
      headersTimeout: this.limits.headersTimeoutMs,
      requestTimeout: this.limits.requestTimeoutMs,
      keepAliveTimeout: this.limits.keepAliveTimeoutMs,
      // Node checks headersTimeout/requestTimeout only this often (default 30 s).
      connectionsCheckingInterval: Math.min(1_000, Math.max(50, this.limits.headersTimeoutMs / 4)),
    });
    // No socket idle timeout (server.timeout): the four limits above bound every phase of a
    // connection already, and an idle timer refreshed on every read and write was about
    // 1.3 µs of each keep-alive request.
    // Must run before https' own listener hands the socket to the HTTP parser.
    if (opts.splice) this.spliceHttp1(opts.splice);
    else this.https.prependListener("secureConnection", (sock: TLSSocket) => this.onSecureConnection(sock));
    this.https.on("session", (session: ServerHttp2Session) => {
      const state = (session.socket as TLSSocket & { [PEER]?: PeerState })[PEER];
      if (!state) return;
      state.session = session;
      // node:http's timeouts bound HTTP/1.1 only: an idle HTTP/2 connection is closed after the
      // keep-alive timeout too, but never under a stream still open (a quiet gRPC stream).
      session.setTimeout(this.limits.keepAliveTimeoutMs, () => {
        if (state.inFlight === 0) session.close();
      });
    });
    this.https.on("tlsClientError", (err: NodeJS.ErrnoException, sock: TLSSocket) => this.onTlsClientError(err, sock));
    // Once per connection: when its handshake started, for mesh_tls_handshake_duration_seconds.
    const metrics = opts.metrics;
    if (metrics) this.https.on("connection", (raw: Socket) => metrics.handshakeStarted(raw));
    this.https.on("clientError", (err: NodeJS.ErrnoException, sock: TLSSocket) => this.onClientError(err, sock));
  }

  /**
   * An authenticated HTTP/1.1 connection (ALPN http/1.1, or none) goes to the splice instead of
   * node:http; an h2 one to node:http2's own listener, as without a splice. The splice reads
   * the requests itself and asks gate() for each verdict.
   */
  private spliceHttp1(splice: Splice): void {
    const http2Listeners = this.https.listeners("secureConnection") as Array<(sock: TLSSocket) => void>;
    this.https.removeAllListeners("secureConnection");
    this.https.on("secureConnection", (sock: TLSSocket) => {
      this.onSecureConnection(sock);
      const state = (sock as TLSSocket & { [PEER]?: PeerState })[PEER];
      if (state && !sock.destroyed && (sock.alpnProtocol === false || sock.alpnProtocol === "http/1.1")) {
        splice(sock, this.gate(state));
        return;
      }
      for (const l of http2Listeners) l.call(this.https, sock);
    });
  }

  private gate(peer: PeerState): SpliceGate {
    peer.forward ??= forwardPeer(peer.facts, peer.identity);
    return {
      peer: peer.forward,
      limits: this.limits,
      admit: (method, path) => this.admit(peer, method, path),
      draining: () => peer.epoch !== this.epoch,
      clientError: (code, detail) => {
        const { reason, status, sentence } = httpErrorReason(Object.assign(new Error(detail), { code }), this.limits);
        this.opts.log.warn(
          { event: "http.client_error", reason, peer: peer.identity.name, remote: peer.remote, code, detail },
          sentence,
        );
        peer.refused = status;
        return status;
      },
    };
  }

  /** A spliced request's verdict, logged and counted as onRequest does; an allowed one is in flight until done(). */
  private admit(peer: PeerState, method: string, path: string): SpliceAdmission {
    const routed = this.routed(peer, method, path);
    const d = routed.decision;
    const series = this.opts.metrics?.series(routed, peer.identity.name);
    if (!d.allow) {
      this.logDenied(peer, method, path, d);
      series?.denied();
      return { allow: false, status: 403, body: JSON.stringify(this.deniedBody(peer, method, path, d)) };
    }
    if (d.wouldDeny) {
      this.logWouldDeny(peer, method, path, d);
      series?.wouldDeny();
    }
    peer.inFlight++;
    const x = new Exchange(undefined, peer, method, path, d.rule, this.logs);
    x.series = series;
    return { allow: true, done: (status) => x.forwarded(status) };
  }

  private logDenied(peer: PeerState, method: string, path: string, d: Decision): void {
    const caller = peer.identity.name;
    this.opts.log.warn(
      {
        event: "authz.denied",
        peer: caller,
        peerDns: peer.identity.dns,
        peerSpiffeId: peer.identity.spiffeId,
        method,
        path,
        rule: d.rule,
        reason: d.reason,
        hint: d.hint,
        remote: peer.remote,
      },
      `denied ${caller} ${method} ${path}: ${d.reason}`,
    );
  }

  private deniedBody(peer: PeerState, method: string, path: string, d: Decision): Record<string, unknown> {
    const caller = peer.identity.name;
    return {
      error: "forbidden",
      caller,
      identity: peer.identity.dns,
      rule: d.rule,
      message: `${caller} may not call ${method} ${path} on ${this.opts.service}`,
    };
  }

  private logWouldDeny(peer: PeerState, method: string, path: string, d: Decision): void {
    const caller = peer.identity.name;
    // Audit mode (docs/policy.md): the call goes on; the line says what enforcing would deny.
    this.opts.log.warn(
      {
        event: "authz.would_deny",
        peer: caller,
        peerDns: peer.identity.dns,
        method,
        path,
        rule: d.rule,
        reason: d.reason,
        hint: d.hint,
        remote: peer.remote,
      },
      `would deny ${caller} ${method} ${path} (audit mode, let through): ${d.reason}`,
    );
  }

  /**
   * rejectUnauthorized is false on purpose: OpenSSL still verifies, but the socket reaches
   * onSecureConnection, where the reason and the presented certificate can be logged
   * before the socket is destroyed. setSecureContext() rebuilds from these options, so
   * they are passed whole every time.
   */
  private tlsOptions(m: TlsMaterial): SecureContextOptions & {
    requestCert: true;
    rejectUnauthorized: false;
    ALPNProtocols: string[];
    sessionIdContext: string;
  } {
    return {
      cert: m.cert,
      key: m.key,
      ca: m.ca,
      crl: m.crl,
      minVersion: "TLSv1.2",
      ciphers: TLS_CIPHERS,
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ["h2", "http/1.1"],
      // Sessions resume only into the material they were made under (see resumption.ts).
      sessionIdContext: sessionIdContext(m),
    };
  }

  listen(port: number, host = "127.0.0.1"): Promise<number> {
    return new Promise((resolve, reject) => {
      this.https.once("error", reject);
      this.https.listen(port, host, () => {
        this.https.off("error", reject);
        const a = this.https.address();
        resolve(typeof a === "object" && a ? a.port : port);
      });
    });
  }

  get trust(): TlsMaterial["trust"] {
    return this.material.trust;
  }

  /**
   * Use new material for new handshakes. Throws (keeping the old context) if OpenSSL
   * refuses it. A peer already connected was verified under the old material, so:
   * when trust changes, a connection whose peer is now revoked or no longer trusted is
   * closed at once; when this server's own certificate changes, every older connection
   * is drained, so each peer's next connection judges the new certificate.
   */
  setMaterial(m: TlsMaterial): { certChanged: boolean; trustChanged: boolean } {
    const certChanged = m.certDigest !== this.material.certDigest;
    const trustChanged = m.trustDigest !== this.material.trustDigest;
    if (!certChanged && !trustChanged) return { certChanged, trustChanged };
    this.https.setSecureContext(this.tlsOptions(m));
    this.material = m;
    // Old session tickets would let a peer resume without a full handshake under the new
    // material: new keys, so no ticket issued before decrypts (and the session ID context
    // changed with the material too). What was concluded from certificates goes with them.
    this.https.setTicketKeys(randomBytes(48));
    this.certs = new PeerCerts(m.leaf.trustDomain);
    if (trustChanged) this.closeInvalidated();
    if (certChanged) {
      this.epoch++;
      this.drain("this service's certificate changed");
    }
    return { certChanged, trustChanged };
  }

  /**
   * Closes, at once, the connections made under an earlier certificate that carry no request
   * now. For a teaching toggle (toggle.ts): its point is that callers meet the new identity at
   * once, not on their next connection; a rotation's reload keeps drain()'s gentler terms (a
   * caller that sends on an idle connection just as it closes sees a reset).
   */
  closeIdleBefore(why: string): number {
    let closed = 0;
    for (const s of this.sockets) {
      const p = this.peers.get(s);
      if (!p || p.epoch === this.epoch || p.inFlight > 0) continue;
      if (p.session) p.session.close();
      else s.destroy();
      closed++;
    }
    if (closed > 0)
      this.opts.log.info(
        { event: "tls.connections_closed", count: closed, why },
        `closed ${closed} idle connection(s) made before ${why}`,
      );
    return closed;
  }

  /** Closes, at once, connections whose peer the current trust bundle and CRLs no longer accept. */
  private closeInvalidated(): number {
    const closed: string[] = [];
    for (const s of this.sockets) {
      const p = this.peers.get(s);
      if (!p) continue;
      // The chain as verified at the handshake: the socket keeps the context it was made with. A
      // resumed session's socket has the leaf alone: the chain recorded at its full handshake.
      const why = p.resumed
        ? chainWithdrawn(p.facts.chain ?? { serials: [p.facts.serial], anchor: "" }, this.material.trust)
        : withdrawn(s.getPeerCertificate(true), this.material.trust);
      if (!why) continue;
      closed.push(`${p.identity.name} (${why})`);
      s.destroy();
    }
    if (closed.length > 0) {
      this.opts.log.info(
        { event: "tls.connections_closed", count: closed.length, why: "trust withdrawn", peers: closed },
        `closed ${closed.length} connection(s) whose peer is no longer accepted: ${closed.join(", ")}`,
      );
    }
    return closed.length;
  }

  /**
   * Drains connections made before the current epoch without losing a request: each
   * gets "Connection: close" on its next response, and an idle one is closed by the
   * keep-alive timeout, which the mesh's callers stay under (client.ts). Ending idle ones
   * ourselves raced a caller that took one from its pool at that moment: its request was
   * lost ("other side closed"; three orders in the online drill on a loaded machine). Any
   * still open at the deadline (a request stuck in flight) are destroyed.
   */
  drain(why: string, graceMs = this.limits.drainGraceMs): number {
    let count = 0;
    for (const s of this.sockets) if (this.peers.get(s)?.epoch !== this.epoch) count++;
    if (count === 0) return 0;
    this.opts.log.info(
      { event: "tls.connections_closed", count, why, graceMs },
      `draining ${count} connection(s) made before ${why}: each after its next answer, idle ones at their keep-alive timeout (${this.limits.keepAliveTimeoutMs} ms)`,
    );
    // HTTP/2's own "Connection: close": GOAWAY now, so the peer opens its next streams on a new
    // connection while the streams under way finish on this one.
    for (const s of this.sockets) {
      const p = this.peers.get(s);
      if (p?.session && p.epoch !== this.epoch && !p.session.closed) p.session.close();
    }
    const deadline =
      Date.now() + Math.max(graceMs + this.limits.requestTimeoutMs, this.limits.keepAliveTimeoutMs + 1_000);
    if (this.sweeping) clearTimeout(this.sweeping);
    const sweep = () => {
      let left = 0;
      for (const s of this.sockets) {
        const p = this.peers.get(s);
        if (!p || p.epoch === this.epoch) continue;
        if (Date.now() >= deadline) s.destroy();
        else left++;
      }
      this.sweeping = left > 0 ? setTimeout(sweep, 250).unref() : undefined;
    };
    this.sweeping = setTimeout(sweep, graceMs).unref();
    return count;
  }

  close(): Promise<void> {
    if (this.sweeping) clearTimeout(this.sweeping);
    this.logs.access.close();
    return new Promise((resolve) => {
      this.https.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  /**
   * The verdict on a connection whose handshake OpenSSL finished. What the peer's certificate
   * says is read once per certificate (PeerCerts), not once per handshake. A resumed session
   * skipped OpenSSL's chain and CRL checks: its certificate is judged again here against the
   * trust in force (see resumedRefusal), though sessions never outlive the material they were
   * made under (setMaterial).
   */
  private onSecureConnection(sock: TLSSocket): void {
    const resumed = sock.isSessionReused();
    const facts = sock.authorized ? this.certs.of(sock, resumed) : undefined;
    if (!facts) {
      const shown = presented(sock.getPeerCertificate());
      const code = String(sock.authorizationError ?? (sock.authorized ? "NO_PEER_CERTIFICATE" : "UNKNOWN"));
      const { reason, sentence } = handshakeReason(
        code,
        sock.getPeerX509Certificate(),
        shown,
        this.material.trust,
        this.opts.service,
      );
      this.refuse(sock, reason, sentence, remoteOf(sock), code, shown);
      return;
    }
    // OpenSSL judged the dates by the machine's clock; a process with its own (MESH_CLOCK_OFFSET_MS)
    // judges them again (a resumed session's certificate too), from the facts already read.
    const late = datesByProcessClock(
      facts.cert,
      () => `the client's certificate (${formatShown(presented(facts.cert))})`,
    );
    if (late) {
      this.refuse(sock, late.reason, late.sentence, remoteOf(sock), late.code, presented(facts.cert));
      return;
    }
    const id = facts.identity;
    if (!id.ok) {
      this.refuse(
        sock,
        id.reason,
        `the client's certificate cannot be used as a mesh identity: ${id.detail}`,
        remoteOf(sock),
        undefined,
        presented(facts.cert),
      );
      return;
    }
    if (resumed) {
      const why = resumedRefusal(facts, this.material.trust);
      if (why) {
        this.refuse(sock, why.reason, why.sentence, remoteOf(sock), undefined, presented(facts.cert));
        return;
      }
    }
    const state: PeerState = {
      identity: id.identity,
      facts,
      // Read only for a log line: getpeername() is a system call, not worth a handshake's time.
      get remote() {
        return remoteOf(sock);
      },
      epoch: this.epoch,
      inFlight: 0,
      resumed,
    };
    this.peers.set(sock, state);
    (sock as TLSSocket & { [PEER]?: PeerState })[PEER] = state;
    this.opts.metrics?.handshakeAccepted(sock, resumed);
    this.sockets.add(sock);
    sock.on("close", this.forgetSocket);
  }

  private refuse(
    sock: TLSSocket,
    reason: string,
    sentence: string,
    remote: string,
    tlsCode: string | undefined,
    peer: PresentedCert | undefined,
  ): void {
    this.opts.metrics?.handshakeRefused(reason, sock);
    // Refused for its dates, an HTTP/1.1 caller is told so with this service's clock (callee-clock.ts).
    if (!answerDateRefusal(sock, reason)) sock.destroy();
    this.opts.log.warn(
      {
        event: "tls.handshake_failed",
        reason,
        remote,
        tlsCode,
        peer,
        trusts: reason === "unknown_ca" ? this.material.trust.subjects : undefined,
      },
      sentence,
    );
  }

  private onTlsClientError(err: NodeJS.ErrnoException, sock: TLSSocket): void {
    const { reason, sentence } = clientErrorReason(err, this.material.leaf, {
      protocol: sock.getProtocol(),
      handshakeTimeoutMs: this.limits.handshakeTimeoutMs,
    });
    const remote = sock.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort}` : undefined;
    this.opts.metrics?.handshakeRefused(reason, sock);
    this.opts.log.warn({ event: "tls.handshake_failed", reason, remote, tlsCode: err.code }, sentence);
    if (!sock.destroyed) sock.destroy();
  }

  /**
   * The policy's verdict and the route for a request. A keep-alive connection mostly repeats
   * one request: that is answered from the connection's memo, while the policy is the same
   * object (a reload makes a new one) and the method and path are the same. A new connection's
   * first request is mostly one an earlier connection of the same caller made: that is answered
   * from the server's memo, under the same condition.
   */
  private routed(peer: PeerState, method: string, path: string): Routed {
    const policy = this.opts.policy();
    const last = peer.last;
    if (last !== undefined && last.policy === policy && last.method === method && last.path === path) return last;
    if (path.length > SHARED_PATH_MAX) return (peer.last = this.route(policy, peer.identity, method, path));
    if (this.sharedPolicy !== policy) {
      this.shared.clear();
      this.sharedPolicy = policy;
    }
    const key = `${peer.identity.name}\0${peer.identity.spiffeId ?? ""}\0${method}\0${path}`;
    let r = this.shared.get(key);
    if (r === undefined) {
      r = this.route(policy, peer.identity, method, path);
      // A caller that sends ever new paths only empties it: no eviction to keep in order.
      if (this.shared.size >= SHARED_ROUTED_MAX) this.shared.clear();
      this.shared.set(key, r);
    }
    return (peer.last = r);
  }

  private route(policy: Policy, caller: PeerIdentity, method: string, path: string): Routed {
    const decision = decide(policy, this.opts.service, caller.name, method, path, caller.spiffeId);
    let route: Route | undefined;
    let params: Record<string, string> = NO_PARAMS;
    let pathKnown = false;
    // Routed whatever the verdict, so that a denied request is counted under its route's pattern
    // (a hostile path still matches only the service's own patterns, else "(unmatched)").
    for (const r of this.routes) {
      const p = r.match(path);
      if (p === null) continue;
      pathKnown = true;
      // HEAD is GET without the body (RFC 9110 9.3.2): Node's response drops the body.
      if (r.method === method || (method === "HEAD" && r.method === "GET")) {
        // Shared by the requests that repeat this one: nobody may change it.
        params = Object.isFrozen(p) ? p : Object.freeze(p);
        route = r.route;
        break;
      }
    }
    return { policy, method, path, decision, route, params, pathKnown };
  }

  /** After the handshake: a request that is too slow, too large or not HTTP at all. */
  private onClientError(err: NodeJS.ErrnoException, sock: TLSSocket): void {
    const peer = this.peers.get(sock);
    // https re-emits every tlsClientError as clientError: a peer that never got past the
    // handshake is onTlsClientError's to log (one failure, one line), and there is no HTTP
    // to answer on a socket that does not speak TLS.
    if (!peer) {
      // onTlsClientError (listening after https) logs and destroys it within this tick; a
      // refusal already answered closes by itself (destroyed now, its answer could be lost).
      if (!refusalAnswered(sock)) setImmediate(() => sock.destroyed || sock.destroy());
      return;
    }
    // A peer that went away mid-request: nobody to answer, nothing to act on.
    if (err.code !== "ECONNRESET") {
      const { reason, status, sentence } = httpErrorReason(err, this.limits);
      this.opts.log.warn(
        { event: "http.client_error", reason, peer: peer?.identity.name, remote: peer?.remote, code: err.code },
        sentence,
      );
      if (peer) peer.refused = status;
      // What Node itself answers when nobody listens for clientError.
      if (sock.writable) sock.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
    }
    sock.destroy();
  }

  private onRequest(req: Req, res: Res): void {
    const sock = req.socket as TLSSocket & { [PEER]?: PeerState };
    const peer = sock[PEER];
    // Second line of defence: onSecureConnection should have destroyed such a socket (or
    // answered its refusal: that one closes by itself, and its request is not served).
    if (!peer || !sock.authorized) {
      if (!refusalAnswered(sock)) sock.destroy();
      return;
    }
    peer.inFlight++;
    if (peer.epoch !== this.epoch) (res as ServerResponse).shouldKeepAlive = false;
    const method = req.method ?? "GET";
    const path = pathOf(req.url);
    const caller = peer.identity.name;
    const { decision: d, route, params, pathKnown } = this.routed(peer, method, path);
    const series = this.opts.metrics?.series(peer.last!, caller);
    if (!d.allow) {
      this.logDenied(peer, method, path, d);
      series?.denied();
      req.resume();
      // A gRPC client reads a refusal from grpc-status, never from an HTTP status.
      if (isGrpc(req)) {
        sendGrpcStatus(
          res,
          peer,
          GRPC_PERMISSION_DENIED,
          `${caller} may not call ${method} ${path} on ${this.opts.service} (rule ${d.rule})`,
        );
        return;
      }
      send(res, peer, 403, this.deniedBody(peer, method, path, d));
      return;
    }
    if (d.wouldDeny) {
      this.logWouldDeny(peer, method, path, d);
      series?.wouldDeny();
    }
    const x = new Exchange(res, peer, method, path, d.rule, this.logs);
    x.series = series;
    if (this.opts.forward) {
      peer.forward ??= forwardPeer(peer.facts, peer.identity);
      this.opts.forward(req, res, peer.forward, (status) => x.forwarded(status));
      return;
    }
    if (!route) {
      req.resume();
      x.done(pathKnown ? 405 : 404, { error: pathKnown ? "method_not_allowed" : "not_found" });
      return;
    }
    x.route = route;
    x.params = params;
    // requestTimeout bounds an HTTP/1.1 request only: an HTTP/2 stream to a route gets as long
    // without progress (a forwarded stream, gRPC's, may be quiet for longer and has none).
    if ("stream" in req) req.setTimeout(this.limits.requestTimeoutMs, () => req.stream.close(constants.NGHTTP2_CANCEL));
    if (method === "GET" || method === "HEAD" || method === "DELETE") {
      req.resume();
      x.run(undefined);
      return;
    }
    const type = req.headers["content-type"];
    if (hasBody(req) && !isJson(type)) {
      // Parsing a text/plain or form body as JSON would act on what the sender did not mean as JSON.
      (res as ServerResponse).shouldKeepAlive = false;
      res.once("finish", () => req.destroy());
      const got = type === undefined ? "no content-type" : type.split(";")[0]!.trim().slice(0, 64);
      x.done(415, {
        error: "unsupported_media_type",
        message: `${method} ${path} takes a JSON body: send it with content-type: application/json (got ${got})`,
      });
      return;
    }
    readJson(req, this.limits.maxBodyBytes).then(
      (body) => x.run(body),
      (e: HttpError) => {
        // The connection broke while the body was on its way: no answer can be sent.
        if (sock.destroyed || e.status === 499) return x.abandoned();
        // The rest of an oversized body is not worth reading: answer, then drop the socket.
        (res as ServerResponse).shouldKeepAlive = false;
        res.once("finish", () => req.destroy());
        x.done(e.status, e.body);
      },
    );
  }
}

interface ExchangeLogs {
  readonly log: MeshLogger;
  /** Where each answered request goes: its own `request` line, or a summary's count. */
  readonly access: AccessLog;
}

/**
 * One authorized request on its way to a handler and back. A class rather than closures:
 * this is the hot path, and it allocates one object per request instead of several.
 */
class Exchange {
  route: Route | undefined;
  params: Record<string, string> = NO_PARAMS;
  series: RequestSeries | undefined;
  private readonly started = performance.now();
  constructor(
    /** Undefined for a spliced request: answered by the splice, logged by forwarded(). */
    private readonly res: Res | undefined,
    private readonly state: PeerState,
    private readonly method: string,
    private readonly path: string,
    private readonly rule: string,
    private readonly logs: ExchangeLogs,
  ) {}

  run(body: unknown): void {
    let out: Reply | Promise<Reply>;
    try {
      out = this.route!.handle({
        peer: this.state.identity,
        method: this.method,
        path: this.path,
        params: this.params,
        body,
      });
    } catch (e) {
      this.fail(e);
      return;
    }
    // Synchronous handlers answer without a promise tick.
    if (out instanceof Promise)
      out.then(
        (r) => this.done(r.status, r.body),
        (e: unknown) => this.fail(e),
      );
    else this.done(out.status, out.body);
  }

  fail(e: unknown): void {
    if (e instanceof HttpError) {
      this.done(e.status, e.body);
      return;
    }
    this.logs.log.error(
      { event: "request", err: messageOf(e), method: this.method, path: this.path },
      "handler failed",
    );
    this.done(500, { error: "internal" });
  }

  /**
   * Logs the `request` line of a request whose connection closed before it was answered:
   * with the status the server refused the connection with, or nginx's 499 when the
   * client went away.
   */
  abandoned(): void {
    this.state.inFlight--;
    const status = this.state.refused ?? 499;
    this.series?.answered(status, this.ms());
    this.logs.log.info(
      {
        event: "request",
        peer: this.state.identity.name,
        method: this.method,
        path: this.path,
        status,
        rule: this.rule,
        ms: this.ms(),
        abandoned: true,
      },
      "request abandoned: the connection closed before the answer",
    );
  }

  private ms(): number {
    return Math.round((performance.now() - this.started) * 100) / 100;
  }

  /** A forwarder answered (see app.ts): log and count it as done() does. */
  forwarded(status: number): void {
    this.state.inFlight--;
    const ms = this.ms();
    this.series?.answered(status, ms);
    this.logs.access.record(
      { peer: this.state.identity.name, method: this.method, path: this.path, status, rule: this.rule, ms },
      "(forwarded)",
    );
  }

  /** Send the answer and log the `request` line. */
  done(status: number, body: unknown): void {
    if (this.res) send(this.res, this.state, status, body);
    const ms = this.ms();
    this.series?.answered(status, ms);
    this.logs.access.record(
      { peer: this.state.identity.name, method: this.method, path: this.path, status, rule: this.rule, ms },
      this.route?.path ?? "(no route)",
    );
  }
}

function send(res: Res, peer: { inFlight: number }, status: number, body: unknown): void {
  if (res.headersSent) return;
  peer.inFlight--;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** The caller's certificate facts a forwarder passes on (XFCC): read once per connection, from the certificate's cached form. */
function forwardPeer(facts: CertFacts, identity: PeerIdentity): ForwardPeer {
  const c = facts.cert;
  return { identity, der: c.raw, san: c.subjectaltname, subject: formatSubject(c.subject) };
}

function remoteOf(sock: TLSSocket): string {
  return `${sock.remoteAddress}:${sock.remotePort}`;
}

/** RFC 2253 order (most specific first), as Envoy writes XFCC's Subject. */
function formatSubject(n: object | undefined): string | undefined {
  if (!n) return undefined;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(n))
    for (const x of Array.isArray(v) ? v : [v])
      parts.push(`${k}=${String(x).replace(/[,+"\\<>;=]/g, (ch) => `\\${ch}`)}`);
  return parts.reverse().join(",");
}

function hasBody(req: Req): boolean {
  const len = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (len !== undefined && len !== "0");
}

/** application/json, or a structured +json type, whatever its parameters (charset=utf-8). */
function isJson(type: string | undefined): boolean {
  if (type === undefined) return false;
  const media = type.split(";")[0]!.trim().toLowerCase();
  return media === "application/json" || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(media);
}

function readJson(req: Req, max: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners("data");
        req.pause();
        reject(new HttpError(413, { error: "body_too_large", max }));
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (size === 0) return resolve(undefined);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch {
        reject(new HttpError(400, { error: "bad_json", message: "the request body is not valid JSON" }));
      }
    });
    req.on("error", () => reject(new HttpError(400, { error: "bad_request" })));
    // An HTTP/2 stream reset mid-body ends neither in "end" nor in "error".
    req.once("aborted", () => reject(new HttpError(499, { error: "aborted" })));
  });
}

function formatShown(p: PresentedCert | undefined): string {
  return p ? `${p.subject}, serial ${p.serial}` : "unreadable";
}
