// Client identities (edge: the operator's curl, what the README's commands use) hold a
// certificate but serve nothing, so no log line tells of them: their certificate file does.
// mesh:up records where each identity's files are in <logs>/mesh.json (`identities`).
import { X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { isIdentityName, SERVICES } from "../../services/mesh/names.ts";

export interface ClientCert {
  name: string;
  dns: string;
  serial: string | null;
  notAfter: string | null;
  /** When the certificate in the file was issued (its notBefore): the last renewal a client shows. */
  notBefore: string | null;
}

/** mesh.json and a certificate chain are small; anything larger is not what mesh:up wrote. */
const MESH_JSON_MAX = 256 * 1024;
const CERT_MAX = 64 * 1024;
const CLIENTS_MAX = 8;

const stamp = (file: string): string | null => {
  try {
    const st = statSync(file);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return null;
  }
};

export class ClientIdentities {
  private meshStamp: string | null = null;
  private files = new Map<string, string>();
  private certs = new Map<string, { stamp: string | null; cert: ClientCert }>();

  constructor(private readonly logs: string) {}

  /** Re-reads what changed; true when a client's certificate did. */
  refresh(): boolean {
    const meshFile = join(this.logs, "mesh.json");
    const ms = stamp(meshFile);
    if (ms !== this.meshStamp) {
      this.meshStamp = ms;
      this.files = ms ? readIdentities(meshFile) : new Map();
    }
    let changed = false;
    for (const name of [...this.certs.keys()]) {
      if (!this.files.has(name)) {
        this.certs.delete(name);
        changed = true;
      }
    }
    for (const [name, file] of this.files) {
      const st = stamp(file);
      const had = this.certs.get(name);
      if (had && had.stamp === st) continue;
      this.certs.set(name, { stamp: st, cert: readCert(name, file) });
      changed = true;
    }
    return changed;
  }

  list(): ClientCert[] {
    return [...this.certs.values()].map((c) => c.cert).sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** The identities that are not services, and the path of each one's certificate. */
function readIdentities(file: string): Map<string, string> {
  const out = new Map<string, string>();
  try {
    if (statSync(file).size > MESH_JSON_MAX) return out;
    const j = JSON.parse(readFileSync(file, "utf8")) as { identities?: unknown };
    if (!j.identities || typeof j.identities !== "object") return out;
    for (const [name, v] of Object.entries(j.identities as Record<string, unknown>)) {
      if (out.size >= CLIENTS_MAX) break;
      if (!isIdentityName(name) || (SERVICES as readonly string[]).includes(name)) continue;
      const cert = v && typeof v === "object" ? (v as { cert?: unknown }).cert : undefined;
      if (typeof cert === "string" && cert.length < 4096) out.set(name, cert);
    }
  } catch {
    /* half-written or not JSON: read again when it changes */
  }
  return out;
}

function readCert(name: string, file: string): ClientCert {
  const none: ClientCert = { name, dns: `${name}.internal`, serial: null, notAfter: null, notBefore: null };
  try {
    if (statSync(file).size > CERT_MAX) return none;
    const x = new X509Certificate(readFileSync(file));
    return {
      name,
      dns: `${name}.internal`,
      serial: x.serialNumber.toLowerCase(),
      notAfter: new Date(x.validTo).toISOString(),
      notBefore: new Date(x.validFrom).toISOString(),
    };
  } catch {
    return none;
  }
}
