// A process that ends with its launcher: npm does not forward SIGTERM to the script it runs, so
// mesh:up watches npm go away and stops what it supervises; services use it only when their
// launcher asks (--exit-with-parent, the rotation drill): a standalone one must outlive its
// shell, and mesh:up's are meant to outlive mesh:up killed outright (docs/mesh.md).

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
