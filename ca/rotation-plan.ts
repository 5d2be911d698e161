// Before a rotation step, what breaks (`ca rotate --plan`, docs/rotation.md): for every
// caller → callee pair, what each gate changes (the chain each side presents, the roots each side
// trusts) and the outcome of their handshake, in the reasons the services log. Pure: a function
// of facts read from the ledger (rotation-plan-facts.ts), the gates applied in the order asked,
// so the careless order's break is computed, never written down.
import type { GateName } from "./rotation.ts";

export type PlanOrder = readonly GateName[];
/** ca rotate's order: trust the new root everywhere, then sign with it, then drop the old one. */
export const SAFE_ORDER: PlanOrder = ["prepare", "activate", "retire"];
/** The rotation drill's careless order: the new root signs before anyone trusts it. */
export const CARELESS_ORDER: PlanOrder = ["activate", "prepare", "retire"];

/** A CA of the ledger (or the one the rotation would add: `planned`). */
export interface PlanCa {
  id: string;
  generation: number;
  /** "CN=Acme Corp CA G2", as the services print a subject. */
  subject: string;
  /** The CA that signed it (null for a root). */
  parent: string | null;
  planned?: boolean;
}

export interface PlanIdentity {
  /** The short name the policy uses ("payment"). */
  name: string;
  dns: string;
  serial: string;
  /** The CA that issued its current certificate. */
  issuer: string;
  notAfter: string;
  /** Enrolled over EST: it renews itself and checks a new certificate against its own bundle before using it. */
  online: boolean;
  /** The root generations of the bundle it holds. */
  trusts: number[];
  /** How that is known ("its cacerts poll at …", "bundle.pem in the CA folder (file mode)"). */
  trustSeen: string;
}

export interface PlanFacts {
  now: string;
  from: number;
  to: number;
  cas: PlanCa[];
  /** The CA signing now, and the one that signs once `to` is activated. */
  signer: string;
  newSigner: string;
  /** The generations bundle.pem carries now. */
  published: number[];
  identities: PlanIdentity[];
  pairs: Array<{ caller: string; callee: string }>;
  /** Gates an unfinished rotation has passed already (they are not planned again). */
  done: GateName[];
  rotation?: { id: number; phase: string };
  notes: string[];
}

/** One side's view of a refused call: the log event and the stable reason the service writes. */
export interface SideSays {
  event: "upstream.failed" | "tls.handshake_failed" | "identity.renew_failed";
  reason: string;
}

export interface Outcome {
  ok: boolean;
  /** Who refuses the handshake. */
  refusedBy?: "caller" | "callee";
  caller?: SideSays;
  callee?: SideSays;
  /** The refusal in the refusing service's words; "" when ok. */
  why: string;
}

/** What one identity presents and trusts at a point of the plan. */
export interface Stance {
  /** Its certificate's issuing CA, and that CA's root generation; serial "" for one not issued yet. */
  issuer: string;
  issuerSubject: string;
  generation: number;
  serial: string;
  trusts: number[];
  /**
   * Its renewal was refused by its own agent: it keeps a superseded certificate until it expires.
   * `why`: the agent's words; `retries`: the CA server's words refusing each retry (identity.renew_failed).
   */
  stranded?: { notAfter: string; why: string; retries: string[] };
}

export interface IdentityStep {
  name: string;
  before: Stance;
  /** Gate 3 in two halves: every identity renewed (what it waits for), and only then the old root dropped. */
  mid?: Stance;
  after: Stance;
  /** What happens to it at this gate, in words. */
  change: string;
}

export interface CallStep {
  caller: string;
  callee: string;
  /** Every outcome possible while the gate moves the two one at a time, in any order. */
  during: Outcome[];
  /** Once the gate is done (and a stranded certificate has expired). */
  after: Outcome;
}

export interface PlanStep {
  gate: GateName;
  /** What the gate does, in words. */
  does: string;
  /** The CA refuses the step (nothing changes): why. */
  refused?: string;
  identities: IdentityStep[];
  calls: CallStep[];
}

export interface RotationPlan {
  order: GateName[];
  careless: boolean;
  from: number;
  to: number;
  rotation?: { id: number; phase: string };
  done: GateName[];
  identities: Array<{ name: string; presents: string; trusts: number[]; trustSeen: string; online: boolean }>;
  pairs: Array<{ caller: string; callee: string }>;
  steps: PlanStep[];
  /** The first gate at which a call breaks, and the calls it breaks; null when none does. */
  firstBreak: { gate: GateName; calls: string[] } | null;
  notes: string[];
}

const NO_CHAIN = "it does not chain to a root in the trust bundle";
/** How the CA server refuses a stranded identity's retries (ca/server/est.ts): superseded, then expired. */
const RETRIES_REFUSED = ["was already renewed", "not trusted by the published bundle (CERT_HAS_EXPIRED)"];

/** The plan: the gates not done yet, in `order`, applied to the facts one after the other. */
export function planRotation(f: PlanFacts, order: PlanOrder = SAFE_ORDER): RotationPlan {
  const cas = new Map(f.cas.map((c) => [c.id, c]));
  const rootGen = (id: string) => cas.get(id)?.generation ?? -1;
  const subject = (id: string) => cas.get(id)?.subject ?? id;
  const rootSubject = (generation: number) =>
    f.cas.find((c) => c.parent === null && c.generation === generation)?.subject ?? `generation ${generation}`;
  const gates = order.filter((g) => !f.done.includes(g));
  let world: World = {
    added: !f.cas.some((c) => c.generation === f.to && c.parent === null && c.planned),
    published: new Set(f.published),
    signer: f.signer,
    stances: new Map(
      f.identities.map((i) => [
        i.name,
        {
          issuer: i.issuer,
          issuerSubject: subject(i.issuer),
          generation: rootGen(i.issuer),
          serial: i.serial,
          trusts: [...i.trusts].sort((a, b) => a - b),
        },
      ]),
    ),
  };
  const ids = new Map(f.identities.map((i) => [i.name, i]));
  const steps: PlanStep[] = [];
  for (const gate of gates) {
    const next = apply(gate, world, f, ids, subject, rootGen);
    const identities: IdentityStep[] = f.identities.map((i) => ({
      name: i.name,
      before: world.stances.get(i.name)!,
      ...(next.mid ? { mid: next.mid.get(i.name)! } : {}),
      after: next.world.stances.get(i.name)!,
      change: next.changes.get(i.name) ?? "no change",
    }));
    const calls = f.pairs.map(({ caller, callee }) => {
      const a = identities.find((x) => x.name === caller)!;
      const b = identities.find((x) => x.name === callee)!;
      const during: Outcome[] = [];
      for (const [xs, ys] of moments(a, b))
        for (const x of xs)
          for (const y of ys) {
            const o = handshake(ids.get(caller)!, x, ids.get(callee)!, y, rootSubject);
            if (!during.some((d) => sameOutcome(d, o))) during.push(o);
          }
      // Stranded certificates run out one by one: either side may be expired while the other is not yet.
      for (const x of [a.after, expired(a.after)])
        for (const y of [b.after, expired(b.after)]) {
          const o = handshake(ids.get(caller)!, x, ids.get(callee)!, y, rootSubject);
          if (!during.some((d) => sameOutcome(d, o))) during.push(o);
        }
      const after = handshake(ids.get(caller)!, expired(a.after), ids.get(callee)!, expired(b.after), rootSubject);
      during.sort((p, q) => Number(p.ok) - Number(q.ok));
      return { caller, callee, during, after };
    });
    steps.push({ gate, does: next.does, refused: next.refused, identities, calls });
    world = next.world;
  }
  const breaking = steps.find((s) => s.calls.some((c) => !c.after.ok || c.during.some((o) => !o.ok)));
  return {
    order: [...order],
    careless: order.indexOf("activate") < order.indexOf("prepare") && !f.done.includes("prepare"),
    from: f.from,
    to: f.to,
    rotation: f.rotation,
    done: f.done,
    identities: f.identities.map((i) => ({
      name: i.name,
      presents: `${i.dns} ← ${subject(i.issuer)} (generation ${rootGen(i.issuer)})`,
      trusts: i.trusts,
      trustSeen: i.trustSeen,
      online: i.online,
    })),
    pairs: f.pairs,
    steps,
    firstBreak: breaking
      ? {
          gate: breaking.gate,
          calls: breaking.calls
            .filter((c) => !c.after.ok || c.during.some((o) => !o.ok))
            .map((c) => `${c.caller} → ${c.callee}`),
        }
      : null,
    notes: f.notes,
  };
}

interface World {
  /** The new generation's root exists (it did before the plan, or a gate of the plan added it). */
  added: boolean;
  published: Set<number>;
  signer: string;
  stances: Map<string, Stance>;
}

function apply(
  gate: GateName,
  w: World,
  f: PlanFacts,
  ids: Map<string, PlanIdentity>,
  subject: (id: string) => string,
  rootGen: (id: string) => number,
): { world: World; does: string; refused?: string; changes: Map<string, string>; mid?: Map<string, Stance> } {
  const changes = new Map<string, string>();
  const stances = new Map(w.stances);
  const gens = (s: Set<number>) => [...s].sort((a, b) => a - b);
  // A renewal onto `signer`: online, the agent uses the new certificate only if it chains to a root
  // in the bundle it holds (identity-agent/chain.ts); file mode, the service serves what the CA wrote.
  const renew = (name: string, signer: string, how: string) => {
    const id = ids.get(name)!;
    const s = stances.get(name)!;
    const gen = rootGen(signer);
    if (id.online && !s.trusts.includes(gen)) {
      stances.set(name, { ...s, stranded: { notAfter: id.notAfter, why: NO_CHAIN, retries: RETRIES_REFUSED } });
      changes.set(
        name,
        `${how}, gets a certificate from ${subject(signer)} and refuses it (identity.renew_failed: the certificate from the CA cannot be used: ${NO_CHAIN}); its retry is refused too (already renewed: the CA marked its certificate superseded), so it serves serial ${s.serial} until it expires at ${id.notAfter}, then every peer refuses it`,
      );
      return;
    }
    stances.set(name, {
      ...s,
      issuer: signer,
      issuerSubject: subject(signer),
      generation: gen,
      serial: "",
      stranded: undefined,
    });
    changes.set(name, `${how}: presents ${id.dns} ← ${subject(signer)} (generation ${gen})`);
  };
  if (gate === "prepare") {
    if (w.published.has(f.to))
      return { world: w, does: `nothing: generation ${f.to} is in bundle.pem already`, changes };
    const published = new Set(w.published).add(f.to);
    for (const [name, s] of stances) {
      const id = ids.get(name)!;
      stances.set(name, { ...s, trusts: gens(published) });
      changes.set(
        name,
        `trusts ${s.trusts.join(", ")} → ${gens(published).join(", ")} (${id.online ? "at its next cacerts poll; gate 1 waits for it" : "reloads bundle.pem from the folder"})`,
      );
    }
    return {
      world: { ...w, added: true, published, stances },
      does: `${w.added ? "" : `add ${subject(`root-${f.to}`)} (generation ${f.to}) and `}publish bundle.pem with generations ${gens(published).join(", ")}; generation ${rootGen(w.signer)} still signs`,
      changes,
    };
  }
  if (gate === "activate") {
    const signer = f.newSigner;
    const trusted = w.published.has(f.to);
    for (const [name, s] of stances) {
      if (s.issuer === signer) continue;
      const id = ids.get(name)!;
      renew(
        name,
        signer,
        id.online
          ? trusted
            ? "renews at once (cacerts answers it Mesh-Renew-Now: 1)"
            : `renews at its next scheduled renewal (no Mesh-Renew-Now: generation ${f.to} is not published)`
          : `renewed by hand (npm run ca -- renew --domain ${id.dns})`,
      );
    }
    return {
      world: { ...w, added: true, signer, stances },
      does: `${w.added ? `${subject(signer)} (generation ${f.to}) signs` : `add ${subject(`root-${f.to}`)} (generation ${f.to})${signer === `root-${f.to}` ? "" : ` and its issuing CA ${subject(signer)}`}, which signs`} every new certificate${trusted ? "" : `, while bundle.pem holds generation${w.published.size === 1 ? "" : "s"} ${gens(w.published).join(", ")} only`}`,
      changes,
    };
  }
  // retire: only once no valid certificate chains to the old generation (what gate 3 waits for,
  // what `generation retire` checks); those still on it renew onto the signer first, if it is another.
  const signerGen = rootGen(w.signer);
  const left = [...stances].filter(([, s]) => s.generation === f.from && !s.stranded).map(([n]) => n);
  if (left.length > 0 && signerGen === f.from) {
    const refused = `generation retire ${f.from} refuses: ${left.length} valid certificate(s) still chain to it (${left.join(", ")}) and generation ${f.from} still signs, so nothing can move them; gate 3 would wait for ever`;
    return { world: w, does: `retire generation ${f.from}`, refused, changes };
  }
  for (const name of left) {
    const id = ids.get(name)!;
    renew(
      name,
      w.signer,
      id.online
        ? "renews first (gate 3 waits for it)"
        : `must be renewed by hand first (npm run ca -- renew --domain ${id.dns}; gate 3 waits for it)`,
    );
  }
  const mid = new Map(stances);
  const published = new Set([...w.published].filter((g) => g !== f.from));
  for (const [name, s] of stances) {
    const id = ids.get(name)!;
    const was = changes.get(name);
    stances.set(name, { ...s, trusts: gens(published) });
    const drop = `trusts ${s.trusts.join(", ")} → ${gens(published).join(", ") || "nothing"} (${id.online ? "at its next cacerts poll" : "reloads bundle.pem"}; connections authenticated under generation ${f.from} are closed)`;
    changes.set(name, was ? `${was}; then ${drop}` : drop);
  }
  return {
    world: { ...w, published, stances },
    does: `retire generation ${f.from}: bundle.pem and crls.pem without it (generation${published.size === 1 ? "" : "s"} ${gens(published).join(", ")})`,
    changes,
    mid,
  };
}

/**
 * The states two identities can be in together while a gate moves them one at a time, in any
 * order: each as it was or as it is after (not yet expired). With a middle state (gate 3), nobody
 * drops the old root before everyone is past the middle: the two halves are not mixed.
 */
function moments(a: IdentityStep, b: IdentityStep): Array<[Stance[], Stance[]]> {
  const two = (x: Stance, y: Stance) => (x === y ? [x] : [x, y]);
  if (!a.mid || !b.mid) return [[two(a.before, a.after), two(b.before, b.after)]];
  return [
    [two(a.before, a.mid), two(b.before, b.mid)],
    [two(a.mid, a.after), two(b.mid, b.after)],
  ];
}

/** After the gate, a stranded certificate has run out. */
function expired(s: Stance): Stance & { expiredAt?: string } {
  return s.stranded ? { ...s, expiredAt: s.stranded.notAfter } : s;
}

/**
 * One mTLS handshake as the services judge it: the caller checks the callee's chain first (TLS
 * sends the server's certificate first), then the callee checks the caller's. A chain is accepted
 * when the root it leads to is in the bundle the judge holds (services/mesh/chain.ts pathOf: by
 * signature; here by the ledger's record of which CA signed what, the same facts).
 */
export function handshake(
  caller: PlanIdentity,
  a: Stance & { expiredAt?: string },
  callee: PlanIdentity,
  b: Stance & { expiredAt?: string },
  rootSubject: (generation: number) => string,
): Outcome {
  // As the services say it (material.ts describe): the trusted roots' subjects, "; " between.
  const trustsOnly = (s: Stance) => s.trusts.map(rootSubject).join("; ");
  // A certificate not issued yet has no serial to name.
  const serial = (s: Stance) => (s.serial ? `, serial ${s.serial}` : ", a new one");
  const shown = (id: PlanIdentity, s: Stance) =>
    `CN=${id.dns} (${s.serial ? `serial ${s.serial}` : "a new certificate"}) issued by ${s.issuerSubject}`;
  if (!a.trusts.includes(b.generation)) {
    return {
      ok: false,
      refusedBy: "caller",
      caller: { event: "upstream.failed", reason: "server_untrusted" },
      callee: { event: "tls.handshake_failed", reason: "client_aborted" },
      why: `${callee.name}'s certificate was not issued by a CA in our trust bundle: it presented ${shown(callee, b)}; ${caller.name} trusts only: ${trustsOnly(a)}`,
    };
  }
  if (b.expiredAt) {
    return {
      ok: false,
      refusedBy: "caller",
      caller: { event: "upstream.failed", reason: "server_cert_expired" },
      callee: { event: "tls.handshake_failed", reason: "client_aborted" },
      why: `${callee.name}'s certificate has expired; renew it (serial ${b.serial}, expired at ${b.expiredAt}: its renewal was refused)`,
    };
  }
  if (!b.trusts.includes(a.generation)) {
    return {
      ok: false,
      refusedBy: "callee",
      caller: { event: "upstream.failed", reason: "rejected_in_handshake" },
      callee: { event: "tls.handshake_failed", reason: "unknown_ca" },
      why: `the client's certificate (CN=${caller.dns}${serial(a)}) was signed by ${a.issuerSubject}, a CA this service does not trust; ${callee.name} trusts only: ${trustsOnly(b)}`,
    };
  }
  if (a.expiredAt) {
    return {
      ok: false,
      refusedBy: "callee",
      caller: { event: "upstream.failed", reason: "rejected_in_handshake" },
      callee: { event: "tls.handshake_failed", reason: "expired" },
      why: `the client's certificate (CN=${caller.dns}${serial(a)}) expired on ${a.expiredAt}; renew it`,
    };
  }
  return { ok: true, why: "" };
}

function sameOutcome(p: Outcome, q: Outcome): boolean {
  return p.ok === q.ok && p.caller?.reason === q.caller?.reason && p.callee?.reason === q.callee?.reason;
}

/** An outcome in one line: "✓", or who refuses and with which reason. */
export function outcomeText(o: Outcome): string {
  if (o.ok) return "✓";
  return o.refusedBy === "caller"
    ? `✗ caller refuses: ${o.caller!.reason} (callee logs ${o.callee!.reason})`
    : `✗ callee refuses: ${o.callee!.reason} (caller logs ${o.caller!.reason})`;
}

/** The plan as a person reads it. */
export function planText(p: RotationPlan): string {
  const out: string[] = [];
  const label = p.careless ? "careless order" : p.order.join(" → ") === SAFE_ORDER.join(" → ") ? "safe order" : "order";
  out.push(
    `Rotation plan (${label}: ${p.order.join(" → ")}): generation ${p.from} → ${p.to}${p.rotation ? `; rotation ${p.rotation.id} is at gate ${p.rotation.phase}${p.done.length ? ` (${p.done.join(", ")} done)` : ""}` : ""}`,
  );
  out.push(
    `${p.identities.length} identit${p.identities.length === 1 ? "y" : "ies"}, ${p.pairs.length} call${p.pairs.length === 1 ? "" : "s"}: ${p.pairs.map((x) => `${x.caller} → ${x.callee}`).join(", ") || "none"}`,
  );
  for (const n of p.notes) out.push(`note: ${n}`);
  const w = Math.max(...p.identities.map((i) => i.name.length), 8);
  out.push("", "now");
  for (const i of p.identities)
    out.push(
      `  ${i.name.padEnd(w)}  presents ${i.presents}; trusts ${i.trusts.join(", ") || "nothing"}: ${i.trustSeen}`,
    );
  for (const s of p.steps) out.push("", ...stepLines(p, s));
  out.push(
    "",
    p.firstBreak
      ? `Predicted: gate ${p.order.indexOf(p.firstBreak.gate) + 1} (${p.firstBreak.gate}) breaks ${p.firstBreak.calls.join(", ")}`
      : "Predicted: no call breaks at any gate",
  );
  return out.join("\n");
}

/** One gate of the plan as a person reads it: what it does, what it changes for whom, each call's outcome. */
export function stepLines(p: RotationPlan, s: PlanStep): string[] {
  const out: string[] = [];
  const w = Math.max(...s.identities.map((i) => i.name.length), 8);
  out.push(`gate ${p.order.indexOf(s.gate) + 1}/${p.order.length} ${s.gate}: ${s.does}`);
  if (s.refused) {
    out.push(`  refused by the CA: ${s.refused}`);
    return out;
  }
  for (const i of s.identities) if (i.change !== "no change") out.push(`  ${i.name.padEnd(w)}  ${i.change}`);
  const cw = Math.max(...s.calls.map((c) => `${c.caller} → ${c.callee}`.length), 10);
  for (const c of s.calls) {
    const bad = c.during.filter((o) => !o.ok);
    const pair = `${c.caller} → ${c.callee}`.padEnd(cw);
    if (bad.length === 0 && c.after.ok) {
      out.push(`  ${pair}  ✓ throughout`);
      continue;
    }
    const seen = new Set<string>();
    for (const o of [...bad, ...(c.after.ok ? [] : [c.after])]) {
      const t = outcomeText(o);
      if (seen.has(t)) continue;
      seen.add(t);
      out.push(`  ${pair}  ${t}: ${o.why}`);
    }
    if (c.after.ok) out.push(`  ${" ".repeat(cw)}  ✓ once both have moved`);
  }
  return out;
}
