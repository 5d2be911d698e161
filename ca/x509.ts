// The one place @peculiar/x509 is loaded, and only when first used: it needs reflect-metadata
// first and Node's WebCrypto as its provider, and with asn1-schema it is ~20 MB of a process's
// resident memory (docs/bench.md), which `ca serve` at rest does without: its issuance path is
// ca/leaf-der.ts and ca/csr.ts. The CLI's rich paths and the tests use it as before; the first
// property read of `x509` loads it (CommonJS builds, one instance per process: ./asn1.ts gives
// the asn1 packages of the same instance, so objects pass between them).
import { webcrypto } from "node:crypto";
import { createRequire } from "node:module";
import type * as Asn1Schema from "@peculiar/asn1-schema";
import type * as Asn1X509 from "@peculiar/asn1-x509";
import type * as X509 from "@peculiar/x509";
import { derToPem } from "../lib/pem.ts";

const require = createRequire(import.meta.url);
let loaded: typeof X509 | undefined;

function load(): typeof X509 {
  if (!loaded) {
    require("reflect-metadata");
    const lib = require("@peculiar/x509") as typeof X509;
    lib.cryptoProvider.set(webcrypto as unknown as Crypto);
    loaded = lib;
  }
  return loaded;
}

/** A module loaded on the first read of one of its properties. */
function lazy<T extends object>(get: () => T): T {
  return new Proxy({} as T, {
    get: (_, key) => (get() as Record<string | symbol, unknown>)[key],
    has: (_, key) => key in get(),
  });
}

/** @peculiar/x509, loaded on first use. */
export const x509: typeof X509 = lazy(load);
/** @peculiar/asn1-schema and asn1-x509: the instances @peculiar/x509 itself uses, loaded on first use. */
export const asn1Schema: typeof Asn1Schema = lazy(() => withX509("@peculiar/asn1-schema"));
export const asn1X509: typeof Asn1X509 = lazy(() => withX509("@peculiar/asn1-x509"));

function withX509<T>(name: string): T {
  load(); // reflect-metadata before any asn1 class is defined
  return require(name) as T;
}

// The library's classes as types, under the same name as the value (`x509.X509Certificate`).
export declare namespace x509 {
  type X509Certificate = X509.X509Certificate;
  type X509Certificates = X509.X509Certificates;
  type X509Crl = X509.X509Crl;
  type Extension = X509.Extension;
  type PublicKey = X509.PublicKey;
  type Name = X509.Name;
  type JsonName = X509.JsonName;
  type JsonGeneralNames = X509.JsonGeneralNames;
  type Pkcs10CertificateRequest = X509.Pkcs10CertificateRequest;
  type SubjectAlternativeNameExtension = X509.SubjectAlternativeNameExtension;
  type AuthorityKeyIdentifierExtension = X509.AuthorityKeyIdentifierExtension;
  type SubjectKeyIdentifierExtension = X509.SubjectKeyIdentifierExtension;
  type BasicConstraintsExtension = X509.BasicConstraintsExtension;
  type KeyUsagesExtension = X509.KeyUsagesExtension;
  type ExtendedKeyUsageExtension = X509.ExtendedKeyUsageExtension;
  type CRLDistributionPointsExtension = X509.CRLDistributionPointsExtension;
  type KeyUsageFlags = X509.KeyUsageFlags;
  type X509CrlReason = X509.X509CrlReason;
}

export const subtle = webcrypto.subtle as unknown as SubtleCrypto;

/** PEM for a CRL that OpenSSL and Node accept (x509's own writes "BEGIN CRL"). */
export function crlToPem(crl: X509.X509Crl | Uint8Array): string {
  return derToPem(crl instanceof Uint8Array ? crl : new Uint8Array(crl.rawData), "X509 CRL");
}

export function certToPem(cert: X509.X509Certificate): string {
  return `${cert.toString("pem").trimEnd()}\n`;
}

/** Serials compare lower-case hex without leading zeros (x509 and Node disagree on case). */
export function normalSerial(serial: string): string {
  const s = serial.toLowerCase().replace(/^0+/, "");
  return s === "" ? "0" : s;
}
