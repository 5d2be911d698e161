// A client may send a certificate whose subject or issuer is empty (x509-limbo's
// rfc5280::ee-empty-issuer and ca-empty-subject). Node reports such a name as undefined; the
// service's refusal must name it, not throw in its handshake handler and stop the service.
import assert from "node:assert/strict";
import { connect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { generateKeyPair, exportPrivateKey } from "../ca/keys.ts";
import { randomSerial, validityFor } from "../ca/profiles.ts";
import { certToPem, x509 } from "../ca/x509.ts";
import { call, freshPki, identity, start, type TestPki, type TestService } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

describe("a client certificate with an empty name", () => {
  let pki: TestPki;
  let pay: TestService;
  before(async () => {
    pki = await freshPki();
    pay = await start(pki, "payment");
  });
  after(async () => {
    await pay?.svc.close();
    pki?.cleanup();
  });

  it("is refused with a reason and the service keeps serving", { timeout: 30_000 }, async () => {
    const keys = await generateKeyPair("ec-p256");
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: "",
      issuer: "",
      ...validityFor(new Date(), 1),
      publicKey: keys.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
      extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])],
    });
    const key = await exportPrivateKey(keys.privateKey);
    const since = pay.logs.lines.length;
    await new Promise<void>((resolve) => {
      const s = connect({
        host: "127.0.0.1",
        port: pay.svc.port,
        servername: "payment.internal",
        cert: certToPem(cert),
        key,
        rejectUnauthorized: false,
      });
      s.on("error", () => resolve());
      s.on("close", () => resolve());
    });
    const line = await pay.logs.wait(ev("tls.handshake_failed"), 5_000, since);
    assert.equal(line.reason, "unknown_ca");
    const good = await call(pki, pay.svc.port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
    assert.ok("status" in good, `the service must still answer: ${JSON.stringify(good)}`);
  });
});
