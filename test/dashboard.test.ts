// The dashboard in a real browser (Debian's chromium driven by playwright-core) against a real
// mesh started by mesh:up: what a person would see, and that hostile text stays text.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { startDashboard, type Dashboard } from "../scripts/dashboard/server.ts";

const ROOT = join(import.meta.dirname, "..");
const CHROMIUM = "/usr/bin/chromium";
let tmp: string;
let up: ChildProcess;
let upOut = "";
let ports: Record<string, number>;
let dash: Dashboard;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}\n${upOut}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const pki = (...p: string[]) => join(tmp, "pki", ...p);
// mesh:up runs online: each identity's files are in its own state folder.
const state = (...p: string[]) => join(tmp, "state", ...p);
const curlPayment = (extra: string[]) =>
  run("curl", ["-sS", "--max-time", "5", "--cacert", state("edge", "bundle.pem"), "--resolve", `payment.internal:${ports.payment}:127.0.0.1`, ...extra, "-H", "content-type: application/json", "-d", '{"orderId":"d-1","amount":5}', `https://payment.internal:${ports.payment}/charge`]);

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mesh-dash-"));
  // The policy the repository ships (its test fixture): a user's edits to their working copy are theirs.
  copyFileSync(join(ROOT, "test", "fixtures", "mesh-policy.toml"), join(tmp, "policy.toml"));
  up = spawn(process.execPath, ["--import", "tsx", "scripts/mesh-up.ts", "--pki", pki(), "--logs", join(tmp, "logs"), "--policy", join(tmp, "policy.toml"), "--order-port", "0", "--payment-port", "0", "--inventory-port", "0", "--state", state(), "--ca-port", "0", "--dashboard-port", "0", "--quiet"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  up.stdout!.on("data", (c: Buffer) => (upOut += c));
  up.stderr!.on("data", (c: Buffer) => (upOut += c));
  const stateFile = join(tmp, "logs", "mesh.json");
  await waitFor(() => existsSync(stateFile) && /Ctrl-C stops everything/.test(upOut), 60_000, "mesh:up");
  ports = (JSON.parse(readFileSync(stateFile, "utf8")) as { ports: Record<string, number> }).ports;
  dash = await startDashboard({ logs: join(tmp, "logs"), pki: pki(), policy: join(tmp, "policy.toml"), port: 0, pollMs: 100 });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"] });
  page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(m.text());
  });
  await page.goto(dash.url);
});

after(async () => {
  await browser?.close();
  await dash?.close();
  if (up && up.exitCode === null) {
    const exited = new Promise((r) => up.once("exit", r));
    up.kill("SIGTERM");
    await exited;
  }
  rmSync(tmp, { recursive: true, force: true });
});

test("the page shows the three services, their identities and the policy, with no script error or CSP violation", { timeout: 30_000 }, async () => {
  for (const s of ["order", "payment", "inventory"]) {
    const card = page.locator(`[data-service="${s}"]`);
    await card.locator('[data-status="up"]').waitFor({ timeout: 10_000 });
    assert.match((await card.textContent()) ?? "", new RegExp(`${s}\\.internal`));
    assert.match((await card.textContent()) ?? "", /Mesh Dev Issuing CA \(generation 1\)/);
    await page.locator(`#graph [data-node="${s}"]`).waitFor();
  }
  assert.match((await page.locator('[data-cell="order>payment"]').textContent()) ?? "", /allow · payment\.accepts/);
  assert.match((await page.locator('[data-cell="inventory>payment"]').textContent()) ?? "", /deny · payment\.accepts/);
  assert.equal(await page.locator("#status").textContent(), "live");
  assert.deepEqual(pageErrors, []);
});

test("a denied curl shows in the feed with its sentence and fix within seconds, and turns its edge red", { timeout: 30_000 }, async () => {
  const r = await curlPayment(["--cert", state("inventory", "cert.pem"), "--key", state("inventory", "key.pem")]);
  assert.match(r.out, /"error":"forbidden"/);
  const item = page.locator('#feed li[data-event="authz.denied"]').first();
  await item.waitFor({ timeout: 5_000 });
  const text = (await item.textContent()) ?? "";
  assert.match(text, /inventory is not listed in payment\.accepts/);
  assert.match(text, /fix: to allow it, add "inventory" to that accepts list/);
  const edge = page.locator('#graph [data-edge="inventory>payment"]');
  await edge.waitFor({ timeout: 5_000 });
  assert.match((await edge.getAttribute("class")) ?? "", /\bfailing\b/);
  assert.match((await edge.getAttribute("class")) ?? "", /\blocked\b/, "both ends were mTLS-authenticated");
  assert.match((await page.locator('[data-cell="inventory>payment"]').textContent()) ?? "", /seen 403 POST \/charge/);
});

test("a certificate subject made of markup is shown as text, never run or rendered", { timeout: 30_000 }, async () => {
  const evil = `<img src=x onerror="document.title='pwned'"><b>bold</b>`;
  const key = join(tmp, "evil.key");
  const crt = join(tmp, "evil.crt");
  const cnf = join(tmp, "evil.cnf");
  writeFileSync(cnf, `[req]\ndistinguished_name=dn\nprompt=no\nutf8=yes\n[dn]\nCN=${evil}\n`);
  const made = await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-days", "1", "-config", cnf]);
  assert.equal(made.code, 0, made.out);
  const r = await curlPayment(["--cert", crt, "--key", key]);
  assert.notEqual(r.code, 0, "refused in the handshake");
  const item = page.locator('#feed li[data-event="tls.handshake_failed"]').filter({ hasText: "bold</b>" }).first();
  await item.waitFor({ timeout: 5_000 });
  assert.match((await item.textContent()) ?? "", /<img src=x onerror=/);
  assert.equal(await page.locator("#feed img, #feed b, #feed script").count(), 0, "no element was made from the subject");
  assert.notEqual(await page.title(), "pwned");
  assert.match((await page.locator('#graph [data-edge="(unauthenticated)>payment"]').getAttribute("class")) ?? "", /\bfailing\b/);
  assert.doesNotMatch((await page.locator('#graph [data-edge="(unauthenticated)>payment"]').getAttribute("class")) ?? "", /\blocked\b/);
});

test("a revoked identity shows as revoked", { timeout: 40_000 }, async () => {
  const r = await run(process.execPath, ["--import", "tsx", "ca/cli.ts", "revoke", "--dir", pki(), "--domain", "inventory.internal"]);
  assert.equal(r.code, 0, r.out);
  await page.locator('[data-service="inventory"] [data-status="REVOKED"]').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('[data-service="payment"] [data-status="up"]').count(), 1, "only inventory is marked");
  assert.deepEqual(pageErrors, []);
});

test("the server is read-only, loopback-only, sends a strict CSP and refuses a foreign Host", async () => {
  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: dash.port, path, method, headers }, (res) => {
        res.resume();
        resolve({ status: res.statusCode!, headers: res.headers });
      });
      req.on("error", reject);
      req.end();
    });
  const home = await get("/");
  assert.equal(home.status, 200);
  assert.match(String(home.headers["content-security-policy"]), /default-src 'none'; script-src 'self'; style-src 'self'/);
  assert.doesNotMatch(String(home.headers["content-security-policy"]), /unsafe/);
  assert.equal(home.headers["x-content-type-options"], "nosniff");
  assert.equal((await get("/", {}, "POST")).status, 405);
  assert.equal((await get("/", { host: "evil.example:80" })).status, 421);
  assert.equal((await get("/nope")).status, 404);
  await assert.rejects(startDashboard({ logs: tmp, pki: tmp, policy: join(tmp, "policy.toml"), host: "0.0.0.0" }), /loopback only/);
});
