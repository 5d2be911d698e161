// npm run mesh:check: a health report of a running mesh in the manner of `linkerd check`:
// the CA's roots and CRLs, for each service whether it answers, what it serves and holds, and
// which parts mesh:up restarted lately or gave up on.
// Exits 1 on any ×.
import { resolve } from "node:path";
import { Command, Option } from "commander";
import { CaError } from "../ca/index.ts";
import { SERVICES } from "../services/mesh/names.ts";
import { messageOf } from "../services/mesh/errors.ts";
import { DEFAULT_PORTS } from "./mesh-ports.ts";
import { CheckSetupError, gatherMesh, readMeshState, type Target } from "./check/gather.ts";
import { checkMesh } from "./check/checks.ts";
import { renderJson, renderText } from "./check/render.ts";
import { checkSupervision, readSupervision } from "./check/supervision.ts";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";

// First, before anything is written (help included): `| head` ends it quietly.
endQuietlyOnClosedOutput();

const program = new Command("mesh:check")
  .description("Check a running mesh: certificates, trust bundle, CRLs, policy, clocks, and the CA's roots.")
  .addOption(
    new Option("--pki <dir>", "the CA state folder (default: from logs/mesh.json, else ./pki)").env("MESH_PKI_DIR"),
  )
  .addOption(
    new Option("--policy <file>", "the policy file the services should hold (default: from logs/mesh.json)").env(
      "MESH_POLICY",
    ),
  )
  .addOption(
    new Option("--logs <dir>", "the services' log folder, where mesh:up writes mesh.json")
      .env("MESH_LOG_DIR")
      .default("./logs"),
  )
  .option(
    "--json",
    "print the report as JSON: {ok, checkedAt, ca: {checks}, services: [{name, port, adminPort, checks: [{name, title, ok, severity, detail, fix}]}], supervisor: {checks}}",
  )
  .addHelpText(
    "after",
    `\nExamples:\n  npm run mesh:check\n  npm run mesh:check -- --json | jq '.services[].checks[] | select(.severity != "ok")'\n\nExit codes: 0 every check passed (warnings allowed), 1 a check failed, 2 bad flags or no mesh to check.`,
  )
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

function fail(msg: string): never {
  process.stderr.write(`mesh:check: ${msg}\n`);
  process.exit(2);
}

async function main(): Promise<number> {
  program.parse();
  const o = program.opts<{ pki?: string; policy?: string; logs: string; json?: boolean }>();
  try {
    const state = readMeshState(o.logs);
    if (!state?.ports)
      fail(`no ${o.logs}/mesh.json with the services' ports: is the mesh up? (npm run mesh:up), or pass --logs`);
    const ports: Record<string, number> = { ...DEFAULT_PORTS, ...state.ports };
    // Every service the mesh runs, as mesh.json lists them: the built-in ones, then the workloads behind their sidecars.
    const names = [...new Set([...SERVICES, ...Object.keys(state.ports)])];
    const targets: Target[] = names.map((name) => ({
      name,
      port: ports[name]!,
      adminPort: state.adminPorts?.[name] ?? null,
    }));
    const pki = resolve(o.pki ?? state.pki ?? "./pki");
    // Online (mesh.json says so), identities live in state folders; a --pki other than the mesh's is checked as file mode.
    const online = state.pki === undefined || resolve(state.pki) === pki ? state.online : undefined;
    const facts = await gatherMesh({
      targets,
      pki,
      policyFile: o.policy ?? state.policy ?? "mesh-policy.toml",
      online,
    });
    const now = Date.now();
    const meshReport = checkMesh(facts, now);
    const supervisor = { checks: checkSupervision(readSupervision(o.logs), now) };
    const report = { ...meshReport, supervisor, ok: meshReport.ok && supervisor.checks.every((c) => c.ok) };
    process.stdout.write(o.json ? renderJson(report) : renderText(report));
    return report.ok ? 0 : 1;
  } catch (e) {
    if (e instanceof CheckSetupError || e instanceof CaError) fail(messageOf(e));
    fail(`cannot check the mesh: ${messageOf(e)}`);
  }
}

process.exitCode = await main();
