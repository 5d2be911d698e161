// The dashboard on a drill's own mesh (`--dashboard <port>`): started once the drill has made
// its folders, stopped with the drill. A port that cannot be had is said, and the drill goes on.
import { join } from "node:path";
import { startDashboard, type Dashboard } from "../dashboard/server.ts";

/** `who` names the command in its line ("drill expiry", "drill:rotate"). */
export function drillDashboard(
  w: { work: string; pki: string },
  port: number,
  who: string,
): Promise<Dashboard | undefined> {
  return startDashboard({
    logs: join(w.work, "logs"),
    pki: w.pki,
    policy: join(w.work, "policy.toml"),
    port,
  }).then(
    (d) => {
      console.error(`dashboard: ${d.url}  (the drill's mesh, live; it stops with the drill)`);
      return d;
    },
    (e: NodeJS.ErrnoException) => {
      console.error(
        `${who}: no dashboard: ${e.code === "EADDRINUSE" ? `port ${port} is taken (--dashboard 0 picks a free one)` : e.message}`,
      );
      return undefined;
    },
  );
}
