// The CA's command line as a user runs it: the happy path of the README, and
// every bad input refused with one line, the right exit code, and no change.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ca, cleanup, fingerprint, oneLineError, openssl, tempDir } from "./helpers/ca.ts";
import { buildProgram } from "../ca/commands/index.ts";
import { listedExits } from "../ca/commands/exits.ts";

/** The exit codes the --help of the command `args` names lists (the root's: 0 and 2, usage errors). */
function exitsListed(args: string[]): number[] {
  let cmd = buildProgram();
  for (const word of args) {
    const sub = cmd.commands.find((c) => c.name() === word);
    if (!sub) break;
    cmd = sub;
  }
  return listedExits(cmd) ?? [0, 2];
}

describe("ca CLI: the README's happy path", () => {
  let dir: string;
  before(() => {
    dir = tempDir();
  });
  after(() => cleanup(dir));

  it("init, issue, list, revoke, verify, renew", async () => {
    const init = await ca(["init", "--name", "Acme Corp CA", "--dir", dir]);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /Created the CA Acme Corp CA/);
    assert.match(init.stdout, /expires\s+\d+ \w+ \d{4}/);

    const issue = await ca(["issue", "--domain", "api.internal.com", "--dir", dir]);
    assert.equal(issue.code, 0, issue.stderr);
    assert.match(issue.stdout, /certificate\s+\S+certs\/api\.internal\.com\.crt/);
    assert.match(issue.stdout, /key\s+\S+certs\/api\.internal\.com\.key\s+\(0600/);
    assert.match(issue.stdout, /signed by\s+Acme Corp CA \(generation 1\)/);
    assert.match(issue.stdout, /expires\s+\d+ \w+ \d{4} \(in 90 days\)/);
    assert.doesNotMatch(issue.stdout + issue.stderr, /PRIVATE KEY/, "no key material is printed");
    assert.equal((await ca(["issue", "--domain", "db.internal.com", "--days", "30", "--dir", dir])).code, 0);

    const list = await ca(["list", "--dir", dir]);
    assert.equal(list.code, 0);
    const lines = list.stdout.trim().split("\n");
    assert.match(lines[0]!, /^DOMAIN\s+ISSUED\s+EXPIRES\s+STATUS\s+SERIAL\s+ISSUER$/);
    assert.match(
      lines[1]!,
      /^api\.internal\.com\s+\d{4}-\d\d-\d\d\s+\d{4}-\d\d-\d\d\s+VALID\s+[0-9a-f]{32}\s+Acme Corp CA$/,
    );
    assert.match(lines[2]!, /^db\.internal\.com\s.*VALID/);

    const cert = join(dir, "certs", "api.internal.com.crt");
    assert.equal(openssl(["verify", "-CAfile", join(dir, "bundle.pem"), cert]).code, 0);
    const ok = await ca(["verify", "--cert", cert, "--dir", dir]);
    assert.equal(ok.code, 0);
    assert.match(ok.stdout, /: OK\n\s+chain\s+api\.internal\.com <- Acme Corp CA/);

    const revoke = await ca(["revoke", "api.internal.com", "--dir", dir]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.match(revoke.stdout, /^Revoked: api\.internal\.com/);
    const bad = await ca(["verify", "--cert", cert, "--dir", dir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /FAILED \(revocation\)\n\s+api\.internal\.com \(serial [0-9a-f]+\) was revoked/);
    const crlCheck = openssl([
      "verify",
      "-crl_check_all",
      "-CRLfile",
      join(dir, "crls.pem"),
      "-CAfile",
      join(dir, "bundle.pem"),
      cert,
    ]);
    assert.match(crlCheck.out, /certificate revoked/);

    const json = JSON.parse((await ca(["list", "--json", "--dir", dir])).stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(
      json.map((r) => [r.domain, r.status]),
      [
        ["api.internal.com", "REVOKED"],
        ["db.internal.com", "VALID"],
      ],
    );
    assert.equal(json[0]!.reason, "unspecified");

    const renewRevoked = await ca(["renew", "--domain", "api.internal.com", "--dir", dir]);
    assert.equal(renewRevoked.code, 3);
    assert.match(oneLineError(renewRevoked), /is revoked; issue a fresh one/);

    const oldDb = readFileSync(join(dir, "certs", "db.internal.com.key"), "utf8");
    const renew = await ca(["renew", "--domain", "db.internal.com", "--dir", dir]);
    assert.equal(renew.code, 0, renew.stderr);
    assert.match(renew.stdout, /supersedes\s+[0-9a-f]+ \(now SUPERSEDED\)/);
    assert.notEqual(readFileSync(join(dir, "certs", "db.internal.com.key"), "utf8"), oldDb, "renew makes a new key");
    const all = JSON.parse((await ca(["list", "--json", "--all", "--dir", dir])).stdout) as Array<
      Record<string, unknown>
    >;
    const db = all.filter((r) => r.domain === "db.internal.com");
    assert.deepEqual(
      db.map((r) => r.status),
      ["SUPERSEDED", "VALID"],
    );
    assert.equal(db[0]!.supersededBy, db[1]!.serial);
    // Without --all the superseded row is hidden.
    assert.equal(JSON.parse((await ca(["list", "--json", "--dir", dir])).stdout).length, 2);
  });

  it("expiry is derived from the clock: list says EXPIRED and verify names the check", async () => {
    const later = { MESH_CA_NOW: new Date(Date.now() + 40 * 86_400_000).toISOString() };
    const list = await ca(["list", "--json", "--dir", dir], { env: later });
    const db = (JSON.parse(list.stdout) as Array<Record<string, unknown>>).find((r) => r.domain === "db.internal.com");
    assert.equal(db!.status, "VALID", "the renewed one has 90 days");
    const far = { MESH_CA_NOW: new Date(Date.now() + 100 * 86_400_000).toISOString() };
    const list2 = JSON.parse((await ca(["list", "--json", "--dir", dir], { env: far })).stdout) as Array<
      Record<string, unknown>
    >;
    assert.equal(list2.find((r) => r.domain === "db.internal.com")!.status, "EXPIRED");
    const v = await ca([
      "verify",
      "--cert",
      join(dir, "certs", "db.internal.com.crt"),
      "--at",
      new Date(Date.now() + 100 * 86_400_000).toISOString(),
      "--dir",
      dir,
    ]);
    assert.equal(v.code, 1);
    assert.match(v.stdout, /FAILED \(validity\)\n\s+db\.internal\.com expired on/);
    // An expired name can be issued again; the expired row is superseded.
    const again = await ca(["issue", "--domain", "db.internal.com", "--dir", dir], { env: far });
    assert.equal(again.code, 0, again.stderr);
  });

  it("no command prints a short usage of real commands; --help has examples and exit codes", async () => {
    const usage = await ca([]);
    assert.equal(usage.code, 0);
    assert.match(usage.stdout, /npm run ca -- init --name "Acme Corp CA"/);
    assert.ok((usage.stdout.match(/npm run ca -- /g) ?? []).length >= 4);
    const help = await ca(["issue", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Examples:\n\s+\$ npm run ca -- issue --domain payment\.internal/);
    assert.match(help.stdout, /Exit codes:\n\s+0\s+done/);
  });
});

// These cases change nothing, so they run side by side (each is a process start).
describe("ca CLI: bad input is refused with one line, an exit code, and no change", { concurrency: 4 }, () => {
  let dir: string;
  let before_: string;
  before(async () => {
    dir = tempDir();
    assert.equal((await ca(["init", "--name", "Acme Corp CA", "--dir", dir])).code, 0);
    assert.equal((await ca(["issue", "--domain", "payment.internal", "--dir", dir])).code, 0);
    before_ = fingerprint(dir);
  });
  after(() => cleanup(dir));

  const cases: Array<[string, string[], number, RegExp]> = [
    ["a path escape", ["issue", "--domain", "../x"], 2, /empty label/],
    ["an absolute path", ["issue", "--domain", "/etc/x"], 2, /not a valid DNS name/],
    ["a slash inside", ["issue", "--domain", "a/b.internal"], 2, /not a valid DNS name/],
    ["a space", ["issue", "--domain", "pay ment.internal"], 2, /not a valid DNS name.*no spaces/],
    ["a comma (second CN)", ["issue", "--domain", "evil,cn=payment"], 2, /not a valid DNS name/],
    [
      "upper case",
      ["issue", "--domain", "Payment.internal"],
      2,
      /upper-case letters: use lower case \(payment\.internal\)/,
    ],
    ["a wildcard not asked for", ["issue", "--domain", "*.svc.internal"], 2, /wildcard: pass --allow-wildcard/],
    [
      "a 64-character label",
      ["issue", "--domain", `${"a".repeat(64)}.internal`],
      2,
      /label of 64 characters: a DNS label has at most 63/,
    ],
    [
      "a 254-character name",
      ["issue", "--domain", `${"a.".repeat(126)}ab`],
      2,
      /254 characters long: a DNS name has at most 253/,
    ],
    ["--days 0", ["issue", "--domain", "x.internal", "--days", "0"], 2, /--days must be at least 1/],
    ["--days negative", ["issue", "--domain", "x.internal", "--days", "-5"], 2, /--days "-5" is not a whole number/],
    [
      "--days non-numeric",
      ["issue", "--domain", "x.internal", "--days", "ninety"],
      2,
      /--days "ninety" is not a whole number/,
    ],
    [
      "--days absurd",
      ["issue", "--domain", "x.internal", "--days", "100000"],
      2,
      /--days 100000 is more than the 825 days/,
    ],
    [
      "a bad --ip",
      ["issue", "--domain", "x.internal", "--ip", "1.2.3"],
      2,
      /--ip "1\.2\.3" is not an IPv4 or IPv6 address/,
    ],
    ["an unknown key type", ["issue", "--domain", "x.internal", "--key-type", "dsa"], 2, /Allowed choices are ec-p256/],
    [
      "a name that has a valid certificate",
      ["issue", "--domain", "payment.internal"],
      3,
      /already has a valid certificate .* run: npm run ca -- renew --dir \S+ --domain payment\.internal/,
    ],
    [
      "init over an existing CA",
      ["init", "--name", "Other CA"],
      3,
      /a CA already exists in .*: refusing to overwrite its key/,
    ],
    ["revoke of an unknown name", ["revoke", "--domain", "nobody.internal"], 3, /no certificate for nobody\.internal/],
    ["revoke of an unknown serial", ["revoke", "--serial", "abcdef"], 3, /no certificate with serial abcdef/],
    [
      "revoke with a bad reason",
      ["revoke", "payment.internal", "--reason", "bored"],
      2,
      /Allowed choices are unspecified/,
    ],
    ["revoke with nothing named", ["revoke"], 2, /say what to revoke/],
    [
      "renew of an unknown name",
      ["renew", "--domain", "nobody.internal"],
      3,
      /cannot renew nobody\.internal: no certificate/,
    ],
    [
      "verify at a non-date",
      ["verify", "--cert", "pki/x.crt", "--at", "yesterday-ish"],
      2,
      /cannot read --cert|--at "yesterday-ish" is not a date/,
    ],
    ["a missing CSR file", ["sign", "--csr", "/nonexistent.csr"], 2, /cannot read --csr \/nonexistent\.csr \(ENOENT\)/],
    [
      "retire of the signing generation",
      ["generation", "retire", "1"],
      3,
      /cannot retire generation 1: it signs new certificates/,
    ],
    ["an unknown generation", ["generation", "use", "7"], 3, /no root generation 7/],
    ["an unknown command", ["frobnicate"], 2, /unknown command 'frobnicate'/],
  ];
  for (const [what, args, code, message] of cases) {
    it(`refuses ${what}`, async () => {
      const r = await ca([...args, "--dir", dir]);
      assert.equal(r.code, code, `exit code for ${what}: ${r.stderr}`);
      assert.ok(
        exitsListed(args).includes(code),
        `${args[0]}'s --help lists the exit code ${code} it returned (it lists ${exitsListed(args).join(", ")})`,
      );
      assert.match(oneLineError(r), message);
      assert.equal(r.stdout, "");
      assert.equal(fingerprint(dir), before_, "state must not change");
    });
  }
});

describe("ca CLI: help, suggestions and --version", { concurrency: 4 }, () => {
  it('a command that needs a subcommand prints its help (stderr) and exits 2, not "error: (outputHelp)"', async () => {
    const r = await ca(["generation"]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.doesNotMatch(r.stderr, /outputHelp/);
    assert.match(r.stderr, /^Usage: ca generation \[options\] \[command\]/);
    for (const sub of ["add", "use", "retire"]) assert.match(r.stderr, new RegExp(`^\\s+${sub} `, "m"));
    assert.match(r.stderr, /Examples:\n\s+\$ npm run ca -- generation add/);
  });

  // A misspelled flag gets "did you mean" whether or not the command also has a required option
  // (commander checks required options first), on one line that points at that command's help.
  const misspelled: Array<[string[], RegExp]> = [
    [
      ["issue", "--domian", "x.internal"],
      /^error: unknown option '--domian' \(Did you mean --domain\?\) \(see: npm run ca -- issue --help\)$/,
    ],
    [
      ["issue", "--domain", "x.internal", "--dyas", "3"],
      /^error: unknown option '--dyas' \(Did you mean --days\?\) \(see: npm run ca -- issue --help\)$/,
    ],
    [
      ["init", "--nmae", "X CA"],
      /^error: unknown option '--nmae' \(Did you mean --name\?\) \(see: npm run ca -- init --help\)$/,
    ],
    [["verify", "--crt", "x.crt"], /^error: unknown option '--crt' \(Did you mean --cert\?\)/],
    [["sign", "--scr", "x.csr"], /^error: unknown option '--scr' \(Did you mean --csr\?\)/],
    [["renew", "--domian", "x.internal"], /^error: unknown option '--domian' \(Did you mean --domain\?\)/],
    [["intermediate", "--nmae", "I"], /^error: unknown option '--nmae' \(Did you mean --name\?\)/],
    [["list", "--jsn"], /^error: unknown option '--jsn' \(Did you mean --json\?\) \(see: npm run ca -- list --help\)$/],
    [
      ["generation", "add", "--nmae", "G2"],
      /^error: unknown option '--nmae' \(Did you mean --name\?\) \(see: npm run ca -- generation add --help\)$/,
    ],
    [
      ["generation", "ad"],
      /^error: unknown command 'ad' \(Did you mean add\?\) \(see: npm run ca -- generation --help\)$/,
    ],
    [["isue"], /^error: unknown command 'isue' \(Did you mean issue\?\) \(see: npm run ca -- --help\)$/],
  ];
  for (const [args, message] of misspelled) {
    it(`suggests the right spelling: ${args.join(" ")}`, async () => {
      const empty = tempDir();
      try {
        const r = await ca([...args, "--dir", empty]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(oneLineError(r), message);
        assert.equal(r.stdout, "");
        assert.equal(fingerprint(empty), "(no ledger)", "nothing was created");
      } finally {
        cleanup(empty);
      }
    });
  }

  it("a required option that is simply missing still says so", async () => {
    const r = await ca(["issue"]);
    assert.equal(r.code, 2);
    assert.match(
      oneLineError(r),
      /^error: required option '--domain <name>' not specified \(see: npm run ca -- issue --help\)$/,
    );
  });

  it("--version and -V print package.json's version and exit 0", async () => {
    const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    assert.match(version, /^\d+\.\d+\.\d+/);
    for (const flag of ["--version", "-V"]) {
      const r = await ca([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${version}\n`);
      assert.equal(r.stderr, "");
    }
    assert.match((await ca(["--help"])).stdout, /-V, --version\s+print the version and exit/);
  });
});

describe("ca CLI: CSRs, missing and broken state, passphrases", () => {
  let dir: string;
  let before_: string;
  before(async () => {
    dir = tempDir();
    assert.equal((await ca(["init", "--name", "Acme Corp CA", "--dir", dir])).code, 0);
    before_ = fingerprint(dir);
  });
  after(() => cleanup(dir));

  it("refuses a CSR whose signature does not verify, and a private key sent as a CSR", async () => {
    const work = tempDir();
    try {
      const key = join(work, "svc.key");
      const csr = join(work, "svc.csr");
      assert.equal(
        openssl([
          "req",
          "-new",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-nodes",
          "-keyout",
          key,
          "-subj",
          "/CN=svc.internal",
          "-out",
          csr,
        ]).code,
        0,
      );
      // Flip the last byte of the signature: still a well-formed CSR, no longer a valid one.
      const der = Buffer.from(readFileSync(csr, "utf8").replace(/-----[^-]+-----|\s/g, ""), "base64");
      der[der.length - 1] ^= 0x01;
      const tampered = join(work, "tampered.csr");
      writeFileSync(
        tampered,
        `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END CERTIFICATE REQUEST-----\n`,
      );
      const r = await ca(["sign", "--csr", tampered, "--dir", dir]);
      assert.equal(r.code, 2);
      assert.match(oneLineError(r), /the CSR's signature does not verify/);
      const k = await ca(["sign", "--csr", key, "--dir", dir]);
      assert.equal(k.code, 2);
      assert.match(oneLineError(k), /holds a PRIVATE KEY, not a CERTIFICATE REQUEST/);
      assert.equal(fingerprint(dir), before_);
      // The untampered CSR is signed; no key is written for it.
      const good = await ca(["sign", "--csr", csr, "--dir", dir]);
      assert.equal(good.code, 0, good.stderr);
      assert.match(good.stdout, /^Signed svc\.internal/);
      assert.ok(!existsSync(join(dir, "certs", "svc.internal.key")));
      assert.equal(
        openssl([
          "verify",
          "-x509_strict",
          "-purpose",
          "sslclient",
          "-CAfile",
          join(dir, "bundle.pem"),
          join(dir, "certs", "svc.internal.crt"),
        ]).code,
        0,
      );
    } finally {
      cleanup(work);
    }
  });

  it("before init: every command says to run init", async () => {
    const empty = tempDir();
    try {
      for (const args of [["issue", "--domain", "a.internal"], ["list"], ["revoke", "a.internal"]]) {
        const r = await ca([...args, "--dir", empty]);
        assert.equal(r.code, 4);
        // The suggestion works when pasted: it carries the --dir that was given.
        assert.ok(
          oneLineError(r).endsWith(`(run: npm run ca -- init --dir ${empty} --name "Acme Corp CA")`),
          oneLineError(r),
        );
      }
      assert.equal(fingerprint(empty), "(no ledger)", "nothing was created");
    } finally {
      cleanup(empty);
    }
  });

  it("a corrupted ledger or key is reported, and left as it was", async () => {
    const broken = tempDir();
    try {
      assert.equal((await ca(["init", "--name", "Broken CA", "--dir", broken])).code, 0);
      writeFileSync(
        join(broken, "roots", "1", "ca.key"),
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
        { mode: 0o600 },
      );
      const snap = fingerprint(broken);
      const r = await ca(["issue", "--domain", "a.internal", "--dir", broken]);
      assert.equal(r.code, 4);
      assert.match(oneLineError(r), /the key .*roots\/1\/ca\.key is not a readable private key/);
      assert.equal(fingerprint(broken), snap);

      writeFileSync(join(broken, "ca.db"), "this is not a database, it was overwritten by accident".repeat(100));
      const l = await ca(["list", "--dir", broken]);
      assert.equal(l.code, 4);
      assert.match(
        oneLineError(l),
        /the ledger .*ca\.db is not readable .*restore it from a backup — nothing was changed/,
      );
      assert.match(readFileSync(join(broken, "ca.db"), "utf8"), /^this is not a database/);
    } finally {
      cleanup(broken);
    }
  });

  it("an encrypted CA key needs its passphrase; a wrong one is a clear error", async () => {
    const enc = tempDir();
    try {
      const pass = join(enc, "..", `${enc.split("/").at(-1)}.pass`);
      writeFileSync(pass, "correct horse battery staple\n", { mode: 0o600 });
      const init = await ca(["init", "--name", "Locked CA", "--dir", enc, "--passphrase-file", pass]);
      assert.equal(init.code, 0, init.stderr);
      assert.match(readFileSync(join(enc, "roots", "1", "ca.key"), "utf8"), /BEGIN ENCRYPTED PRIVATE KEY/);
      const snap = fingerprint(enc);
      const none = await ca(["issue", "--domain", "a.internal", "--dir", enc]);
      assert.equal(none.code, 4);
      assert.match(oneLineError(none), /is encrypted: pass --passphrase-file FILE or set MESH_CA_PASSPHRASE/);
      const wrong = await ca(["issue", "--domain", "a.internal", "--dir", enc], {
        env: { MESH_CA_PASSPHRASE: "wrong" },
      });
      assert.equal(wrong.code, 4);
      assert.match(oneLineError(wrong), /cannot decrypt the CA key .*: the passphrase is wrong/);
      assert.equal(fingerprint(enc), snap);
      const right = await ca(["issue", "--domain", "a.internal", "--dir", enc, "--passphrase-file", pass]);
      assert.equal(right.code, 0, right.stderr);
      // Listing needs no key at all.
      assert.equal((await ca(["list", "--dir", enc])).code, 0);
      cleanup(pass);
    } finally {
      cleanup(enc);
    }
  });

  it("an empty MESH_PKI_DIR means ./pki, not the current directory", async () => {
    const base = tempDir();
    try {
      const r = await ca(["init", "--name", "Env CA"], { cwd: base, env: { MESH_PKI_DIR: "" } });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Created the CA Env CA in pki\n/);
      assert.ok(existsSync(join(base, "pki", "roots", "1", "ca.key")));
      assert.ok(!existsSync(join(base, "roots")), "no CA files in the current directory");
    } finally {
      cleanup(base);
    }
  });

  it("writes nothing outside its folder even when told a relative --dir", async () => {
    const base = tempDir();
    try {
      mkdirSync(join(base, "work"));
      const r = await ca(["init", "--name", "Rel CA", "--dir", "pki"], { cwd: join(base, "work") });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(existsSync(join(base, "work", "pki", "roots", "1", "ca.key")));
      assert.deepEqual(
        fingerprint(base)
          .split("\n")
          .filter((l) => !l.startsWith("work/pki/") && l !== "(no ledger)"),
        [],
      );
    } finally {
      cleanup(base);
    }
  });
});
