// Name and number validation as a library call, for what a shell cannot pass
// (a NUL byte) and for the exact boundaries (63/64, 253/254).
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileStem, validateCaName, validateDays, validateDnsName } from "../ca/names.ts";
import { inside } from "../ca/files.ts";
import { ca, cleanup, fingerprint, oneLineError, openssl, tempDir } from "./helpers/ca.ts";

test("DNS names: boundaries, NUL and control characters, wildcards", () => {
  const label63 = "a".repeat(63);
  assert.equal(validateDnsName(`${label63}.internal`), `${label63}.internal`);
  assert.throws(() => validateDnsName(`a${label63}.internal`), /label of 64 characters/);
  const name253 = `${"a".repeat(61)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}`;
  assert.equal(name253.length, 253);
  assert.equal(validateDnsName(name253), name253);
  assert.throws(() => validateDnsName(`x${name253}`), /254 characters long/);
  assert.throws(() => validateDnsName("pay\u0000ment.internal"), /control character \(such as NUL\)/);
  assert.throws(() => validateDnsName("pay\nment.internal"), /control character/);
  assert.throws(() => validateDnsName(""), /is empty/);
  assert.throws(() => validateDnsName("-lead.internal"), /not a valid DNS name/);
  assert.throws(() => validateDnsName("trail-.internal"), /not a valid DNS name/);
  assert.throws(() => validateDnsName("a..b"), /empty label/);
  assert.throws(() => validateDnsName("*.svc.internal"), /wildcard/);
  assert.equal(validateDnsName("*.svc.internal", { allowWildcard: true }), "*.svc.internal");
  assert.throws(() => validateDnsName("*.internal", { allowWildcard: true }), /at least two labels/);
  assert.throws(() => validateDnsName("a.*.internal", { allowWildcard: true }), /not a valid DNS name/);
  assert.equal(fileStem("*.svc.internal"), "_wildcard.svc.internal");
});

test("--days and CA names", () => {
  assert.equal(validateDays("90", 825), 90);
  for (const bad of ["0", "-1", "1.5", "1e3", " 90", "ninety", ""])
    assert.throws(() => validateDays(bad, 825), /--days/);
  assert.throws(() => validateDays("826", 825), /more than the 825 days/);
  assert.equal(validateCaName("  Acme Corp CA "), "Acme Corp CA");
  assert.throws(() => validateCaName("Acme\u0000CA"), /control character/);
  assert.throws(() => validateCaName("x".repeat(65)), /at most 64/);
});

test("no path leaves the state folder", () => {
  assert.equal(inside("/srv/pki", "certs", "a.internal.crt"), "/srv/pki/certs/a.internal.crt");
  assert.throws(() => inside("/srv/pki", "certs", "../../etc/passwd"), /outside the CA folder/);
  assert.throws(() => inside("/srv/pki", "/etc/passwd"), /outside the CA folder/);
  assert.throws(() => inside("/srv/pki", "../pki-evil/x"), /outside the CA folder/);
});

test("all-numeric names are not DNS names (RFC 1123 2.1) and point to --ip", () => {
  for (const bad of ["127.0.0.1", "10.0.0.256", "1.2.3", "8", "svc.internal.123"]) {
    assert.throws(
      () => validateDnsName(bad, { what: "--domain" }),
      new RegExp(`--domain "${bad.replaceAll(".", "\\.")}" is all-numeric, not a DNS name .*use --ip`),
    );
  }
  assert.throws(
    () => validateDnsName("127.0.0.1", { what: "--dns" }),
    /an IP address goes in an IP SAN: use --ip 127\.0\.0\.1/,
  );
  assert.throws(() => validateDnsName("*.10.0", { allowWildcard: true, what: "--dns" }), /all-numeric/);
  // Not an --ip flag where there is none.
  assert.throws(
    () => validateDnsName("10.0.0.0", { what: "--permit-dns" }),
    /all-numeric, not a DNS name .*; give a DNS name$/,
  );
  // Digits are fine anywhere but in the whole last label.
  for (const good of ["3com.internal", "v1.api.internal", "10-0-0-1.internal", "123.internal", "a1"])
    assert.equal(validateDnsName(good), good);
});

// Every path that writes a DNS SAN: issue (--domain, --dns), sign (a CSR's CN and SANs), intermediate (--permit-dns).
describe("ca CLI: all-numeric DNS names are refused on every issuing path, nothing written", { concurrency: 3 }, () => {
  let dir: string;
  let before_: string;
  before(async () => {
    dir = tempDir();
    assert.equal((await ca(["init", "--name", "Numeric CA", "--dir", dir])).code, 0);
    for (const [file, subj, san] of [
      ["cn.csr", "/CN=127.0.0.1", ""],
      ["san.csr", "/CN=ok.internal", "subjectAltName=DNS:ok.internal,DNS:1.2.3"],
    ] as const) {
      const key = join(dir, "csr.key");
      openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]);
      const r = openssl([
        "req",
        "-new",
        "-key",
        key,
        "-subj",
        subj,
        ...(san ? ["-addext", san] : []),
        "-out",
        join(dir, file),
      ]);
      assert.equal(r.code, 0, r.out);
    }
    before_ = fingerprint(dir);
  });
  after(() => cleanup(dir));

  const cases: Array<[string, string[], RegExp]> = [
    [
      "issue --domain 127.0.0.1",
      ["issue", "--domain", "127.0.0.1"],
      /--domain "127\.0\.0\.1" is all-numeric, not a DNS name .*use --ip 127\.0\.0\.1$/,
    ],
    [
      "issue --domain 10.0.0.256",
      ["issue", "--domain", "10.0.0.256"],
      /--domain "10\.0\.0\.256" is all-numeric.*for an IP address use --ip$/,
    ],
    ["issue --domain 1.2.3", ["issue", "--domain", "1.2.3"], /--domain "1\.2\.3" is all-numeric/],
    [
      "issue --dns 127.0.0.1",
      ["issue", "--domain", "api.internal", "--dns", "127.0.0.1"],
      /--dns "127\.0\.0\.1" is all-numeric.*use --ip 127\.0\.0\.1$/,
    ],
    ["sign a CSR whose CN is 127.0.0.1", ["sign", "--csr", "CN"], /"127\.0\.0\.1" is all-numeric/],
    ["sign a CSR with DNS:1.2.3", ["sign", "--csr", "SAN"], /"1\.2\.3" is all-numeric/],
    [
      "intermediate --permit-dns 10.0.0.1",
      ["intermediate", "--name", "Num CA", "--permit-dns", "10.0.0.1"],
      /--permit-dns "10\.0\.0\.1" is all-numeric/,
    ],
  ];
  for (const [what, args, message] of cases) {
    it_(what, args, message);
  }
  function it_(what: string, args: string[], message: RegExp) {
    test(what, async () => {
      const argv = args.map((a) => (a === "CN" ? join(dir, "cn.csr") : a === "SAN" ? join(dir, "san.csr") : a));
      const r = await ca([...argv, "--dir", dir]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(oneLineError(r), message);
      assert.equal(r.stdout, "");
      assert.equal(fingerprint(dir), before_, "nothing in the CA folder changed");
    });
  }
});
