// Who pays for an issuing request, and when. Limits are charged after authentication (issue 13):
// a request that fails to authenticate (a bad token, no or a bad client certificate) is charged
// to its source address and to one budget shared by every such failure, never to the name it
// claims, so junk naming payment.internal cannot spend payment's budget. A request that did
// authenticate is charged to its name: enrolments (a valid token) and renewals (the name's own
// current certificate over mTLS) in separate buckets, so no enrolment traffic delays a renewal.
//
// The failure budgets only ever stop failures: while one is empty, a request is refused before
// its body is read unless its token is one the CA could still accept (tokenOpen), so a flood costs
// a hash lookup per request and a real enrolment from the same address still goes through.
import { RateLimiter, type BucketSpec } from "../rate-limit.ts";
import { HttpError } from "./http.ts";

export interface Limits {
  /** Failed (unauthenticated) enrolment and renewal requests per source address. */
  perAddress: BucketSpec;
  /** Enrolments per name, charged once the token verifies. */
  perName: BucketSpec;
  /** Renewals per name, charged once the current certificate is recognised; default: perName. */
  perRenewal?: BucketSpec;
  /** Failed requests from all addresses together: what a flood from many addresses meets. */
  unauthenticated: BucketSpec;
}

/** Address and name maps hold at most this many keys (the least recently used go first). */
export const MAX_KEYS = 10_000;
const ALL = "*";

export class Admission {
  private readonly byAddress: RateLimiter;
  private readonly overall: RateLimiter;
  private readonly enrolments: RateLimiter;
  private readonly renewals: RateLimiter;

  constructor(
    private readonly limits: Limits,
    now: () => number = Date.now,
    maxKeys = MAX_KEYS,
  ) {
    this.byAddress = new RateLimiter(limits.perAddress, now, maxKeys);
    this.overall = new RateLimiter(limits.unauthenticated, now, 1);
    this.enrolments = new RateLimiter(limits.perName, now, maxKeys);
    this.renewals = new RateLimiter(limits.perRenewal ?? limits.perName, now, maxKeys);
  }

  /** The refusal an unauthenticated request from `remote` gets while a failure budget is empty, or null. */
  gate(remote: string): HttpError | null {
    const mine = this.byAddress.peek(remote);
    if (!mine.ok)
      return limited(
        `too many requests from this address failed to authenticate: retry in ${mine.retryAfterSeconds}s`,
        mine.retryAfterSeconds,
      );
    const all = this.overall.peek(ALL);
    if (!all.ok)
      return limited(
        `too many requests from all addresses failed to authenticate: until then the CA reads only enrolments with a token it knows; retry in ${all.retryAfterSeconds}s`,
        all.retryAfterSeconds,
      );
    return null;
  }

  /** An enrolment or renewal from `remote` failed to authenticate. */
  failed(remote: string): void {
    this.byAddress.take(remote);
    this.overall.take(ALL);
  }

  /** Charges an enrolment whose token verified for `name`; throws 429 when the name's bucket is empty. */
  enrolment(name: string): void {
    const t = this.enrolments.take(name);
    if (!t.ok)
      throw limited(
        `too many requests: ${name} may enrol ${this.limits.perName.perMinute} times a minute; retry in ${t.retryAfterSeconds}s`,
        t.retryAfterSeconds,
        name,
      );
  }

  /** Charges a renewal by `name`'s own current certificate; throws 429 when the name's bucket is empty. */
  renewal(name: string): void {
    const t = this.renewals.take(name);
    const spec = this.limits.perRenewal ?? this.limits.perName;
    if (!t.ok)
      throw limited(
        `too many requests: ${name} may renew ${spec.perMinute} times a minute; retry in ${t.retryAfterSeconds}s`,
        t.retryAfterSeconds,
        name,
      );
  }
}

function limited(message: string, retryAfterSeconds: number, name?: string): HttpError {
  // Connection: close, since a refusal at the gate leaves the body unread.
  return new HttpError(
    429,
    "rate_limited",
    message,
    { "Retry-After": String(retryAfterSeconds), ...(name ? {} : { Connection: "close" }) },
    name,
  );
}
