// Log lines in tests. `logged` builds a line as eventLine does (at the catalogue's levels), so a fixture missing a field, or with one of the wrong type, fails tsc.
// `checkedLine` parses a line a real writer wrote and holds it to the catalogue: a line that is
// not a catalogued event with its fields fails the test file that saw it (the tests exercise
// nearly every writer, so the catalogue cannot drift from what the processes really write).
import { after } from "node:test";
import {
  EVENTS,
  LEVELS,
  asEvent,
  type LoggedEvent,
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

/**
 * A predicate for the lines of one catalogued event, with `pred` on its typed fields: tsc
 * refuses an event name the catalogue lacks and a field the event does not have, so a renamed
 * event fails the tests' type check rather than leaving them waiting for a line that never comes.
 * It matches on the name, as the tools that read logs do; that a line has its event's fields is
 * checkedLine's job (LogSink and the CA's line log hold every line to the catalogue).
 */
export function ev<E extends EventName>(name: E, pred: (l: LoggedEvent<E>) => boolean = () => true) {
  return <L extends object>(l: L): l is L & LoggedEvent<E> =>
    (l as { event?: unknown }).event === name && pred(l as unknown as LoggedEvent<E>);
}

/** The JSON lines of a process's output or a log file (anything else, such as npm's banner, skipped). */
export function linesOf(text: string): UnknownLine[] {
  return text.split("\n").flatMap((raw): UnknownLine[] => {
    const l = parseJsonLine(raw.trim());
    return l ? [l] : [];
  });
}

/** The `name` lines in a text (a process's output, a log file), typed, filtered by `pred`. */
export function eventsIn<E extends EventName>(
  text: string,
  name: E,
  pred?: (l: LoggedEvent<E>) => boolean,
): Array<UnknownLine & LoggedEvent<E>> {
  return linesOf(text).filter(ev(name, pred));
}

/** Whether a text holds a `name` line matching `pred`. */
export function hasEvent<E extends EventName>(text: string, name: E, pred?: (l: LoggedEvent<E>) => boolean): boolean {
  return linesOf(text).some(ev(name, pred));
}

/** A predicate for the lines of any of several catalogued events (see ev). */
export function evAny<E extends EventName>(...names: E[]) {
  return <L extends object>(l: L): l is L & LoggedEvent<E> => names.some((name) => ev(name)(l));
}
