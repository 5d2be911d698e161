// verify from files alone (--ca-file, --crl-file): no CA folder is read, so a
// certificate from a foreign CA can be checked anywhere. Every file the user
// names is read and parsed here, and a bad one is a one-line error naming it.
import { readFileSync } from "node:fs";
import { badInput } from "./errors.ts";
import { parseCertificates, parseCrls, verifyPath, type Purpose, type VerifyResult } from "./verify.ts";
import type { x509 } from "./x509.ts";

export function readFlagFile(file: string, flag: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw badInput(`cannot read ${flag} ${file} (${(err as NodeJS.ErrnoException).code})`);
  }
}

export function certificatesIn(file: string, flag: string): x509.X509Certificate[] {
  let certs: x509.X509Certificate[];
  try {
    certs = parseCertificates(readFlagFile(file, flag));
  } catch (err) {
    if ((err as { code?: string }).code === "BAD_INPUT") throw err;
    throw badInput(`${flag} ${file} holds a certificate that cannot be parsed`);
  }
  if (certs.length === 0) throw badInput(`${flag} ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return certs;
}

/** Every CRL in the given files (each may hold several); PEM text too, for the CA folder's own check. */
export function crlsIn(files: string[]): { crls: x509.X509Crl[]; pem: string } {
  const crls: x509.X509Crl[] = [];
  const pems: string[] = [];
  for (const file of files) {
    const pem = readFlagFile(file, "--crl-file");
    let found: x509.X509Crl[];
    try {
      found = parseCrls(pem);
    } catch {
      throw badInput(`--crl-file ${file} holds a CRL that cannot be parsed`);
    }
    if (found.length === 0) throw badInput(`--crl-file ${file} holds no PEM CRL (-----BEGIN X509 CRL-----)`);
    crls.push(...found);
    pems.push(pem);
  }
  return { crls, pem: pems.join("\n") };
}

/**
 * --ca-file mode: trust the self-signed roots of `caFile`; the path is built
 * from the certificate file's own chain (and any non-self-signed certificate
 * in `caFile`). Without CRL files revocation is not checked, and the result
 * says so rather than failing for want of a CRL nobody here can sign.
 */
export async function verifyFiles(opts: {
  certFile: string;
  caFile: string;
  crlFiles: string[];
  at: Date;
  purpose: Purpose;
  name?: string;
}): Promise<VerifyResult> {
  const certs = certificatesIn(opts.certFile, "--cert");
  const trusted = certificatesIn(opts.caFile, "--ca-file");
  const crls = opts.crlFiles.length > 0 ? crlsIn(opts.crlFiles).crls : undefined;
  return verifyPath({
    certs,
    trusted,
    crls,
    at: opts.at,
    purpose: opts.purpose,
    name: opts.name,
    crlHint: "the CRLs come from --crl-file: add that CA's current CRL",
  });
}
