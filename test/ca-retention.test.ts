// Retention (issue 13): expired certificates leave the ledger a set time after they expire,
// and revoked serials leave the CRLs once a CRL signed after their expiry has listed them.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import { entrySerials } from "../lib/crl.ts";
import { DAY_MS } from "../ca/profiles.ts";
import { prune, expiredOnCrls } from "../ca/retention.ts";
import { ca as runCa, cleanup, openssl, tempDir } from "./helpers/ca.ts";
import { startCa, type TestCa } from "./helpers/est.ts";
import { ev } from "./helpers/events.ts";

const T0 = new Date("2027-05-01T00:00:00Z");
const HOUR = 3_600_000;

/** The serials openssl sees on the CA's CRL: what a relying party reads, not our own parse. */
function crlSerials(crlFile: string): string[] {
  const o = openssl(["crl", "-noout", "-text", "-in", crlFile]);
  assert.equal(o.code, 0, o.out);
  return [...o.out.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!.toLowerCase().replace(/^0+/, ""));
}

describe("ca prune and the CRL's expired serials (injected clock)", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let now = new Date(T0);
  let kept: string;
  let expired: string;
  let revoked: string;
  before(async () => {
    dir = tempDir();
    ca = await CertificateAuthority.init({ dir, name: "Retention CA", now: () => new Date(now) });
    expired = (await ca.issue({ domain: "old.internal", days: 1 })).serial;
    revoked = (await ca.issue({ domain: "revoked.internal", days: 1 })).serial;
    await ca.revoke({ domain: "revoked.internal", reason: "keyCompromise" });
    now = new Date(T0.getTime() + 5 * DAY_MS);
    kept = (await ca.issue({ domain: "recent.internal", days: 1 })).serial;
  });
  after(() => {
    ca.close();
    cleanup(dir);
  });

  it("lists the revoked serial on the CRL while the certificate is valid", () => {
    assert.deepEqual(crlSerials(ca.layout.issuer("root-1").crl), [revoked]);
  });

  it("a rebuild right after expiry keeps the serial (RFC 5280 3.3); the next one drops it", async () => {
    now = new Date(T0.getTime() + DAY_MS + HOUR); // an hour past the revoked certificate's notAfter
    assert.deepEqual([...(await expiredOnCrls(ca)).entries()], [["root-1", [revoked]]]);
    // The last CRL was signed at the revocation (T0), before the expiry: this rebuild must still list it.
    await ca.publishCrls();
    assert.deepEqual(
      crlSerials(ca.layout.issuer("root-1").crl),
      [revoked],
      "dropped before any CRL signed after its expiry listed it",
    );
    now = new Date(now.getTime() + HOUR);
    await ca.publishCrls();
    assert.deepEqual(crlSerials(ca.layout.issuer("root-1").crl), []);
    assert.equal((await expiredOnCrls(ca)).size, 0);
    // The ledger still knows it: the CRL's retention and the ledger's are separate.
    assert.equal(ca.ledger.bySerial(revoked)?.status, "revoked");
  });

  it("--dry-run counts and changes nothing; a run deletes what expired more than 7 days ago, and only that", async () => {
    now = new Date(T0.getTime() + 9 * DAY_MS); // old and revoked expired 8 days ago, recent 3 days ago
    const before = ca.list({ all: true }).length;
    const dry = await prune(ca, { dryRun: true });
    assert.equal(dry.certs, 2);
    assert.equal(ca.list({ all: true }).length, before);
    const r = await prune(ca);
    assert.equal(r.certs, 2);
    assert.equal(r.cutoff.toISOString(), new Date(T0.getTime() + 2 * DAY_MS).toISOString());
    assert.equal(ca.ledger.bySerial(expired), undefined);
    assert.equal(ca.ledger.bySerial(revoked), undefined);
    assert.ok(ca.ledger.bySerial(kept), "a certificate that expired 3 days ago was deleted");
    assert.equal((await prune(ca)).certs, 0, "a second run found more to delete");
  });

  it("a revoked serial whose ledger row is gone leaves the next CRL, and the stored entries agree with openssl", async () => {
    const cert = await ca.issue({ domain: "late.internal", days: 1 });
    await ca.revoke({ domain: "late.internal" });
    assert.deepEqual(entrySerials(ca.ledger.crlEntries("root-1")!), [cert.serial]);
    assert.deepEqual(crlSerials(ca.layout.issuer("root-1").crl), [cert.serial]);
    now = new Date(now.getTime() + 9 * DAY_MS);
    // One run: the CRL signed now lists it (its last CRL was signed before it expired), and
    // the row goes; the next run's CRL drops it.
    const first = await prune(ca);
    assert.deepEqual(first.crlsResigned, ["root-1"]);
    assert.equal(ca.ledger.bySerial(cert.serial), undefined);
    assert.deepEqual(crlSerials(ca.layout.issuer("root-1").crl), [cert.serial]);
    const second = await prune(ca);
    assert.deepEqual(second.crlsResigned, ["root-1"]);
    assert.equal(second.crlExpiredAfter, 0);
    assert.deepEqual(crlSerials(ca.layout.issuer("root-1").crl), []);
    assert.equal(readFileSync(ca.paths.crls, "utf8"), readFileSync(ca.layout.issuer("root-1").crl, "utf8"));
  });
});

describe("npm run ca -- prune", () => {
  let dir: string;
  before(async () => {
    dir = tempDir();
    const ca = await CertificateAuthority.init({ dir, name: "Prune CLI CA", now: () => new Date(T0) });
    await ca.issue({ domain: "a.internal", days: 1 });
    await ca.issue({ domain: "b.internal", days: 30 });
    ca.close();
  });
  after(() => cleanup(dir));

  it("--dry-run --json says what would go; the real run deletes it; ca list agrees", async () => {
    const env = { MESH_CA_NOW: new Date(T0.getTime() + 10 * DAY_MS).toISOString() };
    const dry = await runCa(["prune", "--dir", dir, "--dry-run", "--json"], { env });
    assert.equal(dry.code, 0, dry.stderr);
    const d = JSON.parse(dry.stdout) as { certs: number; dryRun: boolean; cutoff: string };
    assert.deepEqual([d.certs, d.dryRun, d.cutoff], [1, true, new Date(T0.getTime() + 3 * DAY_MS).toISOString()]);
    const run = await runCa(["prune", "--dir", dir, "--older-than", "7d"], { env });
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^deleted 1 certificate\(s\) and 0 enrolment token\(s\) expired before 2027-05-04T00:00:00.000Z$/m,
    );
    const list = await runCa(["list", "--dir", dir, "--all", "--json"], { env });
    assert.deepEqual(
      (JSON.parse(list.stdout) as { domain?: string; name?: string }[]).map((r) => r.name ?? r.domain),
      ["b.internal"],
    );
  });

  it("a bad --older-than is one line and exit 2, and deletes nothing", async () => {
    const env = { MESH_CA_NOW: new Date(T0.getTime() + 100 * DAY_MS).toISOString() };
    const r = await runCa(["prune", "--dir", dir, "--older-than", "a week"], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--older-than "a week" is not a duration/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    const list = await runCa(["list", "--dir", dir, "--all", "--json"], { env });
    assert.equal((JSON.parse(list.stdout) as unknown[]).length, 1);
  });
});

describe("ca serve prunes on its own", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({ retentionMs: 2 * DAY_MS });
  });
  after(() => t.stop());

  it("deletes what expired more than --retention ago and logs ca.pruned", async () => {
    const gone = await t.ca.issue({ domain: "gone.internal", days: 1 });
    t.shift(4 * DAY_MS);
    const stays = await t.ca.issue({ domain: "stays.internal", days: 1 });
    t.shift(5 * DAY_MS); // gone expired 4 days ago, stays 0
    const r = await t.server.prune();
    assert.ok(r && r.certs >= 1, JSON.stringify(r));
    const line = await t.lines.wait(ev("ca.pruned"));
    assert.equal(line.cutoff, r!.cutoff.toISOString());
    assert.equal(t.ca.ledger.bySerial(gone.serial), undefined);
    assert.ok(t.ca.ledger.bySerial(stays.serial));
  });

  it("with retention off (null) it keeps everything", async () => {
    const off = await startCa({ retentionMs: null });
    try {
      await off.ca.issue({ domain: "kept.internal", days: 1 });
      off.shift(400 * DAY_MS);
      assert.equal(await off.server.prune(), undefined);
      assert.equal(
        off.ca
          .list({ all: true })
          .filter((c) => c.domain === "kept.internal" || (c as { name?: string }).name === "kept.internal").length,
        1,
      );
    } finally {
      await off.stop();
    }
  });
});
