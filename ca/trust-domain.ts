// The CA's SPIFFE trust domain (docs/ca.md, "SPIFFE identities"), kept in the CA's own
// folder as spiffe.json, written once by `ca init` and never rewritten: every leaf's SPIFFE ID
// derives from it, so changing it would split the mesh into two trust domains.
import { existsSync, readFileSync } from "node:fs";
import { DEFAULT_TRUST_DOMAIN, trustDomainProblem } from "../lib/spiffe.ts";
import { CaError, badInput } from "./errors.ts";
import { CERT_MODE, inside, writeAtomic } from "./files.ts";

export interface TrustDomainSetting {
  readonly trustDomain: string;
  /** spiffe.json; "ledger" for a CA initialised when the ledger kept it; "default" for a CA from before trust domains. */
  readonly source: "config" | "ledger" | "default";
}

export function spiffeConfigPath(dir: string): string {
  return inside(dir, "spiffe.json");
}

/** --trust-domain, checked by the SPIFFE rules (lower-case [a-z0-9.-_], no port, no scheme). */
export function validateTrustDomain(td: unknown): string {
  if (typeof td !== "string") throw badInput("--trust-domain must be a name such as example.org");
  const why = trustDomainProblem(td);
  if (why)
    throw badInput(
      `--trust-domain ${JSON.stringify(td.slice(0, 80))} is not a SPIFFE trust domain: ${why}; e.g. example.org or internal`,
    );
  return td;
}

/** Writes spiffe.json for a new CA (init has made sure no CA is there, and holds its new key). */
export function saveTrustDomain(dir: string, td: string): void {
  writeAtomic(spiffeConfigPath(dir), `${JSON.stringify({ trust_domain: td }, null, 2)}\n`, CERT_MODE);
}

/** The CA's trust domain: spiffe.json, else what an older ledger recorded, else the default. */
export function loadTrustDomain(dir: string, legacy: () => string | undefined): TrustDomainSetting {
  const path = spiffeConfigPath(dir);
  if (existsSync(path)) {
    let td: unknown;
    try {
      td = (JSON.parse(readFileSync(path, "utf8")) as { trust_domain?: unknown }).trust_domain;
    } catch (err) {
      throw new CaError(
        "CORRUPT",
        `${path} is not readable JSON (${(err as Error).message}); restore it from your backup`,
      );
    }
    const why = typeof td === "string" ? trustDomainProblem(td) : "trust_domain is missing";
    if (why) throw new CaError("CORRUPT", `${path}: ${why}; restore it from your backup`);
    return { trustDomain: td as string, source: "config" };
  }
  const old = legacy();
  if (old !== undefined && trustDomainProblem(old) === null) return { trustDomain: old, source: "ledger" };
  return { trustDomain: DEFAULT_TRUST_DOMAIN, source: "default" };
}
