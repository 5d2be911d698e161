// Exit codes: the one table from error codes to exit codes, and each command's help section,
// which lists only the codes that command can return (its own words for 3 and 4).
import type { Command } from "commander";
import type { CaErrorCode } from "../errors.ts";

export const EXIT: Record<CaErrorCode | "USAGE" | "INTERNAL", number> = {
  VERIFY_FAILED: 1,
  BAD_INPUT: 2,
  USAGE: 2,
  ALREADY_EXISTS: 3,
  NOT_FOUND: 3,
  REFUSED: 3,
  NOT_INITIALISED: 4,
  CORRUPT: 4,
  BAD_PASSPHRASE: 4,
  INTERNAL: 70,
};

/** What a command may end with besides 0, 2 and 70, which every command can: code → its line. */
export type ExitLines = Partial<Record<1 | 3 | 4, string>>;

/** Exit 4 of a command that opens the CA and signs with its key. */
export const CA_KEY = "the CA folder is missing or unreadable, or its key's passphrase is wrong";
/** Exit 4 of a command that reads the ledger only (no key). */
export const CA_READ = "the CA folder is missing or unreadable";

const FIXED: Record<0 | 2 | 70, string> = {
  0: "done",
  2: "bad input: a flag, name or file is wrong (nothing was changed)",
  70: "an unexpected internal error",
};

export function exitCodesText(lines: ExitLines): string {
  const all: [number, string][] = [
    [0, FIXED[0]],
    [1, lines[1]],
    [2, FIXED[2]],
    [3, lines[3]],
    [4, lines[4]],
    [70, FIXED[70]],
  ].filter((e): e is [number, string] => e[1] !== undefined);
  return `Exit codes:\n${all.map(([code, text]) => `  ${String(code).padEnd(3)} ${text}`).join("\n")}`;
}

/** The exit codes each command's help lists (test/ca-cli.test.ts holds every refusal it provokes to them). */
const declared = new WeakMap<Command, number[]>();

export function listedExits(cmd: Command): number[] | undefined {
  return declared.get(cmd);
}

/** Adds EXAMPLES and EXIT CODES to a command's help (step's habit: every command has both). */
export function help(cmd: Command, examples: string[], exits: ExitLines): Command {
  declared.set(
    cmd,
    [0, 2, 70, ...Object.keys(exits).map(Number)].sort((a, b) => a - b),
  );
  return cmd.addHelpText(
    "after",
    `\nExamples:\n${examples.map((e) => `  $ npm run ca -- ${e}`).join("\n")}\n\n${exitCodesText(exits)}`,
  );
}
