// npm run mesh:toggle: make one service of the running mesh (npm run mesh:up) present a chosen bad
// identity, show what that looks like on both sides, and put its own identity back.
//   npm run mesh:toggle -- payment expired
//   npm run mesh:toggle -- payment --restore
import { dirname, relative } from "node:path";
import { rmSync } from "node:fs";
import { Command, Option } from "commander";
import { isIdentityName } from "../services/mesh/names.ts";
import { bold, dim, green, red, yellow } from "./mesh-format.ts";
import { craft, otherName, workFolder } from "./toggle/craft.ts";
import { EXIT_CODES, ToggleError } from "./toggle/errors.ts";
import { install, installedKind, remove } from "./toggle/install.ts";
import { KIND_ABOUT, KIND_LESSON, TOGGLE_KINDS, isToggleKind, type ToggleKind } from "./toggle/kinds.ts";
import { readMesh, target, toggleable, type MeshState, type Target } from "./toggle/mesh.ts";
import { heldSerial, observe, waitForLine, type Observed } from "./toggle/observe.ts";
import { endQuietlyOnClosedOutput } from "../lib/closed-output.ts";

endQuietlyOnClosedOutput();

const program = new Command("mesh:toggle")
  .description(
    "Make one service of the running mesh present a chosen bad identity (a teaching toggle), show what each side sees, and put it back.",
  )
  .argument("[service]", "the service: order, payment, inventory (or a workload mesh:up runs)")
  .argument("[kind]", `the bad identity: ${TOGGLE_KINDS.join(", ")}`)
  .option("--restore", "put the service's own identity back")
  .option("--list", "list the kinds, one line each")
  .option("--status", "which services present a toggle now")
  .addOption(new Option("--logs <dir>", "mesh:up's log folder (mesh.json)").env("MESH_LOG_DIR").default("./logs"))
  .option("--json", "print the report as JSON")
  .addHelpText(
    "after",
    `
Examples:
  npm run mesh:toggle -- --list
  npm run mesh:toggle -- payment expired      # order's calls to payment now fail: server_cert_expired
  npm run mesh:toggle -- order no-client-auth # payment and inventory refuse order: bad_certificate
  npm run mesh:toggle -- payment --restore
  npm run mesh:toggle -- --status

The table of what each looks like, what it means and the fix: docs/toggles.md.

Exit codes: 0 done and seen in force, 1 the service did not put it in force, 2 bad arguments,
3 no mesh running (npm run mesh:up), 4 openssl could not make the certificate.`,
  )
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2))
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

interface Opts {
  restore?: boolean;
  list?: boolean;
  status?: boolean;
  logs: string;
  json?: boolean;
}

const IN_FORCE_MS = 20_000;

async function main(): Promise<void> {
  program.parse();
  const [service, kind] = program.args as [string | undefined, string | undefined];
  const o = program.opts<Opts>();
  // Everything the words say is checked before anything is read or written.
  if (o.list) return list(o);
  // The first screen is the examples, as `npm run ca` with no command.
  if (!service && !o.status && !o.restore) {
    program.outputHelp();
    return;
  }
  if (!o.status) {
    if (!service)
      throw new ToggleError("BAD_INPUT", "name the service to restore (npm run mesh:toggle -- payment --restore)");
    if (!isIdentityName(service))
      throw new ToggleError("BAD_INPUT", `${JSON.stringify(service.slice(0, 40))} is not a service name`);
    if (o.restore && kind) throw new ToggleError("BAD_INPUT", `--restore takes no kind (got ${kind})`);
    if (!o.restore && !kind)
      throw new ToggleError("BAD_INPUT", `name a kind for ${service}: ${TOGGLE_KINDS.join(", ")} (or --restore)`);
    if (kind && !isToggleKind(kind))
      throw new ToggleError(
        "BAD_INPUT",
        `${JSON.stringify(kind.slice(0, 40))} is not a toggle: use one of ${TOGGLE_KINDS.join(", ")}`,
      );
  }
  const mesh = readMesh(o.logs);
  if (o.status) return status(mesh, o);
  const t = target(mesh, service!);
  if (o.restore) return restore(mesh, t, o);
  return flip(mesh, t, kind as ToggleKind, o);
}

function list(o: Opts): void {
  if (o.json) {
    console.log(JSON.stringify(TOGGLE_KINDS.map((k) => ({ kind: k, about: KIND_ABOUT[k], ...KIND_LESSON[k] }))));
    return;
  }
  for (const k of TOGGLE_KINDS) console.log(`${k.padEnd(16)}${KIND_ABOUT[k]}`);
}

function status(mesh: MeshState, o: Opts): void {
  const rows = toggleable(mesh).map((s) => ({ service: s, toggle: installedKind(target(mesh, s).toggle) }));
  if (o.json) {
    console.log(JSON.stringify(rows));
    return;
  }
  for (const r of rows)
    console.log(
      `${r.service.padEnd(12)}${r.toggle ? yellow(`${r.toggle.kind} (serial ${r.toggle.serial}, since ${r.toggle.since})`) : "its own identity"}`,
    );
}

async function flip(mesh: MeshState, t: Target, kind: ToggleKind, o: Opts): Promise<void> {
  const work = workFolder(dirname(t.toggle.dir));
  let made: Awaited<ReturnType<typeof craft>>;
  try {
    made = await craft({ kind, service: t.service, pki: mesh.pki, work, store: mesh.ca?.store });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const since = Date.now();
  install(t.toggle, { certPem: made.certPem, keyPem: made.keyPem, kind, serial: made.serial });
  const on = await waitForLine(
    mesh.logs,
    t.service,
    since,
    (l) => l.event === "toggle.on" && l.serial === made.serial,
    IN_FORCE_MS,
  );
  if (!on)
    throw new ToggleError(
      "NOT_SEEN",
      `${t.service} did not put the ${kind} toggle in force within ${IN_FORCE_MS / 1000} s (no toggle.on in ${relative(".", mesh.logs)}/${t.service}.log): is it running? The toggle stays in ${t.toggle.dir}; npm run mesh:toggle -- ${t.service} --restore removes it`,
    );
  // A revocation is in force once the peers hold the new CRL (the long poll brings it within a second).
  const crlWait = kind === "revoked" ? await peersHaveCrl(mesh, t, since) : undefined;
  const seen = await observe(mesh, t, {
    since,
    serial: made.serial,
    name: kind === "other-name" ? otherName(t.service) : t.service,
  });
  const report = {
    service: t.service,
    kind,
    about: KIND_ABOUT[kind],
    made: made.made,
    serial: made.serial,
    inForceAfterMs: Date.parse(on.time) - since,
    crls: crlWait,
    ...seen,
    ...KIND_LESSON[kind],
    restore: `npm run mesh:toggle -- ${t.service} --restore`,
  };
  if (o.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  console.log(`${bold(`${t.service} now presents: ${kind}`)} — ${KIND_ABOUT[kind]}`);
  console.log(`  made        ${made.made}`);
  console.log(`  in force    ${t.service} logged toggle.on ${report.inForceAfterMs} ms after the flip`);
  if (crlWait) console.log(`  CRLs        ${crlWait}`);
  printSeen(t, seen, "since the flip");
  console.log(`\n${bold("what it means")}  ${KIND_LESSON[kind].means}`);
  console.log(`${bold("the fix")}        ${KIND_LESSON[kind].fix}`);
  console.log(dim(`\nput it back: ${report.restore}   (the table of every toggle: docs/toggles.md)`));
}

async function restore(mesh: MeshState, t: Target, o: Opts): Promise<void> {
  const was = installedKind(t.toggle);
  const since = Date.now();
  if (!remove(t.toggle)) {
    const msg = `${t.service} has no toggle on: it presents its own identity (serial ${heldSerial(t)})`;
    console.log(o.json ? JSON.stringify({ service: t.service, restored: false, message: msg }) : msg);
    return;
  }
  const off = await waitForLine(mesh.logs, t.service, since, (l) => l.event === "toggle.off", IN_FORCE_MS);
  if (!off)
    throw new ToggleError(
      "NOT_SEEN",
      `${t.service} did not log toggle.off within ${IN_FORCE_MS / 1000} s after the toggle was removed: is it running? (see ${relative(".", mesh.logs)}/${t.service}.log)`,
    );
  // Read before and after the look: the agent may renew in between, and either is its own identity.
  const before = heldSerial(t);
  const seen = await observe(mesh, t, { since, serial: before, name: t.service, failuresOnly: true });
  const held = seen.presented?.serial === heldSerial(t) ? heldSerial(t) : before;
  const exact = seen.presented?.serial === held;
  const report = {
    service: t.service,
    restored: true,
    was: was?.kind ?? null,
    serial: held,
    identity: t.identity.cert,
    exact,
    inForceAfterMs: Date.parse(off.time) - since,
    ...seen,
  };
  if (o.json) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(bold(`${t.service} presents its own identity again${was ? ` (the ${was.kind} toggle is gone)` : ""}`));
    console.log(`  in force    ${t.service} logged toggle.off ${report.inForceAfterMs} ms after the restore`);
    printSeen(t, seen, "since the restore (failures only)");
  }
  if (!exact)
    throw new ToggleError(
      "NOT_SEEN",
      `${t.service} presents serial ${seen.presented?.serial ?? "nothing"}, not the identity it holds (serial ${held} in ${t.identity.cert})`,
    );
}

/** Waits for every other service to log new CRLs since the flip; says how long it took, or that it did not. */
async function peersHaveCrl(mesh: MeshState, t: Target, since: number): Promise<string> {
  const peers = Object.keys(mesh.ports).filter((s) => s !== t.service);
  const took: string[] = [];
  for (const p of peers) {
    const l = await waitForLine(
      mesh.logs,
      p,
      since,
      (x) =>
        (x.event === "trust.updated" && x.changed.includes("crls")) || (x.event === "tls.reloaded" && x.trustChanged),
      10_000,
    );
    took.push(l ? `${p} ${Date.parse(l.time) - since} ms` : `${p} not yet`);
  }
  return `the CA's new CRL reached ${took.join(", ")} after the revocation`;
}

function printSeen(t: Target, s: Observed, when: string): void {
  if (s.presented)
    console.log(
      `  presented   a handshake with ${t.service} at 127.0.0.1:${t.port} shows ${s.presented.subject}, serial ${s.presented.serial}, issued by ${s.presented.issuer}, valid ${s.presented.validFrom} to ${s.presented.validTo}, ${s.presented.san}`,
    );
  console.log(`\n${bold("mesh:probe")} (every pair with ${t.service}, each caller with what it presents now)`);
  for (const c of s.probe) {
    const line = `  ${`${c.caller} → ${c.callee}`.padEnd(26)}${c.observed.padEnd(36)}${dim(`the policy says ${c.expected}`)}`;
    console.log(c.ok ? green(line) : red(line));
  }
  if (s.order)
    console.log(
      `\n${bold("a real order")} (edge → order → inventory, payment): ${s.order.status ?? "no answer"} ${s.order.outcome}`,
    );
  console.log(`\n${bold(`log lines ${when}`)} (npm run mesh:logs)`);
  if (s.lines.length === 0) console.log(dim("  none"));
  for (const l of s.lines)
    console.log(
      `  ${l.service.padEnd(10)} ${l.event}${l.reason ? ` ${l.reason}` : ""}${l.count > 1 ? dim(` ×${l.count}`) : ""}: ${l.msg}`,
    );
  console.log(`\n${bold("dashboard")}`);
  if (s.health) console.log(`  ${t.service} /healthz: ${s.health.status} ${s.health.body}`);
  if (s.dashboard) {
    const id = s.dashboard.identity;
    console.log(
      `  ${t.service}'s card: ${s.dashboard.toggle ? `toggle: ${s.dashboard.toggle}, ` : ""}${id ? `serial ${id.serial}, ${id.status === "unknown" ? "not in this CA's ledger" : id.status}` : "no identity shown"}`,
    );
    for (const e of s.dashboard.edges) console.log(`  ${e}`);
  } else console.log(dim("  no dashboard running"));
}

try {
  await main();
} catch (e) {
  if (e instanceof ToggleError) {
    process.stderr.write(`mesh:toggle: ${e.message}\n`);
    process.exitCode = EXIT_CODES[e.code];
  } else {
    process.stderr.write(`mesh:toggle: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}\n`);
    process.exitCode = 2;
  }
}
