// Starts one mesh service: loads policy and TLS material, serves, and reloads both when
// their files change, keeping the old state when a new file is broken.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { DestinationStream } from "pino";
import { loadPolicy, type Policy } from "./policy.ts";
import { loadMaterial, materialPaths, type TlsMaterial } from "./material.ts";
import { MeshServer, type Limits, type Route } from "./server.ts";
import { Upstreams } from "./client.ts";
import { createLogger, type MeshLogger } from "./log.ts";
import { dnsName, type ServiceName } from "./names.ts";
import { watchFiles, type Watch } from "./reload.ts";
import { messageOf } from "./errors.ts";
import { orderRoutes } from "./order.ts";
import { paymentRoutes } from "./payment.ts";
import { inventoryRoutes } from "./inventory.ts";
import { MeshMetrics } from "./metrics.ts";

export interface ServiceOptions {
  service: ServiceName;
  pkiDir: string;
  policyFile: string;
  port?: number;
  host?: string;
  /** name -> "127.0.0.1:7402": where this service finds the services it calls. */
  upstreams?: Readonly<Record<string, string>>;
  log?: MeshLogger;
  logDestination?: DestinationStream;
  watch?: boolean;
  limits?: Partial<Limits>;
  /** `request` lines per second before summaries take over (see AccessLog); 0: every request. */
  requestLinesPerSecond?: number;
  upstreamTimeoutMs?: number;
}

export interface RunningService {
  readonly service: ServiceName;
  readonly port: number;
  readonly server: MeshServer;
  readonly log: MeshLogger;
  /** Its Prometheus registry and counters (serve them with admin.ts). */
  readonly metrics: MeshMetrics;
  policy(): Policy;
  /** Re-read TLS files and policy now (the watchers do this on their own). */
  reloadTls(): boolean;
  reloadPolicy(): boolean;
  close(): Promise<void>;
}

/** Throws MeshError (bad policy, missing or invalid TLS files) before listening on anything. */
export async function startService(o: ServiceOptions): Promise<RunningService> {
  const log = o.log ?? createLogger(o.service, o.logDestination);
  const dns = dnsName(o.service);
  let policy = loadPolicy(o.policyFile);
  let policyDigest = digestOf(o.policyFile);
  const paths = materialPaths(o.pkiDir, dns);
  let material: TlsMaterial = loadMaterial(paths, dns);
  const metrics = new MeshMetrics(o.service, material);
  metrics.setPolicy(policyDigest);

  const upstreams = new Upstreams(o.service, material, o.upstreams ?? {}, log, { timeoutMs: o.upstreamTimeoutMs });
  metrics.watchUpstreams(upstreams, Object.keys(o.upstreams ?? {}));
  const server = new MeshServer({ service: o.service, material, policy: () => policy, routes: routesFor(o.service, upstreams, log), log, limits: o.limits, requestLinesPerSecond: o.requestLinesPerSecond, metrics });
  const port = await server.listen(o.port ?? 0, o.host ?? "127.0.0.1");

  // noticedAt: when the watcher first saw the change (performance.now()), for the reload latency metric.
  const reloadTls = (noticedAt = performance.now()): boolean => {
    let next: TlsMaterial;
    try {
      next = loadMaterial(paths, dns);
      const { certChanged, trustChanged } = server.setMaterial(next);
      if (!certChanged && !trustChanged) return true;
      upstreams.setMaterial(next);
      material = next;
      log.info(
        { event: "tls.reloaded", certChanged, trustChanged, serial: next.leaf.serial, notAfter: next.leaf.notAfter, trusts: next.trust.subjects },
        `new ${[certChanged && "certificate", trustChanged && "trust bundle/CRLs"].filter(Boolean).join(" and ")} in force for new connections`,
      );
      metrics.reloaded("tls", true, noticedAt, next);
      return true;
    } catch (e) {
      metrics.reloaded("tls", false, noticedAt);
      log.error({ event: "tls.reload_failed", code: (e as { code?: string }).code, error: messageOf(e) }, `kept the previous TLS material: ${messageOf(e)}`);
      return false;
    }
  };
  const reloadPolicy = (noticedAt = performance.now()): boolean => {
    try {
      const d = digestOf(o.policyFile);
      if (d === policyDigest) return true;
      const next = loadPolicy(o.policyFile);
      policy = next; // one assignment: a request sees the old policy or the new one, never a mix
      policyDigest = d;
      metrics.setPolicy(d);
      metrics.reloaded("policy", true, noticedAt);
      log.info({ event: "policy.reloaded", file: o.policyFile, accepts: summary(next) }, `policy reloaded from ${o.policyFile}`);
      return true;
    } catch (e) {
      metrics.reloaded("policy", false, noticedAt);
      log.error({ event: "policy.reload_failed", file: o.policyFile, code: (e as { code?: string }).code, error: messageOf(e) }, `kept the previous policy: ${messageOf(e)}`);
      return false;
    }
  };

  const watches: Watch[] = [];
  if (o.watch !== false) {
    watches.push(watchFiles([paths.cert, paths.key, paths.bundle, paths.crls], reloadTls));
    watches.push(watchFiles([o.policyFile], reloadPolicy));
  }
  log.info(
    { event: "listening", port, host: o.host ?? "127.0.0.1", identity: dns, serial: material.leaf.serial, notAfter: material.leaf.notAfter, trusts: material.trust.subjects, upstreams: o.upstreams ?? {} },
    `${o.service} listening on https://${o.host ?? "127.0.0.1"}:${port} as ${dns}`,
  );

  let closing: Promise<void> | undefined;
  return {
    service: o.service,
    port,
    server,
    log,
    metrics,
    policy: () => policy,
    reloadTls,
    reloadPolicy,
    close() {
      closing ??= (async () => {
        for (const w of watches) w.close();
        await server.close();
        await upstreams.close().catch(() => {});
      })();
      return closing;
    },
  };
}

function routesFor(service: ServiceName, up: Upstreams, log: MeshLogger): Route[] {
  switch (service) {
    case "order":
      return orderRoutes(up, log);
    case "payment":
      return paymentRoutes();
    case "inventory":
      return inventoryRoutes();
  }
}

function digestOf(file: string): string {
  try {
    return createHash("sha256").update(readFileSync(file)).digest("hex");
  } catch {
    return "unreadable";
  }
}

function summary(p: Policy): Record<string, string[] | null> {
  const out: Record<string, string[] | null> = {};
  for (const [name, sp] of p.services) out[name] = sp.accepts ? [...sp.accepts] : null;
  return out;
}
