// A service's own state folder in identity mode: its key (made here, 0600), its certificate
// chain, and caches of the trust bundle (with its ETag) and the CRLs. Every write is atomic;
// a new key and certificate are committed as a pair that a crash cannot split.
import { X509Certificate, createPrivateKey, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import type { MaterialPaths } from "../material.ts";

export interface StatePaths extends MaterialPaths {
  readonly dir: string;
  readonly etag: string;
  /** The next key and certificate, staged: a certificate staged is the commit mark. */
  readonly nextKey: string;
  readonly nextCert: string;
}

export function statePaths(dir: string): StatePaths {
  return {
    dir,
    key: join(dir, "key.pem"),
    cert: join(dir, "cert.pem"),
    bundle: join(dir, "bundle.pem"),
    crls: join(dir, "crls.pem"),
    etag: join(dir, "bundle.etag"),
    nextKey: join(dir, "key.next.pem"),
    nextCert: join(dir, "cert.next.pem"),
  };
}

/** Creates the folder (0700) if needed. */
export function ensureFolder(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Writes through a temporary file in the same folder, fsynced, then renamed over `path`. */
export function writeAtomic(path: string, data: string | Buffer, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const fd = openSync(tmp, "wx", mode);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data, "utf8") : data);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

export function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/**
 * Commits a new key and certificate: the key staged first, then the certificate (the mark),
 * then both renamed into place. recover() finishes or drops what a crash left staged.
 */
export function commitIdentity(p: StatePaths, keyPem: string, certPem: string): void {
  writeAtomic(p.nextKey, keyPem, 0o600);
  writeAtomic(p.nextCert, certPem);
  renameSync(p.nextKey, p.key);
  renameSync(p.nextCert, p.cert);
}

/**
 * Before reading the folder: a staged certificate that matches the staged key (or the key
 * already moved) is rolled forward; a staged key without its certificate is dropped.
 */
export function recover(p: StatePaths): void {
  if (existsSync(p.nextCert)) {
    const keyFile = existsSync(p.nextKey) ? p.nextKey : p.key;
    if (pairs(p.nextCert, keyFile)) {
      if (keyFile === p.nextKey) renameSync(p.nextKey, p.key);
      renameSync(p.nextCert, p.cert);
      return;
    }
    rmSync(p.nextCert, { force: true });
  }
  rmSync(p.nextKey, { force: true });
}

function pairs(certFile: string, keyFile: string): boolean {
  try {
    return new X509Certificate(readFileSync(certFile)).checkPrivateKey(createPrivateKey(readFileSync(keyFile)));
  } catch {
    return false;
  }
}

/** Whether the folder holds an identity (a key and a certificate), whatever its state. */
export function hasIdentity(p: StatePaths): boolean {
  return existsSync(p.key) && existsSync(p.cert);
}

/** When the certificate file was written: the moment this service received it. */
export function receivedAt(p: StatePaths): number {
  return statSync(p.cert).mtimeMs;
}
