// npm run policy -- <what-if|test|explain>: try a policy before it applies. Every decision
// here is made by decide() (services/mesh/policy.ts), the function the services use.
import { existsSync, statSync } from "node:fs";
import { Command, Option } from "commander";
import { isMeshError } from "../../services/mesh/errors.ts";
import { isIdentityName, isServiceName, SERVICES } from "../../services/mesh/names.ts";
import { decide, loadPolicy, smallestEdit } from "../../services/mesh/policy.ts";
import { SeenCalls, parseSince } from "./seen-calls.ts";
import { loadPolicyTests, runPolicyTests, testsFileOf, verdictOf } from "./tests-file.ts";
import { changeLine, whatIf } from "./what-if.ts";

/** Bad input of any kind: one line, exit 2. */
class UsageError extends Error {}

// A reader that stops early (`| head`) closes our stdout: end quietly with the exit code
// already decided. (Other commands use lib/closed-output.ts where that is on the branch; this is
// the same behaviour, local, until it is.)
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
    process.exit(1);
  });
}

const out = (s: string) => process.stdout.write(`${s}\n`);
const DEFAULT_POLICY = "mesh-policy.toml";
// An empty MESH_POLICY means the default.
const policyOption = () =>
  new Option("--policy <file>", "the policy in force").env("MESH_POLICY").default(DEFAULT_POLICY);

const program = new Command("policy")
  .description(
    "Try a policy before it applies: what-if against the calls the mesh saw, expected decisions (tests), and why a call is decided as it is (explain).",
  )
  .addHelpText(
    "after",
    `
Examples:
  npm run policy -- what-if candidate.toml --since 15m
  npm run policy -- test
  npm run policy -- explain inventory payment POST /charge

Exit codes: 0 ok, 1 what-if: a call that succeeds would be denied / test: an expectation failed, 2 bad input.`,
  )
  .configureOutput({ outputError: (str, write) => write(str.replace(/\n(?!$)/g, " ")) })
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

program
  .command("what-if")
  .summary("which decisions a candidate policy would change, on the calls the logs show")
  .description(
    "Replay the calls the logs show (request, request.summary, authz.denied, authz.would_deny lines of the last --since) and mesh:probe's pairs (every caller → callee GET /healthz) through the policy in force and through <candidate>; print the decisions that would change.",
  )
  .argument("<candidate>", "the candidate policy file")
  .addOption(policyOption())
  .option("--since <duration>", "how far back the logs are read: 30s, 15m, 2h, 1d", "15m")
  .addOption(new Option("--logs <dir>", "the log folder").env("MESH_LOG_DIR").default("./logs"))
  .option("--json", "print the result as JSON")
  .addHelpText(
    "after",
    `
Examples:
  npm run policy -- what-if candidate.toml
  npm run policy -- what-if candidate.toml --since 2h --logs ./logs --json
  cp mesh-policy.toml candidate.toml && $EDITOR candidate.toml   # make a candidate

Output, one line per call whose decision changes:
  allowed → denied: order → payment POST /charge, rule payment.routes[1] (candidate.toml:12), seen 37 times

Exit codes: 0 no call that goes through today would be denied, 1 some would (use it to gate a change in CI),
2 bad input (an invalid policy, a bad --since, no such --logs folder).`,
  )
  .action((candidateFile: string, o: { policy: string; since: string; logs: string; json?: boolean }, cmd: Command) => {
    o.policy ||= DEFAULT_POLICY;
    const logsGiven = Boolean(o.logs) && cmd.getOptionValueSource("logs") !== "default";
    o.logs ||= "./logs"; // an empty MESH_LOG_DIR means the default
    const window = parseSince(o.since);
    if (window === null)
      throw new UsageError(`--since ${JSON.stringify(o.since)} is not a duration: write e.g. 30s, 15m, 2h or 1d`);
    const current = loadPolicy(o.policy);
    const candidate = loadPolicy(candidateFile);
    const seen = new SeenCalls();
    const since = Date.now() - window;
    let note = "";
    if (existsSync(o.logs) && statSync(o.logs).isDirectory()) seen.addLogDir(o.logs, since);
    else if (logsGiven)
      throw new UsageError(`no log folder ${o.logs} (give the folder mesh:up writes, e.g. --logs ./logs)`);
    else note = `no log folder ${o.logs}: only mesh:probe's pairs were replayed`;
    seen.addProbePairs();
    const r = whatIf(current, candidate, seen.all());
    const breaking = r.changes.filter((c) => c.breaking).length;
    const opened = r.changes.filter((c) => c.from === "deny").length;
    process.exitCode = breaking > 0 ? 1 : 0;
    if (o.json) {
      out(
        JSON.stringify({
          current: current.file,
          candidate: candidate.file,
          since: new Date(since).toISOString(),
          logLines: seen.linesTaken,
          calls: r.calls,
          unchanged: r.unchanged,
          breaking,
          opened,
          changes: r.changes,
          note: note || undefined,
        }),
      );
      return;
    }
    if (note) out(note);
    out(
      `${candidate.file} against ${current.file}: ${r.calls} calls (${seen.linesTaken} log lines since ${new Date(since).toISOString().slice(11, 19)} UTC, and mesh:probe's pairs), ${r.changes.length} decision${r.changes.length === 1 ? "" : "s"} would change, ${r.unchanged} unchanged`,
    );
    for (const c of r.changes) out(changeLine(c));
    if (breaking > 0)
      out(
        `${breaking} call${breaking === 1 ? "" : "s"} that go${breaking === 1 ? "es" : ""} through today would be denied`,
      );
    if (opened > 0)
      out(
        `${opened} call${opened === 1 ? "" : "s"} denied today would go through${r.changes.some((c) => c.from === "deny" && c.to === "would_deny") ? " (a rule in audit mode lets through every caller it does not list)" : ""}`,
      );
  });

program
  .command("test")
  .summary("check the expected decisions in <policy>.tests.toml")
  .description(
    "Check the expected decisions written beside the policy (<policy>.tests.toml, e.g. mesh-policy.tests.toml). mesh:up runs the same check before it starts anything.",
  )
  .addOption(policyOption())
  .option("--tests <file>", "the tests file (default: beside the policy, <name>.tests.toml)")
  .option("--json", "print the results as JSON")
  .addHelpText(
    "after",
    `
The tests file:
  [[test]]
  caller = "order"
  service = "payment"
  method = "POST"          # default GET
  path = "/charge"         # default /healthz
  expect = "allow"         # allow, deny, or would_deny (let through by a rule in audit mode)
  rule = "payment.accepts" # optional: the rule that must decide

Examples:
  npm run policy -- test
  npm run policy -- test --policy candidate.toml --tests mesh-policy.tests.toml

Exit codes: 0 every expectation holds, 1 one does not, 2 bad input (an invalid policy or tests file, with file:line).`,
  )
  .action((o: { policy: string; tests?: string; json?: boolean }) => {
    o.policy ||= DEFAULT_POLICY;
    const policy = loadPolicy(o.policy);
    const file = o.tests ?? testsFileOf(o.policy);
    if (!existsSync(file))
      throw new UsageError(`no policy tests file ${file} (write one: npm run policy -- test --help shows the format)`);
    const results = runPolicyTests(policy, loadPolicyTests(file), file);
    const failed = results.filter((r) => !r.ok);
    process.exitCode = failed.length > 0 ? 1 : 0;
    if (o.json) {
      out(
        JSON.stringify({
          policy: policy.file,
          tests: file,
          passed: results.length - failed.length,
          failed: failed.length,
          results: results.map((r) => ({
            ...r.test,
            got: r.got,
            ok: r.ok,
            rule: r.decision.rule,
            where: r.decision.where,
            message: r.message,
          })),
        }),
      );
      return;
    }
    for (const r of results) out(`${r.ok ? "ok  " : "FAIL"} ${r.message}`);
    out(`${results.length - failed.length} passed, ${failed.length} failed (${file} against ${policy.file})`);
  });

program
  .command("explain")
  .summary("which rule decides a call, why, and the edit that would change it")
  .description("Which rule decides a call (file:line), why, and the smallest edit of the policy that would change it.")
  .argument("<caller>", "the calling identity, e.g. order")
  .argument("<service>", `the service called (${SERVICES.join(", ")})`)
  .argument("[method]", "the HTTP method", "GET")
  .argument("[path]", "the request path", "/healthz")
  .addOption(policyOption())
  .option("--json", "print the explanation as JSON")
  .addHelpText(
    "after",
    `
Examples:
  npm run policy -- explain order payment POST /charge
  npm run policy -- explain inventory payment POST /charge
  npm run policy -- explain edge inventory GET /stock/widget --policy candidate.toml

Exit codes: 0 explained (whatever the decision), 2 bad input (an invalid policy, an unknown service or caller name).`,
  )
  .action((caller: string, service: string, methodArg: string, path: string, o: { policy: string; json?: boolean }) => {
    if (!isIdentityName(caller))
      throw new UsageError(`caller ${JSON.stringify(caller.slice(0, 80))} is not a mesh identity (e.g. order, edge)`);
    if (!isServiceName(service))
      throw new UsageError(
        `unknown service ${JSON.stringify(service.slice(0, 80))} (the mesh has: ${SERVICES.join(", ")})`,
      );
    const method = methodArg.toUpperCase();
    if (!["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].includes(method))
      throw new UsageError(
        `method ${JSON.stringify(methodArg.slice(0, 20))} is not one of GET POST PUT PATCH DELETE HEAD OPTIONS`,
      );
    if (!/^\/[\x21-\x7e]*$/.test(path))
      throw new UsageError(`path ${JSON.stringify(path.slice(0, 80))} must start with "/"`);
    const policy = loadPolicy(o.policy || DEFAULT_POLICY);
    const d = decide(policy, service, caller, method, path);
    const verdict = verdictOf(d);
    const edit = smallestEdit(policy, service, caller, d);
    if (o.json) {
      out(
        JSON.stringify({
          caller,
          service,
          method,
          path,
          decision: verdict,
          allow: d.allow,
          rule: d.rule,
          where: d.where,
          reason: d.reason,
          hint: d.hint,
          edit,
        }),
      );
      return;
    }
    const word =
      verdict === "allow"
        ? "allowed"
        : verdict === "deny"
          ? "denied"
          : "allowed in audit mode (enforcing would deny it: logged as authz.would_deny)";
    out(`${caller} → ${service} ${method} ${path}: ${word}`);
    out(`  rule:   ${d.rule}${d.where ? ` (${d.where})` : ""}`);
    out(`  why:    ${d.reason}`);
    out(`  change: ${edit}`);
  });

try {
  program.parse();
} catch (e) {
  if (e instanceof UsageError || isMeshError(e)) {
    process.stderr.write(`policy: ${(e as Error).message}\n`);
    process.exit(2);
  }
  throw e;
}
