// mesh:up's online mode: the CA server's rate limits, one-time tokens for the identities whose
// state folders hold none, and the edge identity (an operator's curl) enrolled and kept renewed here.
// The CA server itself runs as its own process (mesh-components.ts).
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { type CertificateAuthority, DEFAULT_LIMITS, createToken, normalSerial, type BucketSpec } from "../ca/index.ts";
import { createLogger } from "../services/mesh/log.ts";
import { enrolWithToken, parseToken } from "../services/mesh/identity-agent/bootstrap.ts";
import { IdentityAgent, factsFields } from "../services/mesh/identity-agent/renewer.ts";
import { statePaths, type StatePaths } from "../services/mesh/identity-agent/state-folder.ts";
import { scheduleAt } from "../services/mesh/identity-agent/timing.ts";
import { parseLine, type MeshLine } from "./mesh-format.ts";

/** A token lives long enough for a slow start, and no longer: it is a bearer secret. */
const TOKEN_TTL_MS = 10 * 60_000;

/**
 * The CA server's default limits (5 a minute per name, 30 per address) fit hour-long
 * certificates. mesh:up's identities all renew from 127.0.0.1, at about 60 % of their life at the
 * earliest (90 % of --renew-at, when it is given): with lifetimes of seconds that is more than 5 a
 * minute. Each name gets three times its renewal rate (retries, a restart's enrolment), and the
 * address room for six such names (mesh:up's four and two enrolled by hand).
 */
export function rateLimits(lifetimeMs: number, renewAt = 2 / 3): { perName: BucketSpec; perAddress: BucketSpec } {
  const renewalsPerMinute = 60_000 / (lifetimeMs * Math.min(0.6, renewAt * 0.9));
  const perName = Math.max(DEFAULT_LIMITS.perName.perMinute, Math.ceil(3 * renewalsPerMinute));
  const perAddress = Math.max(DEFAULT_LIMITS.perAddress.perMinute, 6 * perName);
  return {
    perName: { capacity: perName, perMinute: perName },
    perAddress: { capacity: perAddress, perMinute: perAddress },
  };
}

export type FolderState =
  | { kind: "valid"; serial: string; notAfter: string }
  | { kind: "missing" }
  | { kind: "stale"; why: string };

/**
 * Whether `dir` holds an identity this CA still vouches for: a certificate that has not expired
 * and that the ledger knows as VALID. Anything else needs a new enrolment.
 */
export function folderState(ca: CertificateAuthority, dir: string): FolderState {
  const p = statePaths(dir);
  if (!existsSync(p.cert) || !existsSync(p.key)) return { kind: "missing" };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileSync(p.cert));
  } catch {
    return { kind: "stale", why: `${p.cert} is not a certificate` };
  }
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() <= Date.now())
    return { kind: "stale", why: `its certificate expired at ${notAfter.toISOString()}` };
  const serial = normalSerial(cert.serialNumber);
  const row = ca.list({ all: true }).find((c) => c.serial === serial);
  if (!row)
    return { kind: "stale", why: `its certificate (serial ${serial}) was not issued by the CA in ${ca.layout.dir}` };
  if (row.status !== "VALID")
    return { kind: "stale", why: `its certificate (serial ${serial}) is ${row.status.toLowerCase()}` };
  return { kind: "valid", serial, notAfter: notAfter.toISOString() };
}

/**
 * A folder whose identity is no good is moved aside, never deleted (it holds a key), so that the
 * service enrols afresh instead of starting from it. Returns where it went.
 */
export function moveAside(dir: string): string {
  const to = `${dir}.replaced-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  renameSync(dir, to);
  return to;
}

/**
 * A one-time token for `<name>.internal`: the token goes only into an environment or a Bearer header.
 * Asked for only when the identity's folder holds nothing the CA vouches for (folderState), so a
 * live certificate the ledger still has for the name is held by no one here: it is replaced.
 */
export function tokenFor(ca: CertificateAuthority, name: string): string {
  return createToken(ca, { domain: `${name}.internal`, ttlMs: TOKEN_TTL_MS, replace: true }).token;
}

export interface EdgeIdentity {
  readonly paths: StatePaths;
  stop(): void;
}

/**
 * edge is a client, not a service: mesh:up enrols it (as a service would, trusting the CA only
 * through the token's fingerprint) and runs its identity agent, so the README's curl commands
 * always have a current certificate in state/edge/.
 */
export async function startEdgeIdentity(o: {
  ca: CertificateAuthority;
  caUrl: string;
  dir: string;
  lifetime: string;
  pollMs?: number;
  /** mesh:up's --renew-at: the fraction of the life at which to renew (default 2/3). */
  renewAt?: number;
  echo: (line: MeshLine) => void;
}): Promise<EdgeIdentity> {
  const paths = statePaths(o.dir);
  const dns = "edge.internal";
  const log = createLogger("edge", {
    write(text: string) {
      for (const raw of text.split("\n")) {
        const l = parseLine(raw);
        if (l) o.echo(l);
      }
    },
  });
  const state = folderState(o.ca, o.dir);
  if (state.kind !== "valid") {
    if (state.kind === "stale")
      log.warn(
        { event: "identity.replaced", stateDir: o.dir, movedTo: moveAside(o.dir) },
        `${o.dir}: ${state.why}; moved aside, enrolling edge again`,
      );
    const token = parseToken(tokenFor(o.ca, "edge"), "mesh:up");
    const e = await enrolWithToken({ caUrl: o.caUrl, token, dns, paths, lifetime: o.lifetime });
    log.info(
      {
        event: "identity.enrolled",
        ...factsFields(e.facts),
        etag: e.etag,
        roots: e.roots,
        stateDir: o.dir,
        ca: o.caUrl,
      },
      `enrolled ${dns} with the CA at ${o.caUrl}: serial ${e.facts.serial}, valid until ${e.facts.notAfter}`,
    );
  }
  const agent = new IdentityAgent(
    {
      caUrl: o.caUrl,
      dns,
      paths,
      lifetime: o.lifetime,
      pollMs: o.pollMs,
      schedule: scheduleAt(o.renewAt),
    },
    { reloadTls: () => true, log, metrics: { renewed() {}, renewalFailed() {} } },
  );
  agent.start();
  return { paths, stop: () => agent.stop() };
}

/** Where an identity's files are in each mode: what mesh.json records for probe and check. */
export function identityFiles(
  mode: "online" | "file",
  name: string,
  o: { state: string; pki: string },
): { cert: string; key: string; bundle: string; crls: string } {
  if (mode === "online") {
    const p = statePaths(join(o.state, name));
    return { cert: p.cert, key: p.key, bundle: p.bundle, crls: p.crls };
  }
  return {
    cert: join(o.pki, "certs", `${name}.internal.crt`),
    key: join(o.pki, "certs", `${name}.internal.key`),
    bundle: join(o.pki, "bundle.pem"),
    crls: join(o.pki, "crls.pem"),
  };
}
