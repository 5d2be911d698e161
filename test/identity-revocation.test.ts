// Revocation reaches a running online mesh in seconds: each service holds a long poll on the CA's
// CRLs (GET /.well-known/est/crls?wait=…), so `npm run ca -- revoke` (the real CLI, in its own
// process) is in force at every service within about a second of returning, a keep-alive
// connection of the revoked identity is cut, and mesh:probe refuses a revoked server as the
// services do. The services poll every minute here: only the long poll can be this fast.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "undici";
import { ca as cli } from "./helpers/ca.ts";
import { est } from "./helpers/est.ts";
import { world, startIn, callAs, stateIdentity, type World, type Running } from "./identity-fixtures.ts";
import { probeMesh } from "../scripts/probe.ts";
import { parsePolicy } from "../services/mesh/policy.ts";
import type { LogLine } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

/** In force within this of `revoke` returning (the CA notices in POLL_MS = 0.5 s, then one round trip). */
const WITHIN_MS = 2_000;
/** Only a failure deadline: the test waits for the events themselves. */
const DEADLINE_MS = 20_000;

const worlds: World[] = [];
after(async () => {
  for (const w of worlds) await w.cleanup();
});

async function mesh(): Promise<{ w: World; pay: Running; inv: Running; ord: Running; close(): Promise<void> }> {
  const w = await world(
    `[payment]\naccepts = ["order", "edge"]\n\n[inventory]\naccepts = ["order"]\n\n[order]\naccepts = ["edge"]\n`,
  );
  worlds.push(w);
  const pay = await startIn(w, "payment", { lifetime: "1h", pollMs: 60_000 });
  const inv = await startIn(w, "inventory", { lifetime: "1h", pollMs: 60_000 });
  const ord = await startIn(w, "order", {
    lifetime: "1h",
    pollMs: 60_000,
    upstreams: { payment: `127.0.0.1:${pay.svc.port}`, inventory: `127.0.0.1:${inv.svc.port}` },
  });
  return {
    w,
    pay,
    inv,
    ord,
    close: async () => {
      for (const s of [ord, inv, pay]) await s.svc.close();
    },
  };
}

const at = (l: LogLine) => Date.parse(String(l.time));

test("revoke with the CLI: every service has the new CRLs within 2 s, refuses the revoked identity, and cuts its live keep-alive connection", async () => {
  const { w, pay, inv, ord, close } = await mesh();
  const order = stateIdentity(w.stateDir("order"));
  // A keep-alive connection of order's to payment, open before the revocation.
  const kept = new Client(`https://127.0.0.1:${pay.svc.port}`, {
    connect: { ca: w.ca.bundle(), cert: order.cert, key: order.key, servername: "payment.internal" },
    keepAliveTimeout: 60_000,
  });
  let keptClosed = 0;
  kept.on("disconnect", () => (keptClosed ||= Date.now()));
  // Kept busy (a request every 300 ms): an idle one would end at the server's keep-alive timeout
  // (5 s), and the CLI alone can take that long to start on a loaded machine.
  let pinging = true;
  let answers = 0;
  const pinger = (async () => {
    while (pinging && keptClosed === 0) {
      try {
        const r = await kept.request({ method: "GET", path: "/healthz" });
        await r.body.text();
        if (r.statusCode === 200) answers++;
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  try {
    // Two answers: the connection is kept alive and reused, whatever the CLI's start-up time.
    await waitFor(() => answers > 1, "the kept-alive connection's first two answers");
    const marks = [pay, inv, ord].map((s) => s.logs.lines.length);

    const r = await cli(["revoke", "--domain", "order.internal"], { env: { MESH_PKI_DIR: w.ca.dir } });
    assert.equal(r.code, 0, r.stderr);
    const revokedAt = Date.now();
    const answeredBefore = answers;

    const updates = await Promise.all(
      [pay, inv, ord].map((s, i) =>
        s.logs.wait(
          ev("trust.updated", (l) => Array.isArray(l.changed) && l.changed.includes("crls")),
          DEADLINE_MS,
          marks[i],
        ),
      ),
    );
    for (const [i, u] of updates.entries()) {
      assert.equal(u.via, "watch", `${["payment", "inventory", "order"][i]} got the CRLs by the long poll`);
      assert.equal(u.applied, true);
      assert.ok(
        at(u) - revokedAt <= WITHIN_MS,
        `${["payment", "inventory", "order"][i]}: new CRLs in force ${at(u) - revokedAt} ms after revoke returned`,
      );
    }

    // payment closed the connection order had open, at once, and said whose it was.
    const closed = await pay.logs.wait(
      ev("tls.connections_closed", (l) => l.why === "trust withdrawn"),
      DEADLINE_MS,
      marks[0],
    );
    assert.match(JSON.stringify(closed.peers), /order \(its certificate was revoked\)/);
    await waitFor(() => keptClosed > 0, "the kept-alive connection to close");
    assert.ok(
      keptClosed - revokedAt <= WITHIN_MS,
      `the live connection was cut ${keptClosed - revokedAt} ms after revoke returned`,
    );
    assert.ok(answeredBefore > 1, "the connection was alive and answering before the revocation");

    // And every service refuses order in the handshake from now on, saying why.
    for (const [s, name] of [
      [pay, "payment"],
      [inv, "inventory"],
    ] as const) {
      const res = await callAs(w, order, s.svc.port, `${name}.internal`, "GET", "/healthz");
      assert.ok("error" in res, `${name} refused order: ${JSON.stringify(res)}`);
      const refused = await s.logs.wait(
        ev("tls.handshake_failed", (l) => l.reason === "revoked"),
        DEADLINE_MS,
      );
      assert.equal(
        (refused.peer as { subject?: string } | undefined)?.subject?.includes("order.internal"),
        true,
        JSON.stringify(refused),
      );
    }
    // Nobody else is harmed: edge still reaches payment.
    const edge = await callAs(w, w.edge, pay.svc.port, "payment.internal", "GET", "/healthz");
    assert.deepEqual("status" in edge && edge.status, 200);
  } finally {
    pinging = false;
    await pinger;
    await kept.close().catch(() => {});
    await close();
  }
});

test("a revoked server: order cuts its pooled connection to it and refuses it; mesh:probe shows it refused, as the services do", async () => {
  const { w, pay, inv, ord, close } = await mesh();
  try {
    // order -> inventory works, over a pooled connection.
    process.env.MESH_INVENTORY_STOCK = "widget=1000";
    const before = await callAs(w, w.edge, ord.svc.port, "order.internal", "POST", "/orders", {
      sku: "widget",
      quantity: 1,
    });
    assert.deepEqual("status" in before && before.status, 201, JSON.stringify(before));
    const mark = ord.logs.lines.length;
    // Orders keep flowing (every 300 ms) so order's pooled connection to inventory stays open
    // (undici drops an idle one after 4 s; the CLI alone can take that long on a loaded machine).
    let ordering = true;
    const orders = (async () => {
      while (ordering) {
        await callAs(w, w.edge, ord.svc.port, "order.internal", "POST", "/orders", { sku: "widget", quantity: 1 });
        await new Promise((r) => setTimeout(r, 300));
      }
    })();

    const r = await cli(["revoke", "--domain", "inventory.internal"], { env: { MESH_PKI_DIR: w.ca.dir } });
    assert.equal(r.code, 0, r.stderr);
    const revokedAt = Date.now();
    const closed = await ord.logs
      .wait(
        ev("tls.connections_closed", (l) => l.side === "caller"),
        DEADLINE_MS,
        mark,
      )
      .finally(() => (ordering = false));
    await orders;
    assert.match(JSON.stringify(closed.peers), /inventory \(its certificate was revoked\)/);
    assert.ok(
      at(closed) - revokedAt <= WITHIN_MS,
      `order cut its connection to inventory ${at(closed) - revokedAt} ms after revoke returned`,
    );
    const after = await callAs(w, w.edge, ord.svc.port, "order.internal", "POST", "/orders", {
      sku: "widget",
      quantity: 1,
    });
    assert.ok("status" in after && after.status >= 500, JSON.stringify(after));
    const failed = await ord.logs.wait(
      ev("upstream.failed", (l) => l.upstream === "inventory" && l.reason === "server_revoked"),
      DEADLINE_MS,
      mark,
    );
    assert.match(String(failed.msg), /inventory's certificate at .* has been revoked by the CA/);

    // The probe, a caller like the services, checks the servers against the CA's CRLs too.
    const logs = join(w.root, "logs");
    mkdirSync(logs, { recursive: true });
    const policy = parsePolicy(
      `[payment]\naccepts = ["order"]\n\n[inventory]\naccepts = ["order"]\n\n[order]\naccepts = []\n`,
      "policy.toml",
    );
    const identities = Object.fromEntries(
      ["order", "payment", "inventory"].map((s) => [
        s,
        { cert: join(w.stateDir(s), "cert.pem"), key: join(w.stateDir(s), "key.pem") },
      ]),
    );
    const { cells } = await probeMesh({
      pki: w.ca.dir,
      policy,
      ports: { order: ord.svc.port, payment: pay.svc.port, inventory: inv.svc.port },
      logs,
      identities,
    });
    const cell = (caller: string, callee: string) => cells.find((c) => c.caller === caller && c.callee === callee)!;
    assert.equal(cell("order", "inventory").observed, "refused: server_revoked");
    assert.equal(cell("order", "inventory").ok, false);
    assert.equal(
      cell("(no cert)", "inventory").observed,
      "refused: server_revoked",
      "whoever calls, the revoked server is refused first",
    );
    assert.equal(cell("order", "payment").observed, "200");
    assert.equal(cell("order", "payment").ok, true);
  } finally {
    await close();
  }
});

test("GET /.well-known/est/crls: 200 with an ETag; held while If-None-Match matches, answered at once when the CRLs change; a bad wait is refused", async () => {
  const w = await world();
  worlds.push(w);
  const ca = w.ca.bundle();
  const url = w.ca.server.url;
  const first = await est(url, { path: "/.well-known/est/crls", ca });
  assert.equal(first.status, 200);
  assert.match(first.body, /-----BEGIN X509 CRL-----/);
  const etag = String(first.headers.etag);
  assert.match(etag, /^"[\w-]{43}"$/);
  assert.match(String(first.headers["mesh-bundle-etag"]), /^"[\w-]{43}"$/);
  // Without wait: 304 at once.
  assert.equal((await est(url, { path: "/.well-known/est/crls", ca, headers: { "If-None-Match": etag } })).status, 304);
  // With wait: held until the CRLs change (a revocation by the CLI, in its own process).
  const asked = Date.now();
  const held = est(url, { path: "/.well-known/est/crls?wait=30", ca, headers: { "If-None-Match": etag } });
  let answered = 0;
  void held.then(() => (answered = Date.now()));
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(answered, 0, "held while nothing changed");
  const r = await cli(["revoke", "--domain", "edge.internal"], { env: { MESH_PKI_DIR: w.ca.dir } });
  assert.equal(r.code, 0, r.stderr);
  const revokedAt = Date.now();
  const changed = await held;
  assert.equal(changed.status, 200);
  assert.notEqual(changed.headers.etag, etag);
  assert.ok(
    Date.now() - revokedAt <= WITHIN_MS,
    `answered ${Date.now() - revokedAt} ms after revoke returned (${Date.now() - asked} ms after asking)`,
  );
  // A wait that is not a number of seconds: 400 with the reason.
  const bad = await est(url, { path: "/.well-known/est/crls?wait=soon", ca });
  assert.equal(bad.status, 400);
  assert.match(bad.body, /wait="soon" is not a whole number of seconds/);
});

async function waitFor(cond: () => boolean, what: string, ms = DEADLINE_MS): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("a CA that serves an older CRL set than the one in force (a replica behind, a restored backup): the service keeps the newer one (trust.crls_stale)", async () => {
  const w = await world();
  worlds.push(w);
  const pay = await startIn(w, "payment", { lifetime: "1h", pollMs: 60_000 });
  try {
    // The CA's CRLs before the revocation, to put back afterwards: the files, and the ledger's
    // signed copies, which the CA serves ahead of the files (the newest whichever replica signed).
    const files = [w.ca.ca.paths.crls, ...findCrlFiles(w.ca.dir)];
    const old = new Map(files.map((f) => [f, readFileSync(f)]));
    const ledger = w.ca.ca.ledger;
    const oldSigned = ledger.issuers().flatMap((r) => {
      const der = ledger.signedCrl(r.id);
      return der ? [[r.id, der] as const] : [];
    });
    const mark = pay.logs.lines.length;
    const r = await cli(["revoke", "--domain", "edge.internal"], { env: { MESH_PKI_DIR: w.ca.dir } });
    assert.equal(r.code, 0, r.stderr);
    await pay.logs.wait(
      ev("trust.updated", (l) => l.via === "watch"),
      DEADLINE_MS,
      mark,
    );
    const edge = await callAs(w, w.edge, pay.svc.port, "payment.internal", "GET", "/healthz");
    assert.ok("error" in edge, "edge is refused once revoked");
    // The CA goes back to the CRLs from before, as a restored backup would: the ledger's copies,
    // then the files (the server sees the files change, reloads and announces the old set).
    for (const [id, der] of oldSigned) ledger.setSignedCrl(id, der);
    for (const [f, bytes] of old) writeFileSync(f, bytes);
    const stale = await pay.logs.wait(ev("trust.crls_stale"), DEADLINE_MS, mark);
    assert.deepEqual(stale.issuers, ["CN=Acme Corp CA"]);
    const still = await callAs(w, w.edge, pay.svc.port, "payment.internal", "GET", "/healthz");
    assert.ok("error" in still, `edge is still refused: ${JSON.stringify(still)}`);
    // The periodic poll brings the same old set: still kept.
    await pay.svc.identity.poll();
    assert.ok("error" in (await callAs(w, w.edge, pay.svc.port, "payment.internal", "GET", "/healthz")));
  } finally {
    await pay.svc.close();
  }
});

function findCrlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name === "crl.pem") out.push(join(e.parentPath, e.name));
  }
  return out;
}
