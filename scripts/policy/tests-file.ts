// Policy tests: expected decisions written beside the policy (mesh-policy.tests.toml), checked
// by `npm run policy -- test` and by mesh:up before it starts anything.
import { existsSync, readFileSync } from "node:fs";
import { parse, TomlError } from "smol-toml";
import { MeshError, messageOf } from "../../services/mesh/errors.ts";
import { SERVICES, isIdentityName, isServiceName } from "../../services/mesh/names.ts";
import { decide, type Decision, type Policy } from "../../services/mesh/policy.ts";
import { KeyLines } from "../../services/mesh/toml-lines.ts";

/** allow: allowed by a rule that lists the caller; would_deny: let through by a rule in audit mode; deny: 403. */
export type Expectation = "allow" | "deny" | "would_deny";
const EXPECTATIONS: readonly Expectation[] = ["allow", "deny", "would_deny"];
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const KEYS = ["caller", "service", "method", "path", "expect", "rule"];

export interface PolicyTest {
  readonly caller: string;
  readonly service: string;
  readonly method: string;
  readonly path: string;
  readonly expect: Expectation;
  /** When given, the rule that must decide: "payment.accepts", "inventory.routes[0]". */
  readonly rule?: string;
  readonly line: number;
}

export interface TestResult {
  readonly test: PolicyTest;
  readonly got: Expectation;
  readonly decision: Decision;
  readonly ok: boolean;
  /** "mesh-policy.tests.toml:7: expected order → payment POST /charge to be allowed, but it is denied by payment.accepts: …" */
  readonly message: string;
}

/** mesh-policy.toml → mesh-policy.tests.toml, beside it. */
export function testsFileOf(policyFile: string): string {
  return policyFile.replace(/(\.toml)?$/, ".tests.toml");
}

export function verdictOf(d: Decision): Expectation {
  return !d.allow ? "deny" : d.wouldDeny ? "would_deny" : "allow";
}

const WORDS: Record<Expectation, string> = {
  allow: "allowed",
  deny: "denied",
  would_deny: "let through in audit mode (would be denied)",
};

export function loadPolicyTests(file: string): PolicyTest[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new MeshError("POLICY_UNREADABLE", `${file}: cannot read the policy tests: ${messageOf(e)}`);
  }
  return parsePolicyTests(text, file);
}

/** Strict, like the policy: every error names file:line, and nothing half-valid is returned. */
export function parsePolicyTests(text: string, file: string): PolicyTest[] {
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
  for (const k of Object.keys(doc))
    if (k !== "test") fail(k, `unknown key "${k}" (a tests file holds [[test]] tables only)`);
  if (doc.test === undefined)
    fail(
      "test",
      `no [[test]] tables: write at least one, e.g. [[test]] caller = "order" service = "payment" method = "POST" path = "/charge" expect = "allow"`,
    );
  if (!Array.isArray(doc.test)) fail("test", `"test" must be an array of tables ([[test]])`);
  return (doc.test as unknown[]).map((raw, i) => {
    const at = `test[${i}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail(at, `${at} must be a table ([[test]])`);
    const t = raw as Record<string, unknown>;
    for (const k of Object.keys(t))
      if (!KEYS.includes(k)) fail(`${at}.${k}`, `unknown key "${k}" in [[test]] (allowed: ${KEYS.join(", ")})`);
    for (const k of ["caller", "service", "expect"]) if (t[k] === undefined) fail(at, `[[test]] is missing "${k}"`);
    const str = (k: string): string =>
      typeof t[k] === "string" ? (t[k] as string) : fail(`${at}.${k}`, `"${k}" must be a string`);
    const caller = str("caller");
    if (!isIdentityName(caller))
      fail(`${at}.caller`, `caller "${caller.slice(0, 80)}" is not a mesh identity (e.g. "order")`);
    const service = str("service");
    if (!isServiceName(service))
      fail(`${at}.service`, `unknown service "${service.slice(0, 80)}" (the mesh has: ${SERVICES.join(", ")})`);
    const method = t.method === undefined ? "GET" : str("method").toUpperCase();
    if (!METHODS.includes(method)) fail(`${at}.method`, `method must be one of ${METHODS.join(", ")}`);
    const path = t.path === undefined ? "/healthz" : str("path");
    if (!/^\/[\x21-\x7e]*$/.test(path) || path.length > 2048)
      fail(`${at}.path`, `path must start with "/" and hold no spaces, e.g. "/charge"`);
    const expect = str("expect");
    if (!(EXPECTATIONS as readonly string[]).includes(expect))
      fail(
        `${at}.expect`,
        `expect must be ${EXPECTATIONS.map((e) => `"${e}"`).join(", ")} (got "${expect.slice(0, 40)}")`,
      );
    const rule = t.rule === undefined ? undefined : str("rule");
    return Object.freeze({ caller, service, method, path, expect: expect as Expectation, rule, line: lines.of(at) });
  });
}

/** Each test decided by decide(), the function the services use. */
export function runPolicyTests(policy: Policy, tests: readonly PolicyTest[], file: string): TestResult[] {
  return tests.map((test) => {
    const decision = decide(policy, test.service, test.caller, test.method, test.path);
    const got = verdictOf(decision);
    const ruleOk = test.rule === undefined || decision.rule === test.rule || decision.rule.startsWith(`${test.rule} `);
    const ok = got === test.expect && ruleOk;
    const call = `${test.caller} → ${test.service} ${test.method} ${test.path}`;
    const by = `${decision.rule}${decision.where ? ` (${decision.where})` : ""}`;
    const message = ok
      ? `${file}:${test.line}: ${call} is ${WORDS[got]} by ${by}`
      : got !== test.expect
        ? `${file}:${test.line}: expected ${call} to be ${WORDS[test.expect]}, but it is ${WORDS[got]} by ${by}: ${decision.reason}`
        : `${file}:${test.line}: expected ${call} to be decided by ${test.rule}, but ${by} decides it`;
    return { test, got, decision, ok, message };
  });
}

/**
 * mesh:up's start check: the tests beside `policyFile`, if that file exists. Throws a
 * MeshError naming the first failing test (and how many failed), or a bad tests file.
 */
export function checkPolicyTests(policy: Policy, policyFile: string): { file: string; passed: number } | null {
  const file = testsFileOf(policyFile);
  if (!existsSync(file)) return null;
  const results = runPolicyTests(policy, loadPolicyTests(file), file);
  const failed = results.filter((r) => !r.ok);
  if (failed.length > 0) {
    const more = failed.length > 1 ? ` (and ${failed.length - 1} more failing: npm run policy -- test)` : "";
    throw new MeshError("POLICY_TEST_FAILED", `policy test failed: ${failed[0]!.message}${more}`);
  }
  return { file, passed: results.length };
}
