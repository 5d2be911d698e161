// Log lines for tests that feed readers directly: built as the writers build them (eventLine,
// the catalogue's levels), so a fixture missing a field, or with one of the wrong type, fails tsc.
import { EVENTS, eventLine, parseJsonLine, type EventFields, type EventName, type LevelName, type UnknownLine } from "../../lib/events.ts";

export function logged<E extends EventName>(service: string, fields: EventFields<E>, o: { time?: string; msg?: string; level?: LevelName } = {}): UnknownLine {
  const spec: { level: readonly LevelName[] } = EVENTS[fields.event as EventName];
  const level = (o.level ?? spec.level[0]) as (typeof EVENTS)[E]["level"][number];
  return parseJsonLine(eventLine<E>({ level, service, time: o.time }, fields, o.msg ?? fields.event).trimEnd())!;
}
