// A teaching toggle (docs/toggles.md): a certificate and key an operator puts beside a service's
// identity, in a folder of their own, to make the running service present that (bad) identity
// instead of its own, in both its roles: as a server to its callers and as a client to its
// callees. Removing the folder puts the service's own identity back. The identity itself (the
// state folder's key.pem and cert.pem, which the identity agent renews) is never touched: the
// agent keeps renewing it while a toggle is on, and the restore serves whatever it holds then.
import { X509Certificate, createHash, createPrivateKey } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { createSecureContext } from "node:tls";
import { MeshError, messageOf } from "./errors.ts";
import { TLS_CIPHERS, type TlsMaterial } from "./material.ts";

export interface TogglePaths {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
  /** toggle.json: which kind of bad identity this is, for the log and the tools. */
  readonly about: string;
}

/** What toggle.json says: written by `npm run mesh:toggle`, read back for the log line. */
export interface ToggleAbout {
  readonly kind: string;
  readonly since?: string;
}

/**
 * Where a service's toggle lives, from where its identity's certificate is: online
 * (state/<service>/cert.pem) the folder `state/<service>/toggle/`; in file mode
 * (pki/certs/<name>.internal.crt, one folder for every name) `pki/toggles/<service>/`.
 */
export function toggleDirOf(identityCert: string, service: string): string {
  return basename(identityCert) === "cert.pem"
    ? join(dirname(identityCert), "toggle")
    : join(dirname(dirname(identityCert)), "toggles", service);
}

export function togglePaths(dir: string): TogglePaths {
  return { dir, cert: join(dir, "cert.pem"), key: join(dir, "key.pem"), about: join(dir, "toggle.json") };
}

export interface ToggleInForce {
  readonly kind: string;
  readonly serial: string;
}

/** Whether a toggle is installed (its certificate is there); the tools' view of it. */
export function toggleInstalled(p: TogglePaths): boolean {
  return existsSync(p.cert);
}

/**
 * The material to serve: `own`, or, when a toggle is installed, `own` with the toggle's
 * certificate and key in place of the identity's (the trust bundle and CRLs stay this service's,
 * so it still judges its peers as before). A toggle whose key does not belong to its certificate,
 * or that OpenSSL refuses, throws MeshError (the reload keeps what is in force). No check of the
 * name, the dates, the issuer or the extensions: presenting a bad identity is the point.
 */
export function withToggle(own: TlsMaterial, p: TogglePaths): { material: TlsMaterial; toggle?: ToggleInForce } {
  if (!toggleInstalled(p)) return { material: own };
  const bad = (msg: string): never => {
    throw new MeshError("TLS_MATERIAL_INVALID", `the teaching toggle in ${p.dir} is unusable: ${msg}`);
  };
  let cert: Buffer;
  let key: Buffer;
  let leaf: X509Certificate;
  try {
    cert = readFileSync(p.cert);
    key = readFileSync(p.key);
    leaf = new X509Certificate(cert);
  } catch (e) {
    return bad(messageOf(e));
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(key))) bad(`${p.key} does not belong to ${p.cert}`);
    createSecureContext({ cert, key, ca: own.ca, crl: own.crl, ciphers: TLS_CIPHERS, minVersion: "TLSv1.2" });
  } catch (e) {
    if (e instanceof MeshError) throw e;
    bad(messageOf(e));
  }
  let kind = "unknown";
  try {
    kind = String((JSON.parse(readFileSync(p.about, "utf8")) as ToggleAbout).kind).slice(0, 40);
  } catch {
    /* no label: the certificate is what is served all the same */
  }
  const serial = leaf.serialNumber.toLowerCase();
  return {
    material: {
      ...own,
      cert,
      key,
      leaf: {
        subject: oneLine(leaf.subject),
        issuer: oneLine(leaf.issuer),
        serial,
        notBefore: new Date(leaf.validFrom).toISOString(),
        notAfter: new Date(leaf.validTo).toISOString(),
        // The trust domain this service judges its peers in stays its own identity's.
        trustDomain: own.leaf.trustDomain,
      },
      certDigest: createHash("sha256").update("toggle\0").update(cert).update("\0").update(key).digest("hex"),
    },
    toggle: { kind, serial },
  };
}

function oneLine(dn: string): string {
  return dn.split("\n").join(", ");
}
