// Key pairs: generation per key type, PKCS#8 PEM export (optionally encrypted
// with a passphrase through node:crypto) and import back into WebCrypto.
import {
  KeyObject,
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateNodeKeyPair,
  webcrypto,
} from "node:crypto";
import { ecKeyPair } from "./ec-key-der.ts";
import { CaError, badInput } from "./errors.ts";

// Node's WebCrypto, as ./x509.ts hands it to @peculiar/x509; taken from there, this module
// (and the CLI, for KEY_TYPES) would load that library on every command.
const subtle = webcrypto.subtle as unknown as SubtleCrypto;

export const KEY_TYPES = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "ed25519"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

interface KeyProfile {
  generate: RsaHashedKeyGenParams | EcKeyGenParams | Algorithm;
  /** How this key signs certificates and CRLs. */
  signing: Algorithm | EcdsaParams;
}

const rsa = (bits: number): KeyProfile => ({
  generate: {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: bits,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  } as RsaHashedKeyGenParams,
  signing: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as Algorithm,
});

const PROFILES: Record<KeyType, KeyProfile> = {
  "ec-p256": {
    generate: { name: "ECDSA", namedCurve: "P-256" },
    signing: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
  },
  "ec-p384": {
    generate: { name: "ECDSA", namedCurve: "P-384" },
    signing: { name: "ECDSA", hash: "SHA-384" } as EcdsaParams,
  },
  "rsa-2048": rsa(2048),
  "rsa-3072": rsa(3072),
  ed25519: { generate: { name: "Ed25519" }, signing: { name: "Ed25519" } },
};

export function validateKeyType(value: string): KeyType {
  if ((KEY_TYPES as readonly string[]).includes(value)) return value as KeyType;
  throw badInput(`--key-type ${JSON.stringify(value)} is not supported: use one of ${KEY_TYPES.join(", ")}`);
}

export function signingAlgorithm(type: KeyType): Algorithm | EcdsaParams {
  return PROFILES[type].signing;
}

export async function generateKeyPair(type: KeyType): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(PROFILES[type].generate, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** A leaf's key pair as its certificate and its file need it: the SPKI DER and the PKCS#8 PEM. */
export interface EncodedKeyPair {
  spki: Buffer;
  pkcs8Pem: string;
}

// The same key types as PROFILES, in node:crypto's words.
const NODE_KEYS: Record<KeyType, { type: "ec" | "rsa" | "ed25519"; options: object }> = {
  "ec-p256": { type: "ec", options: { namedCurve: "P-256" } },
  "ec-p384": { type: "ec", options: { namedCurve: "P-384" } },
  "rsa-2048": { type: "rsa", options: { modulusLength: 2048, publicExponent: 0x10001 } },
  "rsa-3072": { type: "rsa", options: { modulusLength: 3072, publicExponent: 0x10001 } },
  ed25519: { type: "ed25519", options: {} },
};

/**
 * A leaf's key pair, as its certificate and file need it. The same OpenSSL keys as
 * generateKeyPair's, without the CryptoKey objects and the two exports on the main thread
 * that issuing then needed (KeyObject.from, SPKI and PKCS#8 encoding: 30% of the main
 * thread's time with eight issuances in flight, docs/bench.md): EC keys are written by hand
 * (ec-key-der.ts), the others generated and encoded on libuv's thread pool.
 */
export function generateLeafKey(type: KeyType): Promise<EncodedKeyPair> {
  // EC keys (the mesh's): encoded by hand, without OpenSSL's encoders (ec-key-der.ts).
  if (type === "ec-p256") return Promise.resolve(ecKeyPair("P-256"));
  if (type === "ec-p384") return Promise.resolve(ecKeyPair("P-384"));
  const { type: kind, options } = NODE_KEYS[type];
  return new Promise((resolve, reject) => {
    generateNodeKeyPair(
      kind as "ec",
      {
        ...(options as { namedCurve: string }),
        publicKeyEncoding: { type: "spki", format: "der" },
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
      },
      (err, spki, pkcs8Pem) => (err ? reject(err) : resolve({ spki, pkcs8Pem })),
    );
  });
}

/** PKCS#8 PEM; encrypted with AES-256 when a passphrase is given. */
export async function exportPrivateKey(key: CryptoKey, passphrase?: string): Promise<string> {
  const obj = KeyObject.from(key);
  const pem = passphrase
    ? obj.export({ format: "pem", type: "pkcs8", cipher: "aes-256-cbc", passphrase })
    : obj.export({ format: "pem", type: "pkcs8" });
  return pem.toString();
}

export function isEncryptedPem(pem: string): boolean {
  return pem.includes("BEGIN ENCRYPTED PRIVATE KEY");
}

/** The key type of a KeyObject or public key, as this CA names it. */
export function keyTypeOf(obj: KeyObject): KeyType {
  const d = obj.asymmetricKeyDetails ?? {};
  switch (obj.asymmetricKeyType) {
    case "ec":
      if (d.namedCurve === "prime256v1") return "ec-p256";
      if (d.namedCurve === "secp384r1") return "ec-p384";
      break;
    case "rsa":
      if (d.modulusLength === 2048) return "rsa-2048";
      if (d.modulusLength === 3072) return "rsa-3072";
      break;
    case "ed25519":
      return "ed25519";
  }
  if (obj.asymmetricKeyType === "ec") {
    // Named, so that a P-192 or secp256k1 key is not mistaken for a bad signature (WebCrypto cannot verify either).
    const nist: Record<string, string> = { prime192v1: "P-192", secp224r1: "P-224", secp521r1: "P-521" };
    const curve = d.namedCurve
      ? nist[d.namedCurve]
        ? `${nist[d.namedCurve]} (${d.namedCurve})`
        : d.namedCurve
      : "(unnamed)";
    throw badInput(
      `unsupported curve ${curve}: this CA signs EC keys on P-256 (prime256v1) or P-384 (secp384r1) only; or use ${KEY_TYPES.filter((k) => !k.startsWith("ec-")).join(", ")}`,
    );
  }
  throw badInput(
    `unsupported key (${obj.asymmetricKeyType} ${d.namedCurve ?? d.modulusLength ?? ""}): use one of ${KEY_TYPES.join(", ")}`,
  );
}

/**
 * Loads a PKCS#8 PEM private key for signing. `where` names the file for the
 * error messages a user sees.
 */
export async function importSigningKey(
  pem: string,
  where: string,
  passphrase?: string,
): Promise<{ key: CryptoKey; type: KeyType; spki: Buffer }> {
  let obj: KeyObject;
  if (isEncryptedPem(pem) && !passphrase) {
    throw new CaError(
      "BAD_PASSPHRASE",
      `the CA key ${where} is encrypted: pass --passphrase-file FILE or set MESH_CA_PASSPHRASE`,
    );
  }
  try {
    obj = createPrivateKey({ key: pem, format: "pem", passphrase });
  } catch (err) {
    if (isEncryptedPem(pem))
      throw new CaError("BAD_PASSPHRASE", `cannot decrypt the CA key ${where}: the passphrase is wrong`);
    throw new CaError(
      "CORRUPT",
      `the key ${where} is not a readable private key (${(err as Error).message}); restore it from your backup`,
    );
  }
  const type = keyTypeOf(obj);
  const der = obj.export({ format: "der", type: "pkcs8" });
  const key = await subtle.importKey("pkcs8", der, PROFILES[type].generate as Algorithm, false, ["sign"]);
  const spki = createPublicKey(obj).export({ format: "der", type: "spki" });
  return { key, type, spki };
}

/** This CA's name for the type of a certificate's or CSR's public key. */
export function publicKeyType(spki: ArrayBuffer): KeyType {
  return keyTypeOf(createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }));
}
