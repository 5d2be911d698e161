// TLS session resumption between mesh services, on real sockets: sessions resume, and a resumed
// session never stands for more than a full handshake would. A peer revoked after its first
// handshake is refused when it comes back with its session, in both directions; a session from
// before a trust change is not resumed; and the re-checks themselves refuse a revoked or
// untrusted peer, or one whose verified chain is not known, on a session that did resume.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { connect, createSecureContext, createServer, type TLSSocket } from "node:tls";
import { freshPki, start, identity, type Identity, type TestPki } from "./mesh-fixtures.ts";
import { CertificateAuthority } from "../ca/index.ts";
import { loadMaterial, materialPaths, type TlsMaterial } from "../services/mesh/material.ts";
import { PeerCerts, sessionPeerDer } from "../services/mesh/peer-certs.ts";
import { resumedRefusal } from "../services/mesh/resumption.ts";
import { normaliseSerial } from "../services/mesh/peer-identity.ts";
import { calleeIdentity } from "../services/mesh/client.ts";
import {
  CalleeSessions,
  connectionChain,
  meshConnector,
  resumedCalleeRefusal,
  type CallerMaterial,
} from "../services/mesh/callee-sessions.ts";

let pki: TestPki;
before(async () => {
  pki = await freshPki();
});
after(() => pki.cleanup());

interface Outcome {
  reused: boolean;
  status: number | undefined;
  session: Buffer | undefined;
}

/** GET /healthz on a new connection as `who`, offering `session`; the last session the server sent. */
function get(
  port: number,
  who: Identity,
  ca: Buffer,
  session?: Buffer,
  servername = "payment.internal",
): Promise<Outcome> {
  return new Promise((resolve) => {
    let reused = false;
    let text = "";
    let got: Buffer | undefined;
    const s = connect({ host: "127.0.0.1", port, servername, ca, cert: who.cert, key: who.key, session }, () => {
      reused = s.isSessionReused();
      s.write(`GET /healthz HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`);
    });
    s.on("session", (x: Buffer) => (got = x));
    s.on("data", (d: Buffer) => (text += d.toString("latin1")));
    s.on("error", () => {});
    s.on("close", () =>
      resolve({ reused, status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]) || undefined, session: got }),
    );
  });
}

test("a caller's session resumes; revoked after its first handshake, it is refused when it comes back with it", async () => {
  const pay = await start(pki, "payment", { watch: false });
  try {
    const ca = readFileSync(join(pki.dir, "bundle.pem"));
    const order = identity(pki, "order");
    const first = await get(pay.svc.port, order, ca);
    assert.equal(first.status, 200);
    assert.equal(first.reused, false);
    assert.ok(first.session, "the service issues session tickets");
    const again = await get(pay.svc.port, order, ca, first.session);
    assert.equal(again.reused, true, "the session was resumed");
    assert.equal(again.status, 200, "and the resumed caller is served");
    assert.match(await pay.svc.metrics.registry.metrics(), /^mesh_tls_handshakes_resumed_total 1$/m);

    const since = pay.logs.lines.length;
    await pki.ca.revoke({ domain: "order.internal", reason: "keyCompromise" });
    assert.equal(pay.svc.reloadTls(), true);
    const back = await get(pay.svc.port, order, ca, again.session ?? first.session);
    assert.equal(back.status, undefined, "the revoked caller gets no answer");
    assert.equal(back.reused, false, "its session was not resumed under the new CRLs");
    const refused = await pay.logs.waitEvent("tls.handshake_failed", () => true, 5_000, since);
    assert.equal(refused.reason, "revoked");
  } finally {
    await pay.svc.close();
  }
});

test("a session made before a trust bundle change is not resumed: not into more trust, not into trust it no longer has", async () => {
  const p = await freshPki();
  const other = await CertificateAuthority.init({ dir: join(p.root, "other"), name: "Other CA" });
  const pay = await start(p, "payment", { watch: false });
  try {
    const bundle = join(p.dir, "bundle.pem");
    const ca = readFileSync(bundle);
    const order = identity(p, "order");
    const first = await get(pay.svc.port, order, ca);
    assert.equal(first.status, 200);
    assert.equal((await get(pay.svc.port, order, ca, first.session)).reused, true);

    // Another root trusted as well: the caller is still accepted, by a full handshake.
    const otherRoot = readFileSync(join(p.root, "other", "roots", "1", "ca.crt"), "utf8");
    appendFileSync(bundle, otherRoot);
    assert.equal(pay.svc.reloadTls(), true);
    const widened = await get(pay.svc.port, order, ca, first.session);
    assert.equal(widened.reused, false);
    assert.equal(widened.status, 200);

    // Only the other root trusted: the session from before is not resumed, and the full
    // handshake refuses the caller (unknown_ca).
    const since = pay.logs.lines.length;
    writeFileSync(bundle, otherRoot);
    assert.equal(pay.svc.reloadTls(), true);
    const narrowed = await get(pay.svc.port, order, ca, widened.session ?? first.session);
    assert.equal(narrowed.reused, false);
    assert.equal(narrowed.status, undefined);
    assert.equal((await pay.logs.waitEvent("tls.handshake_failed", () => true, 5_000, since)).reason, "unknown_ca");
  } finally {
    await pay.svc.close();
    other.close();
    p.cleanup();
  }
});

/** A plain TLS server with payment's material that judges each connection as the mesh's server does. */
async function judgingServer(m: TlsMaterial, judge: (sock: TLSSocket) => void) {
  const server = createServer(
    { cert: m.cert, key: m.key, ca: m.ca, crl: m.crl, requestCert: true, rejectUnauthorized: false },
    (sock) => {
      judge(sock);
      sock.end("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as { port: number }).port };
}

test("the server's re-check of a resumed session: revoked, untrusted, and unknown chains are refused", async () => {
  const p = await freshPki();
  const m = loadMaterial(materialPaths(p.dir, "payment.internal"), "payment.internal");
  const order = identity(p, "order");
  const orderSerial = normaliseSerial(
    loadMaterial(materialPaths(p.dir, "order.internal"), "order.internal").leaf.serial,
  );
  let certs = new PeerCerts(m.leaf.trustDomain);
  let trust = m.trust as { fingerprints: ReadonlySet<string>; revoked: ReadonlySet<string> };
  const seen: Array<{ resumed: boolean; refusal?: string; name?: string; same?: boolean }> = [];
  let lastFacts: unknown;
  const { server, port } = await judgingServer(m, (sock) => {
    const resumed = sock.isSessionReused();
    const facts = certs.of(sock, resumed);
    assert.ok(facts);
    seen.push({
      resumed,
      refusal: resumed ? resumedRefusal(facts, trust)?.reason : undefined,
      name: facts.identity.ok ? facts.identity.identity.name : undefined,
      same: facts === lastFacts,
    });
    lastFacts = facts;
  });
  try {
    const ca = m.ca;
    const first = await get(port, order, ca);
    const second = await get(port, order, ca);
    assert.deepEqual(
      seen.map((s) => [s.resumed, s.name, s.same]),
      [
        [false, "order", false],
        [false, "order", true],
      ],
      "the second full handshake of the same certificate is judged from the cache",
    );
    assert.equal((await get(port, order, ca, second.session)).reused, true);
    assert.equal(seen.at(-1)!.refusal, undefined, "nothing changed: the resumed caller is accepted");

    // A session can outlive a certificate of seconds, and resumption skips OpenSSL's date checks:
    // the dates recorded at the full handshake are judged again (the recorded chain made to
    // have run out, as a short-lived certificate's would while its session lives on).
    const facts = lastFacts as { chain?: { validUntil?: number; validFrom?: number } };
    const orderNotAfter = Date.parse(
      loadMaterial(materialPaths(p.dir, "order.internal"), "order.internal").leaf.notAfter,
    );
    assert.ok(facts.chain?.validUntil !== undefined && facts.chain.validUntil <= orderNotAfter);
    const recorded = facts.chain!;
    facts.chain = { ...recorded, validUntil: Date.now() - 1_000 };
    assert.equal((await get(port, order, ca, second.session)).reused, true);
    assert.equal(seen.at(-1)!.refusal, "expired");
    facts.chain = { ...recorded, validFrom: Date.now() + 60_000 };
    assert.equal((await get(port, order, ca, second.session)).reused, true);
    assert.equal(seen.at(-1)!.refusal, "not_yet_valid");
    facts.chain = recorded;

    trust = { fingerprints: m.trust.fingerprints, revoked: new Set([...m.trust.revoked, orderSerial]) };
    assert.equal((await get(port, order, ca, first.session)).reused, true);
    assert.equal(seen.at(-1)!.refusal, "revoked");

    trust = { fingerprints: new Set(), revoked: m.trust.revoked };
    assert.equal((await get(port, order, ca, first.session)).reused, true);
    assert.equal(seen.at(-1)!.refusal, "unknown_ca");

    // The chain verified at the full handshake is not known to this cache: refused, fail closed.
    trust = m.trust;
    certs = new PeerCerts(m.leaf.trustDomain);
    assert.equal((await get(port, order, ca, first.session)).reused, true);
    assert.equal(seen.at(-1)!.refusal, "session_unverifiable");
  } finally {
    server.close();
    p.cleanup();
  }
});

test("the peer's certificate read from the TLS session is the one Node gives, TLS 1.2 and 1.3", async () => {
  const m = loadMaterial(materialPaths(pki.dir, "payment.internal"), "payment.internal");
  for (const maxVersion of ["TLSv1.2", "TLSv1.3"] as const) {
    const read: Array<[Buffer | undefined, Buffer]> = [];
    const server = createServer(
      { cert: m.cert, key: m.key, ca: m.ca, requestCert: true, rejectUnauthorized: true, maxVersion },
      (sock) => {
        read.push([sessionPeerDer(sock), sock.getPeerCertificate().raw]);
        sock.end();
      },
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    for (const who of ["order", "inventory"]) await get(port, identity(pki, who), m.ca);
    server.close();
    assert.equal(read.length, 2);
    for (const [fromSession, fromNode] of read) assert.ok(fromSession?.equals(fromNode), maxVersion);
    assert.ok(!read[0]![1].equals(read[1]![1]), "two callers, two certificates");
  }
});

test("the caller's connector: resumes, and re-judges a resumed callee (revoked, untrusted, stale, wrong name, unknown)", async () => {
  const p = await freshPki();
  const pay = await start(p, "payment", { watch: false });
  try {
    const m = loadMaterial(materialPaths(p.dir, "order.internal"), "order.internal");
    const paySerial = normaliseSerial(
      loadMaterial(materialPaths(p.dir, "payment.internal"), "payment.internal").leaf.serial,
    );
    let current: CallerMaterial = m;
    const sessions = new CalleeSessions();
    const connector = meshConnector({
      secureContext: createSecureContext({ ca: m.ca, cert: m.cert, key: m.key, crl: m.crl }),
      timeoutMs: 5_000,
      checkServerIdentity: (host, cert) => calleeIdentity(host, cert, m.leaf.trustDomain),
      madeUnder: m,
      material: () => current,
      sessions,
      timeoutError: (message) => Object.assign(new Error(message), { code: "UND_ERR_CONNECT_TIMEOUT" }),
    });
    const dial = () =>
      new Promise<{ reused?: boolean; code?: string; status?: number }>((resolve) => {
        connector(
          { hostname: "127.0.0.1", protocol: "https:", port: String(pay.svc.port), servername: "payment.internal" },
          (err, sock) => {
            if (err) return resolve({ code: (err as { code?: string }).code });
            const s = sock as TLSSocket;
            const reused = s.isSessionReused();
            // What the re-check of open connections reads: Node gives no certificate for a resumed session.
            if (!connectionChain(s)?.serials.includes(paySerial)) return resolve({ code: "NO_CHAIN_RECORDED" });
            let text = "";
            s.on("data", (d: Buffer) => (text += d.toString("latin1")));
            s.on("close", () => resolve({ reused, status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]) }));
            s.write("GET /healthz HTTP/1.1\r\nhost: payment.internal\r\nconnection: close\r\n\r\n");
          },
        );
      });

    assert.deepEqual(await dial(), { reused: false, status: 200 });
    assert.equal(sessions.size, 1, "the callee's session is kept");
    assert.deepEqual(await dial(), { reused: true, status: 200 }, "and resumed");

    // payment revoked in the caller's CRLs, its session still kept: refused on resumption.
    current = {
      ...m,
      trust: { fingerprints: m.trust.fingerprints, revoked: new Set([...m.trust.revoked, paySerial]) },
    };
    assert.deepEqual(await dial(), { code: "CERT_REVOKED" });
    assert.equal(sessions.size, 0, "a refused session is forgotten");
    // (OpenSSL's own CRLs were not changed: the next connection is a full handshake, and passes.)
    current = m;
    assert.deepEqual(await dial(), { reused: false, status: 200 });

    // payment's root no longer trusted: refused on resumption too.
    current = { ...m, trust: { fingerprints: new Set(), revoked: m.trust.revoked } };
    assert.deepEqual(await dial(), { code: "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" });
    current = m;
    assert.deepEqual(await dial(), { reused: false, status: 200 });

    // A session made under material no longer in force is not resumed into the new one; the
    // connection (dialed by a connector made before the change: a renewal while it dials) comes up
    // by a full handshake instead, so the call is not lost. It was lost (ERR_TLS_SESSION_STALE):
    // the online drill's baseline failed orders at order's own renewal.
    current = { ...m, trustDigest: "another bundle" };
    assert.deepEqual(await dial(), { reused: false, status: 200 });
    current = m;

    const facts = {
      servername: "payment.internal",
      chain: { serials: [paySerial], anchor: [...m.trust.fingerprints][0] },
      certDigest: m.certDigest,
      trustDigest: m.trustDigest,
    };
    assert.equal(resumedCalleeRefusal(facts, "inventory.internal", m)?.code, "ERR_TLS_CERT_ALTNAME_INVALID");
    assert.equal(resumedCalleeRefusal(undefined, "payment.internal", m)?.code, "ERR_TLS_SESSION_UNVERIFIABLE");
    assert.equal(resumedCalleeRefusal(facts, "payment.internal", m), undefined);
    // A callee whose certificate ran out while its session lived on: refused as expired.
    const ranOut = { ...facts, chain: { ...facts.chain, validUntil: Date.now() - 1_000 } };
    assert.equal(resumedCalleeRefusal(ranOut, "payment.internal", m)?.code, "CERT_HAS_EXPIRED");
  } finally {
    await pay.svc.close();
    p.cleanup();
  }
});
