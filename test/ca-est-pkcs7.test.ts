// EST's certs-only PKCS#7, encoded by hand (lib/pkcs7.ts): the same bytes as
// @peculiar/x509's encoder for one, two and three certificates, and openssl reads back
// exactly the certificates, in order.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/authority.ts";
import { certsOnlyDer } from "../lib/pkcs7.ts";
import { x509 } from "../ca/x509.ts";
import { cleanup, openssl, tempDir } from "./helpers/ca.ts";

describe("certs-only PKCS#7", () => {
  let root: string;
  let certs: x509.X509Certificate[];
  before(async () => {
    root = tempDir("mesh-p7-");
    const ca = await CertificateAuthority.init({ dir: join(root, "pki"), name: "P7 CA" });
    try {
      await ca.createIntermediate({ name: "P7 Issuing CA" });
      const leaf = await ca.issue({ domain: "p7.internal", dns: ["other.internal"] });
      certs = [new x509.X509Certificate(Buffer.from(leaf.der)), ca.issuerCert("int-1"), ca.issuerCert("root-1")];
    } finally {
      ca.close();
    }
  });
  after(() => cleanup(root));

  for (const n of [0, 1, 2, 3]) {
    it(`${n} certificate(s): the bytes @peculiar/x509 encodes${n ? ", and openssl reads them back in order" : ""}`, () => {
      const chosen = certs.slice(0, n);
      const ours = certsOnlyDer(chosen.map((c) => new Uint8Array(c.rawData)));
      const theirs = new Uint8Array(new x509.X509Certificates(chosen).export("raw"));
      assert.deepEqual(Buffer.from(ours).toString("hex"), Buffer.from(theirs).toString("hex"));
      if (n === 0) return;
      const file = join(root, `p7-${n}.der`);
      writeFileSync(file, ours);
      const r = openssl(["pkcs7", "-inform", "DER", "-in", file, "-print_certs"]);
      assert.equal(r.code, 0, r.out);
      const back = [...r.out.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) =>
        new x509.X509Certificate(m[0]).toString("hex"),
      );
      assert.deepEqual(
        back,
        chosen.map((c) => c.toString("hex")),
      );
    });
  }
});
