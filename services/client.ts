// Calls from one service to another over mTLS: one undici Agent per own identity, dialing
// 127.0.0.1 with the callee's DNS name as SNI and for the server-certificate check.
import { createRequire } from "node:module";
import type { Agent, Dispatcher, Pool } from "undici";
import type { TlsMaterial } from "./material.ts";
import type { MeshLogger } from "./log.ts";
import { MeshError } from "./errors.ts";
import { dnsName } from "./names.ts";
import { upstreamReason, type UpstreamReason } from "./reasons.ts";
import { connect } from "node:tls";
import { presented, type PresentedCert } from "./identity.ts";

// undici adds about 20 MB to a process that loads it: only a service that calls another does.
const loadUndici = (): typeof import("undici") => createRequire(import.meta.url)("undici");

export interface UpstreamReply {
  readonly status: number;
  readonly body: unknown;
}

export class UpstreamError extends MeshError {
  constructor(readonly upstream: string, readonly reason: UpstreamReason, message: string, readonly status?: number) {
    super("UPSTREAM_FAILED", message);
  }
}

export interface UpstreamOptions {
  timeoutMs?: number;
}

export class Upstreams {
  /** Absent while this service calls no one. */
  private agent: Agent | undefined;
  private readonly timeoutMs: number;
  /** origin "https://127.0.0.1:7402" -> servername "payment.internal" */
  private readonly servernames = new Map<string, string>();
  private readonly origins = new Map<string, string>();

  private material: TlsMaterial;

  constructor(private readonly service: string, material: TlsMaterial, addrs: Readonly<Record<string, string>>, private readonly log: MeshLogger, opts: UpstreamOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    for (const [name, addr] of Object.entries(addrs)) {
      const origin = `https://${addr}`;
      this.origins.set(name, origin);
      this.servernames.set(new URL(origin).origin, dnsName(name));
    }
    this.material = material;
    this.agent = this.origins.size > 0 ? this.build(material) : undefined;
  }

  private build(m: TlsMaterial): Agent {
    const { Agent, Pool } = loadUndici();
    const timeout = this.timeoutMs;
    return new Agent({
      // No session cache: every new connection shows our certificate again, so a revocation
      // or rotation is judged on the next connection, not on the next full handshake.
      connect: { ca: m.ca, cert: m.cert, key: m.key, minVersion: "TLSv1.2", timeout, maxCachedSessions: 0 },
      headersTimeout: timeout,
      bodyTimeout: timeout,
      keepAliveTimeout: 4_000, // below the servers' 5 s, so we never reuse a socket they are closing
      // Per-origin SNI: each callee is dialed by IP but must prove it is <name>.internal.
      factory: (origin: string | URL, opts: Pool.Options) => {
        const servername = this.servernames.get(new URL(String(origin)).origin);
        const connect = { ...(opts.connect as object), servername };
        return new Pool(origin, { ...opts, connect });
      },
    });
  }

  /** New own certificate or new trust: new connections use it; in-flight calls finish on the old agent. */
  setMaterial(m: TlsMaterial): void {
    const old = this.agent;
    this.agent = this.origins.size > 0 ? this.build(m) : undefined;
    this.material = m;
    old?.close().catch(() => {});
  }

  /**
   * Call `name` and return its status and parsed JSON body. Transport failures and
   * answers >= 500 or 403 throw UpstreamError and are logged as `upstream.failed` with a
   * reason the operator can act on; other statuses (404, 409, 402...) are the callee's
   * business answer and are returned.
   */
  async call(name: string, method: Dispatcher.HttpMethod, path: string, body?: unknown): Promise<UpstreamReply> {
    const origin = this.origins.get(name);
    if (!origin) {
      const msg = `${this.service} has no address for upstream ${name} (start it with --upstream ${name}=127.0.0.1:PORT)`;
      this.log.error({ event: "upstream.failed", upstream: name, method, path, reason: "upstream_down" }, msg);
      throw new UpstreamError(name, "upstream_down", msg);
    }
    let status: number;
    let parsed: unknown;
    try {
      const res = await this.agent!.request({
        origin,
        method,
        path,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs * 2),
      });
      status = res.statusCode;
      const text = await res.body.text();
      parsed = text ? safeJson(text) : undefined;
    } catch (e) {
      const addr = origin.slice("https://".length);
      const { reason, code, sentence } = upstreamReason(e, name, addr);
      if (reason === "server_untrusted") {
        // Say which CA signed what the callee showed, and which ones we trust: that is the fix.
        const shown = await servedCertificate(addr, dnsName(name), this.material);
        const detail = `${shown ? `it presented ${shown.subject} (serial ${shown.serial}) issued by ${shown.issuer}` : "its certificate could not be read"}; ${this.service} trusts only: ${this.material.trust.describe}`;
        this.log.warn({ event: "upstream.failed", upstream: name, addr, method, path, reason, code, peer: shown, trusts: this.material.trust.subjects }, `${sentence}: ${detail}`);
        throw new UpstreamError(name, reason, `${sentence}: ${detail}`);
      }
      this.log.warn({ event: "upstream.failed", upstream: name, addr, method, path, reason, code }, sentence);
      throw new UpstreamError(name, reason, sentence);
    }
    if (status === 403 || status >= 500) {
      const reason: UpstreamReason = status === 403 ? "forbidden" : "upstream_error";
      const rule = (parsed as { rule?: unknown } | undefined)?.rule;
      const sentence =
        status === 403
          ? `${name} refused ${method} ${path} for ${this.service} (rule ${String(rule)}); the mesh policy does not allow this call`
          : `${name} answered ${status} to ${method} ${path}`;
      this.log.warn({ event: "upstream.failed", upstream: name, method, path, reason, status, rule }, sentence);
      throw new UpstreamError(name, reason, sentence, status);
    }
    return { status, body: parsed };
  }

  close(): Promise<void> {
    return this.agent?.close() ?? Promise.resolve();
  }
}

/**
 * The certificate a server shows, read on a connection that does not verify it
 * (and sends no request): for explaining a refusal, never for trusting anything.
 */
function servedCertificate(addr: string, servername: string, own: TlsMaterial): Promise<PresentedCert | undefined> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve) => {
    // Our own certificate goes along, so the server sees a proper client and no failure to log.
    const sock = connect({ host, port, servername, cert: own.cert, key: own.key, rejectUnauthorized: false }, () => {
      resolve(presented(sock.getPeerCertificate()));
      sock.end();
    });
    sock.setTimeout(1_000, () => sock.destroy());
    sock.on("error", () => resolve(undefined));
    sock.on("close", () => resolve(undefined));
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
