// The rotation drill on the online mesh: a CA server (EST) in-process, services that enrol with a
// token and renew on their own, a careless rotation that breaks them through their own renewals,
// and the safe rotation run hands-off by runRotation, gate by gate, with traffic flowing.
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CertificateAuthority, createToken, runRotation, type RotationEvent } from "../../ca/index.ts";
import { eventLine, type EventName } from "../../lib/events.ts";
import { createLogger } from "../../services/mesh/log.ts";
import { loadPolicy } from "../../services/mesh/policy.ts";
import { enrolWithToken, parseToken } from "../../services/mesh/identity-agent/bootstrap.ts";
import { IdentityAgent } from "../../services/mesh/identity-agent/renewer.ts";
import { statePaths, type StatePaths } from "../../services/mesh/identity-agent/state-folder.ts";
import { launchService, type Launched } from "../launch.ts";
import { parseLine } from "../mesh-format.ts";
import { probeMesh } from "../probe.ts";
import { startDrillCa, type DrillCa } from "./ca-process.ts";
import { explanation, openDrillCa, DRILL_POLICY, runWith, SERVICES, type Check, type DrillOptions, type DrillReport, type GateMark, type PhaseName, type PhaseReport, type Setup } from "./drill.ts";
import { LogBook, type Entry } from "./logbook.ts";
import { servedSerial, Straggler, tryOldCertificate } from "./peers.ts";
import { longestGap, Traffic } from "./traffic.ts";

export interface OnlineDrillOptions extends DrillOptions {
  /** Lifetime of every certificate the CA server issues (ms): short, so renewals happen during the drill. */
  lifetimeMs?: number;
  /** How often each service polls the CA's bundle and CRLs (ms); the rotation's gates move at this pace. */
  pollMs?: number;
  /** How long each of the rotation's gates may wait (ms). */
  gateTimeoutMs?: number;
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

async function online(o: OnlineDrillOptions, { say, rate, dwell, pause, until, orStop, work, pki, removeState }: Setup): Promise<DrillReport> {
  const lifetimeMs = o.lifetimeMs ?? ONLINE_DEFAULTS.lifetimeMs;
  const pollMs = o.pollMs ?? ONLINE_DEFAULTS.pollMs;
  const gateTimeoutMs = o.gateTimeoutMs ?? Math.max(30_000, 20 * pollMs);
  // The lifetime is asked as whole seconds (the services' --lifetime takes 90s, 10m, 1h).
  const lifetime = seconds(lifetimeMs);
  const lifeMs = Number(lifetime.slice(0, -1)) * 1000;

  // --- the CA: the drill's own handle (as the CLI has), checked before anything is written ---
  const ca = await openDrillCa(pki);
  const logs = join(work, "logs");
  const stateRoot = join(work, "state");
  rmSync(logs, { recursive: true, force: true });
  rmSync(stateRoot, { recursive: true, force: true });
  mkdirSync(logs, { recursive: true });
  mkdirSync(stateRoot, { recursive: true, mode: 0o700 });
  const policy = join(work, "policy.toml");
  writeFileSync(policy, DRILL_POLICY);
  const drillLog = (line: string) => appendFileSync(join(logs, "drill.log"), line);

  const book = new LogBook();
  const services = new Map<string, Launched>();
  const phases: PhaseReport[] = [];
  const checks: Check[] = [];
  const gates: GateMark[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  const stateOf = (who: string): StatePaths => statePaths(join(stateRoot, who));

  let server: DrillCa | undefined;
  let rotationCa: CertificateAuthority | undefined;
  let traffic: Traffic | undefined;
  let straggler: Straggler | undefined;
  let edgeAgent: IdentityAgent | undefined;
  try {
    const oldGen = ca.issuerRow(ca.signerId()).generation;
    const oldRoot = ca.issuerRow(`root-${oldGen}`);
    if (o.withIntermediate && ca.issuerRow(ca.signerId()).kind === "root") await ca.createIntermediate({ name: `${oldRoot.name} Issuing` });

    // The server runs in a process of its own, with its own handle on the folder, as `ca serve`
    // does (ca-process.ts says why it must not share the drill's event loop).
    server = await startDrillCa(
      { pki, lifetimeMs: lifeMs, limits: LIMITS, pollMs: Math.min(500, pollMs) },
      { logFile: join(logs, "ca.log"), onLine: (line) => book.add("ca", line) },
    );
    const caUrl = server.url;
    say(`CA serving EST on ${caUrl} from ${pki}: generation ${oldGen} (${oldRoot.name})${o.withIntermediate ? " through an intermediate" : ""} signs; certificates live ${lifetime}, services poll every ${pollMs} ms`);

    // --- the mesh: each service enrols with its own one-time token, passed in its environment ---
    const ports: Record<string, number> = { payment: 0, inventory: 0, order: 0 };
    const start = async (service: string, upstreams: string[] = []) => {
      // replace: a victim of the careless rotation enrols again in place of the certificate it never installed.
      const token = createToken(ca, { domain: `${service}.internal`, replace: true }).token;
      const svc = await launchService({
        service, port: ports[service] ?? 0, pki, policy, upstreams, logFile: join(logs, `${service}.log`),
        onLine: (line) => line && book.add(service, line),
        env: { ...process.env, MESH_ENROL_TOKEN: token, MESH_INVENTORY_STOCK: "widget=10000000" },
        identity: { ca: caUrl, state: stateOf(service).dir, lifetime, poll: pollMs / 1000 },
      });
      services.set(service, svc);
      ports[service] = svc.port;
      return svc;
    };
    await pause(0);
    const started = await Promise.allSettled([start("payment"), start("inventory")]);
    for (const r of started) if (r.status === "rejected") throw r.reason;
    const upstreamsOfOrder = () => [`payment=127.0.0.1:${ports.payment}`, `inventory=127.0.0.1:${ports.inventory}`];
    await start("order", upstreamsOfOrder());

    // edge, the traffic client, is an identity like the others: enrolled with a token, renewed by
    // the same agent the services run, in this process.
    const edgeLog = createLogger("edge", sink(join(logs, "edge.log"), "edge", book));
    const edgeFiles = (p: StatePaths) => ({ key: p.key, cert: p.cert, bundle: p.bundle, crls: p.crls });
    const enrolEdge = async () => {
      const e = await enrolWithToken({ caUrl, token: parseToken(createToken(ca, { domain: "edge.internal", replace: true }).token, "the drill"), dns: "edge.internal", paths: stateOf("edge"), lifetime });
      edgeLog.info({ event: "identity.enrolled", serial: e.facts.serial, issuer: e.facts.issuer, root: e.facts.root, generation: e.facts.generation, notAfter: e.facts.notAfter }, `enrolled edge.internal: serial ${e.facts.serial}`);
    };
    const startEdgeAgent = () => {
      edgeAgent = new IdentityAgent(
        { caUrl, dns: "edge.internal", paths: stateOf("edge"), lifetime, pollMs },
        { reloadTls: () => traffic!.reload(), log: edgeLog, metrics: { renewed() {}, renewalFailed() {} } },
      );
      edgeAgent.start();
    };
    await enrolEdge();
    // A new connection every 2 s or so: an expired identity is refused on new handshakes only.
    traffic = new Traffic({ pki, identity: "edge.internal", port: ports.order!, rate, paths: edgeFiles(stateOf("edge")), requestsPerConnection: Math.max(5, 2 * rate) });
    startEdgeAgent();
    say(`mesh up in identity mode: order :${ports.order}, payment :${ports.payment}, inventory :${ports.inventory}, each enrolled with its own token; traffic ${rate} orders/s from edge`);

    // --- phase bookkeeping (as in file mode) ---
    let current: { name: PhaseName; title: string; safe: boolean; at: number; notes: string[] } | undefined;
    const ended: Array<NonNullable<typeof current> & { until: number }> = [];
    const begin = (name: PhaseName, title: string, safe: boolean) => {
      current = { name, title, safe, at: Date.now(), notes: [] };
      traffic!.phase = name;
      say(`\n▶ ${title}`);
      drillLog(eventLine({ level: "info", service: "drill" }, { event: "drill.phase", phase: name, safe }, title));
    };
    const note = (s: string) => {
      current!.notes.push(s);
      say(`  ${s}`);
    };
    const end = () => ended.push({ ...current!, until: Date.now() });

    traffic.start();
    await until(() => traffic!.succeeded >= 3, "the first orders to get through", 30_000);

    // 1. Baseline ---------------------------------------------------------------------
    begin("baseline", `1. Baseline: four identities enrolled over EST from generation ${oldGen}, renewing on their own every ~${Math.round((lifeMs * 2) / 3000)} s`, true);
    // Until one of them has renewed on its own schedule, under traffic: a renewal is part of normal life.
    const firstRenewal = await orStop(book.waitFor("the first scheduled renewal", 0, { event: "identity.renewed" }, lifeMs + 10_000));
    note(`${firstRenewal.service} renewed on its own schedule under traffic: serial ${firstRenewal.line.previous.slice(0, 12)}… → ${firstRenewal.line.serial.slice(0, 12)}… (generation ${firstRenewal.line.generation}), valid until ${firstRenewal.line.notAfter}`);
    await pause(dwell);
    end();

    // 2. The careless rotation ----------------------------------------------------------
    begin("careless", "2. The careless rotation: a new generation signs before anyone trusts it (generation add + use, no bundle)", false);
    const carelessAt = Date.now();
    const g2 = await ca.addGeneration({});
    const carelessGen = g2.generation;
    ca.useGeneration(carelessGen);
    note(`added ${g2.name} (generation ${carelessGen}) and made it the signer; bundle.pem still holds only generation ${oldGen}`);
    // Nothing is forced: the next scheduled renewal meets the untrusted signer.
    const firstFailure = await orStop(book.waitFor("a renewal to meet the untrusted signer", carelessAt, { event: "identity.renew_failed" }, lifeMs + 10_000));
    const why = firstFailure.line.reason;
    note(/does not chain to a root/.test(why)
      ? `${firstFailure.service} renewed on schedule and got a certificate from ${g2.name}: it refused to install it (${why}), keeps its old one, which the CA has already marked superseded`
      : `${firstFailure.service}'s renewal failed: ${why}`);
    const superseded = await orStop(book.waitFor("a retried renewal to be refused", carelessAt, { event: "identity.renew_failed", where: (e) => /superseded|already renewed/.test(e.line.reason) }, lifeMs + 10_000).catch(() => undefined));
    if (superseded) note(`${superseded.service} retried: refused (${superseded.line.reason}); it cannot renew any more and runs out of life`);
    const failedBefore = traffic.counts.get("careless")?.failed ?? 0;
    // Every identity renews within ~3/4 of its life and expires at its end: within two lifetimes
    // some victim's expiry meets a new handshake.
    await until(() => (traffic!.counts.get("careless")?.failed ?? 0) > failedBefore, "the first failed order once a victim's certificate expires", 2 * lifeMs + 10_000).catch(() => {});
    const expired = book.since(carelessAt, { event: "identity.expired" })[0];
    if (expired) note(`${expired.service}'s certificate expired (${expired.line.serial.slice(0, 12)}…): ${expired.line.msg.slice(0, 160)}`);
    // Long enough to see the break spread as connections are made anew.
    await pause(Math.max(dwell, 2_000));
    end();
    const failedRenewal = book.since(carelessAt, { event: "identity.renew_failed" }).map((e) => e.service);
    const explanations = [firstFailure, superseded, expired, book.since(carelessAt, (e): e is Entry<"tls.handshake_failed" | "upstream.failed"> => e.line.event === "tls.handshake_failed" || e.line.event === "upstream.failed")[0]]
      .filter((e) => e !== undefined)
      .map(explanation);
    for (const e of explanations) say(`  [${e.service}] ${e.event} ${e.reason}: ${e.msg.slice(0, 200)}`);

    // 3. Recovery -------------------------------------------------------------------
    begin("recovery", `3. Recovery: generation ${oldGen} signs again; each victim enrols again with a new token`, false);
    ca.useGeneration(oldGen);
    // From here no certificate of the careless generation is issued: the ledger names every
    // identity whose current certificate came from it (issued, never installed), even one whose
    // renew_failed line is still in its log buffer.
    const fromCareless = ca.list().filter((c) => c.status === "VALID" && c.generation === carelessGen).map((c) => c.domain.replace(/\.internal$/, ""));
    const victims = [...new Set([...failedRenewal, ...fromCareless])].filter((v) => (IDENTITIES as readonly string[]).includes(v));
    note(`generation use ${oldGen}; victims (their renewal refused, no way back by renewal): ${victims.join(", ")}`);
    for (const v of victims) {
      // What identity.expired tells a person to do: a new token, and the service started with it.
      rmSync(stateOf(v).dir, { recursive: true, force: true });
      if (v === "edge") {
        edgeAgent?.stop();
        await enrolEdge();
        traffic.reload();
        startEdgeAgent();
      } else {
        await services.get(v)?.stop();
        services.delete(v);
        await start(v, v === "order" ? upstreamsOfOrder() : []);
      }
      note(`${v} enrolled again from generation ${oldGen}${v === "edge" ? "" : ` (restarted on :${ports[v]})`}`);
    }
    const recovered = traffic.mark();
    // The careless generation served no one in the end: once nothing valid chains to it, retire it.
    try {
      ca.retireGeneration(carelessGen);
      note(`retired the careless generation ${carelessGen}: nothing valid chains to it`);
    } catch (e) {
      note(`generation ${carelessGen} stays (not retired): ${(e as Error).message}`);
    }
    await pause(dwell);
    traffic.unmark(recovered);
    note(`${recovered.failed} of ${recovered.sent} request(s) sent after the victims enrolled again failed`);
    end();

    // 4. The safe rotation, hands-off -------------------------------------------------------
    // A keep-alive connection under the old generation (order's newest certificate), to see it cut at retirement.
    const orderNow = { cert: readFileSync(stateOf("order").cert), key: readFileSync(stateOf("order").key) };
    const oldOrder = orderNow;
    straggler = new Straggler({ port: ports.payment!, servername: "payment.internal", ca: readFileSync(ca.paths.bundle), ...orderNow });
    straggler.start();
    rotationCa = await CertificateAuthority.open({ dir: pki });
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    o.signal?.addEventListener("abort", onAbort, { once: true });
    let newGen = 0;
    let rotationStart = 0;
    let rotationMs = 0;
    let retiredAt = 0;
    begin("trust-both", "4a. Safe rotation, gate 1 (prepare): add and publish a generation; wait until every identity has fetched it", true);
    const onEvent = (e: RotationEvent) => {
      newGen = e.to;
      const at = new Date().toISOString();
      gates.push({ at, gate: e.gate, state: e.state, waitingFor: e.waitingFor, msg: e.msg });
      const { msg, ...fields } = e;
      drillLog(eventLine({ level: e.state === "timeout" ? "error" : "info", service: "ca" }, fields, msg));
      say(`  gate ${e.gate} ${e.state}: ${e.msg}`);
      if (e.gate === "retire" && e.state === "passed") retiredAt = Date.now();
      if (e.gate === "activate" && e.state === "started") {
        end();
        begin("reissue", `4b. Safe rotation, gates 2-3 (activate, then wait): generation ${e.to} signs; every identity renews onto it (the CA's renew-now hint)`, true);
      }
    };
    rotationStart = Date.now();
    try {
      await runRotation(rotationCa, { timeoutMs: gateTimeoutMs, intervalMs: Math.min(250, pollMs), inUse: true, signal: stop.signal, onEvent, owner: `drill:${process.pid}` });
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
    }
    rotationMs = Date.now() - rotationStart;
    await pause(0);
    end();

    // 4c. Drop the old generation: it was retired by gate 3; each service drops it at its next poll.
    begin("drop-old", `4c. Safe rotation done: generation ${oldGen} retired; every service drops it at its next bundle poll`, true);
    const notDropped: string[] = [];
    for (const s of IDENTITIES) {
      const seen = await orStop(book.waitFor(`${s} to fetch the bundle without generation ${oldGen}`, retiredAt, { event: "trust.updated", where: (x) => x.service === s && !x.line.roots.includes(oldRoot.name) }, 10 * pollMs + 10_000).catch(() => undefined));
      if (!seen) {
        // What it did last, for the report: the check below fails with it.
        const last = book.since(retiredAt - 5_000, (x) => x.service === s && /^(trust|identity|tls)\./.test(x.line.event)).at(-1);
        notDropped.push(`${s} (last: ${last ? `${last.line.event} ${last.line.msg.slice(0, 120)}` : "nothing since the retirement"})`);
      }
    }
    note(notDropped.length ? `still trusting ${oldRoot.name}: ${notDropped.join("; ")}` : `every service and edge dropped ${oldRoot.name} from its trust (the drill waited for each trust.updated)`);
    const closed = book.since(retiredAt, { event: "tls.connections_closed", where: (x) => x.service === "payment" })[0];
    await pause(dwell);
    const lingering = straggler.summary(retiredAt);
    note(closed ? `payment closed ${closed.line.count} keep-alive connection(s) still authenticated under the old trust` : "payment logged no closed connection");
    note(`the straggler (a keep-alive connection with an order certificate from generation ${oldGen}): ${lingering.closedAfter ? "closed" : "NOT closed"}, then ${lingering.failuresAfter} refused reconnection(s), ${lingering.successesAfter} success(es)`);
    end();

    // 5. Proof -------------------------------------------------------------------------
    begin("proof", `5. Proof: generation ${oldGen} is locked out; every identity holds a generation ${newGen} certificate`, true);
    const proofAt = Date.now();
    const refusedOld = await tryOldCertificate(ports.payment!, "payment.internal", readFileSync(ca.paths.bundle), oldOrder);
    const logged = await orStop(book.waitFor("payment to log the old certificate's refusal", proofAt - 50, { event: "tls.handshake_failed", where: (x) => x.service === "payment" && x.line.peer?.serial !== undefined }, 5_000).catch(() => undefined));
    const reason = logged ? logged.line.reason : "(nothing logged)";
    note(`an order certificate from generation ${oldGen}: ${refusedOld ? "refused in the handshake" : "ACCEPTED"}; payment logged ${reason}`);
    const served: Record<string, string | undefined> = {};
    const edgeMat = { cert: readFileSync(stateOf("edge").cert), key: readFileSync(stateOf("edge").key) };
    for (const s of SERVICES) served[s] = await servedSerial(ports[s]!, `${s}.internal`, edgeMat.cert, edgeMat.key);
    const held = ca.list().filter((c) => c.status === "VALID" && (IDENTITIES as readonly string[]).includes(c.domain.replace(/\.internal$/, "")));
    const onNew = held.filter((c) => c.generation === newGen).map((c) => c.domain);
    note(`ledger: ${onNew.length} of ${IDENTITIES.length} identities hold a generation ${newGen} certificate (${onNew.join(", ")})`);
    // The probe reads identities in the CA folder's layout: lend it the state folders' material
    // in a folder of the drill's own (under state/, removed with it), for the time of the probe.
    const lent = join(stateRoot, ".probe");
    mkdirSync(join(lent, "certs"), { recursive: true, mode: 0o700 });
    copyFileSync(ca.paths.bundle, join(lent, "bundle.pem"));
    copyFileSync(ca.paths.crls, join(lent, "crls.pem")); // the probe checks each server against them
    for (const who of IDENTITIES) {
      copyFileSync(stateOf(who).cert, join(lent, "certs", `${who}.internal.crt`));
      copyFileSync(stateOf(who).key, join(lent, "certs", `${who}.internal.key`));
    }
    let probe: Awaited<ReturnType<typeof probeMesh>>["cells"];
    try {
      probe = (await probeMesh({ pki: lent, policy: loadPolicy(policy), ports, logs })).cells;
    } finally {
      rmSync(lent, { recursive: true, force: true });
    }
    const mismatches = probe.filter((c) => !c.ok);
    note(`probe: ${probe.length - mismatches.length}/${probe.length} calls match the policy`);
    await pause(Math.min(dwell, 1_000));
    end();

    await traffic.stop();
    phases.push(...ended.map((c) => ({
      name: c.name, title: c.title, safe: c.safe, startedAt: new Date(c.at).toISOString(), ms: c.until - c.at,
      ...(traffic!.counts.get(c.name) ?? { sent: 0, succeeded: 0, failed: 0, reasons: {} }),
      longestGapMs: longestGap(traffic!.successes, c.at, c.until),
      handshakeFailures: book.tally(c.at, c.until, "tls.handshake_failed", (l) => l.reason),
      upstreamFailures: book.tally(c.at, c.until, "upstream.failed", (l) => `${l.upstream}:${l.reason}`),
      notes: c.notes,
    })));

    // --- the verdict -----------------------------------------------------------------
    const phase = (n: PhaseName) => phases.find((p) => p.name === n)!;
    check("the careless rotation broke", phase("careless").failed > 0, `${phase("careless").failed} of ${phase("careless").sent} requests failed; victims: ${victims.join(", ") || "none"}`);
    check("both sides explained the break", !!firstFailure && explanations.some((e) => e.event === "tls.handshake_failed" || e.event === "upstream.failed"), explanations.map((e) => `${e.service}: ${e.event} ${e.reason}`.slice(0, 120)).join("; "));
    // A renewal that stalls says so: each victim that expired had logged a failed attempt and
    // identity.expiring first (on a loaded machine order once logged nothing until it expired).
    const expiries = book.since(carelessAt, { event: "identity.expired" });
    const unannounced = [...new Set(expiries.map((e) => e.service))].filter((who) => {
      const at = expiries.find((e) => e.service === who)!.at;
      const said = (event: EventName) => book.since(carelessAt, (e) => e.service === who && e.line.event === event && e.at <= at).length > 0;
      return !said("identity.renew_failed") || !said("identity.expiring");
    });
    check("every expiry was announced", unannounced.length === 0, unannounced.length ? `expired without a renew_failed and an identity.expiring before it: ${unannounced.join(", ")}` : `${new Set(expiries.map((e) => e.service)).size} victim(s) expired, each after renew_failed and identity.expiring`);
    check("recovery healed the mesh", recovered.failed === 0 && recovered.sent > 0, `${recovered.failed} of ${recovered.sent} request(s) sent after the victims enrolled again failed`);
    const passed = gates.filter((g) => g.state === "passed").map((g) => g.gate);
    check("every gate passed, in order", passed.join(",") === "prepare,activate,retire", `passed: ${passed.join(", ") || "none"}`);
    check("gate 3 waited for the old certificates", gates.some((g) => g.gate === "retire" && g.state === "waiting" && g.waitingFor.length > 0), gates.filter((g) => g.gate === "retire" && g.state === "waiting").map((g) => g.waitingFor.join(" ")).join(" | ") || "it never waited");
    for (const p of phases.filter((x) => x.safe)) {
      check(`no request lost in ${p.name}`, p.failed === 0 && p.sent > 0, `${p.succeeded}/${p.sent} succeeded${p.failed ? `; failures: ${JSON.stringify(p.reasons)}` : ""}`);
    }
    check(`every identity on generation ${newGen}`, onNew.length === IDENTITIES.length && SERVICES.every((s) => served[s] !== undefined && held.some((c) => c.serial.toLowerCase() === served[s] && c.generation === newGen)), `ledger: ${onNew.join(", ")}; served: ${SERVICES.map((s) => `${s} ${served[s]?.slice(0, 8) ?? "?"}`).join(", ")}`);
    check(`every identity dropped generation ${oldGen} from its trust`, notDropped.length === 0, notDropped.join("; ") || "services and edge: trust.updated without it");
    check(`generation ${oldGen} rejected for unknown_ca`, refusedOld && reason === "unknown_ca", `${refusedOld ? "refused" : "accepted"}, logged ${reason}`);
    check("no answer on an old-generation connection after retirement", lingering.successesAfter === 0, `straggler closed: ${lingering.closedAfter}; answers after retirement: ${lingering.successesAfter}`);
    check("probe matches the policy", mismatches.length === 0, mismatches.length ? mismatches.map((m) => `${m.caller}->${m.callee}: ${m.observed} (policy: ${m.expected})`).join("; ") : `${probe.length} calls`);

    const renewals = book.since(0, { event: "identity.renewed" }).length;
    const report: DrillReport = {
      ok: checks.every((c) => c.ok), mode: "online", dir: pki, stateRemoved: removeState, reportFile: join(work, "report.json"), logs, withIntermediate: !!o.withIntermediate, rate,
      generations: { old: oldGen, new: newGen }, phases, reloads: [], explanations, probe, checks,
      longestSafeGapMs: Math.max(0, ...phases.filter((p) => p.safe).map((p) => p.longestGapMs)),
      gates, online: { lifetimeMs: lifeMs, pollMs, carelessGeneration: carelessGen, victims, renewals, rotationMs },
    };
    writeFileSync(report.reportFile, JSON.stringify(report, null, 2) + "\n");
    return report;
  } finally {
    edgeAgent?.stop();
    await traffic?.stop().catch(() => {});
    straggler?.stop();
    await Promise.all([...services.values()].map((s) => s.stop()));
    await server?.stop().catch(() => {});
    rotationCa?.close();
    ca.close();
  }
}
