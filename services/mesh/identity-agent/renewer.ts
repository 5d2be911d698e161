// The identity agent of a running service: renews its certificate over mTLS with a new key at
// a set fraction of its life, polls the bundle and CRLs, and applies every change through the
// runtime's TLS reload. Each outcome is a log event; a failure is retried, never silent.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { pemBlocks } from "../material.ts";
import type { MeshLogger } from "../log.ts";
import { messageOf } from "../errors.ts";
import { IdentityError } from "./errors.ts";
import { enrolCsr, getCacerts, getCrls, type CaObserver, type CaTls } from "./est-client.ts";
import { newKeyAndCsr } from "./csr.ts";
import { checkChain, pemOf, splitPem, type IdentityFacts } from "./chain.ts";
import { commitIdentity, readText, receivedAt, writeAtomic, type StatePaths } from "./state-folder.ts";
import { every, systemClock, type Clock, type ClockTimer } from "../../../lib/clock.ts";
import { DEFAULT_SCHEDULE, renewAt, retryDelay, timerDelay, type Schedule } from "./timing.ts";

export const DEFAULT_POLL_MS = 30_000;

export interface AgentHooks {
  /** The runtime's hot reload of the TLS files: true when the new material is in force. */
  reloadTls(): boolean;
  log: MeshLogger;
  metrics: { renewed(): void; renewalFailed(): void; caRequest?: CaObserver };
}

export interface AgentOptions {
  caUrl: string;
  dns: string;
  paths: StatePaths;
  /** Asked of the CA as ?lifetime= (e.g. "1h"); absent: the CA's default. */
  lifetime?: string;
  schedule?: Schedule;
  pollMs?: number;
  random?: () => number;
  /** Now and the timers of renewal, expiry and polling (default the system's; tests advance a TestClock). */
  clock?: Clock;
}

/** What the log events carry about the certificate in force. */
export function factsFields(f: IdentityFacts) {
  return { serial: f.serial, issuer: f.issuer, root: f.root, generation: f.generation, notAfter: f.notAfter };
}

export class IdentityAgent {
  private facts: IdentityFacts;
  private renewTimer?: ClockTimer;
  private stopPolling?: () => void;
  private expiryTimer?: ClockTimer;
  private renewing?: Promise<boolean>;
  private polling?: Promise<void>;
  private failures = 0;
  /** The code of the last renewal failure: CA_UNREACHABLE is resumed as soon as a poll gets through. */
  private failedWith: string | undefined;
  private pollFailing = false;
  private warnedExpiring = false;
  private stopped = false;
  private readonly random: () => number;
  private readonly clock: Clock;
  /** How many polls have completed (answered or failed): a test waits for it to grow, not for time. */
  polls = 0;
  /** When the next renewal is due (ms since the epoch), for tests and the log. */
  nextRenewal = 0;

  constructor(private readonly o: AgentOptions, private readonly h: AgentHooks) {
    this.random = o.random ?? Math.random;
    this.clock = o.clock ?? systemClock;
    this.facts = this.current().facts;
  }

  get identity(): IdentityFacts {
    return this.facts;
  }

  start(): void {
    this.scheduleRenewal();
    this.stopPolling = every(this.clock, this.o.pollMs ?? DEFAULT_POLL_MS, () => void this.poll());
    void this.poll(); // started from the cache: learn at once what changed while it was down
  }

  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.renewTimer);
    this.clock.clearTimeout(this.expiryTimer);
    this.stopPolling?.();
  }

  /** The material in the state folder and its facts, checked against the cached bundle. */
  private current(): { certPem: string; keyPem: string; bundlePem: string; roots: X509Certificate[]; facts: IdentityFacts } {
    const p = this.o.paths;
    const certPem = readFileSync(p.cert, "utf8");
    const keyPem = readFileSync(p.key, "utf8");
    const bundlePem = readFileSync(p.bundle, "utf8");
    const roots = splitPem(bundlePem);
    // Expiry is the agent's to judge (identity.expired), and a new bundle may have dropped our root.
    const facts = checkChain(splitPem(certPem), roots, this.o.dns, keyPem, 0, { anyRoot: true });
    return { certPem, keyPem, bundlePem, roots, facts };
  }

  private tls(cur: { certPem: string; keyPem: string; bundlePem: string }): CaTls {
    return { url: this.o.caUrl, ca: cur.bundlePem, cert: cur.certPem, key: cur.keyPem, observe: this.h.metrics.caRequest?.bind(this.h.metrics) };
  }

  private scheduleRenewal(delay?: number): void {
    if (this.stopped) return;
    this.clock.clearTimeout(this.renewTimer);
    this.clock.clearTimeout(this.expiryTimer);
    const now = this.clock.now();
    const notAfter = Date.parse(this.facts.notAfter);
    this.nextRenewal = delay !== undefined ? now + delay : renewAt(
      { notBefore: Date.parse(this.facts.notBefore), notAfter, receivedAt: receivedAt(this.o.paths) },
      this.o.schedule ?? DEFAULT_SCHEDULE, this.random, now,
    );
    if (now >= notAfter) {
      this.expired();
      return;
    }
    this.renewTimer = this.clock.setTimeout(() => void this.renew("scheduled"), timerDelay(this.nextRenewal - now));
    this.expiryTimer = this.clock.setTimeout(() => this.expired(), timerDelay(notAfter - now + 10));
  }

  private expired(): void {
    if (this.stopped) return;
    const left = Date.parse(this.facts.notAfter) - this.clock.now();
    if (left >= 0) {
      // A timer may fire a little before the wall clock agrees: look again just after.
      this.expiryTimer = this.clock.setTimeout(() => this.expired(), timerDelay(left + 10));
      return;
    }
    this.clock.clearTimeout(this.renewTimer);
    this.h.log.error(
      { event: "identity.expired", ...factsFields(this.facts), stateDir: this.o.paths.dir },
      `the identity ${this.o.dns} (serial ${this.facts.serial}) expired at ${this.facts.notAfter}: every peer now refuses this service and the CA will not renew it; enrol again: make a token (npm run -s ca -- token --domain ${this.o.dns} > token) and restart this service with --token-file token or MESH_ENROL_TOKEN`,
    );
    // Said again every minute while it lasts: an outage that explains itself.
    this.expiryTimer = this.clock.setTimeout(() => this.expired(), 60_000);
  }

  /** Renews now (the schedule, the CA's renew-now hint, or a caller). Resolves true once the new certificate is in force. */
  renew(reason: string): Promise<boolean> {
    this.renewing ??= this.doRenew(reason).finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async doRenew(reason: string): Promise<boolean> {
    if (this.stopped) return false;
    const before = this.facts;
    try {
      const cur = this.current();
      if (this.clock.now() >= Date.parse(cur.facts.notAfter)) {
        this.expired();
        return false;
      }
      const { keyPem, csr } = newKeyAndCsr(this.o.dns);
      const chain = await enrolCsr(this.tls(cur), "simplereenroll", csr, { lifetime: this.o.lifetime });
      const facts = checkChain(chain, cur.roots, this.o.dns, keyPem);
      if (this.stopped) return false;
      commitIdentity(this.o.paths, keyPem, pemOf(chain));
      if (!this.h.reloadTls()) throw new IdentityError("STATE_INVALID", "the runtime refused the renewed certificate (see tls.reload_failed)");
      this.facts = facts;
      const failedBefore = this.failures;
      this.failures = 0;
      this.failedWith = undefined;
      this.warnedExpiring = false;
      this.h.metrics.renewed();
      this.h.log.info(
        { event: "identity.renewed", ...factsFields(facts), previous: before.serial, reason, ...(failedBefore > 0 ? { failuresBefore: failedBefore } : {}) },
        `renewed ${this.o.dns}: serial ${facts.serial} from ${facts.root} (generation ${facts.generation}), valid until ${facts.notAfter}`,
      );
      this.scheduleRenewal();
      return true;
    } catch (e) {
      if (this.stopped) return false;
      this.failures += 1;
      this.h.metrics.renewalFailed();
      const now = this.clock.now();
      const notAfter = Date.parse(before.notAfter);
      const period = notAfter - Math.max(Date.parse(before.notBefore), Math.min(receivedAt(this.o.paths), now));
      const status = e instanceof IdentityError ? e.status : undefined;
      // A rate-limited renewal waits as long as the CA asks, but not past expiry.
      const asked = e instanceof IdentityError && e.retryAfterMs !== undefined ? Math.min(e.retryAfterMs, notAfter - now - 250) : 0;
      const delay = Math.max(retryDelay(this.failures, period, notAfter - now, this.random), asked);
      const code = (e as { code?: string }).code;
      // The CA down is said once (and again should the reason change), not at every retry: the
      // poll's trust.poll_restored says when it is back, and the renewal then runs at once.
      const repeated = code === "CA_UNREACHABLE" && this.failedWith === code;
      this.failedWith = code;
      this.h.log[repeated ? "debug" : "warn"](
        { event: "identity.renew_failed", ...factsFields(before), reason: messageOf(e), code: (e as { code?: string }).code, status, failures: this.failures, nextRetry: new Date(now + delay).toISOString(), expiresInMs: notAfter - now, trigger: reason },
        `could not renew ${this.o.dns}: ${messageOf(e)}; retrying in ${(delay / 1000).toFixed(1)} s${code === "CA_UNREACHABLE" ? " and as soon as the CA answers a poll again (further failures while it is unreachable are not logged)" : ""}; the certificate in force (still served) expires at ${before.notAfter}`,
      );
      if (!this.warnedExpiring && notAfter - now < Math.max(period / 6, 1_000)) {
        this.warnedExpiring = true;
        this.h.log.error(
          { event: "identity.expiring", ...factsFields(before), expiresInMs: notAfter - now },
          `${this.o.dns}'s certificate expires in ${Math.max(0, Math.round((notAfter - now) / 1000))} s and could not be renewed (${messageOf(e)}): once it expires, every peer refuses this service; check the CA at ${this.o.caUrl}`,
        );
      }
      this.scheduleRenewal(delay);
      return false;
    }
  }

  /** One poll of cacerts (over mTLS, with If-None-Match) and /crls.pem; changes go through the reload. */
  poll(): Promise<void> {
    this.polling ??= this.doPoll().finally(() => {
      this.polling = undefined;
      this.polls += 1;
    });
    return this.polling;
  }

  private async doPoll(): Promise<void> {
    if (this.stopped) return;
    const p = this.o.paths;
    try {
      const cur = this.current();
      const tls = this.tls(cur);
      const etag = readText(p.etag)?.trim() || null;
      const bundle = await getCacerts(tls, etag);
      const crls = await getCrls(tls);
      if (this.stopped) return;
      // What the CA sent must make a TLS context before it replaces the cache: a broken cache
      // would stop the next start, when the CA may be down.
      try {
        createSecureContext({ ca: bundle.changed ? pemOf(bundle.roots) : cur.bundlePem, crl: pemBlocks(crls, "X509 CRL") });
      } catch (e) {
        throw new IdentityError("CA_ANSWER_INVALID", `the bundle or CRLs from the CA are unusable, the cached ones stay: ${messageOf(e)}`);
      }
      const changed: string[] = [];
      let roots = cur.roots;
      if (bundle.changed) {
        const pem = pemOf(bundle.roots);
        if (pem !== cur.bundlePem) {
          writeAtomic(p.bundle, pem);
          changed.push("bundle");
          roots = bundle.roots;
        }
        writeAtomic(p.etag, bundle.etag ?? "");
      }
      if (crls !== readText(p.crls)) {
        writeAtomic(p.crls, crls);
        changed.push("crls");
      }
      if (this.pollFailing) {
        this.pollFailing = false;
        this.h.log.info({ event: "trust.poll_restored", ca: this.o.caUrl }, `the CA at ${this.o.caUrl} answers again`);
      }
      // A renewal that failed because the CA was unreachable waits in a backoff of up to minutes;
      // the CA answers again, so renew now rather than at the end of it.
      const resume = this.failures > 0 && this.failedWith === "CA_UNREACHABLE";
      if (changed.length > 0) {
        const ok = this.h.reloadTls();
        this.h.log.info(
          { event: "trust.updated", changed, etag: bundle.changed ? bundle.etag : etag, roots: roots.map((r) => /CN=([^\n]*)/.exec(r.subject)?.[1] ?? r.subject), crls: (crls.match(/-----BEGIN X509 CRL-----/g) ?? []).length, applied: ok },
          `new ${changed.join(" and ")} from the CA ${ok ? "in force" : "NOT applied (see tls.reload_failed)"}`,
        );
      }
      if (resume) await this.renew("the CA answers again");
      else if (bundle.renewNow) {
        this.h.log.info({ event: "identity.renew_now", ...factsFields(this.facts) }, "the CA asks for renewal now (Mesh-Renew-Now: its signer changed)");
        // A renewal in backoff keeps its schedule: the hint is repeated on every poll.
        if (this.failures === 0) await this.renew("renew-now hint");
      }
    } catch (e) {
      if (this.stopped || this.pollFailing) return;
      this.pollFailing = true;
      this.h.log.warn(
        { event: "trust.poll_failed", ca: this.o.caUrl, reason: messageOf(e) },
        `cannot refresh the trust bundle and CRLs from ${this.o.caUrl}: ${messageOf(e)}; serving with the cached ones and trying again every ${Math.round((this.o.pollMs ?? DEFAULT_POLL_MS) / 1000)} s`,
      );
    }
  }
}
