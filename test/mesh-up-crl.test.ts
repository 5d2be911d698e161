// CRLs do not lapse under a running mesh (the CA's refreshCrls, and mesh:up calling it), and
// mesh:up names the signal that killed one of its services instead of "code null", and restarts it.
// In --file-mode: there mesh:up holds the CA; online, the CA server re-signs its CRLs (ca-est-crl-refresh.test.ts).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CertificateAuthority } from "../ca/index.ts";
import { eventsIn } from "./helpers/events.ts";
import { compiledScript } from "./helpers/compiled.ts";

// mesh:up compiled once for this file (helpers/compiled.ts): under tsx its module graph cost each
// start ~0.4 s of CPU more. mesh-up.test.ts starts it as npm does, under tsx.
const MESH_UP = await compiledScript("mesh-up");

const ROOT = join(import.meta.dirname, "..");
const DAY = 86_400_000;
let tmp: string;

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "mesh-up-crl-"));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** nextUpdate of the first CRL in a PEM file, as openssl reads it. */
function nextUpdate(file: string): Date {
  const r = spawnSync("openssl", ["crl", "-in", file, "-noout", "-nextupdate"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return new Date(r.stdout.trim().replace(/^nextUpdate=/, ""));
}

test("refreshCrls re-signs a CRL near its nextUpdate, under an injected clock, and leaves fresh ones alone", async () => {
  const dir = join(tmp, "lib");
  const t0 = new Date();
  const ca0 = await CertificateAuthority.init({ dir, name: "Refresh CA", now: () => t0 });
  const crlsBefore = readFileSync(ca0.paths.crls, "utf8");
  ca0.close();
  assert.ok(Math.abs(nextUpdate(join(dir, "crls.pem")).getTime() - (t0.getTime() + 30 * DAY)) < 2_000);

  // 19 days on: 11 days left, more than the default third of 30 days: nothing to do.
  const early = await CertificateAuthority.open({ dir, now: () => new Date(t0.getTime() + 19 * DAY) });
  assert.deepEqual(await early.refreshCrls(), []);
  early.close();
  assert.equal(readFileSync(join(dir, "crls.pem"), "utf8"), crlsBefore, "a fresh CRL is not re-signed");

  // 25 days on: 5 days left: re-signed, valid 30 days from the (injected) now, and crls.pem rewritten.
  const late = new Date(t0.getTime() + 25 * DAY);
  const ca = await CertificateAuthority.open({ dir, now: () => late });
  const resigned = await ca.refreshCrls();
  assert.deepEqual(
    resigned.map((r) => r.id),
    ["root-1"],
  );
  assert.equal(
    resigned[0]!.crlNextUpdate!.slice(0, 16),
    new Date(late.getTime() + 30 * DAY).toISOString().slice(0, 16),
  );
  assert.notEqual(readFileSync(join(dir, "crls.pem"), "utf8"), crlsBefore);
  assert.ok(Math.abs(nextUpdate(join(dir, "crls.pem")).getTime() - (late.getTime() + 30 * DAY)) < 2_000);
  // Checked again at once: nothing is due any more. A wider window takes it again.
  assert.deepEqual(await ca.refreshCrls(), []);
  assert.deepEqual(
    (await ca.refreshCrls({ renewWithinMs: 31 * DAY })).map((r) => r.id),
    ["root-1"],
  );
  ca.close();
});

interface Up {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function meshUp(name: string, extra: string[] = [], env: Record<string, string> = {}): Up {
  const proc = spawn(
    process.execPath,
    [
      MESH_UP,
      "--pki",
      join(tmp, name, "pki"),
      "--logs",
      join(tmp, name, "logs"),
      "--order-port",
      "0",
      "--payment-port",
      "0",
      "--inventory-port",
      "0",
      "--quiet",
      "--file-mode",
      // The shipped workloads (mesh-workloads.toml beside the default policy) on any free ports:
      // the two tests below run side by side, and other files start them on their own ports.
      "--workload-ports",
      "any",
      "--dashboard-port",
      "0",
      ...extra,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1", ...env } },
  );
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c));
  proc.stderr!.on("data", (c: Buffer) => (out += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.on("exit", (code, signal) => r({ code, signal })),
  );
  return { proc, out: () => out, exited };
}

async function waitFor(cond: () => boolean, ms: number, what: string, out?: () => string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}${out ? `\n${out()}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// The two side by side, each in its own folders with its own mesh:up: the kill and restart take
// their turn while the first waits for the CRL checks.
describe("mesh:up in file mode, running", { concurrency: true }, () => {
  test("mesh:up re-signs a CRL that nears its nextUpdate while it runs, and the services load it", {
    timeout: 60_000,
  }, async () => {
    // The check interval through its environment variable, as a deployment would set it.
    const up = meshUp("resign", [], { MESH_CRL_CHECK_SECONDS: "1" });
    const pki = join(tmp, "resign", "pki");
    try {
      await waitFor(() => /Ctrl-C stops everything/.test(up.out()), 30_000, "mesh:up to be ready", up.out);
      // Age the CRL as 25 days of running would: signed by the CA 25 days ago, 5 days left.
      const past = await CertificateAuthority.open({ dir: pki, now: () => new Date(Date.now() - 25 * DAY) });
      await past.publishCrls();
      past.close();
      const aged = nextUpdate(join(pki, "crls.pem")).getTime();
      assert.ok(aged < Date.now() + 6 * DAY, "the CRL was aged");

      await waitFor(
        () => /re-signed the CRL of Mesh Dev CA/.test(up.out()),
        10_000,
        "mesh:up to re-sign the CRL",
        up.out,
      );
      assert.match(
        up.out(),
        /mesh:up: re-signed the CRL of Mesh Dev CA before it lapsed \(next update \d{4}-\d\d-\d\d \d\d:\d\d UTC\); the services reload crls\.pem/,
      );
      const renewed = nextUpdate(join(pki, "crls.pem")).getTime();
      assert.ok(
        renewed > Date.now() + 29 * DAY,
        `nextUpdate is 30 days out again (${new Date(renewed).toISOString()})`,
      );
      // Once only: the next checks find nothing due. Two checks after the last one that re-signed,
      // each logged as crl.checked in mesh-up.log with nothing re-signed (not a guessed sleep).
      const upLog = join(tmp, "resign", "logs", "mesh-up.log");
      const checks = () => (existsSync(upLog) ? eventsIn(readFileSync(upLog, "utf8"), "crl.checked") : []);
      const afterLastResign = () => {
        const all = checks();
        return all.slice(all.findLastIndex((l) => l.resigned.length > 0) + 1);
      };
      await waitFor(
        () => checks().some((l) => l.resigned.length > 0) && afterLastResign().length >= 2,
        15_000,
        "two more CRL checks after the re-signing",
        () =>
          `${up.out()}\n${checks()
            .map((l) => JSON.stringify(l))
            .join("\n")}`,
      );
      assert.deepEqual(
        checks()
          .flatMap((l) => l.resigned)
          .sort(),
        ["Mesh Dev CA", "Mesh Dev Issuing CA"],
        "the checks' lines name each re-signed CA once",
      );
      // mesh:up's CA is a root and its issuing intermediate: each CRL re-signed once.
      assert.equal((up.out().match(/re-signed the CRL of Mesh Dev CA /g) ?? []).length, 1, up.out());
      assert.equal((up.out().match(/re-signed the CRL of Mesh Dev Issuing CA /g) ?? []).length, 1, up.out());
      assert.equal((up.out().match(/re-signed the CRL/g) ?? []).length, 2, up.out());
      const payLog = join(tmp, "resign", "logs", "payment.log");
      await waitFor(
        () => eventsIn(readFileSync(payLog, "utf8"), "tls.reloaded").length >= 2,
        5_000,
        "payment to reload both CRL changes",
      );
    } finally {
      up.proc.kill("SIGTERM");
      await up.exited;
    }
  });

  test("--file-mode: mesh:up names the signal that killed a service and restarts it; the others keep running", {
    timeout: 60_000,
  }, async () => {
    const up = meshUp("killed");
    const stateFile = join(tmp, "killed", "logs", "mesh.json");
    await waitFor(
      () => existsSync(stateFile) && /Ctrl-C stops everything/.test(up.out()),
      30_000,
      "mesh:up to be ready",
      up.out,
    );
    const { pids } = JSON.parse(readFileSync(stateFile, "utf8")) as { pids: Record<string, number> };
    process.kill(pids.payment!, "SIGKILL");
    await waitFor(
      () => /mesh:up: started payment again \(pid \d+, restart 1\)/.test(up.out()),
      30_000,
      "payment to be restarted",
      up.out,
    );
    assert.match(
      up.out(),
      new RegExp(
        `^mesh:up: payment was killed by SIGKILL \\(pid ${pids.payment}\\); the rest of the mesh keeps running$`,
        "m",
      ),
    );
    assert.doesNotMatch(up.out(), /code null/);
    assert.ok(alive(pids.order!) && alive(pids.inventory!), "the others were not stopped");
    await waitFor(
      () =>
        (JSON.parse(readFileSync(stateFile, "utf8")) as { pids: Record<string, number> }).pids.payment !== pids.payment,
      10_000,
      "mesh.json to name the new payment",
      up.out,
    );
    const now = (JSON.parse(readFileSync(stateFile, "utf8")) as { pids: Record<string, number> }).pids;
    assert.ok(alive(now.payment!));
    up.proc.kill("SIGTERM");
    assert.equal((await up.exited).code, 0, up.out());
    for (const pid of [...Object.values(pids), ...Object.values(now)])
      assert.equal(alive(pid), false, `pid ${pid} still running`);
  });
});
