// npm run mesh:up: the CA (created if absent) and, by default, its EST server; order, payment
// and inventory enrolling and renewing their own identities; the dashboard; their logs. Each is
// its own process, supervised: one that dies is restarted (supervisor.ts) and nothing else stops.
// Everything is stopped on Ctrl-C or SIGTERM. --file-mode: CLI-issued certificates in ./pki instead.
import { appendFileSync, existsSync, mkdirSync, unwatchFile, watchFile, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { pino } from "pino";
import { eventLine, isEvent, type EventLogger } from "../lib/events.ts";
import { CertificateAuthority, CaError, parseDuration } from "../ca/index.ts";
import { auditedRules, loadPolicy, unknownCallers, type Policy } from "../services/mesh/policy.ts";
import { checkPolicyTests } from "./policy/tests-file.ts";
import { isMeshError, messageOf } from "../services/mesh/errors.ts";
import { onParentExit } from "../services/mesh/parent.ts";
import { formatLine, servicePrefix, bold, dim, red, yellow, type MeshLine } from "./mesh-format.ts";
import { DEFAULT_DASHBOARD_PORT, DEFAULT_PORTS } from "./mesh-ports.ts";
import {
  folderState,
  identityFiles,
  moveAside,
  rateLimits,
  startEdgeIdentity,
  tokenFor,
  type EdgeIdentity,
} from "./online.ts";
import { DEFAULT_RESTART, Supervisor, describeExit, type SupervisorEvent } from "./supervisor.ts";
import { leftovers, readRecord, recordOf, removeRecord, stopOrphans, writeRecord } from "./supervisor-record.ts";
import {
  caProcess,
  dashboardProcess,
  serviceProcess,
  type CaProcess,
  type DashboardProcess,
  type Runner,
  type ServiceProcess,
} from "./mesh-components.ts";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";
import { loadWorkloads, type Workloads } from "../services/mesh/workloads.ts";
import { renewFraction } from "../services/mesh/identity-agent/timing.ts";
import { placeWorkloads, workloadApp, workloadsCwd, workloadSidecar, type PlacedWorkload } from "./mesh-workloads.ts";
import { spawnSync } from "node:child_process";
import { rotationFromEnv } from "../lib/rotating-file.ts";
import {
  caAddressList,
  furtherReplicas,
  replicaBannerLines,
  replicaCount,
  storeFlagsProblem,
  MAX_CA_REPLICAS,
} from "./mesh-ca-replicas.ts";

// A closed stdout (`mesh:up | head`) stops the mesh as SIGTERM does, quietly: nothing is left running.
// Until main has a mesh to stop, it simply ends.
let onClosedOutput: () => void = () => process.exit(0);
endQuietlyOnClosedOutput(() => onClosedOutput());
const CERT_NAMES = ["order", "payment", "inventory", "edge"];
const SERVICE_NAMES = ["payment", "inventory", "order"] as const;

const port = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("must be a port number 0-65535");
  return n;
};

const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 86_400)
    throw new InvalidArgumentError("must be a whole number of seconds from 1 to 86400");
  return n;
};

/** Further CA replicas (their own `ca serve --store postgres://…`): https origins, comma-separated. */
const caUrls = (v: string) => {
  const list = v
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
  for (const u of list) {
    let url: URL | undefined;
    try {
      url = new URL(u);
    } catch {
      /* refused below */
    }
    if (url?.protocol !== "https:" || url.pathname !== "/" || url.search || url.username)
      throw new InvalidArgumentError(
        `${JSON.stringify(u.slice(0, 80))} is not an https:// origin such as https://10.0.0.2:7400`,
      );
  }
  return list.join(",");
};

const renewAt = (v: string) => {
  const fraction = renewFraction(v);
  if (fraction === undefined) throw new InvalidArgumentError("It must be a fraction from 0.1 to 0.9, e.g. 0.5.");
  return fraction;
};

const lifetime = (v: string) => {
  try {
    parseDuration(v, { flag: "--lifetime", min: 10_000, max: 30 * 86_400_000 });
  } catch (e) {
    throw new InvalidArgumentError(messageOf(e).replace(/^--lifetime \S+ /, "It "));
  }
  return v;
};

const program = new Command("mesh:up")
  .description(
    "Create the CA if absent, start its EST server, and run the three services, which enrol with one-time tokens and renew themselves (--file-mode: CLI-issued certificates).",
  )
  .addOption(new Option("--pki <dir>", "the CA state folder").env("MESH_PKI_DIR").default("./pki"))
  .addOption(new Option("--policy <file>", "the authorization policy").env("MESH_POLICY").default("mesh-policy.toml"))
  .addOption(new Option("--logs <dir>", "where JSON logs are written").env("MESH_LOG_DIR").default("./logs"))
  .addOption(
    new Option("--order-port <n>", "order's port (0: any free one)")
      .env("MESH_ORDER_PORT")
      .default(DEFAULT_PORTS.order)
      .argParser(port),
  )
  .addOption(
    new Option("--payment-port <n>", "payment's port")
      .env("MESH_PAYMENT_PORT")
      .default(DEFAULT_PORTS.payment)
      .argParser(port),
  )
  .addOption(
    new Option("--inventory-port <n>", "inventory's port")
      .env("MESH_INVENTORY_PORT")
      .default(DEFAULT_PORTS.inventory)
      .argParser(port),
  )
  .addOption(
    new Option("--renew-within <days>", "file mode: re-issue certificates expiring within this many days")
      .default(30)
      .argParser(port),
  )
  .addOption(
    new Option(
      "--crl-check <seconds>",
      "file mode: while running, re-sign CRLs within 10 days of their nextUpdate; checked this often (online, the CA server does)",
    )
      .env("MESH_CRL_CHECK_SECONDS")
      .default(3600)
      .argParser(seconds),
  )
  .option(
    "--file-mode",
    "the tutorial's mode: issue 90-day certificates into <pki>/certs with the CA CLI and start the services on --pki; no CA server",
  )
  .addOption(
    new Option(
      "--state <dir>",
      "online: where each identity keeps its own folder, <dir>/<name>/ (key.pem, cert.pem, bundle.pem, crls.pem)",
    )
      .env("MESH_STATE_DIR")
      .default("./state"),
  )
  .addOption(
    new Option(
      "--lifetime <d>",
      "online: the lifetime of every certificate (10s to 30d, e.g. 90s, 10m, 1h); renewed at about 2/3 of it (--renew-at)",
    )
      .env("MESH_LIFETIME")
      .default("1h")
      .argParser(lifetime),
  )
  .addOption(
    new Option(
      "--renew-at <fraction>",
      "online: renew every certificate at this fraction of its life, ±10 %, from 0.1 to 0.9 (default 0.667)",
    )
      .env("MESH_RENEW_AT")
      .argParser(renewAt),
  )
  .addOption(
    new Option("--poll <seconds>", "online: how often services fetch the trust bundle and CRLs")
      .env("MESH_POLL_SECONDS")
      .default(30)
      .argParser(seconds),
  )
  .addOption(
    new Option("--ca-port <n>", "online: the CA's EST server (0: any free one)")
      .env("MESH_CA_PORT")
      .default(7400)
      .argParser(port),
  )
  .addOption(
    new Option(
      "--ca-urls <urls>",
      "online: other CA replicas on the same store (comma-separated https origins, docs/est.md): services fail over to them when mesh:up's CA server is down",
    )
      .env("MESH_CA_URLS")
      .argParser(caUrls),
  )
  .addOption(
    new Option(
      "--ca-replicas <n>",
      `online: run this many CA servers (1-${MAX_CA_REPLICAS}) on one --store postgres://…, replica k on --ca-port + 20 × (k - 1): 7420, 7440; the services get every address (docs/est.md)`,
    )
      .env("MESH_CA_REPLICAS")
      .default(1)
      .argParser(replicaCount),
  )
  .addOption(
    new Option(
      "--store <url>",
      "online: where the CA's ledger is: sqlite (ca.db in --pki) or postgres://user@host/db, shared by the replicas; the password only from PGPASSWORD or ~/.pgpass",
    ).env("MESH_CA_STORE"),
  )
  .addOption(
    new Option("--ca-admin-port <n>", "online: the CA's metrics and healthz (default: --ca-port + 10; 0: any free one)")
      .env("MESH_CA_ADMIN_PORT")
      .argParser(port),
  )
  .addOption(
    new Option(
      "--workloads <file>",
      "the apps behind sidecars to start (any language; docs/workloads.md) (default: mesh-workloads.toml beside the policy, if there)",
    ).env("MESH_WORKLOADS"),
  )
  .addOption(
    new Option(
      "--workload-ports <which>",
      "the workloads' ports: as the file says, or any free ones (sidecars, apps and outbound listeners)",
    )
      .env("MESH_WORKLOAD_PORTS")
      .choices(["file", "any"])
      .default("file"),
  )
  .addOption(
    new Option("--dashboard-port <n>", "the dashboard's port (0: any free one)")
      .env("MESH_DASHBOARD_PORT")
      .default(DEFAULT_DASHBOARD_PORT)
      .argParser(port),
  )
  .option("--quiet", "do not echo the services' logs (they still go to --logs)")
  .addHelpText(
    "after",
    `
Examples:
  npm run mesh:up
  npm run mesh:up -- --lifetime 2m          # watch identity.renewed every ~80 s
  npm run mesh:up -- --file-mode            # the tutorial's CLI-issued certificates
  npm run mesh:up -- --payment-port 9402
  npm run mesh:up -- --ca-replicas 2 --store postgres:///mesh_ca?host=/var/run/postgresql
  MESH_PKI_DIR=/tmp/pki npm run mesh:up -- --order-port 0 --payment-port 0 --inventory-port 0

Each part runs in its own process; one that dies is restarted (0.5 s, then doubling to 30 s;
given up after ${DEFAULT_RESTART.burst} restarts within ${DEFAULT_RESTART.intervalMs / 60_000} minutes), logged in <logs>/mesh-up.log.

Exit codes: 0 stopped by Ctrl-C/SIGTERM, 1 a service did not start, 2 bad flags or policy (or a failing policy test), 3 a port is taken,
4 CA problem, 5 another mesh:up runs on the same --logs.`,
  )
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

interface Opts {
  pki: string;
  policy: string;
  logs: string;
  orderPort: number;
  paymentPort: number;
  inventoryPort: number;
  renewWithin: number;
  crlCheck: number;
  fileMode?: boolean;
  state: string;
  lifetime: string;
  renewAt?: number;
  poll: number;
  caPort: number;
  caAdminPort?: number;
  caUrls?: string;
  caReplicas: number;
  store?: string;
  dashboardPort: number;
  quiet?: boolean;
  workloads?: string;
  workloadPorts: "file" | "any";
}

/** A path as the user would type it: relative below the working directory, absolute elsewhere. */
function shown(path: string): string {
  const rel = relative(".", path);
  return rel === "" ? "." : rel.startsWith("..") ? path : rel;
}

function fail(msg: string, code: number): never {
  process.stderr.write(`mesh:up: ${msg}\n`);
  process.exit(code);
}

/** The CA in `dir`, created (root + constrained issuing intermediate) when absent. */
async function openOrCreateCa(dir: string): Promise<CertificateAuthority> {
  let ca: CertificateAuthority;
  // As the CA's CLI: a CA whose keys are encrypted is opened with MESH_CA_PASSPHRASE (never an argument).
  const passphrase = process.env.MESH_CA_PASSPHRASE || undefined;
  if (CertificateAuthority.exists(dir)) {
    ca = await CertificateAuthority.open({ dir, passphrase });
  } else {
    ca = await CertificateAuthority.init({ dir, name: "Mesh Dev CA", passphrase });
    // Leaves come from an intermediate, as in production: the root then signs only CAs and CRLs,
    // and a service's chain file holds leaf + intermediate, which is what it sends. (With a leaf
    // signed by the root itself, Node adds the root from the trust store to what a server sends.)
    // Constrained to the mesh's domain: this CA cannot sign a name outside .internal.
    const int = await ca.createIntermediate({ name: "Mesh Dev Issuing CA", permitDns: ["internal"] });
    console.log(
      `created the CA "Mesh Dev CA" in ${dir} (its key stays in ${shown(ca.paths.root(1).key)}), issuing through "${int.name}" (.internal names only)`,
    );
  }
  return ca;
}

/** File mode: create the CA when absent; issue what is missing, renew what expires soon; keep the rest. */
async function preparePki(dir: string, renewWithinDays: number, names: readonly string[]): Promise<void> {
  const ca = await openOrCreateCa(dir);
  try {
    const soon = Date.now() + renewWithinDays * 86_400_000;
    const list = ca.list();
    for (const short of names) {
      const domain = `${short}.internal`;
      const current = list.find((c) => c.domain === domain && c.status === "VALID");
      const files = ca.paths.leaf(domain);
      const filesThere = existsSync(files.cert) && existsSync(files.key);
      if (current && filesThere && new Date(current.notAfter).getTime() > soon) {
        console.log(dim(`kept   ${domain.padEnd(20)} valid until ${current.notAfter.slice(0, 10)}`));
        continue;
      }
      const issued = current ? await ca.renew({ domain }) : await ca.issue({ domain });
      console.log(
        `${current ? "renewed" : "issued"} ${domain.padEnd(19)} valid until ${issued.notAfter.toISOString().slice(0, 10)}: ${shown(issued.certPath)}`,
      );
    }
    // Re-sign every CRL so a lapsed one cannot lock the mesh out at start.
    await ca.publishCrls();
    for (const w of ca.crlWarnings()) console.log(`warning: ${w}`);
  } finally {
    ca.close();
  }
}

/**
 * CRLs lapse 30 days after they are signed, and a lapsed CRL makes every service refuse every
 * peer. mesh:up holds the CA, so while it runs it re-signs those near their nextUpdate. The CA
 * is opened for each check only: a person may run CA commands on the same folder meanwhile.
 */
function keepCrlsFresh(dir: string, everyMs: number, events: EventLogger): () => void {
  let busy = false;
  const check = async () => {
    if (busy) return;
    busy = true;
    try {
      const ca = await CertificateAuthority.open({ dir, passphrase: process.env.MESH_CA_PASSPHRASE || undefined });
      try {
        const resigned = await ca.refreshCrls();
        for (const r of resigned) {
          console.log(
            `mesh:up: re-signed the CRL of ${r.name} before it lapsed (next update ${r.crlNextUpdate?.slice(0, 16).replace("T", " ")} UTC); the services reload crls.pem`,
          );
        }
        // Every check, also one that found nothing due: a check that did nothing is otherwise
        // invisible (hourly by default, so one line an hour).
        events.info(
          { event: "crl.checked", resigned: resigned.map((r) => r.name) },
          resigned.length > 0
            ? `checked the CRLs: re-signed ${resigned.map((r) => r.name).join(", ")}`
            : "checked the CRLs: none near its nextUpdate",
        );
      } finally {
        ca.close();
      }
    } catch (e) {
      console.error(
        red(
          `mesh:up: could not re-sign the CRLs in ${dir} (will try again in ${everyMs / 1000} s): ${(e as Error).message}`,
        ),
      );
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void check(), everyMs);
  return () => clearInterval(timer);
}

/** Exit code of mesh:up when another mesh:up already runs on the same log folder. */
const EXIT_RUNNING = 5;

/** How a component that failed its first start ends mesh:up: 3 when its port is taken. */
function startFailure(name: string, e: unknown): { msg: string; code: number } {
  // `ca serve`'s own advice names its flags, not mesh:up's.
  const msg = messageOf(e).replace(/: pick another --port or --listen$/, "");
  const taken = /EADDRINUSE|port \d+ is taken|cannot listen on/.test(msg);
  const isCa = /^ca\d*$/.test(name); // a replica (ca2, ca3) is on ports counted from the first's
  const builtIn = (SERVICE_NAMES as readonly string[]).includes(name);
  // A workload's ports (its sidecar `<name>`, its app `<name>-app`) are in the workloads file.
  const flag = isCa
    ? "--ca-port or --ca-admin-port"
    : name === "dashboard"
      ? "--dashboard-port"
      : builtIn
        ? `--${name}-port`
        : "its ports in the workloads file, or --workload-ports any";
  const what = isCa
    ? name === "ca"
      ? "the CA server"
      : `the CA replica ${name}`
    : name === "dashboard"
      ? "the dashboard"
      : name;
  if (taken) return { msg: `cannot start ${what}: ${msg} (pick another port with ${flag}, or 0 for any)`, code: 3 };
  return { msg: `cannot start ${what}: ${msg}`, code: isCa ? 4 : 1 };
}

/**
 * What an earlier mesh:up on the same log folder left: refused while it still runs, and its
 * components stopped when it was killed outright (they outlive it on purpose, docs/mesh.md).
 */
async function clearLeftovers(recordFile: string, events: EventLogger): Promise<void> {
  const record = readRecord(recordFile);
  const left = leftovers(record);
  if (left.supervisor) {
    fail(
      `another mesh:up (pid ${left.supervisor.pid}) is running on ${shown(dirname(recordFile))}: stop it first (Ctrl-C in its terminal, or kill ${left.supervisor.pid}), or give this one other --logs`,
      EXIT_RUNNING,
    );
  }
  if (record && left.orphans.length > 0) {
    const list = left.orphans.map((p) => `${p.name} (pid ${p.pid})`).join(", ");
    console.log(
      yellow(
        `mesh:up: ${list} still running from an earlier mesh:up (pid ${record.supervisor.pid}) that was killed outright; stopping them first`,
      ),
    );
    await stopOrphans(left.orphans, record);
    events.warn(
      {
        event: "supervisor.orphans_stopped",
        supervisor: record.supervisor.pid,
        components: Object.fromEntries(left.orphans.map((p) => [p.name, p.pid])),
      },
      `stopped ${list}, left running by mesh:up pid ${record.supervisor.pid}`,
    );
  }
  removeRecord(recordFile);
}

/** mesh-up.log: pino JSON lines like the services' own, written synchronously (they must survive an exit right after). */
function eventLog(logs: string): EventLogger {
  return pino(
    { base: { service: "mesh-up" }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: join(logs, "mesh-up.log"), append: true, sync: true, mkdir: true }),
  );
}

/**
 * Each supervisor event: a line in mesh-up.log and, unless it is a first start, one on the console
 * (`quiet`: the death of a part that never got ready, which mesh:up reports as a failed start).
 */
function reportEvent(e: SupervisorEvent, events: EventLogger, stopping: boolean): void {
  switch (e.event) {
    case "supervisor.started":
      events.info(e, `${e.component} started (pid ${e.pid}${e.restarts > 0 ? `, restart ${e.restarts}` : ""})`);
      if (e.restarts > 0)
        console.log(yellow(`mesh:up: started ${e.component} again (pid ${e.pid}, restart ${e.restarts})`));
      return;
    case "supervisor.exited": {
      const how = describeExit(e.component, e.code, e.signal);
      events[stopping ? "info" : "warn"](e, `${how} (pid ${e.pid})`);
      if (!stopping) console.error(red(`mesh:up: ${how} (pid ${e.pid}); the rest of the mesh keeps running`));
      return;
    }
    case "supervisor.restarting":
      events.warn(
        e,
        `restarting ${e.component} in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt} of ${DEFAULT_RESTART.burst} within ${DEFAULT_RESTART.intervalMs / 60_000} minutes)`,
      );
      console.error(
        yellow(
          `mesh:up: restarting ${e.component} in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt} of ${DEFAULT_RESTART.burst} within ${DEFAULT_RESTART.intervalMs / 60_000} minutes)`,
        ),
      );
      return;
    case "supervisor.gave_up":
      events.error(
        e,
        `gave up on ${e.component} after ${e.restarts} restarts in a row; the rest of the mesh keeps running`,
      );
      console.error(
        red(
          `mesh:up: gave up on ${e.component}: it died ${DEFAULT_RESTART.burst + 1} times within ${DEFAULT_RESTART.intervalMs / 60_000} minutes (see logs/${e.component}.stderr and logs/${e.component}.log); the rest keeps running; stop mesh:up and start it again once fixed`,
        ),
      );
      return;
  }
}

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<Opts>();
  const mode: "online" | "file" = o.fileMode ? "file" : "online";
  useStore(o);
  // The services and sidecars read it from their environment (their --renew-at's default).
  if (o.renewAt !== undefined) process.env.MESH_RENEW_AT = String(o.renewAt);
  checkLogRotation();
  let policy: Policy;
  try {
    policy = loadPolicy(o.policy); // refuse early, with the file:line, rather than three times in the children
    // The expected decisions beside the policy (scripts/policy/tests-file.ts), before anything starts.
    checkPolicyTests(policy, o.policy);
    const audited = auditedRules(policy);
    if (audited.length > 0)
      console.log(
        yellow(
          `warning: ${o.policy} has rules in audit mode (${audited.join(", ")}): they let through the calls they would deny, logged as authz.would_deny (docs/policy.md)`,
        ),
      );
  } catch (e) {
    fail(isMeshError(e) ? e.message : String(e), 2);
  }
  const declared = readWorkloads(o);
  const workloadNames = declared?.workloads.map((w) => w.name) ?? [];
  const certNames = [...CERT_NAMES, ...workloadNames];
  mkdirSync(o.logs, { recursive: true });
  // Its stdout may go with npm or a closed terminal: a failed write must not end the supervisor.
  process.stdout.on("error", () => {});
  process.stderr.on("error", () => {});
  const logs = resolve(o.logs);
  const startedAt = new Date().toISOString();
  const events = eventLog(logs);
  const recordFile = join(logs, "mesh-up.pids");
  await clearLeftovers(recordFile, events);
  // Before any part starts (after an earlier run's leftovers are stopped): the dashboard shows
  // this run from here on, not what earlier runs logged.
  events.info({ event: "mesh.started", pid: process.pid, mode }, `mesh:up started (pid ${process.pid}, ${mode} mode)`);

  const runners: Runner[] = [];
  let stopping = false;
  let stopCrls = () => {};
  let stopPolicyWatch = () => {};
  let edge: EdgeIdentity | undefined;
  let ca: CertificateAuthority | undefined;
  let caProc: CaProcess | undefined;
  let replicas: CaProcess[] = [];
  let dashboard: DashboardProcess | undefined;
  const services: ServiceProcess[] = [];
  let writeState = () => {};
  const supervisor = new Supervisor({
    onEvent: (e) => {
      const firstStartFailed =
        e.event === "supervisor.exited" && runners.find((r) => r.name === e.component)?.everReady === false;
      reportEvent(e, events, stopping || firstStartFailed);
      if (e.event === "supervisor.started") writeState();
    },
  });
  const record = () =>
    writeRecord(recordFile, {
      supervisor: recordOf(process.pid),
      components: Object.fromEntries(runners.flatMap((r) => (r.proc?.pid ? [[r.name, recordOf(r.proc.pid)]] : []))),
    });
  writeState = record;
  const stopAll = async (code: number, quiet = false) => {
    if (stopping) return;
    stopping = true;
    stopCrls();
    stopPolicyWatch();
    edge?.stop();
    await supervisor.stop();
    for (const r of runners) r.stop();
    ca?.close();
    removeRecord(recordFile);
    const started = [
      services.length > 0 && "all services",
      caProc && "the CA server",
      dashboard && "the dashboard",
    ].filter(Boolean);
    if (!quiet && started.length > 0)
      console.log(dim(`mesh:up: ${started.join(", ").replace(/, ([^,]*)$/, " and $1")} stopped`));
    events.info({ event: "supervisor.stopped", code }, "mesh:up stopped everything");
    process.exit(code);
  };
  process.on("SIGINT", () => void stopAll(0));
  process.on("SIGTERM", () => void stopAll(0));
  process.on("SIGHUP", () => void stopAll(0, true));
  onClosedOutput = () => void stopAll(0, true);
  // npm does not pass SIGTERM on to the script it runs: notice npm going away instead.
  // Quietly: our stdout went with it.
  onParentExit(() => void stopAll(0, true));
  const abort = async (msg: string, code: number) => {
    console.error(red(`mesh:up: ${msg}`));
    await stopAll(code);
  };
  /** Starts a component under supervision and waits until it is ready; a failed first start ends mesh:up. */
  const start = async (r: Runner): Promise<boolean> => {
    runners.push(r);
    supervisor.add(r);
    try {
      await r.ready();
      return true;
    } catch (e) {
      const f = startFailure(r.name, e);
      await abort(f.msg, f.code);
      return false;
    }
  };
  const echo = (l: MeshLine) => {
    // The services say when they enrol; the CA's own line is worth showing for anyone else (a fourth identity).
    if (
      /^ca\d*$/.test(String(l.service)) &&
      isEvent(l, "est.enrolled") &&
      certNames.includes(l.name.replace(/\.internal$/, ""))
    )
      return;
    if (!o.quiet) console.log(formatLine(l));
  };
  const stderrOf = (name: string) => (text: string) => console.error(`${servicePrefix(name)} ${red(text)}`);

  let online: { caUrl: string; token(name: string, restarts: number): string | undefined } | null = null;
  if (mode === "file") {
    try {
      await preparePki(o.pki, o.renewWithin, certNames);
    } catch (e) {
      fail(e instanceof CaError ? e.message : `cannot prepare the CA in ${o.pki}: ${(e as Error).message}`, 4);
    }
  } else {
    try {
      ca = await openOrCreateCa(o.pki);
      await ca.publishCrls(); // a lapsed CRL would lock every service out at its first poll
      for (const w of ca.crlWarnings()) console.log(`warning: ${w}`);
    } catch (e) {
      return abort(e instanceof CaError ? e.message : `cannot prepare the CA in ${o.pki}: ${(e as Error).message}`, 4);
    }
    const lifetimeMs = parseDuration(o.lifetime, { flag: "--lifetime" });
    const limits = rateLimits(lifetimeMs);
    // The services ask for --lifetime; the server's own certificate lives its max (at least a day).
    caProc = caProcess({
      logs,
      pki: resolve(o.pki),
      port: o.caPort,
      adminPort: o.caAdminPort ?? (o.caPort === 0 ? 0 : o.caPort + 10),
      lifetime: o.lifetime,
      maxLifetime: lifetimeMs > 86_400_000 ? o.lifetime : "24h",
      ratePerName: limits.perName.perMinute,
      ratePerAddress: limits.perAddress.perMinute,
      echo,
      onStderr: stderrOf("ca"),
      store: o.store,
    });
    if (!(await start(caProc.runner))) return;
    replicas = caReplicas(o, caProc, {
      logs,
      lifetime: o.lifetime,
      maxLifetime: lifetimeMs > 86_400_000 ? o.lifetime : "24h",
      ratePerName: limits.perName.perMinute,
      ratePerAddress: limits.perAddress.perMinute,
      echo,
      stderrOf,
    });
    if (!(await Promise.all(replicas.map((r) => start(r.runner)))).every(Boolean)) return;
    // Each identity keeps its own folder; one the CA no longer vouches for is moved aside and enrolled again.
    const tokens = new Map<string, string>();
    mkdirSync(o.state, { recursive: true, mode: 0o700 });
    for (const name of [...SERVICE_NAMES, ...workloadNames]) {
      const dir = join(o.state, name);
      const st = folderState(ca, dir);
      if (st.kind === "valid") {
        console.log(
          dim(
            `kept   ${`${name}.internal`.padEnd(20)} valid until ${st.notAfter.slice(0, 19).replace("T", " ")} UTC: ${shown(dir)}/ (renews itself)`,
          ),
        );
        continue;
      }
      if (st.kind === "stale")
        console.log(yellow(`${shown(dir)}: ${st.why}; moved it to ${shown(moveAside(dir))} and ${name} enrols again`));
      tokens.set(name, tokenFor(ca, name));
      console.log(
        `token  ${`${name}.internal`.padEnd(20)} one-time, for ${name}'s first start (in its environment, never its arguments)`,
      );
    }
    const edgeState = folderState(ca, join(o.state, "edge"));
    if (edgeState.kind === "valid")
      console.log(
        dim(
          `kept   ${"edge.internal".padEnd(20)} valid until ${edgeState.notAfter.slice(0, 19).replace("T", " ")} UTC: ${shown(join(o.state, "edge"))}/ (renewed by mesh:up)`,
        ),
      );
    try {
      edge = await startEdgeIdentity({
        ca,
        caUrl: caAddressList([caProc, ...replicas], o.caUrls),
        dir: join(o.state, "edge"),
        lifetime: o.lifetime,
        pollMs: o.poll * 1000,
        renewAt: o.renewAt,
        echo,
      });
    } catch (e) {
      return abort(
        `cannot enrol edge.internal (the operator's client identity) into ${join(o.state, "edge")}: ${messageOf(e)}`,
        4,
      );
    }
    const heldCa = ca;
    online = {
      // The services' address list: this CA server first, then any other replicas (they fail over in turn).
      caUrl: caAddressList([caProc, ...replicas], o.caUrls),
      // A restart enrols afresh when the folder holds no identity the CA vouches for (it died before
      // enrolling, or its identity expired while it was down), as a start of mesh:up would.
      token: (name, restarts) => {
        if (restarts === 0) return tokens.get(name);
        const dir = join(o.state, name);
        const st = folderState(heldCa, dir);
        if (st.kind === "valid") return undefined;
        if (st.kind === "stale")
          events.warn(
            { event: "identity.replaced", component: name, stateDir: dir, movedTo: moveAside(dir), why: st.why },
            `${dir}: ${st.why}; moved aside, ${name} enrols again`,
          );
        return tokenFor(heldCa, name);
      },
    };
  }

  const service = (name: (typeof SERVICE_NAMES)[number], port: number, upstreams: string[]) => {
    const s = serviceProcess({
      name,
      logs,
      pki: resolve(o.pki),
      policy: resolve(o.policy),
      port,
      upstreams,
      identity: online
        ? {
            ca: online.caUrl,
            state: resolve(o.state, name),
            lifetime: o.lifetime,
            poll: o.poll,
            token: (n) => online!.token(name, n),
          }
        : undefined,
      onLine: (l, text) => {
        if (!o.quiet) console.log(l ? formatLine(l) : `${servicePrefix(name)} ${text}`);
      },
      onStderr: stderrOf(name),
    });
    services.push(s);
    return start(s.runner);
  };
  const pay = service("payment", o.paymentPort, []);
  const inv = service("inventory", o.inventoryPort, []);
  if (!(await pay) || !(await inv)) return;
  const [payment, inventory] = services as [ServiceProcess, ServiceProcess];
  if (
    !(await service("order", o.orderPort, [
      `payment=127.0.0.1:${payment.port}`,
      `inventory=127.0.0.1:${inventory.port}`,
    ]))
  )
    return;
  const workloads = declared
    ? await startWorkloads(declared, o, { logs, online, start, services, events, stderrOf })
    : [];
  if (workloads === null) return;
  dashboard = dashboardProcess({
    logs,
    pki: resolve(o.pki),
    policy: resolve(o.policy),
    port: o.dashboardPort,
    onStderr: stderrOf("dashboard"),
  });
  if (!(await start(dashboard.runner))) return;

  // The workloads beside the services: the tools (mesh:probe, mesh:check, the dashboard) read this list.
  const ports = {
    ...Object.fromEntries(services.map((s) => [s.runner.name, s.port])),
    ...Object.fromEntries(workloads.map((w) => [w.name, w.port])),
  } as Record<"order" | "payment" | "inventory", number> & Record<string, number>;
  const adminPorts = {
    ...Object.fromEntries(services.map((s) => [s.runner.name, s.adminPort])),
    ...Object.fromEntries(workloads.map((w) => [w.name, w.adminPort])),
  };
  const identities = Object.fromEntries(
    certNames.map((n) => [n, identityFiles(mode, n, { state: resolve(o.state), pki: resolve(o.pki) })]),
  );
  const dashboardUrl = dashboard.url;
  const caInfo = caProc;
  writeState = () => {
    record();
    // pids follow restarts: what mesh:check and the tests read.
    const comps = supervisor.list();
    const pidOf = (name: string) => comps.find((c) => c.name === name)?.proc?.pid ?? null;
    writeFileSync(
      join(logs, "mesh.json"),
      `${JSON.stringify(
        {
          pid: process.pid,
          startedAt,
          mode,
          pids: Object.fromEntries([...services.map((s) => s.runner.name), ...workloadNames].map((n) => [n, pidOf(n)])),
          pki: resolve(o.pki),
          policy: resolve(o.policy),
          ports,
          adminPorts,
          state: mode === "online" ? resolve(o.state) : null,
          identities,
          ca: caInfo
            ? {
                url: caInfo.url,
                adminUrl: caInfo.adminUrl,
                lifetime: o.lifetime,
                poll: o.poll,
                pid: pidOf("ca"),
                ...replicaState(o, [caInfo, ...replicas], pidOf),
              }
            : null,
          dashboard: dashboardUrl,
          workloads: workloadsState(declared, workloads, pidOf),
          supervisor: {
            log: join(logs, "mesh-up.log"),
            record: recordFile,
            components: Object.fromEntries(
              comps.map((c) => [c.name, { pid: c.proc?.pid ?? null, state: c.state, restarts: c.restarts }]),
            ),
          },
        },
        null,
        2,
      )}\n`,
    );
  };
  writeState();
  const warned = new Set<string>();
  await warnPolicy(policy, o.pki, o.logs, warned);
  stopPolicyWatch = watchPolicy(o, warned);
  banner(o, mode, ports, caProc, dashboardUrl, workloads, replicas);
  if (mode === "file") stopCrls = keepCrlsFresh(o.pki, o.crlCheck * 1000, events);
}

// --- workloads: apps in any language behind their sidecars (mesh-workloads.toml) -------------

/**
 * The workloads file, refused early with its file:line (exit 2), as the policy is. The default,
 * mesh-workloads.toml beside the policy, may be absent (no workloads); one named by --workloads
 * or MESH_WORKLOADS must be there.
 */
function readWorkloads(o: Opts): Workloads | null {
  const file = o.workloads ?? join(dirname(o.policy), "mesh-workloads.toml");
  if (o.workloads === undefined && !existsSync(file)) return null;
  let w: Workloads;
  try {
    w = loadWorkloads(file, SERVICE_NAMES);
  } catch (e) {
    fail(isMeshError(e) ? e.message : String(e), 2);
  }
  // A program that is not there would fail each restart in the same way: say it once, now.
  for (const x of w.workloads) {
    const program = x.command?.[0];
    if (!program || program === "node") continue;
    const found = program.includes("/")
      ? existsSync(resolve(workloadsCwd(file), program))
      : spawnSync("sh", ["-c", 'command -v "$1"', "sh", program], { stdio: "ignore" }).status === 0;
    if (!found)
      fail(
        `${file}:${x.line}: [${x.name}] command: ${program} is not ${program.includes("/") ? "there" : "on the PATH"}; install it or fix the command`,
        2,
      );
  }
  return w;
}

interface WorkloadContext {
  logs: string;
  online: { caUrl: string; token(name: string, restarts: number): string | undefined } | null;
  start(r: Runner): Promise<boolean>;
  services: readonly ServiceProcess[];
  events: EventLogger;
  stderrOf(name: string): (text: string) => void;
}

/**
 * Starts each workload's sidecar (enrolled with its one-time token, online) and then its app,
 * both supervised, all workloads at once. Every port is decided first, so workloads may call
 * each other in any order.
 * Null when one failed to start (mesh:up is then stopping).
 */
async function startWorkloads(declared: Workloads, o: Opts, c: WorkloadContext): Promise<PlacedWorkload[] | null> {
  const placed = await placeWorkloads(declared.workloads, o.workloadPorts === "any");
  const mtls = new Map<string, number>([
    ...c.services.map((s) => [s.runner.name, s.port] as const),
    ...placed.map((p) => [p.name, p.port] as const),
  ]);
  const cwd = workloadsCwd(declared.file);
  // All at once: every port is known, so no workload waits for another (each sidecar, then its app).
  const one = async (p: PlacedWorkload): Promise<boolean> => {
    const sidecar = workloadSidecar({
      placed: p,
      logs: c.logs,
      pki: resolve(o.pki),
      policy: resolve(o.policy),
      addressOf: (name) => `127.0.0.1:${mtls.get(name)}`,
      identity: c.online
        ? {
            ca: c.online.caUrl,
            state: resolve(o.state, p.name),
            lifetime: o.lifetime,
            poll: o.poll,
            token: (n) => c.online!.token(p.name, n),
          }
        : undefined,
      onLine: (l, text) => {
        if (!o.quiet) console.log(l ? formatLine(l) : `${servicePrefix(p.name)} ${text}`);
      },
      onStderr: c.stderrOf(p.name),
    });
    if (!(await c.start(sidecar))) return false;
    if (!p.workload.command) return true;
    const app = workloadApp({
      placed: p,
      logs: c.logs,
      cwd,
      onLine: (text) => {
        if (!o.quiet) console.log(`${servicePrefix(`${p.name}-app`)} ${dim(text)}`);
      },
      onStderr: c.stderrOf(`${p.name}-app`),
    });
    if (!(await c.start(app))) return false;
    c.events.info(
      {
        event: "workload.started",
        workload: p.name,
        port: p.port,
        app: p.app,
        upstreams: Object.fromEntries(p.outbound),
      },
      `${p.name}: sidecar on ${p.port}, app at ${p.app}`,
    );
    return true;
  };
  const started = await Promise.all(placed.map(one));
  return started.every(Boolean) ? placed : null;
}

/** mesh.json's `workloads`: what the tools need to reach and show each one. */
function workloadsState(
  declared: Workloads | null,
  placed: readonly PlacedWorkload[],
  pidOf: (name: string) => number | null,
) {
  if (!declared) return null;
  return {
    file: resolve(declared.file),
    list: Object.fromEntries(
      placed.map((p) => [
        p.name,
        {
          port: p.port,
          adminPort: p.adminPort,
          app: p.app,
          protocol: p.workload.protocol,
          command: p.workload.command,
          upstreams: Object.fromEntries(p.outbound),
          pid: pidOf(p.name),
          appPid: p.workload.command ? pidOf(`${p.name}-app`) : null,
        },
      ]),
    ),
  };
}

/** The banner's lines for the workloads: each one's port, language and app, and a call to try. */
function workloadBanner(placed: readonly PlacedWorkload[]): { lines: string; tries: string[] } {
  const kind = (p: PlacedWorkload) => {
    const prog = p.workload.command?.[0] ?? "";
    if (p.workload.protocol === "h2c") return "gRPC";
    return /python/.test(prog) ? "Python" : prog === "node" ? "Node" : prog ? prog.split("/").pop()! : "external app";
  };
  const lines = placed
    .map(
      (p) =>
        `  ${p.name.padEnd(10)} https://127.0.0.1:${p.port}      (${p.name}.internal, ${kind(p)} app at ${p.app} behind its sidecar)\n`,
    )
    .join("");
  return { lines, tries: [] };
}

/** What to try on the demo's workloads, when they are there: the polyglot mesh at work. */
function workloadTries(placed: readonly PlacedWorkload[], curlAs: (name: string, port: number) => string): string {
  const at = new Map(placed.map((p) => [p.name, p.port]));
  const out: string[] = [];
  const delivery = at.get("delivery");
  if (delivery) {
    out.push(
      `  ${dim("# a Python app (standard library) behind its sidecar: it names its caller (from XFCC) and asks inventory through its sidecar")}`,
    );
    out.push(
      `  ${curlAs("delivery", delivery)} -H 'content-type: application/json' -d '{"orderId":"demo-1","sku":"widget"}' https://delivery.internal:${delivery}/ship`,
    );
  }
  const cashier = at.get("cashier");
  if (cashier && at.has("ledger")) {
    out.push(
      `  ${dim("# cashier records the payment in ledger over gRPC, through two sidecars; ledger names cashier as the caller")}`,
    );
    out.push(
      `  ${curlAs("cashier", cashier)} -H 'content-type: application/json' -d '{"orderId":"demo-1","amount":1250}' https://cashier.internal:${cashier}/pay`,
    );
  }
  return out.map((l) => `${l}\n`).join("");
}

/** Every part rotates its own log by MESH_LOG_MAX_SIZE/MESH_LOG_KEEP: a bad value stops mesh:up here (exit 2), not each part's start. */
function checkLogRotation(): void {
  try {
    rotationFromEnv();
  } catch (e) {
    fail(messageOf(e), 2);
  }
}

// --- several CA replicas (--ca-replicas, --store; scripts/mesh-ca-replicas.ts) ----------------

/** Refuses a bad --store/--ca-replicas pair (exit 2); a store given is every CA open's and child's (MESH_CA_STORE). */
function useStore(o: Opts): void {
  const problem = storeFlagsProblem(o);
  if (problem) fail(problem, 2);
  if (o.store) process.env.MESH_CA_STORE = o.store;
}

/** Replicas 2…--ca-replicas, on the ports after the first's (0: any free one). */
function caReplicas(
  o: Opts,
  first: CaProcess,
  c: {
    logs: string;
    lifetime: string;
    maxLifetime: string;
    ratePerName: number;
    ratePerAddress: number;
    echo(l: MeshLine): void;
    stderrOf(name: string): (text: string) => void;
  },
): CaProcess[] {
  const caPort = Number(new URL(first.url).port);
  const adminPort = Number(new URL(first.adminUrl).port);
  // Asked for 0 (any free one): each replica gets any free one too, not the first's port + 1.
  const base = o.caPort === 0 ? 0 : caPort;
  const adminBase = (o.caAdminPort ?? (o.caPort === 0 ? 0 : o.caPort + 10)) === 0 ? 0 : adminPort;
  return furtherReplicas(
    o.caReplicas,
    {
      logs: c.logs,
      pki: resolve(o.pki),
      lifetime: c.lifetime,
      maxLifetime: c.maxLifetime,
      ratePerName: c.ratePerName,
      ratePerAddress: c.ratePerAddress,
      store: o.store,
      echo: c.echo,
    },
    c.stderrOf,
    base,
    adminBase,
  );
}

/** mesh.json's record of the replicas: what mesh:check and the dashboard read. */
function replicaState(o: Opts, all: CaProcess[], pidOf: (name: string) => number | null) {
  return {
    store: o.store ? o.store : "sqlite",
    replicas: all.map((r) => ({ name: r.runner.name, url: r.url, adminUrl: r.adminUrl, pid: pidOf(r.runner.name) })),
  };
}

/**
 * A policy may name a caller before it is deployed: not a reason to refuse, but worth a line
 * (a typo looks the same). Known: the names holding a valid certificate in the CA's ledger.
 */
async function warnPolicy(policy: Policy, pki: string, logs: string, warned: Set<string>): Promise<void> {
  let known: string[];
  try {
    const ca = await CertificateAuthority.open({ dir: pki });
    try {
      known = ca
        .list()
        .filter((c) => c.status === "VALID")
        .map((c) => c.domain);
    } finally {
      ca.close();
    }
  } catch {
    return;
  }
  for (const w of unknownCallers(policy, known)) {
    if (warned.has(w.caller)) continue;
    warned.add(w.caller);
    console.log(yellow(`warning: policy.unknown_caller ${w.caller}: ${w.message}`));
    // Logged too, where mesh:logs and the dashboard's feed read.
    const line = eventLine(
      { level: "warn", service: "mesh-up" },
      { event: "policy.unknown_caller", caller: w.caller, rules: w.rules, policy: policy.file },
      w.message,
    );
    appendFileSync(join(logs, "mesh-up.log"), line);
  }
}

/**
 * A new version of the policy is in force in the services already (they reload it on their
 * own): a failing expectation in its tests file can only be a warning now, in one line on the
 * console and in mesh-up.log (mesh:logs and the dashboard read it there).
 */
function warnPolicyTests(policy: Policy, file: string, logs: string): void {
  try {
    checkPolicyTests(policy, file);
  } catch (e) {
    const msg = `${isMeshError(e) ? e.message : String(e)} (the services run this policy already: fix it or its tests)`;
    console.log(yellow(`warning: ${msg}`));
    appendFileSync(
      join(logs, "mesh-up.log"),
      eventLine({ level: "warn", service: "mesh-up" }, { event: "policy.test_failed", policy: policy.file }, msg),
    );
  }
}

/**
 * The services reload the policy on their own; mesh:up reads each new version only to warn
 * about callers it names that hold no certificate yet (each once), as it did at start.
 */
function watchPolicy(o: Opts, warned: Set<string>): () => void {
  const file = resolve(o.policy);
  const onChange = () => {
    let policy: Policy;
    try {
      policy = loadPolicy(file);
    } catch {
      return; // the services log policy.reload_failed, with file:line
    }
    void warnPolicy(policy, o.pki, o.logs, warned);
    warnPolicyTests(policy, file, o.logs);
  };
  watchFile(file, { interval: 1_000 }, onChange);
  return () => unwatchFile(file, onChange);
}

function banner(
  o: Opts,
  mode: "online" | "file",
  ports: Record<"order" | "payment" | "inventory", number>,
  ca: CaProcess | undefined,
  dashboardUrl: string,
  workloads: readonly PlacedWorkload[],
  replicas: CaProcess[] = [],
): void {
  const files = (n: string) => identityFiles(mode, n, { state: o.state, pki: o.pki });
  const p = (path: string) => shown(resolve(path));
  const base = (n: string) =>
    `curl --cacert ${p(files(n).bundle)} --resolve payment.internal:${ports.payment}:127.0.0.1`;
  const cert = (n: string) => `--cert ${p(files(n).cert)} --key ${p(files(n).key)}`;
  const url = `https://payment.internal:${ports.payment}/charge`;
  const body = `-H 'content-type: application/json' -d '{"orderId":"demo-1","amount":1250}'`;
  const caLine = ca
    ? `  CA         ${ca.url}      (EST: enrolment and renewal; certificates live ${o.lifetime}, renewed at about ${o.renewAt ?? "2/3"} of that; metrics ${ca.adminUrl}/metrics)\n${replicaBannerLines(replicas, o.store)}`
    : "";
  const where =
    mode === "online"
      ? `identities: ${shown(resolve(o.state))}/<name>/`
      : `certificates: ${shown(resolve(o.pki))}/certs/`;
  console.log(`
${bold("mesh is up")} (logs: ${o.logs}/<service>.log, follow them with: npm run mesh:logs -- -f; ${where})
${caLine}  order      https://127.0.0.1:${ports.order}      (order.internal)
  payment    https://127.0.0.1:${ports.payment}      (payment.internal)
  inventory  https://127.0.0.1:${ports.inventory}      (inventory.internal)
${workloadBanner(workloads).lines}  dashboard  ${dashboardUrl}

Try:
  ${dim("# order may charge: 201")}
  ${base("order")} ${cert("order")} ${body} ${url}
  ${dim("# inventory may not: 403, and payment logs authz.denied with the rule")}
  ${base("inventory")} ${cert("inventory")} ${body} ${url}
  ${dim("# no client certificate: refused in the TLS handshake (no_client_cert)")}
  ${base("edge")} ${url}
${workloadTries(workloads, (n, port) => `curl --cacert ${p(files("edge").bundle)} --resolve ${n}.internal:${port}:127.0.0.1 ${cert("edge")}`)}
  npm run mesh:probe          ${dim("# every caller -> callee pair against the policy")}
  npm run mesh:check          ${dim("# health: certificates, trust bundle, CRLs, policy, clocks, restarts")}
Each part is its own process: one that dies is restarted, the others keep serving (${o.logs}/mesh-up.log).
Ctrl-C stops everything.
`);
}

await main();
