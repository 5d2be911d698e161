// First start: the one-time token, trust in the CA server through the token's root fingerprint
// only (as `step ca bootstrap --fingerprint`), then enrolment with a key made in the state folder.
import { type X509Certificate, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  formatGenerationsFile,
  generationsPath,
  parseRootGenerations,
  rootGenerations,
} from "../../../lib/generations.ts";
import { IdentityError } from "./errors.ts";
import { enrolCsr, getCacerts, getCrls, type CaObserver } from "./est-client.ts";
import { newKeyAndCsr } from "./csr.ts";
import { checkChain, pemOf, type IdentityFacts } from "./chain.ts";
import { commitIdentity, ensureFolder, writeAtomic, type StatePaths } from "./state-folder.ts";

export interface Token {
  /** The whole token: only ever sent as a Bearer header, never logged. */
  readonly value: string;
  /** base64url SHA-256 of the DER of the root the CA signs with. */
  readonly fingerprint: string;
}

/** `mt1.<secret>.<fp>` (docs/est.md); the error never repeats the token. */
export function parseToken(text: string, from: string): Token {
  const value = text.trim();
  const m = /^mt1\.[A-Za-z0-9_-]{43}\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (!m)
    throw new IdentityError(
      "TOKEN_MALFORMED",
      `the enrolment token from ${from} is not an mt1 token (mt1.<secret>.<fingerprint>): make one with npm run -s ca -- token --domain <service>.internal > <file> (add --replace if that name has a live certificate)`,
    );
  return { value, fingerprint: m[1]! };
}

/** The token from --token-file or MESH_ENROL_TOKEN (never a command-line argument: ps shows those). */
export function readToken(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Token | undefined {
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new IdentityError(
        "TOKEN_MISSING",
        `cannot read the enrolment token file ${file}: ${(e as NodeJS.ErrnoException).code ?? "unreadable"}`,
      );
    }
    return parseToken(text, file);
  }
  if (env.MESH_ENROL_TOKEN) return parseToken(env.MESH_ENROL_TOKEN, "MESH_ENROL_TOKEN");
  return undefined;
}

export function fingerprintOf(cert: X509Certificate): string {
  return createHash("sha256").update(cert.raw).digest("base64url");
}

/**
 * The root whose SHA-256 is the token's fingerprint, from an unverified cacerts fetch: nothing
 * else from that answer is trusted. Refuses before anything is sent to the CA.
 */
export async function pinnedRoot(caUrl: string, token: Token, observe?: CaObserver): Promise<X509Certificate> {
  const offered = await getCacerts({ url: caUrl, observe });
  if (!offered.changed)
    throw new IdentityError("CA_ANSWER_INVALID", `the CA at ${caUrl} answered cacerts with no bundle`);
  const root = offered.roots.find((r) => fingerprintOf(r) === token.fingerprint);
  if (!root) {
    throw new IdentityError(
      "FINGERPRINT_MISMATCH",
      `none of the ${offered.roots.length} root(s) the server at ${caUrl} offers has the fingerprint in the enrolment token (${token.fingerprint}): it is not the CA that made the token, so nothing was sent to it; check --ca, or ask that CA for a token`,
    );
  }
  return root;
}

export interface Enrolled {
  facts: IdentityFacts;
  etag: string | null;
  roots: number;
}

/** Enrols with the token and fills the state folder: bundle, CRLs, then key and certificate as a pair. */
export async function enrolWithToken(o: {
  caUrl: string;
  token: Token;
  dns: string;
  paths: StatePaths;
  lifetime?: string;
  observe?: CaObserver;
}): Promise<Enrolled> {
  const observe = o.observe;
  const pinned = (await pinnedRoot(o.caUrl, o.token, observe)).toString();
  // From here on the CA server is verified against the pinned root; the bundle comes over that.
  const bundle = await getCacerts({ url: o.caUrl, ca: pinned, observe });
  if (!bundle.changed)
    throw new IdentityError("CA_ANSWER_INVALID", `the CA at ${o.caUrl} answered cacerts with no bundle`);
  const bundlePem = pemOf(bundle.roots);
  const { keyPem, csr } = newKeyAndCsr(o.dns);
  const chain = await enrolCsr({ url: o.caUrl, ca: pinned, observe }, "simpleenroll", csr, {
    token: o.token.value,
    lifetime: o.lifetime,
  });
  const gens = parseRootGenerations(bundle.rootGenerations, bundle.roots.length);
  const known = gens ? rootGenerations(bundle.roots, gens) : [];
  const facts = checkChain(chain, bundle.roots, o.dns, keyPem, Date.now(), {
    generations: new Map(known.map((r) => [r.sha256, r.generation])),
  });
  const crls = await getCrls({ url: o.caUrl, ca: bundlePem, observe });
  ensureFolder(o.paths.dir);
  if (gens) writeAtomic(generationsPath(o.paths.bundle), formatGenerationsFile(known));
  writeAtomic(o.paths.bundle, bundlePem);
  writeAtomic(o.paths.etag, bundle.etag ?? "");
  writeAtomic(o.paths.crls, crls);
  commitIdentity(o.paths, keyPem, pemOf(chain));
  return { facts, etag: bundle.etag, roots: bundle.roots.length };
}
