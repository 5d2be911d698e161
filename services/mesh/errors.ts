// The one error shape of the mesh runtime: a stable `code` a test or a caller can match on,
// and a one-line message a person can act on. Never a stack trace for an expected failure.

export type MeshErrorCode =
  | "POLICY_SYNTAX"
  | "POLICY_INVALID"
  | "POLICY_UNREADABLE"
  | "POLICY_TEST_FAILED"
  | "TLS_MATERIAL_MISSING"
  | "TLS_MATERIAL_INVALID"
  | "BAD_ARGUMENT"
  | "UPSTREAM_FAILED";

export class MeshError extends Error {
  readonly code: MeshErrorCode;
  constructor(code: MeshErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MeshError";
    this.code = code;
  }
}

export function isMeshError(e: unknown): e is MeshError {
  return e instanceof MeshError;
}

/** A short message for any thrown value, for logs that must stay one line. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message.split("\n")[0] ?? e.message;
  return String(e);
}
