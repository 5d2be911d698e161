// The CA's command line: `npm run ca -- <command>`. The commands are in ca/commands/, one file
// each; error codes map to exit codes here and only here (ca/commands/exits.ts holds the table);
// an expected failure is one line, never a trace.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type Command, CommanderError, type Option } from "commander";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";
import { buildProgram } from "./commands/index.ts";
import { EXIT } from "./commands/exits.ts";
import { forUser, rememberDir } from "./commands/suggest.ts";
import { CaError } from "./errors.ts";

const FIRST_STEPS = `  npm run ca -- init --name "Acme Corp CA"           create the root CA in ./pki
  npm run ca -- issue --domain payment.internal      key + certificate for a service`;

/** Once a CA exists (mesh:up makes one), `init` would fail: show what works on it instead. */
const EXISTING_STEPS = (
  dir: string,
) => `  npm run ca -- status                               the CA in ${dir}: generations, CRLs, counts
  npm run ca -- issue --domain payment.internal      key + certificate for a service`;

function usage(): string {
  const dir = process.env.MESH_PKI_DIR || "./pki";
  const exists = existsSync(join(dir, "ca.db"));
  return `mtls-mesh CA: a private certificate authority for the mesh.

${exists ? EXISTING_STEPS(dir) : FIRST_STEPS}
  npm run ca -- list                                 every certificate and its status
  npm run ca -- revoke --domain payment.internal     revoke it and re-sign the CRL
  npm run ca -- verify --cert pki/certs/payment.internal.crt

Online CA (EST, see docs/est.md):
  npm run ca -- serve --port 7400                    run the CA as an HTTPS (EST) server
  npm run ca -- token --domain shipping.internal     one-time enrolment token for a name

More: ${exists ? "init, " : ""}intermediate, sign, renew, crl, generation, bundle, status, serve, token, rotate, prune, store-copy.
Every command has --help with examples and exit codes.`;
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
  cmd
    .showSuggestionAfterError(true)
    .exitOverride((err) => {
      failed.cmd = cmd;
      throw err;
    })
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
  for (const sub of cmd.commands) configure(sub, failed);
}

/** "generation add" for the failing command, so the error can point at its own --help. */
function commandPath(cmd: Command | undefined): string {
  const names: string[] = [];
  for (let c = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0) {
    console.log(usage());
    return 0;
  }
  const program = buildProgram();
  const failed: { cmd?: Command } = {};
  configure(program, failed);
  program.hook("preAction", (_root, action) => rememberDir(action));
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
      console.error(
        `error: ${err.message.replace(/^error: /, "").replace(/\n/g, " ")} (see: npm run ca -- ${where ? `${where} ` : ""}--help)`,
      );
      return EXIT.USAGE;
    }
    if (err instanceof CaError) {
      if (err.message) console.error(`error: ${forUser(err.message)}`);
      return EXIT[err.code];
    }
    console.error(
      `error: unexpected failure: ${(err as Error).message}${process.env.MESH_DEBUG ? `\n${(err as Error).stack}` : " (set MESH_DEBUG=1 for details)"}`,
    );
    return EXIT.INTERNAL;
  }
}

// First, before anything is written: `ca list | head -1` ends quietly.
endQuietlyOnClosedOutput();
process.exitCode = await main(process.argv.slice(2));
