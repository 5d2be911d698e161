// CA rotation against the online mesh (`ca rotate`, docs/rotation.md): prepare → activate →
// retire, each gate passed on evidence in the ledger, never on a timer. Gates are pure functions
// of ledger facts; runRotation does the side effects and persists where it is, so it can resume.
import { hostname } from "node:os";
import type { CertificateAuthority } from "./authority.ts";
import { CaError } from "./errors.ts";
import { crashPoint } from "./crash-point.ts";
import { createIntermediate, generationName, intermediateProfile } from "./generations.ts";
import type { BundleHolderRow, CurrentCertFact, RotationRow } from "./ledger.ts";
import type { LedgerStore } from "./store/interface.ts";

export type GateName = "prepare" | "activate" | "retire";
export type GateState = "started" | "waiting" | "passed" | "timeout" | "interrupted";
export const GATE_NUMBER: Record<GateName, number> = { prepare: 1, activate: 2, retire: 3 };

/** Who a gate still waits for, and why, in words a person can act on. */
export interface Waiting {
  name: string;
  why: string;
}

export interface GateVerdict {
  gate: GateName;
  passed: boolean;
  waitingFor: Waiting[];
  /** How many the gate looks at in all (identities, or certificates of the old generation). */
  total: number;
  /** Things the gate cannot see and does not wait for, said once. */
  notes: string[];
}

/** Issued through EST: the identities that poll cacerts and renew on their own. */
const ONLINE_SOURCES = new Set<CurrentCertFact["source"]>(["est-enrol", "est-renew"]);
const FILE_SOURCES = new Set<CurrentCertFact["source"]>(["issue", "csr", "renew"]);

export interface PrepareFacts {
  toGeneration: number;
  /** When the new generation was published: fetches before it do not count. */
  publishedAt: string;
  /** Valid, unexpired certificates (any generation). */
  certs: CurrentCertFact[];
  holders: BundleHolderRow[];
  /** ETag → root generations, for every bundle the server has published. */
  bundles: Map<string, number[]>;
  /** The CA's clock when the facts were read (ISO): until SILENCE_GRACE_MS after publishing, no one is suspected of being down. */
  now?: string;
}

/**
 * How long after publishing a service that has not fetched the new bundle is simply waiting for
 * its next poll, rather than maybe not running: two of the services' default poll intervals (30 s).
 */
export const SILENCE_GRACE_MS = 60_000;

/**
 * An enrolled identity: a name whose current certificate is valid, unexpired and was issued
 * through EST (enrolment or renewal). The CA server's own ca.internal is not one: the server
 * reads the bundle from the state folder itself. File-mode certificates (CLI issue/sign/renew)
 * are not either: their services read bundle.pem and never tell the CA what they hold.
 */
export function enrolledIdentities(certs: CurrentCertFact[]): CurrentCertFact[] {
  return certs.filter((c) => ONLINE_SOURCES.has(c.source));
}

/** The ETags of an If-None-Match value as the client sent it (a list, W/ tags); "*" names none. */
export function etagsOf(header: string | null): string[] {
  if (!header) return [];
  return header
    .split(",")
    .map((t) => t.trim().replace(/^W\//, ""))
    .filter((t) => t.startsWith('"') && t.endsWith('"') && t.length > 2);
}

/**
 * Gate 1: every enrolled identity has fetched (served_etag) or said it holds (held_etag, its
 * If-None-Match) a bundle containing the new generation, since the generation was published.
 * Until then a certificate from the new generation would be refused by whoever has not.
 */
export function evaluatePrepare(f: PrepareFacts): GateVerdict {
  const holders = new Map(f.holders.map((h) => [h.name, h]));
  const identities = enrolledIdentities(f.certs);
  const gen = f.toGeneration;
  const published = Date.parse(f.publishedAt);
  const waitingFor: Waiting[] = [];
  for (const id of identities) {
    const h = holders.get(id.name);
    if (!h) {
      waitingFor.push({
        name: id.name,
        why: `has never fetched cacerts with its certificate: its service must poll GET /.well-known/est/cacerts over mTLS`,
      });
      continue;
    }
    if (Date.parse(h.seenAt) < published) {
      const quietFor = f.now === undefined ? Infinity : Date.parse(f.now) - published;
      const ask = quietFor >= SILENCE_GRACE_MS ? "is its service running?" : "waiting for its next poll";
      waitingFor.push({
        name: id.name,
        why: `last fetched cacerts at ${h.seenAt}, before generation ${gen} was published (${f.publishedAt}): ${ask}`,
      });
      continue;
    }
    const tags = [...etagsOf(h.heldEtag), h.servedEtag];
    const gens = tags.map((t) => f.bundles.get(t)).filter((g): g is number[] => g !== undefined);
    if (gens.some((g) => g.includes(gen))) continue;
    const had = [...new Set(gens.flat())].sort((a, b) => a - b);
    waitingFor.push({
      name: id.name,
      why: `fetched cacerts at ${h.seenAt} but holds a bundle with generation${had.length === 1 ? "" : "s"} ${had.join(", ") || "unknown"} only`,
    });
  }
  const notes: string[] = [];
  const fileMode = [...new Set(f.certs.filter((c) => FILE_SOURCES.has(c.source)).map((c) => c.name))];
  if (fileMode.length > 0) {
    notes.push(
      `not waited for: ${list(fileMode)} ${fileMode.length === 1 ? "holds a file-mode certificate (CLI issue/sign/renew): its service reads bundle.pem from the folder and never tells" : "hold file-mode certificates (CLI issue/sign/renew): their services read bundle.pem from the folder and never tell"} the CA which bundle they hold`,
    );
  }
  return { gate: "prepare", passed: waitingFor.length === 0, waitingFor, total: identities.length, notes };
}

export interface RetireFacts {
  fromGeneration: number;
  certs: CurrentCertFact[];
  /**
   * With --in-use: what each name presented on its latest cacerts poll (serial, its generation,
   * when), so the gate also waits until each enrolled identity has shown it serves its new certificate.
   */
  presented?: Map<string, { serial: string; generation: number | undefined; seen_at: string }>;
}

/**
 * Gate 3: no valid, unexpired certificate chains to the old generation (what `generation retire`
 * checks too). Then retiring it breaks nobody: every identity already holds a new-generation one.
 * With `presented`, also: every enrolled identity has presented a certificate that is not of the
 * old generation (issued is not yet in use: a lost answer or a crash before the swap).
 */
export function evaluateRetire(f: RetireFacts): GateVerdict {
  const old = f.certs.filter((c) => c.generation === f.fromGeneration);
  const waitingFor = old.map((c): Waiting => {
    if (c.source === "ca-server") {
      return {
        name: c.name,
        why: `the CA server's own certificate (serial ${c.serial}): ca serve replaces it within a second of the switch; is ca serve running?`,
      };
    }
    if (ONLINE_SOURCES.has(c.source)) {
      return {
        name: c.name,
        why: `certificate ${c.serial} expires ${c.notAfter}: its service renews at its next renewal, or at once when it next polls cacerts (Mesh-Renew-Now: 1)`,
      };
    }
    return {
      name: c.name,
      why: `file-mode certificate ${c.serial} (CLI ${c.source}) until ${c.notAfter}: nothing renews it online; run: npm run ca -- renew --domain ${c.name}`,
    };
  });
  let total = old.length;
  if (f.presented) {
    const moved = enrolledIdentities(f.certs).filter((c) => c.generation !== f.fromGeneration);
    total += moved.length;
    for (const c of moved) {
      const p = f.presented.get(c.name);
      if (p && p.generation !== undefined && p.generation !== f.fromGeneration) continue;
      waitingFor.push({
        name: c.name,
        why: p
          ? `renewed (serial ${c.serial}, generation ${c.generation}) but has not presented it yet: its last cacerts poll (${p.seen_at}) presented serial ${p.serial} of generation ${p.generation ?? "unknown"}`
          : `renewed (serial ${c.serial}, generation ${c.generation}) but has not polled cacerts with it yet`,
      });
    }
  }
  return { gate: "retire", passed: waitingFor.length === 0, waitingFor, total, notes: [] };
}

/** Facts for gate 1, read from the ledger now. */
export function prepareFacts(ledger: LedgerStore, rotation: RotationRow, now: Date): PrepareFacts {
  return {
    toGeneration: rotation.toGeneration,
    publishedAt: rotation.publishedAt ?? now.toISOString(),
    certs: ledger.currentCerts(now.toISOString()),
    holders: ledger.bundleHolders(),
    bundles: ledger.bundles(),
    now: now.toISOString(),
  };
}

export function retireFacts(
  ledger: LedgerStore,
  rotation: RotationRow,
  now: Date,
  opts: { inUse?: boolean } = {},
): RetireFacts {
  const facts: RetireFacts = {
    fromGeneration: rotation.fromGeneration,
    certs: ledger.currentCerts(now.toISOString()),
  };
  if (opts.inUse) {
    facts.presented = new Map(
      ledger
        .bundleHolders()
        .map((h) => [h.name, { serial: h.serial, generation: ledger.generationOf(h.serial), seen_at: h.seenAt }]),
    );
  }
  return facts;
}

/** The verdict of the gate a rotation is at, from the ledger (what `rotate --status` prints). */
export function currentVerdict(ca: CertificateAuthority, rotation: RotationRow): GateVerdict | null {
  const now = ca.now();
  if (rotation.phase === "prepare") return evaluatePrepare(prepareFacts(ca.ledger, rotation, now));
  if (rotation.phase === "retire")
    return evaluateRetire(retireFacts(ca.ledger, rotation, now, { inUse: rotation.inUse === 1 }));
  return null;
}

/**
 * Why the CA's state no longer fits the rotation (someone ran `generation use` or `retire`
 * by hand half-way), or null. Carrying on then could break the mesh, so the run stops.
 */
export function inconsistency(
  rotation: RotationRow,
  state: { signerGeneration: number; rootState: (generation: number) => string | undefined },
): string | null {
  const { fromGeneration: from, toGeneration: to, phase } = rotation;
  const toState = state.rootState(to);
  if (toState === undefined && phase !== "prepare") return `generation ${to} is gone from the ledger`;
  if (toState === "retired") return `generation ${to} was retired by hand`;
  if ((phase === "prepare" || phase === "activate") && state.rootState(from) === "retired")
    return `generation ${from} was retired before generation ${to} was trusted everywhere`;
  if (phase === "retire" && state.signerGeneration !== to)
    return `generation ${state.signerGeneration} signs again (generation use was run by hand); run: npm run ca -- generation use ${to}`;
  return null;
}

export interface RotationEvent {
  event: "rotate.gate";
  rotation: number;
  from: number;
  to: number;
  gate: GateName;
  state: GateState;
  /** The names the gate still waits for (bounded), and why for each. */
  waitingFor: string[];
  why: Record<string, string>;
  total: number;
  msg: string;
}

export class RotationTimeout extends CaError {
  readonly gate: GateName;
  readonly waitingFor: Waiting[];
  constructor(gate: GateName, waitingFor: Waiting[], message: string) {
    super("REFUSED", message);
    this.gate = gate;
    this.waitingFor = waitingFor;
  }
}

export interface RotateOptions {
  /** How long each waiting gate may take before the run stops with a RotationTimeout. */
  timeoutMs: number;
  /** How often the ledger is read while a gate waits. */
  intervalMs: number;
  /** The new generation's name (default: the first root's name + " G<n>"). */
  name?: string;
  /** A clock for timeouts and pacing (ms); the CA's clock dates the ledger. */
  clock?: () => number;
  signal?: AbortSignal;
  onEvent: (e: RotationEvent) => void;
  /** Who runs it (host:pid): a second run refuses while this one lives. */
  owner?: string;
  /** Gate 3 also waits until every enrolled identity has presented its new certificate on a cacerts poll (kept in the rotation's row). */
  inUse?: boolean;
  /**
   * Awaited once gate 1 has passed (the row already says activate: a crash here resumes at gate 2)
   * and before gate 2 makes the new generation the signer: while it runs, every identity trusts
   * both generations and the old one still signs. The rotation drill holds that state with
   * traffic flowing; since the CRL long poll, gate 1 passes within a fraction of a second.
   */
  beforeActivate?: () => Promise<void>;
}

const MAX_NAMES = 100;
/** A waiting gate says again who it waits for this often, even when nothing changed. */
const REMIND_MS = 30_000;
/** Another host's run is presumed dead once its heartbeat is this old. */
const LEASE_MS = 30_000;
const HEARTBEAT_MS = 5_000;

/** Runs (or resumes) the rotation to the end; returns its final row. */
export async function runRotation(ca: CertificateAuthority, opts: RotateOptions): Promise<RotationRow> {
  const owner = opts.owner ?? `${hostname()}:${process.pid}`;
  const clock = opts.clock ?? (() => performance.now());
  const ledger = ca.ledger;
  const claimed = claimOrBegin(ca, owner, !!opts.inUse);
  let rot = claimed.row;
  const resumed = claimed.resumed;
  const emit = (gate: GateName, state: GateState, msg: string, waiting: Waiting[] = [], total = 0) => {
    const shown = waiting.slice(0, MAX_NAMES);
    opts.onEvent({
      event: "rotate.gate",
      rotation: rot!.id,
      from: rot!.fromGeneration,
      to: rot!.toGeneration,
      gate,
      state,
      waitingFor: shown.map((w) => w.name),
      why: Object.fromEntries(shown.map((w) => [w.name, w.why])),
      total,
      msg,
    });
  };
  const update = (fields: Parameters<LedgerStore["updateRotation"]>[1]) => {
    ledger.write(() =>
      ledger.updateRotation(rot!.id, { ...fields, heartbeatAt: ca.now().toISOString() }, ca.now().toISOString()),
    );
    rot = ledger.rotation(rot!.id)!;
  };
  const consistent = () => {
    const roots = new Map(ca.generations().map((g) => [g.generation, g.root.state]));
    const why = inconsistency(rot!, {
      signerGeneration: ca.issuerRow(ca.signerId()).generation,
      rootState: (g) => roots.get(g),
    });
    if (why)
      throw new CaError(
        "REFUSED",
        `rotation ${rot!.id} (generation ${rot!.fromGeneration} → ${rot!.toGeneration}) cannot go on: ${why}`,
      );
  };

  try {
    if (resumed)
      emit(
        rot.phase === "done" ? "retire" : rot.phase,
        "started",
        `resuming rotation ${rot.id} (generation ${rot.fromGeneration} → ${rot.toGeneration}, started ${rot.startedAt}) at gate ${GATE_NUMBER[rot.phase as GateName] ?? 3} (${rot.phase})`,
      );

    // Gate 1: publish the new generation, then wait until every enrolled identity holds it.
    if (rot.phase === "prepare") {
      await ensureGeneration(ca, rot, opts.name, (msg) => emit("prepare", "started", msg));
      rot = ledger.rotation(rot.id)!;
      consistent();
      // Before publication, so its CRL is in crls.pem by the time the new bundle is fetched.
      const created = await ensureIntermediate(ca, rot, (msg) => emit("prepare", "started", msg));
      crashPoint("rotate:publish");
      // A fetch before a new intermediate's CRL was published proves too little: count from now.
      if (!rot.publishedAt || created) update({ publishedAt: ca.now().toISOString() });
      // Always (again, on resume): publishing is idempotent, and a crash may have come before it.
      ca.publishBundle();
      emit(
        "prepare",
        "started",
        `published bundle.pem with generations ${publishedGenerations(ca).join(", ")}; waiting until every enrolled identity has fetched a bundle with generation ${rot.toGeneration}, so none refuses a certificate it signs`,
      );
      const g1 = await waitGate("prepare", () => evaluatePrepare(prepareFacts(ledger, rot!, ca.now())));
      update({ phase: "activate" });
      emit(
        "prepare",
        "passed",
        g1.total === 0
          ? `no enrolled identity to wait for: none holds a valid certificate issued through EST`
          : `all ${g1.total} enrolled identit${g1.total === 1 ? "y holds" : "ies hold"} a bundle with generation ${rot.toGeneration} (waited ${seconds(g1.waitedMs)})`,
        [],
        g1.total,
      );
      crashPoint("rotate:activate");
    }

    // Gate 2: the new generation signs; services move at renewal, or at once on the hint.
    if (rot.phase === "activate") {
      if (opts.beforeActivate) {
        await opts.beforeActivate();
        if (opts.signal?.aborted) {
          emit("activate", "interrupted", `interrupted before gate 2 (activate)`);
          throw new CaError(
            "REFUSED",
            `interrupted before gate 2 (activate): rotation ${rot.id} stays there; run npm run ca -- rotate again to carry on`,
          );
        }
      }
      consistent();
      emit("activate", "started", `every identity trusts generation ${rot.toGeneration}: making it the signer`);
      const signer = ca.useGeneration(rot.toGeneration);
      update({ phase: "retire", activatedAt: ca.now().toISOString() });
      emit(
        "activate",
        "passed",
        `generation ${rot.toGeneration} signs new certificates (${signer.id}, ${signer.name}); services move at their next renewal, or at once: cacerts now answers them with Mesh-Renew-Now: 1`,
      );
      crashPoint("rotate:retire");
    }

    // Gate 3: wait until nothing valid chains to the old generation, then retire it.
    if (rot.phase === "retire") {
      consistent();
      let waited = "it was retired already";
      if (ca.generation(rot.fromGeneration).root.state !== "retired") {
        emit(
          "retire",
          "started",
          `waiting until no valid certificate chains to generation ${rot.fromGeneration}, so retiring it breaks no one`,
        );
        const g3 = await waitGate("retire", () =>
          evaluateRetire(retireFacts(ledger, rot!, ca.now(), { inUse: rot!.inUse === 1 })),
        );
        ca.retireGeneration(rot.fromGeneration);
        waited = `no valid certificate chained to it any more after ${seconds(g3.waitedMs)}`;
      }
      update({ phase: "done", finishedAt: ca.now().toISOString(), owner: null });
      emit(
        "retire",
        "passed",
        `${waited}: retired generation ${rot.fromGeneration}: bundle.pem and crls.pem carry generation${publishedGenerations(ca).length === 1 ? "" : "s"} ${publishedGenerations(ca).join(", ")}; services drop it at their next bundle fetch and close connections authenticated under it. Rotation ${rot.id} done.`,
      );
    }
    return rot;
  } finally {
    // Release the lease: a re-run resumes at once instead of waiting for it to go stale.
    try {
      const row = ledger.rotation(rot.id);
      if (row && row.owner === owner)
        ledger.write(() => ledger.updateRotation(rot!.id, { owner: null }, ca.now().toISOString()));
    } catch {
      /* the ledger is closing; the lease goes stale on its own */
    }
  }

  /** Reads the ledger until the gate passes; says who it waits for whenever that changes. */
  async function waitGate(gate: GateName, evaluate: () => GateVerdict): Promise<{ waitedMs: number; total: number }> {
    const start = clock();
    let lastKey = "";
    let lastSaid = -Infinity;
    let lastBeat = clock();
    let notesSaid = false;
    for (;;) {
      const v = evaluate();
      if (!notesSaid && v.notes.length > 0) {
        for (const n of v.notes) emit(gate, "waiting", n, [], v.total);
        notesSaid = true;
      }
      if (v.passed) return { waitedMs: clock() - start, total: v.total };
      const key = v.waitingFor.map((w) => `${w.name}\n${w.why}`).join("\n");
      if (key !== lastKey || clock() - lastSaid >= REMIND_MS) {
        emit(gate, "waiting", waitingMessage(gate, rot!, v), v.waitingFor, v.total);
        lastKey = key;
        lastSaid = clock();
      }
      if (clock() - start >= opts.timeoutMs) {
        const names = v.waitingFor.map((w) => w.name);
        emit(
          gate,
          "timeout",
          `gate ${GATE_NUMBER[gate]} (${gate}) timed out after ${seconds(opts.timeoutMs)}, still waiting for ${v.waitingFor.length} of ${v.total}: ${list(names)}`,
          v.waitingFor,
          v.total,
        );
        throw new RotationTimeout(
          gate,
          v.waitingFor,
          `gate ${GATE_NUMBER[gate]} (${gate}) timed out after ${seconds(opts.timeoutMs)}: still waiting for ${list(names)}; ` +
            `rotation ${rot!.id} stays at ${gate}, nothing else changed. See who and why: npm run ca -- rotate --status; run npm run ca -- rotate again to carry on`,
        );
      }
      if (clock() - lastBeat >= HEARTBEAT_MS) {
        ledger.write(() =>
          ledger.updateRotation(rot!.id, { heartbeatAt: ca.now().toISOString() }, ca.now().toISOString()),
        );
        lastBeat = clock();
      }
      await sleep(opts.intervalMs, opts.signal);
      if (opts.signal?.aborted) {
        emit(gate, "interrupted", `interrupted at gate ${GATE_NUMBER[gate]} (${gate})`, v.waitingFor, v.total);
        throw new CaError(
          "REFUSED",
          `interrupted at gate ${GATE_NUMBER[gate]} (${gate}): rotation ${rot!.id} stays there; run npm run ca -- rotate again to carry on`,
        );
      }
    }
  }
}

/**
 * Takes over the unfinished rotation (refused while the run that holds it lives), or starts one
 * from the signing generation to the newest generation not signing yet (adopted: added by hand,
 * or by a run that died before recording it) or to the next number. One transaction: two runs
 * started at once cannot both begin.
 */
function claimOrBegin(ca: CertificateAuthority, owner: string, inUse: boolean): { row: RotationRow; resumed: boolean } {
  return ca.ledger.write(() => {
    const now = ca.now().toISOString();
    const row = ca.ledger.unfinishedRotation();
    if (row) {
      if (row.owner && row.owner !== owner && alive(row.owner, row.heartbeatAt, ca.now())) {
        throw new CaError(
          "REFUSED",
          `rotation ${row.id} (generation ${row.fromGeneration} → ${row.toGeneration}) is in progress at gate ${row.phase}, run by ${row.owner} (last heard ${row.heartbeatAt}); wait for it, or stop that process and run this again to resume`,
        );
      }
      // --in-use, once asked for, stays: a resumed run never waits for less.
      ca.ledger.updateRotation(row.id, { owner, heartbeatAt: now, ...(inUse ? { in_use: 1 } : {}) }, now);
      return { row: ca.ledger.rotation(row.id)!, resumed: true };
    }
    const from = ca.issuerRow(ca.signerId()).generation;
    const gens = ca.generations();
    const adopt = gens.filter((g) => g.generation > from && g.root.state !== "retired").at(-1);
    const to = adopt?.generation ?? Math.max(...gens.map((g) => g.generation)) + 1;
    return {
      row: ca.ledger.insertRotation({
        fromGeneration: from,
        toGeneration: to,
        startedAt: now,
        owner,
        inUse: inUse ? 1 : 0,
      }),
      resumed: false,
    };
  });
}

/** Makes sure the rotation's new generation exists: adopts it, or adds it (a crash may have come between). */
async function ensureGeneration(
  ca: CertificateAuthority,
  rot: RotationRow,
  name: string | undefined,
  say: (msg: string) => void,
): Promise<void> {
  const existing = ca.generations().find((g) => g.generation === rot.toGeneration);
  if (existing) {
    say(
      `rotation ${rot.id}: generation ${rot.fromGeneration} → ${rot.toGeneration}; adopted ${existing.root.name} (generation ${rot.toGeneration}, added earlier, ${existing.root.state})`,
    );
    return;
  }
  const row = await ca.addGeneration({ name });
  if (row.generation !== rot.toGeneration) {
    // Someone added one by hand between our row and this add: follow what exists.
    ca.ledger.write(() => ca.ledger.updateRotation(rot.id, { toGeneration: row.generation }, ca.now().toISOString()));
  }
  say(
    `rotation ${rot.id}: generation ${rot.fromGeneration} → ${row.generation}; added ${row.name} (generation ${row.generation})`,
  );
}

/**
 * When the old generation signs through an intermediate (its constrained issuing CA, so services
 * send leaf + intermediate, never a root), makes sure the new generation has one with the same
 * profile, which `generation use` then picks at gate 2. Adopts one not retired that exists
 * already (a resumed run, or made by hand); returns whether it created one.
 */
async function ensureIntermediate(
  ca: CertificateAuthority,
  rot: RotationRow,
  say: (msg: string) => void,
): Promise<boolean> {
  const existing = ca
    .generation(rot.toGeneration)
    .intermediates.filter((r) => r.state !== "retired")
    .at(-1);
  if (existing) {
    say(
      `rotation ${rot.id}: adopted the issuing CA ${existing.name} (${existing.id}, under generation ${rot.toGeneration}, added earlier)`,
    );
    return false;
  }
  const signer = ca.issuerRow(ca.signerId());
  if (signer.kind !== "intermediate" || signer.generation !== rot.fromGeneration) return false;
  let profile: ReturnType<typeof intermediateProfile>;
  try {
    profile = intermediateProfile(ca, signer.id);
  } catch (err) {
    if (!(err instanceof CaError)) throw err;
    // Generation to_generation stays added (pending: neither trusted nor signing); one made by hand is adopted.
    throw new CaError(
      err.code,
      `rotation ${rot.id} stays at gate 1 (prepare): ${err.message}; create the issuing CA of generation ${rot.toGeneration} by hand (npm run ca -- intermediate --generation ${rot.toGeneration} --name NAME --permit-dns …), then run npm run ca -- rotate again: it adopts it`,
    );
  }
  const root = ca.generation(rot.toGeneration).root;
  const taken = new Set(ca.ledger.issuers().map((r) => r.name));
  const name =
    [generationName(profile.name, rot.toGeneration), `${root.name} Issuing`].find((n) => !taken.has(n)) ??
    `${root.name} Issuing`;
  const row = await createIntermediate(ca, {
    name,
    permitDns: profile.permitDns,
    keyType: profile.keyType,
    generation: rot.toGeneration,
  });
  const constraints =
    profile.permitDns.length > 0 ? `permitted DNS ${profile.permitDns.join(", ")}` : "no name constraints";
  say(
    `rotation ${rot.id}: generation ${rot.fromGeneration} signs through ${signer.name} (${signer.id}); added the issuing CA ${row.name} (${row.id}, under generation ${rot.toGeneration}, ${constraints}, ${row.keyType}): it signs from gate 2`,
  );
  return true;
}

function publishedGenerations(ca: CertificateAuthority): number[] {
  return ca
    .generations()
    .filter((g) => g.root.state === "published")
    .map((g) => g.generation);
}

/** Whether the run that holds the lease is still there: on this host, its pid; elsewhere, its heartbeat. */
function alive(owner: string, heartbeat: string | null, now: Date): boolean {
  const m = /^(.*):(\d+)$/.exec(owner);
  if (m && m[1] === hostname()) {
    try {
      process.kill(Number(m[2]), 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === "EPERM";
    }
  }
  return heartbeat !== null && now.getTime() - Date.parse(heartbeat) < LEASE_MS;
}

function waitingMessage(gate: GateName, rot: RotationRow, v: GateVerdict): string {
  const n = v.waitingFor.length;
  if (gate === "prepare") {
    return `waiting for ${n} of ${v.total} enrolled identit${v.total === 1 ? "y" : "ies"} to fetch a bundle with generation ${rot.toGeneration}: ${list(v.waitingFor.map((w) => w.name))}`;
  }
  return `waiting for ${n} valid certificate${n === 1 ? "" : "s"} still chaining to generation ${rot.fromGeneration}: ${list(v.waitingFor.map((w) => w.name))}`;
}

function list(names: string[]): string {
  return names.length > 10 ? `${names.slice(0, 10).join(", ")} and ${names.length - 10} more` : names.join(", ");
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
