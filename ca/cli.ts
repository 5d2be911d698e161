// The CA's command line: `npm run ca -- <command>`. Error codes map to exit
// codes here and only here; an expected failure is one line, never a trace.
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import type { EventLogger } from "../lib/events.ts";
import type { CertificateAuthority, OpenOptions } from "./authority.ts";
import { REVOCATION_REASONS } from "./crl.ts";
import { CaError, badInput, type CaErrorCode } from "./errors.ts";
import { issuedSummary, issuerLine, listTable, longDate, shortDate, shown, verifyReport } from "./format.ts";
import { KEY_TYPES } from "./keys.ts";
import { parseStore } from "./store/url.ts";
import { LedgerView } from "./view.ts";

const EXIT: Record<CaErrorCode | "USAGE" | "INTERNAL", number> = {
  VERIFY_FAILED: 1,
  BAD_INPUT: 2, USAGE: 2,
  ALREADY_EXISTS: 3, NOT_FOUND: 3, REFUSED: 3,
  NOT_INITIALISED: 4, CORRUPT: 4, BAD_PASSPHRASE: 4,
  INTERNAL: 70,
};

const EXIT_CODES = `
Exit codes:
  0   done
  1   verify: the certificate failed a check
  2   bad input: a flag, name or file is wrong (nothing was changed)
  3   refused: it exists already, is unknown, or a rule forbids it (nothing was changed)
  4   the CA folder is missing, unreadable or its key's passphrase is wrong
  70  an unexpected internal error`;

const USAGE = `mtls-mesh CA: a private certificate authority for the mesh.

  npm run ca -- init --name "Acme Corp CA"           create the root CA in ./pki
  npm run ca -- issue --domain payment.internal      key + certificate for a service
  npm run ca -- list                                 every certificate and its status
  npm run ca -- revoke --domain payment.internal     revoke it and re-sign the CRL
  npm run ca -- verify --cert pki/certs/payment.internal.crt

Online CA (EST, see docs/est.md):
  npm run ca -- serve --port 7400                    run the CA as an HTTPS (EST) server
  npm run ca -- token --domain shipping.internal     one-time enrolment token for a name

More: intermediate, sign, renew, crl, generation, bundle, status, serve, token, rotate, store-copy, prune.
Every command has --help with examples and exit codes.`;

interface StateFlags { dir?: string; passphraseFile?: string; store?: string }

/** The flags every command that touches the state folder shares. */
function stateful(cmd: Command): Command {
  return cmd
    .addOption(new Option("--dir <path>", "the CA state folder").env("MESH_PKI_DIR").default("./pki"))
    .option("--passphrase-file <file>", "file holding the CA key passphrase (or set MESH_CA_PASSPHRASE)")
    .addOption(new Option("--store <url>", "where the ledger is: sqlite (ca.db in --dir) or postgres://user@host/db, shared by CA replicas; the password only from PGPASSWORD or ~/.pgpass (docs/est.md)").env("MESH_CA_STORE"));
}

function help(cmd: Command, examples: string[]): Command {
  return cmd.addHelpText("after", `\nExamples:\n${examples.map((e) => `  $ npm run ca -- ${e}`).join("\n")}\n${EXIT_CODES}`);
}

function clock(): () => Date {
  const fixed = process.env.MESH_CA_NOW;
  if (!fixed) return () => new Date();
  const d = new Date(fixed);
  if (Number.isNaN(d.getTime())) throw badInput(`MESH_CA_NOW=${JSON.stringify(fixed)} is not a date (use ISO 8601, e.g. 2027-01-31T12:00:00Z)`);
  return () => new Date(d);
}

function openOptions(flags: StateFlags): OpenOptions {
  let passphrase = process.env.MESH_CA_PASSPHRASE || undefined;
  if (flags.passphraseFile) {
    try {
      passphrase = readFileSync(flags.passphraseFile, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw badInput(`cannot read --passphrase-file ${flags.passphraseFile} (${(err as NodeJS.ErrnoException).code})`);
    }
    if (passphrase.length === 0) throw badInput(`--passphrase-file ${flags.passphraseFile} is empty`);
  }
  // An empty MESH_PKI_DIR (or --dir "") means the default, never the current directory.
  // Checked here, before anything is opened: a URL with a password is refused outright.
  parseStore(flags.store);
  return { dir: flags.dir || "./pki", passphrase, now: clock(), store: flags.store ?? "sqlite" };
}

/** Like withCa, for commands that only read the ledger (ca/view.ts). */
async function withView(flags: StateFlags, fn: (ca: LedgerView) => void): Promise<void> {
  const view = LedgerView.open(openOptions(flags));
  try {
    fn(view);
    for (const w of view.crlWarnings()) console.error(`warning: ${w}`);
  } finally {
    view.close();
  }
}

/** Opens the CA, runs fn, prints CRL warnings, closes. */
async function withCa(flags: StateFlags, fn: (ca: CertificateAuthority) => Promise<void> | void): Promise<void> {
  // Imported here: the signing code's libraries take longer to load than list or status run.
  const { CertificateAuthority } = await import("./authority.ts");
  const ca = await CertificateAuthority.open(openOptions(flags));
  try {
    await fn(ca);
    for (const w of ca.crlWarnings()) console.error(`warning: ${w}`);
  } finally {
    ca.close();
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value];
const warn = (warnings: string[]) => warnings.forEach((w) => console.error(`warning: ${w}`));

function parseGeneration(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw badInput(`generation ${JSON.stringify(value)} is not a generation number (1, 2, …)`);
  return Number(value);
}

/** The version from package.json: one small file read, no module loaded for it. Looks one level
 * further up too, so that a compiled copy of this file (dist/ca/cli.js) finds the same file. */
function packageVersion(): string {
  for (const rel of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "mtls-mesh" && pkg.version) return pkg.version;
    } catch {
      // not there: try the next level
    }
  }
  return "unknown";
}

/** Commander's private hooks used below; present in commander 14 and covered by test/ca-cli.test.ts. */
interface CommanderInternals {
  parseOptions(argv: string[]): { operands: string[]; unknown: string[] };
  missingMandatoryOptionValue(option: Option): never;
  unknownOption(flag: string): never;
}

/**
 * Every command and subcommand the same way: errors are thrown (main prints them as one line),
 * a misspelled flag or command gets a suggestion, help still prints. Commander checks required
 * options before unknown ones, so `issue --domian x` would say "--domain not specified" with no
 * hint: a required option missing next to an unknown flag reports the unknown flag instead.
 */
function configure(cmd: Command, failed: { cmd?: Command }): void {
  cmd.showSuggestionAfterError(true)
    .exitOverride((err) => { failed.cmd = cmd; throw err; })
    .configureOutput({ outputError: () => {} });
  const c = cmd as unknown as CommanderInternals;
  let unknown: string[] = [];
  const parseOptions = c.parseOptions.bind(cmd);
  c.parseOptions = (argv) => {
    const parsed = parseOptions(argv);
    unknown = parsed.unknown;
    return parsed;
  };
  const missing = c.missingMandatoryOptionValue.bind(cmd);
  c.missingMandatoryOptionValue = (option) => {
    if (unknown[0]?.startsWith("-")) c.unknownOption(unknown[0]);
    return missing(option);
  };
  cmd.commands.forEach((sub) => configure(sub, failed));
}

/** "generation add" for the failing command, so the error can point at its own --help. */
function commandPath(cmd: Command | undefined): string {
  const names: string[] = [];
  for (let c = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

export function buildProgram(): Command {
  const program = new Command("ca").description("A private certificate authority for the mTLS mesh").showHelpAfterError(false)
    .version(packageVersion(), "-V, --version", "print the version and exit");

  help(stateful(program.command("init").description("create root generation 1 in the state folder (never overwrites a CA)"))
    .requiredOption("--name <name>", "the CA's name (its certificate's CN)")
    .option("--days <n>", "validity in days", "3650")
    .addOption(new Option("--key-type <type>", "key algorithm").choices(KEY_TYPES).default("ec-p256"))
    .option("--trust-domain <domain>", "SPIFFE trust domain: leaves also get the URI SAN spiffe://<domain>/<name>"), [
    `init --name "Acme Corp CA"`, `init --name "Acme Corp CA" --key-type ec-p384 --days 7300 --passphrase-file ca.pass`,
    `init --name "Acme Corp CA" --trust-domain acme.internal`,
  ]).action(async (o) => {
    const { CertificateAuthority } = await import("./authority.ts");
    const ca = await CertificateAuthority.init({ ...openOptions(o), name: o.name, days: o.days, keyType: o.keyType, trustDomain: o.trustDomain });
    const root = ca.issuerRow("root-1");
    console.log(`Created the CA ${root.name} in ${shown(ca.layout.dir)}`);
    console.log(`  root key     ${shown(ca.layout.root(1).key)}  (0600: KEEP IT SECRET${o.passphraseFile || process.env.MESH_CA_PASSPHRASE ? ", encrypted" : ""})`);
    console.log(`  root cert    ${shown(ca.layout.root(1).cert)}`);
    console.log(`  trust bundle ${shown(ca.layout.bundle)}  (distribute to every client and service)`);
    console.log(`  CRLs         ${shown(ca.layout.crls)}`);
    console.log(`  expires      ${longDate(root.not_after)}`);
    if (ca.trustDomain()) console.log(`  SPIFFE IDs   spiffe://${ca.trustDomain()}/<name> on every leaf`);
    ca.close();
  });

  help(stateful(program.command("issue").description("make a key and certificate for a service name"))
    .requiredOption("--domain <name>", "the service's DNS name (CN and first SAN)")
    .option("--days <n>", "validity in days", "90")
    .option("--dns <name>", "another DNS name (repeatable)", collect)
    .option("--ip <address>", "an IP address SAN (repeatable)", collect)
    .addOption(new Option("--key-type <type>", "key algorithm").choices(KEY_TYPES).default("ec-p256"))
    .option("--allow-wildcard", "accept a *.name wildcard"), [
    "issue --domain payment.internal", "issue --domain api.internal --days 30 --dns api --ip 127.0.0.1",
  ]).action((o) => withCa(o, async (ca) => {
    const c = await ca.issue({ domain: o.domain, days: o.days, dns: o.dns, ip: o.ip, keyType: o.keyType, allowWildcard: o.allowWildcard });
    console.log(issuedSummary("Issued", c, ca.now()));
    warn(c.warnings);
  }));

  help(stateful(program.command("sign").description("sign a service's CSR, so its key never leaves the service"))
    .requiredOption("--csr <file>", "a PEM CERTIFICATE REQUEST")
    .option("--days <n>", "validity in days", "90")
    .option("--allow-wildcard", "accept a *.name wildcard"), [
    "sign --csr payment.csr",
    "sign --csr payment.csr --days 30   # make one: openssl req -new -key payment.key -subj /CN=payment.internal -out payment.csr",
  ]).action((o) => withCa(o, async (ca) => {
    let csrPem: string;
    try { csrPem = readFileSync(o.csr, "utf8"); } catch (err) { throw badInput(`cannot read --csr ${o.csr} (${(err as NodeJS.ErrnoException).code})`); }
    const c = await ca.signCsr({ csrPem, days: o.days, allowWildcard: o.allowWildcard });
    console.log(issuedSummary("Signed", c, ca.now()));
    warn(c.warnings);
  }));

  help(stateful(program.command("list").description("every certificate with its status (VALID, EXPIRED, REVOKED, SUPERSEDED)"))
    .option("--json", "the ledger as JSON, for scripts")
    .option("--all", "include superseded certificates"), ["list", "list --all", "list --json | jq '.[] | select(.status == \"VALID\")'"])
    .action((o) => withView(o, (ca) => {
      const rows = ca.list({ all: o.all });
      if (o.json) process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
      else if (rows.length === 0) console.log(`No certificates yet (run: npm run ca -- issue --domain NAME)`);
      else process.stdout.write(listTable(rows) + "\n");
    }));

  help(stateful(program.command("revoke").description("revoke a certificate and re-sign its CA's CRL"))
    .argument("[domain]", "the name whose current certificate to revoke")
    .option("--domain <name>", "the name whose current certificate to revoke")
    .option("--serial <hex>", "revoke this exact certificate")
    .addOption(new Option("--reason <reason>", "RFC 5280 reason").choices(REVOCATION_REASONS).default("unspecified")), [
    "revoke --domain payment.internal", "revoke payment.internal --reason keyCompromise", "revoke --serial 4815b364aa70287518195df6c61d90ee",
  ]).action((arg, o) => withCa(o, async (ca) => {
    const domain = o.domain ?? arg;
    if (!domain && !o.serial) throw badInput("say what to revoke: --domain NAME or --serial HEX");
    if (domain && o.serial) throw badInput("give --domain or --serial, not both");
    const row = await ca.revoke({ domain, serial: o.serial, reason: o.reason });
    console.log(`Revoked: ${row.name} (serial ${row.serial}, reason ${row.reason})`);
    console.log(`  CRL re-signed; services load ${shown(ca.layout.crls)}`);
  }));

  help(stateful(program.command("verify").description("full path validation: chain, CA flags, pathLen, EKU, name constraints, validity, revocation"))
    .requiredOption("--cert <file>", "the certificate (with its chain) to check")
    .option("--at <date>", "check at this time instead of now (ISO 8601)")
    .addOption(new Option("--purpose <purpose>", "what it must be good for").choices(["mesh", "server", "client"]).default("mesh"))
    .option("--name <name>", "the DNS name or IP address it must hold in its SANs (as openssl verify -verify_hostname / -verify_ip)")
    .option("--ca-file <file>", "trust the roots in this file instead of the CA folder's bundle.pem; the CA folder is then not read")
    .option("--crl-file <file>", "check revocation against the CRLs in this file (repeatable; one file may hold several) instead of crls.pem", collect), [
    "verify --cert pki/certs/payment.internal.crt", "verify --cert old.crt --at 2027-06-01", "verify --cert pki/certs/payment.internal.crt --name payment.internal",
    "verify --cert peer.crt --ca-file other-root.crt --purpose client   # revocation not checked: no CRL given",
    "verify --cert peer.crt --ca-file other-root.crt --crl-file other-crls.pem",
  ]).action(async (o) => {
    const files = await import("./verify-files.ts");
    let at: Date | undefined;
    if (o.at) {
      at = new Date(o.at);
      if (Number.isNaN(at.getTime())) throw badInput(`--at ${JSON.stringify(o.at)} is not a date (use ISO 8601, e.g. 2027-06-01)`);
    }
    const crlFiles: string[] = o.crlFile ?? [];
    let result: Awaited<ReturnType<typeof files.verifyFiles>>;
    if (o.caFile) {
      // Every file is given: a foreign CA's certificate is checked without any CA folder.
      result = await files.verifyFiles({ certFile: o.cert, caFile: o.caFile, crlFiles, at: at ?? clock()(), purpose: o.purpose, name: o.name });
    } else {
      const pem = files.readFlagFile(o.cert, "--cert");
      const crlPem = crlFiles.length > 0 ? files.crlsIn(crlFiles).pem : undefined;
      let local: typeof result | undefined;
      await withCa(o, async (ca) => { local = await ca.verify({ pem, at, purpose: o.purpose, crlPem, name: o.name }); });
      result = local!;
    }
    console.log(verifyReport(o.cert, result, crlFiles.length > 0 ? "--crl-file" : "crls.pem"));
    if (!result.ok) throw new CaError("VERIFY_FAILED", "");
  });

  help(stateful(program.command("renew").description("new key and certificate for a name; the old one becomes SUPERSEDED"))
    .requiredOption("--domain <name>", "the name to renew")
    .option("--days <n>", "validity in days", "90")
    .addOption(new Option("--key-type <type>", "key algorithm (default: the old one's)").choices(KEY_TYPES)), [
    "renew --domain payment.internal", "renew --domain payment.internal --days 30",
  ]).action((o) => withCa(o, async (ca) => {
    const c = await ca.renew({ domain: o.domain, days: o.days, keyType: o.keyType });
    console.log(issuedSummary("Renewed", c, ca.now()));
    warn(c.warnings);
  }));

  help(stateful(program.command("intermediate").description("create an issuing CA under a root (default: the signing generation's; it then signs new certificates)"))
    .requiredOption("--name <name>", "the issuing CA's name")
    .option("--days <n>", "validity in days", "1825")
    .option("--permit-dns <suffix>", "name constraint: only names under this suffix (repeatable)", collect)
    .addOption(new Option("--key-type <type>", "key algorithm").choices(KEY_TYPES).default("ec-p256"))
    .option("--generation <n>", "create it under this root generation (not retired); it signs only once that generation does (generation use N)"), [
    `intermediate --name "Acme Issuing CA"`, `intermediate --name "Acme Issuing CA" --permit-dns .internal`,
    `intermediate --name "Acme Issuing CA G2" --permit-dns .internal --generation 2   # then: generation use 2`,
  ]).action((o) => withCa(o, async (ca) => {
    const generation = o.generation === undefined ? undefined : parseGeneration(o.generation);
    const row = await ca.createIntermediate({ name: o.name, days: o.days, permitDns: o.permitDns, keyType: o.keyType, generation });
    const paths = ca.layout.issuer(row.id);
    console.log(`Created the issuing CA ${issuerLine(row)}`);
    console.log(`  key   ${shown(paths.key)}  (0600: keep it secret)`);
    console.log(`  cert  ${shown(paths.cert)}`);
    if (ca.signerId() === row.id) console.log(`  new certificates are signed by it and carry it in their chain`);
    else console.log(`  generation ${row.generation} does not sign yet: npm run ca -- generation use ${row.generation} makes this issuing CA the signer`);
  }));

  help(stateful(program.command("crl").description("re-sign every CRL and rewrite crls.pem")), ["crl"])
    .action((o) => withCa(o, async (ca) => {
      for (const r of await ca.publishCrls()) console.log(`Re-signed the CRL of ${r.name}: next update ${longDate(r.crl_next_update!)}`);
      console.log(`  services load ${shown(ca.layout.crls)}`);
    }));

  help(stateful(program.command("bundle").description("publish bundle.pem: every root generation not retired")), ["bundle"])
    .action((o) => withCa(o, (ca) => {
      const roots = ca.publishBundle();
      console.log(`Published ${shown(ca.layout.bundle)} with ${roots.length} root(s):`);
      for (const r of roots) console.log(`  ${issuerLine(r)}`);
    }));

  const generation = help(program.command("generation").description("root generations, for CA rotation: add, use, retire"),
    ["generation add", "generation use 2", "generation retire 1"]);
  help(stateful(generation.command("add").description("add a root generation with a distinct subject (not trusted or signing yet)"))
    .option("--name <name>", "its name (default: the first root's name + \" G<n>\")")
    .option("--days <n>", "validity in days", "3650")
    .addOption(new Option("--key-type <type>", "key algorithm").choices(KEY_TYPES)), [
    "generation add", `generation add --name "Acme Corp CA G2"`,
  ]).action((o) => withCa(o, async (ca) => {
    const row = await ca.addGeneration({ name: o.name, days: o.days, keyType: o.keyType });
    console.log(`Added ${issuerLine(row)}`);
    console.log(`  not trusted yet: publish it with  npm run ca -- bundle`);
    console.log(`  not signing yet: switch with      npm run ca -- generation use ${row.generation}`);
  }));
  help(stateful(generation.command("use").description("make a generation sign new certificates").argument("<n>", "generation number")), ["generation use 2"])
    .action((n, o) => withCa(o, (ca) => {
      const row = ca.useGeneration(parseGeneration(n));
      console.log(`New certificates are now signed by ${issuerLine(row)}`);
      if (ca.issuerRow(`root-${row.generation}`).state === "pending") {
        console.error(`warning: generation ${row.generation} is not in the trust bundle yet; publish it first (npm run ca -- bundle) or peers will reject what it signs`);
      }
    }));
  help(stateful(generation.command("retire").description("drop a generation from bundle.pem and crls.pem").argument("<n>", "generation number")
    .option("--force", "retire even though valid certificates still chain to it (they will be rejected)")), ["generation retire 1"])
    .action((n, o) => withCa(o, (ca) => {
      const { retired, stillValid } = ca.retireGeneration(parseGeneration(n), { force: o.force });
      console.log(`Retired ${retired.name} (generation ${retired.generation}); ${shown(ca.layout.bundle)} and ${shown(ca.layout.crls)} no longer carry it`);
      if (stillValid > 0) console.error(`warning: ${stillValid} valid certificate(s) still chain to it and will now be rejected`);
    }));

  help(stateful(program.command("store-copy").description("copy the SQLite ledger of --dir into an empty PostgreSQL database, to run CA replicas on it (docs/est.md)"))
    .requiredOption("--to <url>", "the PostgreSQL database: postgres://user@host/db (the password from PGPASSWORD or ~/.pgpass)"), [
    "store-copy --to postgres://ca@db.internal/mesh_ca   # then: export MESH_CA_STORE=postgres://ca@db.internal/mesh_ca",
  ]).action((o) => withCa({ ...o, store: "sqlite" }, async (ca) => {
    const { copyToPostgres } = await import("./store/copy.ts");
    const r = copyToPostgres(ca.ledger, o.to);
    console.log(`Copied the ledger of ${shown(ca.layout.dir)} into ${r.to}`);
    for (const [table, n] of Object.entries(r.rows)) console.log(`  ${table.padEnd(15)} ${n} row(s)`);
    console.log(`  ${shown(ca.layout.ledger)} is unchanged; from now on use --store ${r.to} (or MESH_CA_STORE), and stop using the SQLite file`);
  }));

  help(stateful(program.command("status").description("generations, signing CA, bundle, CRL freshness, counts"))
    .option("--json", "as JSON"), ["status", "status --json"])
    .action((o) => withView(o, (ca) => {
      const signer = ca.signerId();
      const counts = ca.ledger.counts(ca.now().toISOString());
      const gens = ca.generations();
      if (o.json) {
        process.stdout.write(JSON.stringify({ dir: ca.layout.dir, signer, generations: gens, counts, warnings: ca.crlWarnings() }, null, 2) + "\n");
        return;
      }
      console.log(`CA in ${shown(ca.layout.dir)}`);
      for (const g of gens) {
        const state = { pending: "added, not yet trusted", published: "trusted (in bundle.pem)", retired: "retired" }[g.root.state];
        console.log(`  generation ${g.generation}: ${g.root.name} — ${state}`);
        for (const r of [g.root, ...g.intermediates]) {
          const crl = r.crl_next_update ? `CRL #${r.crl_number} until ${shortDate(r.crl_next_update)}` : "no CRL";
          console.log(`    ${r.id.padEnd(7)} ${r.kind.padEnd(12)} expires ${shortDate(r.not_after)}  ${crl}${r.id === signer ? "  <- signs new certificates" : ""}`);
        }
      }
      console.log(`  certificates: ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")}`);
    }));

  help(stateful(program.command("prune").description("delete certificates expired more than --older-than ago (and expired tokens); drop expired serials from the CRLs"))
    .option("--older-than <duration>", "keep what expired less than this long ago (ca serve prunes with its --retention)", "7d")
    .option("--dry-run", "say what would go, change nothing")
    .option("--json", "as JSON, for scripts"), [
    "prune", "prune --older-than 30d --dry-run", "prune --older-than 1d --json",
  ]).action((o) => withCa(o, async (ca) => {
    const { parseDuration } = await import("./duration.ts");
    const retention = await import("./retention.ts");
    const olderThanMs = parseDuration(o.olderThan, { flag: "--older-than", min: 0, max: 100 * 365 * 86_400_000 });
    const r = await retention.prune(ca, { olderThanMs, dryRun: !!o.dryRun });
    if (o.json) {
      process.stdout.write(JSON.stringify({ ...r, cutoff: r.cutoff.toISOString() }, null, 2) + "\n");
      return;
    }
    const verb = r.dryRun ? "would delete" : "deleted";
    console.log(`${verb} ${r.certs} certificate(s) and ${r.tokens} enrolment token(s) expired before ${r.cutoff.toISOString()}`);
    if (r.dryRun) console.log(`${r.crlExpiredBefore} expired serial(s) still on the CRLs (a run re-signs those CRLs)`);
    else if (r.crlsResigned.length > 0) console.log(`re-signed the CRL of ${r.crlsResigned.join(", ")}: ${r.crlExpiredBefore - r.crlExpiredAfter} expired serial(s) dropped, ${r.crlExpiredAfter} kept until a CRL signed after their expiry has listed them (RFC 5280 3.3)`);
  }));

  // --- the online CA (docs/est.md) ---------------------------------------------
  help(stateful(program.command("token").description("a one-time enrolment token for one name (for EST simpleenroll)"))
    .requiredOption("--domain <name>", "the one name the token may enrol")
    .option("--ttl <duration>", "how long it stays usable (max 24h)", "10m")
    .option("--json", "as JSON, for scripts"), [
    "token --domain shipping.internal", "token --domain shipping.internal --ttl 1h",
    "token --domain shipping.internal --json | jq -r .token > shipping.token",
  ]).action((o) => withCa(o, async (ca) => {
    const { createToken, TOKEN_MAX_TTL_MS } = await import("./tokens.ts");
    const { parseDuration } = await import("./duration.ts");
    const ttlMs = parseDuration(o.ttl, { flag: "--ttl", min: 10_000, max: TOKEN_MAX_TTL_MS });
    const t = createToken(ca, { domain: o.domain, ttlMs });
    const fp = `sha256 Fingerprint=${t.root.fingerprint.hex}`;
    if (o.json) {
      process.stdout.write(JSON.stringify({
        token: t.token, domain: t.domain, expiresAt: t.expiresAt.toISOString(), ttl: t.ttl,
        root: { name: t.root.name, generation: t.root.generation, sha256: t.root.fingerprint.hex, sha256B64url: t.root.fingerprint.b64url },
      }, null, 2) + "\n");
    } else {
      // The token alone on stdout (TOKEN=$(npm run -s ca -- token ...)); the rest for people on stderr.
      process.stdout.write(`${t.token}\n`);
      console.error(`One-time enrolment token for ${t.domain}: works once, until ${t.expiresAt.toISOString()} (${t.ttl})`);
      console.error(`  CA root   ${t.root.name} (generation ${t.root.generation})`);
      console.error(`            ${fp}`);
      console.error(`  the token carries this fingerprint; check it with: openssl x509 -noout -fingerprint -sha256 -in ${shown(ca.layout.root(t.root.generation).cert)}`);
      console.error(`  keep it secret: it is a credential (pass it by file or environment, never as an argument)`);
    }
    if (!t.root.published) console.error(`warning: generation ${t.root.generation} signs but is not in the trust bundle yet (run: npm run ca -- bundle)`);
  }));

  help(stateful(program.command("serve").description("run the CA as an HTTPS server speaking EST (RFC 7030); logs JSON lines to stdout"))
    .option("--listen <address>", "address to listen on (also in the server certificate's SANs; 0.0.0.0 or ::: every interface, then give --san)", "127.0.0.1")
    .option("--san <name>", "an address or DNS name clients reach it by, added to its certificate (repeatable; the first is its URL when --listen is 0.0.0.0 or ::)", collect)
    .option("--port <n>", "TCP port", "7400")
    .option("--default-lifetime <duration>", "lifetime of the certificates it issues", "1h")
    .option("--max-lifetime <duration>", "the most a client may ask for with ?lifetime=", "24h")
    .option("--rate-per-address <n>", "enrolments + renewals per minute from one address (also the burst)", "30")
    .option("--rate-per-name <n>", "enrolments + renewals per minute for one name (also the burst)", "5")
    .option("--admin-port <n>", "serve GET /metrics (Prometheus) and GET /healthz over plain HTTP on this port (0 picks a free one; default MESH_CA_ADMIN_PORT, else off)")
    .option("--admin-host <addr>", "loopback address of the admin listener (127.0.0.1, 127.x.y.z or ::1)", "127.0.0.1")
    .option("--lease <duration>", "replicas on one store: how long the once-only jobs' lease lasts unrenewed (a dead holder's jobs move within it)", "15s")
    .option("--retention <duration>", "delete certificates this long after they expire, checked every 10 minutes (off: keep all)", "7d"), [
    "serve", "serve --port 7400 --default-lifetime 1h --max-lifetime 24h",
    "serve --listen 10.0.0.1 --port 7400   # reachable from other machines (docs/mesh.md)",
    "serve --retention 30d",
    "serve --admin-port 7410   # then: curl http://127.0.0.1:7410/metrics (docs/metrics.md)",
    "serve --dir ./pki --passphrase-file ca.pass   # then: see docs/est.md for curl + openssl",
    "serve --store postgres://ca@db.internal/mesh_ca --port 7400   # one of several replicas (docs/est.md)",
  ]).action((o) => withCa(o, async (ca) => {
    const { CaServer } = await import("./server/server.ts");
    const { parseDuration } = await import("./duration.ts");
    if (!/^\d{1,5}$/.test(o.port) || Number(o.port) > 65535) throw badInput(`--port ${JSON.stringify(o.port)} is not a TCP port (0-65535)`);
    const { isIP } = await import("node:net");
    if (isIP(o.listen) === 0 && o.listen !== "localhost") throw badInput(`--listen ${JSON.stringify(o.listen)} is not an IP address (e.g. 127.0.0.1)`);
    const sans = (o.san ?? []) as string[];
    for (const san of sans) {
      if (isIP(san) === 0 && !/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(san)) throw badInput(`--san ${JSON.stringify(san.slice(0, 80))} is neither an IP address nor a DNS name`);
      if (san === "0.0.0.0" || san === "::") throw badInput(`--san ${san} is not an address a client can reach: give the machine's address or name`);
    }
    if ((o.listen === "0.0.0.0" || o.listen === "::") && sans.length === 0) throw badInput(`--listen ${o.listen} listens on every interface: say how clients reach it with --san <address or name> (e.g. --san 10.0.0.1)`);
    const maxLifetimeMs = parseDuration(o.maxLifetime, { flag: "--max-lifetime", max: 825 * 86_400_000 });
    const defaultLifetimeMs = parseDuration(o.defaultLifetime, { flag: "--default-lifetime" });
    const leaseMs = parseDuration(o.lease, { flag: "--lease", max: 3_600_000 });
    if (defaultLifetimeMs > maxLifetimeMs) throw badInput(`--default-lifetime ${o.defaultLifetime} is longer than --max-lifetime ${o.maxLifetime}`);
    const rate = (flag: string, v: string) => {
      if (!/^\d{1,6}$/.test(v) || Number(v) < 1) throw badInput(`${flag} ${JSON.stringify(v)} is not a whole number of requests per minute (at least 1)`);
      return { capacity: Number(v), perMinute: Number(v) };
    };
    const limits = { perAddress: rate("--rate-per-address", o.ratePerAddress), perName: rate("--rate-per-name", o.ratePerName) };
    const retentionMs = o.retention === "off" ? null : parseDuration(o.retention, { flag: "--retention", min: 0, max: 100 * 365 * 86_400_000 });
    const { startAdmin, isLoopback, AdminHostError } = await import("../lib/admin-http.ts");
    // An empty MESH_CA_ADMIN_PORT is unset (a script's `MESH_CA_ADMIN_PORT=$PORT` with no PORT), not a bad port.
    const [adminFrom, adminPort] = o.adminPort !== undefined ? ["--admin-port", o.adminPort as string] : ["MESH_CA_ADMIN_PORT", process.env.MESH_CA_ADMIN_PORT || undefined];
    if (adminPort !== undefined && (!/^\d{1,5}$/.test(adminPort) || Number(adminPort) > 65535)) throw badInput(`${adminFrom} ${JSON.stringify(adminPort)} is not a TCP port (0-65535)`);
    if (!isLoopback(o.adminHost)) throw badInput(new AdminHostError(o.adminHost).message);
    // Listened for before anything starts: a SIGTERM that comes as soon as ca.started is logged still stops it cleanly.
    const stopped = new Promise<NodeJS.Signals>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    let server: Awaited<ReturnType<typeof CaServer.start>>;
    try {
      server = await CaServer.start({ ca, host: o.listen, names: sans, port: Number(o.port), defaultLifetimeMs, maxLifetimeMs, limits, leaseMs, retentionMs });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") throw new CaError("REFUSED", `cannot listen on ${o.listen}:${o.port} (${code}): pick another --port or --listen`);
      throw err;
    }
    let admin: Awaited<ReturnType<typeof startAdmin>> | undefined;
    if (adminPort !== undefined) {
      try {
        admin = await startAdmin({ exposition: server.metrics.registry, port: Number(adminPort), host: o.adminHost, healthy: () => server.listening });
      } catch (err) {
        await server.close();
        throw new CaError("REFUSED", `cannot listen on ${o.adminHost}:${adminPort} for the admin listener (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): pick another --admin-port`);
      }
      server.log.info({ event: "admin.listening", host: admin.host, port: admin.port, url: admin.url }, `CA admin (metrics, healthz) on ${admin.url}`);
    }
    console.error(`CA serving EST on ${server.url}  (Ctrl-C stops it)`);
    console.error(`  trust it with ${shown(ca.layout.bundle)}: curl --cacert ${shown(ca.layout.bundle)} ${server.url}/.well-known/est/cacerts`);
    const signal = await stopped;
    server.log.info({ event: "ca.stopped", signal }, "CA server stopped");
    await Promise.all([server.close(), admin?.close()]);
  }));

  // --- CA rotation against the online mesh (docs/rotation.md) ----------------------
  help(stateful(program.command("rotate").description("rotate the root against the online mesh: prepare, activate, retire, each gate passed on evidence in the ledger"))
    .option("--timeout <duration>", "how long each gate may wait before the run stops (state kept; run again to carry on)", "15m")
    .option("--interval <duration>", "how often a waiting gate reads the ledger", "1s")
    .option("--name <name>", "the new generation's name (default: the first root's name + \" G<n>\")")
    .option("--json", "JSON lines (rotate.gate events) instead of text")
    .option("--in-use", "gate 3 also waits until every enrolled identity has presented its new certificate on a cacerts poll (kept when resuming)")
    .option("--status", "print where the rotation is and who its gate waits for, change nothing"), [
    "rotate", "rotate --timeout 2h --json >> logs/rotate.log", "rotate --status",
  ]).action((o) => withCa(o, async (ca) => {
    const rotation = await import("./rotation.ts");
    const { parseDuration } = await import("./duration.ts");
    const timeoutMs = parseDuration(o.timeout, { flag: "--timeout", max: 30 * 86_400_000 });
    const intervalMs = parseDuration(o.interval, { flag: "--interval", max: 3_600_000 });
    const names = (ws: { name: string; why: string }[]) => ws.slice(0, 20).map((w) => `    ${w.name}  ${w.why}`).concat(ws.length > 20 ? [`    … and ${ws.length - 20} more`] : []);
    if (o.status) {
      const row = ca.ledger.unfinishedRotation();
      if (!row) {
        if (o.json) process.stdout.write(JSON.stringify({ rotation: null }) + "\n");
        else console.log("No rotation in progress (start one: npm run ca -- rotate)");
        return;
      }
      const v = rotation.currentVerdict(ca, row);
      if (o.json) { process.stdout.write(JSON.stringify({ rotation: row, verdict: v }, null, 2) + "\n"); return; }
      console.log(`Rotation ${row.id}: generation ${row.from_generation} → ${row.to_generation}, at gate ${rotation.GATE_NUMBER[row.phase as keyof typeof rotation.GATE_NUMBER] ?? 3}/3 (${row.phase}), started ${row.started_at}${row.owner ? `, run by ${row.owner}` : ", no run in progress"}`);
      if (v) {
        console.log(v.passed ? `  the gate would pass now (${v.total} looked at)` : `  waiting for ${v.waitingFor.length} of ${v.total}:`);
        for (const l of names(v.waitingFor)) console.log(l);
        for (const n of v.notes) console.log(`  note: ${n}`);
      }
      return;
    }
    const { pino } = await import("pino");
    const log: EventLogger | null = o.json ? pino({ base: { service: "ca" }, timestamp: pino.stdTimeFunctions.isoTime }) : null;
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    try {
      await rotation.runRotation(ca, {
        timeoutMs, intervalMs, name: o.name, signal: ac.signal, inUse: o.inUse,
        onEvent: (e) => {
          if (log) {
            const { msg, ...fields } = e;
            log[e.state === "timeout" ? "error" : "info"](fields, msg);
            return;
          }
          const out = e.state === "timeout" ? console.error : console.log;
          out(`gate ${rotation.GATE_NUMBER[e.gate]}/3 ${e.gate.padEnd(8)} ${e.state.padEnd(8)} ${e.msg}`);
          for (const l of names(e.waitingFor.map((name) => ({ name, why: e.why[name] ?? "" })))) out(l);
        },
      });
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
  }));

  return program;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0) {
    console.log(USAGE);
    return 0;
  }
  const program = buildProgram();
  const failed: { cmd?: Command } = {};
  configure(program, failed);
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.exitCode === 0) return 0;
      // A command that needs a subcommand (`generation`) was given none: commander has printed its
      // help to stderr; that is a usage error, like any other.
      if (err.code === "commander.help") return EXIT.USAGE;
      const where = commandPath(failed.cmd);
      console.error(`error: ${err.message.replace(/^error: /, "").replace(/\n/g, " ")} (see: npm run ca -- ${where ? `${where} ` : ""}--help)`);
      return EXIT.USAGE;
    }
    if (err instanceof CaError) {
      if (err.message) console.error(`error: ${err.message}`);
      return EXIT[err.code];
    }
    console.error(`error: unexpected failure: ${(err as Error).message}${process.env.MESH_DEBUG ? `\n${(err as Error).stack}` : " (set MESH_DEBUG=1 for details)"}`);
    return EXIT.INTERNAL;
  }
}

process.exitCode = await main(process.argv.slice(2));
