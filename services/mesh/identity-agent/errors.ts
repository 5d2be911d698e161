// The identity agent's errors: a stable code and a one-line message that says what to do.

export type IdentityErrorCode =
  | "TOKEN_MISSING"
  | "TOKEN_MALFORMED"
  | "FINGERPRINT_MISMATCH"
  | "CA_UNREACHABLE"
  | "CLOCK_SKEW"
  | "CA_TIMEOUT"
  | "CA_REFUSED"
  | "CA_ANSWER_INVALID"
  | "IDENTITY_EXPIRED"
  | "STATE_INVALID";

export class IdentityError extends Error {
  readonly code: IdentityErrorCode;
  /** The HTTP status when the CA refused, and its one-line reason. */
  readonly status?: number;
  /** A 429's Retry-After, in milliseconds. */
  readonly retryAfterMs?: number;
  constructor(
    code: IdentityErrorCode,
    message: string,
    opts: { status?: number; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = "IdentityError";
    this.code = code;
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
  }
}
