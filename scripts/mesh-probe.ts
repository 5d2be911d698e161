// npm run mesh:probe: call every caller -> callee pair of a running mesh with the caller's
// own certificate, plus a client without one and one from a foreign CA, and print what
// happened beside what the policy says. Exits 1 where they differ.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Command, Option } from "commander";
import { CertificateAuthority } from "../ca/index.ts";
import { decide, loadPolicy, type Policy } from "../services/policy.ts";
import { isMeshError } from "../services/errors.ts";
import { SERVICES } from "../services/names.ts";
import { bold, dim, green, red, parseLine } from "./mesh-format.ts";
import { DEFAULT_PORTS } from "./mesh-ports.ts";

const PROBE_PATH = "/healthz";

interface Outcome {
  kind: "http" | "refused" | "error";
  status?: number;
  rule?: string;
  reason?: string;
}

interface Cell {
  caller: string;
  callee: string;
  expected: string;
  observed: string;
  ok: boolean;
}

const program = new Command("mesh:probe")
  .description("Probe a running mesh: every caller -> callee pair, plus strangers, against the policy.")
  .addOption(new Option("--pki <dir>", "the CA state folder").env("MESH_PKI_DIR"))
  .addOption(new Option("--policy <file>", "the policy to compare with").env("MESH_POLICY"))
  .addOption(new Option("--logs <dir>", "the services' log folder (for handshake reasons, and mesh.json)").env("MESH_LOG_DIR").default("./logs"))
  .option("--order-port <n>", "order's port (default: from logs/mesh.json, else 7401)")
  .option("--payment-port <n>", "payment's port")
  .option("--inventory-port <n>", "inventory's port")
  .option("--json", "print the matrix as JSON")
  .addHelpText("after", `\nExamples:\n  npm run mesh:probe\n  npm run mesh:probe -- --json\n\nExit codes: 0 the mesh does what the policy says, 1 it does not, 2 bad flags or files.`)
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

function fail(msg: string): never {
  process.stderr.write(`mesh:probe: ${msg}\n`);
  process.exit(2);
}

/** One request on a fresh connection; a refusal is told apart from an HTTP answer. */
function probe(port: number, callee: string, ca: Buffer, who: { cert: Buffer; key: Buffer } | null): Promise<Outcome & { localPort?: number }> {
  return new Promise((done) => {
    let localPort: number | undefined;
    const req = request({ host: "127.0.0.1", port, servername: `${callee}.internal`, path: PROBE_PATH, method: "GET", ca, ...(who ?? {}), agent: false, timeout: 4_000 }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => {
        let rule: string | undefined;
        try {
          rule = (JSON.parse(text) as { rule?: string }).rule;
        } catch {
          /* not JSON: no rule to show */
        }
        done({ kind: "http", status: res.statusCode, rule, localPort });
      });
    });
    req.on("socket", (s) => s.on("connect", () => (localPort = s.localPort)));
    req.on("error", (e: NodeJS.ErrnoException) => {
      const refused = ["ECONNRESET", "EPIPE", "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED"].includes(e.code ?? "") || /socket hang up/.test(e.message);
      done({ kind: refused ? "refused" : "error", reason: e.code ?? e.message, localPort });
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.end();
  });
}

/** The callee logged why it refused us: find its line by our source port. */
async function reasonFromLog(logs: string, callee: string, localPort: number | undefined): Promise<string | undefined> {
  const file = join(logs, `${callee}.log`);
  if (localPort === undefined || !existsSync(file)) return undefined;
  const want = `127.0.0.1:${localPort}`;
  for (let i = 0; i < 20; i++) {
    const text = readFileSync(file, "utf8");
    for (const raw of text.slice(Math.max(0, text.length - 200_000)).split("\n").reverse()) {
      const l = parseLine(raw);
      if (l?.event === "tls.handshake_failed" && l.remote === want) return String(l.reason);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

function describe(o: Outcome): string {
  if (o.kind === "http") return o.status === 403 ? `403 ${o.rule ?? ""}`.trim() : String(o.status);
  if (o.kind === "refused") return `refused: ${o.reason}`;
  return `error: ${o.reason}`;
}

async function main(): Promise<number> {
  program.parse();
  const o = program.opts<{ pki?: string; policy?: string; logs: string; orderPort?: string; paymentPort?: string; inventoryPort?: string; json?: boolean }>();
  const stateFile = join(o.logs, "mesh.json");
  const state = existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, "utf8")) as { pki?: string; policy?: string; ports?: Record<string, number> }) : {};
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
  const bundle = join(pki, "bundle.pem");
  if (!existsSync(bundle)) fail(`no trust bundle at ${bundle}: is the mesh up? (npm run mesh:up)`);
  const ca = readFileSync(bundle);
  const own = (n: string) => {
    const p = join(pki, "certs", `${n}.internal`);
    return existsSync(`${p}.crt`) ? { cert: readFileSync(`${p}.crt`), key: readFileSync(`${p}.key`) } : null;
  };

  // A stranger: a CA nobody trusts, issuing a certificate that claims to be order.
  const tmp = mkdtempSync(join(tmpdir(), "mesh-probe-"));
  let foreign: { cert: Buffer; key: Buffer };
  try {
    const fca = await CertificateAuthority.init({ dir: tmp, name: "Probe Foreign CA" });
    const leaf = await fca.issue({ domain: "order.internal", days: 1 });
    foreign = { cert: readFileSync(leaf.certPath), key: readFileSync(leaf.keyPath!) };
    fca.close();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }

  const callers: Array<{ name: string; who: { cert: Buffer; key: Buffer } | null; expect: (callee: string) => string }> = [];
  for (const c of [...SERVICES, "edge"]) {
    const who = own(c);
    if (!who) continue;
    callers.push({ name: c, who, expect: (callee) => {
      const d = decide(policy, callee, c, "GET", PROBE_PATH);
      return d.allow ? "200" : `403 ${d.rule}`;
    } });
  }
  callers.push({ name: "(no cert)", who: null, expect: () => "refused: no_client_cert" });
  callers.push({ name: "(foreign CA)", who: foreign, expect: () => "refused: unknown_ca" });

  const cells: Cell[] = [];
  for (const c of callers) {
    for (const callee of SERVICES) {
      const out = await probe(ports[callee]!, callee, ca, c.who);
      if (out.kind === "refused") out.reason = (await reasonFromLog(o.logs, callee, out.localPort)) ?? `${out.reason} (no reason found in ${o.logs}/${callee}.log)`;
      const observed = describe(out);
      const expected = c.expect(callee);
      cells.push({ caller: c.name, callee, expected, observed, ok: observed === expected });
    }
  }

  if (o.json) {
    console.log(JSON.stringify({ ports, policy: policyFile, cells }, null, 2));
  } else {
    const w = 34;
    console.log(`${bold("caller".padEnd(14))}${SERVICES.map((s) => bold(`${s} :${ports[s]}`.padEnd(w))).join("")}`);
    for (const c of callers) {
      const row = cells.filter((x) => x.caller === c.name);
      console.log(`${c.name.padEnd(14)}${row.map((x) => (x.ok ? green(`✓ ${x.observed}`.padEnd(w)) : red(`✗ ${x.observed}`.padEnd(w)))).join("")}`);
    }
    const bad = cells.filter((x) => !x.ok);
    console.log(dim(`\n${cells.length} calls of GET ${PROBE_PATH}; policy: ${policyFile}`));
    for (const b of bad) console.log(red(`mismatch: ${b.caller} -> ${b.callee}: the policy says ${b.expected}, the mesh did ${b.observed}`));
    if (bad.length === 0) console.log(green("the mesh does what the policy says"));
  }
  return cells.every((x) => x.ok) ? 0 : 1;
}

process.exitCode = await main();
