// The flags several commands share, each defined once (step's habit), and what they turn into:
// the state folder's open options, the clock, generation numbers.
import { readFileSync } from "node:fs";
import { type Command, Option } from "commander";
import type { OpenOptions } from "../authority.ts";
import { badInput } from "../errors.ts";
import { KEY_TYPES } from "../keys.ts";
import { parseStore } from "../store/url.ts";

export interface StateFlags {
  dir?: string;
  passphraseFile?: string;
  store?: string;
}

/** --dir, --passphrase-file and --store: every command that touches the state folder. */
export function stateful(cmd: Command): Command {
  return cmd
    .addOption(new Option("--dir <path>", "the CA state folder").env("MESH_PKI_DIR").default("./pki"))
    .option("--passphrase-file <file>", "file holding the CA key passphrase (or set MESH_CA_PASSPHRASE)")
    .addOption(
      new Option(
        "--store <url>",
        "where the ledger is: sqlite (ca.db in --dir) or postgres://user@host/db, shared by CA replicas; the password only from PGPASSWORD or ~/.pgpass (docs/est.md)",
      ).env("MESH_CA_STORE"),
    );
}

export const daysOption = (defaultDays: string) => new Option("--days <n>", "validity in days").default(defaultDays);

/** --key-type; without a default, the command picks (renew keeps the old key's type). */
export function keyTypeOption(what = "key algorithm", defaultType?: string): Option {
  const o = new Option("--key-type <type>", what).choices(KEY_TYPES);
  return defaultType ? o.default(defaultType) : o;
}

export const jsonOption = (what = "as JSON, for scripts") => new Option("--json", what);

export const allowWildcardOption = () => new Option("--allow-wildcard", "accept a *.name wildcard");

/** For repeatable flags: --dns a --dns b. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

export function parseGeneration(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1)
    throw badInput(`generation ${JSON.stringify(value)} is not a generation number (1, 2, …)`);
  return Number(value);
}

/** The CA's clock: now, or MESH_CA_NOW (for trying out expiry without waiting). */
export function clock(): () => Date {
  const fixed = process.env.MESH_CA_NOW;
  if (!fixed) return () => new Date();
  const d = new Date(fixed);
  if (Number.isNaN(d.getTime()))
    throw badInput(`MESH_CA_NOW=${JSON.stringify(fixed)} is not a date (use ISO 8601, e.g. 2027-01-31T12:00:00Z)`);
  return () => new Date(d);
}

export function openOptions(flags: StateFlags): OpenOptions {
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
