// The CA rotation drill: break the mesh with a careless rotation, recover,
// then rotate every service to a new root generation with traffic flowing
// and prove that nothing was lost and the old generation is locked out.
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  CARELESS_ORDER,
  CaError,
  CertificateAuthority,
  type GateName,
  type IssuedCert,
  type PlanStep,
  SAFE_ORDER,
} from "../../ca/index.ts";
import { launchService, type Launched } from "../launch.ts";
import { loadPolicy } from "../../services/mesh/policy.ts";
import { probeMesh, type ProbeCell } from "../probe.ts";
import { LogBook, type Entry } from "./logbook.ts";
import { servedSerial, Straggler, tryOldCertificate } from "./peers.ts";
import { PhaseLog, type Phase, type PhaseName, type PhaseReport } from "./phases.ts";
import { foretell, matchStep, planCheck } from "./plan-check.ts";
import { Traffic, type PhaseCounts } from "./traffic.ts";

export interface DrillOptions {
  /** The CA state folder; a fresh temporary one when absent (./pki is never touched by default). */
  dir?: string;
  /** Keep the temporary CA state (its keys) after the run; without --dir it is removed on every exit. */
  keepState?: boolean;
  /** Aborting it (Ctrl-C) ends the drill at its next wait, through the same clean-up as a normal end. */
  signal?: AbortSignal;
  /** Told where the drill works before anything is created, so a last-ditch exit handler can clean up. */
  onPrepared?: (where: { work: string; pki: string; removeState: boolean }) => void;
  withIntermediate?: boolean;
  /** Orders per second, each one call to inventory and one to payment. */
  rate?: number;
  /** How long traffic runs in each phase once its change has taken effect (ms). */
  dwellMs?: number;
  /** Progress lines, as they happen. */
  say?: (line: string) => void;
}

export type { PhaseName, PhaseReport } from "./phases.ts";

export interface ReloadTiming {
  phase: PhaseName;
  who: string;
  what: "certificate" | "trust";
  /** From the CA's write to the service's tls.reloaded line. */
  reloadMs: number;
  /** From the CA's write to the first new handshake that shows the new certificate. */
  effectMs?: number;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DrillReport {
  ok: boolean;
  /** file: the CA writes into a folder the services read (--pki); online: a CA server, services that enrol and renew over EST, runRotation. */
  mode?: "file" | "online";
  /** The CA state folder (pki/). */
  dir: string;
  /** Whether that folder, keys and all, is removed when the drill ends (a temporary one without --keep-state). */
  stateRemoved: boolean;
  reportFile: string;
  /** The services' JSON logs, one file each. */
  logs: string;
  withIntermediate: boolean;
  rate: number;
  generations: { old: number; new: number };
  phases: PhaseReport[];
  reloads: ReloadTiming[];
  /** Log lines from both sides of the careless break. */
  explanations: Array<{ service: string; event: string; reason: string; msg: string }>;
  refusal?: string;
  probe: ProbeCell[];
  checks: Check[];
  longestSafeGapMs: number;
  /** Online mode: the rotation's gate events as they came (also in logs/drill.log as rotate.gate lines). */
  gates?: GateMark[];
  /** Online mode: the certificates' lifetime and the services' poll interval. */
  online?: {
    lifetimeMs: number;
    pollMs: number;
    carelessGeneration: number;
    victims: string[];
    renewals: number;
    rotationMs: number;
  };
}

/** A rotate.gate event and when it came. */
export interface GateMark {
  at: string;
  gate: string;
  state: string;
  waitingFor: string[];
  msg: string;
}

export const SERVICES = ["payment", "inventory", "order"] as const;

/** The drill was stopped (Ctrl-C, SIGTERM) before it finished; everything it started was stopped. */
export class DrillInterrupted extends Error {
  constructor(readonly why: string) {
    super(`interrupted (${why})`);
  }
}

/**
 * The state folder is somewhere the drill cannot start from; nothing was changed. The drill
 * refuses rather than repairs, because a --dir may be a CA a person is rotating by hand.
 */
export class DrillRefused extends Error {}

/** A wait that ends early, with DrillInterrupted, when the drill is aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new DrillInterrupted(String(signal.reason ?? "aborted")));
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
    };
    const stop = () => {
      done();
      reject(new DrillInterrupted(String(signal!.reason ?? "aborted")));
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    signal?.addEventListener("abort", stop, { once: true });
  });
}

/**
 * Refuses a state folder left in the middle of a careless rotation (a drill killed in that
 * phase, or a rotation by hand that skipped `bundle`): its signing generation is trusted by
 * nobody, so a run would issue every identity from it and the mesh would refuse itself.
 */
/** The drill's CA: the one in `pki`, or a new "Acme Corp CA"; refused (and closed) if left mid careless rotation. */
export async function openDrillCa(pki: string): Promise<CertificateAuthority> {
  const ca = CertificateAuthority.exists(pki)
    ? await CertificateAuthority.open({ dir: pki })
    : await CertificateAuthority.init({ dir: pki, name: "Acme Corp CA" });
  try {
    checkStartState(ca);
  } catch (e) {
    ca.close();
    throw e;
  }
  return ca;
}

export function checkStartState(ca: CertificateAuthority): void {
  const signer = ca.issuerRow(ca.signerId());
  const root = ca.issuerRow(`root-${signer.generation}`);
  if (root.state === "published") return;
  const trusted = ca
    .generations()
    .filter((g) => g.root.state === "published")
    .map((g) => g.generation);
  const fromIt = ca
    .list()
    .filter((c) => c.status === "VALID" && c.generation === signer.generation)
    .map((c) => c.domain);
  const dir = ca.paths.dir;
  const back = trusted.at(-1);
  const rollBack =
    back === undefined
      ? ""
      : `roll back with \`npm run ca -- generation use ${back} --dir ${dir}\`${fromIt.map((d) => ` and \`npm run ca -- renew --domain ${d} --dir ${dir}\``).join("")}, or `;
  throw new DrillRefused(
    `the CA in ${dir} is in the middle of a careless rotation (a drill stopped during its careless phase, or a rotation that skipped \`bundle\`): ` +
      `generation ${signer.generation} (${root.name}) signs new certificates but is not in bundle.pem, so nobody trusts it` +
      `${fromIt.length ? `, and ${fromIt.join(", ")} already hold${fromIt.length === 1 ? "s" : ""} a certificate from it` : ""}; ` +
      `nothing was changed. To recover, ${rollBack}go forward with \`npm run ca -- bundle --dir ${dir}\` (trust it too); then run the drill again`,
  );
}

export const DRILL_POLICY = `# The rotation drill's policy: the mesh's matrix, plus the drill's traffic client
# ("edge") placing orders with order, so order calls inventory and payment.
[payment]
accepts = ["order"]

[inventory]
accepts = ["order"]

[order]
accepts = ["edge"]
`;

export async function runDrill(o: DrillOptions = {}): Promise<DrillReport> {
  return runWith(o, drill);
}

/**
 * What every drill shares: where it works, its waits that end on Ctrl-C, and the clean-up of a
 * temporary CA and of the services' state folders (keys) however it ends.
 */
export async function runWith<O extends DrillOptions, R = DrillReport>(
  o: O,
  body: (o: O, setup: Setup) => Promise<R>,
): Promise<R> {
  const say = o.say ?? (() => {});
  const rate = o.rate ?? 20;
  const dwell = o.dwellMs ?? 2_500;
  const signal = o.signal;
  const pause = (ms: number) => sleep(ms, signal);
  const until = (cond: () => boolean | Promise<boolean>, what: string, timeoutMs?: number) =>
    waitUntil(cond, what, timeoutMs, signal);
  // A log line to wait for, unless the drill is stopped first.
  const interrupted = new Promise<never>((_, reject) =>
    signal?.addEventListener("abort", () => reject(new DrillInterrupted(String(signal.reason ?? "aborted"))), {
      once: true,
    }),
  );
  interrupted.catch(() => {}); // raced below; not an unhandled rejection when nobody waits
  const orStop = <T>(p: Promise<T>): Promise<T> => Promise.race([p, interrupted]);
  if (signal?.aborted) throw new DrillInterrupted(String(signal.reason ?? "aborted"));
  // Logs, the drill's policy and its report live beside the CA folder's contents, never in ./logs.
  const work = o.dir ? join(resolve(o.dir), "drill") : mkdtempSync(join(tmpdir(), "mesh-drill-"));
  const pki = o.dir ? resolve(o.dir) : join(work, "pki");
  // A temporary CA's keys must not outlive the run (the report and logs may).
  const removeState = !o.dir && !o.keepState;
  o.onPrepared?.({ work, pki, removeState });
  try {
    return await body(o, { say, rate, dwell, pause, until, orStop, work, pki, removeState });
  } finally {
    if (removeState) {
      rmSync(pki, { recursive: true, force: true });
      rmSync(join(work, "state"), { recursive: true, force: true });
    }
  }
}

export interface Setup {
  say: (line: string) => void;
  rate: number;
  dwell: number;
  pause: (ms: number) => Promise<void>;
  until: (cond: () => boolean | Promise<boolean>, what: string, timeoutMs?: number) => Promise<void>;
  orStop: <T>(p: Promise<T>) => Promise<T>;
  work: string;
  pki: string;
  removeState: boolean;
}

/** What the phases of one file-mode run share. */
interface Run extends Setup {
  o: DrillOptions;
  ca: CertificateAuthority;
  logs: string;
  policy: string;
  book: LogBook;
  ports: { order: number; payment: number; inventory: number };
  /** The old order certificate, kept to prove at the end that the old generation is locked out. */
  oldOrder: { cert: Buffer; key: Buffer };
  oldGen: number;
  traffic: Traffic;
  straggler: Straggler;
  edgeReloads: Array<{ serial: string; at: number; trustChanged: boolean }>;
  reloads: ReloadTiming[];
  phases: PhaseLog;
  /** `ca rotate --plan`'s prediction for each gate, by the phase that does it. */
  planned: Map<PhaseName, PlanStep>;
}

async function drill(o: DrillOptions, setup: Setup): Promise<DrillReport> {
  // --- the CA, checked before anything is written ------------------------------------
  const ca = await openDrillCa(setup.pki);
  const { logs, policy } = prepareWork(setup.work);
  const book = new LogBook();
  const services = new Map<string, Launched>();
  let traffic: Traffic | undefined;
  let straggler: Straggler | undefined;
  try {
    const oldGen = await issueIdentities(o, setup, ca);
    const ports = await startMesh(setup, { pki: setup.pki, policy, logs, book, services });
    setup.say(
      `mesh up: order :${ports.order}, payment :${ports.payment}, inventory :${ports.inventory}; traffic ${setup.rate} orders/s`,
    );
    const oldOrder = {
      cert: readFileSync(ca.paths.leaf("order.internal").cert),
      key: readFileSync(ca.paths.leaf("order.internal").key),
    };
    const edgeReloads: Run["edgeReloads"] = [];
    traffic = new Traffic({
      pki: setup.pki,
      identity: "edge.internal",
      port: ports.order,
      rate: setup.rate,
      onReload: (r) => edgeReloads.push(r),
    });
    // A long-lived keep-alive connection authenticated under the old generation.
    straggler = new Straggler({
      port: ports.payment,
      servername: "payment.internal",
      ca: readFileSync(ca.paths.bundle),
      ...oldOrder,
    });
    const run: Run = {
      ...setup,
      o,
      ca,
      logs,
      policy,
      book,
      ports,
      oldOrder,
      oldGen,
      traffic,
      straggler,
      edgeReloads,
      reloads: [],
      phases: new PhaseLog(setup.say, (c) => recordPhase(logs, c), traffic, book),
      planned: new Map(),
    };

    traffic.start();
    straggler.start();
    // Warm up first: the first order crosses three cold services, which is no part of the baseline.
    await run.until(() => traffic!.succeeded >= 3, "the first orders to get through", 30_000);

    await baseline(run);
    const { newGen, explanations } = await carelessRotation(run);
    const recovered = await recovery(run);
    await trustBoth(run, newGen);
    const refusal = await reissue(run, newGen);
    const lingering = await dropOld(run, newGen);
    const proven = await proof(run);

    await traffic.stop();
    const phases = run.phases.reports();
    const checks = verdict(oldGen, phases, explanations, recovered, refusal, lingering, proven);
    const matched = [...run.planned].flatMap(([n, step]) => {
      const p = phases.find((x) => x.name === n);
      return p ? [matchStep(step, p, book)] : [];
    });
    checks.push(planCheck(matched, 4));
    const report: DrillReport = {
      ok: checks.every((c) => c.ok),
      mode: "file",
      dir: setup.pki,
      stateRemoved: setup.removeState,
      reportFile: join(setup.work, "report.json"),
      logs,
      withIntermediate: !!o.withIntermediate,
      rate: setup.rate,
      generations: { old: oldGen, new: newGen },
      phases,
      reloads: run.reloads,
      explanations,
      refusal,
      probe: proven.probe,
      checks,
      longestSafeGapMs: Math.max(0, ...phases.filter((p) => p.safe).map((p) => p.longestGapMs)),
    };
    writeFileSync(report.reportFile, `${JSON.stringify(report, null, 2)}\n`);
    return report;
  } finally {
    await traffic?.stop().catch(() => {}); // idempotent
    straggler?.stop();
    await Promise.all([...services.values()].map((s) => s.stop()));
    ca.close();
  }
}

/** Beside the services' logs, as a log line of its own: mesh:logs and the dashboard's timeline show the phases. */
function recordPhase(logs: string, c: Phase): void {
  appendFileSync(
    join(logs, "drill.log"),
    `${JSON.stringify({
      level: 30,
      time: new Date(c.at).toISOString(),
      service: "drill",
      event: "drill.phase",
      phase: c.name,
      safe: c.safe,
      msg: c.title,
    })}\n`,
  );
}

/** A fresh logs folder and the drill's policy in the work folder. */
function prepareWork(work: string): { logs: string; policy: string } {
  const logs = join(work, "logs");
  // Each run's logs stand beside its own report, not after an earlier run's.
  rmSync(logs, { recursive: true, force: true });
  mkdirSync(logs, { recursive: true });
  const policy = join(work, "policy.toml");
  writeFileSync(policy, DRILL_POLICY);
  return { logs, policy };
}

/** Every identity the drill needs, issued by the signer in force; returns its generation. */
async function issueIdentities(o: DrillOptions, { say, pki }: Setup, ca: CertificateAuthority): Promise<number> {
  const oldGen = ca.issuerRow(ca.signerId()).generation;
  const oldRoot = ca.issuerRow(`root-${oldGen}`);
  if (o.withIntermediate && ca.issuerRow(ca.signerId()).kind === "root") {
    await ca.createIntermediate({ name: `${oldRoot.name} Issuing` });
  }
  for (const name of ["order", "payment", "inventory", "edge"]) {
    const domain = `${name}.internal`;
    const current = ca.list().find((c) => c.domain === domain && c.status === "VALID");
    if (!current) await ca.issue({ domain });
    else if (current.issuerId !== ca.signerId()) await ca.renew({ domain });
  }
  say(
    `CA in ${pki}: generation ${oldGen} (${oldRoot.name})${o.withIntermediate ? " through an intermediate" : ""} signs order, payment, inventory and edge`,
  );
  return oldGen;
}

/** payment and inventory, then order in front of them; every service started is in `services`. */
async function startMesh(
  { pause }: Setup,
  m: { pki: string; policy: string; logs: string; book: LogBook; services: Map<string, Launched> },
): Promise<Run["ports"]> {
  const start = async (service: string, upstreams: string[] = []) => {
    const svc = await launchService({
      service,
      port: 0,
      pki: m.pki,
      policy: m.policy,
      upstreams,
      logFile: join(m.logs, `${service}.log`),
      onLine: (line) => line && m.book.add(service, line),
      // Enough stock that the drill's orders never run out.
      env: { ...process.env, MESH_INVENTORY_STOCK: "widget=10000000" },
    });
    m.services.set(service, svc);
    return svc;
  };
  await pause(0); // stopped already: start no service
  // Both settle before a failure is thrown, so the clean-up finds every service that did start.
  const started = await Promise.allSettled([start("payment"), start("inventory")]);
  for (const r of started) if (r.status === "rejected") throw r.reason;
  const [payment, inventory] = started.map((r) => (r as PromiseFulfilledResult<Launched>).value) as [
    Launched,
    Launched,
  ];
  const order = await start("order", [`payment=127.0.0.1:${payment.port}`, `inventory=127.0.0.1:${inventory.port}`]);
  return { order: order.port, payment: payment.port, inventory: inventory.port };
}

/** Runs a CA step that changes one identity's certificate; waits until it is served. */
async function certChange(run: Run, who: string, step: () => Promise<IssuedCert>): Promise<IssuedCert> {
  const { until, orStop, book, reloads, phases, ca, ports, edgeReloads } = run;
  const issued = await step();
  const written = Date.now();
  if (who === "edge") {
    await until(
      () => edgeReloads.some((r) => r.serial === issued.serial),
      `the traffic client to pick up serial ${issued.serial}`,
    );
    const r = edgeReloads.find((x) => x.serial === issued.serial)!;
    reloads.push({ phase: phases.name, who, what: "certificate", reloadMs: Math.max(0, r.at - written) });
    phases.note(
      `edge (the traffic client) now presents ${issued.serial.slice(0, 12)}… from ${issued.issuer} (reload ${Math.max(0, r.at - written)} ms)`,
    );
    return issued;
  }
  const port = ports[who as keyof typeof ports];
  const edge = ca.paths.leaf("edge.internal");
  // Watched from outside at once, not after the log line arrives (logs are flushed every 100 ms).
  const served = until(
    async () =>
      (await servedSerial(port, `${who}.internal`, readFileSync(edge.cert), readFileSync(edge.key))) === issued.serial,
    `${who} to serve ${issued.serial}`,
  ).then(() => Date.now());
  served.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
  const e = await orStop(
    book.waitFor(
      `${who} to reload its certificate`,
      written - 50,
      (x) => x.service === who && x.line.event === "tls.reloaded" && x.line.serial === issued.serial,
    ),
  );
  const timing = {
    phase: phases.name,
    who,
    what: "certificate" as const,
    reloadMs: Math.max(0, e.at - written),
    effectMs: (await served) - written,
  };
  reloads.push(timing);
  phases.note(
    `${who} serves ${issued.serial.slice(0, 12)}… from ${issued.issuer} (hot reload ${timing.reloadMs} ms, first new handshake after ${timing.effectMs} ms)`,
  );
  return issued;
}

/** Runs a CA step that changes bundle.pem or crls.pem; waits until every service and the client reloaded. */
async function trustChange(run: Run, what: string, step: () => Promise<unknown> | unknown): Promise<void> {
  const { until, orStop, book, reloads, phases, edgeReloads } = run;
  const before = edgeReloads.length;
  await step();
  const written = Date.now();
  for (const s of SERVICES) {
    const e = await orStop(
      book.waitFor(
        `${s} to reload its trust`,
        written - 50,
        (x) => x.service === s && x.line.event === "tls.reloaded" && x.line.trustChanged === true,
      ),
    );
    reloads.push({ phase: phases.name, who: s, what: "trust", reloadMs: Math.max(0, e.at - written) });
  }
  await until(() => edgeReloads.slice(before).some((r) => r.trustChanged), "the traffic client to reload its trust");
  const slowest = Math.max(
    ...reloads.filter((r) => r.phase === phases.name && r.what === "trust").map((r) => r.reloadMs),
  );
  phases.note(`${what}: every service reloaded it without a restart (slowest ${slowest} ms)`);
}

/** Before a gate: `ca rotate --plan`'s prediction, printed and kept for the check. */
function plan(run: Run, phase: PhaseName, order: readonly GateName[], gate: GateName): void {
  const step = foretell(run.ca, { text: DRILL_POLICY, file: run.policy }, order, gate, run.say);
  if (step) run.planned.set(phase, step);
}

// 1. Baseline ---------------------------------------------------------------------
async function baseline(run: Run): Promise<void> {
  run.phases.begin("baseline", `1. Baseline: everything issued by generation ${run.oldGen} and trusted as such`, true);
  await run.pause(run.dwell);
  run.phases.end();
}

// 2. The careless rotation ----------------------------------------------------------
async function carelessRotation(run: Run): Promise<{ newGen: number; explanations: DrillReport["explanations"] }> {
  const { ca, phases, o } = run;
  phases.begin(
    "careless",
    "2. The careless rotation: payment gets a certificate from a new root nobody trusts yet",
    false,
  );
  plan(run, "careless", CARELESS_ORDER, "activate");
  let newGen = 0;
  await trustChange(run, "a new root generation's CRL in crls.pem", async () => {
    const g = await ca.addGeneration({});
    newGen = g.generation;
    phases.note(`added ${g.name} (generation ${newGen}): not in bundle.pem yet`);
  });
  ca.useGeneration(newGen);
  if (o.withIntermediate) {
    const int = await ca.createIntermediate({ name: `${ca.issuerRow(`root-${newGen}`).name} Issuing` });
    phases.note(`added the issuing CA ${int.name} under generation ${newGen}`);
  }
  const carelessAt = Date.now();
  const careless = await certChange(run, "payment", () => ca.renew({ domain: "payment.internal" }));
  for (const w of careless.warnings) phases.note(`the CA warned: ${w}`);
  await run.pause(run.dwell);
  phases.end();
  const explanations = explain(run.book, carelessAt);
  for (const e of explanations) run.say(`  [${e.service}] ${e.event} ${e.reason}: ${e.msg}`);
  return { newGen, explanations };
}

// 3. Recovery -------------------------------------------------------------------
async function recovery(run: Run): Promise<PhaseCounts> {
  const { ca, phases, traffic } = run;
  phases.begin("recovery", `3. Recovery: payment goes back to a generation ${run.oldGen} certificate`, false);
  ca.useGeneration(run.oldGen);
  await certChange(run, "payment", () => ca.renew({ domain: "payment.internal" }));
  // Requests already failing when the fix landed are this phase's; those sent after must all succeed.
  const recovered = traffic.mark();
  await run.pause(run.dwell);
  traffic.unmark(recovered);
  phases.note(
    `${recovered.failed} of ${recovered.sent} request(s) sent after payment's recovery took effect failed (so far)`,
  );
  phases.end();
  return recovered;
}

// 4a. Trust both ------------------------------------------------------------------
async function trustBoth(run: Run, newGen: number): Promise<void> {
  run.phases.begin(
    "trust-both",
    `4a. Safe rotation: every service trusts generations ${run.oldGen} and ${newGen}`,
    true,
  );
  plan(run, "trust-both", SAFE_ORDER, "prepare");
  await trustChange(run, `bundle.pem with generations ${run.oldGen} and ${newGen}`, () => run.ca.publishBundle());
  await run.pause(run.dwell);
  run.phases.end();
}

// 4b. Re-issue, one at a time ------------------------------------------------------
/** Returns the CA's refusal to retire the old generation early (undefined: it did not refuse). */
async function reissue(run: Run, newGen: number): Promise<string | undefined> {
  const { ca, phases, oldGen } = run;
  phases.begin("reissue", `4b. Safe rotation: re-issue every identity from generation ${newGen}, one at a time`, true);
  plan(run, "reissue", SAFE_ORDER, "activate");
  ca.useGeneration(newGen);
  let refusal: string | undefined;
  try {
    ca.retireGeneration(oldGen);
  } catch (e) {
    if (!(e instanceof CaError)) throw e;
    refusal = e.message;
    phases.note(`retiring generation ${oldGen} now is refused by the CA: ${e.message}`);
  }
  for (const who of ["payment", "inventory", "order", "edge"]) {
    await certChange(run, who, () => ca.renew({ domain: `${who}.internal` }));
    await run.pause(run.dwell / 3);
  }
  await run.pause(run.dwell / 2);
  phases.end();
  return refusal;
}

// 4c. Drop the old generation ---------------------------------------------------
async function dropOld(run: Run, newGen: number): Promise<ReturnType<Straggler["summary"]>> {
  const { ca, phases, oldGen, book, orStop } = run;
  phases.begin("drop-old", `4c. Safe rotation: retire generation ${oldGen} and drop it from every trust bundle`, true);
  plan(run, "drop-old", SAFE_ORDER, "retire");
  const dropAt = Date.now();
  await trustChange(run, `bundle.pem with generation ${newGen} only`, () => {
    const { retired } = ca.retireGeneration(oldGen);
    phases.note(`retired ${retired.name}`);
  });
  const closed = await orStop(
    book
      .waitFor(
        "payment to close connections verified under the old trust",
        dropAt - 50,
        (x) => x.service === "payment" && x.line.event === "tls.connections_closed",
        5_000,
      )
      .catch(() => undefined),
  );
  await run.pause(run.dwell);
  const lingering = run.straggler.summary(dropAt);
  phases.note(
    closed
      ? `payment closed ${String(closed.line.count)} keep-alive connection(s) still authenticated under the old trust (${String(closed.line.why)})`
      : "payment logged no closed connection",
  );
  phases.note(
    `the straggler (a keep-alive connection with an old order certificate): ${lingering.closedAfter ? "closed by payment" : "NOT closed"}, then ${lingering.failuresAfter} refused reconnection(s), ${lingering.successesAfter} success(es)`,
  );
  phases.end();
  return lingering;
}

interface Proof {
  refusedOld: boolean;
  reason: string;
  probe: ProbeCell[];
}

// 5. Proof -------------------------------------------------------------------------
async function proof(run: Run): Promise<Proof> {
  const { ca, phases, oldGen, book, orStop, ports } = run;
  phases.begin("proof", `5. Proof: generation ${oldGen} is locked out, and the mesh does what the policy says`, true);
  const proofAt = Date.now();
  const refusedOld = await tryOldCertificate(
    ports.payment,
    "payment.internal",
    readFileSync(ca.paths.bundle),
    run.oldOrder,
  );
  const logged = await orStop(
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
    `an order certificate from generation ${oldGen}: ${refusedOld ? "refused in the handshake" : "ACCEPTED"}; payment logged ${reason}: ${logged?.line.msg ?? ""}`,
  );
  const { cells: probe } = await probeMesh({ pki: run.pki, policy: loadPolicy(run.policy), ports, logs: run.logs });
  const mismatches = probe.filter((c) => !c.ok);
  phases.note(`probe: ${probe.length - mismatches.length}/${probe.length} calls match the policy`);
  await run.pause(Math.min(run.dwell, 1_000));
  phases.end();
  return { refusedOld, reason, probe };
}

// --- the verdict -----------------------------------------------------------------
function verdict(
  oldGen: number,
  phases: PhaseReport[],
  explanations: DrillReport["explanations"],
  recovered: PhaseCounts,
  refusal: string | undefined,
  lingering: ReturnType<Straggler["summary"]>,
  { refusedOld, reason, probe }: Proof,
): Check[] {
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  const phase = (n: PhaseName) => phases.find((p) => p.name === n)!;
  check(
    "the careless rotation broke",
    phase("careless").failed > 0,
    `${phase("careless").failed} of ${phase("careless").sent} requests failed`,
  );
  const client = explanations.find((e) => e.service === "order");
  const server = explanations.find((e) => e.service === "payment");
  check(
    "both sides explained the break",
    !!client && !!server,
    `${client ? `order: ${client.reason}` : "order: nothing"}; ${server ? `payment: ${server.reason}` : "payment: nothing"}`,
  );
  const after = recovered.failed;
  check(
    "recovery healed the mesh",
    after === 0 && recovered.sent > 0,
    `${after} of ${recovered.sent} request(s) sent after the fix took effect failed`,
  );
  check(
    "early retirement refused",
    refusal !== undefined,
    refusal ?? `the CA let generation ${oldGen} retire while certificates still chained to it`,
  );
  for (const p of phases.filter((x) => x.safe)) {
    check(
      `no request lost in ${p.name}`,
      p.failed === 0 && p.sent > 0,
      `${p.succeeded}/${p.sent} succeeded${p.failed ? `; failures: ${JSON.stringify(p.reasons)}` : ""}`,
    );
  }
  check(
    `generation ${oldGen} rejected for unknown_ca`,
    refusedOld && reason === "unknown_ca",
    `${refusedOld ? "refused" : "accepted"}, logged ${reason}`,
  );
  check(
    "old keep-alive connections closed",
    lingering.closedAfter && lingering.successesAfter === 0,
    `straggler closed by payment: ${lingering.closedAfter}; answers after retirement: ${lingering.successesAfter}`,
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

/** The first lines on each side that explain the careless break. */
export function explain(book: LogBook, since: number): DrillReport["explanations"] {
  const pick = (service: string, event: string) =>
    book.since(since, (e) => e.service === service && e.line.event === event)[0];
  return [pick("order", "upstream.failed"), pick("payment", "tls.handshake_failed")]
    .filter((e): e is Entry => !!e)
    .map((e) => ({
      service: e.service,
      event: String(e.line.event),
      reason: String(e.line.reason ?? ""),
      msg: String(e.line.msg ?? ""),
    }));
}

export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
  signal?: AbortSignal,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25, signal);
  }
}
