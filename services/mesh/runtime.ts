// Starts one mesh service: loads policy and TLS material, serves, and reloads both when
// their files change, keeping the old state when a new file is broken.
import { createHash } from "node:crypto";
import { processClockOffsetMs } from "../../lib/clock.ts";
import { readFileSync, statSync } from "node:fs";
import type { DestinationStream } from "pino";
import { parsePolicy, type Policy } from "./policy.ts";
import { loadMaterial, materialPaths, type MaterialPaths, type TlsMaterial } from "./material.ts";
import { MeshServer, type Limits } from "./server.ts";
import { Upstreams } from "./client.ts";
import { createLogger, type MeshLogger } from "./log.ts";
import { dnsName, isIdentityName } from "./names.ts";
import { watchFiles, type Watch } from "./reload.ts";
import { MeshError, messageOf } from "./errors.ts";
import type { App } from "./app.ts";
import { crlDeadlines } from "./crl-dates.ts";
import { MeshMetrics } from "./metrics.ts";

export interface ServiceOptions {
  /** The identity served as: any mesh name (its certificate is `<service>.internal`). */
  service: string;
  /** What is served: routes of an in-process app, or a forwarder (see app.ts). */
  app: App;
  pkiDir: string;
  policyFile: string;
  port?: number;
  host?: string;
  /** name -> "127.0.0.1:7402": where this service finds the services it calls. */
  upstreams?: Readonly<Record<string, string>>;
  log?: MeshLogger;
  logDestination?: DestinationStream;
  watch?: boolean;
  /** The file watchers' stat poll: how often (default 1 s), and a call after each, naming the watcher (tests wait for it). */
  watchPoll?: { pollMs?: number; onPoll?(watcher: "tls" | "policy"): void };
  limits?: Partial<Limits>;
  /** `request` lines per second before summaries take over (see AccessLog); 0: every request. */
  requestLinesPerSecond?: number;
  upstreamTimeoutMs?: number;
  /**
   * How long the policy file must stay unchanged (inode, size, mtime) before a reload reads
   * it: a file rewritten in place is empty or cut short until its writer is done.
   */
  policySettleMs?: number;
  /** The clock the CRL deadlines are judged by (tests move it; OpenSSL keeps the real one). */
  now?: () => Date;
  /** How often the CRLs' nextUpdate is checked while running (default hourly). */
  crlCheckMs?: number;
  /**
   * Identity mode (services/mesh/identity-agent/): the TLS files are in the service's own state folder,
   * not pkiDir, and its agent calls reloadTls() once it has written a key and certificate as a
   * pair (a file watcher would see the key before its certificate).
   */
  tlsPaths?: MaterialPaths;
}

/** Default settle window of the policy file (see ServiceOptions.policySettleMs). */
export const POLICY_SETTLE_MS = 500;

export interface RunningService {
  readonly service: string;
  readonly port: number;
  readonly server: MeshServer;
  readonly log: MeshLogger;
  /** Its Prometheus registry and counters (serve them with lib/admin-http.ts). */
  readonly metrics: MeshMetrics;
  policy(): Policy;
  /** The TLS material in force (what /healthz judges). */
  material(): TlsMaterial;
  /** Re-read TLS files and policy now (the watchers do this on their own). */
  reloadTls(): boolean;
  reloadPolicy(): boolean;
  close(): Promise<void>;
}

/** Throws MeshError (bad policy, missing or invalid TLS files) before listening on anything. */
export async function startService(o: ServiceOptions): Promise<RunningService> {
  // Peers' certificate dates are judged by this clock (clock-dates.ts): a bad MESH_CLOCK_OFFSET_MS stops the start, not a handshake.
  processClockOffsetMs();
  if (!isIdentityName(o.service))
    throw new MeshError(
      "BAD_ARGUMENT",
      `${JSON.stringify(o.service.slice(0, 80))} is not a mesh name: one lower-case DNS label such as payment or billing-api`,
    );
  const log = o.log ?? createLogger(o.service, o.logDestination);
  const dns = dnsName(o.service);
  // One read for the policy and its digest: a file changing in between would pair the old
  // policy with the new content's digest, and the change would never be applied.
  const policyBytes = readPolicy(o.policyFile);
  let policy = parsePolicy(policyBytes.toString("utf8"), o.policyFile);
  let policyDigest = sha256(policyBytes);
  // The content whose outcome was logged last: one line per change of the file, whichever
  // watcher (fs.watch or the stat poll) noticed it, and however often.
  let policySeen = policyDigest;
  const paths = o.tlsPaths ?? materialPaths(o.pkiDir, dns);
  let material: TlsMaterial = loadMaterial(paths, dns);
  const metrics = new MeshMetrics(o.service, material);
  metrics.setPolicy(policyDigest);

  const upstreams = new Upstreams(o.service, material, o.upstreams ?? {}, log, { timeoutMs: o.upstreamTimeoutMs });
  metrics.watchUpstreams(upstreams, Object.keys(o.upstreams ?? {}));
  const app = await o.app({ service: o.service, upstreams, log, metrics, material });
  const server = new MeshServer({
    service: o.service,
    material,
    policy: () => policy,
    routes: app.routes ?? [],
    forward: app.forward,
    log,
    limits: o.limits,
    requestLinesPerSecond: o.requestLinesPerSecond,
    metrics,
  });
  let port: number;
  try {
    port = await server.listen(o.port ?? 0, o.host ?? "127.0.0.1");
  } catch (e) {
    await app.close?.().catch(() => {});
    await upstreams.close().catch(() => {});
    throw e;
  }

  // The files' content when the last reload failed: the same broken set is reported once.
  let tlsFailedOn: string | undefined;
  // noticedAt: when the watcher first saw the change (performance.now()), for the reload latency metric.
  const reloadTls = (noticedAt = performance.now()): boolean => {
    let next: TlsMaterial;
    try {
      next = loadMaterial(paths, dns);
      const { certChanged, trustChanged } = server.setMaterial(next);
      const restored = tlsFailedOn !== undefined;
      tlsFailedOn = undefined;
      if (!certChanged && !trustChanged) {
        if (restored) {
          log.info(
            {
              event: "tls.reloaded",
              certChanged,
              trustChanged,
              restored,
              serial: material.leaf.serial,
              notAfter: material.leaf.notAfter,
              trusts: material.trust.subjects,
            },
            "the TLS files again hold the material in force",
          );
        }
        return true;
      }
      upstreams.setMaterial(next);
      app.setMaterial?.(next);
      material = next;
      log.info(
        {
          event: "tls.reloaded",
          certChanged,
          trustChanged,
          serial: next.leaf.serial,
          notAfter: next.leaf.notAfter,
          trusts: next.trust.subjects,
        },
        `new ${[certChanged && "certificate", trustChanged && "trust bundle/CRLs"].filter(Boolean).join(" and ")} in force for new connections`,
      );
      metrics.reloaded("tls", true, noticedAt, next);
      if (trustChanged) checkCrls();
      return true;
    } catch (e) {
      const failedOn = digestOf(paths.cert, paths.key, paths.bundle, paths.crls);
      if (failedOn === tlsFailedOn) return false;
      tlsFailedOn = failedOn;
      metrics.reloaded("tls", false, noticedAt);
      log.error(
        { event: "tls.reload_failed", code: (e as { code?: string }).code, error: messageOf(e) },
        `kept the previous TLS material: ${messageOf(e)}`,
      );
      return false;
    }
  };
  const reloadPolicy = (noticedAt = performance.now()): boolean => {
    let bytes: Buffer | null;
    try {
      bytes = readSettled(o.policyFile);
    } catch (e) {
      return policyFailed(`unreadable:${(e as { code?: string }).code}`, unreadable(o.policyFile, e));
    }
    // Changed while being read: the watcher sees the change too and comes back when it settles.
    if (bytes === null) return false;
    const d = sha256(bytes);
    if (d === policySeen) return d === policyDigest;
    policySeen = d;
    if (d === policyDigest) {
      log.info(
        { event: "policy.reloaded", file: o.policyFile, accepts: summary(policy), restored: true },
        `policy file ${o.policyFile} again holds the policy in force`,
      );
      return true;
    }
    try {
      const next = parsePolicy(bytes.toString("utf8"), o.policyFile);
      if (next.services.size === 0) {
        throw new MeshError(
          "POLICY_INVALID",
          `${o.policyFile}: the policy file is empty (no [service] table): a file being rewritten in place is empty for a while, and applying it would refuse every call; to accept nobody on purpose, give each service a table with accepts = []`,
        );
      }
      policy = next; // one assignment: a request sees the old policy or the new one, never a mix
      policyDigest = d;
      metrics.setPolicy(d);
      metrics.reloaded("policy", true, noticedAt);
      log.info(
        { event: "policy.reloaded", file: o.policyFile, accepts: summary(next) },
        `policy reloaded from ${o.policyFile}`,
      );
      warnIfNoTable(next, "warn");
      return true;
    } catch (e) {
      metrics.reloaded("policy", false, noticedAt);
      return policyFailed(d, e);
    }
  };
  const policyFailed = (seen: string, e: unknown): false => {
    policySeen = seen;
    log.error(
      { event: "policy.reload_failed", file: o.policyFile, code: (e as { code?: string }).code, error: messageOf(e) },
      `kept the previous policy: ${messageOf(e)}`,
    );
    return false;
  };
  // A service with no table is refused to everybody (default-deny): say so, it is rarely meant.
  const warnIfNoTable = (p: Policy, level: "warn" | "error") => {
    if (p.services.has(o.service)) return;
    log[level](
      { event: "policy.table_missing", file: o.policyFile },
      `${o.policyFile} has no [${o.service}] table, so ${o.service} accepts nobody: every call to it is refused (403, rule default-deny); to let callers in, add [${o.service}] with accepts = ["…"]`,
    );
  };

  // A CRL past its nextUpdate makes OpenSSL refuse every client its CA issued: say so before
  // it happens, and loudly once it has (mesh:up re-signs them while it runs; nothing else does).
  const checkCrls = () => {
    const fix = "re-sign the CRLs with npm run ca -- crl, or keep mesh:up running, which re-signs them";
    for (const d of crlDeadlines(material.crl, (o.now ?? (() => new Date()))())) {
      const at = { issuer: d.issuer, nextUpdate: d.nextUpdate, daysLeft: d.daysLeft, file: paths.crls };
      if (d.state === "lapsed") {
        log.error(
          { event: "crl.lapsed", ...at },
          `the CRL of ${d.issuer} in ${paths.crls} lapsed at ${d.nextUpdate}: OpenSSL now refuses every certificate that CA issued (CRL_HAS_EXPIRED), so every client will be refused; ${fix}`,
        );
      } else {
        log.warn(
          { event: "crl.expiring", ...at },
          `the CRL of ${d.issuer} in ${paths.crls} expires at ${d.nextUpdate}, in ${d.daysLeft} days; after that every client will be refused (crl_expired): ${fix}`,
        );
      }
    }
  };

  const watches: Watch[] = [];
  if (o.watch !== false) {
    const poll = (watcher: "tls" | "policy") => ({
      pollMs: o.watchPoll?.pollMs,
      onPoll: o.watchPoll?.onPoll && (() => o.watchPoll?.onPoll?.(watcher)),
    });
    if (!o.tlsPaths)
      watches.push(watchFiles([paths.cert, paths.key, paths.bundle, paths.crls], reloadTls, poll("tls")));
    watches.push(
      watchFiles([o.policyFile], reloadPolicy, { settleMs: o.policySettleMs ?? POLICY_SETTLE_MS, ...poll("policy") }),
    );
  }
  log.info(
    {
      event: "listening",
      port,
      host: o.host ?? "127.0.0.1",
      identity: dns,
      serial: material.leaf.serial,
      notAfter: material.leaf.notAfter,
      trusts: material.trust.subjects,
      upstreams: o.upstreams ?? {},
    },
    `${o.service} listening on https://${o.host ?? "127.0.0.1"}:${port} as ${dns}`,
  );
  warnIfNoTable(policy, "error");
  checkCrls();
  const crlTimer = setInterval(checkCrls, o.crlCheckMs ?? 3_600_000);
  crlTimer.unref();

  let closing: Promise<void> | undefined;
  return {
    service: o.service,
    port,
    server,
    log,
    metrics,
    policy: () => policy,
    material: () => material,
    reloadTls,
    reloadPolicy,
    close() {
      closing ??= (async () => {
        clearInterval(crlTimer);
        for (const w of watches) w.close();
        await server.close();
        await app.close?.().catch(() => {});
        await upstreams.close().catch(() => {});
      })();
      return closing;
    },
  };
}

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function readPolicy(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw unreadable(file, e);
  }
}

function unreadable(file: string, e: unknown): MeshError {
  return new MeshError("POLICY_UNREADABLE", `${file}: cannot read the policy file: ${messageOf(e)}`);
}

function digestOf(...files: string[]): string {
  const h = createHash("sha256");
  for (const f of files) {
    try {
      h.update(readFileSync(f)).update("\0");
    } catch {
      h.update("unreadable\0");
    }
  }
  return h.digest("hex");
}

/**
 * The file's bytes, or null when it changed while being read (inode, size or mtime moved, or
 * fewer bytes than its size): never a mix of two versions.
 */
function readSettled(file: string): Buffer | null {
  const sig = () => {
    const s = statSync(file);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  };
  const before = sig();
  const bytes = readFileSync(file);
  const after = sig();
  if (before !== after || Number(after.split(":")[1]) !== bytes.length) return null;
  return bytes;
}

function summary(p: Policy): Record<string, string[] | null> {
  const out: Record<string, string[] | null> = {};
  for (const [name, sp] of p.services) out[name] = sp.accepts ? [...sp.accepts] : null;
  return out;
}
