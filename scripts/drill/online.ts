// The rotation drill on the online mesh: a CA server (EST) in-process, services that enrol with a
// token and renew on their own, a careless rotation that breaks them through their own renewals,
// and the safe rotation run hands-off by runRotation, gate by gate, with traffic flowing.
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CARELESS_ORDER,
  CertificateAuthority,
  createToken,
  type GateName,
  type PlanStep,
  type RotationEvent,
  runRotation,
  SAFE_ORDER,
} from "../../ca/index.ts";
import { createLogger, type MeshLogger } from "../../services/mesh/log.ts";
import { loadPolicy } from "../../services/mesh/policy.ts";
import { enrolWithToken, parseToken } from "../../services/mesh/identity-agent/bootstrap.ts";
import { IdentityAgent } from "../../services/mesh/identity-agent/renewer.ts";
import { renewFraction, scheduleAt, type Schedule } from "../../services/mesh/identity-agent/timing.ts";
import { statePaths, type StatePaths } from "../../services/mesh/identity-agent/state-folder.ts";
import { launchService, type Launched } from "../launch.ts";
import { parseLine } from "../mesh-format.ts";
import { probeMesh, type ProbeCell } from "../probe.ts";
import { startDrillCa, type DrillCa } from "./ca-process.ts";
import {
  openDrillCa,
  DRILL_POLICY,
  runWith,
  SERVICES,
  type Check,
  type DrillOptions,
  type DrillReport,
  type GateMark,
  type PhaseName,
  type PhaseReport,
  type Setup,
} from "./drill.ts";
import { LogBook, type Entry } from "./logbook.ts";
import { servedSerial, Straggler, tryOldCertificate } from "./peers.ts";
import { PhaseLog } from "./phases.ts";
import { foretell as planAhead, matchStep, planCheck } from "./plan-check.ts";
import { Traffic, type PhaseCounts } from "./traffic.ts";

export interface OnlineDrillOptions extends DrillOptions {
  /** Lifetime of every certificate the CA server issues (ms): short, so renewals happen during the drill. */
  lifetimeMs?: number;
  /** How often each service polls the CA's bundle and CRLs (ms); the rotation's gates move at this pace. */
  pollMs?: number;
  /** How long each of the rotation's gates may wait (ms). */
  gateTimeoutMs?: number;
  /**
   * The fraction of its life at which each identity renews (the services' --renew-at, ±10 %;
   * default 2/3). At 1/3 a short certificate renews soon and keeps 2/3 of its life to retry in.
   */
  renewAt?: number;
}

export const ONLINE_DEFAULTS = { lifetimeMs: 60_000, pollMs: 1_000 };
/** Enrolments and renewals are the drill's own: the server's per-name limits must not pace them. */
const LIMITS = { perAddress: { capacity: 1000, perMinute: 6000 }, perName: { capacity: 1000, perMinute: 6000 } };
const IDENTITIES = [...SERVICES, "edge"] as const;

export function runOnlineDrill(o: OnlineDrillOptions = {}): Promise<DrillReport> {
  return runWith(o, online);
}

/** A pino destination that appends to a log file and hands each line to the log book. */
function sink(file: string, service: string, book: LogBook): { write(s: string): void } {
  return {
    write(s: string) {
      appendFileSync(file, s);
      for (const raw of s.split("\n")) {
        const line = parseLine(raw);
        if (line) book.add(service, line);
      }
    },
  };
}

const seconds = (ms: number) => `${Math.max(1, Math.round(ms / 1000))}s`;

/** What the phases of one online run share. */
interface OnlineRun extends Setup {
  o: OnlineDrillOptions;
  ca: CertificateAuthority;
  caUrl: string;
  logs: string;
  stateRoot: string;
  policy: string;
  book: LogBook;
  /** The certificates' lifetime as asked ("60s") and in ms. */
  lifetime: string;
  lifeMs: number;
  pollMs: number;
  /** When each identity renews (its services' --renew-at). */
  schedule: Schedule;
  gateTimeoutMs: number;
  oldGen: number;
  oldRootName: string;
  mesh: OnlineMesh;
  edge: Edge;
  traffic: Traffic;
  phases: PhaseLog;
  drillLog: (line: Record<string, unknown>) => void;
  /** The plan's prediction for each gate, by the phase that gate drives (`ca rotate --plan`). */
  planned: Map<PhaseName, PlanStep>;
  /** What the run opened, closed however it ends. */
  held: Held;
}

interface Held {
  server?: DrillCa;
  rotationCa?: CertificateAuthority;
  traffic?: Traffic;
  straggler?: Straggler;
  edge?: Edge;
  services: Map<string, Launched>;
}

async function online(o: OnlineDrillOptions, setup: Setup): Promise<DrillReport> {
  const pollMs = o.pollMs ?? ONLINE_DEFAULTS.pollMs;
  // The lifetime is asked as whole seconds (the services' --lifetime takes 90s, 10m, 1h).
  const lifetime = seconds(o.lifetimeMs ?? ONLINE_DEFAULTS.lifetimeMs);
  const lifeMs = Number(lifetime.slice(0, -1)) * 1000;
  const schedule = renewSchedule(o.renewAt);

  // --- the CA: the drill's own handle (as the CLI has), checked before anything is written ---
  const ca = await openDrillCa(setup.pki);
  const { logs, stateRoot, policy, drillLog } = prepareOnlineWork(setup.work);
  const book = new LogBook();
  const held: Held = { services: new Map() };
  try {
    const oldGen = ca.issuerRow(ca.signerId()).generation;
    const oldRoot = ca.issuerRow(`root-${oldGen}`);
    if (o.withIntermediate && ca.issuerRow(ca.signerId()).kind === "root")
      await ca.createIntermediate({ name: `${oldRoot.name} Issuing` });
    const caUrl = await startCaServer(setup.pki, held, { logs, book, lifeMs, pollMs });
    setup.say(
      `CA serving EST on ${caUrl} from ${setup.pki}: generation ${oldGen} (${oldRoot.name})${o.withIntermediate ? " through an intermediate" : ""} signs; certificates live ${lifetime}, services poll every ${pollMs} ms`,
    );

    const mesh = new OnlineMesh(ca, held.services, {
      caUrl,
      pki: setup.pki,
      policy,
      logs,
      stateRoot,
      book,
      lifetime,
      pollMs,
      renewAt: o.renewAt,
    });
    await setup.pause(0);
    const started = await Promise.allSettled([mesh.start("payment"), mesh.start("inventory")]);
    for (const r of started) if (r.status === "rejected") throw r.reason;
    await mesh.start("order", mesh.upstreamsOfOrder());
    const edge = new Edge(ca, { caUrl, logs, book, lifetime, pollMs, schedule, paths: mesh.stateOf("edge") });
    held.edge = edge;
    await edge.enrol();
    // A new connection every 2 s or so: an expired identity is refused on new handshakes only.
    const traffic = new Traffic({
      pki: setup.pki,
      identity: "edge.internal",
      port: mesh.ports.order!,
      rate: setup.rate,
      paths: edge.files(),
      requestsPerConnection: Math.max(5, 2 * setup.rate),
    });
    held.traffic = traffic;
    edge.startAgent(traffic);
    setup.say(
      `mesh up in identity mode: order :${mesh.ports.order}, payment :${mesh.ports.payment}, inventory :${mesh.ports.inventory}, each enrolled with its own token; traffic ${setup.rate} orders/s from edge`,
    );

    const phases = new PhaseLog(
      setup.say,
      (c) => drillLog({ level: 30, service: "drill", event: "drill.phase", phase: c.name, safe: c.safe, msg: c.title }),
      traffic,
      book,
    );
    const run: OnlineRun = {
      ...setup,
      o,
      ca,
      caUrl,
      logs,
      stateRoot,
      policy,
      book,
      lifetime,
      lifeMs,
      pollMs,
      schedule,
      gateTimeoutMs: o.gateTimeoutMs ?? Math.max(30_000, 20 * pollMs),
      oldGen,
      oldRootName: oldRoot.name,
      mesh,
      edge,
      traffic,
      phases,
      drillLog,
      planned: new Map(),
      held,
    };
    traffic.start();
    await run.until(() => traffic.succeeded >= 3, "the first orders to get through", 30_000);

    await baseline(run);
    const careless = await carelessRotation(run);
    const recovery = await recover(run, careless);
    const rotation = await safeRotation(run);
    const dropped = await dropOld(run, rotation);
    const proven = await proof(run, rotation);

    await traffic.stop();
    return report(run, { phases: phases.reports(), careless, recovery, rotation, dropped, proven });
  } finally {
    held.edge?.stop();
    await held.traffic?.stop().catch(() => {});
    held.straggler?.stop();
    await Promise.all([...held.services.values()].map((s) => s.stop()));
    await held.server?.stop().catch(() => {});
    held.rotationCa?.close();
    ca.close();
  }
}

/** The identities' renewal schedule: the agent's default, or renewal at `renewAt` of the life. */
function renewSchedule(renewAt: number | undefined): Schedule {
  if (renewAt !== undefined && renewFraction(String(renewAt)) === undefined)
    throw new Error(`renewAt ${renewAt} must be a fraction of the certificate's life from 0.1 to 0.9, e.g. 0.33`);
  return scheduleAt(renewAt);
}

/** Fresh logs and state folders and the drill's policy in the work folder. */
function prepareOnlineWork(work: string) {
  const logs = join(work, "logs");
  const stateRoot = join(work, "state");
  rmSync(logs, { recursive: true, force: true });
  rmSync(stateRoot, { recursive: true, force: true });
  mkdirSync(logs, { recursive: true });
  mkdirSync(stateRoot, { recursive: true, mode: 0o700 });
  const policy = join(work, "policy.toml");
  writeFileSync(policy, DRILL_POLICY);
  const drillLog = (line: Record<string, unknown>) =>
    appendFileSync(join(logs, "drill.log"), `${JSON.stringify({ time: new Date().toISOString(), ...line })}\n`);
  return { logs, stateRoot, policy, drillLog };
}

/**
 * The CA server, in a process of its own with its own handle on the folder, as `ca serve` does
 * (ca-process.ts says why it must not share the drill's event loop); returns its URL.
 */
async function startCaServer(
  pki: string,
  held: Held,
  s: { logs: string; book: LogBook; lifeMs: number; pollMs: number },
): Promise<string> {
  held.server = await startDrillCa(
    { pki, lifetimeMs: s.lifeMs, limits: LIMITS, pollMs: Math.min(500, s.pollMs) },
    { logFile: join(s.logs, "ca.log"), onLine: (line) => s.book.add("ca", line) },
  );
  return held.server.url;
}

/** The services in identity mode: each enrols with its own one-time token, passed in its environment. */
class OnlineMesh {
  readonly ports: Record<string, number> = { payment: 0, inventory: 0, order: 0 };

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly services: Map<string, Launched>,
    private readonly s: {
      caUrl: string;
      pki: string;
      policy: string;
      logs: string;
      stateRoot: string;
      book: LogBook;
      lifetime: string;
      pollMs: number;
      renewAt?: number;
    },
  ) {}

  stateOf(who: string): StatePaths {
    return statePaths(join(this.s.stateRoot, who));
  }

  upstreamsOfOrder(): string[] {
    return [`payment=127.0.0.1:${this.ports.payment}`, `inventory=127.0.0.1:${this.ports.inventory}`];
  }

  async start(service: string, upstreams: string[] = []): Promise<Launched> {
    const { s } = this;
    // replace: a victim of the careless rotation enrols again in place of the certificate it never installed.
    const token = createToken(this.ca, { domain: `${service}.internal`, replace: true }).token;
    const svc = await launchService({
      service,
      port: this.ports[service] ?? 0,
      pki: s.pki,
      policy: s.policy,
      upstreams,
      logFile: join(s.logs, `${service}.log`),
      onLine: (line) => line && s.book.add(service, line),
      env: { ...process.env, MESH_ENROL_TOKEN: token, MESH_INVENTORY_STOCK: "widget=10000000" },
      identity: {
        ca: s.caUrl,
        state: this.stateOf(service).dir,
        lifetime: s.lifetime,
        poll: s.pollMs / 1000,
        renewAt: s.renewAt,
      },
    });
    this.services.set(service, svc);
    this.ports[service] = svc.port;
    return svc;
  }

  /** Stops a service and starts it again (on its port) from an empty state folder: it enrols anew. */
  async restart(service: string): Promise<void> {
    await this.services.get(service)?.stop();
    this.services.delete(service);
    rmSync(this.stateOf(service).dir, { recursive: true, force: true });
    await this.start(service, service === "order" ? this.upstreamsOfOrder() : []);
  }
}

/**
 * edge, the traffic client, is an identity like the others: enrolled with a token, renewed by
 * the same agent the services run, in this process.
 */
class Edge {
  private agent: IdentityAgent | undefined;
  private readonly log: MeshLogger;

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly s: {
      caUrl: string;
      logs: string;
      book: LogBook;
      lifetime: string;
      pollMs: number;
      schedule: Schedule;
      paths: StatePaths;
    },
  ) {
    this.log = createLogger("edge", sink(join(s.logs, "edge.log"), "edge", s.book));
  }

  files(): { key: string; cert: string; bundle: string; crls: string } {
    const p = this.s.paths;
    return { key: p.key, cert: p.cert, bundle: p.bundle, crls: p.crls };
  }

  async enrol(): Promise<void> {
    const { s } = this;
    const e = await enrolWithToken({
      caUrl: s.caUrl,
      token: parseToken(createToken(this.ca, { domain: "edge.internal", replace: true }).token, "the drill"),
      dns: "edge.internal",
      paths: s.paths,
      lifetime: s.lifetime,
    });
    this.log.info(
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
  }

  startAgent(traffic: Traffic): void {
    const { s } = this;
    this.agent = new IdentityAgent(
      {
        caUrl: s.caUrl,
        dns: "edge.internal",
        paths: s.paths,
        lifetime: s.lifetime,
        pollMs: s.pollMs,
        schedule: s.schedule,
      },
      { reloadTls: () => traffic.reload(), log: this.log, metrics: { renewed() {}, renewalFailed() {} } },
    );
    this.agent.start();
  }

  stop(): void {
    this.agent?.stop();
  }
}

// 1. Baseline ---------------------------------------------------------------------
async function baseline(run: OnlineRun): Promise<void> {
  const { phases, book, lifeMs } = run;
  phases.begin(
    "baseline",
    `1. Baseline: four identities enrolled over EST from generation ${run.oldGen}, renewing on their own every ~${Math.round((lifeMs * run.schedule.fraction) / 1000)} s`,
    true,
  );
  // Until one of them has renewed on its own schedule, under traffic: a renewal is part of normal life.
  const firstRenewal = await run.orStop(
    book.waitFor("the first scheduled renewal", 0, (e) => e.line.event === "identity.renewed", lifeMs + 10_000),
  );
  phases.note(
    `${firstRenewal.service} renewed on its own schedule under traffic: serial ${String(firstRenewal.line.previous).slice(0, 12)}… → ${String(firstRenewal.line.serial).slice(0, 12)}… (generation ${String(firstRenewal.line.generation)}), valid until ${String(firstRenewal.line.notAfter)}`,
  );
  await run.pause(run.dwell);
  phases.end();
}

interface Careless {
  carelessAt: number;
  carelessGen: number;
  firstFailure: Entry;
  failedRenewal: string[];
  explanations: DrillReport["explanations"];
}

// 2. The careless rotation ----------------------------------------------------------
async function carelessRotation(run: OnlineRun): Promise<Careless> {
  const { ca, phases, book, lifeMs, orStop, traffic } = run;
  const since = (at: number, match: (e: Entry) => boolean) => book.since(at, match);
  phases.begin(
    "careless",
    "2. The careless rotation: a new generation signs before anyone trusts it (generation add + use, no bundle)",
    false,
  );
  foretell(run, "careless", CARELESS_ORDER, "activate");
  const carelessAt = Date.now();
  const g2 = await ca.addGeneration({});
  const carelessGen = g2.generation;
  ca.useGeneration(carelessGen);
  phases.note(
    `added ${g2.name} (generation ${carelessGen}) and made it the signer; bundle.pem still holds only generation ${run.oldGen}`,
  );
  // Nothing is forced: the next scheduled renewal meets the untrusted signer.
  const firstFailure = await orStop(
    book.waitFor(
      "a renewal to meet the untrusted signer",
      carelessAt,
      (e) => e.line.event === "identity.renew_failed",
      lifeMs + 10_000,
    ),
  );
  const why = String(firstFailure.line.reason);
  phases.note(
    /does not chain to a root/.test(why)
      ? `${firstFailure.service} renewed on schedule and got a certificate from ${g2.name}: it refused to install it (${why}), keeps its old one, which the CA has already marked superseded`
      : `${firstFailure.service}'s renewal failed: ${why}`,
  );
  const superseded = await orStop(
    book
      .waitFor(
        "a retried renewal to be refused",
        carelessAt,
        (e) => e.line.event === "identity.renew_failed" && /superseded|already renewed/.test(String(e.line.reason)),
        lifeMs + 10_000,
      )
      .catch(() => undefined),
  );
  if (superseded)
    phases.note(
      `${superseded.service} retried: refused (${String(superseded.line.reason)}); it cannot renew any more and runs out of life`,
    );
  const failedBefore = traffic.counts.get("careless")?.failed ?? 0;
  // Every identity renews within ~3/4 of its life and expires at its end: within two lifetimes
  // some victim's expiry meets a new handshake.
  await run
    .until(
      () => (traffic.counts.get("careless")?.failed ?? 0) > failedBefore,
      "the first failed order once a victim's certificate expires",
      2 * lifeMs + 10_000,
    )
    .catch(() => {});
  // Both sides' words for it, waited for as lines rather than a guessed time: the victim's
  // identity.expired and the refusal a peer logged (they may reach the book after the failed order).
  const logged = (what: string, match: (e: Entry) => boolean) =>
    orStop(book.waitFor(what, carelessAt, match, 10_000).catch(() => undefined));
  const expired = await logged("a victim's identity.expired", (e) => e.line.event === "identity.expired");
  if (expired)
    phases.note(
      `${expired.service}'s certificate expired (${String(expired.line.serial).slice(0, 12)}…): ${String(expired.line.msg).slice(0, 160)}`,
    );
  const refused = await logged(
    "a peer's refusal",
    (e) => e.line.event === "tls.handshake_failed" || e.line.event === "upstream.failed",
  );
  // The break spreads for a dwell as connections are made anew.
  await run.pause(run.dwell);
  phases.end();
  const failedRenewal = since(carelessAt, (e) => e.line.event === "identity.renew_failed").map((e) => e.service);
  const explanations = [firstFailure, superseded, expired, refused]
    .filter((e): e is Entry => !!e)
    .map((e) => ({
      service: e.service,
      event: String(e.line.event),
      reason: String(e.line.reason ?? ""),
      msg: String(e.line.msg ?? ""),
    }));
  for (const e of explanations) run.say(`  [${e.service}] ${e.event} ${e.reason}: ${e.msg.slice(0, 200)}`);
  return { carelessAt, carelessGen, firstFailure, failedRenewal, explanations };
}

function foretell(run: OnlineRun, phase: PhaseName, order: readonly GateName[], gate: GateName): void {
  const step = planAhead(run.ca, { text: DRILL_POLICY, file: run.policy }, order, gate, run.say);
  if (step) run.planned.set(phase, step);
}

// 3. Recovery -------------------------------------------------------------------
async function recover(
  run: OnlineRun,
  { carelessGen, failedRenewal }: Careless,
): Promise<{ victims: string[]; recovered: PhaseCounts }> {
  const { ca, phases, oldGen, mesh, edge, traffic } = run;
  phases.begin(
    "recovery",
    `3. Recovery: generation ${oldGen} signs again; each victim enrols again with a new token`,
    false,
  );
  ca.useGeneration(oldGen);
  // From here no certificate of the careless generation is issued: the ledger names every
  // identity whose current certificate came from it (issued, never installed), even one whose
  // renew_failed line is still in its log buffer.
  const fromCareless = ca
    .list()
    .filter((c) => c.status === "VALID" && c.generation === carelessGen)
    .map((c) => c.domain.replace(/\.internal$/, ""));
  const victims = [...new Set([...failedRenewal, ...fromCareless])].filter((v) =>
    (IDENTITIES as readonly string[]).includes(v),
  );
  phases.note(
    `generation use ${oldGen}; victims (their renewal refused, no way back by renewal): ${victims.join(", ")}`,
  );
  for (const v of victims) {
    // What identity.expired tells a person to do: a new token, and the service started with it.
    // Its state folder goes only once it has stopped: a running agent writes there (the new CRLs
    // of `generation use`), and removing the folder under it failed with ENOTEMPTY.
    if (v === "edge") {
      edge.stop();
      // In this process: a poll already in flight may still land a file; rm retries on ENOTEMPTY.
      rmSync(mesh.stateOf(v).dir, { recursive: true, force: true, maxRetries: 5 });
      await edge.enrol();
      traffic.reload();
      edge.startAgent(traffic);
    } else {
      await mesh.restart(v);
    }
    phases.note(
      `${v} enrolled again from generation ${oldGen}${v === "edge" ? "" : ` (restarted on :${mesh.ports[v]})`}`,
    );
  }
  const recovered = traffic.mark();
  // The careless generation served no one in the end: once nothing valid chains to it, retire it.
  try {
    ca.retireGeneration(carelessGen);
    phases.note(`retired the careless generation ${carelessGen}: nothing valid chains to it`);
  } catch (e) {
    phases.note(`generation ${carelessGen} stays (not retired): ${(e as Error).message}`);
  }
  await run.pause(run.dwell);
  traffic.unmark(recovered);
  phases.note(`${recovered.failed} of ${recovered.sent} request(s) sent after the victims enrolled again failed`);
  phases.end();
  return { victims, recovered };
}

interface Rotation {
  newGen: number;
  gates: GateMark[];
  rotationMs: number;
  retiredAt: number;
  /**
   * When gate 3 began: the services' lines about the retirement are looked for from here, since
   * a long poll can bring a service the new bundle before the drill hears that the gate passed.
   */
  retireStartedAt: number;
  /** order's certificate from before the rotation, and a keep-alive connection made with it. */
  oldOrder: { cert: Buffer; key: Buffer };
  straggler: Straggler;
}

// 4. The safe rotation, hands-off -------------------------------------------------------
async function safeRotation(run: OnlineRun): Promise<Rotation> {
  const { o, ca, phases, mesh, held, pollMs } = run;
  // A keep-alive connection under the old generation (order's newest certificate), to see it cut at retirement.
  const oldOrder = { cert: readFileSync(mesh.stateOf("order").cert), key: readFileSync(mesh.stateOf("order").key) };
  const straggler = new Straggler({
    port: mesh.ports.payment!,
    servername: "payment.internal",
    ca: readFileSync(ca.paths.bundle),
    ...oldOrder,
  });
  held.straggler = straggler;
  straggler.start();
  const rotationCa = await CertificateAuthority.open({ dir: run.pki });
  held.rotationCa = rotationCa;
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  o.signal?.addEventListener("abort", onAbort, { once: true });
  const gates: GateMark[] = [];
  let newGen = 0;
  let retiredAt = 0;
  let retireStartedAt = 0;
  phases.begin(
    "trust-both",
    "4a. Safe rotation, gate 1 (prepare): add and publish a generation; wait until every identity has fetched it",
    true,
  );
  const onEvent = (e: RotationEvent) => {
    newGen = e.to;
    const at = new Date().toISOString();
    gates.push({ at, gate: e.gate, state: e.state, waitingFor: e.waitingFor, msg: e.msg });
    run.drillLog({ level: e.state === "timeout" ? 50 : 30, service: "ca", ...e });
    run.say(`  gate ${e.gate} ${e.state}: ${e.msg}`);
    if (e.gate === "retire" && e.state === "started") retireStartedAt = Date.now();
    if (e.gate === "retire" && e.state === "passed") retiredAt = Date.now();
    if (e.gate === "activate" && e.state === "passed") foretell(run, "drop-old", SAFE_ORDER, "retire");
    if (e.gate === "activate" && e.state === "started") {
      phases.end();
      phases.begin(
        "reissue",
        `4b. Safe rotation, gates 2-3 (activate, then wait): generation ${e.to} signs; every identity renews onto it (the CA's renew-now hint)`,
        true,
      );
    }
  };
  foretell(run, "trust-both", SAFE_ORDER, "prepare");
  const rotationStart = Date.now();
  try {
    // Gate 1 passes within a fraction of a second (the CRL long poll brings every identity the new
    // bundle at once): hold the mesh trusting both generations, the old one signing, for a dwell
    // with traffic flowing, as the file-mode drill does, before gate 2 makes the new one sign.
    const beforeActivate = async () => {
      foretell(run, "reissue", SAFE_ORDER, "activate");
      phases.note(
        `every identity holds a bundle with generations ${run.oldGen} and ${newGen}; generation ${run.oldGen} still signs: held ${run.dwell} ms with traffic flowing before gate 2`,
      );
      await run.pause(run.dwell);
    };
    await runRotation(rotationCa, {
      timeoutMs: run.gateTimeoutMs,
      intervalMs: Math.min(250, pollMs),
      inUse: true,
      signal: stop.signal,
      onEvent,
      beforeActivate,
      owner: `drill:${process.pid}`,
    });
  } finally {
    o.signal?.removeEventListener("abort", onAbort);
  }
  const rotationMs = Date.now() - rotationStart;
  await run.pause(0);
  phases.end();
  return { newGen, gates, rotationMs, retiredAt, retireStartedAt, oldOrder, straggler };
}

// 4c. Drop the old generation: it was retired by gate 3; each service drops it at its next poll.
async function dropOld(
  run: OnlineRun,
  { retiredAt, retireStartedAt, straggler }: Rotation,
): Promise<{ notDropped: string[]; lingering: ReturnType<Straggler["summary"]> }> {
  const { phases, book, oldGen, oldRootName, pollMs } = run;
  const since = (at: number, match: (e: Entry) => boolean) => book.since(at, match);
  phases.begin(
    "drop-old",
    `4c. Safe rotation done: generation ${oldGen} retired; every service drops it at its next bundle poll`,
    true,
  );
  const notDropped: string[] = [];
  for (const s of IDENTITIES) {
    const seen = await run.orStop(
      book
        .waitFor(
          `${s} to fetch the bundle without generation ${oldGen}`,
          // Until gate 3 every bundle held the old generation: a line without it is the retirement's.
          retireStartedAt,
          (x) =>
            x.service === s &&
            x.line.event === "trust.updated" &&
            Array.isArray(x.line.roots) &&
            !(x.line.roots as string[]).includes(oldRootName),
          10 * pollMs + 10_000,
        )
        .catch(() => undefined),
    );
    if (!seen) {
      // What it did last, for the report: the check below fails with it.
      const last = since(
        retiredAt - 5_000,
        (x) => x.service === s && /^(trust|identity|tls)\./.test(String(x.line.event)),
      ).at(-1);
      notDropped.push(
        `${s} (last: ${last ? `${String(last.line.event)} ${String(last.line.msg ?? "").slice(0, 120)}` : "nothing since the retirement"})`,
      );
    }
  }
  phases.note(
    notDropped.length
      ? `still trusting ${oldRootName}: ${notDropped.join("; ")}`
      : `every service and edge dropped ${oldRootName} from its trust (the drill waited for each trust.updated)`,
  );
  // The connections payment closed because their peer's trust was withdrawn (not a renewal's drain).
  const closed = since(
    retireStartedAt,
    (x) => x.service === "payment" && x.line.event === "tls.connections_closed" && x.line.why === "trust withdrawn",
  )[0];
  await run.pause(run.dwell);
  const lingering = straggler.summary(retiredAt);
  phases.note(
    closed
      ? `payment closed ${String(closed.line.count)} keep-alive connection(s) still authenticated under the old trust`
      : "payment logged no closed connection",
  );
  phases.note(
    `the straggler (a keep-alive connection with an order certificate from generation ${oldGen}): ${lingering.closedAfter ? "closed" : "NOT closed"}, then ${lingering.failuresAfter} refused reconnection(s), ${lingering.successesAfter} success(es)`,
  );
  phases.end();
  return { notDropped, lingering };
}

interface Proof {
  refusedOld: boolean;
  reason: string;
  served: Record<string, string | undefined>;
  held: ReturnType<CertificateAuthority["list"]>;
  onNew: string[];
  probe: ProbeCell[];
}

// 5. Proof -------------------------------------------------------------------------
async function proof(run: OnlineRun, { newGen, oldOrder }: Rotation): Promise<Proof> {
  const { ca, phases, book, oldGen, mesh } = run;
  const ports = mesh.ports;
  phases.begin(
    "proof",
    `5. Proof: generation ${oldGen} is locked out; every identity holds a generation ${newGen} certificate`,
    true,
  );
  const proofAt = Date.now();
  const refusedOld = await tryOldCertificate(
    ports.payment!,
    "payment.internal",
    readFileSync(ca.paths.bundle),
    oldOrder,
  );
  const logged = await run.orStop(
    book
      .waitFor(
        "payment to log the old certificate's refusal",
        proofAt - 50,
        (x) =>
          x.service === "payment" &&
          x.line.event === "tls.handshake_failed" &&
          (x.line.peer as { serial?: string } | undefined)?.serial !== undefined,
        5_000,
      )
      .catch(() => undefined),
  );
  const reason = logged ? String(logged.line.reason) : "(nothing logged)";
  phases.note(
    `an order certificate from generation ${oldGen}: ${refusedOld ? "refused in the handshake" : "ACCEPTED"}; payment logged ${reason}`,
  );
  const served: Record<string, string | undefined> = {};
  const edgeMat = { cert: readFileSync(mesh.stateOf("edge").cert), key: readFileSync(mesh.stateOf("edge").key) };
  for (const s of SERVICES) served[s] = await servedSerial(ports[s]!, `${s}.internal`, edgeMat.cert, edgeMat.key);
  const held = ca
    .list()
    .filter(
      (c) => c.status === "VALID" && (IDENTITIES as readonly string[]).includes(c.domain.replace(/\.internal$/, "")),
    );
  const onNew = held.filter((c) => c.generation === newGen).map((c) => c.domain);
  phases.note(
    `ledger: ${onNew.length} of ${IDENTITIES.length} identities hold a generation ${newGen} certificate (${onNew.join(", ")})`,
  );
  const probe = await probeLent(run);
  const mismatches = probe.filter((c) => !c.ok);
  phases.note(`probe: ${probe.length - mismatches.length}/${probe.length} calls match the policy`);
  await run.pause(Math.min(run.dwell, 1_000));
  phases.end();
  return { refusedOld, reason, served, held, onNew, probe };
}

/**
 * The probe reads identities in the CA folder's layout: lend it the state folders' material
 * in a folder of the drill's own (under state/, removed with it), for the time of the probe.
 */
async function probeLent(run: OnlineRun): Promise<ProbeCell[]> {
  const { ca, mesh } = run;
  const lent = join(run.stateRoot, ".probe");
  mkdirSync(join(lent, "certs"), { recursive: true, mode: 0o700 });
  copyFileSync(ca.paths.bundle, join(lent, "bundle.pem"));
  copyFileSync(ca.paths.crls, join(lent, "crls.pem")); // the probe checks each server against them
  for (const who of IDENTITIES) {
    copyFileSync(mesh.stateOf(who).cert, join(lent, "certs", `${who}.internal.crt`));
    copyFileSync(mesh.stateOf(who).key, join(lent, "certs", `${who}.internal.key`));
  }
  try {
    return (await probeMesh({ pki: lent, policy: loadPolicy(run.policy), ports: mesh.ports, logs: run.logs })).cells;
  } finally {
    rmSync(lent, { recursive: true, force: true });
  }
}

interface Outcome {
  phases: PhaseReport[];
  careless: Careless;
  recovery: { victims: string[]; recovered: PhaseCounts };
  rotation: Rotation;
  dropped: { notDropped: string[]; lingering: ReturnType<Straggler["summary"]> };
  proven: Proof;
}

// --- the verdict -----------------------------------------------------------------
function verdict(
  oldGen: number,
  book: LogBook,
  { phases, careless, recovery, rotation, dropped, proven }: Outcome,
): Check[] {
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  const { explanations, firstFailure, carelessAt } = careless;
  const since = (at: number, match: (e: Entry) => boolean) => book.since(at, match);
  const { victims, recovered } = recovery;
  const { gates, newGen } = rotation;
  const { notDropped, lingering } = dropped;
  const { refusedOld, reason, served, held, onNew, probe } = proven;
  const phase = (n: PhaseName) => phases.find((p) => p.name === n)!;
  check(
    "the careless rotation broke",
    phase("careless").failed > 0,
    `${phase("careless").failed} of ${phase("careless").sent} requests failed; victims: ${victims.join(", ") || "none"}`,
  );
  check(
    "both sides explained the break",
    !!firstFailure && explanations.some((e) => e.event === "tls.handshake_failed" || e.event === "upstream.failed"),
    explanations.map((e) => `${e.service}: ${e.event} ${e.reason}`.slice(0, 120)).join("; "),
  );
  // A renewal that stalls says so: each victim that expired had logged a failed attempt and
  // identity.expiring first (on a loaded machine order once logged nothing until it expired).
  const expiries = since(carelessAt, (e) => e.line.event === "identity.expired");
  const unannounced = [...new Set(expiries.map((e) => e.service))].filter((who) => {
    const at = expiries.find((e) => e.service === who)!.at;
    const said = (event: string) =>
      since(carelessAt, (e) => e.service === who && e.line.event === event && e.at <= at).length > 0;
    return !said("identity.renew_failed") || !said("identity.expiring");
  });
  check(
    "every expiry was announced",
    unannounced.length === 0,
    unannounced.length
      ? `expired without a renew_failed and an identity.expiring before it: ${unannounced.join(", ")}`
      : `${new Set(expiries.map((e) => e.service)).size} victim(s) expired, each after renew_failed and identity.expiring`,
  );
  check(
    "recovery healed the mesh",
    recovered.failed === 0 && recovered.sent > 0,
    `${recovered.failed} of ${recovered.sent} request(s) sent after the victims enrolled again failed`,
  );
  const passed = gates.filter((g) => g.state === "passed").map((g) => g.gate);
  check(
    "every gate passed, in order",
    passed.join(",") === "prepare,activate,retire",
    `passed: ${passed.join(", ") || "none"}`,
  );
  check(
    "gate 3 waited for the old certificates",
    gates.some((g) => g.gate === "retire" && g.state === "waiting" && g.waitingFor.length > 0),
    gates
      .filter((g) => g.gate === "retire" && g.state === "waiting")
      .map((g) => g.waitingFor.join(" "))
      .join(" | ") || "it never waited",
  );
  for (const p of phases.filter((x) => x.safe)) {
    check(
      `no request lost in ${p.name}`,
      p.failed === 0 && p.sent > 0,
      `${p.succeeded}/${p.sent} succeeded${p.failed ? `; failures: ${JSON.stringify(p.reasons)}` : ""}`,
    );
  }
  check(
    `every identity on generation ${newGen}`,
    onNew.length === IDENTITIES.length &&
      SERVICES.every(
        (s) =>
          served[s] !== undefined && held.some((c) => c.serial.toLowerCase() === served[s] && c.generation === newGen),
      ),
    `ledger: ${onNew.join(", ")}; served: ${SERVICES.map((s) => `${s} ${served[s]?.slice(0, 8) ?? "?"}`).join(", ")}`,
  );
  check(
    `every identity dropped generation ${oldGen} from its trust`,
    notDropped.length === 0,
    notDropped.join("; ") || "services and edge: trust.updated without it",
  );
  check(
    `generation ${oldGen} rejected for unknown_ca`,
    refusedOld && reason === "unknown_ca",
    `${refusedOld ? "refused" : "accepted"}, logged ${reason}`,
  );
  check(
    "no answer on an old-generation connection after retirement",
    lingering.successesAfter === 0,
    `straggler closed: ${lingering.closedAfter}; answers after retirement: ${lingering.successesAfter}`,
  );
  const mismatches = probe.filter((c) => !c.ok);
  check(
    "probe matches the policy",
    mismatches.length === 0,
    mismatches.length
      ? mismatches.map((m) => `${m.caller}->${m.callee}: ${m.observed} (policy: ${m.expected})`).join("; ")
      : `${probe.length} calls`,
  );
  return checks;
}

/** The report, written beside the logs. */
function report(run: OnlineRun, outcome: Outcome): DrillReport {
  const { phases, careless, recovery, rotation, proven } = outcome;
  const checks = verdict(run.oldGen, run.book, outcome);
  checks.push(
    planCheck(
      [...run.planned].flatMap(([name, step]) => {
        const p = phases.find((x) => x.name === name);
        return p ? [matchStep(step, p, run.book)] : [];
      }),
      4,
    ),
  );
  const renewals = run.book.since(0, (e) => e.line.event === "identity.renewed").length;
  const r: DrillReport = {
    ok: checks.every((c) => c.ok),
    mode: "online",
    dir: run.pki,
    stateRemoved: run.removeState,
    reportFile: join(run.work, "report.json"),
    logs: run.logs,
    withIntermediate: !!run.o.withIntermediate,
    rate: run.rate,
    generations: { old: run.oldGen, new: rotation.newGen },
    phases,
    reloads: [],
    explanations: careless.explanations,
    probe: proven.probe,
    checks,
    longestSafeGapMs: Math.max(0, ...phases.filter((p) => p.safe).map((p) => p.longestGapMs)),
    gates: rotation.gates,
    online: {
      lifetimeMs: run.lifeMs,
      pollMs: run.pollMs,
      carelessGeneration: careless.carelessGen,
      victims: recovery.victims,
      renewals,
      rotationMs: rotation.rotationMs,
    },
  };
  writeFileSync(r.reportFile, `${JSON.stringify(r, null, 2)}\n`);
  return r;
}
