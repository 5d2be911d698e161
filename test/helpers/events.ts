// Log lines in tests. `logged` builds a line as the writers build one (eventLine, the
// catalogue's levels), so a fixture missing a field, or with one of the wrong type, fails tsc.
// `checkedLine` parses a line a real writer wrote and holds it to the catalogue: a line that is
// not a catalogued event with its fields fails the test file that saw it (the tests exercise
// nearly every writer, so the catalogue cannot drift from what the processes really write).
import { after } from "node:test";
import { EVENTS, asEvent, eventLine, parseJsonLine, type EventFields, type EventName, type LevelName, type UnknownLine } from "../../lib/events.ts";

export function logged<E extends EventName>(service: string, fields: EventFields<E>, o: { time?: string; msg?: string; level?: LevelName } = {}): UnknownLine {
  const spec: { level: readonly LevelName[] } = EVENTS[fields.event as EventName];
  const level = (o.level ?? spec.level[0]) as (typeof EVENTS)[E]["level"][number];
  return parseJsonLine(eventLine<E>({ level, service, time: o.time }, fields, o.msg ?? fields.event).trimEnd())!;
}

const offCatalogue: string[] = [];
let hooked = false;

/** A line a writer wrote, parsed (undefined: not JSON); one that is not a catalogued event is noted and fails the file. */
export function checkedLine(raw: string): UnknownLine | undefined {
  const line = parseJsonLine(raw);
  if (!line) return undefined;
  if (!asEvent(line)) {
    offCatalogue.push(raw.slice(0, 400));
    if (!hooked) {
      hooked = true;
      after(() => {
        throw new Error(`${offCatalogue.length} log line(s) are not catalogued events with their fields (lib/events.ts), e.g.:\n${offCatalogue.slice(0, 5).join("\n")}`);
      });
    }
  }
  return line;
}
