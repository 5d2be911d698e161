// What the dashboard page is sent: one snapshot of the mesh, rebuilt from the services' logs,
// the CA's ledger and the policy. Shared by the server (which builds it) and the page.

export interface IdentityView {
  dns: string;
  serial: string;
  notAfter: string;
  /** From the CA's ledger, when this folder's CA issued it. */
  issuer: string | null;
  generation: number | null;
  status: "valid" | "revoked" | "superseded" | "expired" | "unknown";
  revokedAt: string | null;
}

export interface ServiceView {
  name: string;
  port: number | null;
  up: boolean;
  identity: IdentityView | null;
  /** When the service last put a new certificate of its own in force. */
  lastRenewal: string | null;
  /** Subjects of the roots it trusts, as it last said. */
  trusts: string[];
}

export interface EdgeView {
  from: string;
  to: string;
  /** Counts over the last WINDOW_SECONDS. */
  allowed: number;
  denied: number;
  refused: number;
  failed: number;
  /** The last exchange on this edge was between two mTLS-authenticated peers. */
  locked: boolean;
  /** Denials, refusals or failures in the window. */
  failing: boolean;
  lastReason: string | null;
}

export type Severity = "denied" | "refused" | "failed" | "warning";

export interface FeedItem {
  id: number;
  time: string;
  service: string;
  event: string;
  severity: Severity;
  reason: string;
  /** Who the peer was, or what its certificate claimed (hostile text: shown as text only). */
  peer: string | null;
  sentence: string;
  fix: string | null;
}

export interface CellView {
  caller: string;
  service: string;
  allow: boolean;
  rule: string;
  /** The last thing seen between the two: "200 GET /healthz", "403", "refused: revoked". */
  observed: string | null;
  observedAt: string | null;
}

export interface MatrixView {
  callers: string[];
  services: string[];
  cells: CellView[];
  policyFile: string;
  policyError: string | null;
}

export interface TimelineView {
  /** Epoch second of ok[0] and failed[0]. */
  start: number;
  ok: number[];
  failed: number[];
  marks: Array<{ t: number; label: string }>;
}

export interface IssuerView {
  id: string;
  name: string;
  kind: string;
  generation: number;
  state: string;
  notAfter: string;
  crlNextUpdate: string | null;
}

export interface Snapshot {
  version: number;
  at: string;
  windowSeconds: number;
  services: ServiceView[];
  edges: EdgeView[];
  matrix: MatrixView;
  feed: FeedItem[];
  timeline: TimelineView;
  issuers: IssuerView[];
  /** Where the data comes from, for the page's footer. */
  sources: { logs: string; pki: string; policy: string };
}

/** The node every handshake refusal comes from: a refused peer has no identity. */
export const UNAUTHENTICATED = "(unauthenticated)";
