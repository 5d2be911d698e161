// The CLI and the server on one state folder at the same time: WAL and busy_timeout
// make them wait for each other; every command and every enrolment lands.
import assert from "node:assert/strict";
import { sqliteLedger } from "../ca/ledger.ts";
import { after, before, describe, it } from "node:test";
import { createToken } from "../ca/tokens.ts";
import { ca as cli } from "./helpers/ca.ts";
import { PKCS10, est, makeCsr, startCa, type TestCa } from "./helpers/est.ts";

describe("CLI and server together", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({
      limits: { perAddress: { capacity: 100, perMinute: 100 }, perName: { capacity: 100, perMinute: 100 } },
    });
  });
  after(() => t.stop());

  it("the ledger is in WAL mode with a busy timeout", () => {
    assert.equal(sqliteLedger(t.ca.ledger).db.pragma("journal_mode", { simple: true }), "wal");
    assert.equal(sqliteLedger(t.ca.ledger).db.pragma("busy_timeout", { simple: true }), 20_000);
  });

  it("CLI issues and a revocation land while six enrolments run", async () => {
    assert.equal((await cli(["issue", "--domain", "victim.internal", "--dir", t.dir])).code, 0);
    const names = [1, 2, 3, 4, 5, 6].map((i) => `svc${i}.internal`);
    const tokens = names.map((n) => createToken(t.ca, { domain: n }).token);
    const csrs = await Promise.all(names.map((n) => makeCsr(n)));
    const [issued, revoked, ...enrolled] = await Promise.all([
      Promise.all(
        ["cli1.internal", "cli2.internal", "cli3.internal"].map((n) => cli(["issue", "--domain", n, "--dir", t.dir])),
      ),
      cli(["revoke", "--domain", "victim.internal", "--dir", t.dir]),
      ...names.map((_n, i) =>
        est(t.server.url, {
          method: "POST",
          path: "/.well-known/est/simpleenroll",
          headers: { ...PKCS10, Authorization: `Bearer ${tokens[i]}` },
          body: csrs[i]!.body,
          ca: t.bundle(),
        }),
      ),
    ]);
    for (const r of issued) assert.equal(r.code, 0, r.stderr);
    assert.equal(revoked.code, 0, revoked.stderr);
    for (const r of enrolled) assert.equal(r.status, 200, r.body);
    const rows = t.ca.list();
    for (const n of [...names, "cli1.internal", "cli2.internal", "cli3.internal"])
      assert.equal(rows.find((r) => r.domain === n)?.status, "VALID", n);
    assert.equal(rows.find((r) => r.domain === "victim.internal")?.status, "REVOKED");
    const list = await cli(["list", "--json", "--dir", t.dir]);
    assert.equal(list.code, 0, list.stderr);
    assert.equal((JSON.parse(list.stdout) as unknown[]).length, rows.length, "the CLI sees what the server wrote");
  });
});
