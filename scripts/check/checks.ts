// The checks of mesh:check as pure functions over the facts gather.ts collected and a clock
// passed in: no I/O, so each verdict can be tested with literal facts.
import { BACKDATE_MS, CRL_WARN_DAYS } from "../../ca/index.ts";
import type { EventName } from "../../lib/events.ts";
import type { CaFacts, IssuerFacts, MeshFacts, ServiceFacts } from "./facts.ts";

export type Severity = "ok" | "warning" | "error";

export interface Check {
  /** A stable id for scripts: "certificate", "issuer:root-1", … */
  readonly name: string;
  /** What is asserted, in words: "certificate is valid". */
  readonly title: string;
  /** False only for an error: a warning passes, as in `linkerd check`. */
  readonly ok: boolean;
  readonly severity: Severity;
  /** What was found; for a warning or an error, a sentence saying what is wrong. */
  readonly detail: string;
  /** The command that fixes it; null when there is nothing to fix. */
  readonly fix: string | null;
}

export interface ServiceReport {
  readonly name: string;
  readonly port: number;
  readonly adminPort: number | null;
  readonly checks: readonly Check[];
}

export interface Report {
  /** No check is an error. */
  readonly ok: boolean;
  readonly checkedAt: string;
  readonly ca: { readonly dir: string; readonly checks: readonly Check[] };
  readonly services: readonly ServiceReport[];
  /** mesh:up's supervision of the parts (check/supervision.ts), when it was read. */
  readonly supervisor?: { readonly checks: readonly Check[] };
}

/** Like `linkerd check`: roots and issuers must stay valid for at least 60 days. */
export const CA_WARN_DAYS = 60;
/** A service certificate is renewed by mesh:up 30 days ahead; within 7 it is urgent. */
export const LEAF_WARN_DAYS = 7;
export { CRL_WARN_DAYS };
/** The Date header has whole seconds: a skew this large is more than its rounding. */
export const CLOCK_WARN_MS = 2_000;
/** Certificates are backdated by 5 minutes: past that, a fresh one looks not yet valid. */
export const CLOCK_ERROR_MS = BACKDATE_MS;

const DAY_MS = 86_400_000;

const check = (name: string, title: string, severity: Severity, detail: string, fix: string | null = null): Check => ({
  name,
  title,
  ok: severity !== "error",
  severity,
  detail,
  fix,
});

/** "2027-03-01 12:00 UTC" */
export function when(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** "in 89 days", "in 5 hours", "3 days ago" */
export function until(ms: number, now: number): string {
  const d = ms - now;
  const a = Math.abs(d);
  const n =
    a >= 2 * DAY_MS
      ? `${Math.floor(a / DAY_MS)} days`
      : a >= 2 * 3_600_000
        ? `${Math.floor(a / 3_600_000)} hours`
        : `${Math.max(0, Math.floor(a / 60_000))} minutes`;
  return d >= 0 ? `in ${n}` : `${n} ago`;
}

/** "in 42 s", "in 17 minutes": for lifetimes of seconds to hours. */
function untilShort(at: number, now: number): string {
  const d = Math.round((at - now) / 1000);
  const a = Math.abs(d);
  const n = a < 120 ? `${a} s` : a < 7_200 ? `${Math.floor(a / 60)} minutes` : `${Math.floor(a / 3_600)} hours`;
  return d >= 0 ? `in ${n}` : `${n} ago`;
}

const short = (sha: string | undefined) => (sha ? `${sha.slice(0, 12)}…` : "(none)");
const logs = (svc: string, event: EventName) => `npm run mesh:logs -- --service ${svc} --event ${event} --no-follow`;

/** Why the admin-port facts cannot be judged, or null when they can. */
function adminUnusable(s: ServiceFacts): string | null {
  if (s.admin.port === null) return "not checked: mesh:up recorded no admin port for it";
  if (s.admin.error !== undefined || s.admin.metrics !== 200)
    return `not checked: its admin port ${s.admin.port} does not serve /metrics`;
  return null;
}

export function checkMtls(s: ServiceFacts, ca?: CaFacts): Check {
  const title = "answers over mTLS";
  const m = s.mtls;
  const at = `127.0.0.1:${s.port}`;
  if (m.identity === null) {
    return ca?.online
      ? check(
          "mtls",
          title,
          "error",
          "mesh:check found no usable mesh identity in the state folders mesh:up records in logs/mesh.json (edge, order, payment and inventory are missing, revoked or expired), so it cannot make an mTLS handshake; mesh:up enrols them again when it starts",
          "npm run mesh:up",
        )
      : check(
          "mtls",
          title,
          "error",
          "mesh:check found no usable mesh identity in the CA's certs/ (edge, order, payment and inventory are missing, revoked or expired), so it cannot make an mTLS handshake",
          "npm run ca -- issue --domain edge.internal",
        );
  }
  if (m.error === "ECONNREFUSED")
    return check("mtls", title, "error", `nothing listens on ${at}: ${s.name} is not running`, "npm run mesh:up");
  if (m.error !== undefined)
    return check(
      "mtls",
      title,
      "error",
      `no HTTP answer from ${at} to GET /healthz as ${m.identity}: ${m.error}`,
      `npm run mesh:logs -- --service ${s.name} --failures --no-follow`,
    );
  if (m.status === undefined || m.status >= 500)
    return check(
      "mtls",
      title,
      "error",
      `GET /healthz on ${at} answered ${m.status ?? "nothing"}`,
      `npm run mesh:logs -- --service ${s.name} --failures --no-follow`,
    );
  const rule = m.status === 403 && m.rule ? ` (${m.rule}: denied by policy, which still proves it answers)` : "";
  return check("mtls", title, "ok", `handshake as ${m.identity} on ${at}, GET /healthz: ${m.status}${rule}`);
}

export function checkAdmin(s: ServiceFacts): Check {
  const title = "admin port answers";
  const a = s.admin;
  if (a.port === null)
    return check(
      "admin",
      title,
      "error",
      `logs/mesh.json records no admin port for ${s.name} (a mesh started by an older mesh:up?), so its metrics cannot be read`,
      "npm run mesh:up",
    );
  const url = `http://127.0.0.1:${a.port}`;
  if (a.error !== undefined)
    return check("admin", title, "error", `nothing answers on ${url}: ${a.error}`, "npm run mesh:up");
  // A reason from the service itself (a dead identity) has its fix under "certificate is valid".
  if (a.healthz !== 200 && a.healthzReason)
    return check(
      "admin",
      title,
      "error",
      `${url}/healthz answered ${a.healthz ?? "nothing"}: ${s.name}: ${a.healthzReason} (the certificate check says what to do)`,
    );
  if (a.healthz !== 200)
    return check(
      "admin",
      title,
      "error",
      `${url}/healthz answered ${a.healthz ?? "nothing"}: ${s.name}'s mTLS port no longer listens`,
      "npm run mesh:up",
    );
  if (a.metrics !== 200)
    return check(
      "admin",
      title,
      "error",
      `${url}/metrics answered ${a.metrics ?? "nothing"}`,
      `npm run mesh:logs -- --service ${s.name} --failures --no-follow`,
    );
  return check("admin", title, "ok", `${url}: /healthz 200, /metrics 200`);
}

export function checkCertificate(s: ServiceFacts, ca: CaFacts, now: number): Check {
  const title = "certificate is valid";
  const dns = `${s.name}.internal`;
  // Online, a service renews itself: what to look at is why it did not.
  const renew = ca.online ? logs(s.name, "identity.renew_failed") : caFix(ca, `renew --domain ${dns}`);
  const c = s.mtls.served;
  if (!c)
    return check(
      "certificate",
      title,
      "error",
      `not checked: no handshake with ${s.name} completed, so its certificate could not be read`,
      checkMtls(s, ca).fix ?? "npm run mesh:up",
    );
  const l = s.ledger;
  const serial = `serial ${c.serial}`;
  if (!l)
    return check(
      "certificate",
      title,
      "error",
      `${s.name} serves a certificate (${serial}, issued by ${c.issuer}) that the CA in ${ca.dir} never issued`,
      renew,
    );
  if (l.status === "REVOKED" && ca.online) {
    return check(
      "certificate",
      title,
      "error",
      `${s.name} serves a revoked certificate (${serial}, revoked ${l.revokedAt ? when(Date.parse(l.revokedAt)) : ""}, reason ${l.reason ?? "unspecified"}): every peer refuses it in the handshake, and the CA refuses to renew a revoked identity; stop mesh:up and start it again: it moves ${s.name}'s state folder aside and enrols it with a new one-time token`,
      "npm run mesh:up",
    );
  }
  if (l.status === "REVOKED") {
    return check(
      "certificate",
      title,
      "error",
      `${s.name} serves a revoked certificate (${serial}, revoked ${l.revokedAt ? when(Date.parse(l.revokedAt)) : ""}, reason ${l.reason ?? "unspecified"}): every peer refuses it in the handshake; a revoked name cannot be renewed, so issue it a fresh certificate, which ${s.name} loads within a second`,
      caFix(ca, `issue --domain ${dns}`),
    );
  }
  const notAfter = Date.parse(c.notAfter);
  const notBefore = Date.parse(c.notBefore);
  if (notAfter <= now)
    return check(
      "certificate",
      title,
      "error",
      `${s.name}'s certificate (${serial}) expired on ${when(notAfter)}: every peer refuses it`,
      renew,
    );
  if (notBefore > now)
    return check(
      "certificate",
      title,
      "error",
      `${s.name}'s certificate (${serial}) is not valid before ${when(notBefore)}: is this host's clock behind?`,
      "timedatectl set-ntp true",
    );
  if (s.mtls.verifyError)
    return check(
      "certificate",
      title,
      "error",
      `OpenSSL refuses ${s.name}'s certificate (${serial}) with ${ca.dir}/bundle.pem and crls.pem: ${s.mtls.verifyError}`,
      renew,
    );
  const gen = `${l.issuer}, generation ${l.generation}`;
  const left = `valid until ${when(notAfter)} (${until(notAfter, now)})`;
  if (l.status === "SUPERSEDED")
    return check(
      "certificate",
      title,
      "warning",
      `${s.name} still serves ${serial}, superseded by ${l.supersededBy ?? "a newer one"}: it has not loaded its renewed certificate (it should within a second)`,
      logs(s.name, "tls.reload_failed"),
    );
  if (ca.online) {
    // Renewed at about 2/3 of its life (at most 73 %): with less than a fifth left, renewal is late.
    if (notAfter - now < ca.online.lifetimeMs / 5)
      return check(
        "certificate",
        title,
        "warning",
        `${s.name}'s certificate (${serial}) expires ${untilShort(notAfter, now)}: it should have renewed itself by now (it renews at about 2/3 of its ${Math.round(ca.online.lifetimeMs / 1000)} s life)`,
        renew,
      );
    return check(
      "certificate",
      title,
      "ok",
      `${serial}, valid until ${when(notAfter)} (${untilShort(notAfter, now)}; renews itself), from ${gen}`,
    );
  }
  if (notAfter - now < LEAF_WARN_DAYS * DAY_MS)
    return check(
      "certificate",
      title,
      "warning",
      `${s.name}'s certificate (${serial}) expires ${until(notAfter, now)}, on ${when(notAfter)}`,
      renew,
    );
  return check("certificate", title, "ok", `${serial}, ${left}, from ${gen}`);
}

/** Online, services fetch the CA's bundle and CRLs every poll: a change newer than that is on its way. */
function notFetchedYet(ca: CaFacts, changedAt: number, now: number): string | null {
  if (!ca.online || now - changedAt > ca.online.pollMs + 5_000) return null;
  return `the CA changed it ${Math.max(0, Math.round((now - changedAt) / 1000))} s ago and services fetch it every ${Math.round(ca.online.pollMs / 1000)} s: it arrives at the next poll`;
}

export function checkTrustBundle(s: ServiceFacts, ca: CaFacts, now = Date.now()): Check {
  const title = "holds the CA's current trust bundle";
  const why = adminUnusable(s);
  if (why) return check("trust-bundle", title, "error", why, checkAdmin(s).fix);
  const held = s.admin.trustBundleSha256;
  if (!held)
    return check(
      "trust-bundle",
      title,
      "error",
      `${s.name}'s /metrics has no mesh_trust_bundle_info (a build older than mesh:check?)`,
      "npm run mesh:up",
    );
  const pending = held !== ca.bundleSha256 && ca.online ? notFetchedYet(ca, ca.online.bundleChangedAt, now) : null;
  if (pending)
    return check(
      "trust-bundle",
      title,
      "warning",
      `${s.name} holds a trust bundle (sha256 ${short(held)}) other than ${ca.dir}/bundle.pem (${short(ca.bundleSha256)}): ${pending}`,
      logs(s.name, "trust.updated"),
    );
  if (held !== ca.bundleSha256) {
    return check(
      "trust-bundle",
      title,
      "error",
      `${s.name} holds a trust bundle (sha256 ${short(held)}) other than the one the CA publishes in ${ca.dir}/bundle.pem (${short(ca.bundleSha256)}): it may refuse peers from a new root generation or still trust a retired one; re-publish it (if it still differs, ${logs(s.name, "tls.reload_failed")} says why)`,
      caFix(ca, "bundle"),
    );
  }
  return check("trust-bundle", title, "ok", `sha256 ${short(held)}, the same as ${ca.dir}/bundle.pem`);
}

export function checkCrls(s: ServiceFacts, ca: CaFacts, now: number): Check {
  const title = "CRLs are current";
  const why = adminUnusable(s);
  if (why) return check("crls", title, "error", why, checkAdmin(s).fix);
  const list = [...(s.admin.crlNextUpdates ?? [])].sort((a, b) => a.at - b.at);
  const first = list[0];
  if (!first)
    return check(
      "crls",
      title,
      "error",
      `${s.name} exports no CRL's next update: it holds no CRL it can read`,
      caFix(ca, "crl"),
    );
  if (first.at <= now)
    return check(
      "crls",
      title,
      "error",
      `the CRL of ${first.issuer} that ${s.name} holds lapsed on ${when(first.at)}: OpenSSL refuses every peer that CA issued (crl_expired)`,
      caFix(ca, "crl"),
    );
  const pending =
    s.admin.crlsSha256 !== ca.crlsSha256 && ca.online ? notFetchedYet(ca, ca.online.crlsChangedAt, now) : null;
  if (pending)
    return check(
      "crls",
      title,
      "warning",
      `${s.name} holds CRLs (sha256 ${short(s.admin.crlsSha256)}) other than ${ca.dir}/crls.pem (${short(ca.crlsSha256)}): ${pending}`,
      logs(s.name, "trust.updated"),
    );
  if (s.admin.crlsSha256 !== ca.crlsSha256) {
    return check(
      "crls",
      title,
      "error",
      `${s.name} holds CRLs (sha256 ${short(s.admin.crlsSha256)}) other than ${ca.dir}/crls.pem (${short(ca.crlsSha256)}): revocations published since are not in force there; re-publish them (if it still differs, ${logs(s.name, "tls.reload_failed")} says why)`,
      caFix(ca, "crl"),
    );
  }
  if (first.at - now < CRL_WARN_DAYS * DAY_MS)
    return check(
      "crls",
      title,
      "warning",
      `the CRL of ${first.issuer} lapses ${until(first.at, now)}, on ${when(first.at)}: after that every peer it issued is refused`,
      caFix(ca, "crl"),
    );
  return check(
    "crls",
    title,
    "ok",
    `${list.length} CRL${list.length === 1 ? "" : "s"}, the same as ${ca.dir}/crls.pem, next update ${when(first.at)} (${until(first.at, now)})`,
  );
}

/** Services renew at 2/3 of a certificate's life (the agent's default, and mesh:up's 30 days of 90). */
export const RENEWAL_FRACTION = 2 / 3;
/** Past the 2/3 point by this much of the life (and at least RENEWAL_SLACK_MIN_MS): the agent's jitter reaches 73 %, a retry a few seconds more. */
export const RENEWAL_SLACK = 0.1;
export const RENEWAL_SLACK_MIN_MS = 30_000;

/**
 * The renewal heartbeat: a certificate still in force past the point it should have been
 * renewed at is an error before it expires, since "Ready, then expired" is what a quiet renewal
 * failure looks like (cert-manager's most common complaint). Counted from when the service
 * obtained it (mesh_identity_cert_last_renewal_timestamp_seconds), not from its backdated notBefore.
 */
export function checkRenewal(s: ServiceFacts, ca: CaFacts, now: number): Check {
  const title = "renews its certificate on time";
  const why = adminUnusable(s);
  if (why) return check("renewal", title, "error", why, checkAdmin(s).fix);
  const obtained = s.admin.lastRenewalAt;
  const notAfter = s.admin.certExpiresAt;
  if (obtained === undefined || notAfter === undefined) {
    return check(
      "renewal",
      title,
      "warning",
      `${s.name} exports no renewal heartbeat (mesh_identity_cert_last_renewal_timestamp_seconds and _expiration_timestamp_seconds): it runs an older build, so its renewal cannot be judged`,
      "npm run mesh:up",
    );
  }
  const period = Math.max(0, notAfter - obtained);
  const due = obtained + period * RENEWAL_FRACTION;
  const late = due + Math.max(period * RENEWAL_SLACK, RENEWAL_SLACK_MIN_MS);
  const dns = `${s.name}.internal`;
  const fix = ca.online ? logs(s.name, "identity.renew_failed") : `npm run ca -- renew --domain ${dns}`;
  if (now > late && now < notAfter) {
    const who = ca.online
      ? `${s.name} renews itself from the CA server, so a renewal keeps failing or never ran (its identity.renew_failed lines say why)`
      : `renew it with the CA; ${s.name} loads the new certificate within a second`;
    return check(
      "renewal",
      title,
      "error",
      `${s.name}'s certificate is overdue for renewal: obtained ${when(obtained)}, due at ${when(due)} (2/3 of its life), still in force, and it expires ${untilShort(notAfter, now)}; once it does, every peer refuses ${s.name} ("Ready, then expired"): ${who}`,
      fix,
    );
  }
  if (now >= notAfter)
    return check(
      "renewal",
      title,
      "error",
      `${s.name}'s certificate expired on ${when(notAfter)} without being renewed (obtained ${when(obtained)}, due ${when(due)})`,
      fix,
    );
  return check(
    "renewal",
    title,
    "ok",
    `obtained ${when(obtained)}; next renewal due ${when(due)} (${period > 2 * DAY_MS ? until(due, now) : untilShort(due, now)})`,
  );
}

export function checkPolicy(s: ServiceFacts, ca: CaFacts): Check {
  const title = "policy is the file on disk";
  const why = adminUnusable(s);
  if (why) return check("policy", title, "error", why, checkAdmin(s).fix);
  const held = s.admin.policySha256;
  if (!held)
    return check(
      "policy",
      title,
      "error",
      `${s.name}'s /metrics has no mesh_policy_info (a build older than mesh:check?)`,
      "npm run mesh:up",
    );
  if (held === ca.policySha256)
    return check("policy", title, "ok", `sha256 ${short(held)}, the same as ${ca.policyFile}`);
  if (ca.policyError) {
    return check(
      "policy",
      title,
      "error",
      `${ca.policyFile} on disk does not load (${ca.policyError}), so ${s.name} keeps its previous policy (sha256 ${short(held)}); correct the file and it reloads within a second`,
      logs(s.name, "policy.reload_failed"),
    );
  }
  return check(
    "policy",
    title,
    "error",
    `${s.name} holds a policy (sha256 ${short(held)}) other than ${ca.policyFile} (${short(ca.policySha256)}): it did not reload the file, or was started with another --policy`,
    logs(s.name, "policy.reload_failed"),
  );
}

/**
 * The service's clock from its Date header, against ours (the CA's state is on this host).
 * The header has whole seconds, so the service's time at the answer lies in [date, date+1s)
 * and ours in [sentAt, receivedAt]: the skew shown is the smallest one those allow.
 */
export function clockSkew(date: string, sentAt: number, receivedAt: number): number | null {
  const d = Date.parse(date);
  if (Number.isNaN(d)) return null;
  const lo = d - receivedAt;
  const hi = d + 1_000 - sentAt;
  return lo > 0 ? lo : Math.min(hi, 0);
}

export function checkClock(s: ServiceFacts): Check {
  const title = "clock agrees with the CA host's";
  const why = adminUnusable(s);
  if (why) return check("clock", title, "error", why, checkAdmin(s).fix);
  const a = s.admin;
  const skew =
    a.date && a.sentAt !== undefined && a.receivedAt !== undefined ? clockSkew(a.date, a.sentAt, a.receivedAt) : null;
  if (skew === null)
    return check(
      "clock",
      title,
      "error",
      `${s.name}'s admin answer has no readable Date header (${JSON.stringify(a.date ?? null)}), so its clock cannot be compared`,
      "npm run mesh:up",
    );
  const secs = `${(Math.abs(skew) / 1000).toFixed(1)} s ${skew > 0 ? "ahead of" : "behind"} this host`;
  if (Math.abs(skew) > CLOCK_ERROR_MS)
    return check(
      "clock",
      title,
      "error",
      `${s.name}'s clock is ${secs}, more than the 5 minutes certificates are backdated: fresh certificates look not yet valid, or expired ones valid`,
      "timedatectl set-ntp true",
    );
  if (Math.abs(skew) > CLOCK_WARN_MS)
    return check("clock", title, "warning", `${s.name}'s clock is ${secs}`, "timedatectl set-ntp true");
  return check(
    "clock",
    title,
    "ok",
    `${skew === 0 ? "in step with this host, to the Date header's second" : secs} (Date: ${a.date})`,
  );
}

/** Only when one is on: a toggle explains every certificate finding, and its fix is the restore. */
export function checkToggle(s: ServiceFacts): Check | null {
  if (!s.toggle) return null;
  return check(
    "toggle",
    "presents its own identity",
    "error",
    `${s.name} presents a teaching toggle (${s.toggle.kind}, serial ${s.toggle.serial}, since ${s.toggle.since}) instead of its own identity, on purpose: what the checks below say of its certificate is the toggle's`,
    `npm run mesh:toggle -- ${s.name} --restore`,
  );
}

export function checkService(s: ServiceFacts, ca: CaFacts, now: number): Check[] {
  const toggle = checkToggle(s);
  return [
    ...(toggle ? [toggle] : []),
    checkMtls(s, ca),
    checkAdmin(s),
    checkCertificate(s, ca, now),
    checkRenewal(s, ca, now),
    checkTrustBundle(s, ca, now),
    checkCrls(s, ca, now),
    checkPolicy(s, ca),
    checkClock(s),
  ];
}

/** A root or intermediate: valid now, and for at least CA_WARN_DAYS more. */
export function checkIssuer(i: IssuerFacts, now: number): Check {
  const what = `${i.kind} "${i.name}" (generation ${i.generation})`;
  const title = `${what} is valid for at least ${CA_WARN_DAYS} days`;
  const fix = i.kind === "root" ? "npm run ca -- generation add" : `npm run ca -- intermediate --name "${i.name} 2"`;
  const then =
    i.kind === "root"
      ? ', then publish it, re-issue every service from it and retire this one (the README\'s "Rotating the CA")'
      : ", which signs every new certificate from then on";
  const end = Date.parse(i.notAfter);
  const start = Date.parse(i.notBefore);
  const name = `issuer:${i.id}`;
  if (end <= now)
    return check(
      name,
      title,
      "error",
      `the ${what} expired on ${when(end)}: every certificate it issued is refused; add a new one${then}`,
      fix,
    );
  if (start > now)
    return check(
      name,
      title,
      "error",
      `the ${what} is not valid before ${when(start)}: is this host's clock behind?`,
      "timedatectl set-ntp true",
    );
  if (end - now < CA_WARN_DAYS * DAY_MS)
    return check(
      name,
      title,
      "warning",
      `the ${what} expires ${until(end, now)}, on ${when(end)}; add a new one${then}`,
      fix,
    );
  return check(
    name,
    title,
    "ok",
    `until ${when(end)} (${until(end, now)})${i.state === "pending" ? ", not yet in the trust bundle" : ""}`,
  );
}

/** The CRLs the CA last signed, which crls.pem holds. */
export function checkPublishedCrls(ca: CaFacts, now: number): Check {
  const title = "the CA's published CRLs are current";
  const live = ca.issuers
    .filter((i) => i.state !== "retired" && i.crlNextUpdate)
    .map((i) => ({ name: i.name, at: Date.parse(i.crlNextUpdate!) }))
    .sort((a, b) => a.at - b.at);
  const first = live[0];
  if (!first)
    return check(
      "crls-published",
      title,
      "error",
      `the CA in ${ca.dir} has signed no CRL: services cannot start without crls.pem`,
      caFix(ca, "crl"),
    );
  if (first.at <= now)
    return check(
      "crls-published",
      title,
      "error",
      `the CRL of ${first.name} lapsed on ${when(first.at)}: every peer that CA issued is refused (crl_expired)`,
      caFix(ca, "crl"),
    );
  if (first.at - now < CRL_WARN_DAYS * DAY_MS)
    return check(
      "crls-published",
      title,
      "warning",
      `the CRL of ${first.name} lapses ${until(first.at, now)}, on ${when(first.at)}`,
      caFix(ca, "crl"),
    );
  return check(
    "crls-published",
    title,
    "ok",
    `${live.length} CRL${live.length === 1 ? "" : "s"}, next update ${when(first.at)} (${until(first.at, now)})`,
  );
}

/** Online: the CA server the services enrol, renew and fetch their bundle and CRLs from. */
export function checkCaServer(ca: CaFacts): Check | null {
  const srv = ca.online?.server;
  if (!srv) return null;
  const title = "the CA server answers";
  if (srv.error !== undefined || srv.status !== 200) {
    return check(
      "ca-server",
      title,
      "error",
      `GET ${srv.url}/.well-known/est/cacerts: ${srv.error ?? `answered ${srv.status}`}; services keep serving on what they hold, but cannot renew (each certificate lives ${Math.round((ca.online?.lifetimeMs ?? 0) / 60_000)} minutes) or learn of revocations`,
      "npm run mesh:up",
    );
  }
  return check(
    "ca-server",
    title,
    "ok",
    `${srv.url}: cacerts 200, its certificate trusted through ${ca.dir}/bundle.pem`,
  );
}

/**
 * Online with replicas (mesh:up --ca-replicas): each further one answers too. One down is a
 * warning while another answers (the services fail over to it), an error when none does.
 */
export function checkCaReplicas(ca: CaFacts): Check[] {
  const all = [ca.online?.server, ...(ca.online?.replicas ?? [])].filter((s) => s !== undefined);
  const up = (s: { status?: number; error?: string }) => s.error === undefined && s.status === 200;
  const anyUp = all.some(up);
  return (ca.online?.replicas ?? []).map((srv, i) => {
    const title = `CA replica ${i + 2} answers`;
    if (up(srv))
      return check(`ca-replica-${i + 2}`, title, "ok", `${srv.url}: cacerts 200, on the same store as the first`);
    const why = `GET ${srv.url}/.well-known/est/cacerts: ${srv.error ?? `answered ${srv.status}`}`;
    return anyUp
      ? check(
          `ca-replica-${i + 2}`,
          title,
          "warning",
          `${why}; the services renew through the replicas that answer (mesh:up restarts it)`,
          "npm run mesh:up",
        )
      : check(
          `ca-replica-${i + 2}`,
          title,
          "error",
          `${why}; no replica answers: services cannot renew`,
          "npm run mesh:up",
        );
  });
}

export function checkCa(ca: CaFacts, now: number): Check[] {
  const server = checkCaServer(ca);
  return [
    ...(server ? [server] : []),
    ...checkCaReplicas(ca),
    ...ca.issuers.filter((i) => i.state !== "retired").map((i) => checkIssuer(i, now)),
    checkPublishedCrls(ca, now),
  ];
}

export function checkMesh(f: MeshFacts, now: number): Report {
  const ca = checkCa(f.ca, now);
  const services = f.services.map((s) => ({
    name: s.name,
    port: s.port,
    adminPort: s.admin.port,
    checks: checkService(s, f.ca, now),
  }));
  const all = [...ca, ...services.flatMap((s) => s.checks)];
  return {
    ok: all.every((c) => c.ok),
    checkedAt: new Date(now).toISOString(),
    ca: { dir: f.ca.dir, checks: ca },
    services,
  };
}

/** A CA command to paste: with --dir when the mesh's CA is not in the default ./pki. */
function caFix(ca: CaFacts, command: string): string {
  return `npm run ca -- ${command}${ca.dir === "pki" ? "" : ` --dir ${ca.dir}`}`;
}
