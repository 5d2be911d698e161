// The authorization matrix: parse and strictly validate mesh-policy.toml, and decide
// requests with a pure function that fails closed.
import { readFileSync } from "node:fs";
import { parse, TomlError } from "smol-toml";
import { MeshError, messageOf } from "./errors.ts";
import { isIdentityName, shortName } from "./names.ts";
import { dnsNameOfSpiffeId, parseSpiffeId } from "../../lib/spiffe.ts";
import { compilePath, type PathMatcher } from "./paths.ts";
import { KeyLines } from "./toml-lines.ts";

export interface RouteRule {
  readonly method: string; // upper case, or "*" for any
  readonly path: string; // "/charge", "/stock/:sku", "/admin/*"
  readonly accepts: readonly string[];
  readonly name: string; // "inventory.routes[0]", what logs call the rule
  readonly line: number;
  /** Its own `mode`, else its service's. */
  readonly mode: PolicyMode;
  /** "mesh-policy.toml:12", built once here so that a decision only points at it. */
  readonly where: string;
  readonly match: PathMatcher;
}

export interface ServicePolicy {
  readonly accepts: readonly string[] | null; // null: only the routes grant anything
  readonly acceptsLine: number;
  readonly routes: readonly RouteRule[];
  readonly mode: PolicyMode;
  /** Where `accepts` is written ("mesh-policy.toml:8"), else the table's header. */
  readonly acceptsWhere: string;
}

/**
 * enforce: a denial is a 403. audit: a call the rule would deny is let through and logged as
 * `authz.would_deny`, so that a tightened rule can be watched before it is enforced.
 */
export type PolicyMode = "enforce" | "audit";
export const POLICY_MODES: readonly PolicyMode[] = ["enforce", "audit"];

export interface Policy {
  readonly file: string;
  readonly services: ReadonlyMap<string, ServicePolicy>;
}

export interface Decision {
  readonly allow: boolean;
  readonly rule: string;
  readonly reason: string;
  readonly hint?: string;
  /** Where the deciding rule is written ("mesh-policy.toml:8"); absent when no rule decided (default-deny). */
  readonly where?: string;
  /** The accepts list that decided: "payment.accepts", "inventory.routes[0].accepts". */
  readonly list?: string;
  /**
   * The deciding rule is in audit mode and does not list the caller: `allow` is true (the call
   * goes through), and `rule`, `reason` and `hint` say what enforcing it would deny.
   */
  readonly wouldDeny?: true;
}

const METHODS = new Set(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*"]);
const SERVICE_KEYS = ["accepts", "routes", "mode"];
const ROUTE_KEYS = ["method", "path", "accepts"];
const ROUTE_OPTIONAL_KEYS = ["mode"];

/**
 * Decide whether `peer` may call `method path` on `service`. A rule names a caller by its short
 * name ("order") or by its SPIFFE ID ("spiffe://internal/order"); `peerSpiffeId` is the one the
 * peer's certificate carries (peer-identity.ts has checked that it and the name agree), and a
 * SPIFFE ID in a rule matches only a peer whose certificate carries exactly that ID.
 * Security contract: the answer is allow only when a rule names the peer. A service with no
 * table in the policy, a route no rule covers, an unknown or missing peer: all deny.
 * The first route rule whose method and path match decides; when none matches, the
 * service-level `accepts` decides. A GET rule decides HEAD too (HEAD is GET without the body,
 * so it shows no more than GET): who may not GET a path may not HEAD it either, unless an
 * earlier rule names HEAD itself.
 * A rule in audit mode that does not list the peer allows with `wouldDeny` set; a missing
 * table and a peer with no identity deny whatever any mode says.
 * No I/O, no clock: the same inputs give the same answer.
 */
export function decide(
  policy: Policy,
  service: string,
  peer: string | null,
  method: string,
  path: string,
  peerSpiffeId: string | null = null,
): Decision {
  const sp = policy.services.get(service);
  if (!sp) {
    return {
      allow: false,
      rule: "default-deny",
      reason: `the policy has no [${service}] table, so ${service} accepts nobody`,
      hint: `add [${service}] to ${policy.file}`,
    };
  }
  if (peer === null) return { allow: false, rule: "default-deny", reason: "the caller has no mesh identity" };
  for (const r of sp.routes) {
    if (
      (r.method === "*" || r.method === method || (method === "HEAD" && r.method === "GET")) &&
      r.match(path) !== null
    ) {
      return verdict(
        r.accepts,
        peer,
        peerSpiffeId,
        `${r.name} (${r.method} ${r.path})`,
        r.where,
        `${r.name}.accepts`,
        r.mode,
      );
    }
  }
  if (sp.accepts === null) {
    const d: Decision = {
      allow: false,
      rule: `${service}.routes`,
      reason: `no route rule of [${service}] covers ${method} ${path} and [${service}] has no accepts`,
      hint: `add a route rule or accepts to [${service}] in ${policy.file}`,
      where: sp.acceptsWhere,
    };
    return sp.mode === "audit" ? { ...d, allow: true, wouldDeny: true } : d;
  }
  return verdict(sp.accepts, peer, peerSpiffeId, `${service}.accepts`, sp.acceptsWhere, `${service}.accepts`, sp.mode);
}

function verdict(
  accepts: readonly string[],
  peer: string,
  peerSpiffeId: string | null,
  rule: string,
  where: string,
  list: string,
  mode: PolicyMode,
): Decision {
  if (accepts.includes(peer)) return { allow: true, rule, reason: `${peer} is listed in ${rule}`, where, list };
  if (peerSpiffeId !== null && accepts.includes(peerSpiffeId))
    return { allow: true, rule, reason: `${peer} (${peerSpiffeId}) is listed in ${rule}`, where, list };
  const hint = `to allow it, add "${peer}" to that accepts list (${where})`;
  if (mode === "audit")
    return { allow: true, wouldDeny: true, rule, reason: `${peer} is not listed in ${rule}`, hint, where, list };
  return { allow: false, rule, reason: `${peer} is not listed in ${rule}`, hint, where, list };
}

/**
 * The smallest edit of the policy that would turn `d` (decide()'s answer for `peer`) the other
 * way, as a sentence: `add "inventory" to payment.accepts (mesh-policy.toml:8)`. For a call
 * allowed only because its rule audits, enforcing is not the edit asked for: the sentence says
 * what would allow it for good.
 */
export function smallestEdit(policy: Policy, service: string, peer: string | null, d: Decision): string {
  if (peer === null) return "none: a caller with no mesh identity is always denied";
  if (!policy.services.has(service)) return `add a [${service}] table with accepts = ["${peer}"] to ${policy.file}`;
  if (d.list === undefined)
    return `add accepts = ["${peer}"] to [${service}], or a route rule covering this call (${d.where ?? policy.file})`;
  if (d.allow && !d.wouldDeny) return `remove "${peer}" from ${d.list} (${d.where})`;
  return `add "${peer}" to ${d.list} (${d.where})`;
}

export function loadPolicy(file: string): Policy {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new MeshError("POLICY_UNREADABLE", `${file}: cannot read the policy file: ${messageOf(e)}`);
  }
  return parsePolicy(text, file);
}

/** Parse and validate; every error names `file:line` and nothing half-valid is returned. */
export function parsePolicy(text: string, file: string): Policy {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
      throw new MeshError("POLICY_SYNTAX", `${file}:${e.line}:${e.column}: invalid TOML: ${first}`);
    }
    throw new MeshError("POLICY_SYNTAX", `${file}: invalid TOML: ${messageOf(e)}`);
  }
  const lines = new KeyLines(text);
  const fail = (key: string, msg: string): never => {
    throw new MeshError("POLICY_INVALID", `${file}:${lines.of(key)}: ${msg}`);
  };
  const services = new Map<string, ServicePolicy>();
  for (const [name, table] of Object.entries(doc)) {
    // Any mesh name may serve (an in-process app or an app behind a sidecar), not a fixed list.
    if (!isIdentityName(name)) {
      fail(
        name,
        `"${name}" is not a mesh name: a table is named for the service it guards, one lower-case DNS label such as [payment] or [billing-api]`,
      );
    }
    if (!isPlainTable(table)) fail(name, `[${name}] must be a table, e.g. [${name}] accepts = ["order"]`);
    const t = table as Record<string, unknown>;
    for (const k of Object.keys(t)) {
      if (!SERVICE_KEYS.includes(k))
        fail(`${name}.${k}`, `unknown key "${k}" in [${name}] (allowed: ${SERVICE_KEYS.join(", ")})`);
    }
    if (t.accepts === undefined && t.routes === undefined) {
      fail(name, `[${name}] needs "accepts" (use accepts = [] to accept nobody)`);
    }
    const accepts = t.accepts === undefined ? null : callers(t.accepts, `${name}.accepts`, fail);
    const mode = modeOf(t.mode, `${name}.mode`, "enforce", fail);
    const routes: RouteRule[] = [];
    if (t.routes !== undefined) {
      if (!Array.isArray(t.routes))
        fail(`${name}.routes`, `"routes" in [${name}] must be an array of tables ([[${name}.routes]])`);
      for (const [i, r] of (t.routes as unknown[]).entries()) routes.push(route(name, r, i, lines, fail, mode, file));
    }
    const acceptsLine = lines.of(`${name}.accepts`);
    services.set(
      name,
      Object.freeze({
        accepts,
        acceptsLine,
        routes: Object.freeze(routes),
        mode,
        acceptsWhere: `${file}:${acceptsLine}`,
      }),
    );
  }
  return Object.freeze({ file, services });
}

/** A `mode` key: absent means `inherited`; anything but "enforce" or "audit" is an error (fails closed). */
function modeOf(v: unknown, key: string, inherited: PolicyMode, fail: (k: string, m: string) => never): PolicyMode {
  if (v === undefined) return inherited;
  if (typeof v !== "string" || !(POLICY_MODES as readonly string[]).includes(v)) {
    fail(key, `${key} must be "enforce" or "audit" (got ${JSON.stringify(v)?.slice(0, 40)})`);
  }
  return v as PolicyMode;
}

function route(
  service: string,
  raw: unknown,
  i: number,
  lines: KeyLines,
  fail: (k: string, m: string) => never,
  serviceMode: PolicyMode = "enforce",
  file = "",
): RouteRule {
  const at = `${service}.routes[${i}]`;
  if (!isPlainTable(raw)) fail(at, `${at} must be a table with method, path and accepts`);
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (!ROUTE_KEYS.includes(k) && !ROUTE_OPTIONAL_KEYS.includes(k))
      fail(
        `${at}.${k}`,
        `unknown key "${k}" in ${at} (allowed: ${[...ROUTE_KEYS, ...ROUTE_OPTIONAL_KEYS].join(", ")})`,
      );
  }
  for (const k of ROUTE_KEYS) if (r[k] === undefined) fail(at, `${at} is missing "${k}"`);
  if (typeof r.method !== "string" || !METHODS.has(r.method.toUpperCase())) {
    fail(`${at}.method`, `${at}.method must be one of ${[...METHODS].join(", ")}`);
  }
  const path = r.path;
  if (typeof path !== "string" || !/^\/[A-Za-z0-9._~:/-]*(\/\*)?$/.test(path) || path.includes("//")) {
    fail(`${at}.path`, `${at}.path must be a string path like "/charge", "/stock/:sku" or "/admin/*"`);
  }
  return Object.freeze({
    method: (r.method as string).toUpperCase(),
    path: path as string,
    accepts: callers(r.accepts, `${at}.accepts`, fail),
    name: at,
    line: lines.of(at),
    match: compilePath(path as string),
    mode: modeOf(r.mode, `${at}.mode`, serviceMode, fail),
    where: `${file}:${lines.of(at)}`,
  });
}

function callers(v: unknown, key: string, fail: (k: string, m: string) => never): readonly string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string"))
    fail(key, `${key} must be an array of service names or SPIFFE IDs, e.g. ["order", "spiffe://internal/shipping"]`);
  for (const c of v as string[]) {
    if (c.startsWith("spiffe:") || c.includes("://")) {
      const id = parseSpiffeId(c);
      if (!id.ok)
        fail(
          key,
          `${key} names ${JSON.stringify(c.slice(0, 120))}, which is not a SPIFFE ID: ${id.why}; e.g. "spiffe://internal/order"`,
        );
      if (!id.ok) continue;
      const p = id.value;
      if (p.segments.length === 0)
        fail(key, `${key} names ${p.id}, a trust domain: a caller is a workload, spiffe://<trust domain>/<name>`);
      if (p.segments.length !== 1)
        fail(
          key,
          `${key} names ${p.id}: a mesh caller's SPIFFE ID has one path segment, spiffe://<trust domain>/<name>`,
        );
      continue;
    }
    // Any mesh identity, not only the demo's: a caller with no certificate yet is for the tools
    // to warn about (unknownCallers), not a reason to refuse the policy.
    if (!isIdentityName(c))
      fail(
        key,
        `${key} names "${c.slice(0, 80)}", which is not a mesh identity: a caller is the first label of its certificate's name <name>.internal (lower-case letters, digits and hyphens), e.g. "order", or its SPIFFE ID, e.g. "spiffe://internal/order"`,
      );
  }
  return Object.freeze([...new Set(v as string[])]);
}

/** The rules in audit mode ("payment.accepts", "inventory.routes[1]"): each lets through every caller it does not list. */
export function auditedRules(policy: Policy): string[] {
  const out: string[] = [];
  for (const [name, sp] of policy.services) {
    if (sp.mode === "audit" && sp.accepts !== null) out.push(`${name}.accepts`);
    if (sp.mode === "audit" && sp.accepts === null) out.push(`${name}.routes`);
    for (const r of sp.routes) if (r.mode === "audit") out.push(r.name);
  }
  return out;
}

/** Every caller the policy names anywhere, in the order first named. */
export function policyCallers(policy: Policy): string[] {
  const out = new Set<string>();
  for (const sp of policy.services.values()) {
    for (const c of sp.accepts ?? []) out.add(c);
    for (const r of sp.routes) for (const c of r.accepts) out.add(c);
  }
  return [...out];
}

export interface UnknownCaller {
  readonly caller: string;
  /** Where the policy names it: "payment.accepts", "inventory.routes[0]". */
  readonly rules: readonly string[];
  readonly message: string;
}

/**
 * Callers the policy names that hold no certificate yet (`known`: the names that do, short or
 * `<name>.internal`). A warning, never a refusal: the policy may be written before the service
 * enrols, and a typo shows up here too.
 */
export function unknownCallers(policy: Policy, known: Iterable<string>): UnknownCaller[] {
  const have = new Set([...known].map((k) => k.replace(/\.internal$/, "")));
  const out: UnknownCaller[] = [];
  for (const caller of policyCallers(policy)) {
    if (have.has(callerName(caller))) continue;
    const rules: string[] = [];
    for (const [name, sp] of policy.services) {
      if (sp.accepts?.includes(caller)) rules.push(`${name}.accepts`);
      for (const r of sp.routes) if (r.accepts.includes(caller)) rules.push(r.name);
    }
    out.push({
      caller,
      rules,
      message: `${policy.file} lets "${caller}" call (${rules.join(", ")}), but no certificate for ${callerName(caller)}.internal exists yet: it is granted once one is issued (npm run -s ca -- token --domain ${callerName(caller)}.internal); if "${caller}" is a typo, fix the policy`,
    });
  }
  return out;
}

/** The short name a policy entry stands for: itself, or the workload its SPIFFE ID names. */
export function callerName(caller: string): string {
  if (!caller.startsWith("spiffe://")) return caller;
  const id = parseSpiffeId(caller);
  const dns = id.ok ? dnsNameOfSpiffeId(id.value) : null;
  return (dns && shortName(dns)) ?? caller;
}

function isPlainTable(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}
