// The trust bundle in the SPIFFE bundle format (spiffe/spiffe standards/SPIFFE_Trust_Domain_and_Bundle.md
// 4, X509-SVID.md 6.1), for SPIFFE tooling (SPIRE federation, go-spiffe, Envoy via an SDS agent):
// a JWK set, one key per published root, `use: "x509-svid"`, its certificate in `x5c`, no `kid`.
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import type { EventLogger } from "../../lib/events.ts";
import type { CertificateAuthority } from "../authority.ts";
import { pemBlocks } from "../../lib/pem.ts";
import { CERT_MODE, inside, writeAtomic } from "../files.ts";
import { matchesEtag, type Published } from "./published.ts";

export const SPIFFE_BUNDLE_PATH = "/.well-known/spiffe/bundle";
/** How often a consumer should poll for a new bundle, in seconds (SPIRE's bundle endpoint default too). */
export const SPIFFE_REFRESH_HINT_S = 300;

export interface SpiffeJwk {
  use: "x509-svid";
  kty: string;
  x5c: [string];
  [member: string]: unknown;
}

export interface SpiffeBundleDoc {
  keys: SpiffeJwk[];
  spiffe_sequence: number;
  spiffe_refresh_hint: number;
}

/** One JWK per root: the public key members from the certificate itself (RFC 7517, RFC 7518 6). */
export function bundleKeys(rootsPem: string): SpiffeJwk[] {
  return pemBlocks(rootsPem, "CERTIFICATE").map((pem) => {
    const cert = new X509Certificate(pem);
    const jwk = cert.publicKey.export({ format: "jwk" }) as Record<string, unknown>;
    return { use: "x509-svid", ...jwk, kty: String(jwk.kty), x5c: [cert.raw.toString("base64")] };
  });
}

interface SequenceFile {
  sequence: number;
  /** The cacerts ETag of the roots the sequence number was given to. */
  roots: string;
}

/**
 * spiffe_sequence must grow whenever the bundle changes, across restarts too: it is kept in the
 * CA's folder (spiffe-bundle.json) with the roots it numbered, and bumped when they differ.
 */
export class SpiffeBundleEndpoint {
  private cached?: { roots: string; body: string; etag: string };
  private readonly file: string;

  constructor(
    ca: CertificateAuthority,
    private readonly log: EventLogger,
  ) {
    this.file = inside(ca.layout.dir, "spiffe-bundle.json");
  }

  private sequenceFor(roots: string): number {
    let stored: SequenceFile | undefined;
    try {
      if (existsSync(this.file)) stored = JSON.parse(readFileSync(this.file, "utf8")) as SequenceFile;
    } catch (err) {
      this.log.warn(
        { event: "spiffe.bundle_sequence_unreadable", file: this.file, err: (err as Error).message },
        "the SPIFFE bundle sequence file is unreadable: starting it again",
      );
    }
    const prev = stored && Number.isSafeInteger(stored.sequence) && stored.sequence > 0 ? stored.sequence : 0;
    if (stored && stored.roots === roots && prev > 0) return prev;
    const next = prev + 1;
    try {
      writeAtomic(this.file, `${JSON.stringify({ sequence: next, roots } satisfies SequenceFile)}\n`, CERT_MODE);
    } catch (err) {
      this.log.warn(
        { event: "spiffe.bundle_sequence_unwritable", file: this.file, err: (err as Error).message },
        "could not record the SPIFFE bundle sequence",
      );
    }
    return next;
  }

  /** The bundle document for what is published now (rebuilt only when the roots change). */
  current(p: Published): { body: string; etag: string } {
    if (this.cached?.roots === p.etag) return this.cached;
    const doc: SpiffeBundleDoc = {
      keys: bundleKeys(p.rootsPem),
      spiffe_sequence: this.sequenceFor(p.etag),
      spiffe_refresh_hint: SPIFFE_REFRESH_HINT_S,
    };
    const body = `${JSON.stringify(doc, null, 2)}\n`;
    this.cached = { roots: p.etag, body, etag: `"${createHash("sha256").update(body).digest("base64url")}"` };
    return this.cached;
  }

  /** GET/HEAD /.well-known/spiffe/bundle: JSON, a strong ETag, 304 when the caller holds it. */
  serve(p: Published, ifNoneMatch: string | undefined, method: string, res: ServerResponse): void {
    const { body, etag } = this.current(p);
    const headers = { ETag: etag, "Cache-Control": "no-cache" };
    if (matchesEtag(ifNoneMatch, etag)) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, {
      ...headers,
      "Content-Type": "application/json",
      "Content-Length": String(Buffer.byteLength(body)),
    });
    res.end(method === "HEAD" ? undefined : body);
  }
}
