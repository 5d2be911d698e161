// ca generation add: a new root generation, neither trusted nor signing yet.
import type { Command } from "commander";
import { issuerLine } from "../../format.ts";
import { CA_KEY, help } from "../exits.ts";
import { daysOption, keyTypeOption, stateful } from "../flags.ts";
import { withCa } from "../session.ts";
import { caCommand } from "../suggest.ts";

export function register(generation: Command): void {
  help(
    stateful(
      generation
        .command("add")
        .description("add a root generation with a distinct subject (not trusted or signing yet)"),
    )
      .option("--name <name>", 'its name (default: the first root\'s name + " G<n>")')
      .addOption(daysOption("3650"))
      .addOption(keyTypeOption()),
    ["generation add", `generation add --name "Acme Corp CA G2"`],
    { 4: CA_KEY },
  ).action((o) =>
    withCa(o, async (ca) => {
      const row = await ca.addGeneration({ name: o.name, days: o.days, keyType: o.keyType });
      console.log(`Added ${issuerLine(row)}`);
      console.log(`  not trusted yet: publish it with  ${caCommand("bundle")}`);
      console.log(`  not signing yet: switch with      ${caCommand(`generation use ${row.generation}`)}`);
    }),
  );
}
