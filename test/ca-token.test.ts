// `ca token`: a one-time enrolment token bound to one name. The token's shape is a
// contract with the enrolling client; the ledger keeps only its hash.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { ca, cleanup, fingerprint, oneLineError, openssl, tempDir } from "./helpers/ca.ts";
import { hashToken } from "../ca/tokens.ts";
import { parseDuration, formatDuration } from "../ca/duration.ts";

describe("ca token", () => {
  let dir: string;
  before(async () => {
    dir = join(tempDir(), "pki");
    const init = await ca(["init", "--name", "Acme Corp CA", "--dir", dir]);
    assert.equal(init.code, 0, init.stderr);
  });
  after(() => cleanup(join(dir, "..")));

  it("prints mt1.<32 random bytes>.<root fingerprint>, alone on stdout, and stores only its hash", async () => {
    const r = await ca(["token", "--domain", "shipping.internal", "--dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    const token = r.stdout.trim();
    assert.equal(r.stdout, `${token}\n`, "only the token on stdout");
    const m = /^mt1\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})$/.exec(token);
    assert.ok(m, `token shape: ${token}`);
    assert.equal(Buffer.from(m[1]!, "base64url").length, 32);
    // The fingerprint is the SHA-256 of the root's DER, the same one openssl prints.
    const der = openssl(["x509", "-in", join(dir, "roots", "1", "ca.crt"), "-outform", "DER"]);
    assert.equal(der.code, 0);
    const fp = openssl([
      "x509",
      "-noout",
      "-fingerprint",
      "-sha256",
      "-in",
      join(dir, "roots", "1", "ca.crt"),
    ]).out.trim();
    const hex = fp
      .replace(/^sha256 Fingerprint=/i, "")
      .replaceAll(":", "")
      .toLowerCase();
    assert.equal(Buffer.from(m[2]!, "base64url").toString("hex"), hex);
    assert.ok(r.stderr.includes(fp), `stderr shows the fingerprint as openssl does:\n${r.stderr}`);
    assert.match(r.stderr, /works once, until \d{4}-\d\d-\d\dT[\d:.]+Z \(10m\)/);

    const db = new Database(join(dir, "ca.db"), { readonly: true });
    const rows = db.prepare("SELECT * FROM enrol_tokens").all() as Array<Record<string, unknown>>;
    db.close();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.hash, hashToken(token));
    assert.equal(rows[0]!.name, "shipping.internal");
    assert.equal(rows[0]!.used_at, null);
    const ttl = Date.parse(rows[0]!.expires_at as string) - Date.parse(rows[0]!.created_at as string);
    assert.equal(ttl, 10 * 60_000);
    for (const f of ["ca.db", "ca.db-wal"]) {
      let bytes = "";
      try {
        bytes = readFileSync(join(dir, f)).toString("latin1");
      } catch {
        continue;
      }
      assert.ok(!bytes.includes(m[1]!), `the token's secret is not stored in ${f}`);
    }
  });

  it("--json gives the token, its expiry and the fingerprint in both forms", async () => {
    const r = await ca(["token", "--domain", "a.internal", "--ttl", "1h", "--json", "--dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as {
      token: string;
      domain: string;
      expiresAt: string;
      ttl: string;
      root: { sha256: string; sha256B64url: string; generation: number };
    };
    assert.equal(j.domain, "a.internal");
    assert.equal(j.ttl, "1h");
    assert.equal(j.root.generation, 1);
    assert.ok(j.token.endsWith(`.${j.root.sha256B64url}`));
    assert.equal(
      Buffer.from(j.root.sha256B64url, "base64url").toString("hex").toUpperCase().match(/../g)!.join(":"),
      j.root.sha256,
    );
    const ttl = Date.parse(j.expiresAt) - Date.now();
    assert.ok(ttl > 55 * 60_000 && ttl <= 3_600_000, `expires in about an hour: ${ttl}`);
  });

  it("two tokens for one name differ", async () => {
    const a = await ca(["token", "--domain", "b.internal", "--dir", dir]);
    const b = await ca(["token", "--domain", "b.internal", "--dir", dir]);
    assert.notEqual(a.stdout.trim(), b.stdout.trim());
  });

  for (const [args, code, msg] of [
    [["--domain", "../etc"], 2, /has an empty label/],
    [["--domain", "a/b.internal"], 2, /is not a valid DNS name/],
    [["--domain", "Shipping.internal"], 2, /upper-case/],
    [["--domain", "s.internal", "--ttl", "25h"], 2, /--ttl 25h is longer than the 24h allowed/],
    [["--domain", "s.internal", "--ttl", "5s"], 2, /--ttl 5s is shorter than the 10s allowed/],
    [["--domain", "s.internal", "--ttl", "10"], 2, /is not a duration/],
  ] as const) {
    it(`refuses ${args.join(" ")} with one line, exit ${code}, nothing changed`, async () => {
      const beforeFp = fingerprint(dir);
      const tokensBefore = tokenCount(dir);
      const r = await ca(["token", ...args, "--dir", dir]);
      assert.equal(r.code, code, r.stderr);
      assert.match(oneLineError(r), msg);
      assert.equal(r.stdout, "");
      assert.equal(fingerprint(dir), beforeFp);
      assert.equal(tokenCount(dir), tokensBefore);
    });
  }

  it("a ledger from before the online tables still opens, and gets them", async () => {
    const old = join(tempDir(), "pki");
    assert.equal((await ca(["init", "--name", "Old CA", "--dir", old])).code, 0);
    assert.equal((await ca(["issue", "--domain", "kept.internal", "--dir", old])).code, 0);
    const db = new Database(join(old, "ca.db"));
    db.exec("DROP TABLE enrol_tokens; DROP TABLE bundles; DROP TABLE bundle_holders;");
    db.close();
    const list = await ca(["list", "--json", "--dir", old]);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as Array<{ domain: string }>).map((r) => r.domain),
      ["kept.internal"],
    );
    const r = await ca(["token", "--domain", "new.internal", "--dir", old]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(tokenCount(old), 1);
    cleanup(join(old, ".."));
  });

  it("refuses without a CA", async () => {
    const empty = tempDir();
    const r = await ca(["token", "--domain", "s.internal", "--dir", join(empty, "pki")]);
    cleanup(empty);
    assert.equal(r.code, 4);
    assert.match(oneLineError(r), /not initialised/);
  });
});

describe("durations", () => {
  it("parses s/m/h/d strictly and bounds them", () => {
    assert.equal(parseDuration("90s", { flag: "--x" }), 90_000);
    assert.equal(parseDuration("10m", { flag: "--x" }), 600_000);
    assert.equal(parseDuration("2d", { flag: "--x" }), 172_800_000);
    assert.throws(() => parseDuration("1.5h", { flag: "--x" }), /--x "1.5h" is not a duration/);
    assert.throws(() => parseDuration("-1h", { flag: "--x" }), /not a duration/);
    assert.throws(() => parseDuration("2h", { flag: "--x", max: 3_600_000 }), /longer than the 1h allowed/);
    assert.equal(formatDuration(86_400_000), "24h");
    assert.equal(formatDuration(5_400_000), "90m");
  });

  it("takes milliseconds only where a flag asks for them (rotate's --interval), bounded there too", () => {
    const interval = { flag: "--interval", min: 100, max: 3_600_000, milliseconds: true };
    assert.equal(parseDuration("250ms", interval), 250);
    assert.equal(parseDuration("2s", interval), 2_000);
    assert.throws(() => parseDuration("50ms", interval), /--interval 50ms is shorter than the 100ms allowed/);
    assert.throws(() => parseDuration("1.5ms", interval), /"1\.5ms" is not a duration: use .* e\.g\. 500ms, 90s/);
    // Every other flag still refuses them: "500ms" is not a lifetime, a TTL, a retention.
    assert.throws(() => parseDuration("5000ms", { flag: "--ttl" }), /--ttl "5000ms" is not a duration/);
    assert.throws(() => parseDuration("0ms", { flag: "--retention", min: 0 }), /not a duration/);
    assert.equal(formatDuration(100), "100ms");
  });
});

function tokenCount(dir: string): number {
  const db = new Database(join(dir, "ca.db"), { readonly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM enrol_tokens").get() as { n: number }).n;
  } finally {
    db.close();
  }
}
