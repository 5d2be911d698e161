// Shared pieces of the identity suites: a real CA server in-process (test/helpers/est.ts) with
// room in its rate limits, services started in identity mode with their logs captured, tokens,
// and an outside client (edge) holding a file-mode certificate from the same CA.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "node:https";
import { createToken } from "../ca/tokens.ts";
import { startCa, type TestCa } from "./helpers/est.ts";
import { LogSink } from "./mesh-fixtures.ts";
import { createLogger } from "../services/mesh/log.ts";
import type { ServiceName } from "../services/mesh/names.ts";
import { parseToken } from "../services/mesh/identity-agent/bootstrap.ts";
import {
  startIdentityService,
  type IdentityOptions,
  type IdentityService,
} from "../services/mesh/identity-agent/service.ts";
import { appNamed } from "../services/apps/index.ts";

export const ROOMY_LIMITS = {
  perAddress: { capacity: 1000, perMinute: 6000 },
  perName: { capacity: 1000, perMinute: 6000 },
};

export interface World {
  ca: TestCa;
  root: string;
  policyFile: string;
  stateDir(service: string): string;
  token(service: string): string;
  /** edge.internal, issued in file mode: a caller from outside the mesh. */
  edge: { cert: Buffer; key: Buffer };
  cleanup(): Promise<void>;
}

/** The seed policy, and edge (the tests' outside caller) may also call payment directly. */
export const POLICY = `[payment]\naccepts = ["order", "edge"]\n\n[inventory]\naccepts = ["order"]\n\n[order]\naccepts = ["edge"]\n`;

export async function world(policy = POLICY, limits: typeof ROOMY_LIMITS = ROOMY_LIMITS): Promise<World> {
  const ca = await startCa({ limits });
  const root = mkdtempSync(join(tmpdir(), "mesh-identity-"));
  const policyFile = join(root, "mesh-policy.toml");
  writeFileSync(policyFile, policy);
  await ca.ca.issue({ domain: "edge.internal" });
  const p = ca.ca.paths.leaf("edge.internal");
  return {
    ca,
    root,
    policyFile,
    stateDir: (s) => join(root, "state", s),
    // replace: the tests enrol the same names again in fresh state folders, on purpose.
    token: (s) => createToken(ca.ca, { domain: `${s}.internal`, replace: true }).token,
    edge: { cert: readFileSync(p.cert), key: readFileSync(p.key) },
    async cleanup() {
      // A test may have restarted the server: close the one in place now.
      await ca.server.close().catch(() => {});
      await ca.stop().catch(() => {});
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export interface Running {
  svc: IdentityService;
  logs: LogSink;
}

export async function startIn(
  w: World,
  service: ServiceName,
  opts: Omit<Partial<IdentityOptions>, "token"> & {
    token?: string | null;
    upstreams?: Record<string, string>;
    logs?: LogSink;
  } = {},
): Promise<Running> {
  const logs = opts.logs ?? new LogSink();
  const tokenText = opts.token === null ? undefined : (opts.token ?? w.token(service));
  const svc = await startIdentityService({
    service,
    app: appNamed(service)!,
    policyFile: w.policyFile,
    port: 0,
    log: createLogger(service, logs),
    upstreams: opts.upstreams,
    identity: {
      caUrl: opts.caUrl ?? w.ca.server.url,
      stateDir: opts.stateDir ?? w.stateDir(service),
      token: tokenText ? parseToken(tokenText, "test") : undefined,
      lifetime: opts.lifetime,
      pollMs: opts.pollMs ?? 60_000,
      schedule: opts.schedule,
      random: opts.random,
      clock: opts.clock,
      callDeadline: opts.callDeadline,
    },
  });
  return { svc, logs };
}

export type Result = { status: number; body: string } | { error: string };

/** One mTLS request on a fresh connection, trusting the CA's published roots. */
export function callAs(
  w: World,
  who: { cert: Buffer | string; key: Buffer | string },
  port: number,
  servername: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Result> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        servername,
        method,
        path,
        ca: w.ca.bundle(),
        cert: who.cert,
        key: who.key,
        agent: false,
        timeout: 5_000,
        headers: body === undefined ? {} : { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
      },
    );
    req.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** The identity a service holds now, read from its state folder (as a peer would present it). */
export function stateIdentity(dir: string): { cert: Buffer; key: Buffer } {
  return { cert: readFileSync(join(dir, "cert.pem")), key: readFileSync(join(dir, "key.pem")) };
}
