// Issue 13: who may get a token. Reserved names get none (enrolling ca.internal once replaced the
// CA server's own certificate) and the EST server refuses to enrol them even with one; a name with
// a live certificate needs --replace, which says what it will do.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ca, cleanup, fingerprint, oneLineError, tempDir } from "./helpers/ca.ts";
import { PKCS10, est, makeCsr, startCa, type TestCa } from "./helpers/est.ts";
import { createToken, hashToken } from "../ca/tokens.ts";
import { CaError } from "../ca/errors.ts";
import { ev } from "./helpers/events.ts";

describe("ca token: reserved names and live certificates", { concurrency: 1 }, () => {
  let dir: string;
  before(async () => {
    dir = join(tempDir(), "pki");
    assert.equal(
      (await ca(["init", "--name", "Acme Corp CA", "--dir", dir, "--trust-domain", "acme.internal"])).code,
      0,
    );
    assert.equal((await ca(["issue", "--domain", "live.internal", "--dir", dir])).code, 0);
  });
  after(() => cleanup(join(dir, "..")));

  for (const [name, why] of [
    ["ca.internal", /the CA server's own name/],
    ["internal", /a bare domain, not a service name/],
    ["acme.internal", /the SPIFFE trust domain itself/],
    ["*.pay.internal", /a wildcard/],
  ] as const) {
    it(`refuses a token for ${name}: exit 3, one line, nothing written`, async () => {
      const was = fingerprint(dir);
      const r = await ca(["token", "--domain", name, "--dir", dir]);
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.stdout, "", "no token printed");
      assert.match(oneLineError(r), new RegExp(`^error: no token for ${name.replace(/[.*]/g, "\\$&")}: it is `));
      assert.match(oneLineError(r), why);
      assert.equal(fingerprint(dir), was, "nothing was written");
    });
  }

  it("refuses a token for a name with a live certificate without --replace, and says the fix", async () => {
    const was = fingerprint(dir);
    const r = await ca(["token", "--domain", "live.internal", "--dir", dir]);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(
      oneLineError(r),
      /^error: live\.internal has a live certificate \(serial [0-9a-f]{32}, valid until \d{4}-.*\): enrolling with a token would supersede it and its service could no longer renew; pass --replace if that is what you want$/,
    );
    assert.equal(fingerprint(dir), was);
  });

  it("--replace mints it and says the running service's certificate will be superseded and fail to renew", async () => {
    const r = await ca(["token", "--domain", "live.internal", "--replace", "--json", "--dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { token: string; replaces: { serial: string; notAfter: string } | null };
    assert.match(j.token, /^mt1\./);
    assert.match(j.replaces!.serial, /^[0-9a-f]{32}$/);
    assert.match(
      r.stderr,
      /warning: enrolling with it supersedes live\.internal's live certificate \(serial [0-9a-f]{32}, .*\): the service running with that one then fails to renew/,
    );
  });

  it("an expired certificate is not live: no --replace needed", async () => {
    const later = { MESH_CA_NOW: new Date(Date.now() + 200 * 86_400_000).toISOString() };
    const r = await ca(["token", "--domain", "live.internal", "--json", "--dir", dir], { env: later });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { replaces: unknown }).replaces, null);
  });

  it("a fresh name needs nothing and replaces nothing", async () => {
    const r = await ca(["token", "--domain", "fresh.internal", "--dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /supersedes/);
  });
});

describe("EST: a reserved name is never enrolled, token or not", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa();
  });
  after(() => t.stop());

  it("createToken refuses ca.internal (REFUSED)", () => {
    assert.throws(
      () => createToken(t.ca, { domain: "ca.internal" }),
      (e: unknown) => e instanceof CaError && e.code === "REFUSED",
    );
  });

  it("a token for ca.internal put in the ledger by hand still gets 403 reserved_name; the server's certificate stays", async () => {
    const server = t.ca.ledger.current("ca.internal")!;
    assert.ok(server, "the CA server holds a ca.internal certificate");
    // The token as `ca token` made it before the rule: straight into the ledger.
    const token = `mt1.${"A".repeat(43)}.${"B".repeat(43)}`;
    const now = t.ca.now();
    t.ca.ledger.write(() =>
      t.ca.ledger.insertToken({
        hash: hashToken(token),
        name: "ca.internal",
        createdAt: now.toISOString(),
        expiresAt: new Date(now.getTime() + 600_000).toISOString(),
        usedAt: null,
        usedBy: null,
      }),
    );
    const csr = await makeCsr("ca.internal");
    const r = await est(t.server.url, {
      method: "POST",
      path: "/.well-known/est/simpleenroll",
      headers: { ...PKCS10, Authorization: `Bearer ${token}` },
      body: csr.body,
      ca: t.bundle(),
    });
    assert.equal(r.status, 403, r.body);
    assert.match(r.body, /ca\.internal cannot be enrolled: it is the CA server's own name/);
    const refused = await t.lines.wait(ev("est.refused", (l) => l.reason === "reserved_name"));
    assert.equal(refused.name, "ca.internal");
    assert.equal(t.ca.ledger.current("ca.internal")!.serial, server.serial, "the server's certificate is not replaced");
    assert.equal(t.ca.ledger.token(hashToken(token))!.usedAt, null, "the token is not spent");
  });
});

describe("ca token > file: the token file is 0600 whatever the umask", () => {
  it("a 0644 file it is redirected into becomes 0600 before the token is written", async () => {
    const { spawn } = await import("node:child_process");
    const { openSync, closeSync, statSync, readFileSync: read } = await import("node:fs");
    const work = tempDir("mesh-token-file-");
    try {
      const pki = join(work, "pki");
      assert.equal((await ca(["init", "--name", "File CA", "--dir", pki])).code, 0);
      const file = join(work, "svc.token");
      const fd = openSync(file, "w", 0o644);
      const code = await new Promise<number | null>((resolve) => {
        const child = spawn(
          process.execPath,
          [join(import.meta.dirname, "..", "bin", "ca.mjs"), "token", "--domain", "svc.internal", "--dir", pki],
          { stdio: ["ignore", fd, "ignore"] },
        );
        child.on("close", resolve);
      });
      closeSync(fd);
      assert.equal(code, 0);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.match(read(file, "utf8"), /^mt1\.\S+\n$/);
    } finally {
      cleanup(work);
    }
  });
});
