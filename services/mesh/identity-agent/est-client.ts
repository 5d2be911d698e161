// EST (RFC 7030) calls a service makes to the CA: cacerts, simpleenroll, simplereenroll and
// the CRLs. One fresh connection per call; answers are bounded in size and in time, and
// parsed before use.
import { X509Certificate } from "node:crypto";
import { request } from "node:https";
import type { PeerCertificate, TLSSocket } from "node:tls";
import { describeSkew, httpDate, isSkewed, nowMs, parseHttpDate } from "../../../lib/clock.ts";
import { IdentityError } from "./errors.ts";
import { pkcs7Certificates } from "../../../lib/pkcs7.ts";
import { countPem } from "../../../lib/pem.ts";
import { ROOT_GENERATIONS_HEADER } from "../../../lib/generations.ts";

const EST = "/.well-known/est";
/** Bigger than any bundle or CRL set this CA serves; a hostile server cannot fill memory. */
const MAX_ANSWER_BYTES = 1024 * 1024;
/**
 * Every call ends within its total time, whatever the CA does: a CA that accepts the
 * connection and never answers, or answers a byte at a time, must not hold a renewal past
 * the certificate's expiry. (The socket's idle `timeout` of http.request is no bound: it
 * measured twice its value against a silent server, and each trickled byte restarts it.)
 */
export const TOTAL_TIMEOUT_MS = 10_000;
/** TCP connect and TLS handshake: on loopback or a LAN, well under a second when the CA is alive. */
export const CONNECT_TIMEOUT_MS = 5_000;

/** How to reach the CA: its URL and the TLS the call uses. */
export interface CaTls {
  /** One origin, or several replicas' origins separated by commas, tried in turn (see call). */
  url: string;
  /** Roots the CA server's certificate must chain to; absent only for the bootstrap fetch. */
  ca?: string;
  /** The service's current identity, for calls over mTLS. */
  cert?: string;
  key?: string;
  /** The whole call, connect to the answer's last byte (default TOTAL_TIMEOUT_MS). */
  timeoutMs?: number;
  /** TCP connect and TLS handshake (default CONNECT_TIMEOUT_MS, never more than timeoutMs). */
  connectTimeoutMs?: number;
  /** Aborts the call (the agent stopping): rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Told how each call ended and how long it took (the service's metrics, MeshMetrics#caRequest). */
  observe?: CaObserver;
}

/** `operation`: enrol, renew, cacerts, crls; `outcome`: ok, refused, unreachable, invalid. */
export type CaObserver = (
  operation: "enrol" | "renew" | "cacerts" | "crls",
  outcome: "ok" | "refused" | "unreachable" | "invalid",
  seconds: number,
) => void;

/** Runs one EST operation, telling `t.observe` its outcome (from the IdentityError code) and duration. */
async function timed<T>(t: CaTls, operation: Parameters<CaObserver>[0], run: () => Promise<T>): Promise<T> {
  if (!t.observe) return run();
  const t0 = performance.now();
  try {
    const out = await run();
    t.observe(operation, "ok", (performance.now() - t0) / 1000);
    return out;
  } catch (e) {
    const code = e instanceof IdentityError ? e.code : undefined;
    t.observe(
      operation,
      code === "CA_REFUSED" ? "refused" : code === "CA_ANSWER_INVALID" ? "invalid" : "unreachable",
      (performance.now() - t0) / 1000,
    );
    throw e;
  }
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The CA's clock minus ours, from its Date header; null without one. */
  caOffsetMs: number | null;
}

/** The origins of a CA address list ("https://a:7400,https://b:7400"). */
export function caOrigins(list: string): string[] {
  return list
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
}

/** Per address list, the replica that answered last: tried first next time, so a dead one costs one attempt, not one per call. */
const preferred = new Map<string, number>();

/**
 * One EST call to a CA that may have several replicas: starting with the one that answered
 * last, the next is tried when one cannot be reached or answers 5xx. Any other answer (200,
 * 304, a 4xx refusal) is the CA's word and ends the round: the replicas share one ledger.
 */
async function call(
  t: CaTls,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  const origins = caOrigins(t.url);
  if (origins.length <= 1) return callOne(t, method, path, headers, body);
  const start = preferred.get(t.url) ?? 0;
  let failure: unknown;
  for (let i = 0; i < origins.length; i++) {
    const at = (start + i) % origins.length;
    try {
      const a = await callOne({ ...t, url: origins[at]! }, method, path, headers, body);
      if (a.status >= 500 && i < origins.length - 1) {
        failure = refused(path, a);
        continue;
      }
      preferred.set(t.url, at);
      return a;
    } catch (e) {
      if (!(e instanceof IdentityError && e.code === "CA_UNREACHABLE")) throw e;
      failure = e;
    }
  }
  throw failure instanceof IdentityError && failure.code === "CA_UNREACHABLE"
    ? new IdentityError(
        "CA_UNREACHABLE",
        `cannot reach any of the CA's ${origins.length} addresses (${origins.join(", ")}): ${failure.message}`,
        { cause: failure },
      )
    : failure;
}

function callOne(
  t: CaTls,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  const totalMs = t.timeoutMs ?? TOTAL_TIMEOUT_MS;
  const connectMs = Math.min(t.connectTimeoutMs ?? CONNECT_TIMEOUT_MS, totalMs);
  return new Promise((resolve, reject) => {
    // Settled exactly once, whichever of answer, error, abort or a deadline comes first.
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      for (const x of timers) clearTimeout(x);
      t.signal?.removeEventListener("abort", onAbort);
      fn();
    };
    // What we destroyed the request with (a deadline, an oversized answer, an abort) is the
    // error, whichever event reports the destruction first ("aborted", "socket hang up").
    let why: Error | undefined;
    // Set while the CA is asked its time: the verdict settles the call, not the close that follows.
    let askingClock = false;
    const fail = (e: unknown) => {
      if (askingClock) return;
      settle(() =>
        reject(
          why ??
            (e instanceof IdentityError
              ? e
              : new IdentityError(
                  "CA_UNREACHABLE",
                  `cannot reach the CA at ${t.url}: ${oneLine((e as Error).message)}`,
                  { cause: e },
                )),
        ),
      );
    };
    // A certificate "expired" or "not yet valid" may be a clock that is off, ours or the CA's: ask the CA's.
    const askClock = (e: Error) => {
      askingClock = true;
      const unreachable = new IdentityError(
        "CA_UNREACHABLE",
        `cannot reach the CA at ${t.url}: ${oneLine(e.message)}`,
        { cause: e },
      );
      void clockVerdict(t, unreachable).then((verdict) => settle(() => reject(verdict)));
    };
    const unverified = t.ca === undefined;
    let answered = false;
    const req = request(
      `${t.url}${path}`,
      {
        // Our clock, for the CA to compare with its own (it logs and names a skew).
        method,
        headers: { ...headers, Date: httpDate(nowMs()) },
        agent: false,
        ca: t.ca,
        cert: t.cert,
        key: t.key,
        minVersion: "TLSv1.2",
        // Only the bootstrap fetch of cacerts goes unverified; its answer is trusted only through the token's fingerprint.
        rejectUnauthorized: !unverified,
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (d: Buffer) => {
          size += d.length;
          if (size > MAX_ANSWER_BYTES) {
            stop(
              new IdentityError("CA_ANSWER_INVALID", `the CA's answer to ${path} is over ${MAX_ANSWER_BYTES} bytes`),
            );
            return;
          }
          chunks.push(d);
        });
        res.on("end", () =>
          settle(() =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks),
              caOffsetMs: caOffset(res.headers.date),
            }),
          ),
        );
        res.on("error", fail);
        // Closed before its end without an error event: still an answer cut short, never a hang.
        res.on("close", () => {
          if (!res.complete)
            fail(
              new IdentityError(
                "CA_UNREACHABLE",
                `the CA at ${t.url} closed the connection in the middle of its answer to ${path}`,
              ),
            );
        });
      },
    );
    const stop = (e: Error) => {
      why ??= e;
      req.destroy(e);
    };
    const deadline = (ms: number, what: string) =>
      setTimeout(
        () =>
          stop(
            new IdentityError(
              "CA_TIMEOUT",
              `the CA at ${t.url} did not ${what} within ${ms} ms (${method} ${path.split("?")[0]})`,
            ),
          ),
        ms,
      );
    timers.push(deadline(totalMs, "answer"));
    req.on("socket", (sock) => {
      const connecting = deadline(connectMs, "complete the TCP and TLS handshake");
      timers.push(connecting);
      (sock as TLSSocket).once("secureConnect", () => {
        clearTimeout(connecting);
        // OpenSSL judges the CA's certificate by the system clock; this process's clock may be moved
        // (MESH_CLOCK_OFFSET_MS), and then it is the one that must agree.
        if (unverified) return;
        const dates = wrongDates((sock as TLSSocket).getPeerCertificate());
        if (!dates) return;
        const e = Object.assign(new Error(dates.message), { code: dates.code });
        askClock(e);
        req.destroy(e);
      });
    });
    const onAbort = () =>
      stop(
        t.signal?.reason instanceof Error
          ? t.signal.reason
          : new IdentityError("CA_UNREACHABLE", "the call was aborted"),
      );
    if (t.signal?.aborted) onAbort();
    else t.signal?.addEventListener("abort", onAbort, { once: true });
    req.on("error", (e: NodeJS.ErrnoException) => {
      if (
        !why &&
        !askingClock &&
        !(e instanceof IdentityError) &&
        (e.code === "CERT_HAS_EXPIRED" || e.code === "CERT_NOT_YET_VALID")
      )
        askClock(e);
      else fail(e);
    });
    // Once an answer has begun, its own close and error events decide (see above).
    req.on("close", () => {
      if (!answered)
        fail(
          new IdentityError(
            "CA_UNREACHABLE",
            `the connection to the CA at ${t.url} closed without an answer to ${path}`,
          ),
        );
    });
    req.end(body);
  });
}

/** The CA's clock minus ours, from an answer's Date header. */
function caOffset(date: string | undefined): number | null {
  const at = parseHttpDate(date);
  return at === null ? null : at - nowMs();
}

/** Why a certificate's dates do not hold by this process's clock, or null when they do. */
function wrongDates(peer: PeerCertificate | undefined): { code: string; message: string } | null {
  if (!peer?.valid_to) return null;
  const now = nowMs();
  if (Date.parse(peer.valid_to) <= now)
    return {
      code: "CERT_HAS_EXPIRED",
      message: `certificate has expired (at ${iso(peer.valid_to)}, by this host's clock ${new Date(now).toISOString()})`,
    };
  if (Date.parse(peer.valid_from) > now)
    return {
      code: "CERT_NOT_YET_VALID",
      message: `certificate is not yet valid (until ${iso(peer.valid_from)}, by this host's clock ${new Date(now).toISOString()})`,
    };
  return null;
}

function iso(date: string): string {
  return new Date(date).toISOString();
}

/**
 * The CA's certificate looked expired or not yet valid. Asks the CA its time (its Date header,
 * over a connection that trusts nothing: only a message depends on it): when the clocks disagree,
 * the error says clock skew and by how much; otherwise the original one stands.
 */
async function clockVerdict(t: CaTls, original: IdentityError): Promise<IdentityError> {
  const offset = await new Promise<number | null>((resolve) => {
    const req = request(
      `${t.url}${EST}/cacerts`,
      {
        method: "HEAD",
        headers: { Date: httpDate(nowMs()) },
        agent: false,
        timeout: 5_000,
        rejectUnauthorized: false,
        minVersion: "TLSv1.2",
      },
      (res) => {
        res.resume();
        resolve(caOffset(res.headers.date));
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(null));
    req.end();
  });
  if (offset === null || !isSkewed(offset)) return original;
  return new IdentityError(
    "CLOCK_SKEW",
    `clock skew: ${describeSkew("this host's", -offset, "the CA's")} (the CA's Date header says ${httpDate(nowMs() + offset)}), so the CA's certificate looks ${/not yet valid/.test(original.message) ? "not yet valid" : "expired"} from here (${oneLine((original.cause as Error).message)}); fix the clock that is wrong (NTP)`,
    { cause: original },
  );
}

/** ", and the CA's clock is 10m 0s behind this host's (clock skew)" when an answer says so. */
function skewNote(a: Answer): string {
  return a.caOffsetMs !== null && isSkewed(a.caOffsetMs)
    ? `; clock skew: ${describeSkew("the CA's", a.caOffsetMs, "this host's")}`
    : "";
}

function oneLine(s: string): string {
  return s.replace(/[^\x20-\x7e]+/g, " ").slice(0, 300);
}

function refused(path: string, a: Answer): IdentityError {
  const after =
    typeof a.headers["retry-after"] === "string" && /^\d{1,6}$/.test(a.headers["retry-after"])
      ? Number(a.headers["retry-after"]) * 1000
      : undefined;
  const reason = oneLine(a.body.toString("utf8").trim());
  const skew = skewNote(a);
  const code = reason.startsWith("clock skew") || skew ? "CLOCK_SKEW" : "CA_REFUSED";
  return new IdentityError(code, `the CA refused ${path} (${a.status}): ${reason || "no reason given"}${skew}`, {
    status: a.status,
    retryAfterMs: after,
  });
}

function certsOf(path: string, body: Buffer): X509Certificate[] {
  try {
    const der = Buffer.from(body.toString("latin1").replace(/\s+/g, ""), "base64");
    return pkcs7Certificates(der).map((d) => new X509Certificate(d));
  } catch (e) {
    throw new IdentityError(
      "CA_ANSWER_INVALID",
      `the CA's answer to ${path} is not a base64 certs-only PKCS#7: ${oneLine((e as Error).message)}`,
    );
  }
}

/**
 * `rootGenerations`: the CA's Mesh-Root-Generations header as sent (on a 304 too), for
 * lib/generations.ts's parseRootGenerations against the roots it describes; absent from an older CA.
 */
export type CacertsAnswer =
  | { changed: false; renewNow: boolean; rootGenerations?: string }
  | { changed: true; renewNow: boolean; etag: string | null; roots: X509Certificate[]; rootGenerations?: string };

/** GET cacerts; with If-None-Match, a 304 costs nothing. Over mTLS the CA records which bundle we hold. */
export function getCacerts(t: CaTls, etag?: string | null): Promise<CacertsAnswer> {
  return timed(t, "cacerts", () => cacerts(t, etag));
}

async function cacerts(t: CaTls, etag?: string | null): Promise<CacertsAnswer> {
  const path = `${EST}/cacerts`;
  const a = await call(t, "GET", path, etag ? { "If-None-Match": etag } : {});
  const renewNow = a.headers["mesh-renew-now"] === "1";
  const g = a.headers[ROOT_GENERATIONS_HEADER.toLowerCase()];
  const rootGenerations = typeof g === "string" ? g : undefined;
  if (a.status === 304) return { changed: false, renewNow, rootGenerations };
  if (a.status !== 200) throw refused(path, a);
  const roots = certsOf(path, a.body);
  if (roots.length === 0) throw new IdentityError("CA_ANSWER_INVALID", `the CA's cacerts answer holds no certificate`);
  const tag = typeof a.headers.etag === "string" && a.headers.etag.length <= 200 ? a.headers.etag : null;
  return { changed: true, renewNow, etag: tag, roots, rootGenerations };
}

/** POST simpleenroll with the one-time token (Bearer) or simplereenroll over mTLS: the chain, leaf first. */
export function enrolCsr(
  t: CaTls,
  kind: "simpleenroll" | "simplereenroll",
  csrDer: Buffer,
  opts: { token?: string; lifetime?: string },
): Promise<X509Certificate[]> {
  return timed(t, kind === "simpleenroll" ? "enrol" : "renew", () => enrol(t, kind, csrDer, opts));
}

async function enrol(
  t: CaTls,
  kind: "simpleenroll" | "simplereenroll",
  csrDer: Buffer,
  opts: { token?: string; lifetime?: string },
): Promise<X509Certificate[]> {
  const path = `${EST}/${kind}${opts.lifetime ? `?lifetime=${encodeURIComponent(opts.lifetime)}` : ""}`;
  const headers: Record<string, string> = {
    "Content-Type": "application/pkcs10",
    "Content-Transfer-Encoding": "base64",
  };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  const a = await call(t, "POST", path, headers, csrDer.toString("base64").replace(/.{64}/g, "$&\n"));
  if (a.status !== 200) throw refused(`${EST}/${kind}`, a);
  const certs = certsOf(path, a.body);
  if (certs.length === 0) throw new IdentityError("CA_ANSWER_INVALID", `the CA's ${kind} answer holds no certificate`);
  // Expired on arrival by our clock: with the CA's clock elsewhere, say which (checkChain would only say "expired").
  const now = nowMs();
  if (Date.parse(certs[0]!.validTo) <= now + 1_000 && a.caOffsetMs !== null && isSkewed(a.caOffsetMs)) {
    throw new IdentityError(
      "CLOCK_SKEW",
      `clock skew: the certificate from the CA is valid until ${iso(certs[0]!.validTo)}, already past by this host's clock (${new Date(now).toISOString()}): ${describeSkew("the CA's", a.caOffsetMs, "this host's")}; fix the clock that is wrong (NTP)`,
    );
  }
  return certs;
}

/** GET /crls.pem: every current CRL, PEM. */
export function getCrls(t: CaTls): Promise<string> {
  return timed(t, "crls", () => crls(t));
}

async function crls(t: CaTls): Promise<string> {
  const a = await call(t, "GET", "/crls.pem");
  if (a.status !== 200) throw refused("/crls.pem", a);
  const text = a.body.toString("utf8");
  if (countPem(text, "X509 CRL") === 0) throw new IdentityError("CA_ANSWER_INVALID", "the CA's /crls.pem holds no CRL");
  return text;
}

/** The trust watch's path: the CRLs, held open until they (or the bundle) change. Not part of RFC 7030. */
export const CRLS_WATCH_PATH = `${EST}/crls`;

export type CrlsAnswer =
  | { changed: false; etag: string | null }
  | { changed: true; etag: string | null; crls: string; bundleEtag: string | null };

/**
 * GET /.well-known/est/crls?wait=<s> with If-None-Match: the CA holds the call until its CRLs or
 * its bundle change (200, the CRLs, a new ETag, and the bundle's ETag in Mesh-Bundle-ETag) or the
 * wait is over (304). Bounded by the wait plus `t.timeoutMs`.
 */
export async function watchCrls(t: CaTls, etag: string | null, waitS: number): Promise<CrlsAnswer> {
  const path = `${CRLS_WATCH_PATH}?wait=${waitS}`;
  const a = await call(
    { ...t, timeoutMs: waitS * 1000 + (t.timeoutMs ?? TOTAL_TIMEOUT_MS) },
    "GET",
    path,
    etag ? { "If-None-Match": etag } : {},
  );
  const tag = (h: string | string[] | undefined) => (typeof h === "string" && h.length <= 200 ? h : null);
  if (a.status === 304) return { changed: false, etag: tag(a.headers.etag) ?? etag };
  if (a.status !== 200) throw refused(CRLS_WATCH_PATH, a);
  const crls = a.body.toString("utf8");
  if (countPem(crls, "X509 CRL") === 0)
    throw new IdentityError("CA_ANSWER_INVALID", `the CA's ${CRLS_WATCH_PATH} holds no CRL`);
  return { changed: true, etag: tag(a.headers.etag), crls, bundleEtag: tag(a.headers["mesh-bundle-etag"]) };
}
