// ca sign: a certificate for a service's CSR, so its key never leaves the service.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { badInput } from "../errors.ts";
import { issuedSummary } from "../format.ts";
import { CA_KEY, help } from "./exits.ts";
import { allowWildcardOption, daysOption, stateful } from "./flags.ts";
import { warn, withCa } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(program.command("sign").description("sign a service's CSR, so its key never leaves the service"))
      .requiredOption("--csr <file>", "a PEM CERTIFICATE REQUEST")
      .addOption(daysOption("90"))
      .addOption(allowWildcardOption()),
    [
      "sign --csr payment.csr",
      "sign --csr payment.csr --days 30   # make one: openssl req -new -key payment.key -subj /CN=payment.internal -out payment.csr",
    ],
    { 3: "refused: the name has a valid certificate already, or a rule forbids it (nothing was changed)", 4: CA_KEY },
  ).action((o) =>
    withCa(o, async (ca) => {
      let csrPem: string;
      try {
        csrPem = readFileSync(o.csr, "utf8");
      } catch (err) {
        throw badInput(`cannot read --csr ${o.csr} (${(err as NodeJS.ErrnoException).code})`);
      }
      const c = await ca.signCsr({ csrPem, days: o.days, allowWildcard: o.allowWildcard });
      console.log(issuedSummary("Signed", c, ca.now()));
      warn(c.warnings);
    }),
  );
}
