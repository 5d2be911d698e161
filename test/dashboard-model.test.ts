// The dashboard's model fed literal log lines: what each event counts, and nothing twice.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MeshModel } from "../scripts/dashboard/model.ts";
import { UNAUTHENTICATED } from "../scripts/dashboard/view.ts";
import { logged } from "./helpers/events.ts";

const T = "2026-12-01T10:00:00.000Z";
const NOW = Date.parse(T) + 1_000;

test("a denied call counts once, as denied, on its edge, in the feed and the timeline, and is not drawn as a failure", () => {
  const m = new MeshModel();
  m.ingest(
    logged(
      "payment",
      {
        event: "authz.denied",
        peer: "inventory",
        method: "POST",
        path: "/charge",
        rule: "payment.accepts",
        reason: "inventory is not listed in payment.accepts",
        hint: "add it",
      },
      { time: T },
    ),
  );
  // The 403 the access log also writes for it must not count again.
  m.ingest(
    logged(
      "payment",
      {
        event: "request",
        peer: "inventory",
        method: "POST",
        path: "/charge",
        status: 403,
        rule: "payment.accepts",
        ms: 1,
      },
      { time: T },
    ),
  );
  const [e] = m.edgesView(NOW);
  // A 403 the policy asks for is the mesh working: counted as denied, never as failing (red).
  assert.deepEqual(
    { from: e!.from, to: e!.to, allowed: e!.allowed, denied: e!.denied, failing: e!.failing, locked: e!.locked },
    { from: "inventory", to: "payment", allowed: 0, denied: 1, failing: false, locked: true },
  );
  assert.equal(m.feedView().length, 1);
  assert.equal(m.feedView()[0]!.fix, "add it");
  assert.equal(m.feedView()[0]!.severity, "denied");
  const tl = m.timelineView(NOW);
  assert.equal(
    tl.held.reduce((a, b) => a + b, 0),
    1,
  );
  assert.equal(
    tl.failed.reduce((a, b) => a + b, 0),
    0,
  );
  assert.equal(
    tl.ok.reduce((a, b) => a + b, 0),
    0,
  );
});

test("summaries count their requests; a refused handshake has no identity and no padlock", () => {
  const m = new MeshModel();
  m.ingest(
    logged(
      "payment",
      {
        event: "request.summary",
        peer: "order",
        method: "POST",
        route: "/charge",
        status: 201,
        rule: "payment.accepts",
        count: 250,
        msAvg: 1,
        msMax: 2,
      },
      { time: T },
    ),
  );
  m.ingest(
    logged(
      "payment",
      {
        event: "tls.handshake_failed",
        reason: "unknown_ca",
        peer: { subject: "CN=order.internal", issuer: "CN=Evil" },
      },
      { time: T, msg: "signed by CN=Evil" },
    ),
  );
  const edges = m.edgesView(NOW);
  assert.equal(edges.find((e) => e.from === "order")!.allowed, 250);
  const refused = edges.find((e) => e.from === UNAUTHENTICATED)!;
  // A CA that is not ours refused: a stranger kept out, as intended.
  assert.deepEqual(
    { keptOut: refused.keptOut, refused: refused.refused, failing: refused.failing, locked: refused.locked },
    { keptOut: 1, refused: 0, failing: false, locked: false },
  );
  assert.equal(m.feedView()[0]!.peer, "CN=order.internal (issued by CN=Evil)");
  assert.equal(m.feedView()[0]!.severity, "kept-out");
});

test("handshake refusals: no certificate and a stranger's CA are kept out calmly; one of our own CAs refused, an expired or revoked certificate are red", () => {
  const m = new MeshModel({ isOwnIssuer: (issuer) => issuer === "CN=Mesh Dev Issuing CA G2" });
  const refuse = (reason: string, issuer?: string) =>
    m.ingest(
      logged(
        "payment",
        { event: "tls.handshake_failed", reason, peer: issuer ? { subject: "CN=order.internal", issuer } : undefined },
        { time: T, msg: reason },
      ),
    );
  refuse("no_client_cert");
  refuse("unknown_ca", "CN=Probe Foreign CA");
  let e = m.edgesView(NOW)[0]!;
  assert.deepEqual(
    { keptOut: e.keptOut, refused: e.refused, failing: e.failing },
    { keptOut: 2, refused: 0, failing: false },
  );
  refuse("unknown_ca", "CN=Mesh Dev Issuing CA G2"); // our own new generation, not trusted yet: a rotation gone wrong
  refuse("expired", "CN=Mesh Dev Issuing CA");
  refuse("revoked", "CN=Mesh Dev Issuing CA");
  e = m.edgesView(NOW)[0]!;
  assert.deepEqual(
    { keptOut: e.keptOut, refused: e.refused, failing: e.failing },
    { keptOut: 2, refused: 3, failing: true },
  );
  assert.deepEqual(
    m.feedView().map((f) => f.severity),
    ["refused", "refused", "refused", "kept-out", "kept-out"],
  );
  const tl = m.timelineView(NOW);
  assert.deepEqual([tl.held.reduce((a, b) => a + b, 0), tl.failed.reduce((a, b) => a + b, 0)], [2, 3]);
});

test("a failed call is red; a 403 the caller saw (upstream.failed forbidden) is the policy at work", () => {
  const m = new MeshModel();
  m.ingest(
    logged(
      "order",
      { event: "upstream.failed", upstream: "payment", reason: "upstream_down" },
      { time: T, msg: "payment is down" },
    ),
  );
  m.ingest(
    logged(
      "order",
      { event: "upstream.failed", upstream: "inventory", reason: "forbidden" },
      { time: T, msg: "inventory said 403" },
    ),
  );
  const edges = m.edgesView(NOW);
  assert.deepEqual(
    edges.map((e) => [e.to, e.failed, e.failing]),
    [["payment", 1, true]],
  );
  assert.deepEqual(
    m.feedView().map((f) => f.severity),
    ["denied", "failed"],
  );
});

test("a mesh:up start (mesh.started) begins a new run: nodes, counts, calls seen and refusals of the earlier run go, and its lines read later are ignored", () => {
  const m = new MeshModel();
  const old = "2026-12-01T09:00:00.000Z";
  m.ingest(logged("mesh-up", { event: "mesh.started", pid: 1, mode: "online" }, { time: old }));
  m.ingest(
    logged(
      "shipping-old",
      { event: "listening", port: 1, identity: "x.internal", serial: "01", notAfter: "2027-01-01T00:00:00.000Z" },
      { time: old },
    ),
  );
  m.ingest(
    logged(
      "inventory",
      {
        event: "authz.denied",
        peer: "shipping",
        method: "GET",
        path: "/stock/widget",
        rule: "inventory.accepts",
        reason: "no",
      },
      { time: old },
    ),
  );
  m.ingest(logged("mesh-up", { event: "mesh.started", pid: 2, mode: "online" }, { time: T }));
  // Another file's line of the earlier run, read after the new run's start line.
  m.ingest(
    logged(
      "payment",
      {
        event: "authz.denied",
        peer: "inventory",
        method: "POST",
        path: "/charge",
        rule: "payment.accepts",
        reason: "no",
      },
      { time: old },
    ),
  );
  m.ingest(
    logged(
      "inventory",
      {
        event: "listening",
        port: 7403,
        identity: "inventory.internal",
        serial: "02",
        notAfter: "2027-01-01T00:00:00.000Z",
      },
      { time: T },
    ),
  );
  assert.deepEqual(
    m.servicesView().map((s) => s.name),
    ["inventory"],
  );
  assert.deepEqual(m.edgesView(NOW), []);
  assert.deepEqual(m.feedView(), []);
  assert.deepEqual(m.seenFor("shipping", "inventory").seen, []);
  assert.equal(m.runStartedAt(), T);
  // An older start line read late does not go back to the earlier run.
  m.ingest(logged("mesh-up", { event: "mesh.started", pid: 1, mode: "online" }, { time: old }));
  assert.equal(m.runStartedAt(), T);
});

test("calls seen are kept per method and path (bounded), with when the callee last reloaded its policy or restarted", () => {
  const m = new MeshModel();
  for (let i = 0; i < 10; i++)
    m.ingest(
      logged(
        "inventory",
        {
          event: "request",
          peer: "shipping",
          method: "GET",
          path: `/stock/item${i}`,
          status: 200,
          rule: "inventory.routes[0]",
        },
        { time: new Date(Date.parse(T) + i * 1000).toISOString() },
      ),
    );
  m.ingest(
    logged(
      "inventory",
      {
        event: "request",
        peer: "shipping",
        method: "GET",
        path: "/stock/item9",
        status: 200,
        rule: "inventory.routes[0]",
      },
      { time: T },
    ),
  );
  const { seen, judgedSince } = m.seenFor("shipping", "inventory");
  assert.equal(seen.length, 4);
  assert.equal(seen[0]!.path, "/stock/item9");
  assert.equal(seen[0]!.count, 2);
  assert.equal(judgedSince, 0);
  const reload = "2026-12-01T10:05:00.000Z";
  m.ingest(logged("inventory", { event: "policy.reloaded", file: "p.toml", accepts: {} }, { time: reload }));
  assert.equal(m.seenFor("shipping", "inventory").judgedSince, Date.parse(reload));
});

test("the supervisor's events: restarts per component, the last exit, restarting and given up; hostile values bounded", () => {
  const m = new MeshModel();
  const sup = (event: string, f: Record<string, unknown>) => m.ingest({ time: T, service: "mesh-up", event, ...f });
  sup("supervisor.started", { component: "payment", pid: 101 });
  sup("supervisor.started", { component: "order", pid: 102 });
  sup("supervisor.exited", { component: "payment", pid: 101, code: 1, signal: null });
  sup("supervisor.restarting", { component: "payment", attempt: 1, delayMs: 500 });
  let payment = m.componentsView().find((c) => c.component === "payment")!;
  assert.deepEqual(
    [payment.state, payment.restarts, payment.attempt, payment.delayMs, payment.lastExit],
    ["restarting", 1, 1, 500, "exited with code 1"],
  );
  sup("supervisor.started", { component: "payment", pid: 103 });
  payment = m.componentsView().find((c) => c.component === "payment")!;
  assert.deepEqual([payment.state, payment.pid, payment.restarts], ["running", 103, 1]);
  sup("supervisor.exited", { component: "order", pid: 102, code: null, signal: "SIGKILL" });
  for (let i = 1; i <= 5; i++) sup("supervisor.restarting", { component: "order", attempt: i, delayMs: 100 * i });
  sup("supervisor.gave_up", { component: "order", restarts: 5 });
  const order = m.componentsView().find((c) => c.component === "order")!;
  assert.deepEqual([order.state, order.restarts, order.lastExit], ["gave_up", 5, "killed by SIGKILL"]);
  sup("supervisor.exited", { component: "x".repeat(10_000), code: 1, signal: "<img src=x>" });
  const x = m.componentsView().find((c) => c.component.startsWith("x"))!;
  assert.equal(x.component.length, 64);
  assert.equal(x.lastExit, "exited with code 1", "a signal that is not a signal name is not shown");
});

test("counts leave the window; the feed is bounded and hostile text is cut", () => {
  const m = new MeshModel();
  for (let i = 0; i < 150; i++)
    m.ingest(
      logged(
        "payment",
        { event: "tls.handshake_failed", reason: "unknown_ca", peer: { subject: `CN=${"<b>".repeat(1000)}` } },
        { time: T, msg: "x" },
      ),
    );
  assert.equal(m.feedView().length, 100);
  assert.ok(m.feedView()[0]!.peer!.length <= 600);
  assert.equal(m.edgesView(NOW + 61_000)[0]!.refused, 0);
  assert.equal(m.edgesView(NOW + 61_000)[0]!.failing, false);
});

test("a renewal or enrolment updates the identity and its last renewal", () => {
  const m = new MeshModel();
  m.ingest(
    logged(
      "order",
      {
        event: "listening",
        port: 7401,
        identity: "order.internal",
        serial: "AB01",
        notAfter: "2027-01-01T00:00:00.000Z",
        trusts: ["CN=Mesh Dev CA"],
      },
      { time: T },
    ),
  );
  m.ingest(
    logged(
      "order",
      {
        event: "identity.renewed",
        serial: "cd02",
        issuer: "CN=Mesh Dev CA",
        root: "CN=Mesh Dev CA",
        generation: 1,
        notAfter: "2026-12-01T12:00:00.000Z",
        previous: "ab01",
        reason: "scheduled",
      },
      { time: "2026-12-01T10:30:00.000Z" },
    ),
  );
  const [s] = m.servicesView();
  assert.equal(s!.serial, "cd02");
  assert.equal(s!.lastRenewal, "2026-12-01T10:30:00.000Z");
  assert.equal(s!.up, true);
});

test("the timeline spans what happened (a minute at least, five at most), so a short drill fills the chart", () => {
  const m = new MeshModel();
  m.ingest(logged("drill", { event: "drill.phase", phase: "baseline", safe: true }, { time: T }));
  m.ingest(
    logged(
      "payment",
      { event: "request", peer: "order", method: "POST", path: "/charge", status: 201, rule: "payment.accepts", ms: 1 },
      { time: T },
    ),
  );
  const short = m.timelineView(NOW);
  assert.equal(short.ok.length, 60);
  assert.equal(
    short.ok.reduce((a, b) => a + b, 0),
    1,
  );
  assert.deepEqual(
    short.marks.map((x) => x.label),
    ["baseline"],
  );
  const later = Date.parse(T) + 200_000;
  const mid = m.timelineView(later);
  assert.equal(mid.start, Math.floor(Date.parse(T) / 1000) - 2, "from just before the first event");
  m.ingest(
    logged(
      "payment",
      { event: "request", peer: "order", method: "GET", path: "/healthz", status: 200, rule: "payment.accepts", ms: 1 },
      { time: new Date(Date.parse(T) + 600_000).toISOString() },
    ),
  );
  assert.equal(
    m.timelineView(Date.parse(T) + 700_000).ok.length,
    103,
    "from just before the first event of the last five minutes",
  );
  assert.equal(m.timelineView(Date.parse(T) + 899_000).ok.length, 300, "never more than five minutes");
});
