// The peers file (services/mesh/peers.ts): where a service finds the services it calls when
// they run on other machines. Parsed strictly, with file:line in every error, and started
// with by the real service (--peers), whose listening line shows the map it uses.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parsePeers } from "../services/mesh/peers.ts";

test("a peers file maps <name>.internal to host:port; comments and blank lines are ignored", () => {
  const text =
    "# callees\npayment.internal 10.0.0.3:7402\n\n  inventory.internal\tinventory.prod.example:7403  # by DNS name\nedge.internal [fd00::2]:7401\n";
  assert.deepEqual(parsePeers(text, "peers"), {
    payment: "10.0.0.3:7402",
    inventory: "inventory.prod.example:7403",
    edge: "[fd00::2]:7401",
  });
});

test("bad lines are refused with file:line and what to write instead", () => {
  const cases: Array<[string, RegExp]> = [
    ["payment 10.0.0.3:7402", /^p:1: "payment" is not a mesh name such as payment\.internal$/],
    ["payment.internal 10.0.0.3", /^p:1: "10\.0\.0\.3" is not <host>:<port>/],
    ["\npayment.internal 10.0.0.3:70000", /^p:2: port 70000 is not 1-65535$/],
    ["payment.internal [10.0.0.3]:7402", /^p:1: "\[10\.0\.0\.3\]:7402" is not <host>:<port>/],
    ["payment.internal bad_host!:7402", /is not <host>:<port>/],
    ["payment.internal 10.0.0.3:7402 extra", /^p:1: expected "<name>\.internal <host>:<port>"/],
    ["payment.internal 10.0.0.3:7402\npayment.internal 10.0.0.4:7402", /^p:2: payment\.internal is listed twice$/],
  ];
  for (const [text, re] of cases)
    assert.throws(
      () => parsePeers(text, "p"),
      (e: Error) => re.test(e.message),
      text,
    );
});

test("mesh-service --peers with an unreadable or bad file: one line, exit 2", () => {
  const dir = mkdtempSync(join(tmpdir(), "mesh-peers-"));
  try {
    const bad = join(dir, "peers");
    writeFileSync(bad, "payment.internal nowhere\n");
    for (const [file, re] of [
      [bad, /peers:1: "nowhere" is not <host>:<port>/],
      [join(dir, "missing"), /cannot read --peers .*missing \(ENOENT\)/],
    ] as const) {
      const r = spawnSync(
        process.execPath,
        [join(import.meta.dirname, "..", "bin", "mesh-service.mjs"), "--service", "order", "--peers", file],
        { encoding: "utf8", timeout: 60_000 },
      );
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
