// Notices when files change on disk. The CA replaces files by rename, which defeats a
// watch on the file itself, so this watches the parent directories and, as a fallback for
// file systems where fs.watch is silent, polls the files' stat once a second.
import { watch, statSync, type FSWatcher } from "node:fs";
import { basename, dirname, resolve } from "node:path";

export interface Watch {
  close(): void;
}

export function watchFiles(files: readonly string[], onChange: (noticedAt: number) => void, opts: { debounceMs?: number; pollMs?: number } = {}): Watch {
  const debounceMs = opts.debounceMs ?? 150;
  const abs = files.map((f) => resolve(f));
  const names = new Map<string, Set<string>>();
  for (const f of abs) {
    const d = dirname(f);
    if (!names.has(d)) names.set(d, new Set());
    names.get(d)!.add(basename(f));
  }
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let noticedAt = 0; // when the burst's first change was seen: onChange gets it, for reload latency
  // Several renames land together (certificate, then key): one reload after the burst.
  const kick = () => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    else noticedAt = performance.now();
    timer = setTimeout(() => {
      timer = undefined;
      if (!closed) onChange(noticedAt);
    }, debounceMs);
    timer.unref();
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
  let last = abs.map(sig).join("|");
  const poll = setInterval(() => {
    const now = abs.map(sig).join("|");
    if (now !== last) {
      last = now;
      kick();
    }
  }, opts.pollMs ?? 1000);
  poll.unref();

  return {
    close() {
      closed = true;
      clearInterval(poll);
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
