// The CA server's Prometheus metrics: a real `ca serve` process with its loopback admin
// listener, real EST enrolments, renewals and refusals, real CLI commands beside it; /metrics
// checked by the real `promtool check metrics` and series by series, dates against openssl.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { connect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { ROOT, ca, cleanup, fingerprint, oneLineError, openssl, tempDir } from "./helpers/ca.ts";
import { PKCS10, certsOf, est, makeCsr, pemOf, startCa, type TestCa } from "./helpers/est.ts";
import { get, parse, promtool, value, type Sample } from "./helpers/prom.ts";
import { ev } from "./helpers/events.ts";

// The compiled CLI, as `npm run ca` runs it (bin/ca.mjs): it starts in a third of tsx's time.
const CLI = join(ROOT, "bin", "ca.mjs");
const ENROL = "/.well-known/est/simpleenroll";
const REENROL = "/.well-known/est/simplereenroll";
/** The environment a test's CLI runs in: nothing inherited that would change what it does. */
const CLEAN = { MESH_PKI_DIR: "", MESH_CA_PASSPHRASE: "", MESH_CA_NOW: "", MESH_CA_ADMIN_PORT: "" };

/** Every non-zero series of a metric, as "label=value,… value" lines: what an exact comparison needs. */
function nonZero(samples: Sample[], name: string): string[] {
  return samples
    .filter((s) => s.name === name && s.value !== 0)
    .map(
      (s) =>
        `${Object.entries(s.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(",")} ${s.value}`,
    )
    .sort();
}

interface Serving {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  exited: Promise<number | null>;
  waitFor(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  /** Resolves once it has said "CA serving EST" on stderr: it is up, its admin listener too if asked for. */
  ready(): Promise<void>;
}

/** `ca serve` as a process, its JSON log lines collected. */
function serve(args: string[], env: Record<string, string> = {}): Serving {
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...CLEAN, ...env },
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const s: Serving = {
    child,
    lines: [],
    ready: async () => {
      for (let i = 0; i < 400 && !stderr.includes("CA serving EST on"); i++)
        await new Promise((r) => setTimeout(r, 50));
      if (!stderr.includes("CA serving EST on")) throw new Error(`not ready; stderr: ${stderr}`);
    },
    exited: new Promise((r) => child.once("exit", (code) => r(code))),
    waitFor(pred, ms = 20_000) {
      return new Promise((done, fail) => {
        const found = s.lines.find(pred);
        if (found) return done(found);
        const t = setTimeout(() => fail(new Error(`no such log line within ${ms} ms; stderr: ${stderr}`)), ms);
        rl.on("line", () => {
          const l = s.lines.find(pred);
          if (l) {
            clearTimeout(t);
            done(l);
          }
        });
        child.once("exit", () =>
          setImmediate(() => {
            clearTimeout(t);
            fail(new Error(`exited first; stderr: ${stderr}`));
          }),
        );
      });
    },
  };
  const rl = createInterface({ input: child.stdout! });
  rl.on("line", (t) => {
    try {
      s.lines.push(JSON.parse(t) as Record<string, unknown>);
    } catch {
      /* not a log line */
    }
  });
  return s;
}

/** The certificate a TLS server presents, as a real handshake gets it. */
function serverCert(url: string): Promise<X509Certificate> {
  const u = new URL(url);
  return new Promise((done, fail) => {
    const sock = connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      const raw = sock.getPeerCertificate().raw;
      sock.end();
      done(new X509Certificate(raw));
    });
    sock.on("error", fail);
  });
}

const seconds = (date: string) => Math.floor(Date.parse(date) / 1000);

describe("ca serve --admin-port: the CA's metrics", () => {
  let work: string;
  let dir: string;
  let srv: Serving;
  let url: string;
  let adminPort: number;
  const bundle = () => readFileSync(join(dir, "bundle.pem"), "utf8");
  const token = async (name: string) => {
    const r = await ca(["token", "--domain", name, "--dir", dir], { env: CLEAN });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };

  before(async () => {
    work = tempDir("mesh-ca-metrics-");
    dir = join(work, "pki");
    const init = await ca(["init", "--name", "Acme Corp CA", "--dir", dir], { env: CLEAN });
    assert.equal(init.code, 0, init.stderr);
    // The port through the environment, as docs/metrics.md says mesh set-ups pass it.
    srv = serve(["--dir", dir], { MESH_CA_ADMIN_PORT: "0" });
    url = String((await srv.waitFor(ev("ca.started"))).url);
    const admin = await srv.waitFor(ev("admin.listening"));
    assert.equal(admin.host, "127.0.0.1");
    adminPort = Number(admin.port);
    assert.ok(adminPort > 0);
    await srv.ready();
  });

  after(async () => {
    if (srv.child.exitCode === null) srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0, "SIGTERM stops the server and its admin listener cleanly");
    cleanup(work);
  });

  it("counts an enrolment, a reused token, a renewal, a bad CSR and the CLI's work exactly; promtool finds no problem", async () => {
    // Before anything: every kind, token result and issuing-route reason is there at 0 (rate() needs the zero).
    let s = parse((await get(adminPort, "/metrics")).body);
    assert.equal(value(s, "mesh_ca_certificates_issued_total", { kind: "enrol" }), 0);
    assert.equal(
      value(s, "mesh_ca_certificates_issued_total", { kind: "server" }),
      1,
      "the server's own TLS certificate",
    );
    assert.equal(value(s, "mesh_ca_tokens_total", { result: "refused", reason: "token_used" }), 0);
    assert.equal(value(s, "mesh_ca_requests_refused_total", { route: REENROL, reason: "cert_revoked" }), 0);

    // 1. enrol with a token
    const tok = await token("shipping.internal");
    const auth = { ...PKCS10, Authorization: `Bearer ${tok}` };
    const csr = await makeCsr("shipping.internal");
    const first = await est(url, { method: "POST", path: ENROL, headers: auth, body: csr.body, ca: bundle() });
    assert.equal(first.status, 200, first.body);
    const cert = pemOf(certsOf(first.body));
    // 2. the same token again: refused
    const again = await est(url, {
      method: "POST",
      path: ENROL,
      headers: auth,
      body: (await makeCsr("shipping.internal")).body,
      ca: bundle(),
    });
    assert.equal(again.status, 401);
    // 3. renew over mTLS with a new key
    const renewed = await est(url, {
      method: "POST",
      path: REENROL,
      headers: PKCS10,
      body: (await makeCsr("shipping.internal")).body,
      ca: bundle(),
      cert,
      key: csr.keyPem,
    });
    assert.equal(renewed.status, 200, renewed.body);
    // 4. a bad CSR, with a good token that it must not spend
    const bad = await est(url, {
      method: "POST",
      path: ENROL,
      headers: { ...PKCS10, Authorization: `Bearer ${await token("billing.internal")}` },
      body: Buffer.from("not a CSR").toString("base64"),
      ca: bundle(),
    });
    assert.equal(bad.status, 400);
    assert.match(bad.body, /not a DER PKCS#10/);
    // 5. paths no route serves, and a CRL of an issuer that does not exist: bounded labels
    for (let i = 0; i < 10; i++)
      assert.equal((await est(url, { path: `/scan/${i}/${"x".repeat(i * 20)}`, ca: bundle() })).status, 404);
    assert.equal((await est(url, { path: "/crl/int-77.crl", ca: bundle() })).status, 404);
    // 6. the CLI beside the server: it issues one and revokes it (the ledger and the CRL say so)
    assert.equal((await ca(["issue", "--domain", "cli.internal", "--dir", dir], { env: CLEAN })).code, 0);
    assert.equal((await ca(["revoke", "--domain", "cli.internal", "--dir", dir], { env: CLEAN })).code, 0);
    await srv.waitFor(ev("ca.state_reloaded"), 5_000);

    const res = await get(adminPort, "/metrics");
    assert.equal(res.status, 200);
    assert.equal(res.type, "text/plain; version=0.0.4; charset=utf-8");
    const lint = await promtool(["check", "metrics"], res.body);
    assert.deepEqual(lint, { code: 0, out: "" }, `promtool check metrics:\n${lint.out}`);
    s = parse(res.body);

    assert.deepEqual(nonZero(s, "mesh_ca_certificates_issued_total"), [
      "kind=cli 1",
      "kind=enrol 1",
      "kind=renew 1",
      "kind=server 1",
    ]);
    assert.deepEqual(
      nonZero(s, "mesh_ca_requests_refused_total"),
      [
        `route=${ENROL},reason=malformed_csr 1`,
        `route=${ENROL},reason=token_used 1`,
        "route=(unmatched),reason=not_found 10",
        "route=/crl/:issuer,reason=not_found 1",
      ].sort(),
    );
    assert.deepEqual(nonZero(s, "mesh_ca_tokens_total"), [
      "result=refused,reason=token_used 1",
      "result=used,reason=none 1",
    ]);
    assert.deepEqual(nonZero(s, "mesh_ca_request_errors_total"), []);
    // Every request timed by route pattern and outcome: the two issued, the three refused issuing requests, the 11 not found.
    assert.equal(value(s, "mesh_ca_request_duration_seconds_count", { route: ENROL, outcome: "ok" }), 1);
    assert.equal(value(s, "mesh_ca_request_duration_seconds_count", { route: REENROL, outcome: "ok" }), 1);
    assert.equal(value(s, "mesh_ca_request_duration_seconds_count", { route: ENROL, outcome: "refused" }), 2);
    assert.equal(value(s, "mesh_ca_request_duration_seconds_count", { route: "(unmatched)", outcome: "refused" }), 10);
    assert.equal(value(s, "mesh_ca_request_duration_seconds_count", { route: "/crl/:issuer", outcome: "refused" }), 1);
    assert.ok(value(s, "mesh_ca_request_duration_seconds_sum", { route: REENROL, outcome: "ok" })! > 0);
    // The server's own + the renewed one valid; the enrolled one superseded; the CLI's revoked.
    for (const [status, n] of [
      ["valid", 2],
      ["superseded", 1],
      ["revoked", 1],
      ["expired", 0],
    ] as const) {
      assert.equal(value(s, "mesh_ca_certificates", { status }), n, status);
    }
    assert.equal(value(s, "mesh_ca_signer_generation"), 1);

    // Dates, against what a TLS handshake and openssl read.
    const own = await serverCert(url);
    assert.equal(value(s, "mesh_ca_tls_cert_expiration_timestamp_seconds"), seconds(own.validTo));
    const rootEnd = openssl(["x509", "-noout", "-enddate", "-in", join(dir, "roots", "1", "ca.crt")])
      .out.trim()
      .replace(/^notAfter=/, "");
    assert.equal(value(s, "mesh_ca_root_expiration_timestamp_seconds", { issuer: "root-1" }), seconds(rootEnd));
    const crl = await est(url, { path: "/crl/root-1.crl", ca: bundle() });
    writeFileSync(join(work, "root-1.crl"), Buffer.from(crl.body, "latin1"));
    const next = openssl(["crl", "-inform", "DER", "-noout", "-nextupdate", "-in", join(work, "root-1.crl")]).out;
    assert.ok(next.startsWith("nextUpdate="), next);
    assert.equal(
      value(s, "mesh_ca_crl_next_update_timestamp_seconds", { issuer: "root-1" }),
      seconds(next.trim().slice("nextUpdate=".length)),
    );
    assert.ok(value(s, "process_start_time_seconds")! > 0, "the process metrics are there");
  });

  it("the admin listener: 404, 405, 421 to a foreign Host, /healthz", async () => {
    const notFound = await get(adminPort, "/.well-known/est/cacerts");
    assert.equal(notFound.status, 404);
    assert.match(notFound.body, /serves GET \/metrics and GET \/healthz/);
    assert.equal((await get(adminPort, "/metrics", { method: "POST" })).status, 405);
    const rebound = await get(adminPort, "/metrics", { host: "metrics.evil.example" });
    assert.equal(rebound.status, 421);
    assert.doesNotMatch(rebound.body, /mesh_ca/);
    assert.equal((await get(adminPort, "/metrics", { host: `localhost:${adminPort}` })).status, 200);
    const health = await get(adminPort, "/healthz");
    assert.deepEqual([health.status, health.body], [200, "ok\n"]);
  });
});

describe("the CA's gauges follow a rotation the CLI makes while the server runs", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa();
  });
  after(() => t.stop());
  const scrape = async () => parse(await t.server.metrics.registry.metrics());

  it("a new generation's root and CRL appear once bundled; `generation use 2` moves the signer and the server's own certificate", async () => {
    let s = await scrape();
    assert.deepEqual(
      s.filter((x) => x.name === "mesh_ca_root_expiration_timestamp_seconds").map((x) => x.labels.issuer),
      ["root-1"],
    );
    assert.equal(value(s, "mesh_ca_signer_generation"), 1);
    const tlsBefore = value(s, "mesh_ca_tls_cert_expiration_timestamp_seconds");

    assert.equal((await ca(["generation", "add", "--dir", t.dir], { env: CLEAN })).code, 0);
    assert.equal((await ca(["bundle", "--dir", t.dir], { env: CLEAN })).code, 0);
    await t.lines.wait(ev("ca.state_reloaded", (l) => Array.isArray(l.generations) && l.generations.length === 2));
    s = await scrape();
    assert.equal(
      value(s, "mesh_ca_root_expiration_timestamp_seconds", { issuer: "root-2" }),
      Math.floor(t.ca.issuerCert("root-2").notAfter.getTime() / 1000),
    );
    assert.ok(value(s, "mesh_ca_crl_next_update_timestamp_seconds", { issuer: "root-2" })! > Date.now() / 1000);
    assert.equal(value(s, "mesh_ca_signer_generation"), 1, "adding a generation does not make it sign");

    assert.equal((await ca(["generation", "use", "2", "--dir", t.dir], { env: CLEAN })).code, 0);
    const renewed = await t.lines.wait(ev("ca.tls_renewed", (l) => l.generation === 2));
    s = await scrape();
    assert.equal(value(s, "mesh_ca_signer_generation"), 2);
    assert.equal(
      value(s, "mesh_ca_certificates_issued_total", { kind: "server" }),
      2,
      "at start, then on the rotation",
    );
    assert.equal(
      value(s, "mesh_ca_tls_cert_expiration_timestamp_seconds"),
      Math.floor(Date.parse(String(renewed.not_after)) / 1000),
    );
    assert.ok(value(s, "mesh_ca_tls_cert_expiration_timestamp_seconds")! >= tlsBefore!);
    assert.equal(value(s, "mesh_ca_certificates", { status: "superseded" }), 1, "the server's first certificate");
    const lint = await promtool(["check", "metrics"], await t.server.metrics.registry.metrics());
    assert.deepEqual(lint, { code: 0, out: "" }, `promtool check metrics with two generations:\n${lint.out}`);
  });
});

describe("ca serve: admin flags refused in one line, nothing changed", () => {
  let work: string;
  let dir: string;
  before(async () => {
    work = tempDir("mesh-ca-metrics-flags-");
    dir = join(work, "pki");
    assert.equal((await ca(["init", "--name", "Acme Corp CA", "--dir", dir], { env: CLEAN })).code, 0);
  });
  after(() => cleanup(work));

  for (const [args, env, message] of [
    [
      ["--admin-port", "0", "--admin-host", "0.0.0.0"],
      {},
      /^error: --admin-host "0\.0\.0\.0" is not a loopback address: .*binds only to 127\.0\.0\.1/,
    ],
    [
      ["--admin-port", "0", "--admin-host", "localhost"],
      {},
      /^error: --admin-host "localhost" is not a loopback address/,
    ],
    [
      ["--admin-port", "0", "--admin-host", "10.0.0.1"],
      {},
      /^error: --admin-host "10\.0\.0\.1" is not a loopback address/,
    ],
    [["--admin-port", "65536"], {}, /^error: --admin-port "65536" is not a TCP port \(0-65535\)$/],
    [[], { MESH_CA_ADMIN_PORT: "metrics" }, /^error: MESH_CA_ADMIN_PORT "metrics" is not a TCP port \(0-65535\)$/],
  ] as const) {
    it(`${args.join(" ") || JSON.stringify(env)}: exit 2 before anything listens`, async () => {
      const before = fingerprint(dir);
      const r = await ca(["serve", "--port", "0", "--dir", dir, ...args], { env: { ...CLEAN, ...env } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(oneLineError(r), message);
      assert.equal(r.stdout, "", "nothing started, so nothing logged");
      assert.equal(fingerprint(dir), before, "no server certificate issued, nothing written");
    });
  }

  it("MESH_CA_ADMIN_PORT set but empty: no admin listener, and the EST server runs", async () => {
    const srv = serve(["--dir", dir], { MESH_CA_ADMIN_PORT: "" });
    try {
      const started = await srv.waitFor(ev("ca.started"));
      assert.match(String(started.url), /^https:\/\/127\.0\.0\.1:\d+$/);
      await srv.ready();
      assert.equal(srv.lines.filter(ev("admin.listening")).length, 0);
    } finally {
      srv.child.kill("SIGTERM");
      assert.equal(await srv.exited, 0);
    }
  });

  it("SIGTERM as soon as ca.started is logged (the admin listener still starting): exit 0, ca.stopped logged", async () => {
    const srv = serve(["--dir", dir, "--admin-port", "0"]);
    await srv.waitFor(ev("ca.started"));
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    assert.equal(srv.lines.filter(ev("ca.stopped")).length, 1);
  });

  it("an admin port already taken: exit 3 in one line, and the EST server does not stay up", async () => {
    const other = serve(["--dir", dir, "--admin-port", "0"]);
    try {
      const taken = Number((await other.waitFor(ev("admin.listening"))).port);
      await other.ready();
      const r = await ca(["serve", "--port", "0", "--dir", dir, "--admin-port", String(taken)], { env: CLEAN });
      assert.equal(r.code, 3, r.stderr);
      assert.match(
        oneLineError(r),
        new RegExp(
          `^error: cannot listen on 127\\.0\\.0\\.1:${taken} for the admin listener \\(EADDRINUSE\\): pick another --admin-port$`,
        ),
      );
      assert.doesNotMatch(r.stdout, /admin\.listening/);
    } finally {
      other.child.kill("SIGTERM");
      await other.exited;
    }
  });
});

it("the shipped prometheus.yml scrapes the CA's admin port and passes promtool check config", async () => {
  const config = readFileSync(join(ROOT, "prometheus.yml"), "utf8");
  assert.match(config, /job_name: ca\b[\s\S]*targets: \["127\.0\.0\.1:7410"\]/);
  const r = await promtool(["check", "config", join(ROOT, "prometheus.yml")]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SUCCESS/);
});

describe("ca serve never loads prom-client, with or without an admin listener", () => {
  let work: string;
  let dir: string;
  let preload: string;
  before(async () => {
    work = tempDir("mesh-ca-metrics-lazy-");
    dir = join(work, "pki");
    const init = await ca(["init", "--name", "Lazy Metrics CA", "--dir", dir], { env: CLEAN });
    assert.equal(init.code, 0, init.stderr);
    // A resolve hook that refuses prom-client, however it is reached (an ES import or a require()).
    writeFileSync(
      join(work, "hooks.mjs"),
      `export async function resolve(spec, ctx, next) {
  if (spec === "prom-client") throw new Error("refused to load prom-client");
  return next(spec, ctx);
}\n`,
    );
    preload = join(work, "refuse.mjs");
    writeFileSync(
      preload,
      `import Module from "node:module";
Module.register("./hooks.mjs", import.meta.url);
const resolve = Module._resolveFilename;
Module._resolveFilename = function (spec, ...rest) {
  if (spec === "prom-client") throw new Error("refused to load prom-client");
  return resolve.call(this, spec, ...rest);
};\n`,
    );
  });
  after(() => cleanup(work));

  it("without --admin-port it serves EST without prom-client; with one it serves /metrics, process metrics included, without it", async () => {
    const env = { NODE_OPTIONS: `--import ${preload}` };
    const srv = serve(["--dir", dir], env);
    try {
      const url = String((await srv.waitFor(ev("ca.started"))).url);
      const r = await est(url, {
        method: "GET",
        path: "/.well-known/est/cacerts",
        ca: readFileSync(join(dir, "bundle.pem"), "utf8"),
      });
      assert.equal(r.status, 200);
      const refused = await est(url, {
        method: "GET",
        path: "/nothing-here",
        ca: readFileSync(join(dir, "bundle.pem"), "utf8"),
      });
      assert.equal(refused.status, 404);
    } finally {
      srv.child.kill("SIGTERM");
    }
    assert.equal(await srv.exited, 0, "the server ran and stopped without prom-client");
    // With one: the process metrics are written by hand (lib/process-metrics-text.ts).
    const withAdmin = serve(["--dir", dir, "--admin-port", "0"], env);
    try {
      const admin = Number((await withAdmin.waitFor(ev("admin.listening"))).port);
      const scraped = await get(admin, "/metrics");
      assert.equal(scraped.status, 200);
      const s = parse(scraped.body);
      assert.ok(value(s, "process_resident_memory_bytes")! > 0, "the process metrics are there");
      assert.ok(value(s, "process_cpu_seconds_total")! > 0);
      assert.ok(s.some((x) => x.name === "nodejs_eventloop_lag_p99_seconds"));
      assert.ok(s.some((x) => x.name === "nodejs_heap_space_size_used_bytes"));
      const lint = await promtool(["check", "metrics"], scraped.body);
      assert.deepEqual(lint, { code: 0, out: "" }, `promtool check metrics:\n${lint.out}`);
    } finally {
      withAdmin.child.kill("SIGTERM");
    }
    assert.equal(await withAdmin.exited, 0, "the server with an admin listener ran and stopped without prom-client");
    // The hook does refuse prom-client: without that, this test would prove nothing.
    const probe = spawnSync(process.execPath, ["--import", preload, "-e", "require('prom-client')"], {
      cwd: ROOT,
      encoding: "utf8",
    });
    assert.notEqual(probe.status, 0, "the hook refused nothing: this test proves nothing");
    assert.match(probe.stderr, /refused to load prom-client/);
  });
});
