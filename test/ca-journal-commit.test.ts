// The journal's group commit (ca/store/journal-commit.ts): in-process issuances in flight together
// share one round of fsyncs and one transaction, and still land whole or not at all: killed at any
// moment, every issuance that was reported is in the ledger with its key and certificate files,
// and every row in the ledger has its files.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import { exportPrivateKey, generateKeyPair, generateLeafKey, KEY_TYPES, keyTypeOf } from "../ca/keys.ts";
import { ROOT, cleanup, openssl, tempDir } from "./helpers/ca.ts";

/** Every valid row's files exist, hold the row's certificate, and its key (0600) matches it. */
async function assertWhole(dir: string): Promise<Map<string, string>> {
  const ca = await CertificateAuthority.open({ dir }); // recovery runs here
  try {
    const valid = new Map<string, string>();
    for (const entry of ca.ledger.list({ all: true }).filter((r) => r.status === "valid")) {
      const row = ca.ledger.bySerial(entry.serial)!;
      const paths = ca.layout.leaf(row.name);
      const cert = new X509Certificate(readFileSync(paths.cert));
      assert.equal(cert.serialNumber.toLowerCase(), row.serial, `${row.name}: the file holds the ledger's certificate`);
      assert.equal(cert.toString().trim(), row.pem.trim());
      assert.ok(cert.publicKey.equals(createPublicKey(readFileSync(paths.key, "utf8"))), `${row.name}: its key`);
      assert.equal(statSync(paths.key).mode & 0o777, 0o600, `${row.name}: the key is 0600`);
      valid.set(row.name, row.serial);
    }
    const pending = join(dir, "certs", ".pending");
    assert.deepEqual(existsSync(pending) ? readdirSync(pending) : [], [], "nothing left staged");
    return valid;
  } finally {
    ca.close();
  }
}

/** A child process that issues `names` eight at a time and reports each one issued on stdout. */
function issueInChild(dir: string, names: string[], env: Record<string, string> = {}) {
  const program = `
    import { CertificateAuthority } from ${JSON.stringify(join(ROOT, "ca", "index.ts"))};
    const ca = await CertificateAuthority.open({ dir: ${JSON.stringify(dir)} });
    const names = ${JSON.stringify(names)};
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < names.length) {
        const c = await ca.issue({ domain: names[next++] });
        process.stdout.write("issued " + c.domain + " " + c.serial + "\\n");
      }
    }));
    ca.close();
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", program], {
    cwd: ROOT,
    env: { ...process.env, MESH_CA_CRASH_AT: "", MESH_CA_STORE: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const reported = new Map<string, string>();
  let buffer = "";
  let stderr = "";
  const waiters: Array<() => void> = [];
  child.stdout.on("data", (d) => {
    buffer += d;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const [, name, serial] = buffer.slice(0, nl).split(" ");
      buffer = buffer.slice(nl + 1);
      reported.set(name!, serial!);
      for (const w of waiters.splice(0)) w();
    }
  });
  child.stderr.on("data", (d) => (stderr += d));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    reported,
    closed,
    stderr: () => stderr,
    /** Resolves once at least n issuances were reported (or the child is gone). */
    reportedAtLeast: (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => (reported.size >= n ? resolve() : waiters.push(check));
        void closed.then(() => resolve());
        check();
      }),
  };
}

describe("the journal's group commit", () => {
  let root: string;
  before(() => {
    root = tempDir("mesh-journal-commit-");
  });
  after(() => cleanup(root));

  it("issuances in flight together share commits, each lands whole, and one name is issued once", async () => {
    const dir = join(root, "together");
    const ca = await CertificateAuthority.init({ dir, name: "Batch CA" });
    const ledger = ca.ledger as { writeBatch: (fns: ReadonlyArray<() => void>) => unknown[] };
    const real = ledger.writeBatch.bind(ledger);
    const batches: number[] = [];
    ledger.writeBatch = (fns) => {
      batches.push(fns.length);
      return real(fns);
    };
    try {
      const names = Array.from({ length: 24 }, (_, i) => `b${i}.internal`);
      const results = await Promise.allSettled([
        ...names.map((domain) => ca.issue({ domain })),
        ...[1, 2, 3].map(() => ca.issue({ domain: "same.internal" })),
      ]);
      for (const r of results.slice(0, names.length))
        assert.equal(r.status, "fulfilled", String((r as PromiseRejectedResult).reason));
      const same = results.slice(names.length);
      assert.equal(same.filter((r) => r.status === "fulfilled").length, 1, "one of three issues of one name lands");
      for (const r of same.filter((r) => r.status === "rejected"))
        assert.match(
          String(r.reason),
          /same\.internal (already has a valid certificate|was issued by another command just now)/,
        );
      assert.equal(
        batches.reduce((a, b) => a + b, 0),
        names.length + 1 + same.filter((r) => r.status === "rejected" && /just now/.test(String(r.reason))).length,
        "every issuance that reached its commit went through a batch",
      );
      assert.ok(batches.length < names.length, `${names.length + 1} issuances in ${batches.length} commits`);
    } finally {
      ca.close();
    }
    const valid = await assertWhole(dir);
    assert.equal(valid.size, 25);
    const v = openssl([
      "verify",
      "-x509_strict",
      "-CAfile",
      join(dir, "bundle.pem"),
      join(dir, "certs", "b7.internal.crt"),
    ]);
    assert.equal(v.code, 0, v.out);
  });

  it("kill -9 mid-burst: every reported issuance is in the ledger with its files, every row has its files", async () => {
    const dir = join(root, "killed");
    (await CertificateAuthority.init({ dir, name: "Killed CA" })).close();
    const names = Array.from({ length: 200 }, (_, i) => `k${i}.internal`);
    const run = issueInChild(dir, names);
    await run.reportedAtLeast(10);
    run.child.kill("SIGKILL");
    const { signal } = await run.closed;
    assert.equal(signal, "SIGKILL", `killed mid-burst, not finished: ${run.stderr()}`);
    assert.ok(run.reported.size >= 10 && run.reported.size < names.length, `${run.reported.size} reported`);
    const valid = await assertWhole(dir);
    for (const [name, serial] of run.reported)
      assert.equal(valid.get(name), serial, `reported ${name} is in the ledger`);
    for (const name of valid.keys()) assert.ok(names.includes(name), `${name} is one the child asked for`);
  });

  for (const at of ["before-commit", "after-commit"] as const) {
    it(`a batch killed ${at.replace("-", " the ")}: ${at === "before-commit" ? "none of it lands, its staged files are removed" : "all of it is rolled forward"}`, async () => {
      const dir = join(root, at);
      (await CertificateAuthority.init({ dir, name: "Crash CA" })).close();
      const names = Array.from({ length: 8 }, (_, i) => `c${i}.internal`);
      const run = issueInChild(dir, names, { MESH_CA_CRASH_AT: at });
      const { signal } = await run.closed;
      assert.equal(signal, "SIGKILL", run.stderr());
      assert.equal(run.reported.size, 0, "nothing was reported");
      const staged = readdirSync(join(dir, "certs", ".pending"));
      assert.ok(staged.length >= 2, "the batch's files were staged");
      const valid = await assertWhole(dir);
      if (at === "before-commit") assert.equal(valid.size, 0);
      else {
        // Every certificate whose files were staged and whose row committed is now in place.
        const serials = new Set(staged.map((f) => f.split(".")[0]));
        assert.ok(valid.size >= 1);
        for (const serial of valid.values()) assert.ok(serials.has(serial));
      }
    });
  }
});

describe("a leaf's key (keys.ts generateLeafKey)", () => {
  for (const type of KEY_TYPES) {
    it(`${type}: the same PKCS#8 form as the WebCrypto key's export, its SPKI the key's own`, async () => {
      const made = await generateLeafKey(type);
      const key = createPrivateKey(made.pkcs8Pem);
      assert.equal(keyTypeOf(key), type);
      assert.ok(createPublicKey(key).export({ format: "der", type: "spki" }).equals(made.spki));
      const before = await exportPrivateKey((await generateKeyPair(type)).privateKey);
      const shape = (pem: string) =>
        openssl(["asn1parse"], pem)
          .out.split("\n")
          .map((l) =>
            l.replace(/^\s*\d+:d=(\d+)\s+hl=\d+\s+l=\s*\d+/, "d=$1").replace(/:[0-9A-F]+$|\[HEX DUMP\]:.*/, ""),
          )
          .join("\n");
      assert.equal(shape(made.pkcs8Pem), shape(before));
      assert.match(made.pkcs8Pem, /^-----BEGIN PRIVATE KEY-----\n/);
      // OpenSSL reads it and writes the same bytes back (the EC ones are encoded by hand).
      assert.equal(key.export({ format: "pem", type: "pkcs8" }), made.pkcs8Pem);
      const check = openssl(["pkey", "-check", "-noout"], made.pkcs8Pem);
      assert.equal(check.code, 0, check.out);
    });
  }
  it("ec-p256 by hand: keys whose scalar starts with zero bytes keep its full length (RFC 5915)", async () => {
    // One scalar in 256 starts with a zero byte; 2,000 keys miss that case with probability e^-7.8.
    let short = 0;
    for (let i = 0; i < 2000; i++) {
      const made = await generateLeafKey("ec-p256");
      const d = createPrivateKey(made.pkcs8Pem).export({ format: "jwk" }).d!;
      if (Buffer.from(d, "base64url")[0] === 0) {
        short++;
        assert.equal(createPrivateKey(made.pkcs8Pem).export({ format: "pem", type: "pkcs8" }), made.pkcs8Pem);
        assert.equal(made.pkcs8Pem.length, 241, "the same length as any other P-256 key's PEM");
      }
    }
    assert.ok(short > 0, "no scalar with a leading zero byte in 2,000 keys");
  });
});
