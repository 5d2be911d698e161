// First start in identity mode against a real CA server: enrolment with a one-time token, the
// token refused the second time, a wrong fingerprint refused before anything reaches the CA,
// a restart from the cache with the CA down, and main.ts keeping the token out of ps.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkToken, createToken, hashToken } from "../ca/tokens.ts";
import { openssl } from "./helpers/ca.ts";
import { CaServer } from "../ca/server/server.ts";
import { world, startIn, callAs, ROOMY_LIMITS, type World } from "./identity-fixtures.ts";
import { LogSink } from "./mesh-fixtures.ts";
import { IdentityError } from "../services/mesh/identity-agent/errors.ts";
import { ev, hasEvent } from "./helpers/events.ts";

let w: World;
before(async () => {
  w = await world();
});
after(async () => {
  await w.cleanup();
});

test("enrolment with a token: key 0600 made in the state folder, certificate, bundle and CRL caches; the token is spent; nothing secret logged", async () => {
  const token = w.token("payment");
  const { svc, logs } = await startIn(w, "payment", { token });
  try {
    const dir = w.stateDir("payment");
    assert.equal(statSync(join(dir, "key.pem")).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(dir).sort(), [
      "bundle.etag",
      "bundle.generations.json",
      "bundle.pem",
      "cert.pem",
      "crls.pem",
      "key.pem",
    ]);
    // OpenSSL agrees: the certificate chains to the cached bundle, and names payment.internal.
    const v = openssl([
      "verify",
      "-CAfile",
      join(dir, "bundle.pem"),
      "-crl_check",
      "-CRLfile",
      join(dir, "crls.pem"),
      join(dir, "cert.pem"),
    ]);
    assert.match(v.out, /cert\.pem: OK/);
    assert.match(
      openssl(["x509", "-in", join(dir, "cert.pem"), "-noout", "-subject", "-ext", "subjectAltName"]).out,
      /CN\s*=\s*payment\.internal[\s\S]*DNS:payment\.internal/,
    );
    const enrolled = logs.find(ev("identity.enrolled"))!;
    assert.ok(enrolled, "identity.enrolled logged");
    assert.equal(
      enrolled.serial,
      openssl(["x509", "-in", join(dir, "cert.pem"), "-noout", "-serial"])
        .out.trim()
        .split("=")[1]!
        .toLowerCase(),
    );
    assert.equal(enrolled.generation, 1);
    assert.equal(enrolled.issuer, "CN=Acme Corp CA");
    assert.equal(typeof enrolled.notAfter, "string");
    // The CA recorded it, and the token is now used.
    await w.ca.lines.wait(ev("est.enrolled", (l) => l.name === "payment.internal"));
    assert.deepEqual(checkToken(w.ca.ca.ledger, token, "payment.internal", new Date()), { ok: false, why: "used" });
    // The key never left the folder: not in the CA's log, not in ours; neither is the token.
    const keyBody = readFileSync(join(dir, "key.pem"), "utf8").split("\n")[1]!;
    const everything = JSON.stringify(logs.lines) + w.ca.lines.raw();
    assert.ok(!everything.includes(keyBody));
    assert.ok(!everything.includes(token.split(".")[1]!));
    assert.ok(!everything.includes(hashToken(token)));
    // And it serves: a peer holding an identity from the same CA gets through.
    const r = await callAs(w, w.edge, svc.port, "payment.internal", "GET", "/healthz");
    assert.deepEqual(r, { status: 200, body: JSON.stringify({ service: "payment", caller: "edge" }) });
  } finally {
    await svc.close();
  }
});

test("the same token in a second, fresh state folder is refused by the CA with a clear error, and nothing is left in that folder", async () => {
  const token = w.token("inventory");
  const first = await startIn(w, "inventory", { token });
  await first.svc.close();
  const second = join(w.root, "state", "inventory-again");
  await assert.rejects(startIn(w, "inventory", { token, stateDir: second }), (e: unknown) => {
    assert.ok(e instanceof IdentityError);
    assert.equal(e.code, "CA_REFUSED");
    assert.equal(e.status, 401);
    assert.match(e.message, /simpleenroll \(401\): .*already used.*new one/);
    assert.ok(!e.message.includes(token.split(".")[1]!), "the token is not in the message");
    return true;
  });
  assert.ok(!existsSync(second) || readdirSync(second).length === 0, "no key or certificate written");
});

test("a token whose fingerprint is not the CA's root: refused before anything is sent to the CA, and the token stays good", async () => {
  const token = w.token("order");
  const [v, secret] = token.split(".");
  const wrong = `${v}.${secret}.${"A".repeat(43)}`;
  const sinceCa = w.ca.lines.all.length;
  const dir = join(w.root, "state", "order-wrong-fp");
  await assert.rejects(startIn(w, "order", { token: wrong, stateDir: dir }), (e: unknown) => {
    assert.ok(e instanceof IdentityError);
    assert.equal(e.code, "FINGERPRINT_MISMATCH");
    assert.match(
      e.message,
      /none of the 1 root\(s\) the server at https:\/\/127\.0\.0\.1:\d+ offers has the fingerprint in the enrolment token .*nothing was sent to it/,
    );
    return true;
  });
  assert.ok(!existsSync(dir), "no state folder made");
  // The CA saw no enrolment attempt at all (a refusal would be est.refused, a success est.enrolled).
  assert.deepEqual(
    w.ca.lines.all.slice(sinceCa).filter((l) => /^est\./.test(l.event ?? "")),
    [],
  );
  assert.equal(checkToken(w.ca.ca.ledger, token, "order.internal", new Date()).ok, true, "the real token is untouched");
});

test("restarted with the CA down, a service starts from its state folder's cache and serves", async () => {
  const dir = join(w.root, "state", "order-restart");
  const first = await startIn(w, "order", { stateDir: dir });
  const serial = first.svc.identity.identity.serial;
  await first.svc.close();
  const port = w.ca.server.listeningPort;
  await w.ca.server.close(); // the CA is down
  try {
    const logs = new LogSink();
    const again = await startIn(w, "order", { stateDir: dir, token: null, logs, pollMs: 200 });
    try {
      assert.equal(again.svc.identity.identity.serial, serial);
      const failed = await logs.wait(ev("trust.poll_failed"));
      assert.match(String(failed.reason), /cannot reach the CA at https:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
      const r = await callAs(w, w.edge, again.svc.port, "order.internal", "GET", "/healthz");
      assert.deepEqual(r, { status: 200, body: JSON.stringify({ service: "order", caller: "edge" }) });
    } finally {
      await again.svc.close();
    }
  } finally {
    w.ca.server = await CaServer.start({ ca: w.ca.ca, port, log: w.ca.server.log, limits: ROOMY_LIMITS });
  }
});

test("no identity and no token: a clear error that says how to enrol, --replace included where the name is live (its folder lost)", async () => {
  const dir = join(w.root, "state", "payment-none");
  let message = "";
  await assert.rejects(
    startIn(w, "payment", { stateDir: dir, token: null }),
    (e: Error) => ((message = e.message), true),
  );
  assert.match(
    message,
    /holds no identity yet: enrol with a one-time token \(npm run -s ca -- token --domain payment\.internal > token; add --replace if payment\.internal still has a live certificate, e\.g\. this folder was lost: the old one is then superseded\), passed with --token-file token or MESH_ENROL_TOKEN/,
  );
  // The advice holds against the CA: payment.internal is live (enrolled above; issued here when run alone), so the token needs --replace.
  if (!w.ca.ca.ledger.current("payment.internal")) await w.ca.ca.issue({ domain: "payment.internal" });
  assert.throws(() => createToken(w.ca.ca, { domain: "payment.internal" }), /has a live certificate .*pass --replace/);
  assert.match(createToken(w.ca.ca, { domain: "payment.internal", replace: true }).token, /^mt1\./);
});

test("services/main.ts --ca: enrols from MESH_ENROL_TOKEN, which never appears in its command line", async () => {
  const token = w.token("payment");
  const state = join(w.root, "state", "payment-main");
  const child = spawn(
    process.execPath,
    [
      "bin/mesh-service.mjs", // services/main.ts compiled, as mesh:up starts it
      "--service",
      "payment",
      "--ca",
      w.ca.server.url,
      "--state",
      state,
      "--policy",
      w.policyFile,
      "--lifetime",
      "1h",
    ],
    {
      cwd: new URL("..", import.meta.url).pathname,
      env: { ...process.env, MESH_ENROL_TOKEN: token, MESH_PKI_DIR: "/nonexistent" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  try {
    const deadline = Date.now() + 20_000;
    while (!hasEvent(out, "listening") && Date.now() < deadline && child.exitCode === null)
      await new Promise((r) => setTimeout(r, 100));
    assert.ok(hasEvent(out, "identity.enrolled"), out);
    assert.ok(hasEvent(out, "listening"), out);
    const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, "utf8");
    assert.ok(!cmdline.includes(token.split(".")[1]!));
    assert.ok(!out.includes(token.split(".")[1]!));
    assert.equal(statSync(join(state, "key.pem")).mode & 0o777, 0o600);
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
});

test("services/main.ts --ca with a malformed token file: one line, exit 2, no state written", async () => {
  const file = join(w.root, "bad.token");
  writeFileSync(file, "mt1.nope\n");
  const state = join(w.root, "state", "payment-bad");
  const child = spawn(
    process.execPath,
    [
      "bin/mesh-service.mjs", // services/main.ts compiled, as mesh:up starts it
      "--service",
      "payment",
      "--ca",
      w.ca.server.url,
      "--state",
      state,
      "--token-file",
      file,
      "--policy",
      w.policyFile,
    ],
    {
      cwd: new URL("..", import.meta.url).pathname,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  const code = await new Promise((r) => child.once("exit", r));
  assert.equal(code, 2);
  assert.equal(err.trim().split("\n").length, 1, err);
  assert.match(err, /^payment: cannot start: the enrolment token from .*bad\.token is not an mt1 token/);
  assert.ok(!existsSync(state));
});

test("a token for another name is refused (403) and stays good for its own name", async () => {
  const forInventory = w.token("inventory");
  const dir = join(w.root, "state", "payment-other-token");
  await assert.rejects(startIn(w, "payment", { token: forInventory, stateDir: dir }), (e: unknown) => {
    assert.ok(e instanceof IdentityError);
    assert.equal(e.status, 403);
    assert.match(e.message, /simpleenroll \(403\)/);
    assert.ok(!e.message.includes("inventory"), "which name the token is for is not said");
    return true;
  });
  assert.ok(!existsSync(dir));
  assert.equal(checkToken(w.ca.ca.ledger, forInventory, "inventory.internal", new Date()).ok, true);
});

test("an expired identity: without a token it refuses to start and says how to fix it; with a new token it enrols again", async () => {
  const dir = join(w.root, "state", "payment-expired");
  const first = await startIn(w, "payment", { stateDir: dir, lifetime: "2s" });
  const old = first.svc.identity.identity;
  await first.svc.close();
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(old.notAfter) - Date.now()) + 100));
  const oldCert = readFileSync(join(dir, "cert.pem"), "utf8");
  await assert.rejects(startIn(w, "payment", { stateDir: dir, token: null }), (e: unknown) => {
    assert.ok(e instanceof IdentityError);
    assert.equal(e.code, "IDENTITY_EXPIRED");
    assert.match(
      e.message,
      /cert\.pem expired at .* cannot be renewed: make a token \(npm run -s ca -- token --domain payment\.internal > token\) and start again with --token-file token or MESH_ENROL_TOKEN/,
    );
    return true;
  });
  assert.equal(readFileSync(join(dir, "cert.pem"), "utf8"), oldCert, "nothing changed");
  const again = await startIn(w, "payment", { stateDir: dir });
  try {
    assert.notEqual(again.svc.identity.identity.serial, old.serial);
    assert.ok(again.logs.find(ev("identity.enrolled")));
  } finally {
    await again.svc.close();
  }
});
