// One error shape for every failure a user can cause: a stable code and a
// message that says what to do. The CLI maps codes to exit codes in one place.

export type CaErrorCode =
  | "BAD_INPUT" // a flag, name or file the user gave is wrong
  | "NOT_INITIALISED" // no CA in the state folder
  | "ALREADY_EXISTS" // would overwrite a CA or a valid certificate
  | "NOT_FOUND" // unknown name, serial, generation
  | "REFUSED" // a state rule forbids it (revoked renew, retire in use)
  | "CORRUPT" // the ledger or a key/cert file is unreadable
  | "BAD_PASSPHRASE" // the CA key is encrypted and the passphrase is wrong or missing
  | "VERIFY_FAILED"; // verify found a failing check

export class CaError extends Error {
  readonly code: CaErrorCode;
  constructor(code: CaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CaError";
    this.code = code;
  }
}

export const badInput = (msg: string) => new CaError("BAD_INPUT", msg);
