// The facts a rotation plan is computed from (rotation-plan.ts), read from the ledger: the CAs
// and which one signs, the generations bundle.pem carries, every live identity with the CA that
// issued its certificate and the bundle it holds (online: what its last cacerts poll told the CA
// server), the rotation in progress, and who calls whom (the mesh policy's accepts lists).
import { parse } from "smol-toml";
import { dnsNameOfSpiffeId, parseSpiffeId } from "../lib/spiffe.ts";
import { badInput, CaError } from "./errors.ts";
import { generationName } from "./generation-name.ts";
import type { IssuerRow } from "./ledger.ts";
import { etagsOf, type GateName } from "./rotation.ts";
import type { PlanCa, PlanFacts, PlanIdentity } from "./rotation-plan.ts";
import type { LedgerStore } from "./store/interface.ts";
import type { Generation, ListedCert } from "./view.ts";

/** What the plan reads: the CA's read-only view (ca/view.ts) or the CA itself. */
export interface PlanSource {
  readonly ledger: LedgerStore;
  signerId(): string;
  generations(): Generation[];
  list(): ListedCert[];
  now(): Date;
}

const MESH_DOMAIN = ".internal";
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const ONLINE = new Set(["est-enrol", "est-renew"]);

/**
 * Who calls whom, from a mesh policy's text: each [callee] table's `accepts` and its routes'
 * `accepts`. The services parse and validate the policy (services/mesh/policy.ts); the CA may not
 * import them, and a handshake happens before any route is matched, so the callers are all a
 * plan needs. A file that is not a policy's shape is refused, never half read.
 */
export function policyPairs(text: string, file: string): Array<{ caller: string; callee: string }> {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (e) {
    throw badInput(`${file} is not valid TOML: ${(e as Error).message.split("\n")[0]}`);
  }
  const pairs: Array<{ caller: string; callee: string }> = [];
  const add = (callee: string, list: unknown, key: string) => {
    if (list === undefined) return;
    if (!Array.isArray(list) || list.some((c) => typeof c !== "string"))
      throw badInput(`${file}: ${key} must be a list of caller names (is this a mesh policy?)`);
    for (const c of list as string[]) {
      const caller = callerName(c);
      if (!pairs.some((p) => p.caller === caller && p.callee === callee)) pairs.push({ caller, callee });
    }
  };
  for (const [callee, table] of Object.entries(doc)) {
    if (typeof table !== "object" || table === null || Array.isArray(table))
      throw badInput(`${file}: [${callee}] is not a table (is this a mesh policy?)`);
    const t = table as Record<string, unknown>;
    add(callee, t.accepts, `${callee}.accepts`);
    if (t.routes !== undefined) {
      if (!Array.isArray(t.routes)) throw badInput(`${file}: ${callee}.routes must be an array of tables`);
      for (const [i, r] of t.routes.entries())
        add(callee, (r as Record<string, unknown>)?.accepts, `${callee}.routes[${i}].accepts`);
    }
  }
  return pairs;
}

/** A policy's caller: a short name, or a SPIFFE ID standing for the workload it names. */
function callerName(c: string): string {
  if (!c.startsWith("spiffe://")) return c;
  const id = parseSpiffeId(c);
  const dns = id.ok ? dnsNameOfSpiffeId(id.value) : null;
  return dns?.endsWith(MESH_DOMAIN) ? dns.slice(0, -MESH_DOMAIN.length) : c;
}

/**
 * The facts, now. `pairs`: who calls whom (policyPairs); without them, every identity may call
 * every other (a mesh service is client and server both). Refuses a CA with nothing to plan for.
 */
export function planFacts(ca: PlanSource, pairs?: Array<{ caller: string; callee: string }>): PlanFacts {
  const now = ca.now();
  const issuers = ca.ledger.issuers();
  const byId = new Map(issuers.map((r) => [r.id, r]));
  const signer = byId.get(ca.signerId())!;
  const gens = ca.generations();
  const row = ca.ledger.unfinishedRotation();
  const notes: string[] = [];
  let from: number;
  let to: number;
  let done: GateName[] = [];
  if (row) {
    from = row.fromGeneration;
    to = row.toGeneration;
    done = row.phase === "activate" ? ["prepare"] : row.phase === "retire" ? ["prepare", "activate"] : [];
  } else {
    ({ from, to, done } = byHand(signer.generation, gens, notes));
  }
  const cas: PlanCa[] = issuers.map(caOf);
  const toGen = gens.find((g) => g.generation === to);
  if (!toGen) {
    const name = generationName(gens[0]!.root.name, to);
    cas.push({ id: `root-${to}`, generation: to, subject: `CN=${name}`, parent: null, planned: true });
    notes.push(`generation ${to} does not exist yet: gate 1 adds it as ${name}`);
  }
  // What signs after gate 2: as `generation use` picks, its newest intermediate, else its root; a
  // rotation from an intermediate gives the new root one with the old one's profile (rotation.ts).
  let newSigner: string;
  if (signer.generation === to) newSigner = signer.id;
  else {
    const int = toGen?.intermediates.filter((r) => r.state !== "retired").at(-1);
    if (int) newSigner = int.id;
    else if (signer.kind === "intermediate" && signer.generation === from) {
      newSigner = `int-planned-${to}`;
      cas.push({
        id: newSigner,
        generation: to,
        subject: `CN=${generationName(signer.name, to)}`,
        parent: `root-${to}`,
        planned: true,
      });
    } else newSigner = `root-${to}`;
  }
  const published = gens.filter((g) => g.root.state === "published").map((g) => g.generation);
  const holders = new Map(ca.ledger.bundleHolders().map((h) => [h.name, h]));
  const bundles = ca.ledger.bundles();
  const identities: PlanIdentity[] = [];
  for (const c of ca.list()) {
    if (c.status !== "VALID" || c.source === "ca-server" || !c.domain.endsWith(MESH_DOMAIN)) continue;
    const name = c.domain.slice(0, -MESH_DOMAIN.length);
    if (!LABEL.test(name) || identities.some((i) => i.name === name)) continue;
    const online = ONLINE.has(c.source);
    let trusts = published;
    let trustSeen = "bundle.pem in the CA folder (file mode)";
    if (online) {
      const h = holders.get(c.domain);
      const held = h ? [h.servedEtag, ...etagsOf(h.heldEtag)].map((t) => bundles.get(t)).find((g) => g) : undefined;
      if (h && held) {
        trusts = [...held].sort((a, b) => a - b);
        trustSeen = `its cacerts poll at ${h.seenAt}`;
      } else {
        trustSeen = h
          ? `its cacerts poll at ${h.seenAt} named a bundle the CA does not know: assumed bundle.pem`
          : "has not polled cacerts with this certificate: assumed bundle.pem";
      }
    }
    identities.push({
      name,
      dns: c.domain,
      serial: c.serial,
      issuer: c.issuerId,
      notAfter: c.notAfter,
      online,
      trusts,
      trustSeen,
    });
  }
  if (identities.length === 0)
    throw new CaError(
      "NOT_FOUND",
      `nothing to plan: no identity holds a valid certificate from this CA, so a rotation breaks no call (issue or enrol one first, or just run: npm run ca -- rotate)`,
    );
  const names = new Set(identities.map((i) => i.name));
  let calls = pairs;
  if (!calls) {
    calls = identities.flatMap((a) =>
      identities.filter((b) => b !== a).map((b) => ({ caller: a.name, callee: b.name })),
    );
    notes.push(
      "no policy given: every identity calling every other (pass --policy mesh-policy.toml for the mesh's calls)",
    );
  } else {
    const missing = calls.filter((p) => !names.has(p.caller) || !names.has(p.callee));
    if (missing.length > 0)
      notes.push(
        `not planned (no valid certificate for ${[...new Set(missing.flatMap((p) => [p.caller, p.callee]).filter((n) => !names.has(n)))].join(", ")}): ${missing.map((p) => `${p.caller} → ${p.callee}`).join(", ")}`,
      );
    calls = calls.filter((p) => names.has(p.caller) && names.has(p.callee));
  }
  return {
    now: now.toISOString(),
    from,
    to,
    cas,
    signer: signer.id,
    newSigner,
    published,
    identities,
    pairs: calls,
    done,
    rotation: row ? { id: row.id, phase: row.phase } : undefined,
    notes,
  };
}

/**
 * Where a rotation by hand stands (no `rotate` run, file mode: generation add/bundle/use/retire),
 * read from which generations are published and which one signs; with none under way, where
 * runRotation would begin: from the signer's generation to the newest one above it not retired
 * (adopted), else to the next number.
 */
function byHand(
  signerGen: number,
  gens: Generation[],
  notes: string[],
): { from: number; to: number; done: GateName[] } {
  const published = gens.filter((g) => g.root.state === "published").map((g) => g.generation);
  if (!published.includes(signerGen) && published.length > 0) {
    notes.push(
      `generation ${signerGen} signs but is not in bundle.pem: a careless rotation is under way (activated before it was trusted)`,
    );
    return { from: Math.max(...published), to: signerGen, done: ["activate"] };
  }
  const newer = published.filter((g) => g > signerGen);
  if (newer.length > 0) {
    const to = Math.max(...newer);
    notes.push(`generation ${to} is in bundle.pem but does not sign yet: gate 1 (prepare) is done by hand`);
    return { from: signerGen, to, done: ["prepare"] };
  }
  const older = published.filter((g) => g < signerGen);
  if (older.length > 0) {
    const from = Math.min(...older);
    notes.push(
      `generation ${signerGen} signs and generation ${from} is still in bundle.pem: gates 1 and 2 are done by hand`,
    );
    return { from, to: signerGen, done: ["prepare", "activate"] };
  }
  const adopt = gens.filter((g) => g.generation > signerGen && g.root.state !== "retired").at(-1);
  return {
    from: signerGen,
    to: adopt?.generation ?? Math.max(...gens.map((g) => g.generation)) + 1,
    done: [],
  };
}

function caOf(r: IssuerRow): PlanCa {
  return { id: r.id, generation: r.generation, subject: `CN=${r.name}`, parent: r.parent };
}
