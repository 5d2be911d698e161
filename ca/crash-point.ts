// Fault injection for the crash tests: with MESH_CA_CRASH_AT set to a point's name, the
// process dies there as if killed (SIGKILL: no handler, no cleanup runs).
export function crashPoint(where: string): void {
  if (process.env.MESH_CA_CRASH_AT === where) process.kill(process.pid, "SIGKILL");
}
