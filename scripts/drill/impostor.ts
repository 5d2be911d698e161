// The impostor-CA drill: a look-alike CA with the very name of the mesh's root (same subject DN,
// another key) issues payment.internal and order.internal. A caller presenting its order
// certificate is refused by payment, and a process serving its payment certificate on payment's
// port is refused by order; both say why: another CA with the same name, the signature does not
// verify against the trusted CA's key. The real payment comes back; the mesh carries on.
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CertificateAuthority } from "../../ca/index.ts";
import { launchService, type Launched } from "../launch.ts";
import { runWith, type DrillOptions, type Setup } from "./drill.ts";
import { DrillMesh, evidence, type Evidence, type StoryReport } from "./mesh.ts";
import { tryOldCertificate } from "./peers.ts";

export interface FailureDrillOptions extends DrillOptions {
  lifetimeMs?: number;
  pollMs?: number;
}

/** A key named as people compare keys: SHA-256 of its SubjectPublicKeyInfo, first 16 hex digits. */
export function keyId(cert: X509Certificate): string {
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("hex").slice(0, 16);
}

const LOOKALIKE = /another CA with the same name/;

export function runImpostorDrill(o: FailureDrillOptions = {}): Promise<StoryReport> {
  return runWith(o, impostor);
}

async function impostor(o: FailureDrillOptions, setup: Setup): Promise<StoryReport> {
  const mesh = await DrillMesh.open(setup, { lifetimeMs: o.lifetimeMs ?? 60_000, pollMs: o.pollMs ?? 1_000 });
  const { dwell, pause } = setup;
  const fakeDir = join(setup.work, "impostor-pki");
  let fake: CertificateAuthority | undefined;
  let imposter: Launched | undefined;
  const checks: StoryReport["checks"] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  try {
    await mesh.up();
    await mesh.begin("baseline", "1. Baseline: the mesh enrolled from its CA, orders flowing", true);
    await pause(dwell);

    // 2. The look-alike CA ---------------------------------------------------------------
    await mesh.begin(
      "impostor",
      "2. A look-alike CA: same name, another key, issues payment.internal and order.internal",
      false,
    );
    const realRoot = new X509Certificate(readFileSync(mesh.ca.paths.bundle));
    const gen = mesh.ca.issuerRow(mesh.ca.signerId()).generation;
    const name = mesh.ca.issuerRow(`root-${gen}`).name;
    rmSync(fakeDir, { recursive: true, force: true });
    fake = await CertificateAuthority.init({ dir: fakeDir, name });
    await fake.issue({ domain: "payment.internal" });
    await fake.issue({ domain: "order.internal" });
    const fakeRoot = new X509Certificate(readFileSync(fake.paths.bundle));
    const sameName = fakeRoot.subject === realRoot.subject;
    const keys = { trusted: keyId(realRoot), impostor: keyId(fakeRoot) };
    mesh.note(
      `impostor root: ${fakeRoot.subject.replace(/\n/g, ", ")} (key ${keys.impostor}); the mesh's root: ${realRoot.subject.replace(/\n/g, ", ")} (key ${keys.trusted})`,
    );

    // a) Calling as order with the impostor's certificate: payment refuses it in the handshake.
    const UNKNOWN_CA = { outcome: "refused", reason: "unknown_ca" };
    const refusalsBefore = await mesh.metric("payment", "mesh_tls_handshakes_total", UNKNOWN_CA);
    const callAt = Date.now();
    const fakeOrder = {
      cert: readFileSync(fake.paths.leaf("order.internal").cert),
      key: readFileSync(fake.paths.leaf("order.internal").key),
    };
    const refused = await tryOldCertificate(
      mesh.ports.payment!,
      "payment.internal",
      readFileSync(mesh.ca.paths.bundle),
      fakeOrder,
    );
    const calleeLine = await mesh.line(
      "payment to refuse the impostor's order certificate",
      callAt - 50,
      (e) => e.service === "payment" && e.line.event === "tls.handshake_failed" && LOOKALIKE.test(String(e.line.msg)),
      10_000,
    );
    const refusalsAfter = await mesh.metric("payment", "mesh_tls_handshakes_total", UNKNOWN_CA);
    mesh.note(
      `payment's mesh_tls_handshakes_total{outcome="refused",reason="unknown_ca"}: ${refusalsBefore} → ${refusalsAfter}`,
    );
    mesh.note(
      `a caller presenting the impostor's order.internal: ${refused ? "refused in the handshake" : "ACCEPTED"}; payment: ${calleeLine ? `${String(calleeLine.line.reason)}: ${String(calleeLine.line.msg).slice(0, 400)}` : "logged no look-alike refusal"}`,
    );

    // b) Serving as payment on payment's port: order refuses it and the orders fail.
    const servedAt = Date.now();
    await mesh.stopService("payment");
    imposter = await launchService({
      service: "payment",
      port: mesh.ports.payment!,
      pki: fakeDir,
      policy: mesh.policy,
      logFile: join(mesh.logs, "impostor-payment.log"),
      onLine: (line) => line && mesh.book.add("impostor", line),
    });
    mesh.note(`the real payment stopped; a process with the impostor's payment.internal serves on :${imposter.port}`);
    const callerLine = await mesh.line(
      "order to refuse the impostor payment",
      servedAt,
      (e) =>
        e.service === "order" &&
        e.line.event === "upstream.failed" &&
        e.line.upstream === "payment" &&
        LOOKALIKE.test(String(e.line.msg)),
      20_000,
    );
    if (callerLine)
      mesh.note(
        `order: upstream.failed ${String(callerLine.line.reason)}: ${String(callerLine.line.msg).slice(0, 400)}`,
      );
    await setup
      .until(
        () => (mesh.traffic!.counts.get("impostor")?.failed ?? 0) > 0,
        "an order to fail against the impostor",
        15_000,
      )
      .catch(() => {});
    await pause(dwell);

    // 3. Heal ------------------------------------------------------------------------------
    await mesh.begin(
      "heal",
      "3. Heal: the impostor stopped, the real payment back on its port with its own identity",
      false,
    );
    await imposter.stop();
    imposter = undefined;
    // Its state folder is intact: it starts from its own certificate, no token needed.
    await mesh.startService("payment", { token: false });
    const healed = mesh.traffic!.mark();
    await pause(dwell);
    mesh.traffic!.unmark(healed);
    mesh.note(`${healed.failed} of ${healed.sent} order(s) sent after the real payment came back failed`);
    await mesh.begin("after", "4. After: the mesh as before", true);
    await pause(dwell);

    const phases = await mesh.report();
    const phase = (n: string) => phases.find((p) => p.name === n)!;
    const ev: Evidence[] = [calleeLine, callerLine].filter((e) => !!e).map(evidence);
    check(
      "same name, another key",
      sameName && keys.trusted !== keys.impostor,
      `subject ${sameName ? "identical" : "DIFFERENT"}; keys ${keys.trusted} (trusted) vs ${keys.impostor} (impostor)`,
    );
    check(
      "payment refused the impostor's caller, saying look-alike",
      refused && !!calleeLine && calleeLine.line.reason === "unknown_ca",
      calleeLine
        ? `tls.handshake_failed ${String(calleeLine.line.reason)}`
        : "no tls.handshake_failed naming another CA with the same name",
    );
    check(
      "order refused the impostor payment, saying look-alike",
      !!callerLine && callerLine.line.reason === "server_untrusted" && LOOKALIKE.test(String(callerLine.line.msg)),
      callerLine
        ? `upstream.failed ${String(callerLine.line.reason)}: ${String(callerLine.line.msg).slice(0, 160)}`
        : "no upstream.failed for payment",
    );
    check(
      "payment's refusal counter moved",
      refusalsBefore !== undefined && refusalsAfter !== undefined && refusalsAfter > refusalsBefore,
      `mesh_tls_handshakes_total{outcome="refused",reason="unknown_ca"}: ${refusalsBefore} → ${refusalsAfter}`,
    );
    const broke = phase("impostor");
    check(
      "orders failed while the impostor served",
      broke.failed > 0 && Object.keys(broke.reasons).some((r) => /payment:server_untrusted/.test(r)),
      `${broke.failed} of ${broke.sent} failed: ${JSON.stringify(broke.reasons)}`,
    );
    check(
      "the impostor answered no order",
      !mesh.book.entries.some(
        (e) =>
          e.service === "impostor" &&
          (e.line.event === "request" || e.line.event === "request.summary") &&
          Number(e.line.status) < 400,
      ),
      "its log holds no successful request",
    );
    check(
      "the real payment healed the mesh",
      healed.failed === 0 && healed.sent > 0,
      `${healed.failed} of ${healed.sent} failed after it came back`,
    );

    return mesh.finish({
      drill: "impostor",
      phases,
      evidence: ev,
      heal: "the operator stops the process serving the impostor's certificate and starts the real payment again on its port (its own state folder, no token): callers refuse the look-alike by themselves, nothing to revoke in the mesh's CA (it never issued that certificate)",
      checks,
      facts: {
        keys,
        subject: realRoot.subject,
        port: mesh.ports.payment,
        metrics: { paymentUnknownCaRefusals: [refusalsBefore, refusalsAfter] },
      },
    });
  } finally {
    await imposter?.stop();
    fake?.close();
    // The impostor's keys go too, whatever the outcome.
    rmSync(fakeDir, { recursive: true, force: true });
    await mesh.close();
  }
}
