// Who pays for an EST request (ca/server/admission.ts), and what the log says about the ones
// that fail to authenticate (ca/server/refusal-log.ts): the budgets in isolation with an injected
// clock, then their order in the real server from several loopback source addresses, then the
// aggregated log against a burst of junk and of broken handshakes.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { request } from "node:https";
import { after, before, describe, it } from "node:test";
import { Admission } from "../ca/server/admission.ts";
import { RateLimiter } from "../ca/rate-limit.ts";
import { createToken } from "../ca/tokens.ts";
import { PKCS10, certsOf, makeCsr, pemOf, startCa, type Reply, type TestCa } from "./helpers/est.ts";
import { parse, value } from "./helpers/prom.ts";

const ENROL = "/.well-known/est/simpleenroll";
const REENROL = "/.well-known/est/simplereenroll";
const JUNK = `Bearer mt1.${"a".repeat(43)}.${"b".repeat(43)}`;

/** One request on a fresh connection from a chosen loopback source address. */
function from(
  localAddress: string,
  t: TestCa,
  o: { path: string; auth?: string; body: string; cert?: string; key?: string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${t.server.url}${o.path}`,
      {
        method: "POST",
        agent: false,
        localAddress,
        ca: t.bundle(),
        cert: o.cert,
        key: o.key,
        headers: { ...PKCS10, ...(o.auth ? { Authorization: o.auth } : {}) },
      },
      (res) => {
        let body = "";
        res.setEncoding("latin1");
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end(o.body);
  });
}

async function enrolFrom(localAddress: string, t: TestCa, name: string) {
  // Re-enrolling a live name is what these tests do on purpose.
  const { token } = createToken(t.ca, { domain: name, replace: true });
  const csr = await makeCsr(name);
  const r = await from(localAddress, t, { path: ENROL, auth: `Bearer ${token}`, body: csr.body });
  return { r, keyPem: csr.keyPem, pem: r.status === 200 ? pemOf(certsOf(r.body)) : "" };
}

describe("Admission: the budgets and what each is charged with", () => {
  const limits = {
    perAddress: { capacity: 2, perMinute: 6 },
    perName: { capacity: 1, perMinute: 6 },
    unauthenticated: { capacity: 3, perMinute: 6 },
  };

  it("failures cost their address and the shared budget, never a name's enrolments or renewals", () => {
    let now = 0;
    const a = new Admission(limits, () => now);
    a.failed("10.0.0.1");
    a.failed("10.0.0.1");
    assert.match(
      a.gate("10.0.0.1")!.message,
      /^too many requests from this address failed to authenticate: retry in 10s$/,
    );
    assert.equal(a.gate("10.0.0.2"), null, "another address is not held back");
    assert.doesNotThrow(() => a.enrolment("payment.internal"), "the name's budget is whole");
    assert.doesNotThrow(() => a.renewal("payment.internal"), "enrolments and renewals have a bucket each");
    assert.throws(() => a.renewal("payment.internal"), /payment\.internal may renew 6 times a minute; retry in 10s/);
    assert.throws(() => a.enrolment("payment.internal"), /payment\.internal may enrol 6 times a minute/);
    a.failed("10.0.0.3"); // the third failure overall empties the shared budget
    const closed = a.gate("10.0.0.4")!;
    assert.equal(closed.status, 429);
    assert.match(closed.message, /from all addresses failed to authenticate/);
    assert.equal(closed.headers["Retry-After"], "10");
    now = 10_000;
    assert.equal(a.gate("10.0.0.4"), null, "refilled");
    assert.doesNotThrow(() => a.renewal("payment.internal"));
  });

  it("perRenewal, when given, is the renewals' own budget", () => {
    const a = new Admission({ ...limits, perRenewal: { capacity: 3, perMinute: 3 } }, () => 0);
    for (let i = 0; i < 3; i++) a.renewal("order.internal");
    assert.throws(() => a.renewal("order.internal"), /may renew 3 times a minute/);
  });

  it("the address map is bounded", () => {
    const rl = new RateLimiter({ capacity: 1, perMinute: 1 }, () => 0, 100);
    for (let i = 0; i < 5_000; i++) rl.take(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(rl.size, 100);
  });
});

describe("the server charges limits after authentication", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({
      limits: {
        perAddress: { capacity: 2, perMinute: 2 },
        perName: { capacity: 1, perMinute: 1 },
        unauthenticated: { capacity: 5, perMinute: 1 },
      },
      refusalLog: { linesPerInterval: 1000 },
    });
  });
  after(() => t.stop());

  it("junk naming pay.internal from one address: that address is held back, pay.internal enrols and renews from it anyway", async () => {
    const body = (await makeCsr("pay.internal")).body;
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await from("127.0.0.2", t, { path: ENROL, auth: JUNK, body })).status);
    assert.deepEqual(statuses, [401, 401, 429]);
    // A token the CA knows passes the closed gate; the enrolment is pay.internal's first, so within its budget.
    const first = await enrolFrom("127.0.0.2", t, "pay.internal");
    assert.equal(first.r.status, 200, first.r.body);
    // Renewal has its own bucket: the enrolment did not spend it, nor did the junk.
    const renewed = await from("127.0.0.2", t, {
      path: REENROL,
      body: (await makeCsr("pay.internal")).body,
      cert: first.pem,
      key: first.keyPem,
    });
    assert.equal(renewed.status, 200, renewed.body);
    // A second enrolment is over pay.internal's own enrolment budget: an authenticated refusal.
    const second = await enrolFrom("127.0.0.2", t, "pay.internal");
    assert.equal(second.r.status, 429);
    assert.match(second.r.body, /pay\.internal may enrol 1 times a minute/);
    const line = await t.lines.wait(
      (l) => l.event === "est.refused" && l.authenticated === true && l.reason === "rate_limited",
    );
    assert.equal(line.name, "pay.internal");
    // The superseded certificate is no credential: its renewals are charged to its address, not to pay.internal.
    for (let i = 0; i < 3; i++) {
      const old = await from("127.0.0.3", t, {
        path: REENROL,
        body: (await makeCsr("pay.internal")).body,
        cert: first.pem,
        key: first.keyPem,
      });
      assert.equal(old.status, 403);
    }
    assert.equal(
      (await from("127.0.0.3", t, { path: ENROL, auth: JUNK, body })).status,
      429,
      "127.0.0.3 spent its failures on the superseded certificate",
    );
  });

  it("failures from many addresses empty the shared budget: then only known tokens are read", async () => {
    const body = (await makeCsr("inv.internal")).body;
    // The first test's failures spent the 5 (2 from .2, 3 from .3; refusals at a closed gate are not charged again).
    const r5 = await from("127.0.0.5", t, { path: ENROL, auth: JUNK, body });
    assert.equal(r5.status, 429);
    assert.match(
      r5.body,
      /from all addresses failed to authenticate: until then the CA reads only enrolments with a token it knows/,
    );
    const ok = await enrolFrom("127.0.0.5", t, "inv.internal");
    assert.equal(ok.r.status, 200, ok.r.body);
  });
});

describe("unauthenticated refusals are summarised, authenticated ones keep their line", () => {
  let t: TestCa;
  const HIGH = {
    perAddress: { capacity: 10_000, perMinute: 10_000 },
    perName: { capacity: 100, perMinute: 100 },
    unauthenticated: { capacity: 10_000, perMinute: 10_000 },
  };
  before(async () => {
    t = await startCa({ limits: HIGH, refusalLog: { intervalMs: 1_000, linesPerInterval: 2 } });
  });
  after(() => t.stop());

  it("120 junk enrolments and 30 broken handshakes: a bounded number of lines, every one counted", async () => {
    const started = Date.now();
    const body = (await makeCsr("payment.internal")).body;
    const N = 120;
    let next = 0;
    await Promise.all(
      Array.from({ length: 6 }, async (_, w) => {
        while (next < N) {
          next++;
          const r = await from(`127.0.0.${10 + w}`, t, { path: ENROL, auth: JUNK, body });
          assert.equal(r.status, 401);
        }
      }),
    );
    // Plain text to a TLS port: the handshake fails before any HTTP.
    await Promise.all(
      Array.from(
        { length: 30 },
        () =>
          new Promise<void>((resolve) => {
            const s = connect({ host: "127.0.0.1", port: t.server.listeningPort, localAddress: "127.0.0.20" }, () =>
              s.end("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            );
            s.on("error", () => resolve());
            s.on("close", () => resolve());
            s.resume();
          }),
      ),
    );
    const seconds = (Date.now() - started) / 1000;
    await t.server.close(); // flushes the last interval
    const own = t.lines.events("est.refused").length + t.lines.events("tls.handshake_failed").length;
    const intervals = Math.ceil(seconds) + 1;
    assert.ok(own <= 2 * intervals, `${own} lines of their own over ${intervals} intervals`);
    const summaries = t.lines.events("est.refused_summary");
    assert.ok(summaries.length >= 1 && summaries.length <= intervals);
    const total = summaries.reduce((n, s) => n + Number(s.total), 0);
    const logged = summaries.reduce((n, s) => n + Number(s.logged), 0);
    const suppressed = summaries.reduce((n, s) => n + Number(s.suppressed), 0);
    // Intervals with nothing suppressed write no summary: their events are all lines of their own.
    assert.equal(total + (own - logged), N + 30, `all ${N + 30} events are in a line or a summary`);
    assert.equal(total - logged, suppressed);
    const reasons: Record<string, number> = {};
    for (const s of summaries)
      for (const [r, n] of Object.entries(s.by_reason as Record<string, number>)) reasons[r] = (reasons[r] ?? 0) + n;
    assert.ok((reasons.token_unknown ?? 0) > 0, JSON.stringify(reasons));
    assert.ok(
      Object.keys(reasons).some((r) => r.startsWith("tls:")),
      JSON.stringify(reasons),
    );
    const tops = summaries.flatMap((s) => s.top_remotes as Array<{ remote: string }>).map((r) => r.remote);
    assert.ok(
      tops.every((r) => /^127\.0\.0\.(1\d|20)$/.test(r)),
      tops.join(" "),
    );
    assert.ok(summaries.every((s) => (s.top_remotes as unknown[]).length <= 10));
    // The metric counts each refusal, summarised or not.
    const scraped = parse(await t.server.metrics.registry.metrics());
    assert.equal(value(scraped, "mesh_ca_requests_refused_total", { route: ENROL, reason: "token_unknown" }), N);
    assert.deepEqual(
      scraped
        .filter((v) => v.name === "mesh_ca_tls_handshake_failures_total" && v.value > 0)
        .map((v) => [v.labels.reason, v.value]),
      [["not_tls", 30]],
    );
  });
});

describe("authenticated refusals", () => {
  let t: TestCa;
  before(async () => {
    t = await startCa({ refusalLog: { intervalMs: 60_000, linesPerInterval: 1 } });
  });
  after(() => t.stop());

  it("each keep a line of their own, beyond the allowance for unauthenticated ones", async () => {
    const first = await enrolFrom("127.0.0.1", t, "stock.internal");
    assert.equal(first.r.status, 200, first.r.body);
    // A CSR for another name, four times, from the holder of stock's current certificate: 403 wrong_name.
    for (let i = 0; i < 4; i++) {
      const wrong = await from("127.0.0.1", t, {
        path: REENROL,
        body: (await makeCsr("other.internal")).body,
        cert: first.pem,
        key: first.keyPem,
      });
      assert.equal(wrong.status, 403);
    }
    const lines = t.lines.events("est.refused").filter((l) => l.authenticated === true);
    assert.equal(lines.length, 4);
    assert.ok(lines.every((l) => l.reason === "wrong_name" && l.name === "other.internal"));
  });
});
