// npm run mesh:probe: call every caller -> callee pair of a running mesh with the caller's
// own certificate, plus a client without one and one from a foreign CA, and print what
// happened beside what the policy says. Exits 1 where they differ.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Command, Option } from "commander";
import { loadPolicy, type Policy } from "../services/mesh/policy.ts";
import { isMeshError } from "../services/mesh/errors.ts";
import { SERVICES } from "../services/mesh/names.ts";
import { bold, dim, green, red } from "./mesh-format.ts";
import { DEFAULT_PORTS } from "./mesh-ports.ts";
import { PROBE_PATH, probeMesh, type IdentityFiles, type ProbeCell } from "./probe.ts";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";

// First, before anything is written (help included): `| head` ends it quietly.
endQuietlyOnClosedOutput();

const program = new Command("mesh:probe")
  .description("Probe a running mesh: every caller -> callee pair, plus strangers, against the policy.")
  .addOption(new Option("--pki <dir>", "the CA state folder").env("MESH_PKI_DIR"))
  .addOption(new Option("--policy <file>", "the policy to compare with").env("MESH_POLICY"))
  .addOption(
    new Option("--logs <dir>", "the services' log folder (for handshake reasons, and mesh.json)")
      .env("MESH_LOG_DIR")
      .default("./logs"),
  )
  .option("--order-port <n>", "order's port (default: from logs/mesh.json, else 7401)")
  .option("--payment-port <n>", "payment's port")
  .option("--inventory-port <n>", "inventory's port")
  .option("--json", "print the matrix as JSON")
  .addHelpText(
    "after",
    `\nExamples:\n  npm run mesh:probe\n  npm run mesh:probe -- --json\n\nExit codes: 0 the mesh does what the policy says, 1 it does not, 2 bad flags or files.`,
  )
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

function fail(msg: string): never {
  process.stderr.write(`mesh:probe: ${msg}\n`);
  process.exit(2);
}

async function main(): Promise<number> {
  program.parse();
  const o = program.opts<{
    pki?: string;
    policy?: string;
    logs: string;
    orderPort?: string;
    paymentPort?: string;
    inventoryPort?: string;
    json?: boolean;
  }>();
  const stateFile = join(o.logs, "mesh.json");
  const state = existsSync(stateFile)
    ? (JSON.parse(readFileSync(stateFile, "utf8")) as {
        pki?: string;
        policy?: string;
        ports?: Record<string, number>;
        identities?: Record<string, IdentityFiles>;
        workloads?: { list?: Record<string, unknown> } | null;
      })
    : {};
  const pki = resolve(o.pki ?? state.pki ?? "./pki");
  const policyFile = o.policy ?? state.policy ?? "mesh-policy.toml";
  const ports: Record<string, number> = { ...DEFAULT_PORTS, ...state.ports };
  for (const s of SERVICES) {
    const flag = o[`${s}Port` as "orderPort"];
    if (flag !== undefined) ports[s] = Number(flag);
  }
  let policy: Policy;
  try {
    policy = loadPolicy(policyFile);
  } catch (e) {
    fail(isMeshError(e) ? e.message : String(e));
  }
  let cells: ProbeCell[];
  let callers: string[];
  try {
    // Online, each identity lives in its own state folder (mesh.json says where); a --pki other
    // than the mesh's means that CA's certs/ (file mode).
    const identities = state.pki === undefined || resolve(state.pki) === pki ? state.identities : undefined;
    ({ cells, callers } = await probeMesh({
      pki,
      policy,
      ports,
      logs: o.logs,
      identities,
      workloads: Object.keys(state.workloads?.list ?? {}),
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  if (o.json) {
    console.log(JSON.stringify({ ports, policy: policyFile, cells }, null, 2));
  } else {
    const w = new Set(cells.map((x) => x.callee)).size > 3 ? 28 : 34;
    const callees = [...new Set(cells.map((x) => x.callee))];
    console.log(`${bold("caller".padEnd(14))}${callees.map((s) => bold(`${s} :${ports[s]}`.padEnd(w))).join("")}`);
    for (const name of callers) {
      const row = cells.filter((x) => x.caller === name);
      console.log(
        `${name.padEnd(14)}${row.map((x) => (x.ok ? green(`✓ ${x.observed}`.padEnd(w)) : red(`✗ ${x.observed}`.padEnd(w)))).join("")}`,
      );
    }
    const bad = cells.filter((x) => !x.ok);
    console.log(dim(`\n${cells.length} calls of GET ${PROBE_PATH}; policy: ${policyFile}`));
    for (const b of bad)
      console.log(
        red(`mismatch: ${b.caller} -> ${b.callee}: the policy says ${b.expected}, the mesh did ${b.observed}`),
      );
    if (bad.length === 0) console.log(green("the mesh does what the policy says"));
  }
  return cells.every((x) => x.ok) ? 0 : 1;
}

process.exitCode = await main();
