// The CA server re-signs its CRLs before they lapse, on its own, and a re-signing that holds
// the ledger while it signs does not swallow an enrolment made at the same moment.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createToken } from "../ca/tokens.ts";
import { normalSerial } from "../ca/x509.ts";
import { WriteGate } from "../ca/server/write-gate.ts";
import { openssl } from "./helpers/ca.ts";
import { request } from "node:https";
import { PKCS10, certsOf, makeCsr, startCa, type TestCa } from "./helpers/est.ts";

/**
 * One request to the server whose clock the test moved: the server's own certificate is then
 * issued under that clock and not yet valid for this process, so it is not checked here (what is
 * tested is what the server answers, not its certificate).
 */
function est(
  url: string,
  o: { method?: string; path: string; headers?: Record<string, string>; body?: string; ca: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${o.path}`,
      { method: o.method ?? "GET", headers: o.headers, rejectUnauthorized: false, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("latin1");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode!, body }));
      },
    );
    req.on("error", reject);
    req.end(o.body);
  });
}

const DAY = 86_400_000;
const nextUpdate = (pem: string) =>
  Date.parse(/nextUpdate=(.+)/.exec(openssl(["crl", "-noout", "-nextupdate"], pem).out)![1]!);

describe("the CA server keeps its CRLs from lapsing", () => {
  let t: TestCa;
  const HIGH = { perAddress: { capacity: 100, perMinute: 100 }, perName: { capacity: 100, perMinute: 100 } };
  before(async () => {
    t = await startCa({ limits: HIGH });
  });
  after(() => t.stop());

  it("leaves a fresh CRL alone, re-signs one within ten days of its nextUpdate, and serves it", async () => {
    const first = (await est(t.server.url, { path: "/crls.pem", ca: t.bundle() })).body;
    t.shift(19 * DAY);
    await t.server.refreshCrls();
    assert.equal(t.lines.events("ca.crls_resigned").length, 0, "nothing due 11 days before nextUpdate");
    assert.equal((await est(t.server.url, { path: "/crls.pem", ca: t.bundle() })).body, first);

    t.shift(25 * DAY);
    await t.server.refreshCrls();
    assert.equal(t.lines.events("ca.crls_resigned").length, 1);
    const served = (await est(t.server.url, { path: "/crls.pem", ca: t.bundle() })).body;
    const next = nextUpdate(served);
    assert.ok(
      Math.abs(next - (Date.now() + 25 * DAY + 30 * DAY)) < DAY,
      `nextUpdate 30 days after the (moved) clock, got ${new Date(next).toISOString()}`,
    );
  });

  it("an enrolment racing a re-signing lands in the ledger, and the CRL is re-signed too", async () => {
    t.shift(52 * DAY);
    const enrols = Array.from({ length: 4 }, async (_, i) => {
      const name = `race${i}.internal`;
      const { token } = createToken(t.ca, { domain: name });
      const csr = await makeCsr(name);
      return est(t.server.url, {
        method: "POST",
        path: "/.well-known/est/simpleenroll",
        headers: { ...PKCS10, Authorization: `Bearer ${token}` },
        body: csr.body,
        ca: t.bundle(),
      });
    });
    const [replies] = await Promise.all([Promise.all(enrols), t.server.refreshCrls()]);
    for (const r of replies) {
      assert.equal(r.status, 200, r.body);
      const row = t.ca.ledger.bySerial(normalSerial(certsOf(r.body)[0]!.serialNumber));
      assert.equal(row?.status, "valid", "the certificate handed out is in the ledger");
    }
    assert.equal(t.lines.events("ca.crls_resigned").length, 2);
  });
});

describe("WriteGate", () => {
  it("runs an exclusive section alone: after the shared ones in flight, before the ones that come later", async () => {
    const gate = new WriteGate();
    const order: string[] = [];
    const tick = () => new Promise((r) => setTimeout(r, 20));
    const a = gate.shared(async () => {
      order.push("a+");
      await tick();
      order.push("a-");
    });
    const x = gate.alone(async () => {
      order.push("x+");
      await tick();
      order.push("x-");
    });
    const b = gate.shared(async () => {
      order.push("b+");
      await tick();
      order.push("b-");
    });
    await Promise.all([a, x, b]);
    assert.deepEqual(order, ["a+", "a-", "x+", "x-", "b+", "b-"]);
  });
});
