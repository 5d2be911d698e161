// npm run mesh:up: make sure the CA and the services' certificates exist, start order,
// payment and inventory, show their logs, and stop them all on Ctrl-C or SIGTERM.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { CertificateAuthority, CaError } from "../ca/index.ts";
import { loadPolicy } from "../services/mesh/policy.ts";
import { isMeshError } from "../services/mesh/errors.ts";
import { onParentExit } from "../services/mesh/parent.ts";
import { describeExit, launchService, type Launched } from "./launch.ts";
import { formatLine, servicePrefix, bold, dim, red } from "./mesh-format.ts";
import { DEFAULT_PORTS } from "./mesh-ports.ts";
const CERT_NAMES = ["order", "payment", "inventory", "edge"];

const port = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("must be a port number 0-65535");
  return n;
};

const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 86_400) throw new InvalidArgumentError("must be a whole number of seconds from 1 to 86400");
  return n;
};

const program = new Command("mesh:up")
  .description("Create the CA if absent, issue missing certificates, and run the three services.")
  .addOption(new Option("--pki <dir>", "the CA state folder").env("MESH_PKI_DIR").default("./pki"))
  .addOption(new Option("--policy <file>", "the authorization policy").env("MESH_POLICY").default("mesh-policy.toml"))
  .addOption(new Option("--logs <dir>", "where JSON logs are written").env("MESH_LOG_DIR").default("./logs"))
  .addOption(new Option("--order-port <n>", "order's port (0: any free one)").env("MESH_ORDER_PORT").default(DEFAULT_PORTS.order).argParser(port))
  .addOption(new Option("--payment-port <n>", "payment's port").env("MESH_PAYMENT_PORT").default(DEFAULT_PORTS.payment).argParser(port))
  .addOption(new Option("--inventory-port <n>", "inventory's port").env("MESH_INVENTORY_PORT").default(DEFAULT_PORTS.inventory).argParser(port))
  .addOption(new Option("--renew-within <days>", "re-issue certificates expiring within this many days").default(30).argParser(port))
  .addOption(new Option("--crl-check <seconds>", "while running, re-sign CRLs within 10 days of their nextUpdate; checked this often").env("MESH_CRL_CHECK_SECONDS").default(3600).argParser(seconds))
  .option("--quiet", "do not echo the services' logs (they still go to --logs)")
  .addHelpText(
    "after",
    `
Examples:
  npm run mesh:up
  npm run mesh:up -- --payment-port 9402
  MESH_PKI_DIR=/tmp/pki npm run mesh:up -- --order-port 0 --payment-port 0 --inventory-port 0

Exit codes: 0 stopped by Ctrl-C/SIGTERM, 1 a service died, 2 bad flags or policy, 4 CA problem.`,
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
  quiet?: boolean;
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

/** Create the CA when absent; issue what is missing, renew what expires soon; keep the rest. */
async function preparePki(dir: string, renewWithinDays: number): Promise<void> {
  let ca: CertificateAuthority;
  if (CertificateAuthority.exists(dir)) {
    ca = await CertificateAuthority.open({ dir });
  } else {
    ca = await CertificateAuthority.init({ dir, name: "Mesh Dev CA" });
    // Leaves come from an intermediate, as in production: the root then signs only CAs and CRLs,
    // and a service's chain file holds leaf + intermediate, which is what it sends. (With a leaf
    // signed by the root itself, Node adds the root from the trust store to what a server sends.)
    // Constrained to the mesh's domain: this CA cannot sign a name outside .internal.
    const int = await ca.createIntermediate({ name: "Mesh Dev Issuing CA", permitDns: ["internal"] });
    console.log(`created the CA "Mesh Dev CA" in ${dir} (its key stays in ${shown(ca.paths.root(1).key)}), issuing through "${int.name}" (.internal names only)`);
  }
  try {
    const soon = Date.now() + renewWithinDays * 86_400_000;
    const list = ca.list();
    for (const short of CERT_NAMES) {
      const domain = `${short}.internal`;
      const current = list.find((c) => c.domain === domain && c.status === "VALID");
      const files = ca.paths.leaf(domain);
      const filesThere = existsSync(files.cert) && existsSync(files.key);
      if (current && filesThere && new Date(current.notAfter).getTime() > soon) {
        console.log(dim(`kept   ${domain.padEnd(20)} valid until ${current.notAfter.slice(0, 10)}`));
        continue;
      }
      const issued = current ? await ca.renew({ domain }) : await ca.issue({ domain });
      console.log(`${current ? "renewed" : "issued"} ${domain.padEnd(19)} valid until ${issued.notAfter.toISOString().slice(0, 10)}: ${shown(issued.certPath)}`);
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
function keepCrlsFresh(dir: string, everyMs: number): () => void {
  let busy = false;
  const check = async () => {
    if (busy) return;
    busy = true;
    try {
      const ca = await CertificateAuthority.open({ dir });
      try {
        for (const r of await ca.refreshCrls()) {
          console.log(`mesh:up: re-signed the CRL of ${r.name} before it lapsed (next update ${r.crl_next_update?.slice(0, 16).replace("T", " ")} UTC); the services reload crls.pem`);
        }
      } finally {
        ca.close();
      }
    } catch (e) {
      console.error(red(`mesh:up: could not re-sign the CRLs in ${dir} (will try again in ${everyMs / 1000} s): ${(e as Error).message}`));
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void check(), everyMs);
  return () => clearInterval(timer);
}

/** Each service's admin listener (metrics, healthz), from its `admin.listening` line. */
const adminPorts: Record<string, number> = {};

/** One service, its log appended to logs/<name>.log and echoed with a prefix unless quiet. */
function startChild(name: string, o: Opts, port: number, upstreams: string[], onExit: (name: string, code: number | null, signal: NodeJS.Signals | null) => void): Promise<Launched> {
  return launchService({
    service: name, port, pki: o.pki, policy: o.policy, upstreams, logFile: join(o.logs, `${name}.log`),
    env: { ...process.env, MESH_ADMIN_PORT: String(port === 0 ? 0 : port + 10) },
    onLine: (l, text) => {
      if (l?.event === "admin.listening") adminPorts[name] = Number(l.port);
      if (!o.quiet) console.log(l ? formatLine(l) : `${servicePrefix(name)} ${text}`);
    },
    onStderr: (text) => console.error(`${servicePrefix(name)} ${red(text)}`),
    onExit: (code, signal) => onExit(name, code, signal),
  });
}

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<Opts>();
  try {
    loadPolicy(o.policy); // refuse early, with the file:line, rather than three times in the children
  } catch (e) {
    fail(isMeshError(e) ? e.message : String(e), 2);
  }
  try {
    await preparePki(o.pki, o.renewWithin);
  } catch (e) {
    fail(e instanceof CaError ? e.message : `cannot prepare the CA in ${o.pki}: ${(e as Error).message}`, 4);
  }
  mkdirSync(o.logs, { recursive: true });

  const children: Launched[] = [];
  let stopping = false;
  let stopCrls = () => {};
  const stopAll = async (code: number, quiet = false) => {
    if (stopping) return;
    stopping = true;
    stopCrls();
    await Promise.all(children.map((c) => c.stop()));
    if (!quiet) console.log(dim("mesh:up: all services stopped"));
    process.exit(code);
  };
  process.on("SIGINT", () => void stopAll(0));
  process.on("SIGTERM", () => void stopAll(0));
  // npm does not pass SIGTERM on to the script it runs: notice npm going away instead.
  // Quietly: our stdout went with it.
  onParentExit(() => void stopAll(0, true));
  const onExit = (name: string, code: number | null, signal: NodeJS.Signals | null) => {
    if (stopping) return;
    console.error(red(`mesh:up: ${describeExit(name, code, signal)}; stopping the others`));
    void stopAll(1);
  };

  try {
    const [pay, inv] = await Promise.all([startChild("payment", o, o.paymentPort, [], onExit), startChild("inventory", o, o.inventoryPort, [], onExit)]);
    children.push(pay, inv);
    const ord = await startChild("order", o, o.orderPort, [`payment=127.0.0.1:${pay.port}`, `inventory=127.0.0.1:${inv.port}`], onExit);
    children.push(ord);
  } catch (e) {
    console.error(red(`mesh:up: ${(e as Error).message}`));
    await stopAll(1);
    return;
  }
  const ports = Object.fromEntries(children.map((c) => [c.name, c.port]));
  // The admin line follows the listening line by a few milliseconds.
  for (let i = 0; i < 50 && children.some((c) => adminPorts[c.name] === undefined); i++) await new Promise((r) => setTimeout(r, 100));
  writeFileSync(join(o.logs, "mesh.json"), JSON.stringify({ pid: process.pid, pids: Object.fromEntries(children.map((c) => [c.name, c.proc.pid])), pki: resolve(o.pki), policy: resolve(o.policy), ports, adminPorts }, null, 2) + "\n");
  banner(o, ports as Record<"order" | "payment" | "inventory", number>);
  stopCrls = keepCrlsFresh(o.pki, o.crlCheck * 1000);
}

function banner(o: Opts, ports: Record<"order" | "payment" | "inventory", number>): void {
  const pki = shown(resolve(o.pki));
  const base = `curl --cacert ${pki}/bundle.pem --resolve payment.internal:${ports.payment}:127.0.0.1`;
  const cert = (n: string) => `--cert ${pki}/certs/${n}.internal.crt --key ${pki}/certs/${n}.internal.key`;
  const url = `https://payment.internal:${ports.payment}/charge`;
  const body = `-H 'content-type: application/json' -d '{"orderId":"demo-1","amount":1250}'`;
  console.log(`
${bold("mesh is up")} (logs: ${o.logs}/<service>.log, follow them with: npm run mesh:logs -- -f)
  order      https://127.0.0.1:${ports.order}      (order.internal)
  payment    https://127.0.0.1:${ports.payment}      (payment.internal)
  inventory  https://127.0.0.1:${ports.inventory}      (inventory.internal)

Try:
  ${dim("# order may charge: 201")}
  ${base} ${cert("order")} ${body} ${url}
  ${dim("# inventory may not: 403, and payment logs authz.denied with the rule")}
  ${base} ${cert("inventory")} ${body} ${url}
  ${dim("# no client certificate: refused in the TLS handshake (no_client_cert)")}
  ${base} ${url}

  npm run mesh:probe          ${dim("# every caller -> callee pair against the policy")}
  npm run mesh:check          ${dim("# health: certificates, trust bundle, CRLs, policy, clocks")}
Ctrl-C stops everything.
`);
}

await main();
