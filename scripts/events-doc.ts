// npm run events:doc: writes docs/events.md from the catalogue in lib/events.ts (a test holds
// the file equal to what this renders, so the list of events cannot drift from the code).
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { EVENTS, LEVELS, type EventName, type EventSpec } from "../lib/events.ts";

export const EVENTS_DOC = fileURLToPath(new URL("../docs/events.md", import.meta.url));

const HEAD = `# Log events

<!-- Generated from lib/events.ts by \`npm run events:doc\`; test/events.test.ts fails when it is stale. -->

Every process of the mesh (the CA server, the services, mesh:up, the drill) logs JSON lines,
one event each: pino's \`level\` (20 debug, 30 info, 40 warn, 50 error) and \`time\` (ISO 8601),
the writing process's \`service\`, the \`event\` name, its fields, and a plain sentence in \`msg\`.

\`\`\`json
{"level":40,"time":"2026-12-06T20:11:14.123Z","service":"payment","event":"authz.denied","peer":"inventory","peerDns":"inventory.internal","method":"POST","path":"/charge","rule":"payment.accepts","reason":"inventory is not listed in payment.accepts","remote":"127.0.0.1:50412","msg":"denied inventory POST /charge: inventory is not listed in payment.accepts"}
\`\`\`

These lines are the interface between the runtime and every tool that reads it (mesh:logs,
mesh:check, mesh:probe, the dashboard, the drill, the benchmarks), so they are typed from one
catalogue, \`EVENTS\` in [lib/events.ts](../lib/events.ts), on both sides:

- **Writers** log through an \`EventLogger\` (a pino Logger is one): \`log.warn({ event: "authz.denied", ... }, sentence)\`
  does not compile with an unknown event name, a missing, extra or mistyped field, or a level
  the event is not listed at below. Lines written by hand go through \`eventLine()\`.
- **Readers** parse with \`parseEventLine(text)\` (or \`asEvent(parsed)\`), which returns the event
  only when its fields have the types listed here, and narrow on \`line.event\`:
  \`if (l.event === "authz.denied") l.rule\` is a string. Fields not listed here are kept (a newer
  writer may add some); an event not listed here is not an event to them (\`parseJsonLine\`
  still reads it, for tools that show every line, as mesh:logs does).
- The tests' log sinks (test/mesh-fixtures.ts, test/helpers/est.ts) fail a test file that saw a
  line that is not a listed event with its fields, and test/events.test.ts fails when an event
  name written in the source is not listed, or a listed event is written nowhere. Tests match
  lines through test/helpers/events.ts (\`logs.wait(ev("policy.reloaded", (l) => ...))\`,
  \`eventsIn(text, "listening")\`, \`hasEvent(text, name)\`), never by string, so a renamed
  event or field fails \`tsc\` in the tests too.

To add an event: add it to \`EVENTS\` (levels, one line on what it means, its fields), log it,
and run \`npm run events:doc\`.

A field's type is one of \`string\`, \`number\`, \`boolean\`, \`string[]\`, \`number[]\`, a
\`map<…>\` (an object of names to values of that type), \`cert\` (what a peer's certificate says
of itself: \`subject\`, \`issuer\`, \`serial\`, \`validFrom\`, \`validTo\`, each optional), \`cert|string\`
(that, or a mesh name) or \`top[]\`
(\`{ remote | name, count }\` objects); \`?\` marks a field that may be absent.

`;

const SECTIONS: Array<{ title: string; match: (name: string) => boolean }> = [
  {
    title: "The mesh runtime and sidecar (services/mesh)",
    match: (n) =>
      /^(listening|request|authz|tls\.|http\.|policy\.(reload|table)|crl\.|upstream\.|outbound\.|sidecar\.|shutdown|log\.)/.test(
        n,
      ),
  },
  { title: "The identity agent (services/mesh/identity-agent)", match: (n) => /^(identity|trust)\./.test(n) },
  { title: "The CA server (ca/server, ca serve, ca rotate)", match: (n) => /^(ca|est|rotate|spiffe)\./.test(n) },
  {
    title: "The scripts (mesh:up, the drill)",
    match: (n) => /^(supervisor|drill|mesh)\.|^policy\.(unknown_caller|test_failed)$/.test(n),
  },
  { title: "Any process", match: () => true },
];

const cell = (s: string) => s.replaceAll("|", "\\|");

function row(name: EventName, spec: EventSpec): string {
  const fields = Object.entries(spec.fields)
    .map(([k, t]) => (t.endsWith("?") ? `\`${k}?\`: ${t.slice(0, -1)}` : `\`${k}\`: ${t}`))
    .join(", ");
  const levels = spec.level.map((l) => `${l} (${LEVELS[l]})`).join(", ");
  return `| \`${name}\` | ${levels} | ${cell(fields) || "—"} | ${cell(spec.about)} |`;
}

/** docs/events.md as the catalogue says it. */
export function renderEventsDoc(): string {
  const left = new Set(Object.keys(EVENTS) as EventName[]);
  const out = [HEAD.trimEnd()];
  for (const s of SECTIONS) {
    const names = [...left].filter(s.match).sort();
    if (names.length === 0) continue;
    for (const n of names) left.delete(n);
    out.push("", `## ${s.title}`, "", "| event | level | fields | what it says |", "|---|---|---|---|");
    for (const n of names) out.push(row(n, EVENTS[n]));
  }
  return `${out.join("\n")}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(EVENTS_DOC, renderEventsDoc());
  console.log(`wrote ${EVENTS_DOC}: ${Object.keys(EVENTS).length} events`);
}
