// A CRL dated later than the service's clock (the service's clock is behind the CA's) is
// named as such, with advice about clocks, not as an expired CRL to re-sign.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CertificateAuthority } from "../ca/index.ts";
import { freshPki, start, call, identity, LogSink } from "./mesh-fixtures.ts";
import { Upstreams, UpstreamError } from "../services/mesh/client.ts";
import { loadMaterial, materialPaths } from "../services/mesh/material.ts";
import { createLogger } from "../services/mesh/log.ts";
import { ev } from "./helpers/events.ts";

test("a CRL from the future: crl_not_yet_valid, with a sentence about clocks", async () => {
  const pki = await freshPki();
  // The CA's clock is an hour ahead of the service's: well past any backdating of thisUpdate.
  const ahead = await CertificateAuthority.open({ dir: pki.dir, now: () => new Date(Date.now() + 3_600_000) });
  await ahead.publishCrls();
  ahead.close();
  const pay = await start(pki, "payment", { watch: false });
  try {
    const r = await call(pki, pay.svc.port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
    assert.ok("error" in r, JSON.stringify(r));
    const l = await pay.logs.wait(ev("tls.handshake_failed"));
    assert.equal(l.tlsCode, "CRL_NOT_YET_VALID");
    assert.equal(l.reason, "crl_not_yet_valid");
    assert.match(String(l.msg), /dated later than payment's clock/);
    assert.match(String(l.msg), /clock is behind the CA's; check time sync/);
    assert.doesNotMatch(String(l.msg), /have the CA re-sign/);
    assert.equal(pay.logs.lines.filter(ev("request")).length, 0);

    // A caller with the same CRLs refuses the callee for the same reason, on its side.
    const logs = new LogSink();
    const up = new Upstreams(
      "order",
      loadMaterial(materialPaths(pki.dir, "order.internal"), "order.internal"),
      { payment: `127.0.0.1:${pay.svc.port}` },
      createLogger("order", logs),
    );
    try {
      await assert.rejects(
        up.call("payment", "GET", "/healthz"),
        (e: unknown) => e instanceof UpstreamError && e.reason === "server_crl_not_yet_valid",
      );
      const u = await logs.wait(ev("upstream.failed"));
      assert.equal(u.code, "CRL_NOT_YET_VALID");
      assert.match(String(u.msg), /this host's clock is behind the CA's: check time sync/);
    } finally {
      await up.close();
    }
  } finally {
    await pay.svc.close();
    pki.cleanup();
  }
});

test("a lapsed CRL is still crl_expired, with advice to re-sign", async () => {
  const pki = await freshPki();
  const past = await CertificateAuthority.open({ dir: pki.dir, now: () => new Date(Date.now() - 40 * 86_400_000) });
  await past.publishCrls();
  past.close();
  const pay = await start(pki, "payment", { watch: false });
  try {
    const r = await call(pki, pay.svc.port, "payment.internal", identity(pki, "order"), "GET", "/healthz");
    assert.ok("error" in r, JSON.stringify(r));
    const l = await pay.logs.wait(ev("tls.handshake_failed"));
    assert.equal(l.tlsCode, "CRL_HAS_EXPIRED");
    assert.equal(l.reason, "crl_expired");
    assert.match(String(l.msg), /re-sign its CRLs/);
  } finally {
    await pay.svc.close();
    pki.cleanup();
  }
});
