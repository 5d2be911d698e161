// The dashboard's model fed literal log lines: what each event counts, and nothing twice.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MeshModel } from "../scripts/dashboard/model.ts";
import { UNAUTHENTICATED } from "../scripts/dashboard/view.ts";
import { logged } from "./helpers/events.ts";

const T = "2026-12-01T10:00:00.000Z";
const NOW = Date.parse(T) + 1_000;

test("a denied call counts once, as denied, on its edge, in the feed and the timeline", () => {
  const m = new MeshModel();
  m.ingest(logged("payment", { event: "authz.denied", peer: "inventory", method: "POST", path: "/charge", rule: "payment.accepts", reason: "inventory is not listed in payment.accepts", hint: "add it" }, { time: T }));
  // The 403 the access log also writes for it must not count again.
  m.ingest(logged("payment", { event: "request", peer: "inventory", method: "POST", path: "/charge", status: 403, rule: "payment.accepts", ms: 1 }, { time: T }));
  const [e] = m.edgesView(NOW);
  assert.deepEqual({ from: e!.from, to: e!.to, allowed: e!.allowed, denied: e!.denied, failing: e!.failing, locked: e!.locked }, { from: "inventory", to: "payment", allowed: 0, denied: 1, failing: true, locked: true });
  assert.equal(m.feedView().length, 1);
  assert.equal(m.feedView()[0]!.fix, "add it");
  const tl = m.timelineView(NOW);
  assert.equal(tl.failed.reduce((a, b) => a + b, 0), 1);
  assert.equal(tl.ok.reduce((a, b) => a + b, 0), 0);
});

test("summaries count their requests; a refused handshake has no identity and no padlock", () => {
  const m = new MeshModel();
  m.ingest(logged("payment", { event: "request.summary", peer: "order", method: "POST", route: "/charge", status: 201, rule: "payment.accepts", count: 250, msAvg: 1, msMax: 2 }, { time: T }));
  m.ingest(logged("payment", { event: "tls.handshake_failed", reason: "unknown_ca", peer: { subject: "CN=order.internal", issuer: "CN=Evil" } }, { time: T, msg: "signed by CN=Evil" }));
  const edges = m.edgesView(NOW);
  assert.equal(edges.find((e) => e.from === "order")!.allowed, 250);
  const refused = edges.find((e) => e.from === UNAUTHENTICATED)!;
  assert.equal(refused.refused, 1);
  assert.equal(refused.locked, false);
  assert.equal(m.feedView()[0]!.peer, "CN=order.internal (issued by CN=Evil)");
});

test("counts leave the window; the feed is bounded and hostile text is cut", () => {
  const m = new MeshModel();
  for (let i = 0; i < 150; i++) m.ingest(logged("payment", { event: "tls.handshake_failed", reason: "unknown_ca", peer: { subject: `CN=${"<b>".repeat(1000)}` } }, { time: T, msg: "x" }));
  assert.equal(m.feedView().length, 100);
  assert.ok(m.feedView()[0]!.peer!.length <= 600);
  assert.equal(m.edgesView(NOW + 61_000)[0]!.refused, 0);
  assert.equal(m.edgesView(NOW + 61_000)[0]!.failing, false);
});

test("a renewal or enrolment updates the identity and its last renewal", () => {
  const m = new MeshModel();
  m.ingest(logged("order", { event: "listening", port: 7401, identity: "order.internal", serial: "AB01", notAfter: "2027-01-01T00:00:00.000Z", trusts: ["CN=Mesh Dev CA"] }, { time: T }));
  m.ingest(logged("order", { event: "identity.renewed", serial: "cd02", issuer: "CN=Mesh Dev CA", root: "CN=Mesh Dev CA", generation: 1, notAfter: "2026-12-01T12:00:00.000Z", previous: "ab01", reason: "scheduled" }, { time: "2026-12-01T10:30:00.000Z" }));
  const [s] = m.servicesView();
  assert.equal(s!.serial, "cd02");
  assert.equal(s!.lastRenewal, "2026-12-01T10:30:00.000Z");
  assert.equal(s!.up, true);
});

test("the timeline spans what happened (a minute at least, five at most), so a short drill fills the chart", () => {
  const m = new MeshModel();
  m.ingest(logged("drill", { event: "drill.phase", phase: "baseline", safe: true }, { time: T }));
  m.ingest(logged("payment", { event: "request", peer: "order", method: "POST", path: "/charge", status: 201, rule: "payment.accepts", ms: 1 }, { time: T }));
  const short = m.timelineView(NOW);
  assert.equal(short.ok.length, 60);
  assert.equal(short.ok.reduce((a, b) => a + b, 0), 1);
  assert.deepEqual(short.marks.map((x) => x.label), ["baseline"]);
  const later = Date.parse(T) + 200_000;
  const mid = m.timelineView(later);
  assert.equal(mid.start, Math.floor(Date.parse(T) / 1000) - 2, "from just before the first event");
  m.ingest(logged("payment", { event: "request", peer: "order", method: "GET", path: "/healthz", status: 200, rule: "payment.accepts", ms: 1 }, { time: new Date(Date.parse(T) + 600_000).toISOString() }));
  assert.equal(m.timelineView(Date.parse(T) + 700_000).ok.length, 103, "from just before the first event of the last five minutes");
  assert.equal(m.timelineView(Date.parse(T) + 899_000).ok.length, 300, "never more than five minutes");
});
