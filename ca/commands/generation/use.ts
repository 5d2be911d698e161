// ca generation use: make a generation sign new certificates.
import type { Command } from "commander";
import { issuerLine } from "../../format.ts";
import { CA_READ, help } from "../exits.ts";
import { parseGeneration, stateful } from "../flags.ts";
import { withCa } from "../session.ts";
import { caCommand } from "../suggest.ts";

export function register(generation: Command): void {
  help(
    stateful(
      generation
        .command("use")
        .description("make a generation sign new certificates")
        .argument("<n>", "generation number"),
    ),
    ["generation use 2"],
    { 3: "refused: no such generation, or it is retired (nothing was changed)", 4: CA_READ },
  ).action((n, o) =>
    withCa(o, (ca) => {
      const row = ca.useGeneration(parseGeneration(n));
      console.log(`New certificates are now signed by ${issuerLine(row)}`);
      if (ca.issuerRow(`root-${row.generation}`).state === "pending") {
        console.error(
          `warning: generation ${row.generation} is not in the trust bundle yet; publish it first (${caCommand("bundle")}) or peers will reject what it signs`,
        );
      }
    }),
  );
}
