// The online drill's CA server, in a process of its own as `npm run ca -- serve` runs in real
// life (started by ca-process.ts; the configuration is its one argument, JSON). Its log lines
// go to stdout. It ends with the drill: SIGTERM, or the drill's process gone.
import { pino } from "pino";
import { CaServer, CertificateAuthority } from "../../ca/index.ts";
import { onParentExit } from "../../services/mesh/parent.ts";
import type { DrillCaConfig } from "./ca-process.ts";

const cfg = JSON.parse(process.argv[2] ?? "{}") as DrillCaConfig;
onParentExit(() => process.kill(process.pid, "SIGKILL"));
const ca = await CertificateAuthority.open({ dir: cfg.pki });
const server = await CaServer.start({
  ca,
  host: "127.0.0.1",
  port: cfg.port ?? 0,
  defaultLifetimeMs: cfg.lifetimeMs,
  limits: cfg.limits,
  pollMs: cfg.pollMs,
  refusalLog: cfg.refusalLogMs ? { intervalMs: cfg.refusalLogMs } : undefined,
  log: pino({ base: { service: "ca" }, timestamp: pino.stdTimeFunctions.isoTime }),
});
// Ctrl-C reaches the whole process group: the drill stops this server itself, after its services.
process.on("SIGINT", () => {});
process.once("SIGTERM", () => {
  void server.close().finally(() => {
    ca.close();
    process.exit(0);
  });
});
