// mesh:up as a real process. Online (the default): the CA server starts, the services enrol
// with one-time tokens and renew on their own, the probe agrees with the policy, the banner's
// curl commands work, SIGTERM leaves nothing behind. --file-mode: the tutorial's CLI-issued files.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { SHIPPED_POLICY_FILE } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";
// mesh:probe and mesh:check compiled once for this file (helpers/compiled.ts); the last probe runs as npm does, under tsx.
import { compiledScript } from "./helpers/compiled.ts";

const ROOT = join(import.meta.dirname, "..");
let tmp: string;

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "mesh-up-"));
});
// A failed assertion must not leave a mesh running (the test process would wait for it forever).
const started: ChildProcess[] = [];
after(() => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
  rmSync(tmp, { recursive: true, force: true });
});

interface Up {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

/**
 * mesh:up on its own, as npm runs it (under tsx) with `tsx`, else compiled once for this file
 * (helpers/compiled.ts: ~0.4 s of CPU less a start); the online test's first start keeps tsx.
 */
async function meshUp(extra: string[] = [], o: { tsx?: boolean } = {}): Promise<Up> {
  // --no-quiet (the test's own word): echo the services' lines, as a user sees them.
  const quiet = extra.includes("--no-quiet") ? [] : ["--quiet"];
  extra = extra.filter((a) => a !== "--no-quiet");
  const proc = spawn(
    process.execPath,
    [
      ...(o.tsx ? ["--import", "tsx", "scripts/mesh-up.ts"] : [await compiledScript("mesh-up")]),
      "--pki",
      join(tmp, "pki"),
      "--logs",
      join(tmp, "logs"),
      "--order-port",
      "0",
      "--payment-port",
      "0",
      "--inventory-port",
      "0",
      ...quiet,
      "--policy",
      SHIPPED_POLICY_FILE,
      ...extra,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } },
  );
  started.push(proc);
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c));
  proc.stderr!.on("data", (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  return { proc, out: () => out, exited };
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

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

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });

/** The banner's curl lines as argv (its paths are absolute: the test's folders are outside the repo). */
const curlLines = (out: string) => out.split("\n").filter((l) => l.trim().startsWith("curl "));
const argvOf = (l: string) =>
  l
    .trim()
    .slice(5)
    .match(/'[^']*'|\S+/g)!
    .map((a) => a.replace(/^'|'$/g, ""));

const logEvents = (file: string) =>
  existsSync(file)
    ? readFileSync(file, "utf8")
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { event: string; serial?: string; reason?: string })
    : [];

// The three side by side, each in its own folders: the file-mode runs and the refusal take their
// turns while the online test waits for its renewals.
describe("mesh:up as a real process", { concurrency: true }, () => {
  test("online: mesh:up enrols every identity with a one-time token, they renew on their own, the banner's commands work, SIGTERM stops it all", {
    timeout: 150_000,
  }, async () => {
    // A policy that already names a service not deployed yet: a warning, not a refusal.
    const policy = join(tmp, "online-policy.toml");
    writeFileSync(
      policy,
      readFileSync(SHIPPED_POLICY_FILE, "utf8") +
        `\n[[inventory.routes]]\nmethod = "GET"\npath = "/stock/:sku"\naccepts = ["order", "shipping"]\n`,
    );
    const logs = join(tmp, "online-logs");
    const stateDir = join(tmp, "state");
    // 24 s certificates renewed at 1/3 of their life (~8 s; at the default 2/3 of 20 s, ~13 s).
    // Revoked, inventory keeps its certificate until it expires, at least 15 s later: the steps
    // from the revocation to the probe that must see "revoked", not "expired", have that long.
    // The same folders and free ports on both starts.
    const online = [
      "--policy",
      policy,
      "--logs",
      logs,
      "--pki",
      join(tmp, "online-pki"),
      "--state",
      stateDir,
      "--ca-port",
      "0",
      "--dashboard-port",
      "0",
    ];
    const up = await meshUp([...online, "--lifetime", "24s", "--renew-at", "0.33", "--poll", "5", "--no-quiet"], {
      tsx: true,
    });
    const stateFile = join(logs, "mesh.json");
    await waitFor(
      () => existsSync(stateFile) && /Ctrl-C stops everything/.test(up.out()),
      60_000,
      "mesh:up to be ready",
    );
    const out = up.out();
    const state = JSON.parse(readFileSync(stateFile, "utf8")) as {
      mode: string;
      ports: Record<string, number>;
      pids: Record<string, number>;
      ca: { url: string; adminUrl: string };
      dashboard: string;
    };
    assert.equal(state.mode, "online");
    assert.match(out, /created the CA/);
    assert.match(out, /\[ca\] +\S+ ca\.started: CA serving EST on https:\/\/127\.0\.0\.1:\d+/);
    assert.equal((out.match(/^token  /gm) ?? []).length, 3, out);
    assert.doesNotMatch(out, /mt1\./, "no token is ever printed");
    for (const n of ["order", "payment", "inventory", "edge"])
      assert.match(
        out,
        new RegExp(`\\[${n}\\] +\\S+ identity\\.enrolled: enrolled ${n}\\.internal with the CA at ${state.ca.url}`),
        out,
      );
    assert.match(
      out,
      /warning: policy\.unknown_caller shipping: .*lets "shipping" call \(inventory\.routes\[0\]\), but no certificate for shipping\.internal exists yet/,
    );
    // (The shipped policy names the workloads of mesh-workloads.toml too, which this run does not start.)
    const warned = logEvents(join(logs, "mesh-up.log")).find(
      ev("policy.unknown_caller", (l) => (l as { caller?: string }).caller === "shipping"),
    ) as { caller?: string; rules?: string[] } | undefined;
    assert.deepEqual(
      [warned?.caller, warned?.rules],
      ["shipping", ["inventory.routes[0]"]],
      "logged too, for mesh:logs and the dashboard",
    );
    assert.match(out, new RegExp(`dashboard  ${state.dashboard.replace(/[.]/g, "\\.")}`));
    assert.doesNotMatch(out, /^issued /m, "online, the CLI issues nothing");
    // The token went to each service in its environment, never its arguments (ps shows those).
    for (const pid of Object.values(state.pids))
      assert.doesNotMatch(readFileSync(`/proc/${pid}/cmdline`, "utf8"), /mt1\./);
    for (const n of ["order", "payment", "inventory", "edge"])
      assert.equal(statSync(join(stateDir, n, "key.pem")).mode & 0o777, 0o600);

    // What payment sends in the handshake: its leaf and the issuing intermediate, never the root.
    const shown = await run("sh", [
      "-c",
      `openssl s_client -connect 127.0.0.1:${state.ports.payment} -servername payment.internal -showcerts </dev/null`,
    ]);
    const sent = [...shown.out.matchAll(/^ *\d+ s:(.*)$/gm)].map((m) => m[1]!.trim());
    assert.deepEqual(sent, ["CN = payment.internal", "CN = Mesh Dev Issuing CA"], shown.out);

    const probe = await run(process.execPath, [await compiledScript("mesh-probe"), "--logs", logs]);
    assert.equal(probe.code, 0, probe.out);
    assert.match(probe.out, /^edge +✓ 403 order\.accepts/m, "edge's identity from state/edge is probed");
    assert.match(probe.out, /the mesh does what the policy says/);

    // The three commands the banner prints, as printed: paths under state/<name>/.
    const lines = curlLines(out);
    assert.equal(lines.length, 3);
    for (const l of lines) assert.match(l, /--cacert \S+\/state\/(order|inventory|edge)\/bundle\.pem/);
    const curl = (l: string) => run("curl", ["-sS", "--max-time", "5", "-w", "\n%{http_code}", ...argvOf(l)]);
    const [ok, denied, refused] = await Promise.all(lines.map(curl));
    assert.equal(ok!.code, 0, ok!.out);
    assert.match(ok!.out, /"status":"captured"[\s\S]*\n201$/);
    assert.match(denied!.out, /"error":"forbidden","caller":"inventory"[\s\S]*\n403$/);
    assert.notEqual(refused!.code, 0);

    // 24 s certificates renew at about 1/3 of their life (--renew-at): each service, and edge, on its own.
    const enrolled = Object.fromEntries(
      ["order", "payment", "inventory"].map((n) => [
        n,
        logEvents(join(logs, `${n}.log`)).find(ev("identity.enrolled"))!.serial,
      ]),
    );
    await waitFor(
      () =>
        ["order", "payment", "inventory"].every((n) => logEvents(join(logs, `${n}.log`)).some(ev("identity.renewed"))),
      40_000,
      "every service to renew",
    );
    await waitFor(() => /\[edge\] +\S+ identity\.renewed/.test(up.out()), 20_000, "edge to renew");
    for (const n of ["order", "payment", "inventory"]) {
      const renewed = logEvents(join(logs, `${n}.log`)).find(ev("identity.renewed"))!;
      assert.notEqual(renewed.serial, enrolled[n], `${n} renewed onto a new certificate`);
    }
    assert.doesNotMatch(up.out(), /identity\.renew_failed|identity\.expired/);
    // The same commands still work with the renewed files.
    const again = await curl(lines[0]!);
    assert.match(again.out, /"caller":"order","status":"captured","repeated":true\}\n200$/, again.out); // the same orderId: payment answers the first charge again
    const check = await run(process.execPath, [await compiledScript("mesh-check"), "--logs", logs]);
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /certificate is valid: serial [0-9a-f]+, valid until .*renews itself/);
    assert.match(
      check.out,
      new RegExp(`^✓ the CA server answers: ${state.ca.url.replace(/[.]/g, "\\.")}: cacerts 200`, "m"),
    );

    // A revoked identity cannot renew: mesh:check says so, and that restarting mesh:up (which
    // moves the folder aside and enrols afresh) is the fix, not the file mode's `ca issue`.
    const revoke = await run(process.execPath, [
      "bin/ca.mjs",
      "revoke",
      "--dir",
      join(tmp, "online-pki"),
      "--domain",
      "inventory.internal",
    ]);
    assert.equal(revoke.code, 0, revoke.out);
    const revoked = await run(process.execPath, [await compiledScript("mesh-check"), "--logs", logs]);
    assert.equal(revoked.code, 1, revoked.out);
    assert.match(
      revoked.out,
      /^× certificate is valid\n {4}inventory serves a revoked certificate .*the CA refuses to renew a revoked identity; stop mesh:up and start it again.*\n {4}fix: npm run mesh:up$/m,
    );
    // mesh:probe as the README shows it: every caller, the probe too, refuses inventory's certificate,
    // and every service refuses inventory, the CRLs in force within seconds by the services' long poll.
    await waitFor(
      () =>
        ["order", "payment"].every((n) =>
          logEvents(join(logs, `${n}.log`)).some(ev("trust.updated", (l) => (l as { via?: string }).via === "watch")),
        ),
      10_000,
      "order and payment to take the new CRLs",
    );
    const probed = await run(process.execPath, [await compiledScript("mesh-probe"), "--logs", logs]);
    assert.equal(probed.code, 1, probed.out);
    assert.match(probed.out, /^order +✓ 403 order\.accepts +✓ 200 +✗ refused: server_revoked/m, probed.out);
    assert.match(
      probed.out,
      /^inventory +✗ refused: revoked +✗ refused: revoked +✗ refused: server_revoked/m,
      probed.out,
    );

    const caPort = Number(new URL(state.ca.url).port);
    const dashPort = Number(new URL(state.dashboard).port);
    assert.equal(await portOpen(caPort), true);
    up.proc.kill("SIGTERM");
    assert.equal(await up.exited, 0);
    assert.match(up.out(), /mesh:up: all services, the CA server and the dashboard stopped/);
    for (const pid of Object.values(state.pids)) assert.equal(alive(pid), false, `service pid ${pid} still running`);
    assert.equal(await portOpen(caPort), false, "the CA server stopped too");
    assert.equal(await portOpen(dashPort), false, "and the dashboard");
    assert.equal(await portOpen(Number(new URL(state.ca.adminUrl).port)), false, "and the CA's admin listener");

    // Started again: the revoked identity's folder is moved aside (its key kept) and inventory enrols afresh.
    const restarted = await meshUp([...online, "--lifetime", "1h"]);
    await waitFor(() => /Ctrl-C stops everything/.test(restarted.out()), 60_000, "mesh:up to start again");
    const moved =
      /state\/inventory: its certificate \(serial ([0-9a-f]+)\) is revoked; moved it to (\S+) and inventory enrols again/.exec(
        restarted.out(),
      );
    assert.ok(moved, restarted.out());
    assert.equal(
      new X509Certificate(readFileSync(join(moved[2]!, "cert.pem"))).serialNumber.toLowerCase().replace(/^0+/, ""),
      moved[1],
      "the folder moved is the revoked certificate's",
    );
    assert.ok(existsSync(join(moved[2]!, "key.pem")), "the old key was moved, not deleted");
    assert.match(restarted.out(), /^token  inventory\.internal /m);
    const healed = await run(process.execPath, [await compiledScript("mesh-probe"), "--logs", logs]);
    assert.equal(healed.code, 0, healed.out);
    const state3 = JSON.parse(readFileSync(stateFile, "utf8")) as { pids: Record<string, number> };
    restarted.proc.kill("SIGTERM");
    assert.equal(await restarted.exited, 0);
    for (const pid of Object.values(state3.pids)) assert.equal(alive(pid), false);
  });

  test("--file-mode: mesh:up from nothing issues files with the CLI, probed, curled, stopped with SIGTERM; a second run reissues nothing", {
    timeout: 90_000,
  }, async () => {
    const up = await meshUp(["--file-mode", "--dashboard-port", "0"]);
    const stateFile = join(tmp, "logs", "mesh.json");
    await waitFor(
      () => existsSync(stateFile) && /Ctrl-C stops everything/.test(up.out()),
      30_000,
      "mesh:up to be ready",
    );
    const state = JSON.parse(readFileSync(stateFile, "utf8")) as {
      ports: Record<string, number>;
      pids: Record<string, number>;
    };
    assert.match(up.out(), /created the CA/);
    assert.equal((up.out().match(/^issued /gm) ?? []).length, 4);
    for (const s of ["order", "payment", "inventory"]) assert.ok(state.ports[s]! > 0);

    // What payment sends in the handshake: its leaf and the issuing intermediate, never the root.
    const shown = await run("sh", [
      "-c",
      `openssl s_client -connect 127.0.0.1:${state.ports.payment} -servername payment.internal -showcerts </dev/null`,
    ]);
    const sent = [...shown.out.matchAll(/^ *\d+ s:(.*)$/gm)].map((m) => m[1]!.trim());
    assert.deepEqual(sent, ["CN = payment.internal", "CN = Mesh Dev Issuing CA"], shown.out);
    const probe = await run(process.execPath, [await compiledScript("mesh-probe"), "--logs", join(tmp, "logs")]);
    assert.equal(probe.code, 0, probe.out);
    assert.match(probe.out, /the mesh does what the policy says/);
    assert.match(probe.out, /refused: unknown_ca/);

    // A policy the mesh is not running: the probe reports the difference and exits 1.
    const other = join(tmp, "other-policy.toml");
    writeFileSync(
      other,
      `[payment]\naccepts = ["order", "inventory"]\n[inventory]\naccepts = ["order"]\n[order]\naccepts = []\n`,
    );
    const diff = await run(process.execPath, [
      "--import",
      "tsx",
      "scripts/mesh-probe.ts",
      "--logs",
      join(tmp, "logs"),
      "--policy",
      other,
    ]);
    assert.equal(diff.code, 1, diff.out);
    assert.match(diff.out, /mismatch: inventory -> payment: the policy says 200, the mesh did 403 payment\.accepts/);

    // The three commands the banner prints, run for real.
    const lines = up
      .out()
      .split("\n")
      .filter((l) => l.trim().startsWith("curl "));
    assert.equal(lines.length, 3);
    for (const l of lines) assert.doesNotMatch(l, / -k\b|--insecure/);
    const argv = (l: string) =>
      l
        .trim()
        .slice(5)
        .match(/'[^']*'|\S+/g)!
        .map((a) =>
          a
            .replace(/^'|'$/g, "")
            .replace(/^pki\//, "")
            .replace(/ pki\//g, ""),
        );
    const fix = (a: string[]) => a.map((x) => (/^(bundle\.pem|certs\/)/.test(x) ? join(tmp, "pki", x) : x));
    const [ok, denied, refused] = await Promise.all(
      lines.map((l) => run("curl", ["-sS", "--max-time", "5", "-w", "\n%{http_code}", ...fix(argv(l))])),
    );
    assert.equal(ok!.code, 0, ok!.out);
    assert.match(ok!.out, /"status":"captured"[\s\S]*\n201$/);
    assert.match(denied!.out, /"error":"forbidden","caller":"inventory"[\s\S]*\n403$/);
    assert.notEqual(refused!.code, 0);
    const payLog = readFileSync(join(tmp, "logs", "payment.log"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string; reason?: string });
    assert.ok(payLog.some(ev("tls.handshake_failed", (l) => l.reason === "no_client_cert")));
    assert.ok(payLog.some(ev("authz.denied")));

    up.proc.kill("SIGTERM");
    assert.equal(await up.exited, 0);
    for (const pid of Object.values(state.pids)) assert.equal(alive(pid), false, `service pid ${pid} still running`);

    const again = await meshUp(["--file-mode", "--dashboard-port", "0"]);
    await waitFor(() => /Ctrl-C stops everything/.test(again.out()), 30_000, "second mesh:up");
    assert.equal((again.out().match(/^kept /gm) ?? []).length, 4, again.out());
    assert.doesNotMatch(again.out(), /^(issued|renewed) /m);
    const state2 = JSON.parse(readFileSync(stateFile, "utf8")) as { pids: Record<string, number> };
    again.proc.kill("SIGINT");
    assert.equal(await again.exited, 0);
    for (const pid of Object.values(state2.pids)) assert.equal(alive(pid), false);
  });

  test("mesh:up refuses a broken policy with file:line, no stack trace, exit 2", async () => {
    const bad = join(tmp, "bad.toml");
    writeFileSync(bad, `[payment]\naccepts = ["order"]\nacepts = []\n`);
    const r = await run(process.execPath, [
      "--import",
      "tsx",
      "scripts/mesh-up.ts",
      "--pki",
      join(tmp, "pki2"),
      "--policy",
      bad,
    ]);
    assert.equal(r.code, 2);
    assert.match(r.out, /^mesh:up: .*bad\.toml:3: unknown key "acepts" in \[payment\]/);
    assert.equal(r.out.trim().split("\n").length, 1);
    assert.equal(existsSync(join(tmp, "pki2")), false, "nothing was created");
  });
});

// Killed outright, mesh:up now leaves its parts serving on purpose: test/mesh-up-supervise.test.ts.
