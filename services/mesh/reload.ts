// Notices when files change on disk. The CA replaces files by rename, which defeats a
// watch on the file itself, so this watches the parent directories and, as a fallback for
// file systems where fs.watch is silent, polls the files' stat (once a second unless told). With a settle
// window it also waits until a file written in place has stopped changing.
import { watch, statSync, type FSWatcher } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { every, systemClock, type Clock, type ClockTimer } from "../../lib/clock.ts";

export interface Watch {
  /** How many stat polls have run: a test waits for this to grow rather than for time to pass. */
  readonly polls: number;
  close(): void;
}

export interface WatchOptions {
  debounceMs?: number;
  pollMs?: number;
  /**
   * After the debounce, wait until the files' inode, size and mtime have stayed the same for
   * this long before calling onChange (0: do not wait). A file rewritten in place (truncated,
   * then appended to) is empty or cut short in between; this keeps such states from a reader.
   */
  settleMs?: number;
  /** The debounce, settle and poll timers run on this clock (default the system's). */
  clock?: Clock;
  /** Called after each stat poll, with the count so far: evidence that the watcher looked. */
  onPoll?: (polls: number) => void;
}

export function watchFiles(
  files: readonly string[],
  onChange: (noticedAt: number) => void,
  opts: WatchOptions = {},
): Watch {
  const debounceMs = opts.debounceMs ?? 150;
  const settleMs = opts.settleMs ?? 0;
  const clock = opts.clock ?? systemClock;
  const abs = files.map((f) => resolve(f));
  const names = new Map<string, Set<string>>();
  for (const f of abs) {
    const d = dirname(f);
    if (!names.has(d)) names.set(d, new Set());
    names.get(d)!.add(basename(f));
  }
  let timer: ClockTimer | undefined;
  let closed = false;
  let noticedAt = 0; // when the burst's first change was seen: onChange gets it, for reload latency
  const fire = () => {
    // The poll must not report again a change this call is about to handle (that logged
    // every failed reload twice).
    last = signature();
    onChange(noticedAt);
  };
  const settle = (seen: string) => {
    timer = clock.setTimeout(() => {
      timer = undefined;
      if (closed) return;
      const now = signature();
      if (now === seen) fire();
      else settle(now);
    }, settleMs);
  };
  // Several renames land together (certificate, then key): one reload after the burst.
  const kick = () => {
    if (closed) return;
    if (timer) clock.clearTimeout(timer);
    else noticedAt = performance.now();
    timer = clock.setTimeout(() => {
      timer = undefined;
      if (closed) return;
      if (settleMs > 0) settle(signature());
      else fire();
    }, debounceMs);
  };

  const watchers: FSWatcher[] = [];
  for (const [dir, set] of names) {
    try {
      const w = watch(dir, { persistent: false }, (_ev, name) => {
        if (name === null || set.has(String(name))) kick();
      });
      w.on("error", () => w.close());
      watchers.push(w);
    } catch {
      // The directory may not exist yet; the poll below still notices the file appearing.
    }
  }

  const sig = (f: string) => {
    try {
      const s = statSync(f);
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return "absent";
    }
  };
  const signature = () => abs.map(sig).join("|");
  let last = signature();
  let polls = 0;
  const stopPolling = every(clock, opts.pollMs ?? 1000, () => {
    const now = signature();
    if (now !== last) {
      last = now;
      kick();
    }
    polls += 1;
    opts.onPoll?.(polls);
  });

  return {
    get polls() {
      return polls;
    },
    close() {
      closed = true;
      stopPolling();
      if (timer) clock.clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
