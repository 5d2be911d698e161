// A renewal never stalls silently. A CA that accepts the TLS connection and then never answers
// (what a frozen CA process looks like from outside: the kernel still accepts) makes each EST
// call fail at its deadline with CA_TIMEOUT; the agent logs it, retries, and renews once a
// working CA is back. A certificate near its end without a renewal says identity.expiring
// (warn, seconds left) before identity.expired; a renewal timer held up says identity.renewal_late.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer as createTcpServer, type Socket } from "node:net";
import { createServer, type Server, type TLSSocket } from "node:tls";
import { getCacerts } from "../services/mesh/identity-agent/est-client.ts";
import { enrolWithToken, parseToken } from "../services/mesh/identity-agent/bootstrap.ts";
import { IdentityAgent } from "../services/mesh/identity-agent/renewer.ts";
import { statePaths } from "../services/mesh/identity-agent/state-folder.ts";
import { generationsPath } from "../lib/generations.ts";
import { createLogger } from "../services/mesh/log.ts";
import { LogSink } from "./mesh-fixtures.ts";
import { CaServer } from "../ca/server/server.ts";
import { world, startIn, ROOMY_LIMITS, type World } from "./identity-fixtures.ts";
import { ev } from "./helpers/events.ts";

const worlds: World[] = [];
after(async () => {
  for (const w of worlds) await w.cleanup();
});

/** A TLS server with a certificate the agent trusts (the test CA's, for 127.0.0.1) that reads requests and never answers. */
async function silentCa(
  w: World,
  port: number,
): Promise<{ server: Server; connections: () => number; close(): Promise<void> }> {
  const issued = await w.ca.ca.issue({ domain: "silent-ca.internal", ip: ["127.0.0.1"] });
  const sockets = new Set<TLSSocket>();
  let count = 0;
  const server = createServer({ cert: readFileSync(issued.certPath), key: readFileSync(issued.keyPath!) }, (sock) => {
    count += 1;
    sockets.add(sock);
    sock.on("data", () => {}); // read, never answer
    sock.on("error", () => {});
    sock.on("close", () => sockets.delete(sock));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    server,
    connections: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

test("a CA that accepts and never answers: the renewal times out (CA_TIMEOUT), is logged and retried, and renews once a working CA is back", async () => {
  const w = await world();
  worlds.push(w);
  // Renewal at 30 % of a 12 s life (3.6 s in), each call's deadline at most 1 s (by default a third
  // of the time left, at least 2 s: 7 s of a 30 s certificate's): two timed-out attempts end by
  // ~6 s, and a good one has 6 s before expiry.
  const pay = await startIn(w, "payment", {
    lifetime: "12s",
    pollMs: 60_000,
    schedule: { fraction: 0.3, jitter: 0 },
    callDeadline: { minMs: 250, maxMs: 1_000 },
  });
  const first = pay.svc.identity.identity;
  const port = w.ca.server.listeningPort;
  const log = w.ca.server.log;
  await w.ca.server.close();
  const silent = await silentCa(w, port);
  try {
    const failed = await pay.logs.wait(ev("identity.renew_failed"), 15_000);
    assert.equal(failed.code, "CA_TIMEOUT");
    assert.match(
      String(failed.reason),
      /did not (answer|complete the TCP and TLS handshake) within 1000 ms \(POST \/\.well-known\/est\/simplereenroll\)/,
    );
    assert.equal(failed.serial, first.serial);
    // Retried, and bounded again: the second attempt times out too.
    const again = await pay.logs.wait(
      ev("identity.renew_failed", (l) => l.failures === 2),
      15_000,
    );
    assert.equal(again.code, "CA_TIMEOUT");
    assert.ok(silent.connections() >= 2, `${silent.connections()} connections reached the silent CA`);
    // The attempt took about its deadline, not the socket idle time: well before the certificate's end.
    assert.ok(
      Date.parse(String(again.time)) < Date.parse(first.notAfter) - 2_000,
      `second failure at ${again.time}, expiry ${first.notAfter}`,
    );
  } finally {
    await silent.close();
  }
  w.ca.server = await CaServer.start({ ca: w.ca.ca, port, log, limits: ROOMY_LIMITS });
  try {
    const renewed = await pay.logs.wait(ev("identity.renewed"), 15_000);
    assert.equal(renewed.previous, first.serial);
    assert.ok(
      Date.parse(String(renewed.time)) < Date.parse(first.notAfter),
      "renewed before the old certificate expired",
    );
    assert.equal(pay.logs.find(ev("identity.expired")), undefined);
  } finally {
    await pay.svc.close();
  }
});

test("a CA that never answers, for good: identity.expiring (warn, seconds left) comes before identity.expired, with the renewal failures between", async () => {
  const w = await world();
  worlds.push(w);
  // Due 1.8 s into a 6 s life; each timed-out attempt ends within 1 s, the first 2 s before
  // identity.expiring (1 s before the end, the least lead it has).
  const pay = await startIn(w, "payment", {
    lifetime: "6s",
    pollMs: 60_000,
    schedule: { fraction: 0.3, jitter: 0 },
    callDeadline: { minMs: 250, maxMs: 1_000 },
  });
  const first = pay.svc.identity.identity;
  const port = w.ca.server.listeningPort;
  await w.ca.server.close();
  const silent = await silentCa(w, port);
  try {
    const expired = await pay.logs.wait(ev("identity.expired"), 15_000);
    const lines = pay.logs.lines;
    const expiring = lines.find(ev("identity.expiring"));
    assert.ok(expiring, "identity.expiring was logged");
    assert.ok(lines.indexOf(expiring) < lines.indexOf(expired), "expiring before expired");
    assert.equal(expiring.level, 40);
    assert.equal(typeof expiring.secondsLeft, "number");
    assert.ok((expiring.secondsLeft as number) >= 0 && (expiring.secondsLeft as number) <= 3, JSON.stringify(expiring));
    assert.match(String(expiring.msg), /expires in \d+ s and could not be renewed \(the CA at .* did not/);
    assert.equal(expiring.serial, first.serial);
    // Not silent: each attempt in between ended at its deadline and said so.
    const failures = lines.filter(ev("identity.renew_failed"));
    assert.ok(
      failures.length >= 1 && failures.every((l) => l.code === "CA_TIMEOUT"),
      JSON.stringify(failures.map((l) => l.code)),
    );
    assert.ok(lines.indexOf(failures[0]!) < lines.indexOf(expiring));
  } finally {
    await silent.close();
    await pay.svc.close();
  }
});

test("a renewal timer held up by a blocked event loop says identity.renewal_late with how late, then renews", async () => {
  const w = await world();
  worlds.push(w);
  // Due 3 s into a 10 s life (was 5 s): the service's start after its enrolment has 2.5 s to
  // finish before the block must begin; blocked until 2.5 s past it, the renewal still has 4.5 s.
  const pay = await startIn(w, "payment", { lifetime: "10s", pollMs: 60_000, schedule: { fraction: 0.3, jitter: 0 } });
  const due = pay.svc.identity.nextRenewal;
  // Block this process (the service and the CA are in it) across the renewal time.
  await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now() - 500)));
  const until = due + 2_500;
  while (Date.now() < until) {
    /* busy: a starved process */
  }
  try {
    const late = await pay.logs.wait(ev("identity.renewal_late"), 5_000);
    assert.equal(late.level, 40);
    assert.equal(late.due, new Date(due).toISOString());
    assert.ok((late.lateMs as number) >= 2_000, JSON.stringify(late));
    assert.match(String(late.msg), /starts \d+\.\d s late/);
    const renewed = await pay.logs.wait(ev("identity.renewed"), 5_000);
    assert.ok(pay.logs.lines.indexOf(late) < pay.logs.lines.indexOf(renewed));
  } finally {
    await pay.svc.close();
  }
});

test("every EST call ends at its deadline with CA_TIMEOUT: a CA that never completes the handshake, and one that trickles its answer a byte at a time", {
  timeout: 60_000,
}, async () => {
  const w = await world();
  worlds.push(w);
  const issued = await w.ca.ca.issue({ domain: "slow-ca.internal", ip: ["127.0.0.1"] });
  const tls = { cert: readFileSync(issued.certPath), key: readFileSync(issued.keyPath!) };
  const sockets = new Set<Socket>();
  // Accepts TCP, never speaks TLS.
  const mute = createTcpServer({ pauseOnConnect: true }, (s) => void sockets.add(s));
  // Answers 200 with a long body, one byte every 100 ms: the socket is never idle.
  const trickle = createServer(tls, (sock) => {
    sockets.add(sock);
    sock.on("error", () => {});
    sock.once("data", () => {
      sock.write("HTTP/1.1 200 OK\r\nContent-Type: application/pkcs7-mime\r\nContent-Length: 100000\r\n\r\n");
      const t = setInterval(() => (sock.writable ? sock.write("A") : clearInterval(t)), 100);
      sock.once("close", () => clearInterval(t));
    });
  });
  const listen = (s: { listen(port: number, host: string, cb: () => void): unknown; address(): unknown }) =>
    new Promise<number>((resolve) => s.listen(0, "127.0.0.1", () => resolve((s.address() as { port: number }).port)));
  const [mutePort, tricklePort] = [await listen(mute), await listen(trickle)];
  try {
    for (const [port, what] of [
      [mutePort, /did not complete the TCP and TLS handshake within 1000 ms/],
      [tricklePort, /did not answer within 1500 ms/],
    ] as const) {
      const started = Date.now();
      await assert.rejects(
        getCacerts({ url: `https://127.0.0.1:${port}`, ca: w.ca.bundle(), timeoutMs: 1_500, connectTimeoutMs: 1_000 }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "CA_TIMEOUT", e.message);
          assert.match(e.message, what);
          return true;
        },
      );
      const took = Date.now() - started;
      assert.ok(took < 5_000, `gave up after ${took} ms`);
    }
  } finally {
    for (const s of sockets) s.destroy();
    mute.close();
    trickle.close();
  }
});

test("a renewal answered by a generation whose bundle arrived during the call is judged against the bundle in force then, not the one read before it", async () => {
  const w = await world();
  worlds.push(w);
  const paths = statePaths(w.stateDir("payment"));
  const logs = new LogSink();
  const e = await enrolWithToken({
    caUrl: w.ca.server.url,
    token: parseToken(w.token("payment"), "test"),
    dns: "payment.internal",
    paths,
    lifetime: "1h",
  });
  // A CA server that does not look at the folder again: its own TLS certificate stays from
  // generation 1 (which the service trusts) while generation 2 signs, as it is for a moment in a rotation.
  const log = w.ca.server.log;
  await w.ca.server.close();
  w.ca.server = await CaServer.start({ ca: w.ca.ca, port: 0, pollMs: 3_600_000, limits: ROOMY_LIMITS, log });
  // Not started: no poll, no watch; only the renewal below touches the folder.
  const agent = new IdentityAgent(
    { caUrl: w.ca.server.url, dns: "payment.internal", paths, lifetime: "1h", watch: false },
    { reloadTls: () => true, log: createLogger("payment", logs), metrics: { renewed() {}, renewalFailed() {} } },
  );
  // A safe rotation's first steps: generation 2 published, then made the signer.
  await w.ca.ca.addGeneration({});
  w.ca.ca.publishBundle();
  w.ca.ca.useGeneration(2);
  const renewing = agent.renew("test");
  // The poll that fetched the new bundle lands while the renewal is on the wire: the roots'
  // generations (carried as data since libpki, never read from a root's name), then the bundle.
  writeFileSync(generationsPath(paths.bundle), readFileSync(generationsPath(w.ca.ca.paths.bundle)));
  writeFileSync(paths.bundle, readFileSync(w.ca.ca.paths.bundle));
  assert.equal(await renewing, true, JSON.stringify(logs.lines.filter(ev("identity.renew_failed"))));
  assert.notEqual(agent.identity.serial, e.facts.serial);
  assert.equal(agent.identity.generation, 2);
  agent.stop();
  // The deadline's bounds a test may give are checked like any option (timing.ts).
  assert.throws(
    () =>
      new IdentityAgent(
        { caUrl: w.ca.server.url, dns: "payment.internal", paths, watch: false, callDeadline: { minMs: 0, maxMs: 1 } },
        { reloadTls: () => true, log: createLogger("payment", logs), metrics: { renewed() {}, renewalFailed() {} } },
      ),
    /deadline bounds must be whole milliseconds/,
  );
});
