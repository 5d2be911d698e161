// The CA's public surface, for scripts (scripts/, bench/) and tests: scripts import the CA from
// here only (test/import-graph.test.ts holds them to it). Services never import it: a workload
// never holds a CA key.
export { CertificateAuthority } from "./authority.ts";
export { LEAF_MAX_DAYS, CA_MAX_DAYS, BACKDATE_MS, DAY_MS } from "./profiles.ts";
export type { IssuedCert, ListedCert, IssueOptions, InitOptions, OpenOptions, Generation } from "./authority.ts";
export { CaError } from "./errors.ts";
export type { CaErrorCode } from "./errors.ts";
export { KEY_TYPES } from "./keys.ts";
export type { KeyType } from "./keys.ts";
export { REVOCATION_REASONS, CRL_WARN_DAYS } from "../lib/crl.ts";
export { Ledger, sqliteLedger } from "./ledger.ts";
export type { CertRow, IssuerRow, RotationRow } from "./ledger.ts";
export { verifyPath, parseCertificates, parseCrls } from "./verify.ts";
export type { VerifyResult, Purpose, Check } from "./verify.ts";
export {
  runRotation,
  RotationTimeout,
  evaluatePrepare,
  evaluateRetire,
  prepareFacts,
  retireFacts,
  GATE_NUMBER,
} from "./rotation.ts";
export type { RotateOptions, RotationEvent, GateName, GateState, GateVerdict } from "./rotation.ts";
export { createToken } from "./tokens.ts";
export { csrIdentity, enrol } from "./enrol.ts";
export { DEFAULT_RETENTION_MS, RETENTION_CHECK_MS, prune } from "./retention.ts";
export type { IssuedToken, TokenOptions } from "./tokens.ts";
export { CaServer, DEFAULT_LIMITS } from "./server/server.ts";
export type { CaServerOptions } from "./server/server.ts";
export type { BucketSpec } from "./rate-limit.ts";
export { parseDuration } from "./duration.ts";
export { normalSerial } from "./x509.ts";
export { parseStore } from "./store/url.ts";
export { openLedgerIn } from "./view.ts";
export type { LedgerStore } from "./store/interface.ts";
export {
  CARELESS_ORDER,
  planRotation,
  planText,
  SAFE_ORDER,
  stepLines,
} from "./rotation-plan.ts";
export type { CallStep, Outcome, PlanFacts, PlanStep, RotationPlan } from "./rotation-plan.ts";
export { planFacts, policyPairs } from "./rotation-plan-facts.ts";
