// npm run drill:rotate: the CA rotation drill, live. Breaks the mesh with a
// careless rotation, heals it, rotates it safely with traffic flowing, proves it.
import { Command, InvalidArgumentError } from "commander";
import { CaError } from "../ca/index.ts";
import { runDrill } from "./drill/drill.ts";
import { timeline } from "./drill/timeline.ts";

const whole = (min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
  return n;
};

const program = new Command("drill:rotate")
  .description("Rotate the whole mesh to a new root CA with traffic flowing: first the careless way, then the safe way.")
  .option("--dir <path>", "run against this CA state folder (default: a fresh temporary one; ./pki is never touched)")
  .option("--with-intermediate", "root -> intermediate -> leaf, the way production meshes run")
  .option("--rate <n>", "orders per second during the drill (each is a call to inventory and one to payment)", whole(1, 500), 20)
  .option("--dwell <ms>", "how long traffic runs in each phase after its change took effect", whole(200, 60_000), 2500)
  .option("--json", "print the report as JSON instead of the timeline")
  .addHelpText("after", `
Examples:
  npm run drill:rotate
  npm run drill:rotate -- --with-intermediate
  npm run drill:rotate -- --rate 50 --json > report.json

Exit codes: 0 the careless rotation broke and the safe one lost nothing, 1 it did not, 2 bad flags or a failure to run.`)
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

program.parse();
const o = program.opts<{ dir?: string; withIntermediate?: boolean; rate: number; dwell: number; json?: boolean }>();
try {
  const report = await runDrill({ dir: o.dir, withIntermediate: o.withIntermediate, rate: o.rate, dwellMs: o.dwell, say: o.json ? undefined : (l) => console.log(l) });
  if (o.json) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(timeline(report));
    console.log(`\nReport: ${report.reportFile}\nLogs:   ${report.logs}/<service>.log (npm run mesh:logs -- --logs ${report.logs} --failures --no-follow)`);
  }
  process.exitCode = report.ok ? 0 : 1;
} catch (e) {
  console.error(`drill:rotate: ${e instanceof CaError ? e.message : (e as Error).message}`);
  process.exitCode = 2;
}
