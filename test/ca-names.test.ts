// Name and number validation as a library call, for what a shell cannot pass
// (a NUL byte) and for the exact boundaries (63/64, 253/254).
import assert from "node:assert/strict";
import { test } from "node:test";
import { fileStem, validateCaName, validateDays, validateDnsName } from "../ca/names.ts";
import { inside } from "../ca/files.ts";

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
  for (const bad of ["0", "-1", "1.5", "1e3", " 90", "ninety", ""]) assert.throws(() => validateDays(bad, 825), /--days/);
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
