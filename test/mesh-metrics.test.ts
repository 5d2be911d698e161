// The services' Prometheus metrics: a real service process, real handshakes and requests, its
// /metrics scraped over the loopback admin listener and checked by the real `promtool check
// metrics`, series by series; the admin listener's refusals; reloads and label bounds in-process.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { freshPki, start, call, identity, SEED_POLICY, type TestPki } from "./mesh-fixtures.ts";
import { startAdmin, isLoopback, AdminHostError } from "../lib/admin-http.ts";
import { crlDates } from "../lib/crl.ts";
import { pemBlocks, pemToDer } from "../lib/pem.ts";
const crlDatesOfPem = (pem: string) => crlDates(pemToDer(pem));
import { get, parse, promtool, value } from "./helpers/prom.ts";
import { ev } from "./helpers/events.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

let pki: TestPki;
before(async () => {
  pki = await freshPki();
  // A certificate the CA really issued, for a name the policy can never list: the caller label must stay bounded.
  await pki.ca.issue({ domain: "stranger.internal" });
});
after(() => pki.cleanup());

interface Proc {
  proc: ChildProcess;
  lines: Record<string, unknown>[];
  stderr: string;
  exited: Promise<number | null>;
  waitFor(event: string, ms?: number): Promise<Record<string, unknown>>;
}

function service(args: string[], env: Record<string, string> = {}): Proc {
  const proc = spawn(process.execPath, [join(ROOT, "bin", "mesh-service.mjs"), ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, MESH_ADMIN_PORT: "", ...env },
  });
  const p: Proc = {
    proc,
    lines: [],
    stderr: "",
    exited: new Promise((r) => proc.once("exit", (code) => r(code))),
    waitFor(event, ms = 15_000) {
      return new Promise((done, fail) => {
        const t = setTimeout(() => fail(new Error(`no ${event} within ${ms} ms; stderr: ${p.stderr}`)), ms);
        const check = () => {
          const l = p.lines.find((x) => x.event === event);
          if (l) return (clearTimeout(t), done(l), true);
          return false;
        };
        if (check()) return;
        rl.on("line", () => check());
        proc.once("exit", () =>
          setImmediate(() => check() || (clearTimeout(t), fail(new Error(`exited before ${event}: ${p.stderr}`)))),
        );
      });
    },
  };
  const rl = createInterface({ input: proc.stdout! });
  rl.on("line", (t) => {
    try {
      p.lines.push(JSON.parse(t) as Record<string, unknown>);
    } catch {
      /* not a log line */
    }
  });
  proc.stderr!.setEncoding("utf8").on("data", (c: string) => (p.stderr += c));
  return p;
}

test("a running service's /metrics after real handshakes: promtool finds no problem, and each series says what happened", async () => {
  const svc = service([
    "--service",
    "payment",
    "--port",
    "0",
    "--admin-port",
    "0",
    "--pki",
    pki.dir,
    "--policy",
    pki.policyFile,
  ]);
  try {
    const listening = await svc.waitFor("listening");
    const admin = await svc.waitFor("admin.listening");
    assert.equal(admin.host, "127.0.0.1");
    const port = Number(listening.port);
    const adminPort = Number(admin.port);
    assert.ok(adminPort > 0 && adminPort !== port);

    const ok = await call(pki, port, "payment.internal", identity(pki, "order"), "POST", "/charge", {
      orderId: "m-1",
      amount: 1250,
    });
    assert.equal("status" in ok && ok.status, 201);
    const refused = await call(pki, port, "payment.internal", null, "POST", "/charge", { orderId: "m-2", amount: 1 });
    assert.ok("error" in refused);
    const denied = await call(pki, port, "payment.internal", identity(pki, "inventory"), "POST", "/charge", {
      orderId: "m-3",
      amount: 1,
    });
    assert.equal("status" in denied && denied.status, 403);
    // Raw paths never become labels: ten different unknown paths are one series.
    for (let i = 0; i < 10; i++) {
      const r = await call(pki, port, "payment.internal", identity(pki, "order"), "GET", `/no/such/${i}?x=${i}`);
      assert.equal("status" in r && r.status, 404);
    }
    const stranger = await call(pki, port, "payment.internal", identity(pki, "stranger"), "GET", "/healthz");
    assert.equal("status" in stranger && stranger.status, 403);
    // The refusal is counted when it is logged; wait for the line rather than for time.
    await new Promise<void>((r) => {
      const tick = () => (svc.lines.some(ev("tls.handshake_failed")) ? r() : setTimeout(tick, 20));
      tick();
    });

    const res = await get(adminPort, "/metrics");
    assert.equal(res.status, 200);
    assert.equal(res.type, "text/plain; version=0.0.4; charset=utf-8");
    const lint = await promtool(["check", "metrics"], res.body);
    assert.deepEqual(lint, { code: 0, out: "" }, `promtool check metrics:\n${lint.out}`);

    const s = parse(res.body);
    assert.equal(value(s, "mesh_tls_handshakes_total", { outcome: "refused", reason: "no_client_cert" }), 1);
    assert.equal(
      value(s, "mesh_tls_handshakes_total", { outcome: "refused", reason: "revoked" }),
      0,
      "every known reason is there from the start",
    );
    assert.equal(value(s, "mesh_tls_handshakes_total", { outcome: "accepted", reason: "none" }), 13);
    assert.equal(
      value(s, "mesh_inbound_http_requests_total", {
        caller: "order",
        route: "/charge",
        method: "POST",
        status: "201",
        rule: "payment.accepts",
      }),
      1,
    );
    // A denied request keeps its route's pattern (issue 14): it was "(unmatched)".
    assert.equal(
      value(s, "mesh_inbound_http_requests_total", {
        caller: "inventory",
        route: "/charge",
        method: "POST",
        status: "403",
        rule: "payment.accepts",
      }),
      1,
    );
    assert.equal(
      value(s, "mesh_inbound_http_requests_total", {
        caller: "stranger",
        route: "/healthz",
        method: "GET",
        status: "403",
        rule: "payment.accepts",
      }),
      1,
    );
    assert.equal(
      value(s, "mesh_inbound_http_requests_total", {
        caller: "order",
        route: "(unmatched)",
        method: "GET",
        status: "404",
        rule: "payment.accepts",
      }),
      10,
    );
    assert.equal(value(s, "mesh_inbound_http_authz_deny_total", { caller: "inventory", rule: "payment.accepts" }), 1);
    // A name the CA issued (its certificate chained to the service's trust) is labelled by itself, as logs name it (issue 14).
    assert.equal(value(s, "mesh_inbound_http_authz_deny_total", { caller: "stranger", rule: "payment.accepts" }), 1);
    assert.equal(
      value(s, "mesh_inbound_http_authz_deny_total", { caller: "other", rule: "payment.accepts" }),
      undefined,
    );
    // Series are made when first observed: order was never denied, inventory and stranger never allowed (issue 14).
    assert.equal(
      value(s, "mesh_inbound_http_authz_deny_total", { caller: "order", rule: "payment.accepts" }),
      undefined,
      "order was never denied",
    );
    assert.ok(
      !s.some(
        (x) =>
          x.name.startsWith("mesh_inbound_http_request_duration_seconds") &&
          (x.labels.caller === "inventory" || x.labels.caller === "stranger"),
      ),
      "no histogram for callers only ever denied",
    );
    assert.ok(!res.body.includes("/no/such"), "no raw path in any label");
    assert.equal(
      value(s, "mesh_inbound_http_request_duration_seconds_count", {
        caller: "order",
        route: "/charge",
        method: "POST",
      }),
      1,
    );
    assert.equal(
      value(s, "mesh_inbound_http_request_duration_seconds_bucket", {
        caller: "order",
        route: "/charge",
        method: "POST",
        le: "+Inf",
      }),
      1,
    );

    const leaf = new X509Certificate(readFileSync(pki.ca.paths.leaf("payment.internal").cert));
    assert.equal(
      value(s, "mesh_identity_cert_expiration_timestamp_seconds"),
      Math.floor(Date.parse(leaf.validTo) / 1000),
    );
    assert.equal(
      value(s, "mesh_identity_cert_info", { issuer: "CN=Mesh Test CA", root: "CN=Mesh Test CA", generation: "1" }),
      1,
    );
    assert.equal(value(s, "mesh_identity_cert_renewals_total"), 0);
    // The heartbeat: no renewal yet in file mode, so the certificate counts from its notBefore.
    assert.equal(value(s, "mesh_identity_cert_last_renewal_timestamp_seconds"), Date.parse(leaf.validFrom) / 1000);
    const remaining = value(s, "mesh_identity_cert_validity_remaining_seconds")!;
    assert.ok(Math.abs(remaining - (Date.parse(leaf.validTo) - Date.now()) / 1000) < 60, `remaining ${remaining}`);
    // Handshakes timed by outcome: the 13 accepted and the one without a certificate.
    assert.equal(value(s, "mesh_tls_handshake_duration_seconds_count", { outcome: "accepted" }), 13);
    assert.equal(value(s, "mesh_tls_handshake_duration_seconds_count", { outcome: "refused" }), 1);
    assert.ok(value(s, "mesh_tls_handshake_duration_seconds_sum", { outcome: "accepted" })! > 0);
    assert.equal(value(s, "mesh_identity_cert_renewal_failures_total"), 0);
    assert.equal(value(s, "mesh_trust_bundle_roots"), 1);
    const root = new X509Certificate(readFileSync(pki.ca.paths.bundle));
    assert.equal(
      value(s, "mesh_trust_root_expiration_timestamp_seconds", { subject: "CN=Mesh Test CA" }),
      Math.floor(Date.parse(root.validTo) / 1000),
    );
    const crl = crlDatesOfPem(pemBlocks(readFileSync(join(pki.dir, "crls.pem"), "utf8"), "X509 CRL")[0]!);
    assert.ok(crl.nextUpdate && crl.nextUpdate.getTime() > Date.now());
    assert.equal(
      value(s, "mesh_crl_next_update_timestamp_seconds", { issuer: "CN=Mesh Test CA" }),
      Math.floor(crl.nextUpdate.getTime() / 1000),
    );
    assert.equal(value(s, "mesh_reloads_total", { kind: "tls", result: "ok" }), 0);
    // prom-client's process metrics, under their usual names.
    assert.ok((value(s, "process_cpu_seconds_total") ?? 0) > 0);
    assert.ok((value(s, "process_resident_memory_bytes") ?? 0) > 0);
    assert.ok(s.some((x) => x.name === "nodejs_eventloop_lag_seconds"));

    assert.deepEqual(await get(adminPort, "/healthz"), {
      status: 200,
      type: "text/plain; charset=utf-8",
      body: "ok\n",
    });
    for (const path of ["/", "/metrics/", "/debug/pprof", "/healthz/x"])
      assert.equal((await get(adminPort, path)).status, 404, path);
    assert.equal((await get(adminPort, "/metrics", { method: "POST" })).status, 405);
    // A page elsewhere that pointed its DNS name at 127.0.0.1 does not get to read the metrics.
    assert.equal((await get(adminPort, "/metrics", { host: `evil.example:${adminPort}` })).status, 421);
    assert.equal((await get(adminPort, "/metrics", { host: `localhost:${adminPort}` })).status, 200);
  } finally {
    svc.proc.kill("SIGTERM");
    await svc.exited;
  }
});

test("a non-loopback --admin-host is refused with one line, before anything listens", async () => {
  for (const host of ["0.0.0.0", "::", "10.0.0.1", "localhost"]) {
    const svc = service([
      "--service",
      "payment",
      "--port",
      "0",
      "--admin-port",
      "0",
      "--admin-host",
      host,
      "--pki",
      pki.dir,
      "--policy",
      pki.policyFile,
    ]);
    assert.equal(await svc.exited, 2, host);
    assert.equal(svc.stderr.trim().split("\n").length, 1, svc.stderr);
    assert.match(svc.stderr, /--admin-host.*must be a loopback address/);
    assert.deepEqual(svc.lines, [], "nothing started");
  }
  const bad = service(["--service", "payment", "--port", "0", "--pki", pki.dir, "--policy", pki.policyFile], {
    MESH_ADMIN_PORT: "70000",
  });
  assert.equal(await bad.exited, 2);
  assert.equal(bad.stderr, "payment: MESH_ADMIN_PORT must be a port number 0-65535\n");
  assert.deepEqual(bad.lines, [], "nothing started");
  for (const host of ["127.0.0.1", "127.1.2.3", "::1"]) assert.ok(isLoopback(host), host);
  for (const host of ["0.0.0.0", "::", "::ffff:127.0.0.1", "128.0.0.1", "localhost", "127.0.0.1.example", ""])
    assert.ok(!isLoopback(host), host);
  await assert.rejects(
    startAdmin({ exposition: { metrics: async () => "", contentType: "text/plain" }, port: 0, host: "0.0.0.0" }),
    (e: unknown) => e instanceof AdminHostError && /not a loopback address/.test(e.message),
  );
});

test("MESH_ADMIN_PORT turns the admin listener on, as mesh:up can set it per service", async () => {
  const svc = service(["--service", "inventory", "--port", "0", "--pki", pki.dir, "--policy", pki.policyFile], {
    MESH_ADMIN_PORT: "0",
  });
  try {
    const admin = await svc.waitFor("admin.listening");
    assert.equal((await get(Number(admin.port), "/healthz")).status, 200);
    const s = parse((await get(Number(admin.port), "/metrics")).body);
    assert.equal(value(s, "mesh_tls_handshakes_total", { outcome: "accepted", reason: "none" }), 0);
  } finally {
    svc.proc.kill("SIGTERM");
    await svc.exited;
  }
});

test("reloads are counted by kind and result, with their latency; a renewed trust bundle shows in the gauges", async () => {
  const pay = await start(pki, "payment");
  try {
    const m = pay.svc.metrics;
    const scrape = async () => parse(await m.registry.metrics());
    writeFileSync(
      pki.policyFile,
      SEED_POLICY.replace('[payment]\naccepts = ["order"]', '[payment]\naccepts = ["order", "edge"]'),
    );
    await pay.logs.wait(ev("policy.reloaded"));
    writeFileSync(pki.policyFile, '[payment]\naccepts = ["no body"]\n'); // not a mesh name: refused (any valid name would load)
    await pay.logs.wait(ev("policy.reload_failed"));
    let s = await scrape();
    assert.equal(value(s, "mesh_reloads_total", { kind: "policy", result: "ok" }), 1);
    assert.equal(value(s, "mesh_reloads_total", { kind: "policy", result: "failed" }), 1);
    assert.equal(value(s, "mesh_reload_duration_seconds_count", { kind: "policy" }), 1);
    // From the change being noticed to in force: at least the watcher's 150 ms debounce, well under the 1 s poll.
    const secs = value(s, "mesh_reload_duration_seconds_sum", { kind: "policy" })!;
    assert.ok(secs >= 0.14 && secs < 2, String(secs));

    // A new CRL (a revocation) is a TLS reload; the revoked peer is then refused as revoked.
    const before = value(s, "mesh_crl_next_update_timestamp_seconds", { issuer: "CN=Mesh Test CA" })!;
    await new Promise((r) => setTimeout(r, 1_100)); // the CRL's times have a resolution of one second
    await pki.ca.revoke({ domain: "inventory.internal" });
    await pay.logs.wait(ev("tls.reloaded"));
    const r = await call(pki, pay.svc.port, "payment.internal", identity(pki, "inventory"), "GET", "/healthz");
    assert.ok("error" in r);
    await pay.logs.wait(ev("tls.handshake_failed", (l) => l.reason === "revoked"));
    s = await scrape();
    assert.equal(value(s, "mesh_reloads_total", { kind: "tls", result: "ok" }), 1);
    assert.equal(value(s, "mesh_tls_handshakes_total", { outcome: "refused", reason: "revoked" }), 1);
    assert.ok(value(s, "mesh_crl_next_update_timestamp_seconds", { issuer: "CN=Mesh Test CA" })! > before);

    // A renewed certificate of its own (here by the CLI, then the reload) moves the renewal heartbeat.
    const heartbeat = value(s, "mesh_identity_cert_last_renewal_timestamp_seconds")!;
    const since = pay.logs.lines.length;
    const renewedAt = Date.now();
    await pki.ca.renew({ domain: "payment.internal" });
    await pay.logs.wait(ev("tls.reloaded"), 10_000, since);
    s = await scrape();
    const after = value(s, "mesh_identity_cert_last_renewal_timestamp_seconds")!;
    assert.ok(after > heartbeat && after * 1000 >= renewedAt - 1, `heartbeat ${heartbeat} -> ${after}`);
  } finally {
    await pay.svc.close();
    writeFileSync(pki.policyFile, SEED_POLICY);
    // Callers now refuse a revoked callee (server_revoked): the tests after this one need a good inventory.
    await pki.ca.issue({ domain: "inventory.internal" });
  }
});

test("upstream calls by callee, outcome and reason", async () => {
  const pay = await start(pki, "payment");
  const inv = await start(pki, "inventory");
  const order = await start(pki, "order", {
    upstreams: { payment: `127.0.0.1:${pay.svc.port}`, inventory: `127.0.0.1:${inv.svc.port}` },
  });
  // A second order whose inventory address points at nothing: its calls fail as upstream_down.
  const lonely = await start(pki, "order", {
    upstreams: { payment: `127.0.0.1:${pay.svc.port}`, inventory: "127.0.0.1:1" },
    upstreamTimeoutMs: 1_000,
  });
  try {
    const ok = await call(pki, order.svc.port, "order.internal", identity(pki, "edge"), "POST", "/orders", {
      sku: "widget",
      quantity: 1,
    });
    assert.equal("status" in ok && ok.status, 201, JSON.stringify(ok));
    let s = parse(await order.svc.metrics.registry.metrics());
    assert.equal(
      value(s, "mesh_outbound_http_requests_total", { callee: "inventory", outcome: "ok", reason: "none" }),
      1,
    );
    assert.equal(
      value(s, "mesh_outbound_http_requests_total", { callee: "payment", outcome: "ok", reason: "none" }),
      1,
    );
    // Each call's latency, per upstream and outcome (issue 14).
    assert.equal(
      value(s, "mesh_outbound_http_request_duration_seconds_count", { callee: "inventory", outcome: "ok" }),
      1,
    );
    assert.equal(
      value(s, "mesh_outbound_http_request_duration_seconds_count", { callee: "payment", outcome: "ok" }),
      1,
    );
    assert.ok(value(s, "mesh_outbound_http_request_duration_seconds_sum", { callee: "payment", outcome: "ok" })! > 0);
    assert.equal(
      value(s, "mesh_inbound_http_requests_total", {
        caller: "edge",
        route: "/orders",
        method: "POST",
        status: "201",
        rule: "order.accepts",
      }),
      1,
    );

    const down = await call(pki, lonely.svc.port, "order.internal", identity(pki, "edge"), "POST", "/orders", {
      sku: "widget",
      quantity: 1,
    });
    assert.equal("status" in down && down.status, 502, JSON.stringify(down));
    s = parse(await lonely.svc.metrics.registry.metrics());
    assert.equal(
      value(s, "mesh_outbound_http_requests_total", {
        callee: "inventory",
        outcome: "failed",
        reason: "upstream_down",
      }),
      1,
    );
    assert.equal(
      value(s, "mesh_outbound_http_request_duration_seconds_count", { callee: "inventory", outcome: "failed" }),
      1,
    );
    assert.equal(
      value(s, "mesh_outbound_http_requests_total", { callee: "payment", outcome: "ok", reason: "none" }),
      0,
      "payment is never called when the reservation fails",
    );
    // The callee counted the same calls from its side.
    s = parse(await pay.svc.metrics.registry.metrics());
    assert.equal(
      value(s, "mesh_inbound_http_requests_total", {
        caller: "order",
        route: "/charge",
        method: "POST",
        status: "201",
        rule: "payment.accepts",
      }),
      1,
    );
  } finally {
    await Promise.all([order.svc.close(), lonely.svc.close(), inv.svc.close(), pay.svc.close()]);
  }
});

test("the shipped prometheus.yml passes promtool check config", async () => {
  const r = await promtool(["check", "config", join(ROOT, "prometheus.yml")]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SUCCESS/);
  const text = readFileSync(join(ROOT, "prometheus.yml"), "utf8");
  for (const port of [7411, 7412, 7413]) assert.ok(text.includes(`127.0.0.1:${port}`), String(port));
});

test("a CRL's issuer and nextUpdate read from its DER agree with openssl's reading", () => {
  const d = mkdtempSync(join(tmpdir(), "mesh-crl-"));
  try {
    const ossl = (...args: string[]) =>
      execFileSync("openssl", args, { cwd: d, stdio: ["ignore", "pipe", "pipe"] }).toString("utf8");
    ossl(
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "30",
      "-subj",
      "/C=DE/O=Acme Ops/OU=Mesh/CN=Acme CA G2",
    );
    writeFileSync(join(d, "index.txt"), "");
    writeFileSync(
      join(d, "ca.cnf"),
      "[ca]\ndefault_ca = x\n[x]\ndatabase = index.txt\ndefault_md = sha256\ndefault_crl_days = 9\n",
    );
    ossl("ca", "-config", "ca.cnf", "-gencrl", "-keyfile", "ca.key", "-cert", "ca.crt", "-out", "crl.pem");
    const info = crlDatesOfPem(readFileSync(join(d, "crl.pem"), "utf8"));
    const next = /nextUpdate=(.+)/.exec(ossl("crl", "-in", "crl.pem", "-noout", "-nextupdate"))![1]!;
    const last = /lastUpdate=(.+)/.exec(ossl("crl", "-in", "crl.pem", "-noout", "-lastupdate"))![1]!;
    assert.equal(info.nextUpdate?.getTime(), Date.parse(next));
    assert.equal(info.thisUpdate.getTime(), Date.parse(last));
    // The same words Node uses for the CA certificate's subject, so the two can be matched.
    assert.equal(info.issuer, new X509Certificate(readFileSync(join(d, "ca.crt"))).subject.split("\n").join(", "));
    assert.equal(info.issuer, "C=DE, O=Acme Ops, OU=Mesh, CN=Acme CA G2");
    assert.throws(() => crlDatesOfPem(readFileSync(join(d, "ca.crt"), "utf8")), /not a CRL|bad/);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test("caller labels: a name the CA issued is its own label up to MAX_CALLERS names, then other; never a raw string", async () => {
  const { MeshMetrics, MAX_CALLERS, OTHER } = await import("../services/mesh/metrics.ts");
  const m = new MeshMetrics("payment");
  const memo = (path: string) => ({ method: "GET", decision: { rule: "payment.accepts" }, route: { path } });
  // Names as identityOf gives them (from certificates that chained to the trust bundle).
  for (let i = 0; i < MAX_CALLERS + 10; i++) m.series(memo("/healthz"), `svc-${i}`).denied();
  // Not a mesh name at all (identityOf never yields one; bounded anyway).
  m.series(memo("/healthz"), 'Evil"}\n').denied();
  const s = parse(await m.registry.metrics());
  const callers = new Set(
    s.filter((x) => x.name === "mesh_inbound_http_authz_deny_total").map((x) => x.labels.caller!),
  );
  // The demo's four names are in the set from the start; the rest fill it up to the cap.
  assert.equal(callers.size, MAX_CALLERS - 4 + 1, [...callers].join(" "));
  assert.ok(callers.has("svc-0") && callers.has(OTHER));
  assert.equal(value(s, "mesh_inbound_http_authz_deny_total", { caller: OTHER, rule: "payment.accepts" }), 10 + 4 + 1);
});
