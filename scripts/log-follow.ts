// Follows one log file from a given offset and hands over each complete line, across rotations.
// mesh:up's components write their logs straight to files (they must outlive mesh:up, so no
// pipe to it), rotated by size (lib/rotating-file.ts), and mesh:up reads them back this way to
// echo them and to see them start. A new inode at the path means the file was rotated: the old
// one is finished where it went (<file>.n), then any rotated after it, then the new one.
import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { rotatedSince } from "../lib/rotating-file.ts";

export interface Follower {
  /** Reads what is new now (also done every pollMs). */
  poll(): void;
  stop(): void;
}

const CHUNK = 256 * 1024;
/** A line longer than this is cut: a log line is not worth unbounded memory. */
const MAX_LINE = 1024 * 1024;

const inoOf = (path: string): number | undefined => {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
};

export function followFile(
  file: string,
  onLine: (text: string) => void,
  o: { from?: number; pollMs?: number } = {},
): Follower {
  let offset = o.from ?? 0;
  // The inode being read: known once the file is there (at the start, when it already was).
  let ino = o.from !== undefined ? inoOf(file) : undefined;
  let partial = "";
  let decoder = new StringDecoder("utf8"); // a character split between two reads stays whole
  const buf = Buffer.alloc(CHUNK);
  const restart = () => {
    offset = 0;
    partial = "";
    decoder = new StringDecoder("utf8");
  };
  /** Reads `fd` from `offset` to its end, handing over whole lines. */
  const drain = (fd: number) => {
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
  };
  /** The rest of a rotated file (its lines end with a newline: a rotation never splits one). */
  const finish = (path: string) => {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      restart(); // rotated away again meanwhile: those lines are gone
      return;
    }
    try {
      drain(fd);
    } finally {
      closeSync(fd);
    }
    restart();
  };
  const poll = () => {
    let fd: number;
    try {
      fd = openSync(file, "r");
    } catch {
      return; // not there yet (or between a rotation's rename and open)
    }
    try {
      // Opened first, then measured: the inode and size are the open file's.
      const st = fstatSync(fd);
      if (ino !== undefined && st.ino !== ino) {
        for (const path of rotatedSince(file, ino, inoOf)) finish(path);
        restart();
      } else if (st.size < offset) restart(); // truncated: start over
      ino = st.ino;
      drain(fd);
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
