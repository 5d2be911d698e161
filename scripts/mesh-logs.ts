// npm run mesh:logs: filter and pretty-print the services' JSON logs; print and exit, or
// follow them live with -f, as tail and kubectl logs do.
import { closeSync, existsSync, fstatSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { Command, Option } from "commander";
import { isEventName, type EventName } from "../lib/events.ts";
import { FOLLOW_LOOKBACK, rotatedSince } from "../lib/rotating-file.ts";
import { formatLine, parseLine, type MeshLine } from "./mesh-format.ts";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";

// A reader that stopped early (`| head`, a closed pager) is how a listing ends, not a failure;
// installed before the flags are parsed, so `--help | head -1` ends quietly too.
endQuietlyOnClosedOutput();

function inoOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

const program = new Command("mesh:logs")
  .description("Pretty-print the mesh's logs (logs/<service>.log) and exit; with -f, keep following them as they grow.")
  .addOption(new Option("--logs <dir>", "the log folder").env("MESH_LOG_DIR").default("./logs"))
  .option("--denied", "only authz.denied (403s)")
  .option("--handshake", "only tls.handshake_failed")
  .option("--failures", "only denials, handshake failures, upstream and reload failures")
  .option("--service <name...>", "only these services")
  .option("--event <name...>", "only these event names")
  .option("-f, --follow", "after printing what is there, print new lines as they are written (Ctrl-C stops)")
  // The default before -f existed; still accepted so older command lines keep working.
  .addOption(new Option("--no-follow", "print what is there and exit (the default)").hideHelp())
  .option("--json", "print matching lines as JSON instead of prettified")
  .addHelpText(
    "after",
    `\nExamples:\n  npm run mesh:logs -- --failures\n  npm run mesh:logs -- -f\n  npm run mesh:logs -- --denied --handshake\n  npm run mesh:logs -- --service payment --event tls.reloaded\n\nExit codes: 0 done (or stopped with Ctrl-C), 2 bad flags, no log folder or no log for a --service.`,
  )
  // One line per error: commander puts "(Did you mean …?)" on a line of its own.
  .configureOutput({ outputError: (str, write) => write(str.replace(/\n(?!$)/g, " ")) })
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

program.parse();
const o = program.opts<{
  logs: string;
  denied?: boolean;
  handshake?: boolean;
  failures?: boolean;
  service?: string[];
  event?: string[];
  follow?: boolean;
  json?: boolean;
}>();
o.logs ||= "./logs"; // an empty MESH_LOG_DIR means the default

if (!existsSync(o.logs)) {
  process.stderr.write(`mesh:logs: no log folder ${o.logs} (start the mesh with: npm run mesh:up)\n`);
  process.exit(2);
}

const logged = readdirSync(o.logs)
  .filter((f) => f.endsWith(".log"))
  .map((f) => basename(f, ".log"))
  .sort();
for (const name of o.service ?? []) {
  if (!logged.includes(name)) {
    const known = logged.length > 0 ? `services with logs: ${logged.join(", ")}` : "it holds no <service>.log yet";
    process.stderr.write(`mesh:logs: no log for service ${JSON.stringify(name)} in ${o.logs} (${known})\n`);
    process.exit(2);
  }
}

const FAILURES: EventName[] = [
  "authz.denied",
  "tls.handshake_failed",
  "http.client_error",
  "upstream.failed",
  "tls.reload_failed",
  "policy.reload_failed",
];
const events = new Set<string>(o.event ?? []);
// A name the catalogue does not know is most likely a typo: say so, but still filter on it
// (a newer service may write events this checkout does not know).
for (const e of events)
  if (!isEventName(e))
    console.error(
      `mesh:logs: no event is named ${e} in the catalogue (docs/events.md lists them); showing lines named ${e} anyway`,
    );
if (o.denied) events.add("authz.denied");
if (o.handshake) events.add("tls.handshake_failed");
if (o.failures) for (const e of FAILURES) events.add(e);

function wanted(l: MeshLine): boolean {
  if (events.size > 0 && !events.has(l.event ?? "")) return false;
  if (o.service && !o.service.includes(l.service ?? "")) return false;
  return true;
}

/** Where -f is in each <service>.log: which file (inode) and how far into it. */
const offsets = new Map<string, { ino: number; offset: number }>();
const partial = new Map<string, string>();

/** Bytes from..to of an open file; fewer if it is shorter (never the zeros of a short read). */
function readFd(fd: number, from: number, to: number): string {
  if (to <= from) return "";
  const buf = Buffer.alloc(to - from);
  const n = readSync(fd, buf, 0, buf.length, from);
  return buf.subarray(0, n).toString("utf8");
}

function readRange(file: string, from: number, to?: number): string {
  const fd = openSync(file, "r");
  try {
    return readFd(fd, from, to ?? fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

function emit(file: string, text: string): void {
  const lines = ((partial.get(file) ?? "") + text).split("\n");
  partial.set(file, lines.pop() ?? "");
  for (const raw of lines) {
    const l = parseLine(raw);
    if (l && wanted(l)) console.log(o.json ? raw : formatLine(l));
  }
}

/**
 * Print what was appended since last time. A new inode means the file was rotated
 * (lib/rotating-file.ts: <file> → <file>.1 → <file>.2 …): finish the old file where it now
 * is, then any rotated after it, then the new one from its start. A shrunk file was truncated
 * (copytruncate): start over.
 */
function drain(file: string): void {
  // Opened first, then measured: the inode and size are the open file's even if it is rotated now.
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return;
  }
  try {
    drainOpen(file, fd);
  } finally {
    closeSync(fd);
  }
}

function drainOpen(file: string, fd: number): void {
  const st = fstatSync(fd);
  const at = offsets.get(file);
  let from = at?.offset ?? 0;
  if (at && at.ino !== st.ino) {
    const rotated = rotatedSince(file, at.ino, inoOf);
    rotated.forEach((path, k) => {
      try {
        emit(file, readRange(path, k === 0 ? at.offset : 0));
      } catch {
        /* rotated away again while we read: those lines are gone */
      }
    });
    partial.set(file, "");
    from = 0;
  } else if (st.size < from) {
    from = 0;
  }
  offsets.set(file, { ino: st.ino, offset: st.size });
  if (st.size > from) emit(file, readFd(fd, from, st.size));
}

function files(): string[] {
  return readdirSync(o.logs)
    .filter((f) => f.endsWith(".log"))
    .filter((f) => !o.service || o.service.includes(basename(f, ".log")))
    .map((f) => join(o.logs, f));
}

/** The rotated files of a log that are there, oldest first. */
function rotatedOf(file: string): string[] {
  const out: string[] = [];
  for (let n = 1; n <= FOLLOW_LOOKBACK && existsSync(`${file}.${n}`); n++) out.unshift(`${file}.${n}`);
  return out;
}

// Existing lines first (the rotated files' too), merged in time order across services.
const all: Array<{ l: MeshLine; raw: string }> = [];
for (const f of files()) {
  for (const rotated of rotatedOf(f)) {
    for (const raw of readRange(rotated, 0).split("\n")) {
      const l = parseLine(raw);
      if (l && wanted(l)) all.push({ l, raw });
    }
  }
  const fd = openSync(f, "r");
  let st: { ino: number; size: number };
  let text: string;
  try {
    st = fstatSync(fd);
    text = readFd(fd, 0, st.size);
  } finally {
    closeSync(fd);
  }
  const cut = Buffer.byteLength(text.slice(0, text.lastIndexOf("\n") + 1));
  offsets.set(f, { ino: st.ino, offset: cut });
  for (const raw of text.slice(0, text.lastIndexOf("\n") + 1).split("\n")) {
    const l = parseLine(raw);
    if (l && wanted(l)) all.push({ l, raw });
  }
}
all.sort((a, b) => String(a.l.time).localeCompare(String(b.l.time)));
for (const { l, raw } of all) console.log(o.json ? raw : formatLine(l));

if (o.follow) {
  const tick = setInterval(() => {
    for (const f of files()) drain(f);
  }, 250);
  const stop = () => {
    clearInterval(tick);
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
