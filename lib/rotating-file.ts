// A log file that rotates by size, as logrotate names them: `payment.log` is always the
// current file, `payment.log.1` the one before, up to `payment.log.<keep>`; older ones are
// deleted. A Writable, so it replaces fs.createWriteStream where a launcher writes a log.
// Chunks are whole lines (each write is one or more lines): rotation happens between writes,
// never inside a line. Queued writes are joined into one write(2), as fs.WriteStream does.
import { closeSync, fstatSync, openSync, renameSync, rmSync, statSync, write, writeSync } from "node:fs";
import { Writable } from "node:stream";

/** 10 MiB × (1 + 5) files: at most ~60 MiB a service, whatever it logs. */
export const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_KEEP = 5;

export interface RotatingFileOptions {
  /** Rotate before a write would take the current file past this many bytes. */
  maxBytes?: number;
  /** Rotated files kept besides the current one (0: the current file only). */
  keep?: number;
  /** Called after each rotation (for a log line or a metric). */
  onRotate?: (path: string) => void;
  /**
   * Write with write(2) before write() returns, as Node writes stdout to a file: for a process
   * logging its own lines in batches (a service's LineSink), so the lines of its last moments
   * are on disk even when it exits at once. Default: asynchronous, for a launcher.
   */
  sync?: boolean;
}

/** `<path>.<n>`: the n-th newest rotated file. */
export function rotatedPath(path: string, n: number): string {
  return `${path}.${n}`;
}

export class RotatingFile extends Writable {
  readonly path: string;
  private fd: number;
  private size: number;
  private readonly maxBytes: number;
  private readonly keep: number;
  private readonly onRotate?: (path: string) => void;
  private readonly sync: boolean;

  constructor(path: string, opts: RotatingFileOptions = {}) {
    super({ decodeStrings: true });
    this.path = path;
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
    this.keep = opts.keep ?? DEFAULT_KEEP;
    this.onRotate = opts.onRotate;
    this.sync = !!opts.sync;
    if (!(this.maxBytes > 0) || !Number.isInteger(this.keep) || this.keep < 0)
      throw new RangeError("RotatingFile: maxBytes must be > 0 and keep a whole number");
    // Appends to what a previous run left, as createWriteStream(path, { flags: "a" }) did.
    this.fd = openSync(path, "a", 0o644);
    this.size = fstatSync(this.fd).size;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.append(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.append(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    try {
      closeSync(this.fd);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  private append(buf: Buffer, cb: (err?: Error | null) => void): void {
    try {
      // A write is never split (it is whole lines): a file can pass maxBytes by one write, and a
      // write larger than maxBytes goes whole into a file of its own.
      if (this.size > 0 && this.size + buf.length > this.maxBytes) this.rotate();
    } catch (err) {
      cb(err as Error);
      return;
    }
    this.size += buf.length;
    if (!this.sync) {
      writeAll(this.fd, buf, cb);
      return;
    }
    try {
      for (let at = 0; at < buf.length; ) at += writeSync(this.fd, buf, at, buf.length - at);
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb();
  }

  /**
   * Renames current → .1 → .2 … and opens a new current file. A reader following the file
   * (mesh:logs -f) sees the inode change and finishes the old file as `<path>.1`.
   */
  private rotate(): void {
    closeSync(this.fd);
    shiftRotated(this.path, this.keep);
    this.fd = openSync(this.path, "a", 0o644);
    this.size = 0;
    this.onRotate?.(this.path);
  }
}

/** current → .1 → .2 …, the oldest beyond `keep` deleted (with keep 0, the current file is). */
function shiftRotated(path: string, keep: number): void {
  if (keep === 0) {
    rmSync(path, { force: true });
    return;
  }
  rmSync(rotatedPath(path, keep), { force: true });
  for (let n = keep - 1; n >= 1; n--) {
    try {
      renameSync(rotatedPath(path, n), rotatedPath(path, n + 1));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  renameSync(path, rotatedPath(path, 1));
}

/**
 * Rotates `path` as RotatingFile would when it is larger than maxBytes: for a file a process
 * writes through an inherited descriptor (a component's stderr), called while no process has it
 * open, so nothing written is lost. Returns whether it rotated.
 */
export function rotateIfLarger(path: string, opts: { maxBytes: number; keep: number }): boolean {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return false;
  }
  if (size <= opts.maxBytes) return false;
  shiftRotated(path, opts.keep);
  return true;
}

/** write(2) may write less than asked (a full disk's last blocks): write the rest, or fail. */
function writeAll(fd: number, buf: Buffer, cb: (err?: Error | null) => void): void {
  write(fd, buf, 0, buf.length, null, (err, n) => {
    if (err) cb(err);
    else if (n < buf.length) writeAll(fd, buf.subarray(n), cb);
    else cb();
  });
}

/**
 * The rotation mesh:up's log files get: MESH_LOG_MAX_SIZE (bytes, or with k/m/g: 512k, 10m;
 * default 10m) and MESH_LOG_KEEP (rotated files kept, default 5). Throws a one-line error.
 */
export function rotationFromEnv(env: NodeJS.ProcessEnv = process.env): { maxBytes: number; keep: number } {
  let maxBytes = DEFAULT_MAX_BYTES;
  let keep = DEFAULT_KEEP;
  const size = env.MESH_LOG_MAX_SIZE;
  if (size) {
    const m = /^(\d{1,12})([kmg]?)$/i.exec(size);
    const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m?.[2] ?? "").toLowerCase() as "" | "k" | "m" | "g"];
    if (!m || Number(m[1]) < 1)
      throw new RangeError(
        `MESH_LOG_MAX_SIZE=${JSON.stringify(size.slice(0, 40))} is not a size: use bytes or a number with k, m or g, e.g. 10m`,
      );
    maxBytes = Number(m[1]) * unit;
  }
  if (env.MESH_LOG_KEEP) {
    if (!/^\d{1,4}$/.test(env.MESH_LOG_KEEP))
      throw new RangeError(
        `MESH_LOG_KEEP=${JSON.stringify(env.MESH_LOG_KEEP.slice(0, 40))} is not a whole number of files (0-9999)`,
      );
    keep = Number(env.MESH_LOG_KEEP);
  }
  return { maxBytes, keep };
}

/** How far back (<file>.1 … <file>.N) a follower looks for the file it was reading. */
export const FOLLOW_LOOKBACK = 20;

/**
 * For a follower (mesh:logs -f, the dashboard) that was reading inode `ino` of `file` and now
 * finds another inode there: the rotated files to finish, in the order they were written: the
 * one it was reading (now `<file>.n`; read it from where it was), then each rotated after it.
 * Empty when its file is gone (rotated past `keep`): those lines are lost to it.
 */
export function rotatedSince(file: string, ino: number, statIno: (path: string) => number | undefined): string[] {
  for (let n = 1; n <= FOLLOW_LOOKBACK; n++) {
    if (statIno(rotatedPath(file, n)) === ino) return Array.from({ length: n }, (_, k) => rotatedPath(file, n - k));
  }
  return [];
}
