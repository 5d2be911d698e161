// The catalogue of log events (lib/events.ts) against the source that writes events, the doc
// that lists them, and lines real loggers write; the writers' types are checked by tsc below.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import {
  EVENTS,
  eventLine,
  isEvent,
  parseEventLine,
  parseJsonLine,
  type EventLogger,
  type LoggedEvent,
} from "../lib/events.ts";
import { createLogger, type ServiceLogger } from "../services/mesh/log.ts";
import { EVENTS_DOC, renderEventsDoc } from "../scripts/events-doc.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WRITERS = ["ca", "services", "scripts", "lib", "bench"];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith(".ts") ? [join(dir, d.name)] : [],
  );
}

/**
 * Every event name the source writes or matches: `event: "x"` in objects and types (not a
 * parameter named event, as in once(event: "close", …)) and `"event":"x"` in hand-made JSON.
 */
function namesInSource(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of WRITERS.flatMap((d) => sources(join(ROOT, d)))) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?<!\(\s*)\bevent:\s*"([^"]+)"|"event":"([^"\\]+)"/g)) {
      const name = m[1] ?? m[2]!;
      const where = `${relative(ROOT, file)}:${text.slice(0, m.index).split("\n").length}`;
      found.set(name, [...(found.get(name) ?? []), where]);
    }
  }
  return found;
}

test("every event name in the source is in the catalogue, and every catalogued event is written somewhere", () => {
  const found = namesInSource();
  assert.ok(found.size > 30, `the scan finds the writers (${found.size} names)`);
  const unknown = [...found].filter(([n]) => !Object.hasOwn(EVENTS, n)).map(([n, at]) => `${n} (${at.join(", ")})`);
  assert.deepEqual(unknown, [], "names written or matched but not in lib/events.ts");
  const unwritten = Object.keys(EVENTS).filter((n) => !found.has(n));
  assert.deepEqual(unwritten, [], "catalogued events no source writes (remove them, or write them)");
});

test("docs/events.md is what the catalogue renders (npm run events:doc), and lists every event once", () => {
  const doc = readFileSync(EVENTS_DOC, "utf8");
  assert.equal(doc, renderEventsDoc(), "docs/events.md is stale: run npm run events:doc");
  const listed = [...doc.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]);
  assert.deepEqual([...listed].sort(), Object.keys(EVENTS).sort());
});

test("a line a real logger writes parses as its event, with its fields typed", () => {
  let written = "";
  const log = createLogger("payment", { write: (s: string) => void (written += s) });
  log.warn(
    {
      event: "authz.denied",
      peer: "inventory",
      peerDns: "inventory.internal",
      method: "POST",
      path: "/charge",
      rule: "payment.accepts",
      reason: "not listed",
      remote: "127.0.0.1:1",
    },
    "denied",
  );
  const l = parseEventLine(written.trimEnd());
  assert.ok(l, written);
  assert.equal(l.event, "authz.denied");
  if (l.event !== "authz.denied") return;
  assert.deepEqual(
    { level: l.level, service: l.service, rule: l.rule, msg: l.msg },
    { level: 40, service: "payment", rule: "payment.accepts", msg: "denied" },
  );
  assert.ok(!Number.isNaN(Date.parse(l.time)));
});

test("eventLine writes pino's shape: level number, ISO time, service, fields, msg", () => {
  const at = new Date("2026-12-06T20:00:00.000Z");
  const text = eventLine(
    { level: "warn", service: "order", time: at },
    { event: "log.dropped", count: 3 },
    "dropped 3",
  );
  assert.equal(
    text,
    `{"level":40,"time":"2026-12-06T20:00:00.000Z","service":"order","event":"log.dropped","count":3,"msg":"dropped 3"}\n`,
  );
  assert.ok(isEvent(parseJsonLine(text.trimEnd()), "log.dropped"));
});

test("a line that drifted from the catalogue is not taken as the event", () => {
  const good = {
    level: 40,
    time: "2026-12-06T20:00:00.000Z",
    service: "payment",
    event: "authz.denied",
    peer: "a",
    method: "GET",
    path: "/",
    rule: "r",
    reason: "x",
    msg: "m",
  };
  const parse = (o: object) => parseEventLine(JSON.stringify(o));
  assert.ok(parse(good));
  assert.ok(parse({ ...good, extra: { any: "thing" } }), "fields a newer writer adds are kept");
  assert.equal(parse({ ...good, extra: 1 })?.event, "authz.denied");
  const { rule: _r, ...noRule } = good;
  assert.equal(parse(noRule), undefined, "a missing field");
  assert.equal(parse({ ...good, rule: 7 }), undefined, "a field of the wrong type");
  assert.equal(parse({ ...good, hint: null }), undefined, "an optional field of the wrong type");
  assert.equal(parse({ ...good, event: "authz.denid" }), undefined, "an unknown event");
  assert.equal(parse({ ...good, level: "warn" }), undefined, "no pino level");
  assert.equal(parse({ ...good, msg: undefined }), undefined, "no sentence");
  assert.equal(parse({ ...good, level: 30 }), undefined, "a level the event is not written at");
  assert.equal(parseEventLine(JSON.stringify(good).slice(0, 60)), undefined, "a torn line");
  assert.equal(parseEventLine("Error: boom"), undefined);
  assert.equal(parseEventLine("[1,2]"), undefined);
  const handshake = {
    ...good,
    event: "tls.handshake_failed",
    reason: "unknown_ca",
    remote: "127.0.0.1:2",
    peer: { subject: "CN=x", serial: 5 },
  };
  assert.equal(parse(handshake), undefined, "a nested field of the wrong type");
  const ok = parse({ ...handshake, peer: { subject: "CN=x", serial: "05" } });
  assert.equal(ok?.event === "tls.handshake_failed" ? ok.peer?.serial : undefined, "05");
});

test("every catalogued event has levels, a sentence and field types the reader knows", () => {
  for (const [name, spec] of Object.entries(EVENTS)) {
    assert.match(name, /^[a-z]+(\.[a-z_]+)*$/, name);
    assert.ok(spec.level.length > 0 && spec.about.length > 10, name);
    for (const f of Object.keys(spec.fields))
      assert.ok(!["level", "time", "service", "msg", "event"].includes(f), `${name}.${f} shadows pino's own`);
  }
});

// Never called: tsc (npm run typecheck, CI) fails if a writer could log off the catalogue, or
// a reader could not narrow. Each @ts-expect-error must stay an error.
export function typeChecks(log: EventLogger, l: LoggedEvent, svc: ServiceLogger): void {
  log.warn({ event: "authz.denied", peer: "a", method: "GET", path: "/", rule: "r", reason: "x" }, "m");
  // @ts-expect-error an unknown event
  log.warn({ event: "authz.denid", peer: "a", method: "GET", path: "/", rule: "r", reason: "x" }, "m");
  // @ts-expect-error a missing field
  log.warn({ event: "authz.denied", peer: "a", method: "GET", path: "/", rule: "r" }, "m");
  // @ts-expect-error a field the event does not have
  log.warn({ event: "authz.denied", peer: "a", method: "GET", path: "/", rule: "r", reason: "x", bogus: 1 }, "m");
  // @ts-expect-error a field of the wrong type
  log.warn({ event: "authz.denied", peer: 1, method: "GET", path: "/", rule: "r", reason: "x" }, "m");
  // @ts-expect-error a level the event is not written at
  log.info({ event: "authz.denied", peer: "a", method: "GET", path: "/", rule: "r", reason: "x" }, "m");
  // @ts-expect-error no sentence
  log.info({ event: "shutdown", signal: "SIGTERM" });
  // @ts-expect-error a child logger is held to the catalogue too
  svc.child({ zone: "a" }).info({ event: "authz.nope" }, "m");
  // @ts-expect-error a hand-made line is checked the same way
  eventLine({ level: "info", service: "x" }, { event: "log.dropped", count: 1 }, "m");
  if (l.event === "authz.denied") {
    const rule: string = l.rule;
    void rule;
  }
  // @ts-expect-error a field of another event
  void l.rule;
}
