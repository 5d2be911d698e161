// Test helpers for the online CA: a fresh CA served in-process on 127.0.0.1:0 with its
// log lines parsed, a real HTTPS client for EST requests, and CSRs made with WebCrypto.
import { request } from "node:https";
import { KeyObject } from "node:crypto";
import { join } from "node:path";
import { pino } from "pino";
import { CertificateAuthority } from "../../ca/authority.ts";
import { CaServer, type CaServerOptions } from "../../ca/server/server.ts";
import { x509 } from "../../ca/x509.ts";
import type { EventName, LoggedEvent } from "../../lib/events.ts";
import { cleanup, tempDir } from "./ca.ts";
import { checkedLine } from "./events.ts";

export interface LogLine {
  event?: string;
  [k: string]: unknown;
}

/** Every log line, parsed; a test can wait for one. */
export class Lines {
  readonly all: LogLine[] = [];
  private waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  write(chunk: string): void {
    for (const raw of chunk.split("\n")) {
      if (!raw.trim()) continue;
      const line = checkedLine(raw) as LogLine | undefined;
      if (!line) throw new Error(`not a JSON log line: ${raw.slice(0, 200)}`);
      this.all.push(line);
      this.waiters = this.waiters.filter((w) => (w.pred(line) ? (w.resolve(line), false) : true));
    }
  }
  raw(): string {
    return this.all.map((l) => JSON.stringify(l)).join("\n");
  }
  events(event: string): LogLine[] {
    return this.all.filter((l) => l.event === event);
  }
  /** The first `event` line (already logged or still to come) that matches `pred`, with its fields typed. */
  waitEvent<E extends EventName>(
    event: E,
    pred: (l: LoggedEvent<E>) => boolean = () => true,
    ms = 5_000,
  ): Promise<LoggedEvent<E>> {
    return this.wait((l) => l.event === event && pred(l as unknown as LoggedEvent<E>), ms) as unknown as Promise<
      LoggedEvent<E>
    >;
  }
  wait(pred: (l: LogLine) => boolean, ms = 5_000): Promise<LogLine> {
    const found = this.all.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no such log line within ${ms} ms; have:\n${this.raw()}`)), ms);
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(t);
          resolve(l);
        },
      });
    });
  }
}

export interface TestCa {
  dir: string;
  ca: CertificateAuthority;
  server: CaServer;
  lines: Lines;
  /** Moves the CA's clock (not the TLS layer's): tokens and ledger checks see it. */
  shift(ms: number): void;
  bundle(): string;
  stop(): Promise<void>;
}

export async function startCa(opts: Partial<CaServerOptions> = {}): Promise<TestCa> {
  const root = tempDir("mesh-est-");
  const dir = join(root, "pki");
  let offset = 0;
  const now = () => new Date(Date.now() + offset);
  const ca = await CertificateAuthority.init({ dir, name: "Acme Corp CA", now });
  const lines = new Lines();
  const log = pino(
    { base: { service: "ca" }, timestamp: pino.stdTimeFunctions.isoTime },
    { write: (s: string) => lines.write(s) },
  );
  const server = await CaServer.start({ ca, port: 0, log, ...opts });
  return {
    dir,
    ca,
    server,
    lines,
    shift: (ms) => {
      offset = ms;
    },
    bundle: () =>
      ca.ledger
        .issuers()
        .filter((r) => r.kind === "root" && r.state === "published")
        .map((r) => ca.issuerCert(r.id).toString("pem"))
        .join("\n"),
    stop: async () => {
      await server.close();
      ca.close();
      cleanup(root);
    },
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request over a fresh connection (no agent), trusting `ca`, with an optional client certificate. */
export function est(
  url: string,
  opts: {
    method?: string;
    path: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    ca: string;
    cert?: string;
    key?: string;
  },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${opts.path}`,
      {
        method: opts.method ?? "GET",
        headers: opts.headers,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("latin1");
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

export interface Csr {
  /** base64 of the DER CSR: an EST request body. */
  body: string;
  keyPem: string;
  keys: CryptoKeyPair;
}

/** A CSR signed with a new P-256 key (or the given one), for CN = name and optional extra SANs. */
export async function makeCsr(
  name: string,
  opts: { keys?: CryptoKeyPair; sans?: x509.JsonGeneralNames; cn?: string[] } = {},
): Promise<Csr> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = opts.keys ?? (await crypto.subtle.generateKey(alg, true, ["sign", "verify"]));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: opts.cn ?? [name] }],
    keys,
    signingAlgorithm: alg,
    extensions: opts.sans ? [new x509.SubjectAlternativeNameExtension(opts.sans)] : [],
  });
  const keyPem = KeyObject.from(keys.privateKey).export({ format: "pem", type: "pkcs8" }).toString();
  return { body: Buffer.from(csr.rawData).toString("base64"), keyPem, keys };
}

export const PKCS10 = { "Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64" };

/** The certificates of a base64 certs-only PKCS#7 answer. */
export function certsOf(body: string): x509.X509Certificate[] {
  return [...new x509.X509Certificates(Buffer.from(body.replace(/\s+/g, ""), "base64"))];
}

export function pemOf(certs: x509.X509Certificate[]): string {
  return `${certs.map((c) => c.toString("pem")).join("\n")}\n`;
}
