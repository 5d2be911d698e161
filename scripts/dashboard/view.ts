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
  /** A client identity (edge, a fourth caller): it holds a certificate but serves nothing. */
  client: boolean;
  identity: IdentityView | null;
  /** When the service last put a new certificate of its own in force. */
  lastRenewal: string | null;
  /** Subjects of the roots it trusts, as it last said. */
  trusts: string[];
  /** The teaching toggle it presents instead of its identity (npm run mesh:toggle), or null. */
  toggle: string | null;
}

export interface EdgeView {
  from: string;
  to: string;
  /** Counts over the last WINDOW_SECONDS. */
  allowed: number;
  /** 403s: the policy said no, as it was asked to. */
  denied: number;
  /** Refused in the handshake as intended: no certificate, or one from a CA that is not ours. */
  keptOut: number;
  /** Refused in the handshake for a reason that means something is wrong (expired, revoked, a CRL, one of our own CAs not trusted...). */
  refused: number;
  failed: number;
  /** The last exchange on this edge was between two mTLS-authenticated peers. */
  locked: boolean;
  /** Something wrong in the window: failures or unexpected refusals (denials and strangers kept out are not). */
  failing: boolean;
  /** A call on this edge went otherwise than the policy in force says (set by the state, from the matrix). */
  mismatch: boolean;
  lastReason: string | null;
}

/**
 * "denied" (a 403 the policy asks for) and "kept-out" (a stranger refused in the handshake) are
 * the mesh doing its job: shown calmly. "refused", "failed" and "mismatch" mean something is wrong.
 */
export type Severity = "denied" | "kept-out" | "refused" | "failed" | "warning" | "note";

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

/** One kind of call seen between a caller and a callee, judged against the policy for its own method and path. */
export interface SeenView {
  method: string;
  path: string;
  /** HTTP status, or null when the call failed before an answer. */
  status: number | null;
  /** "200 GET /stock/widget", "403 POST /charge", "failed: upstream_down". */
  text: string;
  at: string;
  count: number;
  /** What the policy in force says for this method and path. */
  expectAllow: boolean;
  expectRule: string;
  /**
   * "agrees": seen as the policy says; "mismatch": seen otherwise, under the policy in force;
   * "stale": seen before the callee last reloaded its policy or restarted, so not judged;
   * "failed": no answer (not a policy matter).
   */
  verdict: "agrees" | "mismatch" | "stale" | "failed";
}

export interface CellView {
  caller: string;
  service: string;
  /** The policy's verdict for GET /healthz (what mesh:probe asks). */
  allow: boolean;
  rule: string;
  /** Route rules whose verdict for this caller differs from the one above: "allow GET /stock/:sku (inventory.routes[0])". */
  exceptions: string[];
  /** What was seen between the two in this run, newest first (bounded). */
  seen: SeenView[];
  mismatch: boolean;
}

export interface MatrixView {
  callers: string[];
  services: string[];
  cells: CellView[];
  policyFile: string;
  policyError: string | null;
}

export interface TimelineView {
  /** Epoch second of ok[0], held[0] and failed[0]. */
  start: number;
  ok: number[];
  /** Denied by the policy or kept out in the handshake, as intended. */
  held: number[];
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

/** One process mesh:up supervises (its `supervisor.*` events in mesh-up.log). */
export interface ComponentView {
  component: string;
  state: "running" | "exited" | "restarting" | "gave_up";
  pid: number | null;
  restarts: number;
  /** "exited with code 1", "killed by SIGKILL", at a time. */
  lastExit: string | null;
  lastExitAt: string | null;
  /** While restarting: the attempt and its delay. */
  attempt: number | null;
  delayMs: number | null;
}

/** One `ca serve` replica, from its own log lines (scripts/dashboard/ca-replicas.ts). */
export interface CaReplicaView {
  url: string;
  /** Its name as a lease holder (host:pid:random) since its latest start, and that pid. */
  holder: string | null;
  pid: number | null;
  /** Where its ledger is: sqlite or postgres. */
  store: string | null;
  state: "running" | "stopped";
  /** ca.started lines seen in this run: 1 + its restarts. */
  starts: number;
  startedAt: string;
  /** Whether it holds the lease: it runs the once-only jobs (re-signing CRLs). */
  runsJobs: boolean;
}

export interface CaReplicasView {
  replicas: CaReplicaView[];
  /** Who holds the once-only jobs' lease (a holder name), and since when. */
  leaseHolder: string | null;
  leaseSince: string | null;
}

/** A CA rotation (`ca rotate`), read from the CA's ledger: where it is and who its gate waits for. */
export interface RotationView {
  id: number;
  from: number;
  to: number;
  phase: "prepare" | "activate" | "retire" | "done";
  gate: number;
  startedAt: string;
  activatedAt: string | null;
  finishedAt: string | null;
  /** host:pid of the run holding it, or null when no run is in progress (stopped half-way). */
  owner: string | null;
  total: number;
  waitingFor: Array<{ name: string; why: string }>;
  notes: string[];
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
  components: ComponentView[];
  /** The CA servers (one, or mesh:up --ca-replicas) and who holds the jobs' lease. */
  caReplicas: CaReplicasView;
  rotation: RotationView | null;
  /** When the mesh:up run shown began (its mesh.started line), or null when the logs hold none. */
  runStartedAt: string | null;
  /** Where the data comes from, for the page's footer. */
  sources: { logs: string; pki: string; policy: string };
}

/** The node every handshake refusal comes from: a refused peer has no identity. */
export const UNAUTHENTICATED = "(unauthenticated)";
