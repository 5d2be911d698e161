// The expiry drill: the CA server goes away (its process stopped). Every identity's renewal
// fails and says so (identity.renew_failed, then identity.expiring), mesh:check's certificate
// check warns, the certificates expire (identity.expired) and calls fail as expired on both
// sides: the callee's tls.handshake_failed `expired`, the caller's upstream.failed. The CA comes
// back on its address: an expired identity cannot renew (the CA refuses expired certificates, and
// the agent stops trying at expiry), so the mesh does not heal by itself. The heal is the
// operator's documented action, the one identity.expired names: a new one-time token for each
// expired identity and a restart with it.
import { X509Certificate } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { connect } from "node:tls";
import { checkCertificate } from "../check/checks.ts";
import type { CaFacts, ServiceFacts } from "../check/facts.ts";
import { runWith, type Setup } from "./drill.ts";
import type { FailureDrillOptions } from "./impostor.ts";
import { DrillMesh, evidence, SERVICES, type Evidence, type StoryReport } from "./mesh.ts";
import type { Entry } from "./logbook.ts";

const IDENTITIES = [...SERVICES, "edge"] as const;
/** edge outlives payment: order calls the expired payment (the lull ends at its expiry) before edge expires. */
const EDGE_EXTRA_MS = 3_000;
/** edge's expiry is refused by order on edge's next new connection (within REQUESTS_PER_CONNECTION orders) before order's own. */
const ORDER_EXTRA_MS = 5_000;
const REQUESTS_PER_CONNECTION = 3;
/** Longer than the mesh client's 4 s keep-alive. */
const LULL_MS = 4_500;

/**
 * payment's certificate runs out; order's connections to it, made before, would still work (an
 * expired certificate is refused on a new handshake only). A lull longer than order's 4 s
 * keep-alive just before payment's expiry lets them close, as a quiet moment does, so the first
 * call after it is a new handshake, at once: edge's and order's later expiries need only a few
 * seconds more, not the lull's.
 */
async function lullBeforeExpiry(mesh: DrillMesh, setup: Setup): Promise<void> {
  const notAfter = Date.parse(new X509Certificate(readFileSync(mesh.stateOf("payment").cert)).validTo);
  await setup.pause(Math.max(0, notAfter - LULL_MS - Date.now()));
  mesh.note(
    `traffic pauses ${LULL_MS / 1000} s before payment's certificate expires (order's idle connections to payment close), and resumes once it has`,
  );
  const pausedAt = Date.now();
  mesh.traffic!.paused = true;
  await mesh.line(
    "payment's certificate to expire",
    pausedAt,
    (e) => e.service === "payment" && e.line.event === "identity.expired",
    LULL_MS + 5_000,
  );
  // Expired by the machine's clock too (OpenSSL's second), and the lull long enough.
  await setup.pause(Math.max(0, notAfter + 200 - Date.now(), pausedAt + LULL_MS - Date.now()));
  mesh.traffic!.paused = false;
}

export function runExpiryDrill(o: FailureDrillOptions = {}): Promise<StoryReport> {
  return runWith(o, expiry);
}

/** The certificate a service serves to a new handshake, as mesh:check reads it (not judged here). */
function served(port: number, servername: string): Promise<ServiceFacts["mtls"]["served"]> {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false }, () => {
      const c = sock.getPeerX509Certificate();
      sock.destroy();
      resolve(
        c
          ? {
              subject: c.subject,
              issuer: c.issuer,
              serial: c.serialNumber.toLowerCase().replace(/^0+/, ""),
              notBefore: new Date(c.validFrom).toISOString(),
              notAfter: new Date(c.validTo).toISOString(),
            }
          : undefined,
      );
    });
    sock.setTimeout(3_000, () => sock.destroy());
    sock.on("error", () => resolve(undefined));
    sock.on("close", () => resolve(undefined));
  });
}

/**
 * mesh:check's "certificate is valid" for one service, judged by its own pure function from what
 * the service serves and the CA's ledger (the other facts mesh:check gathers are not needed by it).
 */
async function certificateCheck(mesh: DrillMesh, service: string): Promise<{ severity: string; detail: string }> {
  const c = await served(mesh.ports[service]!, `${service}.internal`);
  const row = c && mesh.ca.list().find((x) => x.serial.toLowerCase().replace(/^0+/, "") === c.serial);
  const facts: ServiceFacts = {
    name: service,
    port: mesh.ports[service]!,
    mtls: { identity: "edge.internal", served: c, verifyError: null },
    admin: { port: null },
    ledger: row
      ? {
          serial: row.serial,
          domain: row.domain,
          status: row.status,
          issuer: row.issuer,
          generation: row.generation,
          revokedAt: row.revokedAt,
          reason: row.reason,
          supersededBy: row.supersededBy,
        }
      : undefined,
  };
  const ca: CaFacts = {
    dir: mesh.setup.pki,
    bundleSha256: "",
    crlsSha256: "",
    policyFile: mesh.policy,
    policySha256: "",
    issuers: [],
    online: { lifetimeMs: mesh.lifeMs, pollMs: mesh.o.pollMs, bundleChangedAt: 0, crlsChangedAt: 0 },
  };
  const r = checkCertificate(facts, ca, Date.now());
  return { severity: r.severity, detail: r.detail };
}

async function expiry(o: FailureDrillOptions, setup: Setup): Promise<StoryReport> {
  const mesh = await DrillMesh.open(setup, { lifetimeMs: o.lifetimeMs ?? 15_000, pollMs: o.pollMs ?? 500 });
  const { dwell, pause } = setup;
  const checks: StoryReport["checks"] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  try {
    // edge's certificates live 5 s longer than payment's and inventory's, order's 10 s longer, so
    // the expiries come in an order that shows both sides: payment and inventory first (order, the
    // caller, says upstream.failed server_cert_expired), then edge (order, the callee, refuses it:
    // tls.handshake_failed expired), then order. A caller whose own certificate expired is refused
    // by its callee in the same way; order cannot show both at once, since edge refuses an
    // expired order before order calls anyone.
    const life = mesh.lifeMs;
    await mesh.up(
      { edge: life + EDGE_EXTRA_MS, order: life + ORDER_EXTRA_MS },
      { requestsPerConnection: REQUESTS_PER_CONNECTION },
    );
    await mesh.begin(
      "baseline",
      `1. Baseline: four identities enrolled over EST, certificates living ${life / 1000} s, orders flowing`,
      true,
    );
    const check0 = await certificateCheck(mesh, "payment");
    mesh.note(`mesh:check, payment's certificate: ${check0.severity}: ${check0.detail}`);
    await pause(dwell);

    // 2. The CA goes away ---------------------------------------------------------------
    await mesh.begin(
      "ca-down",
      `2. The CA server goes away (its process stopped); the certificates run out within ${life / 1000} s`,
      false,
    );
    const downAt = Date.now();
    await mesh.stopCa();
    // The story needs every identity's first certificate to run out: one renewed already means this
    // machine took longer to set up than 60 % of --lifetime.
    const renewedEarly = [
      ...new Set(mesh.book.since(0, (e) => e.line.event === "identity.renewed").map((e) => e.service)),
    ];
    mesh.note(`CA server stopped (was ${mesh.caUrl})`);
    const lull = lullBeforeExpiry(mesh, setup);
    lull.catch(() => {}); // awaited below: a stop meanwhile must not be an unhandled rejection
    const failed = await mesh.line(
      "a renewal to fail",
      downAt,
      (e) => e.line.event === "identity.renew_failed",
      life + 10_000,
    );
    if (failed)
      mesh.note(
        `[${failed.service}] identity.renew_failed ${String(failed.line.code)}: ${String(failed.line.msg).slice(0, 220)}`,
      );
    const expiring = await mesh.line(
      "identity.expiring",
      downAt,
      (e) => e.line.event === "identity.expiring",
      life + 10_000,
    );
    if (expiring)
      mesh.note(
        `[${expiring.service}] identity.expiring, ${String(expiring.line.secondsLeft)} s left: ${String(expiring.line.msg).slice(0, 200)}`,
      );
    const warned = await certificateCheck(
      mesh,
      expiring?.service && expiring.service !== "edge" ? expiring.service : "payment",
    );
    mesh.note(`mesh:check, certificate: ${warned.severity}: ${warned.detail}`);

    await lull;

    // Every identity runs out: the last one enrolled (edge) a little after the others.
    await setup
      .until(
        () =>
          IDENTITIES.every(
            (s) => mesh.book.since(downAt, (e) => e.service === s && e.line.event === "identity.expired").length > 0,
          ),
        "every identity to expire",
        life + ORDER_EXTRA_MS + 15_000,
      )
      .catch(() => {});
    const expired = mesh.book.since(downAt, (e) => e.line.event === "identity.expired");
    const victims = [...new Set(expired.map((e) => e.service))];
    if (expired[0]) mesh.note(`[${expired[0].service}] identity.expired: ${String(expired[0].line.msg).slice(0, 260)}`);
    const callee = await mesh.line(
      "a callee to refuse an expired caller",
      downAt,
      (e) => e.line.event === "tls.handshake_failed" && e.line.reason === "expired",
      5_000,
    );
    const caller = await mesh.line(
      "order to say its call failed",
      downAt,
      (e) => e.service === "order" && e.line.event === "upstream.failed" && e.line.reason === "server_cert_expired",
      5_000,
    );
    for (const e of [callee, caller])
      if (e)
        mesh.note(
          `[${e.service}] ${String(e.line.event)} ${String(e.line.reason)}: ${String(e.line.msg).slice(0, 220)}`,
        );
    const moved = {
      orderExpiredRefusals: await mesh.metric("order", "mesh_tls_handshakes_total", {
        outcome: "refused",
        reason: "expired",
      }),
      paymentRenewalFailures: await mesh.metric("payment", "mesh_identity_cert_renewal_failures_total"),
      paymentValidityRemaining: await mesh.metric("payment", "mesh_identity_cert_validity_remaining_seconds"),
    };
    mesh.note(
      `metrics: order's mesh_tls_handshakes_total{outcome="refused",reason="expired"} ${moved.orderExpiredRefusals}; payment's mesh_identity_cert_renewal_failures_total ${moved.paymentRenewalFailures}, mesh_identity_cert_validity_remaining_seconds ${moved.paymentValidityRemaining}`,
    );
    const failedCheck = await certificateCheck(mesh, "payment");
    mesh.note(`mesh:check, payment's certificate: ${failedCheck.severity}: ${failedCheck.detail}`);
    await pause(dwell);

    // 3. The CA comes back: nothing heals by itself ----------------------------------------
    await mesh.begin("ca-back", "3. The CA server comes back on its address: does the mesh heal by itself?", false);
    const backAt = Date.now();
    await mesh.startCa();
    mesh.note(`CA server back on ${mesh.caUrl}`);
    // Several polls' worth: an agent that could renew would have (trust.poll_restored renews at once).
    await pause(Math.max(dwell, 4 * mesh.o.pollMs));
    const selfHealed = mesh.book
      .since(backAt, (e) => e.line.event === "identity.renewed" && victims.includes(e.service))
      .map((e) => e.service);
    const stillFailing = mesh.traffic!.counts.get("ca-back")?.failed ?? 0;
    mesh.note(
      selfHealed.length
        ? `renewed by themselves: ${selfHealed.join(", ")}`
        : `no expired identity renewed by itself: the CA refuses an expired certificate, and the agent stops renewing at expiry (identity.expired says: a new token and a restart); ${stillFailing} order(s) failed meanwhile`,
    );

    // 4. The operator's heal: a new token for each expired identity, and a restart -----------
    await mesh.begin(
      "re-enrol",
      `4. Heal (the operator): a new one-time token for each expired identity (${victims.join(", ") || "none"}) and a restart with it`,
      false,
    );
    const restart = async (s: string) => {
      if (!victims.includes(s)) return;
      await mesh.stopService(s);
      await mesh.startService(s, { token: true });
      mesh.note(`${s} restarted with a new token on :${mesh.ports[s]}: enrolled afresh`);
    };
    const reEnrolEdge = async () => {
      if (!victims.includes("edge")) return;
      // edge is this process's client: its expired folder is moved aside (removed) and it enrols afresh.
      rmSync(mesh.stateOf("edge").dir, { recursive: true, force: true });
      await mesh.enrolEdge();
      mesh.note("edge enrolled afresh with a new token");
    };
    // All at once, as mesh:up restarts them: order comes back on its port with its upstreams' addresses, which do not change.
    const restarted = await Promise.allSettled([
      restart("payment"),
      restart("inventory"),
      restart("order"),
      reEnrolEdge(),
    ]);
    for (const r of restarted) if (r.status === "rejected") throw r.reason;
    const healed = mesh.traffic!.mark();
    await pause(dwell);
    mesh.traffic!.unmark(healed);
    mesh.note(`${healed.failed} of ${healed.sent} order(s) sent after the re-enrolment failed`);
    const check2 = await certificateCheck(mesh, "payment");
    mesh.note(`mesh:check, payment's certificate: ${check2.severity}: ${check2.detail}`);
    await mesh.begin("after", "5. After: the mesh as before, renewing on its own again", true);
    await pause(dwell);

    const phases = await mesh.report();
    const phase = (n: string) => phases.find((p) => p.name === n)!;
    const renewFailed = mesh.book.since(downAt, (e) => e.line.event === "identity.renew_failed");
    const announced = victims.filter((who) => {
      const at = expired.find((e) => e.service === who)!.at;
      const said = (event: string) =>
        mesh.book.since(downAt, (e) => e.service === who && e.line.event === event && e.at <= at).length > 0;
      return said("identity.renew_failed") && said("identity.expiring");
    });
    check(
      "no identity renewed before the CA went away",
      renewedEarly.length === 0,
      renewedEarly.length
        ? `renewed before the CA stopped: ${renewedEarly.join(", ")}: this machine took longer to set up than 60 % of the certificates' life; run with a longer --lifetime`
        : "each identity's first certificate was in force when the CA stopped",
    );
    check(
      "renewals failed loudly: CA unreachable",
      renewFailed.some((e) => e.line.code === "CA_UNREACHABLE"),
      renewFailed.map((e) => `${e.service}: ${String(e.line.code)}`).join(", ") || "no identity.renew_failed",
    );
    check(
      "every identity expired, each announced first",
      victims.length === IDENTITIES.length && announced.length === victims.length,
      `expired: ${victims.join(", ") || "none"}; announced by renew_failed and expiring before: ${announced.join(", ") || "none"}`,
    );
    check(
      "the metrics moved",
      (moved.orderExpiredRefusals ?? 0) > 0 &&
        (moved.paymentRenewalFailures ?? 0) > 0 &&
        (moved.paymentValidityRemaining ?? 1) < 0,
      `order's refusals for expired: ${moved.orderExpiredRefusals}; payment's renewal failures: ${moved.paymentRenewalFailures}, validity remaining: ${moved.paymentValidityRemaining} s`,
    );
    check(
      "mesh:check warned, then failed",
      warned.severity === "warning" && failedCheck.severity === "error",
      `before expiry: ${warned.severity}; after: ${failedCheck.severity}`,
    );
    check(
      "the callee refused an expired caller as expired",
      callee?.line.reason === "expired",
      callee ? `${callee.service}: tls.handshake_failed expired` : "no tls.handshake_failed expired",
    );
    check(
      "the caller said its callee expired",
      !!caller,
      caller
        ? `order: upstream.failed ${String(caller.line.upstream)} ${String(caller.line.reason)}`
        : "no upstream.failed server_cert_expired",
    );
    check(
      "orders failed once the certificates expired",
      phase("ca-down").failed > 0,
      `${phase("ca-down").failed} of ${phase("ca-down").sent}: ${JSON.stringify(phase("ca-down").reasons)}`,
    );
    check(
      "the CA's return did not heal expired identities by itself",
      selfHealed.length === 0 && stillFailing > 0,
      `self-renewed: ${selfHealed.join(", ") || "none"}; ${stillFailing} order(s) failed after the CA was back`,
    );
    check(
      "re-enrolment healed the mesh",
      healed.failed === 0 && healed.sent > 0 && check2.severity === "ok",
      `${healed.failed} of ${healed.sent} failed after it; mesh:check ${check2.severity}`,
    );

    const ev: Evidence[] = [failed, expiring, expired[0], callee, caller].filter((e): e is Entry => !!e).map(evidence);
    return mesh.finish({
      drill: "expiry",
      lifetimeMs: life,
      phases,
      evidence: ev,
      heal: "not by itself: once a certificate has expired the agent stops renewing (the CA refuses expired certificates over EST), so the CA's return changes nothing for it. The operator's action, as identity.expired says: a new one-time token per expired identity (npm run -s ca -- token --domain <name>.internal > token) and a restart with --token-file token (mesh:up does both when restarted). A CA back before expiry heals everything by itself: the first poll that gets through renews at once (docs/identity.md)",
      checks,
      facts: {
        victims,
        metrics: moved,
        mesh_check: { before: check0, expiring: warned, expired: failedCheck, healed: check2 },
      },
    });
  } finally {
    await mesh.close();
  }
}
