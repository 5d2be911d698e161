// The command tree: one file per command (ca/commands/<command>.ts), as smallstep's step lays
// out its CLI; ca/cli.ts runs it and maps errors to exit codes.
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { register as bundle } from "./bundle.ts";
import { register as crl } from "./crl.ts";
import { register as generation } from "./generation/index.ts";
import { register as init } from "./init.ts";
import { register as intermediate } from "./intermediate.ts";
import { register as issue } from "./issue.ts";
import { register as list } from "./list.ts";
import { register as renew } from "./renew.ts";
import { register as revoke } from "./revoke.ts";
import { register as rotate } from "./rotate.ts";
import { register as serve } from "./serve.ts";
import { register as sign } from "./sign.ts";
import { register as prune } from "./prune.ts";
import { register as status } from "./status.ts";
import { register as storeCopy } from "./store-copy.ts";
import { register as token } from "./token.ts";
import { register as verify } from "./verify.ts";

/** The version from package.json: one small file read, no module loaded for it. Looks one level
 * further up too, so that a compiled copy of this file (dist/ca/commands/index.js) finds the same file. */
function packageVersion(): string {
  for (const rel of ["../../package.json", "../../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "mtls-mesh" && pkg.version) return pkg.version;
    } catch {
      // not there: try the next level
    }
  }
  return "unknown";
}

export function buildProgram(): Command {
  const program = new Command("ca")
    .description("A private certificate authority for the mTLS mesh")
    .showHelpAfterError(false)
    .version(packageVersion(), "-V, --version", "print the version and exit")
    .addHelpText(
      "after",
      "\nEvery command's --help lists its examples and the exit codes it can return (0 done, 2 bad input, 70 internal error, and its own).",
    );
  // In the order `ca --help` lists them: the everyday ones first.
  for (const add of [
    init,
    issue,
    sign,
    list,
    revoke,
    verify,
    renew,
    intermediate,
    crl,
    bundle,
    generation,
    status,
    token,
    serve,
    rotate,
    prune,
    storeCopy,
  ])
    add(program);
  return program;
}
