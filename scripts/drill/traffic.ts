// Steady traffic for the rotation drill: a client with its own mesh identity
// ("edge") places orders at a bounded rate; order then calls inventory and
// payment. Like a service, it reloads its certificate and trust when they change.
import { Agent } from "undici";
import { loadMaterial, materialPaths, type MaterialPaths, type TlsMaterial } from "../../services/mesh/material.ts";
import { watchFiles, type Watch } from "../../services/mesh/reload.ts";
import { upstreamReason } from "../../services/mesh/reasons.ts";
import { dateRefusalOf } from "../../services/mesh/callee-clock.ts";

export interface PhaseCounts {
  sent: number;
  succeeded: number;
  failed: number;
  /** Why requests failed: "502 payment:server_untrusted", "network:UND_ERR_SOCKET", … */
  reasons: Record<string, number>;
}

export interface TrafficOptions {
  pki: string;
  /** The client's identity, e.g. "edge.internal". */
  identity: string;
  /** Where order listens. */
  port: number;
  /** Requests per second. */
  rate: number;
  /** Its own files instead of the CA folder's (identity mode: a state folder). */
  paths?: MaterialPaths;
  /**
   * A new connection after this many requests (default: keep-alive only). A mesh's clients come
   * and go; an expired certificate is refused only on a new handshake, never on a live connection.
   */
  requestsPerConnection?: number;
  /** Called when the client picked up new material (for the timeline). */
  onReload?: (what: { certChanged: boolean; trustChanged: boolean; serial: string; at: number }) => void;
}

const MAX_IN_FLIGHT = 64;

/**
 * The longest stretch of [from, to] without a successful answer: from its start to the first
 * success, between successes, and from the last one to its end. Clipped to the window, so an
 * outage that began in an earlier phase counts in each phase only for the part it lasted there.
 */
export function longestGap(successes: readonly number[], from: number, to: number): number {
  let longest = 0;
  let last = from;
  for (const t of successes) {
    if (t < from || t > to) continue;
    longest = Math.max(longest, t - last);
    last = t;
  }
  return Math.max(longest, to - last);
}

export class Traffic {
  phase = "start";
  /** While true, no order is placed: a lull, in which idle keep-alive connections close. */
  paused = false;
  readonly counts = new Map<string, PhaseCounts>();
  private material: TlsMaterial;
  private agent: Agent;
  private timer?: NodeJS.Timeout;
  private watch?: Watch;
  private inFlight = new Set<Promise<void>>();
  private readonly marks = new Set<PhaseCounts>();
  /** When each successful answer arrived (ms since the epoch), for the gaps of longestGap(). */
  readonly successes: number[] = [];

  constructor(private readonly o: TrafficOptions) {
    this.material = loadMaterial(this.paths, o.identity);
    this.agent = this.build(this.material);
  }

  private get paths(): MaterialPaths {
    return this.o.paths ?? materialPaths(this.o.pki, this.o.identity);
  }

  private build(m: TlsMaterial): Agent {
    return new Agent({
      connect: { ca: m.ca, cert: m.cert, key: m.key, servername: "order.internal", maxCachedSessions: 0 },
      keepAliveTimeout: 4_000,
      ...(this.o.requestsPerConnection ? { maxRequestsPerClient: this.o.requestsPerConnection } : {}),
      headersTimeout: 5_000,
      bodyTimeout: 5_000,
    });
  }

  /** Re-reads own certificate and trust; a half-written pair is ignored until the next change. */
  reload(): boolean {
    let next: TlsMaterial;
    try {
      next = loadMaterial(this.paths, this.o.identity);
    } catch {
      return false;
    }
    const certChanged = next.certDigest !== this.material.certDigest;
    const trustChanged = next.trustDigest !== this.material.trustDigest;
    if (!certChanged && !trustChanged) return true;
    const old = this.agent;
    this.agent = this.build(next);
    this.material = next;
    // Requests in flight finish on the old agent; its idle connections close from our side.
    old.close().catch(() => {});
    this.o.onReload?.({ certChanged, trustChanged, serial: next.leaf.serial, at: Date.now() });
    return true;
  }

  get serial(): string {
    return this.material.leaf.serial;
  }

  start(): void {
    this.watch = watchFiles(Object.values(this.paths), () => this.reload());
    this.timer = setInterval(() => this.tick(), 1000 / this.o.rate);
  }

  private bucket(): PhaseCounts {
    let c = this.counts.get(this.phase);
    if (!c) this.counts.set(this.phase, (c = { sent: 0, succeeded: 0, failed: 0, reasons: {} }));
    return c;
  }

  /**
   * Counts, from now on, only the requests sent from now on: how a fix fared, without
   * the requests that were already failing when it landed.
   */
  mark(): PhaseCounts {
    const m = { sent: 0, succeeded: 0, failed: 0, reasons: {} };
    this.marks.add(m);
    return m;
  }

  /** Stops counting new requests into a mark; those already sent still report to it. */
  unmark(m: PhaseCounts): void {
    this.marks.delete(m);
  }

  get succeeded(): number {
    let n = 0;
    for (const c of this.counts.values()) n += c.succeeded;
    return n;
  }

  private tick(): void {
    if (this.paused) return;
    const counts = [this.bucket(), ...this.marks];
    for (const c of counts) c.sent++;
    if (this.inFlight.size >= MAX_IN_FLIGHT) {
      this.fail(counts, "client:too_many_in_flight");
      return;
    }
    const p = this.one(counts).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async one(counts: PhaseCounts[]): Promise<void> {
    try {
      const res = await this.agent.request({
        origin: `https://127.0.0.1:${this.o.port}`,
        method: "POST",
        path: "/orders",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ sku: "widget", quantity: 1 }),
      });
      const text = await res.body.text();
      if (res.statusCode === 201) {
        for (const c of counts) c.succeeded++;
        this.successes.push(Date.now());
        return;
      }
      // order refused edge's certificate for its dates, and said so (services/mesh/callee-clock.ts).
      const refused = res.statusCode === 400 ? dateRefusalOf(res.headers) : null;
      if (refused) {
        this.fail(counts, `order:rejected_in_handshake (MESH_REFUSED ${refused})`);
        return;
      }
      let detail = "";
      try {
        const body = JSON.parse(text) as { upstream?: string; reason?: string; error?: string };
        detail = body.upstream ? `${body.upstream}:${body.reason ?? body.error}` : String(body.error ?? "");
      } catch {
        /* not JSON */
      }
      this.fail(counts, `${res.statusCode} ${detail}`.trim());
    } catch (err) {
      const { reason, code } = upstreamReason(err, "order", `127.0.0.1:${this.o.port}`);
      this.fail(counts, `order:${reason} (${code})`);
    }
  }

  private fail(counts: PhaseCounts[], reason: string): void {
    for (const c of counts) {
      c.failed++;
      c.reasons[reason] = (c.reasons[reason] ?? 0) + 1;
    }
  }

  /**
   * Waits (at most timeoutMs) for the requests already sent to be answered, while traffic goes on.
   * A drill calls it between switching to a new phase and breaking something, so a request of a
   * safe phase that is slow on a loaded machine is not cut by the break and counted as lost there.
   */
  async settle(timeoutMs = 10_000): Promise<void> {
    const sent = [...this.inFlight];
    if (sent.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(sent),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Stops sending and waits for every request in flight to finish. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.watch?.close();
    await Promise.allSettled([...this.inFlight]);
    await this.agent.close().catch(() => {});
  }
}
