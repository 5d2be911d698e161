// Command-line entry for the sidecar: the mesh runtime in front of an app it does not contain.
//   tsx services/sidecar.ts --service billing --app http://127.0.0.1:8080 --port 7410 \
//       --upstream payment=127.0.0.1:7402@15002
import { Command, InvalidArgumentError, Option } from "commander";
import { startService, type RunningService } from "./mesh/runtime.ts";
import { onParentExit } from "./mesh/parent.ts";
import { createStdoutLogger } from "./mesh/log.ts";
import { RotatingFile, rotationFromEnv } from "../lib/rotating-file.ts";
import { DEFAULT_REQUEST_LINES_PER_SECOND } from "./mesh/access-log.ts";
import { isIdentityName } from "./mesh/names.ts";
import { isMeshError, messageOf } from "./mesh/errors.ts";
import { startAdmin, type Admin } from "../lib/admin-http.ts";
import { count, loopback, port } from "./flags.ts";
import { identityOptions, IDENTITY_HELP } from "./mesh/identity-agent/cli.ts";
import { startIdentityService } from "./mesh/identity-agent/service.ts";
import { sidecarApp, parseAppAddress, type AppAddress, type OutboundRoute } from "./mesh/sidecar/index.ts";

const program = new Command("mesh-sidecar")
  .description(
    "Put any app (any language, HTTP/1.1, HTTP/2 or gRPC) behind the mesh: mTLS, identity, policy and logs in front of it, and mTLS for its calls. See docs/sidecar.md.",
  )
  .requiredOption("--service <name>", "the identity served as (its certificate is <name>.internal)", (v: string) => {
    if (!isIdentityName(v))
      throw new InvalidArgumentError("must be a mesh name: one lower-case DNS label such as billing or billing-api");
    return v;
  })
  .requiredOption(
    "--app <addr>",
    "where the app listens: http://127.0.0.1:PORT or unix:/path/app.sock (loopback only)",
    (v: string) => {
      try {
        return parseAppAddress(v);
      } catch (e) {
        throw new InvalidArgumentError(messageOf(e).replace(/^--app \S+ /, ""));
      }
    },
  )
  .addOption(
    new Option("--app-protocol <p>", "how the app speaks: http1, or h2c (HTTP/2 without TLS, e.g. a gRPC server)")
      .choices(["http1", "h2c"])
      .default("http1"),
  )
  .option("--port <n>", "the mTLS port callers reach (0 picks a free one)", port, 0)
  .option("--host <addr>", "address of the mTLS listener", "127.0.0.1")
  .option(
    "--pki <dir>",
    "file mode: the CA's state folder (certs/<name>.internal.crt, bundle.pem, crls.pem)",
    process.env.MESH_PKI_DIR ?? "./pki",
  )
  .option("--policy <file>", "the authorization policy", process.env.MESH_POLICY ?? "mesh-policy.toml")
  .option(
    "--upstream <name=host:port[@port]>",
    "an upstream the app calls: its mTLS address, and the loopback port the app calls it on (@0 or none: a free one, logged as outbound.listening); repeatable",
    upstream,
    [] as OutboundRoute[],
  )
  .option(
    "--request-lines <n>",
    "request lines per second before the rest of the second is summarised (0: a line for every request)",
    count,
  )
  .option("--exit-with-parent", "end when the process that started this one exits")
  .option(
    "--log-file <path>",
    "append the log here instead of stdout, rotated by size (MESH_LOG_MAX_SIZE, default 10m; MESH_LOG_KEEP rotated files, default 5)",
  )
  .option("--admin-port <n>", "serve GET /metrics and GET /healthz over plain HTTP on this loopback port", port)
  .option("--admin-host <addr>", "loopback address of the admin listener", loopback, "127.0.0.1")
  .option(
    "--ca <url>",
    "identity mode: the CA's EST server; the sidecar enrols and renews on its own and does not read --pki",
    process.env.MESH_CA_URL,
  )
  .option("--state <dir>", "identity mode: this workload's own folder (default ./state/<service>)")
  .option(
    "--token-file <file>",
    "identity mode: the one-time enrolment token, needed on first start only (or env MESH_ENROL_TOKEN)",
  )
  .option("--lifetime <duration>", "identity mode: the certificate lifetime to ask the CA for (90s, 10m, 1h)")
  .option("--poll <seconds>", "identity mode: how often to fetch the trust bundle and CRLs (default 30)")
  .option(
    "--renew-at <fraction>",
    "identity mode: renew at this fraction of the certificate's life, ±10 %, from 0.1 to 0.9 (default MESH_RENEW_AT, else 0.667)",
    process.env.MESH_RENEW_AT,
  )
  .addHelpText(
    "after",
    `
Examples:
  npm run sidecar -- --service billing --app http://127.0.0.1:8080 --port 7410 --pki ./pki
  npm run sidecar -- --service billing --app unix:/run/billing.sock --upstream payment=127.0.0.1:7402@15002
  npm run sidecar -- --service greeter --app http://127.0.0.1:50051 --app-protocol h2c --port 7420

The app learns its caller from x-forwarded-client-cert (Envoy's format), set by the sidecar
alone; it calls an upstream at http://127.0.0.1:<port> and never holds a key. Logs are JSON
lines on stdout (or --log-file). Exit codes: 0 stopped by a signal, 2 bad arguments or files.
${IDENTITY_HELP}`,
  )
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

function upstream(v: string, acc: OutboundRoute[]): OutboundRoute[] {
  const m = /^([a-z0-9-]+)=([0-9.]+|localhost|\[[0-9a-f:]+\]):(\d{1,5})(?:@(\d{1,5}))?$/.exec(v);
  if (!m || !isIdentityName(m[1]!) || Number(m[3]) > 65535 || Number(m[4] ?? 0) > 65535) {
    throw new InvalidArgumentError(
      "expected name=host:port[@port], e.g. payment=127.0.0.1:7402@15002 (the app then calls http://127.0.0.1:15002)",
    );
  }
  if (acc.some((r) => r.name === m[1])) throw new InvalidArgumentError(`${m[1]} is given twice`);
  return [...acc, { name: m[1]!, addr: `${m[2]}:${m[3]}`, listenPort: Number(m[4] ?? 0) }];
}

program.parse();
const o = program.opts<{
  service: string;
  app: AppAddress;
  appProtocol: "http1" | "h2c";
  port: number;
  host: string;
  pki: string;
  policy: string;
  upstream: OutboundRoute[];
  requestLines?: number;
  adminPort?: number;
  adminHost: string;
  exitWithParent?: boolean;
  logFile?: string;
  ca?: string;
  state?: string;
  tokenFile?: string;
  lifetime?: string;
  poll?: string;
  renewAt?: string;
}>();

try {
  const out = createStdoutLogger(
    o.service,
    o.logFile ? new RotatingFile(o.logFile, { ...rotationFromEnv(), sync: true }) : undefined,
  );
  const app = sidecarApp({ app: o.app, appProtocol: o.appProtocol, outbound: o.upstream });
  const common = {
    service: o.service,
    app,
    port: o.port,
    host: o.host,
    policyFile: o.policy,
    log: out.log,
    requestLinesPerSecond: o.requestLines ?? DEFAULT_REQUEST_LINES_PER_SECOND,
  };
  const svc: RunningService = o.ca
    ? await startIdentityService({ ...common, identity: identityOptions({ ...o, ca: o.ca }) })
    : await startService({ ...common, pkiDir: o.pki });
  let admin: Admin | undefined;
  if (o.adminPort !== undefined) {
    admin = await startAdmin({
      exposition: svc.metrics.registry,
      port: o.adminPort,
      host: o.adminHost,
      healthy: () => svc.server.https.listening,
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
    setTimeout(() => process.exit(0), 3_000).unref();
    try {
      svc.log.info({ event: "shutdown", signal }, `${o.service} sidecar stopping on ${signal}`);
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
  if (o.exitWithParent) onParentExit(() => process.kill(process.pid, "SIGKILL"));
} catch (e) {
  process.stderr.write(`${o.service}: ${isMeshError(e) ? e.message : `cannot start: ${messageOf(e)}`}\n`);
  process.exit(2);
}
