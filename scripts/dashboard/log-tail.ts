// Follows every `*.log` in a folder of JSON log lines: what is there first, then what is
// appended, whole lines only; a file that shrank was truncated and is read again from the top.
import { closeSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseLine, type MeshLine } from "../mesh-format.ts";

/** Bounds what one poll reads from one file, so a huge old log cannot stall the loop. */
const MAX_READ = 8 * 1024 * 1024;
const FIRST = "mesh-up.log";

export class LogTail {
  private readonly offsets = new Map<string, number>();
  private readonly partial = new Map<string, string>();

  constructor(readonly dir: string, private readonly onLine: (line: MeshLine, file: string) => void) {}

  /** Reads what was appended since the last poll; returns how many lines were handed on. */
  poll(): number {
    let names: string[];
    try {
      // mesh-up.log first: its mesh.started line says which run the other files' lines belong to.
      names = readdirSync(this.dir).filter((f) => f.endsWith(".log")).sort((a, b) => Number(b === FIRST) - Number(a === FIRST) || a.localeCompare(b));
    } catch {
      return 0; // no folder yet: mesh:up has not started
    }
    let n = 0;
    for (const name of names) n += this.drain(join(this.dir, name));
    return n;
  }

  private drain(file: string): number {
    let size: number;
    try {
      size = statSync(file).size;
    } catch {
      return 0;
    }
    let from = this.offsets.get(file) ?? 0;
    if (size < from) {
      from = 0;
      this.partial.delete(file);
    }
    if (size === from) return 0;
    // Start a large existing file near its end: the page shows recent events only.
    if (from === 0 && size > MAX_READ) from = size - MAX_READ;
    const len = Math.min(size - from, MAX_READ);
    const buf = Buffer.alloc(len);
    const fd = openSync(file, "r");
    try {
      readSync(fd, buf, 0, len, from);
    } finally {
      closeSync(fd);
    }
    this.offsets.set(file, from + len);
    const lines = ((this.partial.get(file) ?? "") + buf.toString("utf8")).split("\n");
    this.partial.set(file, (lines.pop() ?? "").slice(-65_536));
    let n = 0;
    for (const raw of lines) {
      const l = parseLine(raw);
      if (l) {
        this.onLine(l, file);
        n++;
      }
    }
    return n;
  }
}
