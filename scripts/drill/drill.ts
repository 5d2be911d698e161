// The CA rotation drill: break the mesh with a careless rotation, recover,
// then rotate every service to a new root generation with traffic flowing
// and prove that nothing was lost and the old generation is locked out.
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CaError, CertificateAuthority, type IssuedCert } from "../../ca/index.ts";
import { eventLine, type EventName } from "../../lib/events.ts";
import { launchService, type Launched } from "../launch.ts";
import { loadPolicy } from "../../services/mesh/policy.ts";
import { probeMesh, type ProbeCell } from "../probe.ts";
import { LogBook, type Entry } from "./logbook.ts";
import { servedSerial, Straggler, tryOldCertificate } from "./peers.ts";
import { longestGap, Traffic, type PhaseCounts } from "./traffic.ts";

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

export type PhaseName = "baseline" | "careless" | "recovery" | "trust-both" | "reissue" | "drop-old" | "proof";

export interface PhaseReport extends PhaseCounts {
  name: PhaseName;
  title: string;
  /** A safe phase must lose no request. */
  safe: boolean;
  startedAt: string;
  ms: number;
  /** The longest stretch within the phase without a successful order (see traffic.ts longestGap). */
  longestGapMs: number;
  /**
   * tls.handshake_failed lines the services logged during the phase, "payment:unknown_ca" → count:
   * log lines from any client (the drill's own old-certificate and probe calls too), not orders.
   */
  handshakeFailures: Record<string, number>;
  /** upstream.failed lines order logged, "payment:server_untrusted" → count: the same failures as `reasons`, seen by order. */
  upstreamFailures: Record<string, number>;
  notes: string[];
}

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
  online?: { lifetimeMs: number; pollMs: number; carelessGeneration: number; victims: string[]; renewals: number; rotationMs: number };
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
  const ca = CertificateAuthority.exists(pki) ? await CertificateAuthority.open({ dir: pki }) : await CertificateAuthority.init({ dir: pki, name: "Acme Corp CA" });
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
  const trusted = ca.generations().filter((g) => g.root.state === "published").map((g) => g.generation);
  const fromIt = ca.list().filter((c) => c.status === "VALID" && c.generation === signer.generation).map((c) => c.domain);
  const dir = ca.paths.dir;
  const back = trusted.at(-1);
  const rollBack = back === undefined ? "" : `roll back with \`npm run ca -- generation use ${back} --dir ${dir}\`${fromIt.map((d) => ` and \`npm run ca -- renew --domain ${d} --dir ${dir}\``).join("")}, or `;
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
export async function runWith<O extends DrillOptions>(o: O, body: (o: O, setup: Setup) => Promise<DrillReport>): Promise<DrillReport> {
  const say = o.say ?? (() => {});
  const rate = o.rate ?? 20;
  const dwell = o.dwellMs ?? 2_500;
  const signal = o.signal;
  const pause = (ms: number) => sleep(ms, signal);
  const until = (cond: () => boolean | Promise<boolean>, what: string, timeoutMs?: number) => waitUntil(cond, what, timeoutMs, signal);
  // A log line to wait for, unless the drill is stopped first.
  const interrupted = new Promise<never>((_, reject) => signal?.addEventListener("abort", () => reject(new DrillInterrupted(String(signal.reason ?? "aborted"))), { once: true }));
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

async function drill(o: DrillOptions, { say, rate, dwell, pause, until, orStop, work, pki, removeState }: Setup): Promise<DrillReport> {
  // --- the CA, checked before anything is written ------------------------------------
  const ca = await openDrillCa(pki);
  const logs = join(work, "logs");
  // Each run's logs stand beside its own report, not after an earlier run's.
  rmSync(logs, { recursive: true, force: true });
  mkdirSync(logs, { recursive: true });
  const policy = join(work, "policy.toml");
  writeFileSync(policy, DRILL_POLICY);

  const book = new LogBook();
  const services = new Map<string, Launched>();
  const phases: PhaseReport[] = [];
  const reloads: ReloadTiming[] = [];
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

  // --- the identities -------------------------------------------------------------
  let traffic: Traffic | undefined;
  let straggler: Straggler | undefined;
  try {
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
    say(`CA in ${pki}: generation ${oldGen} (${oldRoot.name})${o.withIntermediate ? " through an intermediate" : ""} signs order, payment, inventory and edge`);

    // --- the mesh ----------------------------------------------------------------
    const start = async (service: string, upstreams: string[] = []) => {
      const svc = await launchService({
        service, port: 0, pki, policy, upstreams, logFile: join(logs, `${service}.log`),
        onLine: (line) => line && book.add(service, line),
        // Enough stock that the drill's orders never run out.
        env: { ...process.env, MESH_INVENTORY_STOCK: "widget=10000000" },
      });
      services.set(service, svc);
      return svc;
    };
    await pause(0); // stopped already: start no service
    // Both settle before a failure is thrown, so the clean-up finds every service that did start.
    const started = await Promise.allSettled([start("payment"), start("inventory")]);
    for (const r of started) if (r.status === "rejected") throw r.reason;
    const [payment, inventory] = started.map((r) => (r as PromiseFulfilledResult<Launched>).value) as [Launched, Launched];
    const order = await start("order", [`payment=127.0.0.1:${payment.port}`, `inventory=127.0.0.1:${inventory.port}`]);
    const ports = { order: order.port, payment: payment.port, inventory: inventory.port };
    say(`mesh up: order :${ports.order}, payment :${ports.payment}, inventory :${ports.inventory}; traffic ${rate} orders/s`);

    // The old order certificate, kept to prove at the end that generation ${oldGen} is locked out.
    const oldOrder = { cert: readFileSync(ca.paths.leaf("order.internal").cert), key: readFileSync(ca.paths.leaf("order.internal").key) };
    let edgeReloads: Array<{ serial: string; at: number; trustChanged: boolean }> = [];
    traffic = new Traffic({ pki, identity: "edge.internal", port: ports.order, rate, onReload: (r) => edgeReloads.push(r) });
    // A long-lived keep-alive connection authenticated under the old generation.
    straggler = new Straggler({ port: ports.payment, servername: "payment.internal", ca: readFileSync(ca.paths.bundle), ...oldOrder });

    // --- phase bookkeeping -----------------------------------------------------------
    let current: { name: PhaseName; title: string; safe: boolean; at: number; notes: string[] } | undefined;
    const begin = (name: PhaseName, title: string, safe: boolean) => {
      current = { name, title, safe, at: Date.now(), notes: [] };
      traffic!.phase = name;
      say(`\n▶ ${title}`);
      // Beside the services' logs, as a log line of its own: mesh:logs and the dashboard's timeline show the phases.
      appendFileSync(join(logs, "drill.log"), eventLine({ level: "info", service: "drill", time: new Date(current.at) }, { event: "drill.phase", phase: name, safe }, title));
    };
    const note = (s: string) => {
      current!.notes.push(s);
      say(`  ${s}`);
    };
    // Counts are read when the drill is over, so a request still in flight at a
    // phase's end is counted, success or failure, in the phase that sent it.
    const ended: Array<NonNullable<typeof current> & { until: number }> = [];
    const end = () => ended.push({ ...current!, until: Date.now() });
    const phaseReports = (): PhaseReport[] => ended.map((c) => ({
      name: c.name, title: c.title, safe: c.safe, startedAt: new Date(c.at).toISOString(), ms: c.until - c.at,
      ...(traffic!.counts.get(c.name) ?? { sent: 0, succeeded: 0, failed: 0, reasons: {} }),
      longestGapMs: longestGap(traffic!.successes, c.at, c.until),
      handshakeFailures: book.tally(c.at, c.until, "tls.handshake_failed", (l) => l.reason),
      upstreamFailures: book.tally(c.at, c.until, "upstream.failed", (l) => `${l.upstream}:${l.reason}`),
      notes: c.notes,
    }));

    /** Runs a CA step that changes one identity's certificate; waits until it is served. */
    const certChange = async (who: string, step: () => Promise<IssuedCert>) => {
      const issued = await step();
      const written = Date.now();
      if (who === "edge") {
        await until(() => edgeReloads.some((r) => r.serial === issued.serial), `the traffic client to pick up serial ${issued.serial}`);
        const r = edgeReloads.find((x) => x.serial === issued.serial)!;
        reloads.push({ phase: current!.name, who, what: "certificate", reloadMs: Math.max(0, r.at - written) });
        note(`edge (the traffic client) now presents ${issued.serial.slice(0, 12)}… from ${issued.issuer} (reload ${Math.max(0, r.at - written)} ms)`);
        return issued;
      }
      const port = ports[who as keyof typeof ports];
      const edge = ca.paths.leaf("edge.internal");
      // Watched from outside at once, not after the log line arrives (logs are flushed every 100 ms).
      const served = until(async () => (await servedSerial(port, `${who}.internal`, readFileSync(edge.cert), readFileSync(edge.key))) === issued.serial, `${who} to serve ${issued.serial}`).then(() => Date.now());
      served.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
      const e = await orStop(book.waitFor(`${who} to reload its certificate`, written - 50, { event: "tls.reloaded", where: (x) => x.service === who && x.line.serial === issued.serial }));
      const timing = { phase: current!.name, who, what: "certificate" as const, reloadMs: Math.max(0, e.at - written), effectMs: (await served) - written };
      reloads.push(timing);
      note(`${who} serves ${issued.serial.slice(0, 12)}… from ${issued.issuer} (hot reload ${timing.reloadMs} ms, first new handshake after ${timing.effectMs} ms)`);
      return issued;
    };

    /** Runs a CA step that changes bundle.pem or crls.pem; waits until every service and the client reloaded. */
    const trustChange = async (what: string, step: () => Promise<unknown> | unknown) => {
      const before = edgeReloads.length;
      await step();
      const written = Date.now();
      for (const s of SERVICES) {
        const e = await orStop(book.waitFor(`${s} to reload its trust`, written - 50, { event: "tls.reloaded", where: (x) => x.service === s && x.line.trustChanged }));
        reloads.push({ phase: current!.name, who: s, what: "trust", reloadMs: Math.max(0, e.at - written) });
      }
      await until(() => edgeReloads.slice(before).some((r) => r.trustChanged), "the traffic client to reload its trust");
      const slowest = Math.max(...reloads.filter((r) => r.phase === current!.name && r.what === "trust").map((r) => r.reloadMs));
      note(`${what}: every service reloaded it without a restart (slowest ${slowest} ms)`);
    };

    traffic.start();
    straggler.start();
    // Warm up first: the first order crosses three cold services, which is no part of the baseline.
    await until(() => traffic!.succeeded >= 3, "the first orders to get through", 30_000);

    // 1. Baseline ---------------------------------------------------------------------
    begin("baseline", `1. Baseline: everything issued by generation ${oldGen} and trusted as such`, true);
    await pause(dwell);
    end();

    // 2. The careless rotation ----------------------------------------------------------
    begin("careless", "2. The careless rotation: payment gets a certificate from a new root nobody trusts yet", false);
    let newGen = 0;
    await trustChange("a new root generation's CRL in crls.pem", async () => {
      const g = await ca.addGeneration({});
      newGen = g.generation;
      note(`added ${g.name} (generation ${newGen}): not in bundle.pem yet`);
    });
    ca.useGeneration(newGen);
    if (o.withIntermediate) {
      const int = await ca.createIntermediate({ name: `${ca.issuerRow(`root-${newGen}`).name} Issuing` });
      note(`added the issuing CA ${int.name} under generation ${newGen}`);
    }
    const carelessAt = Date.now();
    const careless = await certChange("payment", () => ca.renew({ domain: "payment.internal" }));
    for (const w of careless.warnings) note(`the CA warned: ${w}`);
    await pause(dwell);
    end();
    const explanations = explain(book, carelessAt);
    for (const e of explanations) say(`  [${e.service}] ${e.event} ${e.reason}: ${e.msg}`);

    // 3. Recovery -------------------------------------------------------------------
    begin("recovery", `3. Recovery: payment goes back to a generation ${oldGen} certificate`, false);
    ca.useGeneration(oldGen);
    await certChange("payment", () => ca.renew({ domain: "payment.internal" }));
    // Requests already failing when the fix landed are this phase's; those sent after must all succeed.
    const recovered = traffic.mark();
    await pause(dwell);
    traffic.unmark(recovered);
    note(`${recovered.failed} of ${recovered.sent} request(s) sent after payment's recovery took effect failed (so far)`);
    end();

    // 4a. Trust both ------------------------------------------------------------------
    begin("trust-both", `4a. Safe rotation: every service trusts generations ${oldGen} and ${newGen}`, true);
    await trustChange(`bundle.pem with generations ${oldGen} and ${newGen}`, () => ca.publishBundle());
    await pause(dwell);
    end();

    // 4b. Re-issue, one at a time ------------------------------------------------------
    begin("reissue", `4b. Safe rotation: re-issue every identity from generation ${newGen}, one at a time`, true);
    ca.useGeneration(newGen);
    let refusal: string | undefined;
    try {
      ca.retireGeneration(oldGen);
    } catch (e) {
      if (!(e instanceof CaError)) throw e;
      refusal = e.message;
      note(`retiring generation ${oldGen} now is refused by the CA: ${e.message}`);
    }
    for (const who of ["payment", "inventory", "order", "edge"]) {
      await certChange(who, () => ca.renew({ domain: `${who}.internal` }));
      await pause(dwell / 3);
    }
    await pause(dwell / 2);
    end();

    // 4c. Drop the old generation ---------------------------------------------------
    begin("drop-old", `4c. Safe rotation: retire generation ${oldGen} and drop it from every trust bundle`, true);
    const dropAt = Date.now();
    await trustChange(`bundle.pem with generation ${newGen} only`, () => {
      const { retired } = ca.retireGeneration(oldGen);
      note(`retired ${retired.name}`);
    });
    const closed = await orStop(book.waitFor("payment to close connections verified under the old trust", dropAt - 50, { event: "tls.connections_closed", where: (x) => x.service === "payment" }, 5_000).catch(() => undefined));
    await pause(dwell);
    const lingering = straggler.summary(dropAt);
    note(closed ? `payment closed ${closed.line.count} keep-alive connection(s) still authenticated under the old trust (${closed.line.why})` : "payment logged no closed connection");
    note(`the straggler (a keep-alive connection with an old order certificate): ${lingering.closedAfter ? "closed by payment" : "NOT closed"}, then ${lingering.failuresAfter} refused reconnection(s), ${lingering.successesAfter} success(es)`);
    end();

    // 5. Proof -------------------------------------------------------------------------
    begin("proof", `5. Proof: generation ${oldGen} is locked out, and the mesh does what the policy says`, true);
    const proofAt = Date.now();
    const refusedOld = await tryOldCertificate(ports.payment, "payment.internal", readFileSync(ca.paths.bundle), oldOrder);
    const logged = await orStop(book.waitFor("payment to log the old certificate's refusal", proofAt - 50, { event: "tls.handshake_failed", where: (x) => x.service === "payment" && x.line.peer?.serial !== undefined }, 5_000).catch(() => undefined));
    const reason = logged ? logged.line.reason : "(nothing logged)";
    note(`an order certificate from generation ${oldGen}: ${refusedOld ? "refused in the handshake" : "ACCEPTED"}; payment logged ${reason}: ${logged?.line.msg ?? ""}`);
    const { cells: probe } = await probeMesh({ pki, policy: loadPolicy(policy), ports, logs });
    const mismatches = probe.filter((c) => !c.ok);
    note(`probe: ${probe.length - mismatches.length}/${probe.length} calls match the policy`);
    await pause(Math.min(dwell, 1_000));
    end();

    await traffic.stop();
    phases.push(...phaseReports());

    // --- the verdict -----------------------------------------------------------------
    const phase = (n: PhaseName) => phases.find((p) => p.name === n)!;
    check("the careless rotation broke", phase("careless").failed > 0, `${phase("careless").failed} of ${phase("careless").sent} requests failed`);
    const client = explanations.find((e) => e.service === "order");
    const server = explanations.find((e) => e.service === "payment");
    check("both sides explained the break", !!client && !!server, `${client ? `order: ${client.reason}` : "order: nothing"}; ${server ? `payment: ${server.reason}` : "payment: nothing"}`);
    const after = recovered.failed;
    check("recovery healed the mesh", after === 0 && recovered.sent > 0, `${after} of ${recovered.sent} request(s) sent after the fix took effect failed`);
    check("early retirement refused", refusal !== undefined, refusal ?? `the CA let generation ${oldGen} retire while certificates still chained to it`);
    for (const p of phases.filter((x) => x.safe)) {
      check(`no request lost in ${p.name}`, p.failed === 0 && p.sent > 0, `${p.succeeded}/${p.sent} succeeded${p.failed ? `; failures: ${JSON.stringify(p.reasons)}` : ""}`);
    }
    check(`generation ${oldGen} rejected for unknown_ca`, refusedOld && reason === "unknown_ca", `${refusedOld ? "refused" : "accepted"}, logged ${reason}`);
    check("old keep-alive connections closed", lingering.closedAfter && lingering.successesAfter === 0, `straggler closed by payment: ${lingering.closedAfter}; answers after retirement: ${lingering.successesAfter}`);
    check("probe matches the policy", mismatches.length === 0, mismatches.length ? mismatches.map((m) => `${m.caller}->${m.callee}: ${m.observed} (policy: ${m.expected})`).join("; ") : `${probe.length} calls`);

    const report: DrillReport = {
      ok: checks.every((c) => c.ok), mode: "file", dir: pki, stateRemoved: removeState, reportFile: join(work, "report.json"), logs, withIntermediate: !!o.withIntermediate, rate,
      generations: { old: oldGen, new: newGen }, phases, reloads, explanations, refusal, probe, checks,
      longestSafeGapMs: Math.max(0, ...phases.filter((p) => p.safe).map((p) => p.longestGapMs)),
    };
    writeFileSync(report.reportFile, JSON.stringify(report, null, 2) + "\n");
    return report;
  } finally {
    await traffic?.stop().catch(() => {}); // idempotent
    straggler?.stop();
    await Promise.all([...services.values()].map((s) => s.stop()));
    ca.close();
  }
}

/** The first lines on each side that explain the careless break. */
export function explain(book: LogBook, since: number): DrillReport["explanations"] {
  const pick = <E extends EventName>(service: string, event: E) => book.since(since, { event, where: (e) => e.service === service })[0];
  return [pick("order", "upstream.failed"), pick("payment", "tls.handshake_failed")]
    .filter((e) => e !== undefined)
    .map(explanation);
}

/** What an entry that explains a failure says: its event, its reason code and its sentence. */
export function explanation(e: Entry<"upstream.failed" | "tls.handshake_failed" | "identity.renew_failed" | "identity.expired">): DrillReport["explanations"][number] {
  return { service: e.service, event: e.line.event, reason: "reason" in e.line ? e.line.reason : "", msg: e.line.msg };
}

export async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000, signal?: AbortSignal): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25, signal);
  }
}
