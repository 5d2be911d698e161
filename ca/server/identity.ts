// The CA server's own TLS certificate (ca.internal), issued by the CA itself, its
// key made and kept in memory only. Renewed before it ages out, when it was revoked,
// and when a newer published generation signs, so retiring the old one never strands it.
import { isIP } from "node:net";
import type { CertificateAuthority } from "../authority.ts";
import { CaError } from "../errors.ts";
import { signLeaf } from "../issuance.ts";
import { exportPrivateKey, generateKeyPair } from "../keys.ts";
import { CA_SERVER_NAME } from "../reserved.ts";
import type { Published } from "./published.ts";

export const SERVER_NAME = CA_SERVER_NAME;
/** Renew at two thirds of its life, as step-ca's renewer does by default. */
const RENEW_AT = 2 / 3;

export interface ServerCert {
  key: string;
  /** Leaf, then any intermediate. */
  cert: string;
  serial: string;
  generation: number;
  notBefore: Date;
  notAfter: Date;
  /** When it was made (notBefore is backdated for clock skew, so it cannot measure its age). */
  issuedAt: Date;
}

export async function issueServerCert(
  ca: CertificateAuthority,
  opts: { hosts: string[]; lifetimeMs: number; cdp?: (issuerId: string) => string[] },
): Promise<ServerCert> {
  const hosts = [...new Set(["127.0.0.1", ...opts.hosts])];
  const keys = await generateKeyPair("ec-p256");
  const issuedAt = ca.now();
  let issued: Awaited<ReturnType<typeof signLeaf>> | undefined;
  // Replicas on one ledger each have their own certificate (and key) under this one name: the
  // newest is the ledger's current one and supersedes the others, which stay good for their
  // replica (renewalReason). Two replicas superseding the same row at once: the loser retries.
  for (let attempt = 1; !issued; attempt++) {
    const current = ca.ledger.current(SERVER_NAME);
    try {
      issued = await signLeaf(ca, {
        names: {
          name: SERVER_NAME,
          dns: hosts.filter((h) => isIP(h) === 0 && h !== SERVER_NAME),
          ip: hosts.filter((h) => isIP(h) !== 0),
          uri: [],
        },
        days: 1,
        lifetimeMs: opts.lifetimeMs,
        keyType: "ec-p256",
        publicKey: keys.publicKey,
        source: "ca-server",
        supersede: current?.serial,
        cdp: opts.cdp,
      });
    } catch (err) {
      if (!(err instanceof CaError && (err.code === "REFUSED" || err.code === "ALREADY_EXISTS")) || attempt >= 5)
        throw err;
    }
  }
  const row = ca.ledger.bySerial(issued.serial)!;
  return {
    key: await exportPrivateKey(keys.privateKey),
    cert: row.pem + ca.chainPem(issued.issuerId),
    serial: issued.serial,
    generation: issued.generation,
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
    issuedAt,
  };
}

/** Why the server's certificate must be replaced now, or null while it is fine. */
export function renewalReason(ca: CertificateAuthority, cert: ServerCert, published: Published): string | null {
  const now = ca.now().getTime();
  const row = ca.ledger.bySerial(cert.serial);
  // Superseded is not a reason: another replica's newer certificate supersedes this one, and
  // renewing on that would make replicas replace each other's certificates forever.
  if (!row || row.status === "revoked") return `its ledger row is ${row?.status ?? "gone"}`;
  const start = cert.issuedAt.getTime();
  if (now >= start + (cert.notAfter.getTime() - start) * RENEW_AT) return "two thirds of its life have passed";
  if (!published.generations.includes(cert.generation))
    return `its generation ${cert.generation} is no longer published`;
  if (published.signerPublished && published.signerGeneration !== cert.generation)
    return `generation ${published.signerGeneration} signs now`;
  return null;
}
