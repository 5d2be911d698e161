// ca crl: re-sign every CRL and rewrite crls.pem.
import type { Command } from "commander";
import { longDate, shown } from "../format.ts";
import { CA_KEY, help } from "./exits.ts";
import { stateful } from "./flags.ts";
import { withCa } from "./session.ts";

export function register(program: Command): void {
  help(stateful(program.command("crl").description("re-sign every CRL and rewrite crls.pem")), ["crl"], {
    4: CA_KEY,
  }).action((o) =>
    withCa(o, async (ca) => {
      for (const r of await ca.publishCrls())
        console.log(`Re-signed the CRL of ${r.name}: next update ${longDate(r.crlNextUpdate!)}`);
      console.log(`  services load ${shown(ca.layout.crls)}`);
    }),
  );
}
