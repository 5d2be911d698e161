// Shared pieces of the mesh suites: a fresh CA in a temp dir, services started in-process
// with their log lines captured and parsed, and a real mTLS client.
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "node:https";
import { CertificateAuthority } from "../ca/index.ts";
import { startService, type RunningService, type ServiceOptions } from "../services/mesh/runtime.ts";
import { createLogger } from "../services/mesh/log.ts";
import type { ServiceName } from "../services/mesh/names.ts";
import type { EventName, LoggedEvent } from "../lib/events.ts";
import { checkedLine } from "./helpers/events.ts";
import { appNamed } from "../services/apps/index.ts";

/**
 * A copy of the repository's mesh-policy.toml as shipped. Tests read this, never the working
 * copy, which users are told to edit; test/policy-fixture.test.ts keeps the two in step.
 */
export const SHIPPED_POLICY_FILE = join(import.meta.dirname, "fixtures", "mesh-policy.toml");

export const SEED_POLICY = `[payment]
accepts = ["order"]

[inventory]
accepts = ["order"]

[order]
accepts = ["edge"]
`;

export interface LogLine {
  event?: string;
  service?: string;
  reason?: string;
  rule?: string;
  [k: string]: unknown;
}

/** A pino destination that keeps every line parsed, and lets a test wait for one. */
export class LogSink {
  readonly lines: LogLine[] = [];
  private waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  write(chunk: string): boolean {
    for (const raw of chunk.split("\n")) {
      if (!raw.trim()) continue;
      const line = checkedLine(raw) as LogLine | undefined;
      if (!line) throw new Error(`not a JSON log line: ${raw.slice(0, 200)}`);
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => (w.pred(line) ? (w.resolve(line), false) : true));
    }
    return true;
  }
  /** The first line so far matching `pred` (with ev(), narrowed to its event). */
  find<T extends LogLine>(pred: (l: LogLine) => l is T): T | undefined;
  find(pred: (l: LogLine) => boolean): LogLine | undefined;
  find(pred: (l: LogLine) => boolean): LogLine | undefined {
    return this.lines.find(pred);
  }
  /** The first `event` line (already logged or still to come) that matches `pred`, with its fields typed. */
  waitEvent<E extends EventName>(
    event: E,
    pred: (l: LoggedEvent<E>) => boolean = () => true,
    ms = 5_000,
    since = 0,
  ): Promise<LoggedEvent<E>> {
    return this.wait((l) => l.event === event && pred(l as unknown as LoggedEvent<E>), ms, since) as unknown as Promise<
      LoggedEvent<E>
    >;
  }
  /** The first line (already logged or still to come) matching `pred` (with ev(), narrowed to its event). */
  wait<T extends LogLine>(pred: (l: LogLine) => l is T, ms?: number, since?: number): Promise<T>;
  wait(pred: (l: LogLine) => boolean, ms?: number, since?: number): Promise<LogLine>;
  wait(pred: (l: LogLine) => boolean, ms = 5_000, since = 0): Promise<LogLine> {
    const seen = this.lines.slice(since).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `no matching log line within ${ms} ms; last lines:\n${this.lines
                .slice(-5)
                .map((l) => JSON.stringify(l))
                .join("\n")}`,
            ),
          ),
        ms,
      );
      this.waiters.push({ pred, resolve: (l) => (clearTimeout(t), resolve(l)) });
    });
  }
}

export interface TestPki {
  root: string;
  dir: string;
  policyFile: string;
  ca: CertificateAuthority;
  cleanup(): void;
}

/** A fresh CA with certificates for the three services and `edge`, and a policy file. */
export async function freshPki(policy = SEED_POLICY, name = "Mesh Test CA"): Promise<TestPki> {
  const root = mkdtempSync(join(tmpdir(), "mesh-test-"));
  const dir = join(root, "pki");
  const ca = await CertificateAuthority.init({ dir, name });
  for (const n of ["order", "payment", "inventory", "edge"]) await ca.issue({ domain: `${n}.internal` });
  const policyFile = join(root, "mesh-policy.toml");
  writeFileSync(policyFile, policy);
  return {
    root,
    dir,
    policyFile,
    ca,
    cleanup() {
      ca.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export interface TestService {
  svc: RunningService;
  logs: LogSink;
}

export async function start(
  pki: TestPki,
  service: ServiceName,
  extra: Partial<ServiceOptions> = {},
): Promise<TestService> {
  const logs = new LogSink();
  const svc = await startService({
    service,
    app: appNamed(service)!,
    pkiDir: pki.dir,
    policyFile: pki.policyFile,
    port: 0,
    log: createLogger(service, logs),
    ...extra,
  });
  return { svc, logs };
}

export interface Identity {
  cert: Buffer | string;
  key: Buffer | string;
}

export function identity(pki: TestPki, name: string): Identity {
  const p = pki.ca.paths.leaf(`${name}.internal`);
  return { cert: readFileSync(p.cert), key: readFileSync(p.key) };
}

export type CallResult = { status: number; body: any } | { error: string };

/** One real mTLS request on a fresh connection, as `who` (or with no certificate). */
export function call(
  pki: TestPki,
  port: number,
  servername: string,
  who: Identity | null,
  method: string,
  path: string,
  body?: unknown,
  opts: { maxVersion?: "TLSv1.2" | "TLSv1.3" } = {},
): Promise<CallResult> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        servername,
        method,
        path,
        ca: readFileSync(pki.ca.paths.bundle),
        ...(who ?? {}),
        agent: false,
        maxVersion: opts.maxVersion,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        timeout: 5_000,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
        res.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
      },
    );
    req.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
