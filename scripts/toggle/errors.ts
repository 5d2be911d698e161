// The one error shape of `npm run mesh:toggle`: a stable code and a message that says what to do.
// scripts/mesh-toggle.ts maps the codes to exit codes, in one place.

export type ToggleErrorCode =
  | "BAD_INPUT" // an unknown service or kind, a flag that makes no sense
  | "NO_MESH" // no mesh:up running on these logs
  | "OPENSSL" // openssl refused to make the certificate
  | "NOT_SEEN"; // the service did not put the toggle (or the restore) in force

export class ToggleError extends Error {
  readonly code: ToggleErrorCode;
  constructor(code: ToggleErrorCode, message: string) {
    super(message);
    this.name = "ToggleError";
    this.code = code;
  }
}

export const EXIT_CODES: Readonly<Record<ToggleErrorCode, number>> = {
  BAD_INPUT: 2,
  NO_MESH: 3,
  OPENSSL: 4,
  NOT_SEEN: 1,
};
