// /healthz and /readyz on a service's admin port tell the truth: a service whose identity is
// expired, not yet valid or revoked is not healthy (503, and the body says why). The verdict with
// an injected clock on real certificates and CRLs, and once end to end: a real service process
// whose certificate expires while its CA is gone.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { CertificateAuthority } from "../ca/index.ts";
import { loadMaterial, materialPaths } from "../services/mesh/material.ts";
import { serviceHealth, serviceReadiness } from "../services/mesh/health.ts";
import { world, type World } from "./identity-fixtures.ts";

const ROOT = join(import.meta.dirname, "..");
const tmp = mkdtempSync(join(tmpdir(), "mesh-healthz-"));
const worlds: World[] = [];
const procs: ChildProcess[] = [];
after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  for (const w of worlds) await w.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

test("the verdict: valid now; not yet valid before notBefore; expired after notAfter; revoked once the CRLs it holds say so; readiness also wants current CRLs", async () => {
  const dir = join(tmp, "pki");
  const ca = await CertificateAuthority.init({ dir, name: "Healthz Test CA" });
  try {
    await ca.issue({ domain: "payment.internal" });
    await ca.publishCrls();
    const paths = materialPaths(dir, "payment.internal");
    const m = loadMaterial(paths, "payment.internal");
    const leaf = new (await import("node:crypto")).X509Certificate(m.cert);
    const at = (d: string | number) => new Date(d);
    assert.deepEqual(serviceHealth({ listening: true, material: m }), { ok: true });
    assert.deepEqual(serviceReadiness({ listening: true, material: m }), { ok: true });

    const early = serviceHealth({ listening: true, material: m }, at(Date.parse(leaf.validFrom) - 1_000));
    assert.equal(early.ok, false);
    assert.match(early.reason!, /is not valid yet: valid from /);
    const late = serviceHealth({ listening: true, material: m }, at(Date.parse(leaf.validTo) + 1_000));
    assert.equal(late.ok, false);
    assert.match(late.reason!, /^its certificate \(CN=payment\.internal, serial [0-9a-f]+\) expired at /);
    const closed = serviceHealth({ listening: false, material: m });
    assert.deepEqual(closed, { ok: false, reason: "its mTLS port no longer listens" });

    // A CRL past its nextUpdate: healthy (its identity is fine), not ready (it refuses every peer).
    const lapsedAt = at(Date.now() + 40 * 86_400_000);
    assert.ok(Date.parse(leaf.validTo) > lapsedAt.getTime(), "the certificate outlives its CRL (30 days)");
    assert.deepEqual(serviceHealth({ listening: true, material: m }, lapsedAt), { ok: true });
    const r = serviceReadiness({ listening: true, material: m }, lapsedAt);
    assert.equal(r.ok, false);
    assert.match(r.reason!, /^the CRL of .* lapsed at /);

    await ca.revoke({ domain: "payment.internal" });
    const revoked = serviceHealth({ listening: true, material: loadMaterial(paths, "payment.internal") });
    assert.equal(revoked.ok, false);
    assert.match(revoked.reason!, /is revoked by the CRLs it holds/);
  } finally {
    ca.close();
  }
});

function get(port: number, path: string, method = "GET"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, timeout: 5_000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("a real service whose certificate expires while its CA is gone: /healthz and /readyz go from 200 to 503 saying why; HEAD /healthz too", {
  timeout: 90_000,
}, async () => {
  const w = await world();
  worlds.push(w);
  const proc = spawn(
    process.execPath,
    [
      join(ROOT, "bin", "mesh-service.mjs"),
      "--service",
      "payment",
      "--port",
      "0",
      "--admin-port",
      "0",
      "--policy",
      w.policyFile,
      "--ca",
      w.ca.server.url,
      "--state",
      w.stateDir("payment"),
      // 6 s (was 10 s): the three 200s come within a second of the enrolment, the expiry 5 s later.
      "--lifetime",
      "6s",
      "--poll",
      "1",
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, MESH_ENROL_TOKEN: w.token("payment") },
    },
  );
  procs.push(proc);
  const events: { event?: string; port?: number }[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: proc.stdout! }).on("line", (t) => {
    try {
      events.push(JSON.parse(t));
    } catch {
      return;
    }
    for (const w of waiters.splice(0)) w();
  });
  const wait = (event: string, ms: number) =>
    new Promise<{ port?: number }>((resolve, reject) => {
      const t0 = Date.now();
      const look = () => {
        const e = events.find((l) => l.event === event);
        if (e) return resolve(e);
        if (Date.now() - t0 > ms)
          return reject(new Error(`no ${event} within ${ms} ms: ${events.map((l) => l.event).join(", ")}`));
        waiters.push(look);
        setTimeout(look, 500).unref();
      };
      look();
    });
  const admin = (await wait("admin.listening", 30_000)).port!;
  assert.deepEqual(await get(admin, "/healthz"), { status: 200, body: "ok\n" });
  assert.deepEqual(await get(admin, "/readyz"), { status: 200, body: "ok\n" });
  assert.equal((await get(admin, "/healthz", "HEAD")).status, 200);

  await w.ca.server.close(); // no renewal from now on
  await wait("identity.expired", 30_000);
  const h = await get(admin, "/healthz");
  assert.equal(h.status, 503);
  assert.match(
    h.body,
    /^unhealthy: its certificate \(CN=payment\.internal, serial [0-9a-f]+\) expired at \d{4}-\d\d-\d\dT[\d:.]+Z: every peer refuses it; it needs a new identity\n$/,
  );
  const r = await get(admin, "/readyz");
  assert.equal(r.status, 503);
  assert.match(r.body, /^not ready: its certificate .* expired at /);
  assert.deepEqual(await get(admin, "/healthz", "HEAD"), { status: 503, body: "" });
  proc.kill("SIGTERM");
});
