// The CA's public surface, for scripts and tests. Services never import it:
// a workload never holds a CA key.
export { CertificateAuthority } from "./authority.ts";
export { LEAF_MAX_DAYS, CA_MAX_DAYS } from "./profiles.ts";
export type { IssuedCert, ListedCert, IssueOptions, InitOptions, OpenOptions, Generation } from "./authority.ts";
export { CaError } from "./errors.ts";
export type { CaErrorCode } from "./errors.ts";
export { KEY_TYPES } from "./keys.ts";
export type { KeyType } from "./keys.ts";
export { REVOCATION_REASONS } from "../lib/crl.ts";
export type { CertRow, IssuerRow } from "./ledger.ts";
export { verifyPath, parseCertificates, parseCrls } from "./verify.ts";
export type { VerifyResult, Purpose, Check } from "./verify.ts";
export { runRotation, RotationTimeout, evaluatePrepare, evaluateRetire } from "./rotation.ts";
export type { RotateOptions, RotationEvent, GateName, GateState, GateVerdict } from "./rotation.ts";
