// ca bundle: publish bundle.pem, the trust anchors of the mesh.
import type { Command } from "commander";
import { issuerLine, shown } from "../format.ts";
import { CA_READ, help } from "./exits.ts";
import { stateful } from "./flags.ts";
import { withCa } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(program.command("bundle").description("publish bundle.pem: every root generation not retired")),
    ["bundle"],
    { 4: CA_READ },
  ).action((o) =>
    withCa(o, (ca) => {
      const roots = ca.publishBundle();
      console.log(`Published ${shown(ca.layout.bundle)} with ${roots.length} root(s):`);
      for (const r of roots) console.log(`  ${issuerLine(r)}`);
    }),
  );
}
