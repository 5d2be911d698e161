// A process started by a launcher ends with it: if the launcher is killed
// outright (or npm, which does not forward SIGTERM, is), nothing may linger. Services use it
// only when their launcher asks (--exit-with-parent): a standalone one must outlive its shell.

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
