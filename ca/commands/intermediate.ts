// ca intermediate: an issuing CA under a root generation.
import type { Command } from "commander";
import { issuerLine, shown } from "../format.ts";
import { CA_KEY, help } from "./exits.ts";
import { collect, daysOption, keyTypeOption, parseGeneration, stateful } from "./flags.ts";
import { withCa } from "./session.ts";
import { caCommand } from "./suggest.ts";

export function register(program: Command): void {
  help(
    stateful(
      program
        .command("intermediate")
        .description(
          "create an issuing CA under a root (default: the signing generation's; it then signs new certificates)",
        ),
    )
      .requiredOption("--name <name>", "the issuing CA's name")
      .addOption(daysOption("1825"))
      .option("--permit-dns <suffix>", "name constraint: only names under this suffix (repeatable)", collect)
      .addOption(keyTypeOption("key algorithm", "ec-p256"))
      .option(
        "--generation <n>",
        "create it under this root generation (not retired); it signs only once that generation does (generation use N)",
      ),
    [
      `intermediate --name "Acme Issuing CA"`,
      `intermediate --name "Acme Issuing CA" --permit-dns .internal`,
      `intermediate --name "Acme Issuing CA G2" --permit-dns .internal --generation 2   # then: generation use 2`,
    ],
    { 3: "refused: its root's name constraints cannot be carried over (nothing was changed)", 4: CA_KEY },
  ).action((o) =>
    withCa(o, async (ca) => {
      const generation = o.generation === undefined ? undefined : parseGeneration(o.generation);
      const row = await ca.createIntermediate({
        name: o.name,
        days: o.days,
        permitDns: o.permitDns,
        keyType: o.keyType,
        generation,
      });
      const paths = ca.layout.issuer(row.id);
      console.log(`Created the issuing CA ${issuerLine(row)}`);
      console.log(`  key   ${shown(paths.key)}  (0600: keep it secret)`);
      console.log(`  cert  ${shown(paths.cert)}`);
      if (ca.signerId() === row.id) console.log(`  new certificates are signed by it and carry it in their chain`);
      else
        console.log(
          `  generation ${row.generation} does not sign yet: ${caCommand(`generation use ${row.generation}`)} makes this issuing CA the signer`,
        );
    }),
  );
}
