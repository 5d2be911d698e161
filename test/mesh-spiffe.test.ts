// SPIFFE identities in the mesh: a service takes the caller's identity from its SPIFFE ID, refuses
// in the handshake a certificate whose SPIFFE ID is ambiguous, names someone else or another trust
// domain, and its policy may name callers by SPIFFE ID. The SPIFFE ID a service presents is read
// by a TLS stack nobody here wrote: Python's ssl module, over a real handshake.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { CertificateAuthority } from "../ca/index.ts";
import { createLogger } from "../services/mesh/log.ts";
import { appNamed } from "../services/apps/index.ts";
import { startService } from "../services/mesh/runtime.ts";
import { ev, evAny } from "./helpers/events.ts";
import { MeshError } from "../services/mesh/errors.ts";
import { decide, parsePolicy, unknownCallers } from "../services/mesh/policy.ts";
import {
  LogSink,
  freshPki,
  start,
  call,
  identity,
  type TestPki,
  type TestService,
  type Identity,
  type LogLine,
} from "./mesh-fixtures.ts";

const execFileP = promisify(execFile);

const POLICY = `[payment]
accepts = ["spiffe://internal/order"]

[inventory]
accepts = ["order"]

[order]
accepts = ["edge"]
`;

let pki: TestPki;
let pay: TestService;
let port: number;

before(async () => {
  pki = await freshPki(POLICY);
  pay = await start(pki, "payment");
  port = pay.svc.port;
});

after(async () => {
  await pay.svc.close();
  pki.cleanup();
});

/** A leaf signed by the mesh root with openssl: shapes the CA rightly refuses to make. */
function opensslLeaf(stem: string, cn: string, san: string): Identity {
  const root = pki.ca.paths.root(1);
  const d = pki.root;
  const [key, csr, crt, ext] = ["key", "csr", "crt", "ext"].map((x) => join(d, `${stem}.${x}`)) as [
    string,
    string,
    string,
    string,
  ];
  execFileSync(
    "openssl",
    [
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      key,
      "-out",
      csr,
      "-subj",
      `/CN=${cn}`,
    ],
    { stdio: "pipe" },
  );
  writeFileSync(
    ext,
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`,
  );
  execFileSync(
    "openssl",
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      root.cert,
      "-CAkey",
      root.key,
      "-set_serial",
      `0x${Date.now().toString(16)}${stem.length}`,
      "-days",
      "5",
      "-extfile",
      ext,
      "-out",
      crt,
    ],
    { stdio: "pipe" },
  );
  // The crafted certificate really carries what the test says it does.
  const shown = execFileSync("openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", crt], { encoding: "utf8" });
  for (const part of san.split(",")) assert.ok(shown.includes(part.replace(/^DNS:/, "DNS:")), `${stem}: ${shown}`);
  return { cert: readFileSync(crt), key: readFileSync(key) };
}

async function refused(who: Identity): Promise<LogLine> {
  const since = pay.logs.lines.length;
  const r = await call(pki, port, "payment.internal", who, "GET", "/healthz");
  assert.ok("error" in r, `expected the connection to be refused, got ${JSON.stringify(r)}`);
  const line = await pay.logs.wait(ev("tls.handshake_failed"), 5_000, since);
  assert.equal(pay.logs.lines.slice(since).filter(evAny("request", "authz.denied")).length, 0, "nothing reached HTTP");
  return line;
}

test("the CA's leaves carry exactly one URI SAN, spiffe://internal/<name> (openssl)", () => {
  for (const n of ["order", "payment", "edge"]) {
    const san = execFileSync(
      "openssl",
      ["x509", "-noout", "-ext", "subjectAltName", "-in", pki.ca.paths.leaf(`${n}.internal`).cert],
      { encoding: "utf8" },
    );
    assert.deepEqual(
      [...san.matchAll(/URI:(\S+?)(,|\s|$)/g)].map((m) => m[1]),
      [`spiffe://internal/${n}`],
      san,
    );
  }
});

test("the policy accepts a caller named by SPIFFE ID; another caller is still denied", async () => {
  const ok = await call(pki, port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
  assert.deepEqual(ok, { status: 200, body: { service: "payment", caller: "order" } });
  const since = pay.logs.lines.length;
  const no = await call(pki, port, "payment.internal", identity(pki, "edge"), "GET", "/healthz");
  assert.equal("status" in no && no.status, 403);
  const denied = await pay.logs.wait(ev("authz.denied"), 5_000, since);
  assert.equal(denied.peerSpiffeId, "spiffe://internal/edge");
});

test("a well-formed SVID made by openssl is accepted (control for the refusals below)", async () => {
  const r = await call(
    pki,
    port,
    "payment.internal",
    opensslLeaf("good", "order.internal", "DNS:order.internal,URI:spiffe://internal/order"),
    "GET",
    "/healthz",
  );
  assert.deepEqual(r, { status: 200, body: { service: "payment", caller: "order" } });
});

test("two SPIFFE IDs, or a SPIFFE ID and another URI: spiffe_ambiguous", async () => {
  const two = await refused(
    opensslLeaf(
      "two",
      "order.internal",
      "DNS:order.internal,URI:spiffe://internal/order,URI:spiffe://internal/payment",
    ),
  );
  assert.equal(two.reason, "spiffe_ambiguous");
  assert.match(String(two.msg), /2 URI SANs .*exactly one/);
  const other = await refused(
    opensslLeaf(
      "other",
      "order.internal",
      "DNS:order.internal,URI:spiffe://internal/order,URI:https://order.example/x",
    ),
  );
  assert.equal(other.reason, "spiffe_ambiguous");
});

test("a SPIFFE ID that names another workload than the DNS name: spiffe_mismatch", async () => {
  const l = await refused(
    opensslLeaf("mismatch", "order.internal", "DNS:order.internal,URI:spiffe://internal/payment"),
  );
  assert.equal(l.reason, "spiffe_mismatch");
  assert.match(
    String(l.msg),
    /spiffe:\/\/internal\/payment stands for payment\.internal, but its CN and DNS name are order\.internal/,
  );
});

test("a SPIFFE ID in another trust domain: spiffe_foreign_domain; a URI that is no SPIFFE ID: spiffe_invalid", async () => {
  const foreign = await refused(
    opensslLeaf("foreign", "order.internal", "DNS:order.internal,URI:spiffe://example.org/order"),
  );
  assert.equal(foreign.reason, "spiffe_foreign_domain");
  assert.match(String(foreign.msg), /trust domain example\.org, not in this mesh's, internal/);
  const https = await refused(opensslLeaf("https", "order.internal", "DNS:order.internal,URI:https://order.internal/"));
  assert.equal(https.reason, "spiffe_invalid");
  const td = await refused(opensslLeaf("tdonly", "order.internal", "DNS:order.internal,URI:spiffe://internal"));
  assert.equal(td.reason, "spiffe_invalid");
});

test("Python's ssl module, in a real mTLS handshake with the running service, sees its SPIFFE ID", async () => {
  const order = pki.ca.paths.leaf("order.internal");
  const script = `
import json, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
with socket.create_connection(("127.0.0.1", int(sys.argv[4])), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="payment.internal") as s:
        print(json.dumps(s.getpeercert()["subjectAltName"]))
`;
  // Asynchronously: the service runs in this process and must answer meanwhile.
  const { stdout: out } = await execFileP(
    "python3",
    ["-c", script, pki.ca.paths.bundle, order.cert, order.key, String(port)],
    { encoding: "utf8", timeout: 30_000 },
  );
  const san = JSON.parse(out) as [string, string][];
  assert.deepEqual(
    san.filter(([t]) => t === "URI"),
    [["URI", "spiffe://internal/payment"]],
  );
  assert.deepEqual(
    san.filter(([t]) => t === "DNS"),
    [["DNS", "payment.internal"]],
  );
});

test("policy: SPIFFE IDs are validated strictly, with file:line", () => {
  const bad = (accepts: string, re: RegExp) => {
    const text = `[payment]\naccepts = ${accepts}\n`;
    assert.throws(
      () => parsePolicy(text, "p.toml"),
      (e: unknown) => e instanceof MeshError && /^p\.toml:2: /.test(e.message) && re.test(e.message),
      accepts,
    );
  };
  bad(`["spiffe://Internal/order"]`, /not a SPIFFE ID: the trust domain "Internal" may use only lower-case/);
  bad(`["spiffe://internal/order?x=1"]`, /query or a fragment/);
  bad(`["spiffe://internal:8443/order"]`, /has a port/);
  bad(`["spiffe://internal"]`, /a trust domain: a caller is a workload/);
  bad(`["spiffe://internal/a/b"]`, /one path segment/);
  bad(`["spiffe://internal/order/"]`, /ends with a slash/);
  bad(`["https://internal/order"]`, /not a SPIFFE ID/);
  bad(`["SPIFFE://internal/order"]`, /not a SPIFFE ID/);
  const p = parsePolicy(`[payment]\naccepts = ["spiffe://internal/order", "inventory"]\n`, "p.toml");
  assert.equal(decide(p, "payment", "order", "GET", "/x", "spiffe://internal/order").allow, true);
  assert.equal(
    decide(p, "payment", "order", "GET", "/x", null).allow,
    false,
    "a SPIFFE ID in the policy matches only a certificate that carries it",
  );
  assert.equal(
    decide(p, "payment", "inventory", "GET", "/x", "spiffe://internal/inventory").allow,
    true,
    "short names still work",
  );
  assert.deepEqual(
    unknownCallers(p, ["order.internal", "inventory.internal"]),
    [],
    "a SPIFFE ID caller with a certificate is known",
  );
  assert.match(unknownCallers(p, ["inventory.internal"])[0]!.message, /no certificate for order\.internal exists yet/);
});

test("a callee is held to the same SPIFFE rules: its ID must agree with the name it is dialed by", async () => {
  const { calleeIdentity } = await import("../services/mesh/client.ts");
  const peer = (san: string) =>
    ({
      subject: { CN: "payment.internal" },
      subjectaltname: san,
      ca: false,
      serialNumber: "01",
    }) as unknown as import("node:tls").PeerCertificate;
  assert.equal(
    calleeIdentity("payment.internal", peer("DNS:payment.internal, URI:spiffe://internal/payment"), "internal"),
    undefined,
  );
  assert.equal(
    calleeIdentity("payment.internal", peer("DNS:payment.internal"), "internal"),
    undefined,
    "a certificate from before SPIFFE IDs",
  );
  for (const [san, reason] of [
    ["DNS:payment.internal, URI:spiffe://internal/order", "spiffe_mismatch"],
    ["DNS:payment.internal, URI:spiffe://internal/payment, URI:spiffe://internal/order", "spiffe_ambiguous"],
    ["DNS:payment.internal, URI:spiffe://example.org/payment", "spiffe_foreign_domain"],
  ] as const) {
    const err = calleeIdentity("payment.internal", peer(san), "internal") as
      | (Error & { code?: string; reason?: string })
      | undefined;
    assert.equal(err?.reason, reason, san);
    assert.equal(err?.code, "ERR_TLS_CERT_ALTNAME_INVALID");
  }
  assert.ok(
    calleeIdentity("inventory.internal", peer("DNS:payment.internal, URI:spiffe://internal/payment"), "internal"),
    "Node's own name check still applies",
  );
});

test("a CA with another trust domain: services take theirs from their own certificate, and the policy names callers in it", async () => {
  const root = mkdtempSync(join(tmpdir(), "mesh-spiffe-td-"));
  const dir = join(root, "pki");
  const ca = await CertificateAuthority.init({ dir, name: "Org CA", trustDomain: "example.org" });
  const logs = new LogSink();
  let svc: Awaited<ReturnType<typeof startService>> | undefined;
  try {
    for (const n of ["order", "payment", "edge"]) await ca.issue({ domain: `${n}.internal` });
    const policyFile = join(root, "policy.toml");
    writeFileSync(policyFile, `[payment]\naccepts = ["spiffe://example.org/order.internal"]\n`);
    svc = await startService({
      service: "payment",
      app: appNamed("payment")!,
      pkiDir: dir,
      policyFile,
      port: 0,
      log: createLogger("payment", logs),
    });
    const tp = { ca } as unknown as TestPki;
    const who = (n: string) => ({
      cert: readFileSync(ca.paths.leaf(`${n}.internal`).cert),
      key: readFileSync(ca.paths.leaf(`${n}.internal`).key),
    });
    assert.deepEqual(await call(tp, svc.port, "payment.internal", who("order"), "GET", "/healthz"), {
      status: 200,
      body: { service: "payment", caller: "order" },
    });
    const no = await call(tp, svc.port, "payment.internal", who("edge"), "GET", "/healthz");
    assert.equal("status" in no && no.status, 403);
    // A certificate of this CA claiming the default trust domain is another trust domain here.
    const key = join(root, "x.key"),
      csr = join(root, "x.csr"),
      crt = join(root, "x.crt"),
      ext = join(root, "x.ext");
    execFileSync(
      "openssl",
      [
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        "/CN=order.internal",
      ],
      { stdio: "pipe" },
    );
    writeFileSync(
      ext,
      "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:order.internal,URI:spiffe://internal/order\n",
    );
    execFileSync(
      "openssl",
      [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca.paths.root(1).cert,
        "-CAkey",
        ca.paths.root(1).key,
        "-set_serial",
        "0x5151",
        "-days",
        "5",
        "-extfile",
        ext,
        "-out",
        crt,
      ],
      { stdio: "pipe" },
    );
    const since = logs.lines.length;
    const r = await call(
      tp,
      svc.port,
      "payment.internal",
      { cert: readFileSync(crt), key: readFileSync(key) },
      "GET",
      "/healthz",
    );
    assert.ok("error" in r, JSON.stringify(r));
    assert.equal((await logs.wait(ev("tls.handshake_failed"), 5_000, since)).reason, "spiffe_foreign_domain");
  } finally {
    await svc?.close();
    ca.close();
    rmSync(root, { recursive: true, force: true });
  }
});
