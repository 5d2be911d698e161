// The dashboard's state on real files: a log folder written by hand (as the services, mesh:up
// and its supervisor write it), a real policy file, a real CA and the real `ca rotate` CLI.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CertificateAuthority } from "../ca/authority.ts";
import { page } from "../scripts/dashboard/server.ts";
import { DashboardState } from "../scripts/dashboard/state.ts";
import type { CellView, Snapshot } from "../scripts/dashboard/view.ts";
import { ca, cleanup, ROOT, tempDir } from "./helpers/ca.ts";
import { EVENTS, LEVELS, isEventName, type EventSpec } from "../lib/events.ts";

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

const POLICY = `
[payment]
accepts = ["order"]

[inventory]
accepts = ["order"]

[[inventory.routes]]
method = "GET"
path = "/stock/:sku"
accepts = ["order", "shipping"]

[order]
accepts = []
`;
const REVERTED = `
[payment]
accepts = ["order"]

[inventory]
accepts = ["order"]

[order]
accepts = []
`;

function folder(): {
  dir: string;
  logs: string;
  policy: string;
  line: (file: string, l: Record<string, unknown>) => void;
} {
  const dir = tempDir("mesh-dash-state-");
  dirs.push(dir);
  const logs = join(dir, "logs");
  mkdirSync(logs);
  const policy = join(dir, "policy.toml");
  writeFileSync(policy, POLICY);
  // Each event at its catalogued level (lib/events.ts), with a sentence unless the line has one.
  const level = (event: unknown) => (isEventName(event) ? LEVELS[(EVENTS[event] as EventSpec).level[0]!] : 30);
  return {
    dir,
    logs,
    policy,
    line: (file, l) =>
      appendFileSync(join(logs, file), `${JSON.stringify({ level: level(l.event), msg: String(l.event), ...l })}\n`),
  };
}

const at = (msAgo: number) => new Date(Date.now() - msAgo).toISOString();
const cell = (s: Snapshot, caller: string, service: string): CellView =>
  s.matrix.cells.find((c) => c.caller === caller && c.service === service)!;

test("each call seen is judged by the policy for its own method and path; a route rule's allow is not a mismatch", () => {
  const f = folder();
  f.line("mesh-up.log", { time: at(20_000), service: "mesh-up", event: "mesh.started", pid: 1, mode: "online" });
  f.line("inventory.log", {
    time: at(19_000),
    service: "inventory",
    event: "listening",
    port: 7403,
    identity: "inventory.internal",
    serial: "0a",
    notAfter: at(-3_600_000),
  });
  f.line("inventory.log", {
    time: at(10_000),
    service: "inventory",
    event: "request",
    peer: "shipping",
    method: "GET",
    path: "/stock/widget",
    status: 200,
    rule: "inventory.routes[0] (GET /stock/:sku)",
    ms: 1,
  });
  f.line("inventory.log", {
    time: at(9_000),
    service: "inventory",
    event: "authz.denied",
    peer: "shipping",
    method: "POST",
    path: "/reserve",
    rule: "inventory.accepts",
    reason: "shipping is not listed in inventory.accepts",
  });
  // A call the policy denies, answered 200: what a service running another policy would do.
  f.line("inventory.log", {
    time: at(8_000),
    service: "inventory",
    event: "request",
    peer: "payment",
    method: "GET",
    path: "/healthz",
    status: 200,
    rule: "inventory.accepts",
    ms: 1,
  });
  // The drill's edge logs its enrolment but listens nowhere: a client, not a callee.
  f.line("edge.log", {
    time: at(18_000),
    service: "edge",
    event: "identity.enrolled",
    identity: "edge.internal",
    serial: "0e",
    issuer: "CN=Dash Test CA",
    root: "CN=Dash Test CA",
    generation: 1,
    notAfter: at(-3_600_000),
  });
  const st = new DashboardState({ logs: f.logs, pki: join(f.dir, "no-pki"), policy: f.policy });
  st.refresh();
  const s = st.snapshot();
  assert.equal(s.services.find((x) => x.name === "edge")!.client, true);
  assert.deepEqual(s.matrix.services, ["inventory", "order", "payment"]);
  const ship = cell(s, "shipping", "inventory");
  assert.equal(ship.allow, false, "GET /healthz is not granted to shipping");
  assert.deepEqual(ship.exceptions, ["allow GET /stock/:sku (inventory.routes[0])"]);
  assert.deepEqual(
    ship.seen.map((v) => [v.text, v.verdict]),
    [
      ["403 POST /reserve", "agrees"],
      ["200 GET /stock/widget", "agrees"],
    ],
  );
  assert.equal(ship.mismatch, false);
  assert.equal(s.edges.find((e) => e.from === "shipping")!.failing, false, "a 403 the policy asks for is not red");
  assert.equal(s.edges.find((e) => e.from === "shipping")!.mismatch, false);
  const pay = cell(s, "payment", "inventory");
  assert.equal(pay.mismatch, true);
  assert.equal(pay.seen[0]!.expectRule, "inventory.accepts");
  assert.equal(s.edges.find((e) => e.from === "payment" && e.to === "inventory")!.mismatch, true, "its edge is red");
  st.close();
});

test("re-judged when the policy changes: a call seen before the callee reloaded it is not judged, one after is; a new mesh:up run starts clean", () => {
  const f = folder();
  f.line("mesh-up.log", { time: at(60_000), service: "mesh-up", event: "mesh.started", pid: 1, mode: "online" });
  f.line("inventory.log", {
    time: at(59_000),
    service: "inventory",
    event: "listening",
    port: 7403,
    identity: "inventory.internal",
    serial: "0a",
    notAfter: at(-3_600_000),
  });
  f.line("inventory.log", {
    time: at(50_000),
    service: "inventory",
    event: "request",
    peer: "shipping",
    method: "GET",
    path: "/stock/widget",
    status: 200,
    rule: "inventory.routes[0]",
    ms: 1,
  });
  const st = new DashboardState({ logs: f.logs, pki: join(f.dir, "no-pki"), policy: f.policy });
  st.refresh();
  assert.equal(cell(st.snapshot(), "shipping", "inventory").seen[0]!.verdict, "agrees");
  // The route rule is taken out; inventory reloads the policy.
  writeFileSync(f.policy, REVERTED);
  f.line("inventory.log", {
    time: at(40_000),
    service: "inventory",
    event: "policy.reloaded",
    file: f.policy,
    accepts: {},
  });
  st.refresh();
  let c = cell(st.snapshot(), "shipping", "inventory");
  assert.deepEqual([c.seen[0]!.verdict, c.mismatch, c.exceptions], ["stale", false, []]);
  f.line("inventory.log", {
    time: at(30_000),
    service: "inventory",
    event: "authz.denied",
    peer: "shipping",
    method: "GET",
    path: "/stock/widget",
    rule: "inventory.accepts",
    reason: "no",
  });
  st.refresh();
  c = cell(st.snapshot(), "shipping", "inventory");
  assert.deepEqual(
    c.seen.map((v) => [v.text, v.verdict]),
    [["403 GET /stock/widget", "agrees"]],
  );
  // The rule is put back and inventory restarts with it: the 403 was under the old policy.
  writeFileSync(f.policy, POLICY);
  f.line("inventory.log", {
    time: at(20_000),
    service: "inventory",
    event: "listening",
    port: 7403,
    identity: "inventory.internal",
    serial: "0b",
    notAfter: at(-3_600_000),
  });
  st.refresh();
  c = cell(st.snapshot(), "shipping", "inventory");
  assert.deepEqual([c.seen[0]!.verdict, c.mismatch], ["stale", false]);
  // mesh:up starts again: the earlier run's calls, edges and nodes go.
  const restart = at(10_000);
  f.line("mesh-up.log", { time: restart, service: "mesh-up", event: "mesh.started", pid: 2, mode: "online" });
  f.line("payment.log", {
    time: at(9_000),
    service: "payment",
    event: "listening",
    port: 7402,
    identity: "payment.internal",
    serial: "0c",
    notAfter: at(-3_600_000),
  });
  st.refresh();
  const s = st.snapshot();
  assert.deepEqual(cell(s, "shipping", "inventory").seen, []);
  assert.deepEqual(
    s.services.map((x) => x.name),
    ["payment"],
  );
  assert.deepEqual(s.edges, []);
  assert.equal(s.runStartedAt, restart);
  st.close();
});

test("a dashboard started after a restart reads only the current run, whatever order the files are read in", () => {
  const f = folder();
  // Earlier run: a denial drawn in an earlier run must not show.
  f.line("mesh-up.log", { time: at(120_000), service: "mesh-up", event: "mesh.started", pid: 1, mode: "online" });
  f.line("a-first.log", {
    time: at(110_000),
    service: "shipping",
    event: "listening",
    port: 1,
    identity: "shipping.internal",
    serial: "01",
    notAfter: at(-3_600_000),
  });
  f.line("inventory.log", {
    time: at(100_000),
    service: "inventory",
    event: "authz.denied",
    peer: "shipping",
    method: "GET",
    path: "/stock/widget",
    rule: "inventory.accepts",
    reason: "no",
  });
  f.line("mesh-up.log", { time: at(30_000), service: "mesh-up", event: "mesh.started", pid: 2, mode: "online" });
  f.line("inventory.log", {
    time: at(20_000),
    service: "inventory",
    event: "listening",
    port: 7403,
    identity: "inventory.internal",
    serial: "0a",
    notAfter: at(-3_600_000),
  });
  const st = new DashboardState({ logs: f.logs, pki: join(f.dir, "no-pki"), policy: f.policy });
  st.refresh();
  const s = st.snapshot();
  assert.deepEqual(
    s.services.map((x) => x.name),
    ["inventory"],
  );
  assert.deepEqual(s.feed, []);
  assert.deepEqual(cell(s, "shipping", "inventory").seen, []);
  st.close();
});

test("the supervisor's restarts come from a hand-written mesh-up.log", () => {
  const f = folder();
  f.line("mesh-up.log", { time: at(30_000), service: "mesh-up", event: "mesh.started", pid: 1, mode: "online" });
  f.line("mesh-up.log", {
    time: at(29_000),
    service: "mesh-up",
    event: "supervisor.started",
    component: "payment",
    pid: 11,
  });
  f.line("mesh-up.log", {
    time: at(29_000),
    service: "mesh-up",
    event: "supervisor.started",
    component: "inventory",
    pid: 12,
  });
  f.line("mesh-up.log", {
    time: at(20_000),
    service: "mesh-up",
    event: "supervisor.exited",
    component: "payment",
    pid: 11,
    code: null,
    signal: "SIGKILL",
  });
  f.line("mesh-up.log", {
    time: at(20_000),
    service: "mesh-up",
    event: "supervisor.restarting",
    component: "payment",
    attempt: 1,
    delayMs: 250,
  });
  f.line("mesh-up.log", {
    time: at(19_000),
    service: "mesh-up",
    event: "supervisor.started",
    component: "payment",
    pid: 13,
  });
  f.line("mesh-up.log", {
    time: at(10_000),
    service: "mesh-up",
    event: "supervisor.exited",
    component: "inventory",
    pid: 12,
    code: 1,
    signal: null,
  });
  f.line("mesh-up.log", {
    time: at(9_000),
    service: "mesh-up",
    event: "supervisor.gave_up",
    component: "inventory",
    restarts: 5,
  });
  const st = new DashboardState({ logs: f.logs, pki: join(f.dir, "no-pki"), policy: f.policy });
  st.refresh();
  const comps = st.snapshot().components;
  assert.deepEqual(
    comps.map((c) => [c.component, c.state, c.restarts, c.pid, c.lastExit]),
    [
      ["inventory", "gave_up", 5, 12, "exited with code 1"],
      ["payment", "running", 1, 13, "killed by SIGKILL"],
    ],
  );
  st.close();
});

function cli(args: string[]): ChildProcess {
  // The compiled CLI, as `npm run ca` runs it (bin/ca.mjs).
  return spawn(process.execPath, [join(ROOT, "bin", "ca.mjs"), ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, MESH_PKI_DIR: "", MESH_CA_PASSPHRASE: "" },
  });
}

async function until<T>(what: string, fn: () => T | undefined | null | false, ms = 60_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("edge, the tools' client identity, has an identity card from its certificate file; `ca rotate` run as the README shows is visible: its gate and who it waits for", {
  timeout: 120_000,
}, async () => {
  const f = folder();
  const pki = join(f.dir, "pki");
  const authority = await CertificateAuthority.init({ dir: pki, name: "Dash Test CA" });
  const edge = await authority.issue({ domain: "edge.internal" });
  await authority.issue({ domain: "files.internal" });
  authority.close();
  writeFileSync(
    join(f.logs, "mesh.json"),
    JSON.stringify({
      identities: { edge: { cert: edge.certPath, key: "unused" }, "../../evil": { cert: "/etc/passwd" } },
    }),
  );
  const st = new DashboardState({ logs: f.logs, pki, policy: f.policy });
  st.refresh();
  let s = st.snapshot();
  const card = s.services.find((x) => x.name === "edge")!;
  assert.equal(card.client, true);
  assert.equal(card.identity?.dns, "edge.internal");
  assert.equal(card.identity?.issuer, "Dash Test CA");
  assert.equal(card.identity?.generation, 1);
  assert.equal(card.identity?.status, "valid");
  assert.equal(s.services.length, 1, "a name that is not an identity name is not read");
  assert.equal(s.rotation, null);
  // A certificate of one of our own CAs refused as unknown is something wrong (red)...
  const refusal = () =>
    f.line("payment.log", {
      time: at(0),
      service: "payment",
      event: "tls.handshake_failed",
      reason: "unknown_ca",
      peer: { subject: "CN=order.internal", issuer: "CN=Dash Test CA" },
      msg: "not trusted",
    });
  refusal();
  st.refresh();
  assert.equal(st.snapshot().feed[0]!.severity, "refused");

  // The README's command, as a person runs it: plain text on a terminal, no --json, no log file.
  const rot = cli(["rotate", "--dir", pki, "--timeout", "2m", "--interval", "100ms"]);
  let out = "";
  rot.stdout!.on("data", (d) => (out += d));
  rot.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => rot.once("exit", (code) => r(code)));
  try {
    // No identity enrolled online: gate 1 passes, gate 2 switches, gate 3 waits for the file-mode certificates of generation 1.
    const r = await until("the rotation waiting at gate 3", () => {
      st.refresh();
      const v = st.snapshot().rotation;
      return v?.phase === "retire" && v.waitingFor.length > 0 ? v : null;
    });
    assert.deepEqual([r.from, r.to, r.gate], [1, 2, 3]);
    assert.deepEqual(r.waitingFor.map((w) => w.name).sort(), ["edge.internal", "files.internal"]);
    assert.match(
      r.waitingFor.find((w) => w.name === "files.internal")!.why,
      /npm run ca -- renew --domain files\.internal/,
    );
    assert.notEqual(r.owner, null, "a run is in progress");
    s = st.snapshot();
    assert.ok(
      s.timeline.marks.some((m) => m.label === "prepare") && s.timeline.marks.some((m) => m.label === "activate"),
      "gates passed are marked on the timeline",
    );
    for (const d of ["files.internal", "edge.internal"]) {
      const renewed = await ca(["renew", "--dir", pki, "--domain", d]);
      assert.equal(renewed.code, 0, renewed.stderr);
    }
    const done = await until("the rotation done", () => {
      st.refresh();
      const v = st.snapshot().rotation;
      return v?.phase === "done" ? v : null;
    });
    assert.equal(done.gate, 3);
    assert.equal(await exited, 0, out);
    // ...once its generation is retired, refusing it is the rotation done: kept out, calmly.
    refusal();
    st.refresh();
    assert.equal(st.snapshot().feed[0]!.severity, "kept-out");
  } finally {
    if (rot.exitCode === null) rot.kill("SIGTERM");
    st.close();
  }
});

test("the snapshot embedded in the page cannot close its data block, whatever a log line says", () => {
  const f = folder();
  const evil = `</script><script>alert(1)</script><!-- & \u2028`;
  f.line("payment.log", {
    time: at(1_000),
    service: "payment",
    event: "tls.handshake_failed",
    reason: "unknown_ca",
    peer: { subject: `CN=${evil}`, issuer: "CN=x" },
    msg: evil,
  });
  const st = new DashboardState({ logs: f.logs, pki: join(f.dir, "no-pki"), policy: f.policy });
  st.refresh();
  const html = page("<body><!--initial-state--></body>", st);
  const m = /^<body><script type="application\/json" id="initial-state">([^<]*)<\/script><\/body>$/.exec(html);
  assert.ok(m, "one data block, with no < inside it");
  const snap = JSON.parse(m[1]!) as Snapshot;
  assert.equal(snap.feed[0]!.sentence, evil, "the text comes back as it was");
  st.close();
});
