// A process started by a launcher ends with it: if the launcher is killed
// outright (or npm, which does not forward SIGTERM, is), nothing may linger.

/** Calls `gone` once the parent process has exited (we were re-parented). */
export function onParentExit(gone: () => void, pollMs = 1_000): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      gone();
    }
  }, pollMs);
  timer.unref();
}
