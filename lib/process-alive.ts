// Whether a process exists, by its pid: signal 0 checks without signalling. EPERM means it exists
// but belongs to someone else. A pid says nothing of which program it is now (see
// scripts/supervisor-record.ts for that).
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
