// Starts one mesh service: loads policy and TLS material, serves, and reloads both when
// their files change, keeping the old state when a new file is broken.
import type { DestinationStream } from "pino";
import { processClockOffsetMs } from "../../lib/clock.ts";
import type { Policy } from "./policy.ts";
import { materialPaths, type MaterialPaths, type TlsMaterial } from "./material.ts";
import { MeshServer, type Limits } from "./server.ts";
import { Upstreams } from "./client.ts";
import { createLogger, type MeshLogger } from "./log.ts";
import { dnsName, isIdentityName } from "./names.ts";
import { watchFiles, type Watch } from "./reload.ts";
import { MeshError } from "./errors.ts";
import type { App, AppInstance } from "./app.ts";
import { PolicyFile } from "./policy-file.ts";
import { TlsFiles } from "./tls-files.ts";
import { crlDeadlines } from "./crl-dates.ts";
import { MeshMetrics } from "./metrics.ts";
import type { TogglePaths } from "./toggle.ts";

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
  checkServiceName(o.service);
  const log = o.log ?? createLogger(o.service, o.logDestination);
  const dns = dnsName(o.service);
  const policy = new PolicyFile(o.policyFile, o.service, log);
  const tls = new TlsFiles(o.tlsPaths ?? materialPaths(o.pkiDir, dns), dns, o.service, log);
  const metrics = new MeshMetrics(o.service, tls.material);
  policy.report(metrics);
  const { server, port, app, upstreams } = await serve(o, log, metrics, policy, tls.material);
  const checkCrls = () => warnOfCrlDeadlines(tls, o.now ?? (() => new Date()), log);
  tls.serve({ server, others: [upstreams, app], log, metrics, onTrustChanged: checkCrls });
  const reloadTls = (noticedAt?: number) => tls.reload(noticedAt);
  const reloadPolicy = (noticedAt?: number) => policy.reload(noticedAt);
  const watches = o.watch === false ? [] : watchServiceFiles(o, tls, reloadTls, reloadPolicy);
  logListening(o, log, dns, port, tls.material);
  policy.warnIfNoTable("error");
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
    policy: () => policy.policy,
    material: () => tls.material,
    reloadTls,
    reloadPolicy,
    close() {
      closing ??= (async () => {
        clearInterval(crlTimer);
        for (const w of watches) w.close();
        await server.close();
        await closeQuietly(app, upstreams);
      })();
      return closing;
    },
  };
}

function checkServiceName(service: string): void {
  if (!isIdentityName(service))
    throw new MeshError(
      "BAD_ARGUMENT",
      `${JSON.stringify(service.slice(0, 80))} is not a mesh name: one lower-case DNS label such as payment or billing-api`,
    );
}

interface Serving {
  server: MeshServer;
  port: number;
  app: AppInstance;
  upstreams: Upstreams;
}

/** The outbound client, the app and the server, listening; on a failure to listen, nothing is left open. */
async function serve(
  o: ServiceOptions,
  log: MeshLogger,
  metrics: MeshMetrics,
  policy: PolicyFile,
  material: TlsMaterial,
): Promise<Serving> {
  const upstreams = new Upstreams(o.service, material, o.upstreams ?? {}, log, { timeoutMs: o.upstreamTimeoutMs });
  metrics.watchUpstreams(upstreams, Object.keys(o.upstreams ?? {}));
  const app = await o.app({ service: o.service, upstreams, log, metrics, material });
  const server = new MeshServer({
    service: o.service,
    material,
    policy: () => policy.policy,
    routes: app.routes ?? [],
    forward: app.forward,
    splice: app.splice,
    log,
    limits: o.limits,
    requestLinesPerSecond: o.requestLinesPerSecond,
    metrics,
  });
  try {
    const port = await server.listen(o.port ?? 0, o.host ?? "127.0.0.1");
    return { server, port, app, upstreams };
  } catch (e) {
    await closeQuietly(app, upstreams);
    throw e;
  }
}

async function closeQuietly(app: AppInstance, upstreams: Upstreams): Promise<void> {
  await app.close?.().catch(() => {});
  await upstreams.close().catch(() => {});
}

/**
 * The TLS files (unless an identity agent writes them and calls reloadTls itself) and the
 * policy file, watched; the policy only once it has settled.
 */
function watchServiceFiles(
  o: ServiceOptions,
  { paths, toggle }: { paths: MaterialPaths; toggle: TogglePaths },
  reloadTls: (noticedAt: number) => void,
  reloadPolicy: (noticedAt: number) => void,
): Watch[] {
  const poll = (watcher: "tls" | "policy") => ({
    pollMs: o.watchPoll?.pollMs,
    onPoll: o.watchPoll?.onPoll && (() => o.watchPoll?.onPoll?.(watcher)),
  });
  const watches: Watch[] = [];
  if (!o.tlsPaths) watches.push(watchFiles([paths.cert, paths.key, paths.bundle, paths.crls], reloadTls, poll("tls")));
  // In both modes: the toggle's folder is put in place and taken away whole (a rename).
  watches.push(watchFiles([toggle.dir, toggle.cert, toggle.key], () => reloadTls(performance.now()), poll("tls")));
  watches.push(
    watchFiles([o.policyFile], reloadPolicy, { settleMs: o.policySettleMs ?? POLICY_SETTLE_MS, ...poll("policy") }),
  );
  return watches;
}

function logListening(o: ServiceOptions, log: MeshLogger, dns: string, port: number, material: TlsMaterial): void {
  const host = o.host ?? "127.0.0.1";
  log.info(
    {
      event: "listening",
      port,
      host,
      identity: dns,
      serial: material.leaf.serial,
      notAfter: material.leaf.notAfter,
      trusts: material.trust.subjects,
      upstreams: o.upstreams ?? {},
    },
    `${o.service} listening on https://${host}:${port} as ${dns}`,
  );
}

/**
 * A CRL past its nextUpdate makes OpenSSL refuse every client its CA issued: say so before
 * it happens, and loudly once it has (mesh:up re-signs them while it runs; nothing else does).
 */
function warnOfCrlDeadlines(tls: TlsFiles, now: () => Date, log: MeshLogger): void {
  const fix = "re-sign the CRLs with npm run ca -- crl, or keep mesh:up running, which re-signs them";
  const file = tls.paths.crls;
  for (const d of crlDeadlines(tls.material.crl, now())) {
    const at = { issuer: d.issuer, nextUpdate: d.nextUpdate, daysLeft: d.daysLeft, file };
    if (d.state === "lapsed") {
      log.error(
        { event: "crl.lapsed", ...at },
        `the CRL of ${d.issuer} in ${file} lapsed at ${d.nextUpdate}: OpenSSL now refuses every certificate that CA issued (CRL_HAS_EXPIRED), so every client will be refused; ${fix}`,
      );
    } else {
      log.warn(
        { event: "crl.expiring", ...at },
        `the CRL of ${d.issuer} in ${file} expires at ${d.nextUpdate}, in ${d.daysLeft} days; after that every client will be refused (crl_expired): ${fix}`,
      );
    }
  }
}
