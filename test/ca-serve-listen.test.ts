// Where the CA server listens and what its certificate names, for clients on other machines:
// --listen 0.0.0.0 needs --san (the address or name clients use), which goes into the server
// certificate; bad values are one line and exit 2 before anything listens.
import { test } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { connect } from "node:tls";
import { ca as runCa, cleanup, tempDir } from "./helpers/ca.ts";
import { startCa } from "./helpers/est.ts";
import { CertificateAuthority } from "../ca/index.ts";

test("ca serve --listen 0.0.0.0 without --san, a bad --san or --retention: one line, exit 2, nothing listens", async () => {
  const dir = tempDir();
  try {
    (await CertificateAuthority.init({ dir, name: "Listen CA" })).close();
    const cases: Array<[string[], RegExp]> = [
      [["--listen", "0.0.0.0"], /--listen 0\.0\.0\.0 listens on every interface: say how clients reach it with --san/],
      [["--san", "not a name"], /--san "not a name" is neither an IP address nor a DNS name/],
      [["--listen", "::", "--san", "::"], /--san :: is not an address a client can reach/],
      [["--retention", "a week"], /--retention "a week" is not a duration/],
    ];
    for (const [args, re] of cases) {
      const r = await runCa(["serve", "--dir", dir, "--port", "0", ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.doesNotMatch(r.stdout, /ca\.started/);
    }
  } finally {
    cleanup(dir);
  }
});

test("--san names go into the server certificate, and a client checking one of them connects", async () => {
  const t = await startCa({ host: "127.0.0.1", names: ["127.0.0.2", "ca-alias.internal"] });
  try {
    const cert = new X509Certificate(t.server.certificatePem);
    for (const want of ["IP Address:127.0.0.1", "IP Address:127.0.0.2", "DNS:ca-alias.internal"])
      assert.ok(cert.subjectAltName?.includes(want), `${want} not in ${cert.subjectAltName}`);
    assert.equal(t.server.url, `https://127.0.0.1:${t.server.listeningPort}`);
    const ok = await new Promise<boolean>((resolve, reject) => {
      const sock = connect(
        { host: "127.0.0.1", port: t.server.listeningPort, servername: "ca-alias.internal", ca: t.bundle() },
        () => {
          resolve(sock.authorized);
          sock.end();
        },
      );
      sock.on("error", reject);
    });
    assert.equal(ok, true);
  } finally {
    await t.stop();
  }
});
