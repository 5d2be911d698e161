// mesh:up's online pieces on their own: which state folders it keeps and which it enrols again
// (a real CA and its ledger, real certificate files), and that a folder it replaces is moved, not deleted.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CertificateAuthority } from "../ca/index.ts";
import { folderState, identityFiles, moveAside, rateLimits } from "../scripts/online.ts";

const tmp = mkdtempSync(join(tmpdir(), "mesh-up-online-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A state folder holding what the CA issued for `domain`, as an enrolled service's would. */
async function folderFor(ca: CertificateAuthority, dir: string, domain: string): Promise<void> {
  const issued = await ca.issue({ domain });
  mkdirSync(dir, { recursive: true });
  copyFileSync(issued.certPath, join(dir, "cert.pem"));
  copyFileSync(issued.keyPath!, join(dir, "key.pem"));
}

test("folderState keeps only what this CA vouches for; anything else is enrolled again", async () => {
  const ca = await CertificateAuthority.init({ dir: join(tmp, "pki"), name: "Online Test CA" });
  const foreign = await CertificateAuthority.init({ dir: join(tmp, "foreign"), name: "Foreign CA" });
  try {
    assert.deepEqual(folderState(ca, join(tmp, "state", "nothing")), { kind: "missing" });

    await folderFor(ca, join(tmp, "state", "order"), "order.internal");
    const kept = folderState(ca, join(tmp, "state", "order"));
    assert.equal(kept.kind, "valid");

    await folderFor(ca, join(tmp, "state", "inventory"), "inventory.internal");
    await ca.revoke({ domain: "inventory.internal" });
    const revoked = folderState(ca, join(tmp, "state", "inventory"));
    assert.equal(revoked.kind, "stale");
    assert.match(revoked.kind === "stale" ? revoked.why : "", /^its certificate \(serial [0-9a-f]+\) is revoked$/);

    await folderFor(foreign, join(tmp, "state", "payment"), "payment.internal");
    const other = folderState(ca, join(tmp, "state", "payment"));
    assert.match(other.kind === "stale" ? other.why : "", /was not issued by the CA in .*pki$/);

    // Renewed (the old row SUPERSEDED): the folder still holding the old certificate is stale.
    await folderFor(ca, join(tmp, "state", "edge"), "edge.internal");
    await ca.renew({ domain: "edge.internal" });
    const superseded = folderState(ca, join(tmp, "state", "edge"));
    assert.match(superseded.kind === "stale" ? superseded.why : "", /is superseded$/);
  } finally {
    ca.close();
    foreign.close();
  }
});

test("moveAside keeps the key: the folder is renamed, never deleted", () => {
  const dir = join(tmp, "state", "inventory");
  const key = readFileSync(join(dir, "key.pem"));
  const to = moveAside(dir);
  assert.equal(existsSync(dir), false);
  assert.match(to, /state\/inventory\.replaced-\d{4}-\d\d-\d\dT[\d-]+Z$/);
  assert.deepEqual(readFileSync(join(to, "key.pem")), key);
});

test("identityFiles: online, the state folder; file mode, the CA's certs/", () => {
  assert.deepEqual(identityFiles("online", "edge", { state: "/s", pki: "/p" }), {
    cert: "/s/edge/cert.pem",
    key: "/s/edge/key.pem",
    bundle: "/s/edge/bundle.pem",
    crls: "/s/edge/crls.pem",
  });
  assert.deepEqual(identityFiles("file", "edge", { state: "/s", pki: "/p" }), {
    cert: "/p/certs/edge.internal.crt",
    key: "/p/certs/edge.internal.key",
    bundle: "/p/bundle.pem",
    crls: "/p/crls.pem",
  });
});

test("the CA's rate limits: the defaults for hour-long certificates, room for every renewal with lifetimes of seconds", () => {
  assert.deepEqual(rateLimits(3_600_000), {
    perName: { capacity: 5, perMinute: 5 },
    perAddress: { capacity: 30, perMinute: 30 },
  });
  const short = rateLimits(10_000); // renewals every 6 s at the earliest: 10 a minute per name
  assert.equal(short.perName.perMinute, 30);
  assert.equal(short.perAddress.perMinute, 180);
  // Renewed at 1/5 of their life (--renew-at 0.2): every 1.8 s at the earliest, 33 a minute per name.
  const often = rateLimits(10_000, 0.2);
  assert.equal(often.perName.perMinute, 100);
  assert.equal(often.perAddress.perMinute, 600);
  assert.deepEqual(rateLimits(10_000, 0.9), short, "renewed later than 2/3: no fewer than at 2/3");
});
