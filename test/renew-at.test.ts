// --renew-at / MESH_RENEW_AT: the fraction of a certificate's life at which a service, a sidecar
// and mesh:up's edge renew (default 2/3). The tests of mesh:up renew their short certificates at
// 1/3 with it: a renewal comes twice as soon, with two thirds of the life left to retry it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_SCHEDULE, renewAt, renewFraction } from "../services/mesh/identity-agent/timing.ts";
import { identityOptions } from "../services/mesh/identity-agent/cli.ts";
import { compiledScript } from "./helpers/compiled.ts";

const ROOT = join(import.meta.dirname, "..");
const TOKEN = `mt1.${"a".repeat(43)}.${"b".repeat(43)}`;

test("renewFraction: a decimal from 0.1 to 0.9, nothing else", () => {
  for (const [text, n] of [
    ["0.33", 0.33],
    [".5", 0.5],
    ["0.1", 0.1],
    ["0.9", 0.9],
  ] as const)
    assert.equal(renewFraction(text), n, text);
  for (const text of ["0", "1", "0.05", "0.95", "1/3", "0.3s", "", " 0.5", "0x1", "5e-1", "-0.5", "0.5.1", "NaN"])
    assert.equal(renewFraction(text), undefined, JSON.stringify(text));
});

test("identityOptions: --renew-at becomes the schedule's fraction, the jitter kept; absent, the default schedule", () => {
  const o = { service: "payment", ca: "https://127.0.0.1:7400" };
  const given = identityOptions({ ...o, renewAt: "0.33" }, { MESH_ENROL_TOKEN: TOKEN });
  assert.deepEqual(given.schedule, { fraction: 0.33, jitter: DEFAULT_SCHEDULE.jitter });
  // What that schedule means: a 15 s certificate renewed 4.5-5.4 s after it came, not 9-11 s.
  const now = 1_800_000_000_000;
  const cert = { notBefore: now - 300_000, notAfter: now + 15_000, receivedAt: now };
  assert.equal(
    renewAt(cert, given.schedule!, () => 0.5, now),
    now + 4_950,
  );
  assert.equal(identityOptions(o, { MESH_ENROL_TOKEN: TOKEN }).schedule, undefined);
  assert.throws(
    () => identityOptions({ ...o, renewAt: "2/3" }, { MESH_ENROL_TOKEN: TOKEN }),
    /--renew-at "2\/3" must be a fraction of the certificate's life from 0\.1 to 0\.9, e\.g\. 0\.5/,
  );
});

test("a service and a sidecar refuse a bad --renew-at or MESH_RENEW_AT: one line, exit 2, nothing written", () => {
  const dir = mkdtempSync(join(tmpdir(), "renew-at-"));
  try {
    const state = join(dir, "state");
    const cases: Array<{ bin: string; args: string[]; env: Record<string, string>; shown: string }> = [
      { bin: "mesh-service.mjs", args: ["--service", "payment", "--renew-at", "0.95"], env: {}, shown: '"0.95"' },
      { bin: "mesh-service.mjs", args: ["--service", "payment"], env: { MESH_RENEW_AT: "1/3" }, shown: '"1/3"' },
      {
        bin: "mesh-sidecar.mjs",
        args: ["--service", "shipping", "--app", "127.0.0.1:9", "--renew-at", "soon"],
        env: {},
        shown: '"soon"',
      },
    ];
    for (const c of cases) {
      const r = spawnSync(
        process.execPath,
        [join(ROOT, "bin", c.bin), ...c.args, "--port", "0", "--ca", "https://127.0.0.1:9", "--state", state],
        { cwd: dir, encoding: "utf8", env: { ...process.env, MESH_ENROL_TOKEN: TOKEN, ...c.env }, timeout: 60_000 },
      );
      const what = `${c.bin} ${c.args.join(" ")} ${JSON.stringify(c.env)}: ${r.stdout}${r.stderr}`;
      assert.equal(r.status, 2, what);
      assert.equal(r.stdout, "", what);
      assert.match(
        r.stderr,
        new RegExp(`^\\S+: (cannot start: )?--renew-at ${c.shown} must be a fraction .* from 0\\.1 to 0\\.9`),
        what,
      );
      assert.equal(r.stderr.trim().split("\n").length, 1, what);
      assert.equal(existsSync(state), false, what);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("mesh:up refuses a bad --renew-at or MESH_RENEW_AT before anything starts: one line, exit 2", async () => {
  const dir = mkdtempSync(join(tmpdir(), "renew-at-up-"));
  try {
    const meshUp = await compiledScript("mesh-up");
    for (const [args, env] of [
      [["--renew-at", "0.99"], {}],
      [[], { MESH_RENEW_AT: "half" }],
    ] as const) {
      const r = spawnSync(
        process.execPath,
        [meshUp, "--pki", join(dir, "pki"), "--logs", join(dir, "logs"), "--state", join(dir, "state"), ...args],
        { cwd: ROOT, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", ...env }, timeout: 60_000 },
      );
      const what = `${args.join(" ")} ${JSON.stringify(env)}: ${r.stdout}${r.stderr}`;
      assert.equal(r.status, 2, what);
      assert.match(r.stderr, /--renew-at.*It must be a fraction from 0\.1 to 0\.9, e\.g\. 0\.5\./, what);
      assert.equal(`${r.stdout}${r.stderr}`.trim().split("\n").length, 1, what);
      assert.equal(existsSync(join(dir, "pki")), false, what);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
