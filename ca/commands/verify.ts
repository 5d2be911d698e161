// ca verify: full RFC 5280 path validation of a certificate file.
import { type Command, Option } from "commander";
import { CaError, badInput } from "../errors.ts";
import { verifyReport } from "../format.ts";
import { help } from "./exits.ts";
import { clock, collect, stateful } from "./flags.ts";
import { withCa } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(
      program
        .command("verify")
        .description("full path validation: chain, CA flags, pathLen, EKU, name constraints, validity, revocation"),
    )
      .requiredOption("--cert <file>", "the certificate (with its chain) to check")
      .option("--at <date>", "check at this time instead of now (ISO 8601)")
      .addOption(
        new Option("--purpose <purpose>", "what it must be good for")
          .choices(["mesh", "server", "client"])
          .default("mesh"),
      )
      .option(
        "--name <name>",
        "the DNS name or IP address it must hold in its SANs (as openssl verify -verify_hostname / -verify_ip)",
      )
      .option(
        "--ca-file <file>",
        "trust the roots in this file instead of the CA folder's bundle.pem; the CA folder is then not read",
      )
      .option(
        "--crl-file <file>",
        "check revocation against the CRLs in this file (repeatable; one file may hold several) instead of crls.pem",
        collect,
      ),
    [
      "verify --cert pki/certs/payment.internal.crt",
      "verify --cert old.crt --at 2027-06-01",
      "verify --cert pki/certs/payment.internal.crt --name payment.internal",
      "verify --cert peer.crt --ca-file other-root.crt --purpose client   # revocation not checked: no CRL given",
      "verify --cert peer.crt --ca-file other-root.crt --crl-file other-crls.pem",
    ],
    {
      1: "the certificate failed a check (the report names it)",
      3: "refused: the CA folder's trust bundle is empty (publish one: npm run ca -- bundle)",
      4: "the CA folder is missing or unreadable (not with --ca-file, which reads no CA folder)",
    },
  ).action(async (o) => {
    const files = await import("../verify-files.ts");
    let at: Date | undefined;
    if (o.at) {
      at = new Date(o.at);
      if (Number.isNaN(at.getTime()))
        throw badInput(`--at ${JSON.stringify(o.at)} is not a date (use ISO 8601, e.g. 2027-06-01)`);
    }
    const crlFiles: string[] = o.crlFile ?? [];
    let result: Awaited<ReturnType<typeof files.verifyFiles>>;
    if (o.caFile) {
      // Every file is given: a foreign CA's certificate is checked without any CA folder.
      result = await files.verifyFiles({
        certFile: o.cert,
        caFile: o.caFile,
        crlFiles,
        at: at ?? clock()(),
        purpose: o.purpose,
        name: o.name,
      });
    } else {
      const pem = files.readFlagFile(o.cert, "--cert");
      const crlPem = crlFiles.length > 0 ? files.crlsIn(crlFiles).pem : undefined;
      let local: typeof result | undefined;
      await withCa(o, async (ca) => {
        local = await ca.verify({ pem, at, purpose: o.purpose, crlPem, name: o.name });
      });
      result = local!;
    }
    console.log(verifyReport(o.cert, result, crlFiles.length > 0 ? "--crl-file" : "crls.pem"));
    if (!result.ok) throw new CaError("VERIFY_FAILED", "");
  });
}
