// The identity agent's pure parts against real tools: the renewal schedule (backdated notBefore,
// jitter bounds, backoff), the CSR as OpenSSL reads it, PKCS#7 as OpenSSL writes it, hostile DER,
// token parsing, and the state folder's crash recovery.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  renewAt,
  retryDelay,
  DEFAULT_SCHEDULE,
  checkCallDeadline,
  renewalCallMs,
} from "../services/mesh/identity-agent/timing.ts";
import { newKeyAndCsr } from "../services/mesh/identity-agent/csr.ts";
import { pkcs7Certificates } from "../lib/pkcs7.ts";
import { parseToken } from "../services/mesh/identity-agent/bootstrap.ts";
import { commitIdentity, recover, statePaths, writeAtomic } from "../services/mesh/identity-agent/state-folder.ts";
import { IdentityError } from "../services/mesh/identity-agent/errors.ts";

const S = 1000;

test("renewal time: 2/3 of the life left when the certificate came, ±10%; a notBefore backdated 5 minutes does not make it due at once", () => {
  const now = 1_800_000_000_000;
  const cert = { notBefore: now - 5 * 60 * S, notAfter: now + 6 * S, receivedAt: now };
  assert.equal(
    renewAt(cert, DEFAULT_SCHEDULE, () => 0.5, now),
    now + 4 * S,
  );
  assert.equal(
    renewAt(cert, DEFAULT_SCHEDULE, () => 0, now),
    now + 6 * S * (2 / 3) * 0.9,
  );
  assert.equal(
    renewAt(cert, DEFAULT_SCHEDULE, () => 1, now),
    now + 6 * S * (2 / 3) * 1.1,
  );
  // Counted from notBefore instead, 2/3 of 5 min 6 s would be 3 min 24 s after notBefore: in the past, renewing without end.
  assert.ok(renewAt(cert, DEFAULT_SCHEDULE, () => 0, now) > now);
  // Restarted later from the cache: the same time (the certificate file's mtime is when it came), already due if past.
  assert.equal(
    renewAt(cert, DEFAULT_SCHEDULE, () => 0.5, now + 5 * S),
    now + 4 * S,
  );
  // A receivedAt in the future (a clock step) counts as now.
  assert.equal(
    renewAt({ ...cert, receivedAt: now + 60 * S }, DEFAULT_SCHEDULE, () => 0.5, now),
    now + 4 * S,
  );
  // A 24 h certificate: about 16 h.
  assert.equal(
    renewAt({ notBefore: now, notAfter: now + 24 * 3600 * S, receivedAt: now }, DEFAULT_SCHEDULE, () => 0.5, now),
    now + 16 * 3600 * S,
  );
});

test("retry backoff: doubles from a base scaled to the lifetime, capped, jittered, never past expiry", () => {
  const hour = 3600 * S;
  const mid = () => 0.5;
  assert.equal(retryDelay(1, hour, hour, mid), 5 * S);
  assert.equal(retryDelay(2, hour, hour, mid), 10 * S);
  assert.equal(retryDelay(20, hour, hour, mid), 300 * S);
  assert.equal(retryDelay(1, 6 * S, 2 * S, mid), 200);
  assert.equal(retryDelay(10, 6 * S, 2 * S, mid), 600);
  assert.equal(retryDelay(10, hour, 10 * S, mid), 10 * S - 250, "not later than just before expiry");
  assert.equal(
    retryDelay(1, hour, hour, () => 0),
    4 * S,
  );
  assert.equal(
    retryDelay(1, hour, hour, () => 1),
    6 * S,
  );
});

test("a renewal call's deadline: a third of the time left, between 2 s and 15 s by default, within the bounds a caller gives; bad bounds refused", () => {
  assert.equal(renewalCallMs(3600 * S), 15 * S, "an hour left: the maximum");
  assert.equal(renewalCallMs(21 * S), 7 * S, "a third of what is left");
  assert.equal(renewalCallMs(3 * S), 2 * S, "a few seconds left: the minimum");
  assert.equal(renewalCallMs(-5 * S), 2 * S, "expired: still the minimum, never 0");
  assert.equal(renewalCallMs(1_000, { minMs: 250, maxMs: 1_000 }), 333);
  assert.equal(renewalCallMs(21 * S, { minMs: 250, maxMs: 1_000 }), 1_000);
  assert.deepEqual(checkCallDeadline({ minMs: 100, maxMs: 100 }), { minMs: 100, maxMs: 100 });
  for (const bad of [
    { minMs: 0, maxMs: 1_000 },
    { minMs: 99, maxMs: 1_000 },
    { minMs: 2_000, maxMs: 1_000 },
    { minMs: 1_000, maxMs: 600_001 },
    { minMs: 1.5, maxMs: 1_000 },
    { minMs: Number.NaN, maxMs: 1_000 },
  ])
    assert.throws(
      () => checkCallDeadline(bad),
      /deadline bounds must be whole milliseconds with 100 <= minMs <= maxMs <= 600000/,
    );
});

test("the CSR is what OpenSSL calls a valid PKCS#10 for CN = SAN DNS = the name, signed by a new P-256 key each time", () => {
  const dir = mkdtempSync(join(tmpdir(), "mesh-csr-"));
  try {
    const a = newKeyAndCsr("payment.internal");
    const b = newKeyAndCsr("payment.internal");
    assert.notEqual(a.keyPem, b.keyPem);
    writeFileSync(join(dir, "csr.der"), a.csr);
    const r = spawnSync(
      "openssl",
      ["req", "-inform", "DER", "-in", join(dir, "csr.der"), "-verify", "-noout", "-text"],
      { encoding: "utf8" },
    );
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 0, out);
    assert.match(out, /verify OK|Certificate request self-signature verify OK/);
    assert.match(out, /Subject: CN\s*=\s*payment\.internal/);
    assert.match(out, /DNS:payment\.internal/);
    assert.match(out, /prime256v1|P-256/);
    assert.match(out, /ecdsa-with-SHA256/);
    assert.match(a.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("certs-only PKCS#7 as OpenSSL writes it: every certificate, in order; truncated or foreign DER refused", () => {
  const dir = mkdtempSync(join(tmpdir(), "mesh-p7-"));
  try {
    const certs = ["a", "b"].map((n) => {
      const key = join(dir, `${n}.key`);
      const crt = join(dir, `${n}.crt`);
      const r = spawnSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-nodes",
          "-keyout",
          key,
          "-out",
          crt,
          "-subj",
          `/CN=${n}`,
          "-days",
          "1",
        ],
        { encoding: "utf8" },
      );
      assert.equal(r.status, 0, r.stderr);
      return crt;
    });
    const p7 = join(dir, "bundle.p7b");
    const r = spawnSync(
      "openssl",
      ["crl2pkcs7", "-nocrl", "-certfile", certs[0]!, "-certfile", certs[1]!, "-outform", "DER", "-out", p7],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    const der = readFileSync(p7);
    const got = pkcs7Certificates(der).map((d) => new X509Certificate(d));
    assert.deepEqual(
      got.map((c) => c.subject),
      ["CN=a", "CN=b"],
    );
    assert.deepEqual(
      got.map((c) => c.fingerprint256),
      certs.map((c) => new X509Certificate(readFileSync(c)).fingerprint256),
    );
    assert.throws(() => pkcs7Certificates(der.subarray(0, der.length - 10)), /truncated DER|not a PKCS#7/);
    assert.throws(
      () => pkcs7Certificates(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])),
      /truncated DER|unsupported DER length/,
    );
    assert.throws(() => pkcs7Certificates(new X509Certificate(readFileSync(certs[0]!)).raw), /not a PKCS#7/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("token parsing: the mt1 shape only, and the error never repeats the token", () => {
  const secret = "s".repeat(43);
  const fp = "f".repeat(43);
  assert.deepEqual(parseToken(` mt1.${secret}.${fp}\n`, "file"), { value: `mt1.${secret}.${fp}`, fingerprint: fp });
  for (const bad of [`mt2.${secret}.${fp}`, `mt1.${secret}`, `mt1.${secret}.${fp}x`, `mt1.${secret}.${fp.slice(1)}+`]) {
    assert.throws(
      () => parseToken(bad, "t.token"),
      (e: unknown) =>
        e instanceof IdentityError &&
        e.code === "TOKEN_MALFORMED" &&
        !e.message.includes(secret) &&
        /t\.token is not an mt1 token/.test(e.message),
    );
  }
});

test("state folder: key written 0600 atomically; a crash after the staged certificate rolls forward, before it rolls back", () => {
  const dir = mkdtempSync(join(tmpdir(), "mesh-state-"));
  try {
    const p = statePaths(dir);
    const pair = () => {
      const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
      writeFileSync(join(dir, "k.pem"), keyPem);
      const r = spawnSync("openssl", ["req", "-x509", "-key", join(dir, "k.pem"), "-subj", "/CN=x", "-days", "1"], {
        encoding: "utf8",
      });
      rmSync(join(dir, "k.pem"));
      return { keyPem, certPem: r.stdout };
    };
    const one = pair();
    commitIdentity(p, one.keyPem, one.certPem);
    assert.equal(statSync(p.key).mode & 0o777, 0o600);
    assert.equal(readFileSync(p.cert, "utf8"), one.certPem);

    // Crash 1: new key staged, no certificate staged yet: dropped; the old pair stays.
    const two = pair();
    writeAtomic(p.nextKey, two.keyPem, 0o600);
    recover(p);
    assert.ok(!existsSync(p.nextKey));
    assert.equal(readFileSync(p.key, "utf8"), one.keyPem);

    // Crash 2: both staged: rolled forward as a pair.
    writeAtomic(p.nextKey, two.keyPem, 0o600);
    writeAtomic(p.nextCert, two.certPem);
    recover(p);
    assert.equal(readFileSync(p.key, "utf8"), two.keyPem);
    assert.equal(readFileSync(p.cert, "utf8"), two.certPem);
    assert.equal(statSync(p.key).mode & 0o777, 0o600);

    // Crash 3: the key already moved, the certificate still staged: finished.
    const three = pair();
    writeAtomic(p.key, three.keyPem, 0o600);
    writeAtomic(p.nextCert, three.certPem);
    recover(p);
    assert.equal(readFileSync(p.cert, "utf8"), three.certPem);
    assert.ok(!existsSync(p.nextCert));

    // A staged certificate that pairs with no key is dropped, not installed.
    writeAtomic(p.nextCert, one.certPem);
    recover(p);
    assert.equal(readFileSync(p.cert, "utf8"), three.certPem);
    assert.ok(!existsSync(p.nextCert));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
