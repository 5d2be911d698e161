// Follows one append-only log file from a given offset and hands over each complete line.
// mesh:up's components write their logs straight to files (they must outlive mesh:up, so no
// pipe to it), and mesh:up reads them back this way to echo them and to see them start.
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";

export interface Follower {
  /** Reads what is new now (also done every pollMs). */
  poll(): void;
  stop(): void;
}

const CHUNK = 256 * 1024;
/** A line longer than this is cut: a log line is not worth unbounded memory. */
const MAX_LINE = 1024 * 1024;

export function followFile(file: string, onLine: (text: string) => void, o: { from?: number; pollMs?: number } = {}): Follower {
  let offset = o.from ?? 0;
  let partial = "";
  let decoder = new StringDecoder("utf8"); // a character split between two reads stays whole
  const buf = Buffer.alloc(CHUNK);
  const poll = () => {
    let fd: number;
    try {
      if (statSync(file).size < offset) {
        offset = 0; // truncated or replaced: start over
        partial = "";
        decoder = new StringDecoder("utf8");
      }
      fd = openSync(file, "r");
    } catch {
      return; // not there yet
    }
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, CHUNK, offset);
        if (n <= 0) break;
        offset += n;
        partial += decoder.write(buf.subarray(0, n));
        const lines = partial.split("\n");
        partial = lines.pop()!;
        if (partial.length > MAX_LINE) partial = "";
        for (const l of lines) if (l.length > 0) onLine(l);
      }
    } finally {
      closeSync(fd);
    }
  };
  const timer = setInterval(poll, o.pollMs ?? 100);
  timer.unref();
  return {
    poll,
    stop: () => clearInterval(timer),
  };
}

/** The size of a file now (0 when absent): where a follower starts to see only what comes next. */
export function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
