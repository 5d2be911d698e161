// ca generation retire: drop a generation from bundle.pem and crls.pem.
import type { Command } from "commander";
import { shown } from "../../format.ts";
import { CA_READ, help } from "../exits.ts";
import { parseGeneration, stateful } from "../flags.ts";
import { withCa } from "../session.ts";

export function register(generation: Command): void {
  help(
    stateful(
      generation
        .command("retire")
        .description("drop a generation from bundle.pem and crls.pem")
        .argument("<n>", "generation number")
        .option("--force", "retire even though valid certificates still chain to it (they will be rejected)"),
    ),
    ["generation retire 1"],
    {
      3: "refused: no such generation, it is retired already or still signs, or valid certificates chain to it (nothing was changed)",
      4: CA_READ,
    },
  ).action((n, o) =>
    withCa(o, (ca) => {
      const { retired, stillValid } = ca.retireGeneration(parseGeneration(n), { force: o.force });
      console.log(
        `Retired ${retired.name} (generation ${retired.generation}); ${shown(ca.layout.bundle)} and ${shown(ca.layout.crls)} no longer carry it`,
      );
      if (stillValid > 0)
        console.error(`warning: ${stillValid} valid certificate(s) still chain to it and will now be rejected`);
    }),
  );
}
