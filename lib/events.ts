// The catalogue of log events: every `event` name the CA, the mesh runtime and the scripts
// write, at which levels, with which fields. The logs are the API between the runtime and
// every tool that reads them (mesh:logs, mesh:check, mesh:probe, the dashboard, the drill),
// so both sides are typed from this one table: a writer with an unknown name, a missing,
// extra or mistyped field, or a level the event is not written at fails `tsc`; a reader that
// narrows on `line.event` gets that event's fields. docs/events.md is generated from it
// (npm run events:doc) and a test holds the two equal.

/** The types a field can have, by the name the table gives them (and docs/events.md shows). */
export interface FieldTypes {
  string: string;
  number: number;
  boolean: boolean;
  "string|null": string | null;
  "number|null": number | null;
  "string[]": readonly string[];
  "(string|null)[]": ReadonlyArray<string | null>;
  "number[]": readonly number[];
  /** An object of names to strings (a route's callers, a gate's reasons). */
  "map<string>": Record<string, string>;
  "map<number>": Record<string, number>;
  "map<string[]|null>": Record<string, string[] | null>;
  /** What a peer's certificate says about itself (services/mesh/peer-identity.ts's PresentedCert). */
  cert: { subject?: string; issuer?: string; serial?: string; validFrom?: string; validTo?: string };
  /** A caller's certificate (cert) or, from a sidecar's inbound side, its mesh name. */
  "cert|string": { subject?: string; issuer?: string; serial?: string; validFrom?: string; validTo?: string } | string;
  /** The busiest callers of an interval: { remote | name, count }. */
  "top[]": Array<{ remote?: string; name?: string; count: number }>;
}

/** A field's type; a trailing `?` makes it optional (absent, or written as undefined). */
export type FieldSpec = keyof FieldTypes | `${keyof FieldTypes}?`;

export type LevelName = "debug" | "info" | "warn" | "error";
/** pino's numbers for the levels. */
export const LEVELS: Readonly<Record<LevelName, number>> = { debug: 20, info: 30, warn: 40, error: 50 };

export interface EventSpec {
  /** The levels it is written at. */
  readonly level: readonly LevelName[];
  /** Who writes it, and what it means: one line. */
  readonly about: string;
  readonly fields: Readonly<Record<string, FieldSpec>>;
}

// What every identity event says of the certificate in force (the identity agent's factsFields).
const FACTS = {
  serial: "string",
  issuer: "string",
  root: "string",
  generation: "number|null",
  notAfter: "string",
} as const;

export const EVENTS = {
  // --- the mesh runtime (services/mesh) ---
  listening: {
    level: ["info"],
    about: "a service's TLS port is open: its identity, certificate and trust",
    fields: {
      port: "number",
      host: "string?",
      identity: "string",
      serial: "string?",
      notAfter: "string?",
      trusts: "string[]?",
      upstreams: "map<string>?",
    },
  },
  "admin.listening": {
    level: ["info"],
    about: "a process's admin port (metrics, healthz) is open",
    fields: { host: "string", port: "number", url: "string?" },
  },
  request: {
    level: ["info", "error"],
    about: "one answered request (info), or a handler that threw (error: err, no status)",
    fields: {
      peer: "string?",
      method: "string",
      path: "string",
      status: "number?",
      rule: "string?",
      ms: "number?",
      abandoned: "boolean?",
      err: "string?",
    },
  },
  "request.summary": {
    level: ["info"],
    about:
      "the requests of one second beyond the per-second budget of request lines, counted per peer, route and status",
    fields: {
      peer: "string",
      method: "string",
      route: "string",
      status: "number",
      rule: "string",
      count: "number",
      msAvg: "number",
      msMax: "number",
    },
  },
  "authz.denied": {
    level: ["warn"],
    about: "the policy refused a caller (403): who, what, the deciding rule, why, and what would allow it",
    fields: {
      peer: "string",
      peerDns: "string?",
      peerSpiffeId: "string|null?",
      method: "string",
      path: "string",
      rule: "string",
      reason: "string",
      hint: "string?",
      remote: "string?",
    },
  },
  "authz.would_deny": {
    level: ["warn"],
    about: "audit mode: the policy would refuse this caller, and let it through (the same fields as authz.denied)",
    fields: {
      peer: "string",
      peerDns: "string?",
      peerSpiffeId: "string|null?",
      method: "string",
      path: "string",
      rule: "string",
      reason: "string",
      hint: "string?",
      remote: "string?",
    },
  },
  "tls.handshake_failed": {
    level: ["warn"],
    about: "a TLS handshake was refused (a service, or the CA server): the reason and what the peer presented",
    fields: {
      reason: "string",
      remote: "string?",
      tlsCode: "string?",
      peer: "cert?",
      trusts: "string[]?",
      detail: "string?",
      hint: "string?",
    },
  },
  "http.client_error": {
    level: ["warn"],
    about: "a connection sent something that is not acceptable HTTP (too large, too slow, malformed)",
    fields: { reason: "string", peer: "string?", remote: "string?", code: "string?", detail: "string?" },
  },
  "tls.reloaded": {
    level: ["info"],
    about:
      "new certificate and/or trust bundle/CRLs are in force for new connections (restored: the files again hold what is in force)",
    fields: {
      certChanged: "boolean",
      trustChanged: "boolean",
      restored: "boolean?",
      serial: "string",
      notAfter: "string",
      trusts: "string[]",
    },
  },
  "tls.reload_failed": {
    level: ["error"],
    about: "the TLS files could not be loaded: the previous material stays in force",
    fields: { code: "string?", error: "string" },
  },
  "toggle.on": {
    level: ["warn"],
    about:
      "a teaching toggle is in force: the service presents a chosen bad identity instead of its own (npm run mesh:toggle, docs/toggles.md)",
    fields: { kind: "string", serial: "string", notAfter: "string", dir: "string" },
  },
  "toggle.off": {
    level: ["info"],
    about: "the teaching toggle is gone: the service presents its own identity again",
    fields: { kind: "string", serial: "string", dir: "string" },
  },
  "tls.connections_closed": {
    level: ["info"],
    about: "open connections were closed or drained after the certificate or trust changed",
    fields: { count: "number", why: "string", peers: "string[]?", graceMs: "number?", side: "string?" },
  },
  "policy.reloaded": {
    level: ["info"],
    about: "a new mesh-policy.toml is in force (restored: the file again holds the policy in force)",
    fields: { file: "string", accepts: "map<string[]|null>", restored: "boolean?" },
  },
  "policy.reload_failed": {
    level: ["error"],
    about: "the policy file could not be loaded: the previous policy stays in force",
    fields: { file: "string", code: "string?", error: "string" },
  },
  "policy.table_missing": {
    level: ["warn", "error"],
    about: "the policy has no table for this service, so it accepts nobody",
    fields: { file: "string" },
  },
  "crl.expiring": {
    level: ["warn"],
    about: "a CRL in force reaches its nextUpdate soon; after it every certificate of that CA is refused",
    fields: { issuer: "string", nextUpdate: "string", daysLeft: "number", file: "string" },
  },
  "crl.lapsed": {
    level: ["error"],
    about: "a CRL in force is past its nextUpdate: every certificate of that CA is refused",
    fields: { issuer: "string", nextUpdate: "string", daysLeft: "number", file: "string" },
  },
  "upstream.failed": {
    level: ["warn", "error"],
    about:
      "a call to another service failed: unreachable, refused in the handshake, 403 or 5xx (the order app: a reservation not released)",
    fields: {
      upstream: "string",
      reason: "string",
      side: "string?",
      method: "string?",
      path: "string?",
      addr: "string?",
      code: "string?",
      peer: "cert|string?",
      trusts: "string[]?",
      status: "number?",
      rule: "string?",
      reservationId: "string?",
      orderId: "string?",
      // The callee refused our certificate for its dates (callee-clock.ts): which clock is likely wrong.
      refusedFor: "string?",
      clock: "string?",
      clock_offset_ms: "number?",
    },
  },
  "outbound.listening": {
    level: ["info"],
    about: "a sidecar's outbound port for its app is open: calls to it go over mTLS to the named upstream",
    fields: { upstream: "string", addr: "string", port: "number" },
  },
  "sidecar.app": {
    level: ["info"],
    about: "a sidecar forwards allowed requests to its app (where, and over which protocol)",
    fields: { app: "string", protocol: "string" },
  },
  shutdown: { level: ["info"], about: "a service stops on a signal", fields: { signal: "string" } },
  "log.dropped": {
    level: ["warn"],
    about: "log lines were dropped because stdout was not being read (written by hand, not by pino)",
    fields: { count: "number" },
  },

  // --- the identity agent (services/mesh/identity-agent, and mesh:up's edge identity) ---
  "identity.enrolled": {
    level: ["info"],
    about: "an identity enrolled with the CA using a one-time token",
    fields: { ...FACTS, etag: "string|null?", roots: "number?", stateDir: "string?", ca: "string?" },
  },
  "identity.token_unused": {
    level: ["info"],
    about: "the state folder already holds a valid identity: the enrolment token was not used",
    fields: { stateDir: "string" },
  },
  "identity.agent_started": {
    level: ["info"],
    about: "the identity agent runs: the certificate in force and when it renews",
    fields: { ...FACTS, nextRenewal: "string", ca: "string" },
  },
  "identity.renewed": {
    level: ["info"],
    about: "the identity renewed: the new certificate, the one it replaces, and why now",
    fields: { ...FACTS, previous: "string", reason: "string", failuresBefore: "number?" },
  },
  "identity.renew_failed": {
    level: ["warn", "debug"],
    about: "a renewal failed and is retried with backoff (debug while the CA stays unreachable)",
    fields: {
      ...FACTS,
      reason: "string",
      code: "string?",
      status: "number?",
      failures: "number",
      nextRetry: "string",
      expiresInMs: "number",
      trigger: "string",
    },
  },
  "identity.expiring": {
    level: ["warn"],
    about:
      "the certificate nears its end and no renewal has replaced it (failed, or stalled): said once per certificate",
    fields: { ...FACTS, expiresInMs: "number", secondsLeft: "number?", failures: "number?", lastError: "string|null?" },
  },
  "identity.renewal_late": {
    level: ["warn"],
    about:
      "a scheduled renewal starts late: this process was held up (an overloaded machine, a blocked event loop, a suspend)",
    fields: { ...FACTS, due: "string", lateMs: "number", expiresInMs: "number" },
  },
  "identity.expired": {
    level: ["error"],
    about: "the certificate expired: peers refuse it and the CA will not renew it; enrol again",
    fields: { ...FACTS, stateDir: "string" },
  },
  "identity.renew_now": {
    level: ["info"],
    about: "the CA asked for renewal now (Mesh-Renew-Now: its signer changed)",
    fields: { ...FACTS },
  },
  "identity.replaced": {
    level: ["warn"],
    about: "a stale state folder was moved aside and the identity enrols again",
    fields: { stateDir: "string", movedTo: "string", component: "string?", why: "string?" },
  },
  "trust.updated": {
    level: ["info"],
    about: "a new trust bundle and/or CRLs fetched from the CA (applied: in force)",
    fields: {
      changed: "string[]",
      etag: "string|null",
      roots: "string[]",
      crls: "number",
      applied: "boolean",
      via: "string?",
    },
  },
  "trust.crls_stale": {
    level: ["warn"],
    about: "the CA sent an older CRL than the one in force: the newer one is kept",
    fields: { ca: "string", issuers: "string[]" },
  },
  "trust.update_failed": {
    level: ["warn"],
    about: "the CRLs the CA announced are unusable: the cached ones stay in force",
    fields: { ca: "string", reason: "string" },
  },
  "trust.watch_unsupported": {
    level: ["info"],
    about: "the CA offers no CRL watch endpoint: CRLs come with the periodic poll only",
    fields: { ca: "string", status: "number" },
  },
  "trust.poll_failed": {
    level: ["warn"],
    about: "the trust bundle and CRLs could not be fetched from the CA: the cached ones stay in force",
    fields: { ca: "string", reason: "string" },
  },
  "trust.poll_restored": { level: ["info"], about: "the CA answers polls again", fields: { ca: "string" } },

  // --- the CA server (ca/server, ca serve) ---
  "ca.started": {
    level: ["info"],
    about: "the CA serves EST: its URL, generations, signer, root fingerprint, own certificate and lifetimes",
    fields: {
      url: "string",
      generations: "number[]",
      signer: "string",
      root_sha256: "string",
      tls_serial: "string",
      tls_not_after: "string",
      default_lifetime: "string",
      max_lifetime: "string",
      store: "string?",
      lease_holder: "string?",
      runs_jobs: "boolean?",
    },
  },
  "ca.stopped": {
    level: ["info"],
    about: "ca serve stopped on a signal",
    fields: { signal: "string", url: "string?" },
  },
  "ca.state_reloaded": {
    level: ["info"],
    about: "the CA server picked up changes of its state folder (new CRLs, generations, signer)",
    fields: { etag: "string", generations: "number[]", signer: "string", crls: "string[]" },
  },
  "ca.reload_failed": {
    level: ["error"],
    about: "the state folder's changes could not be loaded: the previous state is served",
    fields: { err: "string" },
  },
  "ca.tls_renewed": {
    level: ["info"],
    about: "the CA server renewed its own TLS certificate",
    fields: { serial: "string", previous: "string", generation: "number", not_after: "string", reason: "string" },
  },
  "ca.crls_resigned": {
    level: ["info"],
    about: "CRLs close to their nextUpdate were re-signed",
    fields: { issuers: "string[]", next_update: "(string|null)[]" },
  },
  "ca.crls_resign_failed": {
    level: ["error"],
    about: "the CRLs could not be re-signed; retried at the next check",
    fields: { err: "string" },
  },
  "ca.pruned": {
    level: ["info"],
    about:
      "retention deleted expired certificates and spent tokens from the ledger, and dropped long-expired entries from CRLs",
    fields: {
      certs: "number",
      tokens: "number",
      cutoff: "string",
      crls_resigned: "string[]",
      crl_expired_dropped: "number",
      crl_expired_kept: "number",
    },
  },
  "ca.prune_failed": {
    level: ["error"],
    about: "a retention run failed; tried again at the next check",
    fields: { err: "string" },
  },
  "ca.lease_acquired": {
    level: ["info"],
    about: "this CA server took the lease for the once-only jobs (re-signing CRLs, retention) among its replicas",
    fields: { lease: "string", holder: "string", expires_at: "string" },
  },
  "ca.lease_lost": {
    level: ["warn"],
    about: "another replica holds the lease now: this server stops running the once-only jobs",
    fields: { lease: "string", holder: "string|null" },
  },
  "ca.lease_released": {
    level: ["info"],
    about: "this server gave the lease up (it stops)",
    fields: { lease: "string", holder: "string" },
  },
  "ca.lease_failed": {
    level: ["warn"],
    about: "the lease could not be renewed (the store did not answer): this server acts as not holding it",
    fields: { lease: "string", err: "string" },
  },
  "est.enrolled": {
    level: ["info"],
    about: "EST simpleenroll with a one-time token issued a certificate",
    fields: {
      name: "string",
      serial: "string",
      spiffe_id: "string|null?",
      issuer: "string",
      generation: "number",
      not_after: "string",
      remote: "string",
      supersedes: "string|null",
    },
  },
  "est.renewed": {
    level: ["info"],
    about: "EST simplereenroll renewed a certificate and superseded the previous one",
    fields: {
      name: "string",
      serial: "string",
      spiffe_id: "string|null?",
      previous: "string",
      issuer: "string",
      generation: "number",
      not_after: "string",
      remote: "string",
    },
  },
  "est.refused": {
    level: ["warn"],
    about: "an EST request was refused: route, status, reason code and why",
    fields: {
      route: "string",
      status: "number",
      reason: "string",
      detail: "string",
      name: "string|null",
      remote: "string",
      serial: "string|null",
      authenticated: "boolean",
      clock_offset_ms: "number?",
    },
  },
  "est.refused_summary": {
    level: ["warn"],
    about:
      "unauthenticated refusals of an interval beyond the lines allowed for them, counted by reason, caller and name",
    fields: {
      interval_s: "number",
      total: "number",
      logged: "number",
      suppressed: "number",
      by_reason: "map<number>",
      remotes: "number",
      top_remotes: "top[]",
      top_names: "top[]",
    },
  },
  "est.clock_skew": {
    level: ["warn"],
    about: "a caller's clock is off from the CA's by more than the tolerance",
    fields: {
      name: "string|null",
      authenticated: "boolean",
      remote: "string",
      route: "string",
      clock_offset_ms: "number?",
    },
  },
  "est.error": {
    level: ["error"],
    about: "an internal error answering an EST request (500)",
    fields: { route: "string", err: "string", remote: "string", serial: "string|null" },
  },
  "est.bundle_record_failed": {
    level: ["warn"],
    about: "the CA could not record which trust bundle is published or held",
    fields: { err: "string" },
  },
  "spiffe.bundle_sequence_unreadable": {
    level: ["warn"],
    about: "the SPIFFE bundle endpoint's sequence file is unreadable: the sequence starts again",
    fields: { file: "string", err: "string" },
  },
  "spiffe.bundle_sequence_unwritable": {
    level: ["warn"],
    about: "the SPIFFE bundle endpoint could not record its sequence number",
    fields: { file: "string", err: "string" },
  },
  "rotate.gate": {
    level: ["info", "error"],
    about: "a root rotation's gate started, passed, waits or timed out (ca rotate --json, the drill)",
    fields: {
      rotation: "number",
      from: "number",
      to: "number",
      gate: "string",
      state: "string",
      waitingFor: "string[]",
      why: "map<string>",
      total: "number",
    },
  },

  // --- the scripts (mesh:up, the drill) ---
  "mesh.started": {
    level: ["info"],
    about: "mesh:up began a run (the dashboard shows the logs from here on)",
    fields: { pid: "number", mode: "string" },
  },
  "workload.started": {
    level: ["info"],
    about:
      "mesh:up started a workload's sidecar and app (mesh-workloads.toml): its mTLS port, its app, its outbound ports",
    fields: { workload: "string", port: "number", app: "string", upstreams: "map<number>" },
  },
  "supervisor.started": {
    level: ["info"],
    about: "mesh:up started a component (restarts: how many times before)",
    fields: { component: "string", pid: "number", restarts: "number" },
  },
  "supervisor.exited": {
    level: ["info", "warn"],
    about: "a component mesh:up supervises exited (warn unless mesh:up is stopping)",
    fields: { component: "string", pid: "number", code: "number|null", signal: "string|null" },
  },
  "supervisor.restarting": {
    level: ["warn"],
    about: "mesh:up restarts a component after a backoff",
    fields: { component: "string", attempt: "number", delayMs: "number" },
  },
  "supervisor.gave_up": {
    level: ["error"],
    about: "a component crashed too often in a row: mesh:up stops restarting it, the rest keeps running",
    fields: { component: "string", restarts: "number" },
  },
  "supervisor.stopped": { level: ["info"], about: "mesh:up stopped everything", fields: { code: "number" } },
  "supervisor.orphans_stopped": {
    level: ["warn"],
    about: "mesh:up stopped components a previous mesh:up left running",
    fields: { supervisor: "number", components: "map<number>" },
  },
  "crl.checked": {
    level: ["info"],
    about:
      "mesh:up (file mode) checked the CRLs for a nextUpdate within 10 days, as it does every --crl-check seconds; resigned: the CAs whose CRL it re-signed (usually none)",
    fields: { resigned: "string[]" },
  },
  "policy.unknown_caller": {
    level: ["warn"],
    about: "mesh:up found a policy rule naming a caller that has no identity (a typo, or a service not started)",
    fields: { caller: "string", rules: "string[]", policy: "string" },
  },
  "policy.test_failed": {
    level: ["warn"],
    about: "mesh:up ran the policy file's tests and one failed (the services run the policy already)",
    fields: { policy: "string" },
  },
  "drill.phase": {
    level: ["info"],
    about: "the rotation drill began a phase (safe: whether the mesh should keep answering through it)",
    fields: { phase: "string", safe: "boolean" },
  },
} as const satisfies Record<string, EventSpec>;

export type EventName = keyof typeof EVENTS;

type Spec<E extends EventName> = (typeof EVENTS)[E]["fields"];
type Flat<T> = { [K in keyof T]: T[K] };
type RequiredOf<S> = {
  -readonly [K in keyof S as S[K] extends `${string}?` ? never : K]: FieldTypes[S[K] & keyof FieldTypes];
};
type OptionalOf<S> = {
  -readonly [K in keyof S as S[K] extends `${string}?`
    ? K
    : never]?: S[K] extends `${infer T extends keyof FieldTypes}?` ? FieldTypes[T] : never;
};

/** The fields of each event, derived from EVENTS. */
export type EventCatalogue = { [E in EventName]: Flat<RequiredOf<Spec<E>> & OptionalOf<Spec<E>>> };

/** What a writer passes for one event: its name and its fields. */
export type EventFields<E extends EventName = EventName> = { [N in E]: Flat<{ event: N } & EventCatalogue[N]> }[E];

/** The events written at a level. */
export type EventAt<L extends LevelName> = {
  [E in EventName]: L extends (typeof EVENTS)[E]["level"][number] ? E : never;
}[EventName];

/** A level's method: takes only events catalogued at that level, with their fields, and a sentence. */
export type EventLogFn<L extends LevelName> = (fields: EventFields<EventAt<L>>, msg: string) => void;

/**
 * The writers' logger: a pino Logger is one (its methods accept any object), so call sites
 * keep pino's `log.warn({ event, ...fields }, sentence)` and are checked against the table.
 */
export interface EventLogger {
  debug: EventLogFn<"debug">;
  info: EventLogFn<"info">;
  warn: EventLogFn<"warn">;
  error: EventLogFn<"error">;
  isLevelEnabled(level: string): boolean;
}

/** What every line carries besides its event's fields (pino's level and time, the service binding, the sentence). */
export interface LineHead {
  level: number;
  time: string;
  service?: string;
  msg: string;
}

/** A parsed log line: narrow on `event` to get that event's fields. */
export type LoggedEvent<E extends EventName = EventName> = {
  [N in E]: Flat<LineHead & { event: N } & EventCatalogue[N]>;
}[E];

/** A JSON line with an `event` that is not in the catalogue (a newer writer, or another program). */
export interface UnknownLine extends Partial<LineHead> {
  event?: string;
  [k: string]: unknown;
}

export function isEventName(name: unknown): name is EventName {
  return typeof name === "string" && Object.hasOwn(EVENTS, name);
}

/**
 * A log line as its event: undefined for anything that is not a JSON object with a
 * catalogued `event` at one of its levels, pino's time and msg, and the fields the catalogue gives that event, with
 * their types (a stack trace, another program's line, a half-written line, a writer that
 * drifted). Fields the catalogue does not name are kept: a newer writer may add some.
 */
export function parseEventLine(text: string): LoggedEvent | undefined {
  const l = parseJsonLine(text);
  return l && asEvent(l);
}

/** Any JSON object line (an event the catalogue does not know included): for tools that show every line. */
export function parseJsonLine(text: string): UnknownLine | undefined {
  if (!text.startsWith("{")) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return isObject(v) ? (v as UnknownLine) : undefined;
  } catch {
    return undefined;
  }
}

/** A parsed line as its catalogued event, checked as parseEventLine checks it; undefined when it is not one. */
export function asEvent(l: UnknownLine | null | undefined): LoggedEvent | undefined {
  if (!l || !isEventName(l.event) || typeof l.time !== "string" || typeof l.msg !== "string") return undefined;
  const spec: EventSpec = EVENTS[l.event];
  if (!spec.level.some((name) => LEVELS[name] === l.level)) return undefined;
  const fields = spec.fields;
  for (const [name, spec] of Object.entries(fields)) {
    const optional = spec.endsWith("?");
    const v = l[name];
    if (v === undefined ? !optional : !FIELD_CHECKS[(optional ? spec.slice(0, -1) : spec) as keyof FieldTypes](v))
      return undefined;
  }
  return l as unknown as LoggedEvent;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === "string";
const isNumber = (v: unknown): v is number => typeof v === "number";
const arrayOf = (each: (v: unknown) => boolean) => (v: unknown) => Array.isArray(v) && v.every(each);
const mapOf = (each: (v: unknown) => boolean) => (v: unknown) => isObject(v) && Object.values(v).every(each);
const optionalString = (v: unknown) => v === undefined || isString(v);
const isCert = (v: unknown) =>
  isObject(v) && ["subject", "issuer", "serial", "validFrom", "validTo"].every((k) => optionalString(v[k]));

const FIELD_CHECKS: { [T in keyof FieldTypes]: (v: unknown) => boolean } = {
  string: isString,
  number: isNumber,
  boolean: (v) => typeof v === "boolean",
  "string|null": (v) => v === null || isString(v),
  "number|null": (v) => v === null || isNumber(v),
  "string[]": arrayOf(isString),
  "(string|null)[]": arrayOf((v) => v === null || isString(v)),
  "number[]": arrayOf(isNumber),
  "map<string>": mapOf(isString),
  "map<number>": mapOf(isNumber),
  "map<string[]|null>": mapOf((v) => v === null || arrayOf(isString)(v)),
  cert: isCert,
  "cert|string": (v) => isString(v) || isCert(v),
  "top[]": arrayOf((v) => isObject(v) && isNumber(v.count) && optionalString(v.remote) && optionalString(v.name)),
};

/** Whether a parsed line is the given event (a type guard for lines of unknown kind). */
export function isEvent<E extends EventName>(
  l: UnknownLine | null | undefined,
  name: E,
): l is UnknownLine & LoggedEvent<E> {
  return l?.event === name && asEvent(l) !== undefined;
}

/**
 * A line written by hand (not through pino), in pino's shape: for the few writers that cannot
 * hold a logger (a sink reporting its own drops, the drill's phases, mesh:up's policy check).
 */
export function eventLine<E extends EventName>(
  head: { level: NoInfer<(typeof EVENTS)[E]["level"][number]>; service: string; time?: Date | string },
  fields: EventFields<E> & { event: E },
  msg: string,
): string {
  const time =
    head.time === undefined
      ? new Date().toISOString()
      : typeof head.time === "string"
        ? head.time
        : head.time.toISOString();
  return `${JSON.stringify({ level: LEVELS[head.level], time, service: head.service, ...fields, msg })}\n`;
}
