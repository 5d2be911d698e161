// The online mesh the failure drills break and heal: the CA server in its own process
// (ca-process.ts), payment, inventory and order enrolled with a token each, and edge, the traffic
// client, enrolled and renewed by the same identity agent in this process. The parts are the
// rotation drill's (LogBook, Traffic, launchService, startDrillCa); this module only puts them
// together once, with the phase bookkeeping each failure drill's story is told in.
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createToken, type CertificateAuthority } from "../../ca/index.ts";
import { enrolWithToken, parseToken } from "../../services/mesh/identity-agent/bootstrap.ts";
import { IdentityAgent } from "../../services/mesh/identity-agent/renewer.ts";
import { statePaths, type StatePaths } from "../../services/mesh/identity-agent/state-folder.ts";
import { createLogger } from "../../services/mesh/log.ts";
import { launchService, type Launched } from "../launch.ts";
import { parseLine } from "../mesh-format.ts";
import { startDrillCa, type DrillCa } from "./ca-process.ts";
import { DRILL_POLICY, openDrillCa, SERVICES, type Check, type Setup } from "./drill.ts";
import { LogBook, type Entry } from "./logbook.ts";
import type { PhaseReport } from "./phases.ts";
import { longestGap, Traffic } from "./traffic.ts";

/** Enrolments and renewals are the drill's own: the server's per-name limits must not pace them. */
const LIMITS = { perAddress: { capacity: 1000, perMinute: 6000 }, perName: { capacity: 1000, perMinute: 6000 } };

/** A failure drill's phase: the rotation drill's report, with a name of the drill's own. */
export interface StoryPhase extends Omit<PhaseReport, "name"> {
  name: string;
}

/** One log line a person should look for, as the drill saw it. */
export interface Evidence {
  service: string;
  event: string;
  reason: string;
  msg: string;
  at: string;
}

/** What every failure drill reports: its phases, the lines on both sides, its checks. */
export interface StoryReport {
  drill: string;
  ok: boolean;
  dir: string;
  stateRemoved: boolean;
  reportFile: string;
  logs: string;
  rate: number;
  lifetimeMs: number;
  pollMs: number;
  phases: StoryPhase[];
  evidence: Evidence[];
  /** What heals it, in the operator's words (who acted, and how). */
  heal: string;
  checks: Check[];
  /** Anything else the drill measured (ports, serials, fingerprints). */
  facts: Record<string, unknown>;
}

/** Ends a wait for a line once `orders` orders succeeded after `after` (ms since the epoch) without it. */
export interface QuietOrders {
  after: number;
  orders: number;
}

export interface MeshOptions {
  lifetimeMs: number;
  pollMs: number;
  /**
   * How often the CA summarises unauthenticated refusals (default its 10 s): within that window it
   * logs 3 of them, and a drill whose phases each need one such line waits for the next window.
   */
  refusalLogMs?: number;
}

const seconds = (ms: number) => `${Math.max(1, Math.round(ms / 1000))}s`;

/** The running online mesh of a failure drill; close() stops everything it started. */
export class DrillMesh {
  readonly book = new LogBook();
  readonly services = new Map<string, Launched>();
  readonly ports: Record<string, number> = { payment: 0, inventory: 0, order: 0 };
  readonly logs: string;
  readonly policy: string;
  readonly lifetime: string;
  readonly lifeMs: number;
  server?: DrillCa;
  caUrl = "";
  caPort = 0;
  traffic?: Traffic;
  private edgeAgent?: IdentityAgent;
  private readonly edgeLog;
  private readonly phases: Array<{
    name: string;
    title: string;
    safe: boolean;
    at: number;
    until?: number;
    notes: string[];
  }> = [];
  private readonly stateRoot: string;

  private constructor(
    readonly setup: Setup,
    readonly ca: CertificateAuthority,
    readonly o: MeshOptions,
  ) {
    this.logs = join(setup.work, "logs");
    this.stateRoot = join(setup.work, "state");
    this.policy = join(setup.work, "policy.toml");
    this.lifetime = seconds(o.lifetimeMs);
    this.lifeMs = Number(this.lifetime.slice(0, -1)) * 1000;
    rmSync(this.logs, { recursive: true, force: true });
    rmSync(this.stateRoot, { recursive: true, force: true });
    mkdirSync(this.logs, { recursive: true });
    mkdirSync(this.stateRoot, { recursive: true, mode: 0o700 });
    writeFileSync(this.policy, DRILL_POLICY);
    const book = this.book;
    const file = join(this.logs, "edge.log");
    this.edgeLog = createLogger("edge", {
      write(s: string) {
        appendFileSync(file, s);
        for (const raw of s.split("\n")) {
          const line = parseLine(raw);
          if (line) book.add("edge", line);
        }
      },
    });
  }

  /** The CA, its server, the three services and edge's traffic, flowing. Close it in a finally. */
  static async open(setup: Setup, o: MeshOptions): Promise<DrillMesh> {
    const mesh = new DrillMesh(setup, await openDrillCa(setup.pki), o);
    return mesh;
  }

  stateOf(who: string): StatePaths {
    return statePaths(join(this.stateRoot, who));
  }

  drillLog(line: Record<string, unknown>): void {
    appendFileSync(
      join(this.logs, "drill.log"),
      `${JSON.stringify({ time: new Date().toISOString(), level: 30, service: "drill", ...line })}\n`,
    );
  }

  /** Starts the CA server (again on the same port once it has one). */
  async startCa(): Promise<void> {
    this.server = await startDrillCa(
      {
        pki: this.setup.pki,
        lifetimeMs: this.lifeMs,
        limits: LIMITS,
        pollMs: Math.min(500, this.o.pollMs),
        port: this.caPort,
        refusalLogMs: this.o.refusalLogMs,
      },
      { logFile: join(this.logs, "ca.log"), onLine: (line) => this.book.add("ca", line) },
    );
    this.caUrl = this.server.url;
    this.caPort = Number(new URL(this.caUrl).port);
  }

  /** Stops the CA server process (the outage): SIGTERM, as an operator's `systemctl stop`. */
  async stopCa(): Promise<void> {
    await this.server?.stop();
    this.server = undefined;
  }

  /** A service as its own process; with `token`, it enrols (again) with a new one-time token. */
  async startService(
    service: string,
    o: { token?: boolean; lifetimeMs?: number; env?: Record<string, string> } = { token: true },
  ): Promise<Launched> {
    // The admin port (metrics, healthz) on any free port: its admin.listening line says which.
    const env: NodeJS.ProcessEnv = { ...process.env, MESH_INVENTORY_STOCK: "widget=10000000", MESH_ADMIN_PORT: "0" };
    delete env.MESH_ENROL_TOKEN;
    delete env.MESH_CLOCK_OFFSET_MS; // a drill's skew is given to one service, never inherited
    Object.assign(env, o.env);
    if (o.token) env.MESH_ENROL_TOKEN = createToken(this.ca, { domain: `${service}.internal`, replace: true }).token;
    const upstreams =
      service === "order"
        ? [`payment=127.0.0.1:${this.ports.payment}`, `inventory=127.0.0.1:${this.ports.inventory}`]
        : [];
    const svc = await launchService({
      service,
      port: this.ports[service] ?? 0,
      pki: this.setup.pki,
      policy: this.policy,
      upstreams,
      logFile: join(this.logs, `${service}.log`),
      onLine: (line) => line && this.book.add(service, line),
      env,
      identity: {
        ca: this.caUrl,
        state: this.stateOf(service).dir,
        lifetime: o.lifetimeMs ? seconds(o.lifetimeMs) : this.lifetime,
        poll: this.o.pollMs / 1000,
      },
    });
    this.services.set(service, svc);
    this.ports[service] = svc.port;
    return svc;
  }

  async stopService(service: string): Promise<void> {
    await this.services.get(service)?.stop();
    this.services.delete(service);
  }

  /** edge enrols with a token (again, after its state folder was moved aside) and its agent renews it. */
  async enrolEdge(lifetimeMs?: number): Promise<void> {
    this.edgeAgent?.stop();
    const lifetime = lifetimeMs ? seconds(lifetimeMs) : this.lifetime;
    const e = await enrolWithToken({
      caUrl: this.caUrl,
      token: parseToken(createToken(this.ca, { domain: "edge.internal", replace: true }).token, "the drill"),
      dns: "edge.internal",
      paths: this.stateOf("edge"),
      lifetime,
    });
    this.edgeLog.info(
      {
        event: "identity.enrolled",
        serial: e.facts.serial,
        issuer: e.facts.issuer,
        root: e.facts.root,
        generation: e.facts.generation,
        notAfter: e.facts.notAfter,
      },
      `enrolled edge.internal: serial ${e.facts.serial}`,
    );
    this.traffic?.reload();
    this.edgeAgent = new IdentityAgent(
      { caUrl: this.caUrl, dns: "edge.internal", paths: this.stateOf("edge"), lifetime, pollMs: this.o.pollMs },
      {
        reloadTls: () => this.traffic?.reload() ?? true,
        log: this.edgeLog,
        metrics: { renewed() {}, renewalFailed() {} },
      },
    );
    this.edgeAgent.start();
  }

  /** The whole mesh up, each identity enrolled over EST, and orders flowing. */
  async up(lifetimes: Record<string, number> = {}, o: { requestsPerConnection?: number } = {}): Promise<void> {
    const { say, rate, pause, until } = this.setup;
    await this.startCa();
    await pause(0);
    const started = await Promise.allSettled([
      this.startService("payment", { token: true, lifetimeMs: lifetimes.payment }),
      this.startService("inventory", { token: true, lifetimeMs: lifetimes.inventory }),
    ]);
    for (const r of started) if (r.status === "rejected") throw r.reason;
    // edge enrols while order starts: it needs only the CA (the traffic starts below).
    const next = await Promise.allSettled([
      this.startService("order", { token: true, lifetimeMs: lifetimes.order }),
      this.enrolEdge(lifetimes.edge),
    ]);
    for (const r of next) if (r.status === "rejected") throw r.reason;
    const s = this.stateOf("edge");
    // A new connection every 2 s or so: an expired identity is refused on new handshakes only.
    this.traffic = new Traffic({
      pki: this.setup.pki,
      identity: "edge.internal",
      port: this.ports.order!,
      rate,
      paths: { key: s.key, cert: s.cert, bundle: s.bundle, crls: s.crls },
      requestsPerConnection: o.requestsPerConnection ?? Math.max(5, 2 * rate),
    });
    this.traffic.start();
    say(
      `CA serving EST on ${this.caUrl}; order :${this.ports.order}, payment :${this.ports.payment}, inventory :${this.ports.inventory}, each enrolled with its own token; certificates live ${this.lifetime}; traffic ${rate} orders/s from edge`,
    );
    await until(() => this.traffic!.succeeded >= 3, "the first orders to get through", 30_000);
  }

  /**
   * Ends the phase in progress and begins the next; resolves once the requests the ended phase
   * sent are answered (new ones already count in the new phase), so a break made after awaiting
   * it cannot cut, and charge to a safe phase, a request that was merely slow.
   */
  async begin(name: string, title: string, safe: boolean): Promise<void> {
    this.end();
    this.phases.push({ name, title, safe, at: Date.now(), notes: [] });
    this.traffic!.phase = name;
    this.setup.say(`\n▶ ${title}`);
    this.drillLog({ event: "drill.phase", phase: name, safe, msg: title });
    await this.setup.orStop(this.traffic!.settle());
  }

  note(s: string): void {
    this.phases.at(-1)?.notes.push(s);
    this.setup.say(`  ${s}`);
  }

  end(): void {
    const p = this.phases.at(-1);
    if (p && p.until === undefined) p.until = Date.now();
  }

  /** The first line since `since` that matches, or undefined once timeoutMs passed; Ctrl-C ends the wait. */
  async line(
    what: string,
    since: number,
    match: (e: Entry) => boolean,
    timeoutMs: number,
    quiet?: QuietOrders,
  ): Promise<Entry | undefined> {
    const cancel = new AbortController();
    const found = this.setup.orStop(
      this.book.waitFor(what, since, match, timeoutMs, cancel.signal).catch(() => undefined),
    );
    if (!quiet) return found;
    // A story that did not happen ends the wait on an event too: that many orders got through,
    // all of them through the break, without the line (they would have failed, or logged it).
    let done = false;
    const orders = this.setup
      .until(
        () => done || this.traffic!.successes.filter((t) => t > quiet.after).length >= quiet.orders,
        `${quiet.orders} orders`,
        timeoutMs + 1_000,
      )
      .then(
        () => undefined,
        () => undefined,
      );
    const first = await Promise.race([found, orders]);
    done = true;
    cancel.abort();
    if (first !== undefined) return first;
    // Orders got through: the line, if it came with them, is in the book by now or never.
    return this.book.since(since, match)[0];
  }

  /**
   * The sum of one metric's samples whose labels include `labels`, as the service's /metrics
   * says now (its latest admin.listening line names the port); undefined when it does not answer.
   */
  async metric(service: string, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
    const listening = this.book.since(0, (e) => e.service === service && e.line.event === "admin.listening").at(-1);
    if (!listening) return undefined;
    try {
      const res = await fetch(`http://127.0.0.1:${String(listening.line.port)}/metrics`, {
        signal: AbortSignal.timeout(3_000),
      });
      return metricValue(await res.text(), name, labels);
    } catch {
      return undefined;
    }
  }

  /**
   * A failure drill's report: its own story, with what every one reports of its setup and mesh,
   * and the check each makes last (no request lost in a safe phase); written to report.json.
   */
  finish(
    story: Pick<StoryReport, "drill" | "phases" | "evidence" | "heal" | "checks" | "facts"> & { lifetimeMs?: number },
  ): StoryReport {
    const { setup } = this;
    const checks = [
      ...story.checks,
      ...story.phases
        .filter((p) => p.safe)
        .map((p) => ({
          name: `no request lost in ${p.name}`,
          ok: p.failed === 0 && p.sent > 0,
          detail: `${p.succeeded}/${p.sent} succeeded`,
        })),
    ];
    const report: StoryReport = {
      drill: story.drill,
      ok: checks.every((c) => c.ok),
      dir: setup.pki,
      stateRemoved: setup.removeState,
      reportFile: join(setup.work, "report.json"),
      logs: this.logs,
      rate: setup.rate,
      lifetimeMs: story.lifetimeMs ?? this.lifeMs,
      pollMs: this.o.pollMs,
      phases: story.phases,
      evidence: story.evidence,
      heal: story.heal,
      checks,
      facts: story.facts,
    };
    writeFileSync(report.reportFile, `${JSON.stringify(report, null, 2)}\n`);
    return report;
  }

  /** The phases, counted once traffic has stopped (a request in flight at a phase's end counts in it). */
  async report(): Promise<StoryPhase[]> {
    this.end();
    await this.traffic?.stop();
    const t = this.traffic!;
    return this.phases.map((c) => ({
      name: c.name,
      title: c.title,
      safe: c.safe,
      startedAt: new Date(c.at).toISOString(),
      ms: c.until! - c.at,
      ...(t.counts.get(c.name) ?? { sent: 0, succeeded: 0, failed: 0, reasons: {} }),
      longestGapMs: longestGap(t.successes, c.at, c.until!),
      handshakeFailures: this.book.tally(c.at, c.until!, "tls.handshake_failed", (l) => l.reason),
      upstreamFailures: this.book.tally(
        c.at,
        c.until!,
        "upstream.failed",
        (l) => `${String(l.upstream)}:${String(l.reason)}`,
      ),
      notes: c.notes,
    }));
  }

  /** Stops everything it started: edge's agent and traffic, every service, the CA server, the CA handle. */
  async close(): Promise<void> {
    this.edgeAgent?.stop();
    await this.traffic?.stop().catch(() => {});
    await Promise.all([...this.services.values()].map((s) => s.stop()));
    await this.server?.stop().catch(() => {});
    this.ca.close();
  }
}

/** Sum of the samples of `name` in a Prometheus exposition whose labels include `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...(m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[3]);
  }
  return sum;
}

export const evidence = (e: Entry): Evidence => ({
  service: e.service,
  event: String(e.line.event),
  reason: String(e.line.reason ?? ""),
  msg: String(e.line.msg ?? ""),
  at: new Date(e.at).toISOString(),
});

export { SERVICES };
