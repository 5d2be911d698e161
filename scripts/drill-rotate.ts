// npm run drill:rotate: the CA rotation drill, live. Breaks the mesh with a
// careless rotation, heals it, rotates it safely with traffic flowing, proves it.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { CaError } from "../ca/index.ts";
import { DrillInterrupted, runDrill } from "./drill/drill.ts";
import { ONLINE_DEFAULTS, runOnlineDrill } from "./drill/online.ts";
import { timeline } from "./drill/timeline.ts";
import type { Dashboard } from "./dashboard/server.ts";
import { drillDashboard } from "./drill/dashboard.ts";
import { DEFAULT_DASHBOARD_PORT } from "./mesh-ports.ts";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";
import { renewFraction } from "../services/mesh/identity-agent/timing.ts";

// A closed stdout (`drill:rotate | head`): before the drill starts, just end; once it runs, stop it
// as a signal does, so the services stop and a temporary CA's keys are removed (exit 141, as SIGPIPE).
let onClosedOutput: () => void = () => process.exit(0);
endQuietlyOnClosedOutput(() => onClosedOutput());

const whole = (min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
  return n;
};

/** The services' --renew-at: a fraction of the life from 0.1 to 0.9. */
const fraction = (v: string) => {
  const n = renewFraction(v);
  if (n === undefined)
    throw new InvalidArgumentError("must be a fraction of the certificate's life from 0.1 to 0.9, e.g. 0.33");
  return n;
};

const program = new Command("drill:rotate")
  .description(
    "Rotate the whole mesh to a new root CA with traffic flowing: first the careless way, then the safe way. Online by default: a CA server, services that enrol and renew over EST, and the hands-off rotation (runRotation, gate by gate).",
  )
  .option(
    "--online",
    "the online mesh (the default): CA server, services with --ca/--state and a token each, careless rotation broken by the services' own renewals, safe rotation by `ca rotate`'s gates",
  )
  .option(
    "--file-mode",
    "the file-mode drill instead: the CA writes into the folder the services read (--pki), every step by hand",
  )
  .option(
    "--lifetime <seconds>",
    "online: lifetime of every certificate, so renewals happen during the drill",
    whole(5, 86_400),
    ONLINE_DEFAULTS.lifetimeMs / 1000,
  )
  .option(
    "--poll <ms>",
    "online: how often each service polls the CA's bundle and CRLs (the gates move at this pace)",
    whole(100, 60_000),
    ONLINE_DEFAULTS.pollMs,
  )
  .option(
    "--renew-at <fraction>",
    "online: when each identity renews, as a fraction of its certificate's life, ±10 % (the services' --renew-at; default 0.667)",
    fraction,
  )
  .option(
    "--dir <path>",
    "run against this CA state folder, which is kept (default: a fresh temporary one whose CA state is removed at the end; ./pki is never touched)",
  )
  .option("--keep-state", "keep the temporary CA state (keys included) after the run, to look at it")
  .option("--with-intermediate", "root -> intermediate -> leaf, the way production meshes run")
  .option(
    "--rate <n>",
    "orders per second during the drill (each is a call to inventory and one to payment)",
    whole(1, 500),
    20,
  )
  .option("--dwell <ms>", "how long traffic runs in each phase after its change took effect", whole(200, 60_000), 2500)
  .option("--json", "print the report as JSON instead of the timeline")
  .option(
    "--dashboard [port]",
    `serve the live dashboard of the drill's mesh on 127.0.0.1 (default port ${DEFAULT_DASHBOARD_PORT}; 0: any free one)`,
  )
  .addHelpText(
    "after",
    `
Examples:
  npm run drill:rotate
  npm run drill:rotate -- --lifetime 30            # online, renewals every ~20 s
  npm run drill:rotate -- --file-mode --with-intermediate
  npm run drill:rotate -- --rate 50 --json > report.json
  npm run drill:rotate -- --dashboard      # and open the address it prints

Without --dir the CA state (its keys) is removed whatever the outcome, Ctrl-C included;
the report and the logs stay where the drill says.

Exit codes: 0 the careless rotation broke and the safe one lost nothing, 1 it did not, 2 bad flags or a failure to run,
130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP, 141 its output was closed (| head) while it ran.`,
  )
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

program.parse();
const o = program.opts<{
  dir?: string;
  keepState?: boolean;
  withIntermediate?: boolean;
  rate: number;
  dwell: number;
  json?: boolean;
  dashboard?: boolean | string;
  online?: boolean;
  fileMode?: boolean;
  lifetime: number;
  poll: number;
  renewAt?: number;
}>();
if (o.online && o.fileMode) {
  console.error("drill:rotate: --online and --file-mode exclude each other: pick one (online is the default)");
  process.exit(2);
}
let dashboardPort: number | undefined;
if (o.dashboard !== undefined) {
  dashboardPort = o.dashboard === true ? DEFAULT_DASHBOARD_PORT : Number(o.dashboard);
  if (!/^\d+$/.test(String(o.dashboard === true ? dashboardPort : o.dashboard)) || dashboardPort > 65535) {
    console.error(`drill:rotate: --dashboard ${String(o.dashboard)} is not a port number 0-65535`);
    process.exit(2);
  }
}

// Ctrl-C or SIGTERM: the drill stops at its next wait and cleans up as on a normal end (the
// services stopped, a temporary CA's keys removed). A second signal does not wait for that.
const stop = new AbortController();
let state: { work: string; pki: string; removeState: boolean } | undefined;
const removeState = () => {
  if (!state?.removeState) return;
  rmSync(state.pki, { recursive: true, force: true });
  // Online: the services' own keys, in their state folders.
  rmSync(join(state.work, "state"), { recursive: true, force: true });
};
// The last resort on any exit, an unexpected one included; a no-op once the drill removed it.
process.on("exit", removeState);
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129, SIGPIPE: 141 };
onClosedOutput = () => stop.abort("SIGPIPE");
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    if (stop.signal.aborted) {
      console.error(`drill:rotate: ${sig} again: exiting now`);
      process.exit(SIGNAL_EXIT[sig]);
    }
    console.error(
      `drill:rotate: ${sig}: stopping the services${state?.removeState ? " and removing the temporary CA state" : ""}…`,
    );
    stop.abort(sig);
  });
}

let dashboard: Promise<Dashboard | undefined> = Promise.resolve(undefined);
/** The drill's own mesh, on the page: its logs folder fills as the services start. */
const watch = (w: { work: string; pki: string }) => {
  if (dashboardPort === undefined) return;
  dashboard = drillDashboard(w, dashboardPort, "drill:rotate");
};
try {
  const common = {
    dir: o.dir,
    keepState: o.keepState,
    signal: stop.signal,
    onPrepared: (w: { work: string; pki: string; removeState: boolean }) => {
      state = w;
      watch(w);
    },
    withIntermediate: o.withIntermediate,
    rate: o.rate,
    dwellMs: o.dwell,
    say: o.json ? undefined : (l: string) => console.log(l),
  };
  const report = o.fileMode
    ? await runDrill(common)
    : await runOnlineDrill({ ...common, lifetimeMs: o.lifetime * 1000, pollMs: o.poll, renewAt: o.renewAt });
  if (o.json) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(timeline(report));
    console.log(
      `\nReport: ${report.reportFile}\nLogs:   ${report.logs}/<service>.log (npm run mesh:logs -- --logs ${report.logs} --failures)`,
    );
    console.log(
      report.stateRemoved
        ? "CA state: removed with its keys (--keep-state keeps it)"
        : `CA state (keys included): ${report.dir}`,
    );
  }
  process.exitCode = report.ok ? 0 : 1;
} catch (e) {
  if (e instanceof DrillInterrupted) {
    console.error(
      `drill:rotate: ${e.message}: everything stopped${state?.removeState ? ", the temporary CA state removed" : ""}`,
    );
    // Lingering timers (a log line still awaited) must not hold the exit.
    process.exit(SIGNAL_EXIT[e.why] ?? 130);
  }
  console.error(`drill:rotate: ${e instanceof CaError ? e.message : (e as Error).message}`);
  process.exitCode = 2;
}
await (await dashboard)?.close();
