// npm run mesh:dashboard: a live page of the mesh on 127.0.0.1: the call graph, identities and
// their expiry, the policy beside what was seen, refusals with their reasons, and a timeline.
import { Command, InvalidArgumentError, Option } from "commander";
import { startDashboard, DashboardError } from "./dashboard/server.ts";
import { DEFAULT_DASHBOARD_PORT } from "./mesh-ports.ts";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";
import { RotatingFile, rotationFromEnv } from "../lib/rotating-file.ts";

// First, before anything is written (help included): `| head` ends it quietly.
endQuietlyOnClosedOutput();

const port = (v: string) => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new InvalidArgumentError("must be a port number 0-65535");
  return n;
};

const program = new Command("mesh:dashboard")
  .description("Serve a live, read-only dashboard of the running mesh on loopback.")
  .addOption(new Option("--logs <dir>", "the services' log folder").env("MESH_LOG_DIR").default("./logs"))
  .addOption(
    new Option("--pki <dir>", "the CA state folder (identities, generations, CRLs)")
      .env("MESH_PKI_DIR")
      .default("./pki"),
  )
  .addOption(new Option("--policy <file>", "the authorization policy").env("MESH_POLICY").default("mesh-policy.toml"))
  .addOption(
    new Option("--port <n>", "port (0: any free one)")
      .env("MESH_DASHBOARD_PORT")
      .default(DEFAULT_DASHBOARD_PORT)
      .argParser(port),
  )
  .option("--host <addr>", "loopback address to bind (127.0.0.1, ::1 or localhost)", "127.0.0.1")
  .addOption(
    new Option(
      "--store <url>",
      "where the CA's ledger is when not --pki's ca.db: postgres://user@host/db (docs/est.md)",
    ).env("MESH_CA_STORE"),
  )
  .option(
    "--log-file <path>",
    "append its lines for people here instead of stdout, rotated by size (MESH_LOG_MAX_SIZE, MESH_LOG_KEEP; as mesh:up runs it)",
  )
  .addHelpText(
    "after",
    `\nExamples:\n  npm run mesh:dashboard\n  npm run mesh:dashboard -- --port 0 --logs /tmp/drill/logs --pki /tmp/drill/pki\n\nExit codes: 0 stopped with Ctrl-C, 2 bad flags or the port is taken.`,
  )
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

program.parse();
const o = program.opts<{
  logs: string;
  pki: string;
  policy: string;
  port: number;
  host: string;
  logFile?: string;
  store?: string;
}>();
try {
  const out = o.logFile ? new RotatingFile(o.logFile, { ...rotationFromEnv(), sync: true }) : process.stdout;
  const d = await startDashboard({
    logs: o.logs,
    pki: o.pki,
    policy: o.policy,
    port: o.port,
    host: o.host,
    store: o.store,
  });
  out.write(`dashboard: ${d.url}  (read-only; Ctrl-C stops it)\n`);
  const stop = () => void d.close().finally(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
} catch (e) {
  const err = e as NodeJS.ErrnoException;
  const msg =
    e instanceof DashboardError || e instanceof RangeError
      ? e.message
      : err.code === "EADDRINUSE"
        ? `port ${o.port} is taken (pick another with --port, or 0 for any)`
        : err.message;
  process.stderr.write(`mesh:dashboard: ${msg}\n`);
  process.exit(2);
}
