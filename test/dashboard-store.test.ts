// The dashboard with the CA's ledger on PostgreSQL (mesh:up --store postgres://…, issue 13): it
// reads the ledger through the CA's store, not ca.db (there is none), so identities, issuers and
// revocations show as they do on SQLite. A fresh database of its own, dropped after.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CertificateAuthority } from "../ca/index.ts";
import { DashboardState } from "../scripts/dashboard/state.ts";

const PGHOST = process.env.PGHOST || "/var/run/postgresql";
const DB = `mesh_dash_store_${process.pid}`;
const STORE = `postgres:///${DB}?host=${PGHOST}`;
const dir = mkdtempSync(join(tmpdir(), "mesh-dash-store-"));
const psql = (sql: string) =>
  execFileSync("psql", ["-d", "postgres", "-qc", sql], { env: { ...process.env, PGHOST }, stdio: "pipe" });

before(() => psql(`CREATE DATABASE ${DB}`));
after(() => {
  rmSync(dir, { recursive: true, force: true });
  psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

test("on a PostgreSQL store: the identity card, the issuers and a revocation come from the store", async () => {
  const pki = join(dir, "pki");
  const logs = join(dir, "logs");
  mkdirSync(logs);
  const policy = join(dir, "policy.toml");
  writeFileSync(policy, `[payment]\naccepts = ["order"]\n`);
  const authority = await CertificateAuthority.init({ dir: pki, name: "Dash Store CA", store: STORE });
  const edge = await authority.issue({ domain: "edge.internal" });
  authority.close();
  assert.equal(existsSync(join(pki, "ca.db")), false, "no SQLite ledger to fall back on");
  writeFileSync(
    join(logs, "mesh.json"),
    JSON.stringify({ identities: { edge: { cert: edge.certPath, key: "unused" } } }),
  );

  const st = new DashboardState({ logs, pki, policy, store: STORE });
  try {
    st.refresh();
    let s = st.snapshot();
    const card = () => s.services.find((x) => x.name === "edge")!;
    assert.equal(card().identity?.issuer, "Dash Store CA");
    assert.equal(card().identity?.generation, 1);
    assert.equal(card().identity?.status, "valid");
    assert.deepEqual(
      s.issuers.map((i) => [i.name, i.state]),
      [["Dash Store CA", "published"]],
    );

    // Revoked through the store (as `ca revoke --store …` on any host would): the next refresh says so.
    const again = await CertificateAuthority.open({ dir: pki, store: STORE });
    await again.revoke({ domain: "edge.internal", reason: "keyCompromise" });
    again.close();
    assert.equal(st.refresh(), true, "the store's change is noticed");
    s = st.snapshot();
    assert.equal(card().identity?.status, "revoked");
  } finally {
    st.close();
  }
});

test("the store from MESH_CA_STORE, as mesh:up hands it to the dashboard it starts", async () => {
  const pki = join(dir, "pki");
  const logs = join(dir, "logs2");
  mkdirSync(logs);
  const was = process.env.MESH_CA_STORE;
  process.env.MESH_CA_STORE = STORE;
  const st = new DashboardState({ logs, pki, policy: join(dir, "policy.toml") });
  try {
    st.refresh();
    assert.deepEqual(
      st.snapshot().issuers.map((i) => i.name),
      ["Dash Store CA"],
    );
  } finally {
    st.close();
    if (was === undefined) delete process.env.MESH_CA_STORE;
    else process.env.MESH_CA_STORE = was;
  }
});
