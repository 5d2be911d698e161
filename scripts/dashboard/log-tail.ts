// Follows every `*.log` in a folder of JSON log lines: what is there first, then what is
// appended, whole lines only; a file that shrank was truncated and is read again from the top;
// a rotated one (a new inode, lib/rotating-file.ts) is finished where it went, then the new one read.
import { closeSync, fstatSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { rotatedSince } from "../../lib/rotating-file.ts";
import { parseLine, type MeshLine } from "../mesh-format.ts";

/** Bounds what one poll reads from one file, so a huge old log cannot stall the loop. */
const MAX_READ = 8 * 1024 * 1024;
const FIRST = "mesh-up.log";

export class LogTail {
  private readonly offsets = new Map<string, number>();
  private readonly inodes = new Map<string, number>();
  private readonly partial = new Map<string, string>();

  constructor(
    readonly dir: string,
    private readonly onLine: (line: MeshLine, file: string) => void,
  ) {}

  /** Reads what was appended since the last poll; returns how many lines were handed on. */
  poll(): number {
    let names: string[];
    try {
      // mesh-up.log first: its mesh.started line says which run the other files' lines belong to.
      names = readdirSync(this.dir)
        .filter((f) => f.endsWith(".log"))
        .sort((a, b) => Number(b === FIRST) - Number(a === FIRST) || a.localeCompare(b));
    } catch {
      return 0; // no folder yet: mesh:up has not started
    }
    let n = 0;
    for (const name of names) n += this.drain(join(this.dir, name));
    return n;
  }

  private drain(file: string): number {
    // Opened first, then measured: the inode and size are the open file's even if it is rotated now.
    let fd: number;
    try {
      fd = openSync(file, "r");
    } catch {
      return 0;
    }
    try {
      const { size, ino } = fstatSync(fd);
      let from = this.offsets.get(file) ?? 0;
      let n = 0;
      const was = this.inodes.get(file);
      this.inodes.set(file, ino);
      if (was !== undefined && was !== ino) {
        rotatedSince(file, was, inoOf).forEach((path, k) => {
          n += this.readPath(file, path, k === 0 ? from : 0);
        });
        this.partial.delete(file);
        from = 0;
      } else if (size < from) {
        from = 0;
        this.partial.delete(file);
      }
      if (size === from) {
        this.offsets.set(file, from);
        return n;
      }
      // Start a large existing file near its end: the page shows recent events only.
      if (from === 0 && size > MAX_READ && was === undefined) from = size - MAX_READ;
      const read = this.read(file, fd, from, size);
      this.offsets.set(file, from + read.bytes);
      return n + read.lines;
    } finally {
      closeSync(fd);
    }
  }

  /** A rotated file, from `from` to its end (at most MAX_READ). */
  private readPath(file: string, path: string, from: number): number {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return 0; // rotated away again: those lines are gone
    }
    try {
      return this.read(file, fd, from, fstatSync(fd).size).lines;
    } finally {
      closeSync(fd);
    }
  }

  /** Hands on the whole lines of an open file from `from` (at most MAX_READ bytes), as lines of `file`. */
  private read(file: string, fd: number, from: number, size: number): { bytes: number; lines: number } {
    if (size <= from) return { bytes: 0, lines: 0 };
    const buf = Buffer.alloc(Math.min(size - from, MAX_READ));
    const bytes = readSync(fd, buf, 0, buf.length, from);
    const lines = ((this.partial.get(file) ?? "") + buf.subarray(0, bytes).toString("utf8")).split("\n");
    this.partial.set(file, (lines.pop() ?? "").slice(-65_536));
    let n = 0;
    for (const raw of lines) {
      const l = parseLine(raw);
      if (l) {
        this.onLine(l, file);
        n++;
      }
    }
    return { bytes, lines: n };
  }
}

function inoOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}
