// The dashboard in a real browser (Debian's chromium driven by playwright-core) against a real
// mesh started by mesh:up: what a person would see, and that hostile text stays text.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { CertificateAuthority } from "../ca/authority.ts";
import { startDashboard, type Dashboard } from "../scripts/dashboard/server.ts";
import { eventsIn } from "./helpers/events.ts";

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
    execFile(
      cmd,
      args,
      { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
      },
    );
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
/** Screenshots go to DASHBOARD_SHOTS when set (to look at them), else into the test's folder. */
const shot = (name: string) => {
  const dir = process.env.DASHBOARD_SHOTS || join(tmp, "shots");
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
};
// mesh:up runs online: each identity's files are in its own state folder.
const state = (...p: string[]) => join(tmp, "state", ...p);
const curlPayment = (extra: string[]) =>
  run("curl", [
    "-sS",
    "--max-time",
    "5",
    "--cacert",
    state("edge", "bundle.pem"),
    "--resolve",
    `payment.internal:${ports.payment}:127.0.0.1`,
    ...extra,
    "-H",
    "content-type: application/json",
    "-d",
    '{"orderId":"d-1","amount":5}',
    `https://payment.internal:${ports.payment}/charge`,
  ]);

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mesh-dash-"));
  // The policy the repository ships (its test fixture): a user's edits to their working copy are theirs.
  copyFileSync(join(ROOT, "test", "fixtures", "mesh-policy.toml"), join(tmp, "policy.toml"));
  up = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "scripts/mesh-up.ts",
      "--pki",
      pki(),
      "--logs",
      join(tmp, "logs"),
      "--policy",
      join(tmp, "policy.toml"),
      "--order-port",
      "0",
      "--payment-port",
      "0",
      "--inventory-port",
      "0",
      "--state",
      state(),
      "--ca-port",
      "0",
      "--dashboard-port",
      "0",
      "--quiet",
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } },
  );
  up.stdout!.on("data", (c: Buffer) => (upOut += c));
  up.stderr!.on("data", (c: Buffer) => (upOut += c));
  const stateFile = join(tmp, "logs", "mesh.json");
  await waitFor(() => existsSync(stateFile) && /Ctrl-C stops everything/.test(upOut), 60_000, "mesh:up");
  ports = (JSON.parse(readFileSync(stateFile, "utf8")) as { ports: Record<string, number> }).ports;
  dash = await startDashboard({
    logs: join(tmp, "logs"),
    pki: pki(),
    policy: join(tmp, "policy.toml"),
    port: 0,
    pollMs: 100,
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
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

test("the page shows the three services, their identities and the policy, with no script error or CSP violation", {
  timeout: 30_000,
}, async () => {
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
  // mesh:up said where its run begins; the page shows that run only.
  const started = eventsIn(readFileSync(join(tmp, "logs", "mesh-up.log"), "utf8"), "mesh.started");
  assert.equal(started.length, 1);
  assert.equal(dash.state.snapshot().runStartedAt, started[0]!.time);
  assert.match((await page.locator("#run").textContent()) ?? "", /this mesh:up run since \d\d:\d\d:\d\d/);
  assert.deepEqual(pageErrors, []);
});

test("the first paint already shows the mesh: the page comes with the current state, even with the event stream blocked", {
  timeout: 30_000,
}, async () => {
  const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  try {
    // No snapshot can come over SSE: whatever the page shows, it came with.
    await p.route("**/events", (r) => r.abort());
    await p.goto(dash.url, { waitUntil: "domcontentloaded" });
    // Read at once, before anything could arrive: the deferred script has run by DOMContentLoaded.
    const first = await p.evaluate(() => ({
      nodes: document.querySelectorAll("#graph [data-node]").length,
      cards: document.querySelectorAll("[data-service]").length,
      status: document.getElementById("status")!.textContent,
    }));
    assert.ok(first.nodes >= 4, `nodes at first paint: ${first.nodes}`);
    assert.ok(first.cards >= 4, `identity cards at first paint: ${first.cards}`);
    assert.notEqual(first.status, "connecting…");
    await p.screenshot({ path: shot("first-paint.png") });
  } finally {
    await p.close();
  }
});

test("edge, the client identity the tools use, has an identity card", { timeout: 30_000 }, async () => {
  const card = page.locator('[data-service="edge"]');
  await card.waitFor({ timeout: 10_000 });
  const text = (await card.textContent()) ?? "";
  assert.match(text, /edge\.internal/);
  assert.match(text, /Mesh Dev Issuing CA \(generation 1\)/);
  assert.equal(await card.locator('[data-status="client"]').count(), 1);
  assert.equal(await page.locator('#graph [data-node="edge"].client').count(), 1);
});

test("a denied curl shows in the feed with its sentence and fix within seconds, drawn calmly: the policy at work is not an outage", {
  timeout: 30_000,
}, async () => {
  const r = await curlPayment(["--cert", state("inventory", "cert.pem"), "--key", state("inventory", "key.pem")]);
  assert.match(r.out, /"error":"forbidden"/);
  const item = page.locator('#feed li[data-event="authz.denied"]').first();
  await item.waitFor({ timeout: 5_000 });
  const text = (await item.textContent()) ?? "";
  assert.match(text, /inventory is not listed in payment\.accepts/);
  assert.match(text, /if it should have been let in: to allow it, add "inventory" to that accepts list/);
  assert.equal(await item.getAttribute("class"), "denied");
  const edge = page.locator('#graph [data-edge="inventory>payment"]');
  await edge.waitFor({ timeout: 5_000 });
  assert.match((await edge.getAttribute("class")) ?? "", /\bheld\b/);
  assert.doesNotMatch((await edge.getAttribute("class")) ?? "", /\bfailing\b/);
  assert.match((await edge.getAttribute("class")) ?? "", /\blocked\b/, "both ends were mTLS-authenticated");
  // A calm colour, not the red of failures.
  assert.notEqual(await edge.locator("line").evaluate((l) => getComputedStyle(l).stroke), "rgb(248, 81, 73)");
  const cell = page.locator('[data-cell="inventory>payment"]');
  assert.match((await cell.textContent()) ?? "", /seen 403 POST \/charge/);
  assert.doesNotMatch((await cell.getAttribute("class")) ?? "", /mismatch/);
});

test("a certificate subject made of markup is shown as text, never run or rendered", { timeout: 30_000 }, async () => {
  const evil = `<img src=x onerror="document.title='pwned'"><b>bold</b>`;
  const key = join(tmp, "evil.key");
  const crt = join(tmp, "evil.crt");
  const cnf = join(tmp, "evil.cnf");
  writeFileSync(cnf, `[req]\ndistinguished_name=dn\nprompt=no\nutf8=yes\n[dn]\nCN=${evil}\n`);
  const made = await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    key,
    "-out",
    crt,
    "-days",
    "1",
    "-config",
    cnf,
  ]);
  assert.equal(made.code, 0, made.out);
  const r = await curlPayment(["--cert", crt, "--key", key]);
  assert.notEqual(r.code, 0, "refused in the handshake");
  const item = page.locator('#feed li[data-event="tls.handshake_failed"]').filter({ hasText: "bold</b>" }).first();
  await item.waitFor({ timeout: 5_000 });
  assert.match((await item.textContent()) ?? "", /<img src=x onerror=/);
  assert.equal(
    await page.locator("#feed img, #feed b, #feed script").count(),
    0,
    "no element was made from the subject",
  );
  assert.notEqual(await page.title(), "pwned");
  // A self-signed stranger kept out is the mesh doing its job: calm, not red.
  assert.equal(await item.getAttribute("class"), "kept-out");
  const edge = page.locator('#graph [data-edge="(unauthenticated)>payment"]');
  assert.match((await edge.getAttribute("class")) ?? "", /\bkept\b/);
  assert.doesNotMatch((await edge.getAttribute("class")) ?? "", /\bfailing\b/);
  assert.doesNotMatch((await edge.getAttribute("class")) ?? "", /\blocked\b/);
});

test("after mesh:probe nothing is red: 403s and strangers kept out are what the policy asks for", {
  timeout: 60_000,
}, async () => {
  const r = await run(process.execPath, ["--import", "tsx", "scripts/mesh-probe.ts", "--logs", join(tmp, "logs")]);
  assert.equal(r.code, 0, r.out);
  // The probe's last caller is the foreign CA: wait until its refusals are drawn.
  await page.locator('#graph [data-edge="(unauthenticated)>order"]').waitFor({ timeout: 10_000 });
  await page.locator('[data-cell="edge>order"] [data-verdict="agrees"]').waitFor({ timeout: 10_000 });
  assert.deepEqual(
    await page.locator("#graph .edge.failing").evaluateAll((els) => els.map((e) => e.getAttribute("data-edge"))),
    [],
  );
  assert.equal(await page.locator("#matrix td.mismatch").count(), 0);
  assert.equal(await page.locator("#feed li.refused, #feed li.failed").count(), 0);
  assert.ok(
    (await page.locator("#feed li.denied").count()) > 0 && (await page.locator("#feed li.kept-out").count()) > 0,
  );
  assert.equal(await page.locator("#legend li").count(), 7, "a legend says what each look means");
});

test("a call on a route its own rule allows is judged by that rule, and a policy reverted is re-judged, not left red", {
  timeout: 90_000,
}, async () => {
  // A fourth identity, issued by hand, which only a route rule lets in.
  const issued = await run(process.execPath, ["bin/ca.mjs", "issue", "--dir", pki(), "--domain", "shipping.internal"]);
  assert.equal(issued.code, 0, issued.out);
  const policy = join(tmp, "policy.toml");
  const original = readFileSync(policy, "utf8");
  const reloads = () => eventsIn(readFileSync(join(tmp, "logs", "inventory.log"), "utf8"), "policy.reloaded").length;
  const before = reloads();
  writeFileSync(
    policy,
    `${original}\n[[inventory.routes]]\nmethod = "GET"\npath = "/stock/:sku"\naccepts = ["order", "shipping"]\n`,
  );
  await waitFor(() => reloads() > before, 20_000, "inventory reloading the policy");
  const stock = await run("curl", [
    "-sS",
    "--max-time",
    "5",
    "--cacert",
    state("edge", "bundle.pem"),
    "--resolve",
    `inventory.internal:${ports.inventory}:127.0.0.1`,
    "--cert",
    pki("certs", "shipping.internal.crt"),
    "--key",
    pki("certs", "shipping.internal.key"),
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    `https://inventory.internal:${ports.inventory}/stock/widget`,
  ]);
  assert.equal(stock.out, "200");
  const cell = page.locator('[data-cell="shipping>inventory"]');
  await cell
    .locator('[data-verdict="agrees"]')
    .filter({ hasText: "seen 200 GET /stock/widget" })
    .waitFor({ timeout: 10_000 });
  assert.match(
    (await cell.textContent()) ?? "",
    /deny · inventory\.accepts.*but allow GET \/stock\/:sku \(inventory\.routes\[0\]\)/,
  );
  assert.doesNotMatch((await cell.getAttribute("class")) ?? "", /mismatch/);
  assert.doesNotMatch(
    (await page.locator('#graph [data-edge="shipping>inventory"]').getAttribute("class")) ?? "",
    /failing|mismatch/,
  );
  // Reverted: the 200 was right under the policy of its time; it is not judged by today's.
  const reverted = reloads();
  writeFileSync(policy, original);
  await waitFor(() => reloads() > reverted, 20_000, "inventory reloading the reverted policy");
  await cell.locator('[data-verdict="stale"]').waitFor({ timeout: 10_000 });
  assert.doesNotMatch((await cell.getAttribute("class")) ?? "", /mismatch/);
});

// The two checks below run in the page. They are plain JavaScript strings: tsx would add helpers
// (__name) to a TypeScript function that the page does not have.

/** Every arrow of the graph against every node's name, in screen coordinates: the crossings. */
const ARROWS_CROSSING_LABELS = `(() => {
  // Liang-Barsky: does the segment a-b enter the rectangle r?
  const hits = (ax, ay, bx, by, r) => {
    let t0 = 0, t1 = 1;
    const dx = bx - ax, dy = by - ay;
    for (const [p, q] of [[-dx, ax - r.left], [dx, r.right - ax], [-dy, ay - r.top], [dy, r.bottom - ay]]) {
      if (p === 0) { if (q < 0) return false; continue; }
      const t = q / p;
      if (p < 0) t0 = Math.max(t0, t); else t1 = Math.min(t1, t);
      if (t0 > t1) return false;
    }
    return true;
  };
  const out = [];
  const labels = [...document.querySelectorAll("#graph [data-node] text")];
  for (const line of document.querySelectorAll("#graph [data-edge] line")) {
    const m = line.getScreenCTM();
    const a = new DOMPoint(line.x1.baseVal.value, line.y1.baseVal.value).matrixTransform(m);
    const b = new DOMPoint(line.x2.baseVal.value, line.y2.baseVal.value).matrixTransform(m);
    for (const t of labels) if (hits(a.x, a.y, b.x, b.y, t.getBoundingClientRect())) out.push(line.parentElement.getAttribute("data-edge") + " crosses " + t.textContent);
  }
  return out;
})()`;

/** Elements sticking out of their panel, and panels wider than their content box. */
const OVERFLOWING = `(() => {
  const out = [];
  for (const panel of document.querySelectorAll(".panel")) {
    if (panel.scrollWidth > panel.clientWidth + 1) out.push(panel.id + ": scrollWidth " + panel.scrollWidth + " > " + panel.clientWidth);
    const box = panel.getBoundingClientRect();
    for (const el of panel.querySelectorAll("*")) {
      // uPlot parks its hidden cursor off the plot.
      if (el.closest(".u-cursor-x, .u-cursor-y, .u-cursor-pt, .u-select, defs")) continue;
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (r.right > box.right + 1 || r.left < box.left - 1) out.push(panel.id + ": <" + el.tagName.toLowerCase() + " " + (typeof el.className === "string" ? el.className : "") + "> spans " + Math.round(r.left) + ".." + Math.round(r.right) + ", panel " + Math.round(box.left) + ".." + Math.round(box.right));
    }
  }
  return out.slice(0, 20);
})()`;

for (const width of [1280, 1920]) {
  test(`at ${width} px: no horizontal scrollbar, nothing overflows its panel, no arrow crosses a name`, {
    timeout: 30_000,
  }, async () => {
    const p = await browser.newPage({ viewport: { width, height: 1000 } });
    try {
      await p.goto(dash.url);
      await p.locator("#graph [data-node]").first().waitFor();
      await p.locator("#timeline canvas").first().waitFor();
      const { scrollWidth, clientWidth } = await p.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        clientWidth: document.documentElement.clientWidth,
      }));
      assert.ok(scrollWidth <= clientWidth, `page ${scrollWidth} px wide in a ${clientWidth} px window`);
      assert.deepEqual(await p.evaluate<string[]>(OVERFLOWING), []);
      assert.ok((await p.locator("#graph [data-edge] line").count()) >= 10, "the probe's edges are drawn");
      assert.deepEqual(await p.evaluate<string[]>(ARROWS_CROSSING_LABELS), []);
      await p.screenshot({ path: shot(`dashboard-${width}.png`), fullPage: true });
    } finally {
      await p.close();
    }
  });
}

test("a revoked identity shows as revoked", { timeout: 40_000 }, async () => {
  const r = await run(process.execPath, ["bin/ca.mjs", "revoke", "--dir", pki(), "--domain", "inventory.internal"]);
  assert.equal(r.code, 0, r.out);
  await page.locator('[data-service="inventory"] [data-status="REVOKED"]').waitFor({ timeout: 10_000 });
  assert.equal(
    await page.locator('[data-service="payment"] [data-status="up"]').count(),
    1,
    "only inventory is marked",
  );
  assert.deepEqual(pageErrors, []);
});

test("restarts by mesh:up's supervisor show per component: a calm note for one restart, red when it gave up", {
  timeout: 30_000,
}, async () => {
  // Written by hand, as the supervisor writes them (mesh-up.log, after this run's mesh.started).
  const now = () => new Date().toISOString();
  const sup = (event: string, f: Record<string, unknown>) =>
    appendFileSync(
      join(tmp, "logs", "mesh-up.log"),
      `${JSON.stringify({ level: 30, time: now(), service: "mesh-up", event, ...f })}\n`,
    );
  sup("supervisor.exited", { component: "payment", pid: 4242, code: 1, signal: null });
  sup("supervisor.restarting", { component: "payment", attempt: 1, delayMs: 500 });
  sup("supervisor.started", { component: "payment", pid: 4243 });
  sup("supervisor.exited", { component: "<b>worker</b>", pid: 4244, code: null, signal: "SIGKILL" });
  sup("supervisor.gave_up", { component: "<b>worker</b>", restarts: 5 });
  const badge = page.locator('[data-service="payment"] [data-restarts="1"]');
  await badge.waitFor({ timeout: 10_000 });
  assert.equal(await badge.textContent(), "restarted once");
  assert.match((await badge.getAttribute("class")) ?? "", /\bcalm\b/);
  const row = page.locator('#processes [data-component="<b>worker</b>"]');
  await row.waitFor({ timeout: 10_000 });
  assert.equal(await row.getAttribute("data-state"), "gave_up");
  assert.match((await row.getAttribute("class")) ?? "", /\bbad\b/);
  assert.match((await row.textContent()) ?? "", /killed by SIGKILL/);
  assert.equal(await page.locator("#processes b").count(), 0, "a component name is text");
  assert.match((await page.locator('#processes [data-component="payment"]').textContent()) ?? "", /exited with code 1/);
});

test("the CA servers show with who holds the jobs' lease (hand-written ca2.log lines, as a second replica writes them); values are text", {
  timeout: 30_000,
}, async () => {
  const now = () => new Date().toISOString();
  const ca2 = (event: string, f: Record<string, unknown>) =>
    appendFileSync(
      join(tmp, "logs", "ca2.log"),
      `${JSON.stringify({ level: 30, time: now(), service: "ca", event, ...f })}\n`,
    );
  ca2("ca.started", {
    url: "https://127.0.0.1:7420/<b>x</b>",
    store: "postgres",
    lease_holder: "host:7777:zz",
    runs_jobs: false,
  });
  ca2("ca.lease_acquired", { lease: "ca-server-jobs", holder: "host:7777:zz" });
  const row = page.locator('#ca-replicas [data-ca-url="https://127.0.0.1:7420/<b>x</b>"]');
  await row.waitFor({ timeout: 10_000 });
  assert.equal(await row.getAttribute("data-runs-jobs"), "true");
  assert.match((await row.textContent()) ?? "", /7777.*postgres.*holds the lease/);
  assert.equal(await page.locator("#ca-replicas b").count(), 0, "a URL is text");
  assert.match(
    (await page.locator("#ca-replicas").textContent()) ?? "",
    /once-only jobs \(re-signing CRLs\) run on host:7777:zz/,
  );
  // One holder at a time, whatever else the logs list.
  assert.equal(await page.locator('#ca-replicas [data-runs-jobs="true"]').count(), 1);
  assert.deepEqual(pageErrors, []);
});

test("`npm run ca -- rotate` as the README runs it shows on the page: the gate it is at, who it waits for and why, then done", {
  timeout: 120_000,
}, async () => {
  // A CA of its own with a file-mode certificate: gate 3 waits for it until it is renewed.
  const dir = join(tmp, "rotation");
  mkdirSync(join(dir, "logs"), { recursive: true });
  const authority = await CertificateAuthority.init({ dir: join(dir, "pki"), name: "Rotation Test CA" });
  await authority.issue({ domain: "files.internal" });
  authority.close();
  const d = await startDashboard({
    logs: join(dir, "logs"),
    pki: join(dir, "pki"),
    policy: join(tmp, "policy.toml"),
    port: 0,
    pollMs: 100,
  });
  const p = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await p.goto(d.url);
  assert.match((await p.locator("#rotation").textContent()) ?? "", /No rotation in progress/);
  const rot = spawn(
    process.execPath,
    // The compiled CLI (bin/ca.mjs, what `npm run ca` runs); its gate polls every 100 ms.
    ["bin/ca.mjs", "rotate", "--dir", join(dir, "pki"), "--timeout", "2m", "--interval", "100ms"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, MESH_PKI_DIR: "" } },
  );
  let out = "";
  rot.stdout!.on("data", (c: Buffer) => (out += c));
  rot.stderr!.on("data", (c: Buffer) => (out += c));
  try {
    const waiting = p.locator('#rotation [data-waiting="files.internal"]');
    await waiting.waitFor({ timeout: 60_000 });
    assert.match((await waiting.textContent()) ?? "", /run: npm run ca -- renew --domain files\.internal/);
    assert.match(
      (await p.locator("#rotation .rotation-head").textContent()) ?? "",
      /generation 1 → 2, at gate 3\/3 \(retire\)/,
    );
    assert.equal(await p.locator('#rotation [data-gate="retire"]').getAttribute("class"), "current");
    const renewed = await run(process.execPath, [
      "bin/ca.mjs",
      "renew",
      "--dir",
      join(dir, "pki"),
      "--domain",
      "files.internal",
    ]);
    assert.equal(renewed.code, 0, renewed.out);
    await p.locator('#rotation [data-phase="done"]').waitFor({ timeout: 30_000 });
    await p.screenshot({ path: shot("rotation-done.png") });
  } catch (e) {
    throw new Error(`${(e as Error).message}\nca rotate said:\n${out}`);
  } finally {
    if (rot.exitCode === null) rot.kill("SIGTERM");
    await p.close();
    await d.close();
  }
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
  assert.match(
    String(home.headers["content-security-policy"]),
    /default-src 'none'; script-src 'self'; style-src 'self'/,
  );
  assert.doesNotMatch(String(home.headers["content-security-policy"]), /unsafe/);
  assert.equal(home.headers["x-content-type-options"], "nosniff");
  assert.equal((await get("/", {}, "POST")).status, 405);
  assert.equal((await get("/", { host: "evil.example:80" })).status, 421);
  assert.equal((await get("/nope")).status, 404);
  await assert.rejects(
    startDashboard({ logs: tmp, pki: tmp, policy: join(tmp, "policy.toml"), host: "0.0.0.0" }),
    /loopback only/,
  );
});
