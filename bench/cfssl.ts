// cfssl as the EST bench's peer (issue 16): `cfssl serve` 1.2 (Debian's golang-cfssl) over TLS
// with its SQLite certificate store recording every certificate it signs, the like-for-like
// of `ca serve` and its ledger. Absent cfssl, the bench skips this column and says so.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";

export const CFSSL = "/usr/bin/cfssl";

// cfssl 1.2's certdb schema for SQLite (certdb/sqlite/migrations/001_CreateCertificates.sql):
// Debian's package ships the binary without it. The store keeps SQLite's defaults, as cfssl
// opens it: a rollback journal and synchronous=FULL.
const CERTDB_SCHEMA = `
CREATE TABLE certificates (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  ca_label                 blob,
  status                   blob NOT NULL,
  reason                   int,
  expiry                   timestamp,
  revoked_at               timestamp,
  pem                      blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  body                     blob NOT NULL,
  expiry                   timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
`;

export interface Cfssl {
  url: string;
  pid: number;
  /** The server's TLS certificate, for the client to trust. */
  tlsCa: string;
  /** With `mutualTls`: a P-256 client certificate (PEM) of cfssl's CA and its key, for the client to present. */
  client: { cert: string; key: string } | null;
  /** Certificates its store holds. */
  stored(): number;
  stop(): Promise<void>;
}

export function cfsslInstalled(): boolean {
  return existsSync(CFSSL);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function listening(port: number, child: ChildProcess, deadlineMs: number): Promise<void> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`cfssl serve exited with ${child.exitCode}`);
    const up = await new Promise<boolean>((resolve) => {
      const c = connect(port, "127.0.0.1", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (up) return;
    if (Date.now() > end) throw new Error("cfssl serve did not listen");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts `cfssl serve` in `dir` with a P-256 CA, a TLS certificate for 127.0.0.1 and its SQLite
 * store; `pin` prefixes the command (taskset -c N), as for `ca serve`. `mutualTls`: every client
 * must present a certificate of cfssl's CA (`-mutual-tls-ca`), as `ca serve` asks of a renewal;
 * one is made for the client (cfssl checks the chain and nothing else about the caller).
 */
export async function startCfssl(dir: string, pin: string[], opts: { mutualTls?: boolean } = {}): Promise<Cfssl> {
  const openssl = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca-key.pem"]);
  openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    "ca-key.pem",
    "-subj",
    "/CN=Bench cfssl CA",
    "-days",
    "30",
    "-out",
    "ca.pem",
  ]);
  openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "tls-key.pem",
    "-out",
    "tls.pem",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-days",
    "2",
  ]);
  if (opts.mutualTls) {
    openssl([
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "client-key.pem",
      "-out",
      "client.csr",
      "-subj",
      "/CN=client.bench.internal",
    ]);
    writeFileSync(join(dir, "client.ext"), "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n");
    openssl([
      "x509",
      "-req",
      "-in",
      "client.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca-key.pem",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      "client.ext",
      "-out",
      "client.pem",
    ]);
  }
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({
      signing: {
        default: { expiry: "1h", usages: ["digital signature", "key encipherment", "server auth", "client auth"] },
      },
    }),
  );
  const dbPath = join(dir, "certdb.sqlite");
  const db = new Database(dbPath);
  db.exec(CERTDB_SCHEMA);
  db.close();
  writeFileSync(join(dir, "db.json"), JSON.stringify({ driver: "sqlite3", data_source: dbPath }));
  const port = await freePort();
  const [cmd, ...pre] = [...pin, CFSSL];
  const child = spawn(
    cmd!,
    [
      ...pre,
      "serve",
      "-address",
      "127.0.0.1",
      "-port",
      String(port),
      "-ca",
      "ca.pem",
      "-ca-key",
      "ca-key.pem",
      "-config",
      "config.json",
      "-db-config",
      "db.json",
      "-tls-cert",
      "tls.pem",
      "-tls-key",
      "tls-key.pem",
      ...(opts.mutualTls ? ["-mutual-tls-ca", "ca.pem"] : []),
      // Errors only: a log line per request would be cost the CA server does not pay either (it logs JSON, buffered).
      "-loglevel",
      "3",
    ],
    { cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    await listening(port, child, 15_000);
  } catch (err) {
    child.kill("SIGKILL");
    throw new Error(`${(err as Error).message}: ${stderr.trim().slice(0, 300)}`);
  }
  return {
    url: `https://127.0.0.1:${port}`,
    pid: child.pid!,
    tlsCa: readFileSync(join(dir, "tls.pem"), "utf8"),
    client: opts.mutualTls
      ? { cert: readFileSync(join(dir, "client.pem"), "utf8"), key: readFileSync(join(dir, "client-key.pem"), "utf8") }
      : null,
    stored: () => {
      const d = new Database(dbPath, { readonly: true });
      try {
        return (d.prepare("SELECT count(*) AS n FROM certificates").get() as { n: number }).n;
      } finally {
        d.close();
      }
    },
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** A CSR (DER) as cfssl's sign endpoint takes it: JSON with the PEM. */
export function cfsslSignBody(csrDer: Uint8Array): string {
  const b64 =
    Buffer.from(csrDer)
      .toString("base64")
      .match(/.{1,64}/g)
      ?.join("\n") ?? "";
  return JSON.stringify({
    certificate_request: `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`,
  });
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();
