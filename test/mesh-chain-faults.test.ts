// A client's chain that OpenSSL refuses is logged with the fault it has, read from the
// chain the client presented: OpenSSL reports only its last error (with CRLs on, often
// UNABLE_TO_GET_CRL or UNSPECIFIED), which hides the first and real one.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freshPki, start, call, type TestPki, type TestService, type Identity, type LogLine } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

let pki: TestPki;
let twin: TestPki;
let pay: TestService;

before(async () => {
  pki = await freshPki();
  // Another CA with the very same name, and its own key.
  twin = await freshPki(undefined, "Mesh Test CA");
  pay = await start(pki, "payment", { watch: false });
});

after(async () => {
  await pay.svc.close();
  pki.cleanup();
  twin.cleanup();
});

interface Made {
  cert: string;
  key: string;
}

/** A certificate made with openssl, signed by `by` (or self-signed), with the given extensions. */
function make(stem: string, subj: string, ext: string, by?: Made): Made {
  const d = pki.root;
  const key = join(d, `${stem}.key`);
  const csr = join(d, `${stem}.csr`);
  const cert = join(d, `${stem}.crt`);
  const extFile = join(d, `${stem}.ext`);
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
      subj,
    ],
    { stdio: "pipe" },
  );
  writeFileSync(extFile, `${ext}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
  const signer = by ? ["-CA", by.cert, "-CAkey", by.key] : ["-signkey", key];
  execFileSync(
    "openssl",
    [
      "x509",
      "-req",
      "-in",
      csr,
      ...signer,
      "-set_serial",
      `0x${Math.floor(Math.random() * 2 ** 48).toString(16)}`,
      "-days",
      "5",
      "-extfile",
      extFile,
      "-out",
      cert,
    ],
    { stdio: "pipe" },
  );
  return { cert, key };
}

const LEAF =
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth,serverAuth\nsubjectAltName=DNS:order.internal";

/** `leaf` with the chain it sends after it. */
function sending(leaf: Made, ...chain: Made[]): Identity {
  return { cert: [leaf, ...chain].map((c) => readFileSync(c.cert, "utf8")).join(""), key: readFileSync(leaf.key) };
}

function meshRoot(): Made {
  const r = pki.ca.paths.root(1);
  return { cert: r.cert, key: r.key };
}

async function refused(who: Identity): Promise<LogLine> {
  const since = pay.logs.lines.length;
  const r = await call(pki, pay.svc.port, "payment.internal", who, "GET", "/healthz");
  assert.ok("error" in r, `expected a refusal, got ${JSON.stringify(r)}`);
  const l = await pay.logs.wait(ev("tls.handshake_failed"), 3_000, since);
  assert.equal(pay.logs.lines.slice(since).filter(ev("request")).length, 0);
  return l;
}

test("a look-alike CA (same name, another key): the same sentence whether its certificate is sent or not", async () => {
  const t = twin.ca.paths.leaf("order.internal");
  const leaf = { cert: t.cert, key: t.key };
  const root = twin.ca.paths.root(1);
  for (const who of [sending(leaf), sending(leaf, { cert: root.cert, key: root.key })]) {
    const l = await refused(who);
    assert.equal(l.reason, "unknown_ca", String(l.tlsCode));
    assert.match(String(l.msg), /another CA with the same name/);
    assert.deepEqual(l.trusts, ["CN=Mesh Test CA"]);
  }
});

test("an issuer that is not a CA: issuer_not_ca, naming it", async () => {
  const notCa = make(
    "notca",
    "/CN=edge.internal",
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyCertSign\nsubjectAltName=DNS:edge.internal",
    meshRoot(),
  );
  const leaf = make("undernotca", "/CN=order.internal", LEAF, notCa);
  const l = await refused(sending(leaf, notCa));
  assert.equal(l.reason, "issuer_not_ca", String(l.tlsCode));
  assert.match(String(l.msg), /CN=edge\.internal, which signed CN=order\.internal, is not a CA certificate/);
});

test("an intermediate without keyCertSign: issuer_cannot_sign, naming it", async () => {
  const inter = make(
    "nosign",
    "/CN=Sloppy Issuing CA",
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,cRLSign",
    meshRoot(),
  );
  const leaf = make("undernosign", "/CN=order.internal", LEAF, inter);
  const l = await refused(sending(leaf, inter));
  assert.equal(l.reason, "issuer_cannot_sign", String(l.tlsCode));
  assert.match(
    String(l.msg),
    /CN=Sloppy Issuing CA, which signed CN=order\.internal, may not sign certificates \(its key usage lacks keyCertSign\)/,
  );
});

test("a path-length violation: path_length_exceeded, naming the constraining CA", async () => {
  const top = make(
    "plen0",
    "/CN=Level One CA",
    "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign",
    meshRoot(),
  );
  const below = make(
    "plen1",
    "/CN=Level Two CA",
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign",
    top,
  );
  const leaf = make("underplen", "/CN=order.internal", LEAF, below);
  const l = await refused(sending(leaf, below, top));
  assert.equal(l.reason, "path_length_exceeded", String(l.tlsCode));
  assert.match(String(l.msg), /CN=Level One CA allows no CA below it \(pathLenConstraint 0\), but CN=Level Two CA is/);
});

test("caFacts reads basicConstraints and keyUsage from DER, and gives up on garbage without throwing", async () => {
  const { caFacts } = await import("../services/mesh/chain.ts");
  const { X509Certificate } = await import("node:crypto");
  const der = (path: string) => new X509Certificate(readFileSync(path)).raw;
  assert.deepEqual(caFacts(der(pki.ca.paths.root(1).cert)), { ca: true, pathLen: undefined, keyCertSign: true });
  assert.deepEqual(caFacts(der(pki.ca.paths.leaf("order.internal").cert)), {
    ca: false,
    pathLen: undefined,
    keyCertSign: false,
  });
  const top = make(
    "facts0",
    "/CN=Facts CA",
    "basicConstraints=critical,CA:TRUE,pathlen:3\nkeyUsage=critical,keyCertSign",
    meshRoot(),
  );
  assert.deepEqual(caFacts(der(top.cert)), { ca: true, pathLen: 3, keyCertSign: true });
  for (const junk of [
    new Uint8Array([]),
    new Uint8Array([0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
    new Uint8Array([0x30, 0x03, 0x30, 0x05, 0x00]),
    der(top.cert).subarray(0, 100),
  ]) {
    assert.equal(caFacts(junk), undefined);
  }
});

test("a caller facing a look-alike callee says so too (another CA with the same name), sent with its chain or not", async () => {
  const { Upstreams, UpstreamError } = await import("../services/mesh/client.ts");
  const { loadMaterial, materialPaths } = await import("../services/mesh/material.ts");
  const { createLogger } = await import("../services/mesh/log.ts");
  const { LogSink } = await import("./mesh-fixtures.ts");
  const { createServer } = await import("node:tls");
  const t = twin.ca.paths.leaf("payment.internal");
  const twinRoot = readFileSync(twin.ca.paths.root(1).cert, "utf8");
  for (const cert of [readFileSync(t.cert, "utf8"), readFileSync(t.cert, "utf8") + twinRoot]) {
    const fake = createServer({ cert, key: readFileSync(t.key) }, (s) => s.end());
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
    const logs = new LogSink();
    const up = new Upstreams(
      "order",
      loadMaterial(materialPaths(pki.dir, "order.internal"), "order.internal"),
      { payment: `127.0.0.1:${(fake.address() as { port: number }).port}` },
      createLogger("order", logs),
    );
    try {
      await assert.rejects(up.call("payment", "GET", "/healthz"), (e: unknown) => e instanceof UpstreamError);
      const l = await logs.wait(ev("upstream.failed"));
      assert.equal(l.reason, "server_untrusted", String(l.code));
      assert.match(String(l.msg), /another CA with the same name/);
      assert.equal((l.peer as { issuer?: string }).issuer, "CN=Mesh Test CA");
    } finally {
      await up.close();
      await new Promise((r) => fake.close(r));
    }
  }
});
