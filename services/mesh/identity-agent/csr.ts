// A new P-256 key and a PKCS#10 request for CN = SAN DNS = the service's name, with node:crypto
// only (no certificate library loaded into a running service). The key never leaves this process
// except into the state folder.
import { generateKeyPairSync, sign } from "node:crypto";
import { csrDer, csrInfo } from "./der.ts";

export interface KeyAndCsr {
  /** PKCS#8 PEM, for key.pem (0600). */
  keyPem: string;
  /** DER PKCS#10, for the EST body. */
  csr: Buffer;
}

export function newKeyAndCsr(dns: string): KeyAndCsr {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const info = csrInfo(dns, publicKey.export({ type: "spki", format: "der" }));
  const signature = sign("sha256", info, privateKey); // ECDSA, DER-encoded (r, s)
  return { keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), csr: csrDer(info, signature) };
}
