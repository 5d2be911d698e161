// Log lines in tests. `logged` builds a line as eventLine does (at the catalogue's levels), so a fixture missing a field, or with one of the wrong type, fails tsc.
// `checkedLine` parses a line a real writer wrote and holds it to the catalogue: a line that is
// not a catalogued event with its fields fails the test file that saw it (the tests exercise
// nearly every writer, so the catalogue cannot drift from what the processes really write).
import { after } from "node:test";
import {
  EVENTS,
  LEVELS,
  asEvent,
  parseJsonLine,
  type EventFields,
  type EventName,
  type LevelName,
  type UnknownLine,
} from "../../lib/events.ts";

export function logged<E extends EventName>(
  service: string,
  fields: EventFields<E> & { event: E },
  o: { time?: string; msg?: string; level?: LevelName } = {},
): UnknownLine {
  // The catalogue's first level unless told; built like eventLine, which the writers use.
  const name = (fields as { event: EventName }).event;
  const spec: { level: readonly LevelName[] } = EVENTS[name];
  const line = {
    level: LEVELS[o.level ?? spec.level[0]!],
    time: o.time ?? new Date().toISOString(),
    service,
    ...fields,
    msg: o.msg ?? name,
  };
  return parseJsonLine(JSON.stringify(line))!;
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
        throw new Error(
          `${offCatalogue.length} log line(s) are not catalogued events with their fields (lib/events.ts), e.g.:\n${offCatalogue.slice(0, 5).join("\n")}`,
        );
      });
    }
  }
  return line;
}
