// ca rotate: rotate the root against the online mesh, each gate passed on evidence (docs/rotation.md).
import { existsSync, readFileSync } from "node:fs";
import type { Command } from "commander";
import { badInput, CaError } from "../errors.ts";
import type { GateName } from "../rotation.ts";
import type { PlanSource } from "../rotation-plan-facts.ts";
import type { EventLogger } from "../../lib/events.ts";
import { CA_KEY, help } from "./exits.ts";
import { jsonOption, stateful } from "./flags.ts";
import { withCa, withView } from "./session.ts";
import { caCommand } from "./suggest.ts";

export function register(program: Command): void {
  help(
    stateful(
      program
        .command("rotate")
        .description(
          "rotate the root against the online mesh: prepare, activate, retire, each gate passed on evidence in the ledger",
        ),
    )
      .option(
        "--timeout <duration>",
        "how long each gate may wait before the run stops (state kept; run again to carry on)",
        "15m",
      )
      .option("--interval <duration>", "how often a waiting gate reads the ledger (100ms to 1h)", "1s")
      .option("--name <name>", "the new generation's name (default: the first root's name + \" G<n>\")")
      .addOption(jsonOption("JSON lines (rotate.gate events) instead of text"))
      .option(
        "--in-use",
        "gate 3 also waits until every enrolled identity has presented its new certificate on a cacerts poll (kept when resuming)",
      )
      .option("--status", "print where the rotation is and who its gate waits for, change nothing")
      .option(
        "--plan",
        "print what each gate would change for every caller → callee pair (chains presented, roots trusted, the handshake's outcome); change nothing",
      )
      .option(
        "--order <order>",
        "with --plan: the order of the gates to plan: safe (prepare,activate,retire), careless (activate,prepare,retire) or a comma list",
        "safe",
      )
      .option(
        "--policy <file>",
        "with --plan: the mesh policy naming who calls whom (default: mesh-policy.toml here if there is one; else every identity calls every other)",
      ),
    [
      "rotate",
      "rotate --timeout 2h --json >> logs/rotate.log",
      "rotate --status",
      "rotate --plan --policy mesh-policy.toml",
      "rotate --plan --order careless --json",
    ],
    {
      1: "with --plan: the plan predicts a call that breaks",
      3: "stopped: a gate waited longer than --timeout (the rotation is kept: run it again to carry on), or a rule forbids the next step; with --plan: nothing to plan (no identity holds a valid certificate)",
      4: CA_KEY,
    },
  ).action((o) => {
    if (!o.plan && (o.order !== "safe" || o.policy !== undefined))
      throw badInput(
        `--order and --policy go with --plan (npm run ca -- rotate --plan ${o.policy !== undefined ? "--policy FILE" : `--order ${o.order}`})`,
      );
    return o.plan
      ? withView(o, (view) => plan(view, o))
      : withCa(o, async (ca) => {
          const rotation = await import("../rotation.ts");
          const { parseDuration } = await import("../duration.ts");
          const timeoutMs = parseDuration(o.timeout, { flag: "--timeout", max: 30 * 86_400_000 });
          const intervalMs = parseDuration(o.interval, {
            flag: "--interval",
            min: 100,
            max: 3_600_000,
            milliseconds: true,
          });
          const names = (ws: { name: string; why: string }[]) =>
            ws
              .slice(0, 20)
              .map((w) => `    ${w.name}  ${w.why}`)
              .concat(ws.length > 20 ? [`    … and ${ws.length - 20} more`] : []);
          if (o.status) {
            const row = ca.ledger.unfinishedRotation();
            if (!row) {
              if (o.json) process.stdout.write(`${JSON.stringify({ rotation: null })}\n`);
              else console.log(`No rotation in progress (start one: ${caCommand("rotate")})`);
              return;
            }
            const v = rotation.currentVerdict(ca, row);
            if (o.json) {
              process.stdout.write(`${JSON.stringify({ rotation: row, verdict: v }, null, 2)}\n`);
              return;
            }
            console.log(
              `Rotation ${row.id}: generation ${row.fromGeneration} → ${row.toGeneration}, at gate ${rotation.GATE_NUMBER[row.phase as keyof typeof rotation.GATE_NUMBER] ?? 3}/3 (${row.phase}), started ${row.startedAt}${row.owner ? `, run by ${row.owner}` : ", no run in progress"}`,
            );
            if (v) {
              console.log(
                v.passed
                  ? `  the gate would pass now (${v.total} looked at)`
                  : `  waiting for ${v.waitingFor.length} of ${v.total}:`,
              );
              for (const l of names(v.waitingFor)) console.log(l);
              for (const n of v.notes) console.log(`  note: ${n}`);
            }
            return;
          }
          const { pino } = await import("pino");
          const log: EventLogger | null = o.json
            ? pino({ base: { service: "ca" }, timestamp: pino.stdTimeFunctions.isoTime })
            : null;
          const ac = new AbortController();
          const stop = () => ac.abort();
          process.once("SIGINT", stop);
          process.once("SIGTERM", stop);
          try {
            await rotation.runRotation(ca, {
              timeoutMs,
              intervalMs,
              name: o.name,
              signal: ac.signal,
              inUse: o.inUse,
              onEvent: (e) => {
                if (log) {
                  const { msg, ...fields } = e;
                  log[e.state === "timeout" ? "error" : "info"](fields, msg);
                  return;
                }
                const out = e.state === "timeout" ? console.error : console.log;
                out(`gate ${rotation.GATE_NUMBER[e.gate]}/3 ${e.gate.padEnd(8)} ${e.state.padEnd(8)} ${e.msg}`);
                for (const l of names(e.waitingFor.map((name) => ({ name, why: e.why[name] ?? "" })))) out(l);
              },
            });
          } finally {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
          }
        });
  });
}

/** rotate --plan: the plan from the ledger's facts, changing nothing (docs/rotation.md). */
async function plan(view: PlanSource, o: { order: string; policy?: string; json?: boolean }): Promise<void> {
  // Imported here, as the rotation itself is: every other command starts without them.
  const { CARELESS_ORDER, planRotation, planText, SAFE_ORDER } = await import("../rotation-plan.ts");
  const { planFacts, policyPairs } = await import("../rotation-plan-facts.ts");
  const order = parseOrder(o.order, SAFE_ORDER, CARELESS_ORDER);
  const file = o.policy ?? (existsSync("mesh-policy.toml") ? "mesh-policy.toml" : undefined);
  let pairs: Array<{ caller: string; callee: string }> | undefined;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw badInput(`cannot read the policy ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    pairs = policyPairs(text, file);
  }
  const p = planRotation(planFacts(view, pairs), order);
  if (o.json) process.stdout.write(`${JSON.stringify(p, null, 2)}\n`);
  else console.log(planText(p));
  // Like a what-if: a predicted break fails (exit 1, the plan said why), so a script can gate a step on it.
  if (p.firstBreak) throw new CaError("VERIFY_FAILED", "");
}

function parseOrder(v: string, SAFE_ORDER: readonly GateName[], CARELESS_ORDER: readonly GateName[]): GateName[] {
  if (v === "safe") return [...SAFE_ORDER];
  if (v === "careless") return [...CARELESS_ORDER];
  const gates = v.split(",").map((g) => g.trim());
  const known = new Set<string>(SAFE_ORDER);
  if (gates.length !== 3 || new Set(gates).size !== 3 || gates.some((g) => !known.has(g)))
    throw badInput(
      `--order ${JSON.stringify(v)}: give safe, careless, or the three gates prepare, activate, retire in some order, comma-separated`,
    );
  return gates as GateName[];
}
