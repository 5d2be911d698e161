// The EST routes (RFC 7030 4.1, 4.2) and the CRLs, as handlers over one context.
// Every refusal is an HttpError; the server turns it into a status, a line and a log event.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import type { EventLogger } from "../../lib/events.ts";
import type { CertificateAuthority } from "../authority.ts";
import { formatDuration, parseDuration } from "../duration.ts";
import { CaError } from "../errors.ts";
import {
  EnrolError,
  authenticateToken,
  csrIdentity,
  currentRow,
  enrol,
  parsePresented,
  reenrol,
  tokenOpen,
  type CsrIdentity,
  type EnrolErrorCode,
  type Enrolled,
  type PresentedCert,
} from "../enrol.ts";
import { describeSkew, httpDate, isSkewed } from "../../lib/clock.ts";
import { ROOT_GENERATIONS_HEADER, formatRootGenerations } from "../../lib/generations.ts";
import type { Admission } from "./admission.ts";
import { reservedReason } from "../reserved.ts";
import { HttpError, bearerToken, decodeBase64, mediaType, readBody } from "./http.ts";
import { base64Lines } from "../../lib/pem.ts";
import { certsOnly, matchesEtag, type Published } from "./published.ts";
import type { CaMetrics } from "./metrics.ts";
import type { GroupCommit } from "../store/group-commit.ts";
import { sessionPeerDer } from "../../lib/tls-session.ts";

export const EST_PREFIX = "/.well-known/est";
export const PKCS7_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only";
/** The renew-now hint on cacerts: the caller's certificate is of a generation that no longer signs. */
export const RENEW_NOW_HEADER = "Mesh-Renew-Now";

export interface EstContext {
  ca: CertificateAuthority;
  log: EventLogger;
  published(): Published;
  admission: Admission;
  lifetime: { defaultMs: number; maxMs: number };
  maxBodyBytes: number;
  cdp(issuerId: string): string[];
  metrics: CaMetrics;
  /** Runs an issuance whose record commits with the others under way at the same time; resolves once durable (group-commit.ts). */
  commits: GroupCommit;
}

/** One request as the routes see it, and what they learnt about it (the server logs from it). */
export interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  remote: string;
  /** The client's clock minus the CA's, from the request's Date header; null without one. */
  skewMs: number | null;
  /** The name the request proved it acts for (a valid token, or that name's current certificate), once it has. */
  authenticated: string | null;
  /** The name it asked for (its CSR's CN), once read: only for the log. */
  claimed: string | null;
}

const STATUS: Record<EnrolErrorCode, number> = {
  malformed_csr: 400,
  wrong_name: 403,
  token_wrong_name: 403,
  token_malformed: 401,
  token_unknown: 401,
  token_used: 401,
  token_expired: 401,
  cert_unknown: 403,
  cert_revoked: 403,
  cert_superseded: 403,
  cert_expired: 403,
  generation_untrusted: 403,
  same_key: 403,
};

export function remoteOf(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? "unknown";
}

export interface Presented {
  der: Uint8Array;
  authorized: boolean;
  error: string | null;
  /** Parsed on first use, then kept with the connection. */
  parsed?: PresentedCert;
}

/**
 * What a connection's handshake established: computed once per TLS connection, not per request
 * (a service polls cacerts on one keep-alive connection). The server refuses renegotiation
 * (server.ts), so it cannot change on a connection; whether the certificate may still act
 * (revoked, superseded, expired) is asked of the ledger on every request.
 */
const handshakes = new WeakMap<TLSSocket, Presented | null>();

/**
 * Whether the presented certificate is read from the TLS session's encoding (lib/tls-session.ts,
 * a few µs) rather than through getPeerCertificate() (~70 µs of a renewal's CPU, which builds an
 * object of every field): "unchecked" until the first certificate read both ways agrees byte for
 * byte, "no" for good if it did not. The encoding is OpenSSL's, fixed for the life of the process.
 * Either way the bytes must then be the ledger's own record of a current certificate (enrol.ts
 * currentRow), so a misread is refused, never trusted.
 */
let sessionReads: "unchecked" | "yes" | "no" = "unchecked";

/** The DER of the certificate the peer presented, or undefined for none. */
function peerDer(sock: TLSSocket): Uint8Array | undefined {
  if (sessionReads === "yes") {
    const der = sessionPeerDer(sock);
    if (der) return der;
  }
  const raw = sock.getPeerCertificate?.(false)?.raw;
  if (!raw) return undefined;
  if (sessionReads === "unchecked") sessionReads = sessionPeerDer(sock)?.equals(raw) ? "yes" : "no";
  return new Uint8Array(raw);
}

/** The certificate the caller presented in the handshake, and whether TLS trusted it. */
export function presented(req: IncomingMessage): Presented | null {
  const sock = req.socket as TLSSocket;
  const known = handshakes.get(sock);
  if (known !== undefined) return known;
  const der = peerDer(sock);
  const p = der
    ? {
        der,
        authorized: sock.authorized,
        error: sock.authorizationError ? String(sock.authorizationError) : null,
      }
    : null;
  handshakes.set(sock, p);
  return p;
}

/** The presented certificate, parsed once per connection. */
function parsedPeer(p: Presented): PresentedCert {
  p.parsed ??= parsePresented(p.der);
  return p.parsed;
}

/** GET /.well-known/est/cacerts: every published root, with an ETag; records which bundle a known caller holds. */
export function cacerts(ctx: EstContext, call: Call): void {
  const { req, res } = call;
  const p = ctx.published();
  const held = req.headers["if-none-match"];
  // The generation of each root, in the PKCS#7's order, as data (lib/generations.ts): also on a
  // 304, so an agent that holds the bundle learns it without fetching the bundle again.
  const headers: Record<string, string> = {
    ETag: p.etag,
    "Cache-Control": "no-cache",
    [ROOT_GENERATIONS_HEADER]: formatRootGenerations(p.generations),
  };
  const peer = presented(req);
  if (peer?.authorized) {
    try {
      const row = currentRow(ctx.ca, parsedPeer(peer));
      call.authenticated = row.name;
      const generation = ctx.ca.issuerRow(row.issuerId).generation;
      // Never hint towards a generation that peers do not trust yet.
      if (p.signerPublished && generation !== p.signerGeneration) headers[RENEW_NOW_HEADER] = "1";
      ctx.ca.ledger.recordBundleHolder({
        name: row.name,
        serial: row.serial,
        heldEtag: held ? held.slice(0, 200) : null,
        servedEtag: p.etag,
        seenAt: ctx.ca.now().toISOString(),
        remote: call.remote,
      });
    } catch (err) {
      // Not a current identity (revoked, superseded…): served like anyone, recorded as no one.
      if (!(err instanceof EnrolError))
        ctx.log.warn(
          { event: "est.bundle_record_failed", err: (err as Error).message },
          "could not record which bundle a caller holds",
        );
    }
  }
  if (matchesEtag(held, p.etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  res.writeHead(200, {
    ...headers,
    "Content-Type": PKCS7_CERTS_ONLY,
    "Content-Transfer-Encoding": "base64",
    "Content-Length": String(Buffer.byteLength(p.cacertsBody)),
  });
  res.end(req.method === "HEAD" ? undefined : p.cacertsBody);
}

/**
 * POST /.well-known/est/simpleenroll: a CSR and a one-time token for exactly its name. Until the
 * token verifies, a failure is charged to the source address (and the shared failure budget);
 * after, the enrolment is charged to the name.
 */
export async function simpleenroll(ctx: EstContext, call: Call): Promise<void> {
  const { req } = call;
  const token = await beforeAuthentication(ctx, call, async () => bearerToken(req));
  // The gate's own refusal is not charged again: the budgets refill at their rate during a flood.
  const closed = ctx.admission.gate(call.remote);
  if (closed && !tokenOpen(ctx.ca, token)) throw closed;
  const id = await beforeAuthentication(ctx, call, async () => {
    const id = await readCsr(ctx, req);
    call.claimed = id.name;
    await mapped(async () => authenticateToken(ctx.ca, id, token), id.name);
    return id;
  });
  call.authenticated = id.name;
  // Even with a token (one minted before this rule, or by hand in the ledger): ca.internal is the server's own.
  const reserved = reservedReason(id.name, ctx.ca.trustDomain());
  if (reserved)
    throw new HttpError(403, "reserved_name", `${id.name} cannot be enrolled: it is ${reserved}`, {}, id.name);
  ctx.admission.enrolment(id.name);
  const lifetimeMs = lifetimeOf(ctx, call.url, id.name);
  usableByClient(ctx, call, lifetimeMs, id.name);
  const issued = await mapped(
    () =>
      ctx.commits.issue((commit) =>
        enrol(ctx.ca, id, token, { lifetimeMs, cdp: ctx.cdp, commit, authenticated: true }),
      ),
    id.name,
  );
  ctx.metrics.issued("enrol");
  sendCerts(call.res, issued);
  ctx.log.info(
    {
      event: "est.enrolled",
      name: issued.domain,
      serial: issued.serial,
      spiffe_id: issued.sans.uri[0] ?? null,
      issuer: issued.issuerId,
      generation: issued.generation,
      not_after: issued.notAfter.toISOString(),
      remote: call.remote,
      supersedes: issued.supersedes ?? null,
    },
    `enrolled ${issued.domain} with a one-time token`,
  );
}

/**
 * POST /.well-known/est/simplereenroll: renewal, authorised by the current certificate over mTLS.
 * A certificate that is absent, untrusted or no longer current is a failure charged to the source
 * address; the name's own current certificate is charged to the name's renewal budget only.
 */
export async function simplereenroll(ctx: EstContext, call: Call): Promise<void> {
  const { req } = call;
  const { peer, row } = await beforeAuthentication(ctx, call, async () => {
    const peer = presented(req);
    if (!peer)
      throw new HttpError(
        401,
        "no_client_cert",
        "renewal needs the current certificate, presented over mTLS (curl --cert/--key)",
      );
    if (!peer.authorized)
      throw new HttpError(
        403,
        "cert_untrusted",
        `the presented certificate is not trusted by the published bundle (${peer.error ?? "unverified"})`,
      );
    const row = await mapped(async () => currentRow(ctx.ca, parsedPeer(peer)));
    return { peer, row };
  });
  call.authenticated = row.name;
  ctx.admission.renewal(row.name);
  const id = await readCsr(ctx, req);
  call.claimed = id.name;
  const lifetimeMs = lifetimeOf(ctx, call.url, id.name);
  usableByClient(ctx, call, lifetimeMs, id.name);
  const issued = await mapped(
    () => ctx.commits.issue((commit) => reenrol(ctx.ca, id, parsedPeer(peer), { lifetimeMs, cdp: ctx.cdp, commit })),
    id.name,
  );
  ctx.metrics.issued("renew");
  sendCerts(call.res, issued);
  ctx.log.info(
    {
      event: "est.renewed",
      name: issued.domain,
      serial: issued.serial,
      spiffe_id: issued.sans.uri[0] ?? null,
      previous: issued.previous.serial,
      issuer: issued.issuerId,
      generation: issued.generation,
      not_after: issued.notAfter.toISOString(),
      remote: call.remote,
    },
    `renewed ${issued.domain}; ${issued.previous.serial} is superseded`,
  );
}

/** GET /crl/<issuer-id>.crl: one CA's current CRL, DER (RFC 5280 4.2.1.13 distribution points). */
export function crl(ctx: EstContext, res: ServerResponse, issuerId: string): void {
  const der = ctx.published().crls.get(issuerId);
  if (!der) throw new HttpError(404, "not_found", `no current CRL for ${issuerId}`);
  res.writeHead(200, {
    "Content-Type": "application/pkix-crl",
    "Content-Length": String(der.length),
    "Cache-Control": "no-cache",
  });
  res.end(der);
}

/** GET /crls.pem: every current CRL, as crls.pem holds them (what a service loads). */
export function crlsPem(ctx: EstContext, res: ServerResponse): void {
  res.writeHead(200, { "Content-Type": "application/x-pem-file", "Cache-Control": "no-cache" });
  res.end(ctx.published().crlsPem);
}

async function readCsr(ctx: EstContext, req: IncomingMessage): Promise<CsrIdentity> {
  const type = mediaType(req.headers["content-type"]);
  if (type !== "application/pkcs10")
    throw new HttpError(
      415,
      "wrong_media_type",
      `the body must be Content-Type: application/pkcs10 (got ${type ? JSON.stringify(type.slice(0, 60)) : "none"})`,
    );
  const cte = String(req.headers["content-transfer-encoding"] ?? "base64")
    .trim()
    .toLowerCase();
  if (cte !== "base64")
    throw new HttpError(415, "wrong_media_type", "EST bodies are base64: Content-Transfer-Encoding: base64");
  const der = decodeBase64(await readBody(req, ctx.maxBodyBytes));
  return mapped(() => csrIdentity(der));
}

/** ?lifetime=1h asks for less (or more) than the default, never more than the maximum. */
function lifetimeOf(ctx: EstContext, url: URL, name: string): number {
  const asked = url.searchParams.get("lifetime");
  if (asked === null) return ctx.lifetime.defaultMs;
  try {
    return parseDuration(asked, { flag: "lifetime", max: ctx.lifetime.maxMs });
  } catch (err) {
    throw new HttpError(400, "bad_lifetime", (err as Error).message, {}, name);
  }
}

/** Runs the steps before a request has authenticated: a refusal there is charged to its address, never to a name. */
async function beforeAuthentication<T>(ctx: EstContext, call: Call, steps: () => Promise<T>): Promise<T> {
  try {
    return await steps();
  } catch (err) {
    if (err instanceof HttpError) ctx.admission.failed(call.remote);
    throw err;
  }
}

/**
 * Refuses to issue what the client's own clock would already call expired, or nearly: a renewal
 * would supersede the certificate it has for one it cannot use. Judged from its Date header.
 */
function usableByClient(ctx: EstContext, call: Call, lifetimeMs: number, name: string): void {
  const skew = call.skewMs;
  if (skew === null || !isSkewed(skew) || skew < lifetimeMs / 2) return;
  const caNow = ctx.ca.now().getTime();
  throw new HttpError(
    400,
    "clock_skew",
    `clock skew: ${describeSkew("your", skew, "this CA's")} (your Date ${httpDate(caNow + skew)}, the CA's ${httpDate(caNow)}): a certificate for ${formatDuration(lifetimeMs)} from the CA's now would be expired or nearly so by your clock; fix the clock that is wrong (NTP) and try again`,
    {},
    name,
  );
}

async function mapped<T>(fn: () => Promise<T>, name?: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof EnrolError) {
      const headers: Record<string, string> =
        STATUS[err.code] === 401 ? { "WWW-Authenticate": 'Bearer realm="est"' } : {};
      throw new HttpError(STATUS[err.code], err.code, err.message, headers, err.subject ?? name);
    }
    // A name outside an issuer's name constraints: a rule, not a malformed request.
    if (err instanceof CaError && err.code === "BAD_INPUT") throw new HttpError(403, "refused", err.message, {}, name);
    throw err;
  }
}

function sendCerts(res: ServerResponse, issued: Enrolled): void {
  const body = base64Lines(certsOnly(issued.chain));
  res.writeHead(200, {
    "Content-Type": PKCS7_CERTS_ONLY,
    "Content-Transfer-Encoding": "base64",
    "Cache-Control": "no-store",
    "Content-Length": String(Buffer.byteLength(body)),
  });
  res.end(body);
}
