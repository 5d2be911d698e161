// The stolen-key drill: a copy of order's key and certificate is used from elsewhere (a thief
// calling payment with it, on a keep-alive connection, and getting in: a theft is invisible to the
// handshake). The operator revokes that certificate; every service has the new CRLs by the long
// poll and refuses it within seconds, payment cuts the thief's live connection. The real order,
// whose certificate it was, is refused too: it enrols afresh with a new token, and carries on.
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { runWith, type Setup } from "./drill.ts";
import type { FailureDrillOptions } from "./impostor.ts";
import { DrillMesh, evidence, SERVICES, type Evidence, type StoryReport } from "./mesh.ts";
import { Straggler, tryOldCertificate } from "./peers.ts";
import type { Entry } from "./logbook.ts";

/** "Within seconds": how long after the revocation every service must refuse the stolen certificate. */
export const REFUSED_WITHIN_MS = 5_000;

export function runStolenDrill(o: FailureDrillOptions = {}): Promise<StoryReport> {
  return runWith(o, stolen);
}

async function stolen(o: FailureDrillOptions, setup: Setup): Promise<StoryReport> {
  const mesh = await DrillMesh.open(setup, { lifetimeMs: o.lifetimeMs ?? 60_000, pollMs: o.pollMs ?? 1_000 });
  const { dwell, pause } = setup;
  const loot = join(setup.work, "thief");
  let thief: Straggler | undefined;
  const checks: StoryReport["checks"] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  try {
    await mesh.up();
    await mesh.begin("baseline", "1. Baseline: the mesh enrolled, orders flowing", true);
    // The theft: order's key and certificate copied out of its state folder.
    const st = mesh.stateOf("order");
    mkdirSync(loot, { recursive: true, mode: 0o700 });
    copyFileSync(st.key, join(loot, "order.key"));
    chmodSync(join(loot, "order.key"), 0o600);
    copyFileSync(st.cert, join(loot, "order.crt"));
    const stolenCert = { cert: readFileSync(join(loot, "order.crt")), key: readFileSync(join(loot, "order.key")) };
    const serial = new X509Certificate(stolenCert.cert).serialNumber.toLowerCase();
    const bundle = readFileSync(mesh.ca.paths.bundle);
    const inBefore = !(await tryOldCertificate(mesh.ports.payment!, "payment.internal", bundle, stolenCert));
    thief = new Straggler({ port: mesh.ports.payment!, servername: "payment.internal", ca: bundle, ...stolenCert });
    thief.start();
    mesh.note(
      `a thief holds a copy of order's key and certificate (serial ${serial.slice(0, 12)}…) and calls payment with it on a keep-alive connection: ${inBefore ? "it gets in (the handshake cannot tell a copy)" : "REFUSED already"}`,
    );
    await pause(dwell);

    // 2. Revoke ---------------------------------------------------------------------------
    await mesh.begin(
      "revoke",
      `2. The operator revokes order's certificate (keyCompromise): every service must refuse it within ${REFUSED_WITHIN_MS / 1000} s`,
      false,
    );
    const REVOKED = { outcome: "refused", reason: "revoked" };
    const refusalsBefore = await mesh.metric("payment", "mesh_tls_handshakes_total", REVOKED);
    const revokedAt = Date.now();
    await mesh.ca.revoke({ serial, reason: "keyCompromise" });
    mesh.note(
      `revoked serial ${serial.slice(0, 12)}… (npm run ca -- revoke --serial ${serial.slice(0, 12)}… --reason keyCompromise)`,
    );
    const refusedIn: Record<string, number | undefined> = {};
    await Promise.all(
      SERVICES.map(async (s) => {
        const deadline = revokedAt + 4 * REFUSED_WITHIN_MS;
        while (Date.now() < deadline) {
          const at = Date.now();
          if (await tryOldCertificate(mesh.ports[s]!, `${s}.internal`, bundle, stolenCert)) {
            const line = await mesh.line(
              `${s} to log the revoked certificate`,
              at - 50,
              (e) => e.service === s && e.line.event === "tls.handshake_failed" && e.line.reason === "revoked",
              3_000,
            );
            if (line) {
              refusedIn[s] = line.at - revokedAt;
              return;
            }
          }
          await pause(200);
        }
      }),
    );
    mesh.note(
      `the stolen certificate refused, ms after the revocation: ${SERVICES.map((s) => `${s} ${refusedIn[s] ?? "NOT refused"}`).join(", ")}`,
    );
    const refusalsAfter = await mesh.metric("payment", "mesh_tls_handshakes_total", REVOKED);
    mesh.note(
      `payment's mesh_tls_handshakes_total{outcome="refused",reason="revoked"}: ${refusalsBefore} → ${refusalsAfter}`,
    );
    const cut = await mesh.line(
      "payment to cut the thief's live connection",
      revokedAt,
      (e) => e.service === "payment" && e.line.event === "tls.connections_closed" && e.line.why === "trust withdrawn",
      10_000,
    );
    if (cut) mesh.note(`payment: tls.connections_closed: ${String(cut.line.msg).slice(0, 200)}`);
    const callee = mesh.book.since(
      revokedAt,
      (e) => e.line.event === "tls.handshake_failed" && e.line.reason === "revoked",
    )[0];
    // The real order is the thief's victim twice: its own certificate is the revoked one.
    const caller = await mesh.line(
      "order's calls to be refused",
      revokedAt,
      (e) => e.service === "order" && e.line.event === "upstream.failed",
      10_000,
    );
    if (caller)
      mesh.note(
        `order (the real one): upstream.failed ${String(caller.line.reason)}: ${String(caller.line.msg).slice(0, 200)}`,
      );
    await setup
      .until(() => (mesh.traffic!.counts.get("revoke")?.failed ?? 0) > 0, "an order to fail", 10_000)
      .catch(() => {});
    await pause(dwell);

    // 3. Heal: the real order enrols afresh ---------------------------------------------------
    await mesh.begin(
      "re-enrol",
      "3. Heal: order's revoked identity moved aside (its key is compromised), a new token, order restarted",
      false,
    );
    await mesh.stopService("order");
    rmSync(st.dir, { recursive: true, force: true });
    await mesh.startService("order", { token: true });
    const healed = mesh.traffic!.mark();
    await pause(dwell);
    mesh.traffic!.unmark(healed);
    const stillOut = await tryOldCertificate(mesh.ports.payment!, "payment.internal", bundle, stolenCert);
    mesh.note(
      `order enrolled afresh on :${mesh.ports.order}; ${healed.failed} of ${healed.sent} order(s) sent since failed; the stolen copy: ${stillOut ? "still refused" : "ACCEPTED"}`,
    );
    await mesh.begin("after", "4. After: the mesh as before, the thief locked out", true);
    await pause(dwell);
    const lingering = thief.summary(revokedAt);
    thief.stop();
    thief = undefined;

    const phases = await mesh.report();
    const refusedAll = SERVICES.every((s) => refusedIn[s] !== undefined && refusedIn[s]! <= REFUSED_WITHIN_MS);
    check(
      "the stolen copy got in before the revocation",
      inBefore,
      inBefore ? "payment answered it" : "payment refused it already",
    );
    check(
      `every service refused it within ${REFUSED_WITHIN_MS / 1000} s`,
      refusedAll,
      SERVICES.map((s) => `${s}: ${refusedIn[s] ?? "never"} ms`).join(", "),
    );
    check(
      "payment's refusal counter moved",
      refusalsBefore !== undefined && refusalsAfter !== undefined && refusalsAfter > refusalsBefore,
      `mesh_tls_handshakes_total{outcome="refused",reason="revoked"}: ${refusalsBefore} → ${refusalsAfter}`,
    );
    check(
      "its live connection was cut",
      !!cut && lingering.closedAfter && lingering.successesAfter === 0,
      `payment logged tls.connections_closed: ${!!cut}; thief's connection closed: ${lingering.closedAfter}; answers after: ${lingering.successesAfter}`,
    );
    check(
      "the real order was refused too",
      phases.find((p) => p.name === "revoke")!.failed > 0 && !!caller,
      caller ? `order: upstream.failed ${String(caller.line.reason)}` : "no upstream.failed",
    );
    check(
      "re-enrolment healed the mesh",
      healed.failed === 0 && healed.sent > 0,
      `${healed.failed} of ${healed.sent} failed after it`,
    );
    check("the stolen copy stays refused", stillOut, stillOut ? "refused after the heal" : "ACCEPTED after the heal");

    const ev: Evidence[] = [callee, cut, caller].filter((e): e is Entry => !!e).map(evidence);
    return mesh.finish({
      drill: "stolen",
      phases,
      evidence: ev,
      heal: "the operator revokes the stolen certificate (npm run ca -- revoke --serial <serial> --reason keyCompromise): every service has the new CRLs within a second or two by the long poll, refuses it and cuts its live connections; the real order, whose certificate it was, cannot renew a revoked identity: its folder is moved aside and it enrols afresh with a new token (mesh:up does that when restarted)",
      checks,
      facts: { serial, refusedInMs: refusedIn, metrics: { paymentRevokedRefusals: [refusalsBefore, refusalsAfter] } },
    });
  } finally {
    thief?.stop();
    // The thief's copy is a key: it goes whatever the outcome.
    rmSync(loot, { recursive: true, force: true });
    await mesh.close();
  }
}
