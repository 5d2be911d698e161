// ca issue: a key and a certificate for a service name.
import type { Command } from "commander";
import { issuedSummary } from "../format.ts";
import { CA_KEY, help } from "./exits.ts";
import { allowWildcardOption, collect, daysOption, keyTypeOption, stateful } from "./flags.ts";
import { warn, withCa } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(program.command("issue").description("make a key and certificate for a service name"))
      .requiredOption("--domain <name>", "the service's DNS name (CN and first SAN)")
      .addOption(daysOption("90"))
      .option("--dns <name>", "another DNS name (repeatable)", collect)
      .option("--ip <address>", "an IP address SAN (repeatable)", collect)
      .addOption(keyTypeOption("key algorithm", "ec-p256"))
      .addOption(allowWildcardOption()),
    ["issue --domain payment.internal", "issue --domain api.internal --days 30 --dns api --ip 127.0.0.1"],
    {
      3: "refused: the name has a valid certificate already (renew it), or a rule forbids it (nothing was changed)",
      4: CA_KEY,
    },
  ).action((o) =>
    withCa(o, async (ca) => {
      const c = await ca.issue({
        domain: o.domain,
        days: o.days,
        dns: o.dns,
        ip: o.ip,
        keyType: o.keyType,
        allowWildcard: o.allowWildcard,
      });
      console.log(issuedSummary("Issued", c, ca.now()));
      warn(c.warnings);
    }),
  );
}
