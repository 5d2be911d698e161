// ca init: root generation 1 in an empty state folder.
import type { Command } from "commander";
import { longDate, shown } from "../format.ts";
import { help } from "./exits.ts";
import { daysOption, keyTypeOption, openOptions, stateful } from "./flags.ts";

export function register(program: Command): void {
  help(
    stateful(
      program.command("init").description("create root generation 1 in the state folder (never overwrites a CA)"),
    )
      .requiredOption("--name <name>", "the CA's name (its certificate's CN)")
      .addOption(daysOption("3650"))
      .addOption(keyTypeOption("key algorithm", "ec-p256"))
      .option(
        "--trust-domain <domain>",
        "SPIFFE trust domain: every leaf carries the URI SAN spiffe://<domain>/<name> (default: internal, the mesh's domain)",
      ),
    [
      `init --name "Acme Corp CA"`,
      `init --name "Acme Corp CA" --key-type ec-p384 --days 7300 --passphrase-file ca.pass`,
      `init --name "Acme Corp CA" --trust-domain example.org`,
    ],
    { 3: "refused: a CA already exists in that folder (nothing was changed)" },
  ).action(async (o) => {
    const { CertificateAuthority } = await import("../authority.ts");
    const ca = await CertificateAuthority.init({
      ...openOptions(o),
      name: o.name,
      days: o.days,
      keyType: o.keyType,
      trustDomain: o.trustDomain,
    });
    const root = ca.issuerRow("root-1");
    console.log(`Created the CA ${root.name} in ${shown(ca.layout.dir)}`);
    console.log(
      `  root key     ${shown(ca.layout.root(1).key)}  (0600: KEEP IT SECRET${o.passphraseFile || process.env.MESH_CA_PASSPHRASE ? ", encrypted" : ""})`,
    );
    console.log(`  root cert    ${shown(ca.layout.root(1).cert)}`);
    console.log(`  trust bundle ${shown(ca.layout.bundle)}  (distribute to every client and service)`);
    console.log(`  CRLs         ${shown(ca.layout.crls)}`);
    console.log(`  expires      ${longDate(root.notAfter)}`);
    console.log(`  trust domain ${ca.trustDomain()}  (every leaf's SPIFFE ID: spiffe://${ca.trustDomain()}/<name>)`);
    ca.close();
  });
}
