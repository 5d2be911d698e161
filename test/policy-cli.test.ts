// npm run policy as a user runs it: what-if on hand-written log lines (the window, summaries,
// hostile lines) and its exit codes, policy tests good and bad with file:line, explain for an
// allowed call, one denied by accepts and one denied by a route, help and bad input, a closed
// pipe; and mesh:up refusing to start on a failing policy test.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { SHIPPED_POLICY_FILE } from "./mesh-fixtures.ts";
import { compiledScript } from "./helpers/compiled.ts";

const ROOT = join(import.meta.dirname, "..");
const SCRIPT = join(ROOT, "scripts", "policy", "main.ts");
const TSX = import.meta.resolve("tsx");
// The policy CLI compiled once for this file (helpers/compiled.ts): it runs some twenty times, and
// under tsx each run cost ~0.4 s of CPU more. The closed-pipe test runs it under tsx, as npm does.
const COMPILED = await compiledScript("policy/main");

function policy(args: string[], cwd = ROOT) {
  const r = spawnSync(process.execPath, [COMPILED, ...args], {
    cwd,
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, MESH_POLICY: "", MESH_LOG_DIR: "" },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const CURRENT = `[payment]
accepts = ["order", "inventory"]

[inventory]
accepts = ["order"]

[order]
accepts = ["edge"]
`;

// Tightened: inventory may no longer charge; only order may POST /charge, by a route rule.
const CANDIDATE = `[payment]
accepts = ["order"]

[[payment.routes]]
method = "GET"
path = "/healthz"
accepts = ["order", "inventory", "edge"]

[[payment.routes]]
method = "POST"
path = "/charge"
accepts = ["order"]

[inventory]
accepts = ["order"]

[order]
accepts = ["edge"]
`;

let dir: string;
const at = (f: string) => join(dir, f);
const iso = (agoMs: number) => new Date(Date.now() - agoMs).toISOString();

before(() => {
  dir = mkdtempSync(join(tmpdir(), "policy-cli-"));
  writeFileSync(at("current.toml"), CURRENT);
  writeFileSync(at("candidate.toml"), CANDIDATE);
  mkdirSync(at("logs"));
  const lines = [
    {
      level: 30,
      time: iso(60_000),
      service: "payment",
      event: "request",
      peer: "inventory",
      method: "POST",
      path: "/charge",
      status: 201,
      rule: "payment.accepts",
      ms: 1,
      msg: "request",
    },
    {
      level: 30,
      time: iso(50_000),
      service: "payment",
      event: "request.summary",
      peer: "inventory",
      method: "POST",
      route: "/charge",
      status: 201,
      rule: "payment.accepts",
      count: 36,
      msg: "36 more",
    },
    {
      level: 30,
      time: iso(40_000),
      service: "payment",
      event: "request",
      peer: "order",
      method: "POST",
      path: "/charge",
      status: 201,
      rule: "payment.accepts",
      ms: 1,
      msg: "request",
    },
    {
      level: 40,
      time: iso(30_000),
      service: "order",
      event: "authz.denied",
      peer: "payment",
      method: "GET",
      path: "/orders/1",
      rule: "order.accepts",
      msg: "denied",
    },
    // Older than --since 15m: not replayed.
    {
      level: 30,
      time: iso(3_600_000),
      service: "payment",
      event: "request",
      peer: "inventory",
      method: "DELETE",
      path: "/charge/9",
      status: 404,
      rule: "payment.accepts",
      ms: 1,
      msg: "request",
    },
    // Hostile or foreign lines: skipped, never a crash.
    {
      level: 30,
      time: iso(1_000),
      service: "payment",
      event: "request",
      peer: "Evil\u001b[31m",
      method: "POST",
      path: "/x",
      status: 200,
    },
    {
      level: 30,
      time: iso(1_000),
      service: "shop",
      event: "request",
      peer: "order",
      method: "POST",
      path: "/x",
      status: 200,
    },
    {
      level: 30,
      time: iso(1_000),
      service: "payment",
      event: "request",
      peer: "order",
      method: "BREW",
      path: "/x",
      status: 200,
    },
    { level: 30, time: iso(1_000), service: "payment", event: "listening", port: 1 },
  ];
  writeFileSync(
    at("logs/payment.log"),
    `${lines.map((l) => JSON.stringify(l)).join("\n")}\nnot json at all\n{"event":\n`,
  );
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe("what-if", () => {
  it("prints the decisions that would change, with counts, and exits 1 when a succeeding call would be denied", () => {
    const r = policy(["what-if", at("candidate.toml"), "--policy", at("current.toml"), "--logs", at("logs")]);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.equal(r.stderr, "");
    const lines = r.stdout.trim().split("\n");
    assert.match(
      lines[0]!,
      /candidate\.toml against .*current\.toml: \d+ calls \(4 log lines since .* UTC, and mesh:probe's pairs\), 2 decisions would change/,
    );
    assert.equal(
      lines[1],
      `allowed → denied: inventory → payment POST /charge, rule payment.routes[1] (${at("candidate.toml")}:9), seen 37 times`,
    );
    // edge → payment GET /healthz: denied today, allowed by the candidate's first route (a mesh:probe pair).
    assert.equal(
      lines[2],
      `denied → allowed: edge → payment GET /healthz, rule payment.routes[0] (${at("candidate.toml")}:4), a mesh:probe pair`,
    );
    assert.equal(lines[3], "1 call that goes through today would be denied");
    assert.equal(lines[4], "1 call denied today would go through");
    assert.equal(lines.length, 5);
  });

  it("--json: the same result, machine-readable; a wider --since takes the old line too", () => {
    const r = policy([
      "what-if",
      at("candidate.toml"),
      "--policy",
      at("current.toml"),
      "--logs",
      at("logs"),
      "--since",
      "2h",
      "--json",
    ]);
    assert.equal(r.code, 1, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.logLines, 5);
    assert.equal(j.breaking, 2);
    const del = j.changes.find((c: { method: string }) => c.method === "DELETE");
    assert.deepEqual(
      [del.caller, del.service, del.path, del.from, del.to, del.seen, del.rule],
      ["inventory", "payment", "/charge/9", "allow", "deny", 1, "payment.accepts"],
    );
  });

  it("exits 0 when no call that goes through today would be denied (the same policy, or one that only allows more)", () => {
    const same = policy(["what-if", at("current.toml"), "--policy", at("current.toml"), "--logs", at("logs")]);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /0 decisions would change/);
    writeFileSync(at("wider.toml"), CURRENT.replace(`accepts = ["edge"]`, `accepts = ["edge", "payment"]`));
    const wider = policy(["what-if", at("wider.toml"), "--policy", at("current.toml"), "--logs", at("logs")]);
    assert.equal(wider.code, 0, wider.stderr);
    assert.match(
      wider.stdout,
      /^denied → allowed: payment → order GET \/orders\/1, rule order.accepts .*, seen 1 time$/m,
    );
  });

  it("exits 2 on bad input, in one line: an invalid candidate (file:line), a bad --since, a missing --logs folder", () => {
    writeFileSync(at("bad.toml"), `[payment]\naccepts = ["order"]\nmode = "sometimes"\n`);
    const bad = policy(["what-if", at("bad.toml"), "--policy", at("current.toml"), "--logs", at("logs")]);
    assert.deepEqual([bad.code, bad.stdout], [2, ""]);
    assert.equal(
      bad.stderr,
      `policy: ${at("bad.toml")}:3: payment.mode must be "enforce" or "audit" (got "sometimes")\n`,
    );
    const since = policy([
      "what-if",
      at("candidate.toml"),
      "--policy",
      at("current.toml"),
      "--logs",
      at("logs"),
      "--since",
      "soon",
    ]);
    assert.equal(since.code, 2);
    assert.match(since.stderr, /^policy: --since "soon" is not a duration: write e\.g\. 30s, 15m, 2h or 1d\n$/);
    const logs = policy(["what-if", at("candidate.toml"), "--policy", at("current.toml"), "--logs", at("nowhere")]);
    assert.equal(logs.code, 2);
    assert.match(logs.stderr, /^policy: no log folder .*nowhere/);
    const missing = policy(["what-if", at("none.toml"), "--policy", at("current.toml"), "--logs", at("logs")]);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr.split("\n").length, 2);
  });
});

describe("test", () => {
  it("passes on the shipped mesh-policy.toml and its mesh-policy.tests.toml (their copies in test/fixtures)", () => {
    const r = policy(["test", "--policy", SHIPPED_POLICY_FILE]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /^5 passed, 0 failed \(.*fixtures\/mesh-policy\.tests\.toml against .*fixtures\/mesh-policy\.toml\)$/m,
    );
  });

  // As test/policy-fixture.test.ts does for the policy: the copy is the file git ships (the
  // working copy is the user's to edit and is not compared).
  const shipped = spawnSync("git", ["-C", ROOT, "show", ":mesh-policy.tests.toml"], { encoding: "utf8" });
  it("the tests fixture is the mesh-policy.tests.toml the repository ships", {
    skip: shipped.error || shipped.status !== 0 ? "no git checkout here" : false,
  }, () => {
    assert.equal(
      readFileSync(join(ROOT, "test", "fixtures", "mesh-policy.tests.toml"), "utf8"),
      shipped.stdout,
      "copy it over: git show :mesh-policy.tests.toml > test/fixtures/mesh-policy.tests.toml",
    );
  });

  it("a failing expectation: exit 1, the test's file:line and the rule that decided", () => {
    writeFileSync(
      at("current.tests.toml"),
      `[[test]]\ncaller = "order"\nservice = "payment"\nmethod = "POST"\npath = "/charge"\nexpect = "allow"\n\n[[test]]\ncaller = "inventory"\nservice = "payment"\nmethod = "POST"\npath = "/charge"\nexpect = "deny"\n`,
    );
    const r = policy(["test", "--policy", at("current.toml")]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(
        `^ok   ${at("current.tests.toml")}:1: order → payment POST /charge is allowed by payment.accepts`,
        "m",
      ),
    );
    assert.match(
      r.stdout,
      new RegExp(
        `^FAIL ${at("current.tests.toml")}:8: expected inventory → payment POST /charge to be denied, but it is allowed by payment.accepts \\(${at("current.toml")}:2\\)`,
        "m",
      ),
    );
    assert.match(r.stdout, /^1 passed, 1 failed/m);
    // Against the candidate, both hold.
    const c = policy(["test", "--policy", at("candidate.toml"), "--tests", at("current.tests.toml"), "--json"]);
    assert.equal(c.code, 0, c.stdout);
    assert.deepEqual(
      JSON.parse(c.stdout).results.map((x: { ok: boolean; rule: string }) => [x.ok, x.rule]),
      [
        [true, "payment.routes[1] (POST /charge)"],
        [true, "payment.routes[1] (POST /charge)"],
      ],
    );
  });

  it("a bad tests file: exit 2, one line with file:line", () => {
    const cases: Array<[string, RegExp]> = [
      [
        `[[test]]\ncaller = "order"\nservice = "payment"\nexpect = "maybe"\n`,
        /:4: expect must be "allow", "deny", "would_deny" \(got "maybe"\)$/,
      ],
      [
        `[[test]]\ncaller = "order"\nservice = "payment"\nexpect = "allow"\n\n[[test]]\ncaller = "order"\nsevrice = "payment"\nexpect = "allow"\n`,
        /:8: unknown key "sevrice" in \[\[test\]\]/,
      ],
      [`[[test]]\ncaller = "order"\nservice = "shop"\nexpect = "allow"\n`, /:3: unknown service "shop"/],
      [`[[test]]\ncaller = "order"\nexpect = "allow"\n`, /:1: \[\[test\]\] is missing "service"/],
      [`[[test]]\ncaller = "order\n`, /:2:\d+: invalid TOML/],
      [`# nothing\n`, /no \[\[test\]\] tables/],
    ];
    for (const [text, want] of cases) {
      writeFileSync(at("bad.tests.toml"), text);
      const r = policy(["test", "--policy", at("current.toml"), "--tests", at("bad.tests.toml")]);
      assert.equal(r.code, 2, text);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr.split("\n").length, 2, r.stderr);
      assert.ok(r.stderr.startsWith(`policy: ${at("bad.tests.toml")}:`), r.stderr);
      assert.match(r.stderr.trimEnd(), want);
    }
  });
});

describe("explain", () => {
  it("an allowed call: the rule, its file:line, why, and the edit that would deny it", () => {
    const r = policy(["explain", "order", "payment", "POST", "/charge", "--policy", at("candidate.toml")]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        "order → payment POST /charge: allowed",
        `  rule:   payment.routes[1] (POST /charge) (${at("candidate.toml")}:9)`,
        "  why:    order is listed in payment.routes[1] (POST /charge)",
        `  change: remove "order" from payment.routes[1].accepts (${at("candidate.toml")}:9)`,
        "",
      ].join("\n"),
    );
  });

  it("denied by a service's accepts: the edit is to add the caller there", () => {
    const r = policy([
      "explain",
      "inventory",
      "payment",
      "post",
      "/refund",
      "--policy",
      at("candidate.toml"),
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(
      [j.decision, j.rule, j.where, j.reason, j.edit],
      [
        "deny",
        "payment.accepts",
        `${at("candidate.toml")}:2`,
        "inventory is not listed in payment.accepts",
        `add "inventory" to payment.accepts (${at("candidate.toml")}:2)`,
      ],
    );
  });

  it("denied by a route rule: the edit names the route's line", () => {
    const r = policy(["explain", "inventory", "payment", "POST", "/charge", "--policy", at("candidate.toml")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^inventory → payment POST \/charge: denied$/m);
    assert.ok(
      r.stdout.includes(`  change: add "inventory" to payment.routes[1].accepts (${at("candidate.toml")}:9)\n`),
      r.stdout,
    );
  });

  it("bad input is one line and exit 2", () => {
    for (const args of [
      ["explain", "order", "shop"],
      ["explain", "Order", "payment"],
      ["explain", "order", "payment", "BREW"],
      ["explain", "order", "payment", "GET", "no-slash"],
      ["explain", "order"],
      ["frobnicate"],
    ]) {
      const r = policy([...args, "--policy", at("candidate.toml")]);
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    }
  });
});

it("every command's --help shows examples and exit codes", () => {
  for (const cmd of [[], ["what-if"], ["test"], ["explain"]]) {
    const r = policy([...cmd, "--help"]);
    assert.equal(r.code, 0, cmd.join(" "));
    assert.match(r.stdout, /Examples:\n {2}npm run policy -- /);
    assert.match(r.stdout, /Exit codes: 0 /);
  }
});

it("ends quietly, with its exit code, when its reader goes away", async () => {
  // Enough output (3000 test lines, one failing) that writing it meets the closed pipe.
  const one = (expect: string) => `[[test]]\ncaller = "order"\nservice = "payment"\nexpect = "${expect}"\n\n`;
  writeFileSync(at("many.tests.toml"), one("deny") + one("allow").repeat(3000));
  const child = spawn(
    process.execPath,
    ["--import", TSX, SCRIPT, "test", "--policy", at("current.toml"), "--tests", at("many.tests.toml")],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  // Read the first chunk, then close: the reader went away (as `| head -1` does).
  await new Promise<void>((resolve) => child.stdout.once("data", () => (child.stdout.destroy(), resolve())));
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  assert.equal(stderr, "");
  assert.equal(code, 1); // a test failed: the closed pipe does not change that
});

it("mesh:up refuses to start on a failing policy test: exit 2, one line, nothing created", () => {
  const run = join(dir, "up");
  mkdirSync(run);
  writeFileSync(join(run, "p.toml"), CURRENT);
  writeFileSync(
    join(run, "p.tests.toml"),
    `[[test]]\ncaller = "order"\nservice = "payment"\nexpect = "allow"\n\n[[test]]\ncaller = "edge"\nservice = "payment"\nmethod = "POST"\npath = "/charge"\nexpect = "allow"\n`,
  );
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      TSX,
      join(ROOT, "scripts", "mesh-up.ts"),
      "--policy",
      join(run, "p.toml"),
      "--pki",
      join(run, "pki"),
      "--logs",
      join(run, "logs"),
      "--state",
      join(run, "state"),
    ],
    { cwd: ROOT, encoding: "utf8", timeout: 60_000, env: { ...process.env, MESH_POLICY: "" } },
  );
  assert.equal(r.status, 2, r.stdout + r.stderr);
  assert.equal(
    r.stderr,
    `mesh:up: policy test failed: ${join(run, "p.tests.toml")}:6: expected edge → payment POST /charge to be allowed, but it is denied by payment.accepts (${join(run, "p.toml")}:2): edge is not listed in payment.accepts\n`,
  );
  for (const d of ["pki", "logs", "state"]) assert.equal(existsSync(join(run, d)), false, d);
  // Fixed, the check passes: mesh:up goes past it (here stopped at once by a bad flag after it).
  writeFileSync(join(run, "p.tests.toml"), `[[test]]\ncaller = "order"\nservice = "payment"\nexpect = "allow"\n`);
  assert.equal(policy(["test", "--policy", join(run, "p.toml")]).code, 0);
});
