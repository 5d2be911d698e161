// A service given several CA addresses (--ca a,b) enrols through the one that answers and,
// when the replica it used is killed (kill -9), renews through the next: real `ca serve`
// processes on one ledger, the identity agent's own EST client.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/authority.ts";
import { createToken } from "../ca/tokens.ts";
import { parseToken, enrolWithToken } from "../services/mesh/identity-agent/bootstrap.ts";
import { identityOptions } from "../services/mesh/identity-agent/cli.ts";
import { newKeyAndCsr } from "../services/mesh/identity-agent/csr.ts";
import { enrolCsr, getCacerts } from "../services/mesh/identity-agent/est-client.ts";
import { statePaths } from "../services/mesh/identity-agent/state-folder.ts";
import { ROOT, cleanup, tempDir } from "./helpers/ca.ts";
import { Lines } from "./helpers/est.ts";
import { startReplica, type Replica } from "./helpers/replicas.ts";
import { ev } from "./helpers/events.ts";

/** An address nothing listens on: a port taken, then released. */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `https://127.0.0.1:${port}`;
}

describe("a service with several CA addresses", () => {
  let root: string;
  let dir: string;
  let ca: CertificateAuthority;
  const replicas: Replica[] = [];
  before(async () => {
    root = tempDir("mesh-failover-");
    dir = join(root, "pki");
    ca = await CertificateAuthority.init({ dir, name: "Failover CA" });
    replicas.push(await startReplica({ dir }), await startReplica({ dir }));
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.kill()));
    ca?.close();
    if (root) cleanup(root);
  });

  it("--ca takes a comma-separated list of https origins and refuses anything else", () => {
    const o = identityOptions({ service: "payment", ca: "https://127.0.0.1:7400, https://127.0.0.2:7400/" }, {});
    assert.equal(o.caUrl, "https://127.0.0.1:7400,https://127.0.0.2:7400");
    assert.throws(
      () => identityOptions({ service: "payment", ca: "https://127.0.0.1:7400,http://127.0.0.2:7400" }, {}),
      /https:\/\/ origins/,
    );
    assert.throws(() => identityOptions({ service: "payment", ca: " , " }, {}), /from 1 to 16/);
  });

  it("enrols past a dead first address, then renews through the other replica when its own is killed", async () => {
    const dead = await deadUrl();
    const [a, b] = replicas as [Replica, Replica];
    const token = parseToken(createToken(ca, { domain: "payment.internal" }).token, "the test");
    const paths = statePaths(join(root, "state", "payment"));
    const e = await enrolWithToken({ caUrl: `${dead},${a.url},${b.url}`, token, dns: "payment.internal", paths });
    assert.ok(ca.ledger.bySerial(e.facts.serial.toLowerCase()), "the answered certificate is in the ledger");
    const served = [a, b].find((r) => r.lines.events("est.enrolled").length === 1)!;
    const other = served === a ? b : a;
    assert.ok(served, "one replica enrolled it");

    // The replica that answered last is tried first: kill it.
    const list = `${a.url},${b.url}`;
    const bundle = readFileSync(paths.bundle, "utf8");
    await getCacerts({ url: list, ca: bundle });
    await served.kill();
    const { csr } = newKeyAndCsr("payment.internal");
    const started = Date.now();
    const chain = await enrolCsr(
      { url: list, ca: bundle, cert: readFileSync(paths.cert, "utf8"), key: readFileSync(paths.key, "utf8") },
      "simplereenroll",
      csr,
      {},
    );
    assert.ok(chain.length >= 1);
    const renewed = await other.lines.wait(ev("est.renewed", (l) => l.name === "payment.internal"));
    assert.equal(renewed.previous, e.facts.serial.toLowerCase());
    assert.ok(Date.now() - started < 10_000);
  });

  it("services/main.ts --ca a,b: the service enrols, its CA replica is killed (kill -9), and it renews through the other", {
    timeout: 120_000,
  }, async () => {
    const dead = await deadUrl();
    // A pair of its own: the test before killed one of the shared pair.
    const [a, b] = [await startReplica({ dir }), await startReplica({ dir })];
    replicas.push(a, b);
    const { spawn } = await import("node:child_process");
    const state = join(root, "state", "inventory");
    const child = spawn(
      process.execPath,
      [
        "bin/mesh-service.mjs", // services/main.ts compiled, as mesh:up starts it
        "--service",
        "inventory",
        "--port",
        "0",
        "--ca",
        `${dead},${a.url},${b.url}`,
        "--state",
        state,
        // 15 s renewed at 1/3: about 5 s after enrolling (the kill comes well before), with 10 s to
        // spare for the failover (at 2/3 the renewal waited 10 s).
        "--lifetime",
        "15s",
        "--renew-at",
        "0.33",
        "--poll",
        "1",
      ],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          MESH_ENROL_TOKEN: createToken(ca, { domain: "inventory.internal" }).token,
          MESH_PKI_DIR: "/nonexistent",
          MESH_CA_URL: "",
        },
      },
    );
    const lines = new Lines();
    let buf = "";
    let err = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      buf += d;
      const cut = buf.lastIndexOf("\n");
      if (cut < 0) return;
      lines.write(
        `${buf
          .slice(0, cut + 1)
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .join("\n")}\n`,
      );
      buf = buf.slice(cut + 1);
    });
    child.stderr!.on("data", (d) => (err += d));
    try {
      const enrolled = await lines.wait(ev("identity.enrolled"), 30_000).catch((e: Error) => {
        throw new Error(`${e.message}\n${err}`);
      });
      const served = [a, b].find((r) => r.lines.events("est.enrolled").some((l) => l.name === "inventory.internal"))!;
      assert.ok(served, "one of the replicas enrolled it");
      const other = served === a ? b : a;
      await served.kill();
      const renewed = await lines.wait(ev("identity.renewed"), 60_000).catch((e: Error) => {
        throw new Error(
          `${e.message.slice(0, 3000)}\nthe other replica (${other.url}, exit ${other.child.exitCode} ${other.child.signalCode}) logged:\n${other.lines.raw().slice(-3000)}`,
        );
      });
      assert.notEqual(renewed.serial, enrolled.serial);
      await other.lines.wait(
        ev("est.renewed", (l) => l.name === "inventory.internal"),
        10_000,
      );
      assert.equal(child.exitCode, null, "the service kept running");
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });

  it("a list of only dead addresses fails with one error that names them all", async () => {
    const [d1, d2] = [await deadUrl(), await deadUrl()];
    await assert.rejects(
      getCacerts({ url: `${d1},${d2}`, ca: readFileSync(join(dir, "bundle.pem"), "utf8") }),
      (err: Error & { code?: string }) =>
        err.code === "CA_UNREACHABLE" && err.message.includes(d1) && err.message.includes(d2),
    );
  });
});

describe("mesh:up --ca-urls", () => {
  it("refuses an address that is not an https origin, in one line, exit 2, creating nothing", async () => {
    const root = tempDir("mesh-up-caurls-");
    try {
      const { spawn } = await import("node:child_process");
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          "scripts/mesh-up.ts",
          "--pki",
          join(root, "pki"),
          "--state",
          join(root, "state"),
          "--logs",
          join(root, "logs"),
          "--ca-urls",
          "https://10.0.0.2:7400,http://10.0.0.3:7400",
        ],
        { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      child.stdout!.on("data", (d) => (out += d));
      child.stderr!.on("data", (d) => (out += d));
      const code = await new Promise<number | null>((r) => child.on("close", r));
      assert.equal(code, 2, out);
      assert.match(out, /--ca-urls.*http:\/\/10\.0\.0\.3:7400.*is not an https:\/\/ origin/);
      assert.equal(out.trim().split("\n").length, 1, out);
      assert.equal(existsSync(join(root, "pki")), false);
    } finally {
      cleanup(root);
    }
  });
});
