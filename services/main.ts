// Command-line entry for one mesh service:
//   tsx services/main.ts --service payment --port 7402 --pki ./pki --policy mesh-policy.toml
import { Command, InvalidArgumentError } from "commander";
import { startService } from "./mesh/runtime.ts";
import { onParentExit } from "./mesh/parent.ts";
import { createStdoutLogger } from "./mesh/log.ts";
import { DEFAULT_REQUEST_LINES_PER_SECOND } from "./mesh/access-log.ts";
import { isIdentityName } from "./mesh/names.ts";
import { APPS, appNamed } from "./apps/index.ts";
import { isMeshError, messageOf } from "./mesh/errors.ts";
import { startAdmin, type Admin } from "../lib/admin-http.ts";
import { count, loopback, port } from "./flags.ts";
import { serviceHealth, serviceReadiness } from "./mesh/health.ts";
import { identityOptions, IDENTITY_HELP } from "./mesh/identity-agent/cli.ts";
import { startIdentityService } from "./mesh/identity-agent/service.ts";
import { readPeers } from "./mesh/peers.ts";
import { RotatingFile, rotationFromEnv } from "../lib/rotating-file.ts";

const program = new Command("mesh-service")
  .description(
    `Run one in-process mesh service (${Object.keys(APPS).join(", ")}) over mTLS; for an app in another process or language, see npm run sidecar.`,
  )
  .requiredOption(
    "--service <name>",
    `the app to run, one of ${Object.keys(APPS).join(", ")} (services/apps/index.ts)`,
    (v: string) => {
      if (!appNamed(v))
        throw new InvalidArgumentError(
          `must be one of ${Object.keys(APPS).join(", ")} (services/apps/index.ts); to put another app behind the mesh, run it behind the sidecar (docs/sidecar.md)`,
        );
      return v;
    },
  )
  .option("--port <n>", "port to listen on (0 picks a free one)", port, 0)
  .option("--host <addr>", "address to listen on", "127.0.0.1")
  .option("--pki <dir>", "the CA's state folder (certs/, bundle.pem, crls.pem)", process.env.MESH_PKI_DIR ?? "./pki")
  .option("--policy <file>", "the authorization policy", process.env.MESH_POLICY ?? "mesh-policy.toml")
  .option(
    "--request-lines <n>",
    "request lines per second before the rest of the second is summarised (0: a line for every request)",
    count,
  )
  .option(
    "--upstream <name=host:port>",
    "where a called service listens (repeatable)",
    upstream,
    {} as Record<string, string>,
  )
  .option(
    "--log-file <path>",
    "append the log here instead of stdout, rotated by size (MESH_LOG_MAX_SIZE, default 10m; MESH_LOG_KEEP rotated files, default 5)",
  )
  .option(
    "--peers <file>",
    'where called services listen, one "payment.internal 10.0.0.3:7402" a line (for services on other machines; --upstream wins)',
  )
  .option(
    "--exit-with-parent",
    "end when the process that started this one exits (what the rotation drill asks for; mesh:up supervises its services instead; a service started by systemd, nohup or setsid keeps running)",
  )
  .option(
    "--admin-port <n>",
    "serve GET /metrics (Prometheus), GET /healthz and GET /readyz over plain HTTP on this port (0 picks a free one; default MESH_ADMIN_PORT, else off)",
    port,
  )
  .option("--admin-host <addr>", "loopback address of the admin listener", loopback, "127.0.0.1")
  .option(
    "--ca <urls>",
    "identity mode: the CA's EST server (e.g. https://127.0.0.1:7400), or several replicas' separated by commas, tried in turn when one is down or answers 5xx; the service enrols and renews on its own and does not read --pki",
    process.env.MESH_CA_URL,
  )
  .option(
    "--state <dir>",
    "identity mode: this service's own folder (key, certificate, cached bundle and CRLs; default ./state/<service>)",
  )
  .option(
    "--token-file <file>",
    "identity mode: the one-time enrolment token, needed on first start only (or env MESH_ENROL_TOKEN; never the token itself as an argument: ps shows those)",
  )
  .option(
    "--lifetime <duration>",
    "identity mode: the certificate lifetime to ask the CA for (90s, 10m, 1h; default the CA's)",
  )
  .option("--poll <seconds>", "identity mode: how often to fetch the trust bundle and CRLs from the CA (default 30)")
  .option(
    "--renew-at <fraction>",
    "identity mode: renew at this fraction of the certificate's life, ±10 %, from 0.1 to 0.9 (default MESH_RENEW_AT, else 0.667)",
    process.env.MESH_RENEW_AT,
  )
  .addHelpText(
    "after",
    `
Examples:
  tsx services/main.ts --service payment --port 7402
  tsx services/main.ts --service order --port 7401 --upstream payment=127.0.0.1:7402 --upstream inventory=127.0.0.1:7403
  tsx services/main.ts --service payment --port 7402 --admin-port 7412   # curl http://127.0.0.1:7412/metrics
  tsx services/main.ts --service order --host 10.0.0.2 --port 7401 --peers peers.txt --ca https://10.0.0.1:7400   # docs/mesh.md

Logs are JSON lines on stdout (pino). Up to --request-lines (default ${DEFAULT_REQUEST_LINES_PER_SECOND}, or
MESH_REQUEST_LINES_PER_SECOND) requests a second get their own "request" line; the rest of
that second is counted in "request.summary" lines. Exit codes: 0 stopped by a signal, 2 bad arguments or files.
${IDENTITY_HELP}`,
  )
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

function upstream(v: string, acc: Record<string, string>): Record<string, string> {
  const m = /^([a-z0-9-]+)=([0-9.]+|localhost|\[[0-9a-f:]+\]):(\d{1,5})$/.exec(v);
  if (!m || !isIdentityName(m[1]!))
    throw new InvalidArgumentError(`expected name=host:port with a mesh service name, e.g. payment=127.0.0.1:7402`);
  return { ...acc, [m[1]!]: `${m[2]}:${m[3]}` };
}

program.parse();
const o = program.opts<{
  service: string;
  port: number;
  host: string;
  pki: string;
  policy: string;
  upstream: Record<string, string>;
  peers?: string;
  logFile?: string;
  requestLines?: number;
  adminPort?: number;
  adminHost: string;
  exitWithParent?: boolean;
  ca?: string;
  state?: string;
  tokenFile?: string;
  lifetime?: string;
  poll?: string;
  renewAt?: string;
}>();

let requestLines = o.requestLines ?? DEFAULT_REQUEST_LINES_PER_SECOND;
if (o.requestLines === undefined && process.env.MESH_REQUEST_LINES_PER_SECOND !== undefined) {
  try {
    requestLines = count(process.env.MESH_REQUEST_LINES_PER_SECOND);
  } catch (e) {
    process.stderr.write(`${o.service}: MESH_REQUEST_LINES_PER_SECOND ${messageOf(e)}\n`);
    process.exit(2);
  }
}

let adminPort = o.adminPort;
if (adminPort === undefined && process.env.MESH_ADMIN_PORT) {
  try {
    adminPort = port(process.env.MESH_ADMIN_PORT);
  } catch (e) {
    process.stderr.write(`${o.service}: MESH_ADMIN_PORT ${messageOf(e)}\n`);
    process.exit(2);
  }
}

try {
  const out = createStdoutLogger(
    o.service,
    o.logFile ? new RotatingFile(o.logFile, { ...rotationFromEnv(), sync: true }) : undefined,
  );
  const upstreams = o.peers ? { ...readPeers(o.peers), ...o.upstream } : o.upstream;
  const common = {
    service: o.service,
    app: appNamed(o.service)!,
    port: o.port,
    host: o.host,
    policyFile: o.policy,
    upstreams,
    log: out.log,
    requestLinesPerSecond: requestLines,
  };
  const svc = o.ca
    ? await startIdentityService({ ...common, identity: identityOptions({ ...o, ca: o.ca }) })
    : await startService({ ...common, pkiDir: o.pki });
  let admin: Admin | undefined;
  if (adminPort !== undefined) {
    const facts = () => ({ listening: svc.server.https.listening, material: svc.material() });
    admin = await startAdmin({
      exposition: svc.metrics.registry,
      port: adminPort,
      host: o.adminHost,
      healthy: () => serviceHealth(facts()),
      ready: () => serviceReadiness(facts()),
    });
    svc.log.info(
      { event: "admin.listening", host: admin.host, port: admin.port },
      `${o.service} admin (metrics, healthz) on ${admin.url}`,
    );
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    // First make sure we exit, whatever happens below (stdout may be a pipe to a dead parent).
    setTimeout(() => process.exit(0), 3_000).unref();
    try {
      svc.log.info({ event: "shutdown", signal }, `${o.service} stopping on ${signal}`);
    } catch {
      /* nowhere left to log to */
    }
    Promise.all([svc.close(), admin?.close()])
      .catch(() => {})
      .then(() => out.drained())
      .finally(() => process.exit(0));
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  // Only a launcher that owns this process asks for this: a service started by systemd, nohup
  // or setsid is re-parented as a matter of course and must keep serving. Orphaned, with stdout
  // and stderr gone with the launcher: nothing to flush, nobody to tell, and an error printed
  // now could hang the process in tsx's loader. End at once.
  if (o.exitWithParent) onParentExit(() => process.kill(process.pid, "SIGKILL"));
} catch (e) {
  process.stderr.write(`${o.service}: ${isMeshError(e) ? e.message : `cannot start: ${messageOf(e)}`}\n`);
  process.exit(2);
}
