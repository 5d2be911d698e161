// The one place @peculiar/x509 is loaded: it needs reflect-metadata first, and
// Node's WebCrypto as its provider.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { derToPem } from "../lib/pem.ts";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
export const subtle = webcrypto.subtle as unknown as SubtleCrypto;

/** PEM for a CRL that OpenSSL and Node accept (x509's own writes "BEGIN CRL"). */
export function crlToPem(crl: x509.X509Crl | Uint8Array): string {
  return derToPem(crl instanceof Uint8Array ? crl : new Uint8Array(crl.rawData), "X509 CRL");
}

export function certToPem(cert: x509.X509Certificate): string {
  return `${cert.toString("pem").trimEnd()}\n`;
}

/** Serials compare lower-case hex without leading zeros (x509 and Node disagree on case). */
export function normalSerial(serial: string): string {
  const s = serial.toLowerCase().replace(/^0+/, "");
  return s === "" ? "0" : s;
}
