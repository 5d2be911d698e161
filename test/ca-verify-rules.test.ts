// verify is the CA's answer to "would this be accepted?": these chains must
// be refused as OpenSSL (and Node's TLS) refuse them, and accepted where they
// accept them. Each case runs our verify and `openssl verify` on the same files.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, createServer, type TLSSocket } from "node:tls";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/index.ts";
import { sequence, tlv } from "../lib/der.ts";
import { generateKeyPair } from "../ca/keys.ts";
import { exportPrivateKey } from "../ca/keys.ts";
import { randomSerial, validityFor, type Signer } from "../ca/profiles.ts";
import { verifyPath, type Check, type Purpose } from "../ca/verify.ts";
import { certToPem, x509 } from "../ca/x509.ts";
import { verifyReport } from "../ca/format.ts";
import { cleanup, openssl, tempDir } from "./helpers/ca.ts";

const ECDSA = { name: "ECDSA", hash: "SHA-256" } as EcdsaParams;
const ku = (flags: number) => new x509.KeyUsagesExtension(flags, true);
const CA_KU = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;

// --- DER for name constraints, built by hand so every form can be expressed ---
const ascii = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
const gn = {
  dns: (s: string) => tlv(0x82, ascii(s)),
  uri: (s: string) => tlv(0x86, ascii(s)),
  email: (s: string) => tlv(0x81, ascii(s)),
  /** "10.0.0.0/8" or "fd00::/8" as address || mask. */
  ip: (cidr: string) => {
    const [addr, bits] = cidr.split("/") as [string, string];
    const bytes = ipBytes(addr);
    const mask = bytes
      .map((_, i) => Math.max(0, Math.min(8, Number(bits) - 8 * i)))
      .map((n) => (0xff << (8 - n)) & 0xff);
    return tlv(0x87, new Uint8Array([...bytes, ...mask]));
  },
  dir: (dn: string) => tlv(0xa4, new Uint8Array(new x509.Name(dn).toArrayBuffer())),
};
function ipBytes(ip: string): number[] {
  if (ip.includes(".")) return ip.split(".").map(Number);
  const [l, r] = ip.split("::") as [string, string | undefined];
  const left = l ? l.split(":") : [];
  const right = r ? r.split(":") : [];
  const groups = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]);
}
function nameConstraints(opts: {
  permitted?: Uint8Array[];
  excluded?: Uint8Array[];
  critical?: boolean;
}): x509.Extension {
  const parts: Uint8Array[] = [];
  if (opts.permitted) parts.push(tlv(0xa0, new Uint8Array(Buffer.concat(opts.permitted.map((b) => sequence([b]))))));
  if (opts.excluded) parts.push(tlv(0xa1, new Uint8Array(Buffer.concat(opts.excluded.map((b) => sequence([b]))))));
  return new x509.Extension("2.5.29.30", opts.critical ?? true, sequence(parts));
}

describe("verify refuses what OpenSSL refuses (issue 8, item 3)", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let root: Signer;

  async function makeCa(opts: {
    name: string | x509.JsonName;
    issuer: Signer;
    pathLen?: number;
    extensions?: x509.Extension[];
    selfIssued?: boolean;
  }): Promise<Signer> {
    const keys = await generateKeyPair("ec-p256");
    const subject = opts.selfIssued
      ? opts.issuer.cert.subjectName
      : typeof opts.name === "string"
        ? [{ CN: [opts.name] }]
        : opts.name;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject,
      issuer: opts.issuer.cert.subjectName,
      ...validityFor(new Date(), 365),
      publicKey: keys.publicKey,
      signingKey: opts.issuer.key,
      signingAlgorithm: ECDSA,
      extensions: [
        new x509.BasicConstraintsExtension(true, opts.pathLen, true),
        ku(CA_KU),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        new x509.AuthorityKeyIdentifierExtension(
          opts.issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
        ),
        ...(opts.extensions ?? []),
      ],
    });
    return { cert, key: keys.privateKey, keyType: "ec-p256" };
  }

  async function makeLeaf(
    issuer: Signer,
    opts: {
      subject?: x509.JsonName | string;
      dns?: string[];
      ip?: string[];
      san?: boolean;
      extra?: (keys: CryptoKeyPair) => Promise<x509.Extension[]>;
    },
  ) {
    const keys = await generateKeyPair("ec-p256");
    const dns = opts.dns ?? [];
    const names: x509.JsonGeneralNames = [
      ...dns.map((value) => ({ type: "dns" as const, value })),
      ...(opts.ip ?? []).map((value) => ({ type: "ip" as const, value })),
    ];
    const subject = opts.subject ?? [{ CN: [dns[0] ?? "leaf"] }];
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: typeof subject === "string" ? subject : subject,
      issuer: issuer.cert.subjectName,
      ...validityFor(new Date(), 30),
      publicKey: keys.publicKey,
      signingKey: issuer.key,
      signingAlgorithm: ECDSA,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        ku(x509.KeyUsageFlags.digitalSignature),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        ...(opts.san === false || names.length === 0 ? [] : [new x509.SubjectAlternativeNameExtension(names)]),
        ...(opts.extra
          ? await opts.extra(keys)
          : [
              await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
              new x509.AuthorityKeyIdentifierExtension(
                issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
              ),
            ]),
      ],
    });
    return { cert, key: keys.privateKey };
  }

  const files = (name: string, certs: x509.X509Certificate[]) => {
    const file = join(dir, `${name}-${Math.random().toString(36).slice(2)}.pem`);
    writeFileSync(file, certs.map(certToPem).join(""));
    return file;
  };

  /** Our verdict and openssl's on the same chain, trust and purpose; revocation left out of both. */
  async function both(
    chain: x509.X509Certificate[],
    opts: { trusted?: x509.X509Certificate[]; purpose?: Purpose } = {},
  ) {
    const trusted = opts.trusted ?? [root.cert];
    const purpose = opts.purpose ?? "server";
    const result = await verifyPath({ certs: chain, trusted, at: new Date(), purpose });
    const leafFile = files("leaf", chain.slice(0, 1));
    const args = [
      "verify",
      "-x509_strict",
      "-purpose",
      purpose === "client" ? "sslclient" : "sslserver",
      "-CAfile",
      files("trust", trusted),
    ];
    if (chain.length > 1) args.push("-untrusted", files("chain", chain.slice(1)));
    const ossl = openssl([...args, leafFile]);
    return { result, ossl };
  }

  async function refused(
    chain: x509.X509Certificate[],
    check: Check,
    message: RegExp,
    opts: Parameters<typeof both>[1] & { openssl?: RegExp | "accepts" } = {},
  ) {
    const { result, ossl } = await both(chain, opts);
    assert.equal(result.ok, false, "verify must refuse it");
    assert.equal(result.failed!.check, check, result.failed!.message);
    assert.match(result.failed!.message, message);
    if (opts.openssl === "accepts")
      assert.equal(ossl.code, 0, `documented as stricter than openssl, which accepts it: ${ossl.out}`);
    else {
      assert.notEqual(ossl.code, 0, `openssl must refuse it too: ${ossl.out}`);
      if (opts.openssl) assert.match(ossl.out, opts.openssl);
    }
  }

  async function accepted(chain: x509.X509Certificate[], opts: Parameters<typeof both>[1] = {}) {
    const { result, ossl } = await both(chain, opts);
    assert.equal(result.ok, true, result.failed?.message);
    assert.equal(ossl.code, 0, `openssl must accept it too: ${ossl.out}`);
  }

  before(async () => {
    dir = tempDir();
    ca = await CertificateAuthority.init({ dir: join(dir, "pki"), name: "Rules Root" });
    root = await ca.signer("root-1");
  });
  after(() => {
    ca.close();
    cleanup(dir);
  });

  describe("a CA certificate is never accepted as the certificate to verify", () => {
    for (const purpose of ["mesh", "server", "client"] as const) {
      it(`the root itself, purpose ${purpose}`, async () => {
        const { result, ossl } = await both([root.cert], { purpose });
        assert.equal(result.ok, false);
        assert.equal(result.failed!.check, "basic-constraints");
        assert.match(
          result.failed!.message,
          /^Rules Root is a CA certificate, not a service certificate: it is not accepted as a peer for any purpose \(OpenSSL: unsuitable certificate purpose\)$/,
        );
        assert.notEqual(ossl.code, 0);
        assert.match(ossl.out, /unsuitable certificate purpose/);
      });
    }
    it("an intermediate given alone", async () => {
      const int = await makeCa({ name: "Lone Int", issuer: root, pathLen: 0 });
      await refused([int.cert], "basic-constraints", /Lone Int is a CA certificate/, {
        openssl: /unsuitable certificate purpose/,
      });
    });
  });

  describe("a critical key identifier is refused (RFC 5280: MUST be non-critical)", () => {
    it("critical authority key identifier", async () => {
      const leaf = await makeLeaf(root, {
        dns: ["aki.internal"],
        extra: async (k) => [
          await x509.SubjectKeyIdentifierExtension.create(k.publicKey),
          new x509.AuthorityKeyIdentifierExtension(
            root.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
            true,
          ),
        ],
      });
      await refused(
        [leaf.cert],
        "critical-extension",
        /aki\.internal marks its authority key identifier \(RFC 5280 4\.2\.1\.1\) extension critical, which RFC 5280 forbids/,
        { openssl: /unhandled critical extension|authority key identifier is critical/i },
      );
    });
    it("critical subject key identifier, on an intermediate", async () => {
      const keys = await generateKeyPair("ec-p256");
      const skiCritical = new x509.Extension(
        "2.5.29.14",
        true,
        (await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)).value,
      );
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: [{ CN: ["SKI Int"] }],
        issuer: root.cert.subjectName,
        ...validityFor(new Date(), 365),
        publicKey: keys.publicKey,
        signingKey: root.key,
        signingAlgorithm: ECDSA,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          ku(CA_KU),
          skiCritical,
          new x509.AuthorityKeyIdentifierExtension(root.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId),
        ],
      });
      const int: Signer = { cert, key: keys.privateKey, keyType: "ec-p256" };
      const leaf = await makeLeaf(int, { dns: ["ski.internal"] });
      await refused(
        [leaf.cert, int.cert],
        "critical-extension",
        /SKI Int marks its subject key identifier \(RFC 5280 4\.2\.1\.2\) extension critical/,
        { openssl: /unhandled critical extension|subject key identifier is critical/i },
      );
    });
  });

  describe("only a self-signed trusted certificate is a trust anchor", () => {
    let int: Signer;
    let leaf: { cert: x509.X509Certificate; key: CryptoKey };
    before(async () => {
      int = await makeCa({ name: "Trusted Int", issuer: root, pathLen: 0 });
      leaf = await makeLeaf(int, { dns: ["anchor.internal"] });
    });

    it("an intermediate trusted on its own does not anchor the path (openssl without -partial_chain agrees)", async () => {
      await refused(
        [leaf.cert, int.cert],
        "trust",
        /^Trusted Int is trusted but not self-signed, so it is not a trust anchor \(OpenSSL and Node refuse such a chain too\): trust the root it chains to$/,
        { trusted: [int.cert], openssl: /unable to get issuer certificate/ },
      );
    });
    it("with its root also trusted, the path runs on to the root", async () => {
      const r = await both([leaf.cert], { trusted: [int.cert, root.cert] });
      assert.equal(r.result.ok, true, r.result.failed?.message);
      assert.deepEqual(
        r.result.chain.map((c) => c.subjectName.getField("CN")[0]),
        ["anchor.internal", "Trusted Int", "Rules Root"],
      );
      assert.equal(r.ossl.code, 0, r.ossl.out);
    });
    it("Node's TLS, as the mesh runs it, makes the same decision in a real handshake", async () => {
      const key = await exportPrivateKey(leaf.key);
      const handshake = (trusted: x509.X509Certificate[]) =>
        new Promise<string>((resolve) => {
          const server = createServer({ cert: certToPem(leaf.cert) + certToPem(int.cert), key }, (s) => s.end());
          server.listen(0, "127.0.0.1", () => {
            const { port } = server.address() as { port: number };
            const socket: TLSSocket = connect(
              { host: "127.0.0.1", port, servername: "anchor.internal", ca: trusted.map(certToPem) },
              () => {
                socket.end();
                server.close();
                resolve("ok");
              },
            );
            socket.on("error", (err: NodeJS.ErrnoException) => {
              server.close();
              resolve(err.code ?? err.message);
            });
          });
        });
      assert.equal(await handshake([int.cert]), "UNABLE_TO_GET_ISSUER_CERT");
      assert.equal(await handshake([root.cert]), "ok");
    });
  });

  describe("name constraints (RFC 5280 4.2.1.10): DNS, IP, directoryName; permitted and excluded", () => {
    it("permitted DNS: inside passes, outside fails", async () => {
      const c = await makeCa({
        name: "DNS CA",
        issuer: root,
        pathLen: 0,
        extensions: [nameConstraints({ permitted: [gn.dns("internal")] })],
      });
      await accepted([(await makeLeaf(c, { dns: ["ok.internal"] })).cert, c.cert]);
      await refused(
        [(await makeLeaf(c, { dns: ["ok.internal", "bank.example.com"] })).cert, c.cert],
        "name-constraints",
        /^bank\.example\.com is outside the names DNS CA may certify \(internal\)$/,
        { openssl: /permitted subtree violation/ },
      );
    });

    it("excluded DNS: a name under it fails, others pass", async () => {
      const c = await makeCa({
        name: "Excl CA",
        issuer: root,
        pathLen: 0,
        extensions: [nameConstraints({ excluded: [gn.dns("secret.internal")] })],
      });
      await accepted([(await makeLeaf(c, { dns: ["open.internal"] })).cert, c.cert]);
      await refused(
        [(await makeLeaf(c, { dns: ["db.secret.internal"] })).cert, c.cert],
        "name-constraints",
        /^db\.secret\.internal is in a subtree Excl CA excludes \(secret\.internal\)$/,
        { openssl: /excluded subtree violation/ },
      );
      await refused([(await makeLeaf(c, { dns: ["SECRET.internal"] })).cert, c.cert], "name-constraints", /excludes/, {
        openssl: /excluded subtree violation/,
      });
    });

    it("only an IP range permitted: DNS names are not restricted by it, IPs are", async () => {
      const c = await makeCa({
        name: "IP CA",
        issuer: root,
        pathLen: 0,
        extensions: [nameConstraints({ permitted: [gn.ip("10.0.0.0/8")] })],
      });
      await accepted([(await makeLeaf(c, { dns: ["payment.internal"], ip: ["10.1.2.3"] })).cert, c.cert]);
      await accepted([(await makeLeaf(c, { dns: ["payment.internal"] })).cert, c.cert]);
      await refused(
        [(await makeLeaf(c, { dns: ["payment.internal"], ip: ["192.168.1.1"] })).cert, c.cert],
        "name-constraints",
        /^192\.168\.1\.1 is outside the names IP CA may certify \(10\.0\.0\.0\/8\)$/,
        { openssl: /permitted subtree violation/ },
      );
    });

    it("IPv6 ranges, and an IPv4 address under an IPv6-only permit", async () => {
      const c = await makeCa({
        name: "V6 CA",
        issuer: root,
        pathLen: 0,
        extensions: [nameConstraints({ permitted: [gn.ip("fd00::/8")], excluded: [gn.ip("fd99::/16")] })],
      });
      await accepted([(await makeLeaf(c, { dns: ["v6.internal"], ip: ["fd12::1"] })).cert, c.cert]);
      await refused(
        [(await makeLeaf(c, { dns: ["v6.internal"], ip: ["2001:db8::1"] })).cert, c.cert],
        "name-constraints",
        /^2001:db8::1 is outside the names V6 CA may certify \(fd00::\/8\)$/,
        { openssl: /permitted subtree violation/ },
      );
      await refused(
        [(await makeLeaf(c, { dns: ["v6.internal"], ip: ["fd99::5"] })).cert, c.cert],
        "name-constraints",
        /^fd99::5 is in a subtree V6 CA excludes \(fd99::\/16\)$/,
        { openssl: /excluded subtree violation/ },
      );
      await refused(
        [(await makeLeaf(c, { dns: ["v6.internal"], ip: ["10.0.0.1"] })).cert, c.cert],
        "name-constraints",
        /^10\.0\.0\.1 is outside/,
        { openssl: /permitted subtree violation/ },
      );
    });

    it("excluded IPv4 range", async () => {
      const c = await makeCa({
        name: "ExclIP CA",
        issuer: root,
        pathLen: 0,
        extensions: [nameConstraints({ excluded: [gn.ip("10.9.0.0/16")] })],
      });
      await accepted([(await makeLeaf(c, { dns: ["a.internal"], ip: ["10.8.255.255"] })).cert, c.cert]);
      await refused(
        [(await makeLeaf(c, { dns: ["a.internal"], ip: ["10.9.1.1"] })).cert, c.cert],
        "name-constraints",
        /^10\.9\.1\.1 is in a subtree ExclIP CA excludes \(10\.9\.0\.0\/16\)$/,
        { openssl: /excluded subtree violation/ },
      );
    });

    it("directoryName: the subject must start with a permitted RDN sequence (compared as OpenSSL does), and not with an excluded one", async () => {
      const c = await makeCa({
        name: "DN CA",
        issuer: root,
        pathLen: 0,
        extensions: [nameConstraints({ permitted: [gn.dir("O=Acme")], excluded: [gn.dir("O=Acme, OU=Evil")] })],
      });
      await accepted([
        (await makeLeaf(c, { subject: [{ O: ["Acme"] }, { CN: ["dn.internal"] }], dns: ["dn.internal"] })).cert,
        c.cert,
      ]);
      await accepted([
        (await makeLeaf(c, { subject: [{ O: ["  ACME "] }, { CN: ["dn.internal"] }], dns: ["dn.internal"] })).cert,
        c.cert,
      ]);
      await refused(
        [(await makeLeaf(c, { dns: ["dn.internal"] })).cert, c.cert],
        "name-constraints",
        /^the subject "CN=dn\.internal" is outside the names DN CA may certify \(O=Acme\)$/,
        { openssl: /permitted subtree violation/ },
      );
      await refused(
        [
          (await makeLeaf(c, { subject: [{ CN: ["dn.internal"] }, { O: ["Acme"] }], dns: ["dn.internal"] })).cert,
          c.cert,
        ],
        "name-constraints",
        /is outside/,
        { openssl: /permitted subtree violation/ },
      );
      await refused(
        [
          (
            await makeLeaf(c, {
              subject: [{ O: ["Acme"] }, { OU: ["Evil"] }, { CN: ["x.internal"] }],
              dns: ["x.internal"],
            })
          ).cert,
          c.cert,
        ],
        "name-constraints",
        /^the subject "O=Acme, OU=Evil, CN=x\.internal" is in a subtree DN CA excludes \(O=Acme, OU=Evil\)$/,
        { openssl: /excluded subtree violation/ },
      );
    });

    it("applies to every certificate below the constraining CA: an intermediate's SANs and subject", async () => {
      const top = await makeCa({
        name: "Top CA",
        issuer: root,
        pathLen: 1,
        extensions: [nameConstraints({ permitted: [gn.dns("internal")], excluded: [gn.dir("CN=Rogue CA")] })],
      });
      const san = new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "ca.evil.com" }]);
      const rogueSan = await makeCa({ name: "Sub CA", issuer: top, pathLen: 0, extensions: [san] });
      await refused(
        [(await makeLeaf(rogueSan, { dns: ["fine.internal"] })).cert, rogueSan.cert, top.cert],
        "name-constraints",
        /^ca\.evil\.com \(a name of Sub CA\) is outside the names Top CA may certify \(internal\)$/,
        { openssl: /permitted subtree violation/ },
      );
      const rogueName = await makeCa({ name: "Rogue CA", issuer: top, pathLen: 0 });
      await refused(
        [(await makeLeaf(rogueName, { dns: ["fine.internal"] })).cert, rogueName.cert, top.cert],
        "name-constraints",
        /^the subject "CN=Rogue CA" \(a name of Rogue CA\) is in a subtree Top CA excludes \(CN=Rogue CA\)$/,
        { openssl: /excluded subtree violation/ },
      );
      const good = await makeCa({ name: "Good Sub CA", issuer: top, pathLen: 0 });
      await accepted([(await makeLeaf(good, { dns: ["fine.internal"] })).cert, good.cert, top.cert]);
    });

    it("a self-issued intermediate is exempt; the leaf below it is not", async () => {
      const top = await makeCa({
        name: "Rollover CA",
        issuer: root,
        pathLen: 1,
        extensions: [nameConstraints({ permitted: [gn.dir("O=Acme")] })],
      });
      // Same subject as its issuer (a key rollover): its own name is outside O=Acme, and that is allowed.
      const rolled = await makeCa({ name: "", issuer: top, pathLen: 0, selfIssued: true });
      const ok = await verifyPath({
        certs: [
          (await makeLeaf(rolled, { subject: [{ O: ["Acme"] }, { CN: ["r.internal"] }], dns: ["r.internal"] })).cert,
          rolled.cert,
          top.cert,
        ],
        trusted: [root.cert],
        at: new Date(),
        purpose: "server",
      });
      assert.equal(ok.ok, true, ok.failed?.message);
      assert.equal(ok.chain.length, 4);
      const bad = await verifyPath({
        certs: [(await makeLeaf(rolled, { dns: ["r.internal"] })).cert, rolled.cert, top.cert],
        trusted: [root.cert],
        at: new Date(),
        purpose: "server",
      });
      assert.equal(bad.failed?.check, "name-constraints");
      assert.match(
        bad.failed!.message,
        /^the subject "CN=r\.internal" is outside the names Rollover CA may certify \(O=Acme\)$/,
      );
    });

    it("a leaf's CN counts as a DNS name when it has no DNS SAN, as in OpenSSL; with a DNS SAN the CN is not a name", async () => {
      const c = await makeCa({
        name: "CN CA",
        issuer: root,
        pathLen: 0,
        extensions: [nameConstraints({ permitted: [gn.dns("internal")] })],
      });
      await refused(
        [(await makeLeaf(c, { subject: [{ CN: ["evil.example.com"] }], ip: ["10.0.0.1"] })).cert, c.cert],
        "name-constraints",
        /^evil\.example\.com is outside the names CN CA may certify \(internal\)$/,
        { openssl: /permitted subtree violation/ },
      );
      await accepted([
        (await makeLeaf(c, { subject: [{ CN: ["evil.example.com"] }], dns: ["ok.internal"] })).cert,
        c.cert,
      ]);
      await accepted([(await makeLeaf(c, { subject: [{ CN: ["not a host name"] }], ip: ["10.0.0.1"] })).cert, c.cert]);
    });

    it("a constraint on the trust anchor applies too (as OpenSSL applies it)", async () => {
      const keys = await generateKeyPair("ec-p256");
      const cert = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: randomSerial(),
        name: [{ CN: ["Constrained Root"] }],
        ...validityFor(new Date(), 365),
        keys,
        signingAlgorithm: ECDSA,
        extensions: [
          new x509.BasicConstraintsExtension(true, undefined, true),
          ku(CA_KU),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
          nameConstraints({ permitted: [gn.dns("internal")] }),
        ],
      });
      const croot: Signer = { cert, key: keys.privateKey, keyType: "ec-p256" };
      await refused(
        [(await makeLeaf(croot, { dns: ["x.example.com"] })).cert],
        "name-constraints",
        /^x\.example\.com is outside the names Constrained Root may certify/,
        { trusted: [cert], openssl: /permitted subtree violation/ },
      );
    });

    it("a form this verifier does not process fails closed, critical or not, with a clear message", async () => {
      for (const [form, base, shown] of [
        ["URI", gn.uri(".internal"), /uniformResourceIdentifier \(URI\)/],
        ["email", gn.email("acme.com"), /rfc822Name \(email\)/],
      ] as const) {
        for (const critical of [true, false]) {
          const c = await makeCa({
            name: `${form} CA`,
            issuer: root,
            pathLen: 0,
            extensions: [nameConstraints({ permitted: [base], critical })],
          });
          const { result } = await both([(await makeLeaf(c, { dns: ["plain.internal"] })).cert, c.cert]);
          assert.equal(result.failed?.check, "name-constraints", `${form} critical=${critical}`);
          assert.match(
            result.failed!.message,
            new RegExp(
              `^${form} CA has ${critical ? "critical " : ""}name constraints that cannot be checked, so nothing it certifies is accepted: it constrains ${shown.source} names, which this verifier does not process$`,
            ),
          );
        }
      }
    });

    it("a second subjectAltName extension is refused, not left unchecked (OpenSSL refuses it too)", async () => {
      const c = await makeCa({
        name: "Twice CA",
        issuer: root,
        pathLen: 0,
        extensions: [nameConstraints({ permitted: [gn.dns("internal")] })],
      });
      const leaf = await makeLeaf(c, {
        dns: ["ok.internal"],
        extra: async (k) => [
          new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "bank.example.com" }]),
          await x509.SubjectKeyIdentifierExtension.create(k.publicKey),
          new x509.AuthorityKeyIdentifierExtension(c.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId),
        ],
      });
      await refused(
        [leaf.cert, c.cert],
        "parse",
        /^ok\.internal carries the extension 2\.5\.29\.17 twice, which RFC 5280 forbids$/,
      );
    });

    it("a wildcard that would cover an excluded host is refused (stricter than openssl, which compares strings)", async () => {
      const c = await makeCa({
        name: "Wild CA",
        issuer: root,
        pathLen: 0,
        extensions: [nameConstraints({ excluded: [gn.dns("db.svc.internal")] })],
      });
      await refused(
        [(await makeLeaf(c, { dns: ["*.svc.internal"] })).cert, c.cert],
        "name-constraints",
        /^\*\.svc\.internal is in a subtree Wild CA excludes \(db\.svc\.internal\)$/,
        { openssl: "accepts" },
      );
      await accepted([(await makeLeaf(c, { dns: ["*.web.internal"] })).cert, c.cert]);
    });
  });

  describe("the peer's names", () => {
    // The services refuse such a peer as ambiguous_identity (services/mesh/peer-identity.ts); OpenSSL does not look.
    it("a CA-signed certificate with two CNs is refused (stricter than openssl, which accepts it)", async () => {
      const leaf = await makeLeaf(root, {
        subject: [{ CN: ["order.internal"] }, { CN: ["payment.internal"] }],
        dns: ["order.internal", "payment.internal"],
      });
      await refused([leaf.cert], "name", /has 2 common names \(order\.internal, payment\.internal\)/, {
        openssl: "accepts",
      });
    });
    it("with a name asked for, a certificate without it is refused and one with it accepted (OpenSSL's X509_check_host and X509_check_ip)", async () => {
      const leaf = await makeLeaf(root, { dns: ["order.internal"], ip: ["127.0.0.1"] });
      const at = new Date();
      const check = (name: string) =>
        verifyPath({ certs: [leaf.cert], trusted: [root.cert], at, purpose: "server", name });
      assert.equal((await check("order.internal")).ok, true);
      assert.equal((await check("127.0.0.1")).ok, true);
      const wrong = await check("payment.internal");
      assert.equal(wrong.failed?.check, "name");
      assert.match(
        wrong.failed!.message,
        /does not hold the name payment\.internal \(its subjectAltName: DNS:order\.internal, IP Address:127\.0\.0\.1\)/,
      );
      assert.equal((await check("127.0.0.2")).failed?.check, "name");
    });
  });

  it("names from certificates are printed escaped: a CN cannot forge report lines or send terminal escapes", async () => {
    const evil = "x.internal\n  chain    Forged\u001b[2J";
    const stranger = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: [{ CN: ["Stranger\u001b]0;pwned\u0007"] }],
      ...validityFor(new Date(), 30),
      keys: await generateKeyPair("ec-p256"),
      signingAlgorithm: ECDSA,
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true), ku(CA_KU)],
    });
    const keys = await generateKeyPair("ec-p256");
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: [{ CN: [evil] }],
      issuer: stranger.subjectName,
      ...validityFor(new Date(), 30),
      publicKey: keys.publicKey,
      signingKey: (await generateKeyPair("ec-p256")).privateKey,
      signingAlgorithm: ECDSA,
      extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
    });
    const r = await verifyPath({ certs: [leaf], trusted: [root.cert], at: new Date(), purpose: "server" });
    assert.equal(r.failed?.check, "trust");
    const report = verifyReport("peer.crt", r);
    assert.doesNotMatch(report, /[\u0000-\u0009\u000b-\u001f]/, "no control character but the report's own newlines");
    assert.equal(report.split("\n").length, 2, report);
    assert.match(report, /x\.internal\\x0a  chain    Forged\\x1b\[2J was issued by "Stranger\\x1b\]0;pwned\\x07"/);
  });
});
