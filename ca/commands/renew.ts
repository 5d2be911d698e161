// ca renew: a new key and certificate for a name; the old one becomes SUPERSEDED.
import type { Command } from "commander";
import { issuedSummary } from "../format.ts";
import { CA_KEY, help } from "./exits.ts";
import { daysOption, keyTypeOption, stateful } from "./flags.ts";
import { warn, withCa } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(program.command("renew").description("new key and certificate for a name; the old one becomes SUPERSEDED"))
      .requiredOption("--domain <name>", "the name to renew")
      .addOption(daysOption("90"))
      .addOption(keyTypeOption("key algorithm (default: the old one's)")),
    ["renew --domain payment.internal", "renew --domain payment.internal --days 30"],
    { 3: "refused: no certificate for that name, or it is revoked (nothing was changed)", 4: CA_KEY },
  ).action((o) =>
    withCa(o, async (ca) => {
      const c = await ca.renew({ domain: o.domain, days: o.days, keyType: o.keyType });
      console.log(issuedSummary("Renewed", c, ca.now()));
      warn(c.warnings);
    }),
  );
}
