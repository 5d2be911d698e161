// ca revoke: revoke a certificate and re-sign its CA's CRL.
import { type Command, Option } from "commander";
import { REVOCATION_REASONS } from "../../lib/crl.ts";
import { badInput } from "../errors.ts";
import { shown } from "../format.ts";
import { CA_KEY, help } from "./exits.ts";
import { stateful } from "./flags.ts";
import { withCa } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(program.command("revoke").description("revoke a certificate and re-sign its CA's CRL"))
      .argument("[domain]", "the name whose current certificate to revoke")
      .option("--domain <name>", "the name whose current certificate to revoke")
      .option("--serial <hex>", "revoke this exact certificate")
      .addOption(new Option("--reason <reason>", "RFC 5280 reason").choices(REVOCATION_REASONS).default("unspecified")),
    [
      "revoke --domain payment.internal",
      "revoke payment.internal --reason keyCompromise",
      "revoke --serial 4815b364aa70287518195df6c61d90ee",
    ],
    { 3: "refused: no such name or serial, or it is revoked already (nothing was changed)", 4: CA_KEY },
  ).action((arg, o) =>
    withCa(o, async (ca) => {
      const domain = o.domain ?? arg;
      if (!domain && !o.serial) throw badInput("say what to revoke: --domain NAME or --serial HEX");
      if (domain && o.serial) throw badInput("give --domain or --serial, not both");
      const row = await ca.revoke({ domain, serial: o.serial, reason: o.reason });
      console.log(`Revoked: ${row.name} (serial ${row.serial}, reason ${row.reason})`);
      console.log(`  CRL re-signed; services load ${shown(ca.layout.crls)}`);
    }),
  );
}
