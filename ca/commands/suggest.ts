// The commands a message suggests ("run: npm run ca -- bundle") must work when pasted: after
// `--dir other`, the suggestion carries `--dir other` too, and paths under the current folder
// are shown relative to it, as the README shows them.
import { relative, sep } from "node:path";
import type { Command } from "commander";

let dirFlag = "";

/** Called before a command runs: remembers a --dir given on the command line (an env var carries over by itself). */
export function rememberDir(cmd: Command): void {
  const dir = cmd.opts().dir as string | undefined;
  dirFlag = dir && cmd.getOptionValueSource("dir") === "cli" ? ` --dir ${shellWord(dir)}` : "";
}

function shellWord(s: string): string {
  return /^[\w./@%+=:,-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** `npm run ca -- <command>` with the --dir the user gave, for a line printed by a command. */
export function caCommand(command: string): string {
  return `npm run ca -- ${command}${dirFlag}`;
}

/** A message from the CA, ready to show: its suggestions carry --dir, its paths are relative where they can be. */
export function forUser(message: string): string {
  let text = message;
  // After the command and its generation number, if any: "generation use 2 --dir x", "crl --dir x".
  if (dirFlag) text = text.replace(/npm run ca -- (generation \w+(?: (?:\d+|N)\b)?|\w+)/g, (m) => m + dirFlag);
  const cwd = process.cwd() + sep;
  // Only whole paths: at the start, or after a space, quote or parenthesis.
  return text.replace(/(^|[\s("'=])(\/[^\s)"',;]*)/g, (m, pre: string, path: string) =>
    path.startsWith(cwd) ? pre + relative(process.cwd(), path) : m,
  );
}
