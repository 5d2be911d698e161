// ca status: generations, the signing CA, CRL freshness, counts.
import type { Command } from "commander";
import { shortDate, shown } from "../format.ts";
import { CA_READ, help } from "./exits.ts";
import { jsonOption, stateful } from "./flags.ts";
import { withView } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(program.command("status").description("generations, signing CA, bundle, CRL freshness, counts")).addOption(
      jsonOption("as JSON"),
    ),
    ["status", "status --json"],
    { 4: CA_READ },
  ).action((o) =>
    withView(o, (ca) => {
      const signer = ca.signerId();
      const counts = ca.ledger.counts(ca.now().toISOString());
      const gens = ca.generations();
      if (o.json) {
        const td = ca.trustDomainSetting();
        process.stdout.write(
          `${JSON.stringify(
            {
              dir: ca.layout.dir,
              trust_domain: td.trustDomain,
              trust_domain_source: td.source,
              signer,
              generations: gens,
              counts,
              warnings: ca.crlWarnings(),
            },
            null,
            2,
          )}\n`,
        );
        return;
      }
      console.log(`CA in ${shown(ca.layout.dir)}`);
      const td = ca.trustDomainSetting();
      console.log(
        `  trust domain ${td.trustDomain}${td.source === "default" ? " (the default: this CA was made before trust domains)" : ""}; SPIFFE IDs spiffe://${td.trustDomain}/<name>`,
      );
      for (const g of gens) {
        const state = { pending: "added, not yet trusted", published: "trusted (in bundle.pem)", retired: "retired" }[
          g.root.state
        ];
        console.log(`  generation ${g.generation}: ${g.root.name} — ${state}`);
        for (const r of [g.root, ...g.intermediates]) {
          const crl = r.crlNextUpdate ? `CRL #${r.crlNumber} until ${shortDate(r.crlNextUpdate)}` : "no CRL";
          console.log(
            `    ${r.id.padEnd(7)} ${r.kind.padEnd(12)} expires ${shortDate(r.notAfter)}  ${crl}${r.id === signer ? "  <- signs new certificates" : ""}`,
          );
        }
      }
      console.log(
        `  certificates: ${Object.entries(counts)
          .map(([k, v]) => `${v} ${k}`)
          .join(", ")}`,
      );
    }),
  );
}
