// npm run drill: lists the drills (--list) and runs one by name (`npm run drill -- expiry`).
// `rotate` is the rotation drill with its own flags (scripts/drill-rotate.ts, as drill:rotate).
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { CaError } from "../ca/index.ts";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";
import { DrillInterrupted } from "./drill/drill.ts";
import { DRILLS, listDrills } from "./drill/registry.ts";
import { storyTimeline } from "./drill/story.ts";
import type { Dashboard } from "./dashboard/server.ts";
import { drillDashboard } from "./drill/dashboard.ts";
import { DEFAULT_DASHBOARD_PORT } from "./mesh-ports.ts";

const [first, ...rest] = process.argv.slice(2);
if (first === "rotate") {
  // The rotation drill reads its own flags from process.argv.
  process.argv = [process.argv[0]!, "drill:rotate", ...rest];
  await import("./drill-rotate.ts");
} else if (first === undefined || first === "--list" || first === "-l") {
  if (first === undefined) console.error("drill: name a drill (npm run drill -- <name>); the drills:");
  console.log(listDrills());
  process.exitCode = first === undefined ? 2 : 0;
} else if (first === "--help" || first === "-h") {
  console.log(`Usage: npm run drill -- --list | <name> [flags] | <name> --help\n\n${listDrills()}`);
} else {
  await runFailureDrill(first, rest);
}

async function runFailureDrill(name: string, args: string[]): Promise<void> {
  const drill = DRILLS.find((d) => d.name === name);
  if (!drill) {
    console.error(`drill: no drill named ${JSON.stringify(name.slice(0, 40))}: npm run drill -- --list names them`);
    process.exit(2);
  }
  let onClosedOutput: () => void = () => process.exit(0);
  endQuietlyOnClosedOutput(() => onClosedOutput());
  const whole = (min: number, max: number) => (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
    return n;
  };
  const program = new Command(`drill ${name}`)
    .description(drill.summary)
    .option("--lifetime <seconds>", "lifetime of every certificate", whole(5, 86_400), drill.lifetimeS)
    .option("--poll <ms>", "how often each service polls the CA's bundle and CRLs", whole(100, 60_000), 500)
    .option("--rate <n>", "orders per second", whole(1, 500), 20)
    .option(
      "--dwell <ms>",
      "how long traffic runs in each phase after its change took effect",
      whole(200, 60_000),
      2500,
    )
    .option(
      "--dir <path>",
      "run against this CA state folder, which is kept (default: a fresh temporary one, removed at the end)",
    )
    .option("--keep-state", "keep the temporary CA state (keys included) after the run")
    .option("--json", "print the report as JSON instead of the timeline")
    .option(
      "--dashboard [port]",
      `serve the live dashboard of the drill's mesh on 127.0.0.1 (default port ${DEFAULT_DASHBOARD_PORT}; 0: any free one)`,
    )
    .addHelpText(
      "after",
      `\nExit codes: 0 every check held, 1 one did not, 2 bad flags or a failure to run, 130/143/129 interrupted, 141 output closed.`,
    )
    .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
  program.parse(args, { from: "user" });
  const o = program.opts<{
    lifetime: number;
    poll: number;
    rate: number;
    dwell: number;
    dir?: string;
    keepState?: boolean;
    json?: boolean;
    dashboard?: boolean | string;
  }>();
  const dashboardPort =
    o.dashboard === undefined ? undefined : o.dashboard === true ? DEFAULT_DASHBOARD_PORT : Number(o.dashboard);
  if (
    dashboardPort !== undefined &&
    (!/^\d+$/.test(String(o.dashboard === true ? dashboardPort : o.dashboard)) || dashboardPort > 65535)
  ) {
    console.error(`drill ${name}: --dashboard ${String(o.dashboard)} is not a port number 0-65535`);
    process.exit(2);
  }
  let dashboard: Promise<Dashboard | undefined> = Promise.resolve(undefined);
  /** The drill's own mesh, on the page: its logs folder fills as the services start. */
  const watch = (w: { work: string; pki: string }) => {
    if (dashboardPort === undefined) return;
    dashboard = drillDashboard(w, dashboardPort, `drill ${name}`);
  };

  const stop = new AbortController();
  let state: { work: string; pki: string; removeState: boolean } | undefined;
  const removeState = () => {
    if (!state?.removeState) return;
    rmSync(state.pki, { recursive: true, force: true });
    rmSync(join(state.work, "state"), { recursive: true, force: true });
    rmSync(join(state.work, "impostor-pki"), { recursive: true, force: true });
    rmSync(join(state.work, "thief"), { recursive: true, force: true });
  };
  process.on("exit", removeState);
  const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129, SIGPIPE: 141 };
  onClosedOutput = () => stop.abort("SIGPIPE");
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      if (stop.signal.aborted) process.exit(SIGNAL_EXIT[sig]);
      console.error(
        `drill ${name}: ${sig}: stopping the services${state?.removeState ? " and removing the temporary CA state" : ""}…`,
      );
      stop.abort(sig);
    });
  }
  try {
    const report = await drill.run({
      dir: o.dir,
      keepState: o.keepState,
      signal: stop.signal,
      onPrepared: (w) => {
        state = w;
        watch(w);
      },
      rate: o.rate,
      dwellMs: o.dwell,
      lifetimeMs: o.lifetime * 1000,
      pollMs: o.poll,
      say: o.json ? undefined : (l) => console.log(l),
    });
    if (o.json) console.log(JSON.stringify(report, null, 2));
    else {
      console.log(storyTimeline(report));
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
        `drill ${name}: ${e.message}: everything stopped${state?.removeState ? ", the temporary CA state removed" : ""}`,
      );
      process.exit(SIGNAL_EXIT[e.why] ?? 130);
    }
    console.error(`drill ${name}: ${e instanceof CaError ? e.message : (e as Error).message}`);
    process.exitCode = 2;
  }
  await (await dashboard)?.close();
}
