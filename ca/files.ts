// Every file the CA writes goes through here: inside the state folder only,
// atomically (temporary file, fsync, rename), keys 0600 and certificates 0644.
import { closeSync, fsync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join, resolve, sep } from "node:path";
import { CaError } from "./errors.ts";

export const KEY_MODE = 0o600;
export const CERT_MODE = 0o644;

/** Resolves parts under root and refuses anything that would land outside it. */
export function inside(root: string, ...parts: string[]): string {
  const base = resolve(root);
  const full = resolve(base, ...parts);
  if (full !== base && !full.startsWith(base + sep)) {
    throw new CaError("BAD_INPUT", `refusing to write ${full}: it is outside the CA folder ${base}`);
  }
  return full;
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* some filesystems refuse fsync on a directory; the rename is still atomic */
  }
}

/** Writes data to a fresh temporary file beside path, with mode, flushed to disk. Returns its name. */
export function writeTemp(path: string, data: string | Uint8Array, mode: number): string {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  // "wx" + mode: the file is created with its final permissions, never readable by others even briefly.
  const fd = openSync(tmp, "wx", mode);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  } finally {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
  }
  return tmp;
}

/** Atomically replaces path with data: readers see the old file or the new one, never half of one. */
export function writeAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = writeTemp(path, data, mode);
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

/**
 * Atomically creates path and fails if it already exists: link(2) never
 * replaces its target, so a CA key can never be overwritten, even by a race.
 */
export function writeNew(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = writeTemp(path, data, mode);
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new CaError("ALREADY_EXISTS", `${path} already exists: refusing to overwrite it`);
    }
    throw err;
  } finally {
    unlinkSync(tmp);
  }
  fsyncDir(dirname(path));
}

/** One file for writeDurable. */
export interface NewFile {
  path: string;
  data: string | Uint8Array;
  mode: number;
}

/**
 * Creates every file (never over an existing one, each with its final mode from the start),
 * then flushes them all and each distinct folder once: the fsyncs run side by side on libuv's
 * thread pool, so the file system commits them together and the main thread goes on meanwhile.
 * Resolves once every file's data and name are on disk. A file is complete under its name only
 * once this resolves: the journal (store.ts) names such files after a serial whose ledger row is
 * committed only after, so a crash leaves a partial file that recovery deletes. On an error,
 * the files already made are left for the caller to remove.
 */
export async function writeDurable(files: ReadonlyArray<NewFile>): Promise<void> {
  const fds: number[] = [];
  try {
    for (const f of files) {
      const fd = openSync(f.path, "wx", f.mode);
      fds.push(fd);
      writeAll(fd, typeof f.data === "string" ? Buffer.from(f.data) : f.data);
    }
    // Every fsync ends before any descriptor is closed: none is reused under a running fsync.
    const synced = await Promise.allSettled(fds.map(fsyncAsync));
    const failed = synced.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
  // Then the folders: on ext4 the files' fsyncs have committed their entries by now, so this is
  // cheap (side by side with them it measured no better here, under a noisy disk).
  await Promise.all([...new Set(files.map((f) => dirname(f.path)))].map(fsyncDirAsync));
}

function writeAll(fd: number, data: Uint8Array): void {
  for (let at = 0; at < data.length; ) at += writeSync(fd, data, at);
}

function fsyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

async function fsyncDirAsync(dir: string): Promise<void> {
  let fd: number;
  try {
    fd = openSync(dir, "r");
  } catch {
    return; // as fsyncDir: the rename or creation is still atomic
  }
  try {
    await fsyncAsync(fd);
  } catch {
    /* some filesystems refuse fsync on a directory */
  } finally {
    closeSync(fd);
  }
}
