// The identity agent of a running service: renews its certificate over mTLS with a new key at
// a set fraction of its life, polls the bundle and CRLs, holds a long poll on the CRLs (so a
// revocation is in force within a second), and applies every change through the runtime's TLS
// reload. Each outcome is a log event; a failure is retried, never silent, and a renewal that is
// late or a certificate near its end without a renewal is said before it expires.
import type { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { countPem, pemBlocks } from "../../../lib/pem.ts";
import {
  formatGenerationsFile,
  generationsPath,
  parseRootGenerations,
  readGenerations,
  rootGenerations,
} from "../../../lib/generations.ts";
import type { MeshLogger } from "../log.ts";
import { messageOf } from "../errors.ts";
import { IdentityError } from "./errors.ts";
import { enrolCsr, getCacerts, getCrls, type CaObserver, type CaTls } from "./est-client.ts";
import { olderCrls } from "../crl-dates.ts";
import { TrustWatch } from "./trust-watch.ts";
import { newKeyAndCsr } from "./csr.ts";
import { checkChain, pemOf, splitPem, type IdentityFacts } from "./chain.ts";
import { commitIdentity, readText, receivedAt, writeAtomic, type StatePaths } from "./state-folder.ts";
import {
  every,
  processClock,
  processClockNote,
  processClockOffsetMs,
  type Clock,
  type ClockTimer,
} from "../../../lib/clock.ts";
import {
  DEFAULT_CALL_DEADLINE,
  DEFAULT_SCHEDULE,
  checkCallDeadline,
  renewAt,
  renewalCallMs,
  retryDelay,
  timerDelay,
  type CallDeadline,
  type Schedule,
} from "./timing.ts";

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
  /** Hold a long poll on the CA's CRLs (trust-watch.ts); default true. */
  watch?: boolean;
  /**
   * Now and the timers of renewal, expiry and polling: default this process's clock (the
   * machine's moved by MESH_CLOCK_OFFSET_MS, as every date the service judges); tests advance a
   * TestClock.
   */
  clock?: Clock;
  /**
   * How far `clock` is from the machine's, which dates the state folder's files: default this
   * process's offset with the default clock, else 0.
   */
  clockOffsetMs?: number;
  /**
   * Bounds of one renewal call's deadline (a third of the time left): default 2 s to 15 s. A
   * test of a CA that never answers gives shorter ones, so that it waits for seconds less.
   */
  callDeadline?: CallDeadline;
}

/** A scheduled renewal whose timer fires later than this (or 1/20 of the life) is logged as late. */
export const LATE_MS = 1_000;

/** What the log events carry about the certificate in force. */
export function factsFields(f: IdentityFacts) {
  return { serial: f.serial, issuer: f.issuer, root: f.root, generation: f.generation, notAfter: f.notAfter };
}

export class IdentityAgent {
  private facts: IdentityFacts;
  private renewTimer?: ClockTimer;
  private stopPolling?: () => void;
  private expiryTimer?: ClockTimer;
  private expiringTimer?: ClockTimer;
  private watch?: TrustWatch;
  private lastError?: string;
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
  private readonly clockOffsetMs: number;
  private readonly callDeadline: CallDeadline;
  /** How many polls have completed (answered or failed): a test waits for it to grow, not for time. */
  polls = 0;
  /** When the next renewal is due (ms since the epoch), for tests and the log. */
  nextRenewal = 0;

  constructor(
    private readonly o: AgentOptions,
    private readonly h: AgentHooks,
  ) {
    this.random = o.random ?? Math.random;
    this.clock = o.clock ?? processClock;
    this.clockOffsetMs = o.clockOffsetMs ?? (o.clock ? 0 : processClockOffsetMs());
    this.callDeadline = checkCallDeadline(o.callDeadline ?? DEFAULT_CALL_DEADLINE);
    this.facts = this.current().facts;
  }

  get identity(): IdentityFacts {
    return this.facts;
  }

  start(): void {
    this.scheduleRenewal();
    this.stopPolling = every(this.clock, this.o.pollMs ?? DEFAULT_POLL_MS, () => void this.poll());
    void this.poll(); // started from the cache: learn at once what changed while it was down
    if (this.o.watch !== false) {
      this.watch = new TrustWatch({
        tls: () => this.tls(this.current()),
        changed: (crls, bundleEtag) => this.watched(crls, bundleEtag),
        log: this.h.log,
        caUrl: this.o.caUrl,
        retryMs: this.o.pollMs ?? DEFAULT_POLL_MS,
        random: this.random,
      });
      this.watch.start();
    }
  }

  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.renewTimer);
    this.clock.clearTimeout(this.expiryTimer);
    this.clock.clearTimeout(this.expiringTimer);
    this.stopPolling?.();
    this.watch?.stop();
  }

  /** The material in the state folder and its facts, checked against the cached bundle. */
  private current(): {
    certPem: string;
    keyPem: string;
    bundlePem: string;
    roots: X509Certificate[];
    facts: IdentityFacts;
  } {
    const p = this.o.paths;
    const certPem = readFileSync(p.cert, "utf8");
    const keyPem = readFileSync(p.key, "utf8");
    const bundlePem = readFileSync(p.bundle, "utf8");
    const roots = splitPem(bundlePem);
    // A state folder from before the CA sent generations has none: unknown until the next poll.
    const generations = readGenerations(p.bundle);
    // Expiry is the agent's to judge (identity.expired), and a new bundle may have dropped our root.
    const facts = checkChain(splitPem(certPem), roots, this.o.dns, keyPem, 0, { anyRoot: true, generations });
    return { certPem, keyPem, bundlePem, roots, facts };
  }

  private tls(cur: { certPem: string; keyPem: string; bundlePem: string }): CaTls {
    return {
      url: this.o.caUrl,
      ca: cur.bundlePem,
      cert: cur.certPem,
      key: cur.keyPem,
      observe: this.h.metrics.caRequest?.bind(this.h.metrics),
    };
  }

  private scheduleRenewal(delay?: number): void {
    if (this.stopped) return;
    this.clock.clearTimeout(this.renewTimer);
    this.clock.clearTimeout(this.expiryTimer);
    this.clock.clearTimeout(this.expiringTimer);
    const now = this.clock.now();
    const notAfter = Date.parse(this.facts.notAfter);
    this.nextRenewal =
      delay !== undefined
        ? now + delay
        : renewAt(
            { notBefore: Date.parse(this.facts.notBefore), notAfter, receivedAt: this.receivedAt() },
            this.o.schedule ?? DEFAULT_SCHEDULE,
            this.random,
            now,
          );
    if (now >= notAfter) {
      this.expired();
      return;
    }
    const due = this.nextRenewal;
    this.renewTimer = this.clock.setTimeout(
      () => {
        this.noteLate(due);
        void this.renew("scheduled");
      },
      timerDelay(due - now),
    );
    this.expiryTimer = this.clock.setTimeout(() => this.expired(), timerDelay(notAfter - now + 10));
    // Said before it expires, whatever holds the renewal up (the CA, this process, the clock).
    this.expiringTimer = this.clock.setTimeout(
      () => this.warnExpiring(),
      timerDelay(notAfter - this.expiringLead() - now),
    );
  }

  /** The life of the certificate in force, counted as the schedule counts it (timing.ts). */
  private period(now = this.clock.now()): number {
    const notAfter = Date.parse(this.facts.notAfter);
    return notAfter - Math.max(Date.parse(this.facts.notBefore), Math.min(this.receivedAt(), now));
  }

  /** When this certificate was received, by this agent's clock (the file's time is the machine's). */
  private receivedAt(): number {
    return receivedAt(this.o.paths) + this.clockOffsetMs;
  }

  /** identity.expiring comes this long before the end: 1/6 of the life (10 minutes of an hour), at least a second. */
  private expiringLead(): number {
    return Math.max(1_000, this.period() / 6);
  }

  /** A renewal timer that fired late: the event loop was blocked, the machine overloaded or asleep. */
  private noteLate(due: number): void {
    const now = this.clock.now();
    const late = now - due;
    if (late <= Math.max(LATE_MS, this.period(now) / 20)) return;
    const left = Date.parse(this.facts.notAfter) - now;
    this.h.log.warn(
      {
        event: "identity.renewal_late",
        ...factsFields(this.facts),
        due: new Date(due).toISOString(),
        lateMs: late,
        expiresInMs: left,
      },
      `the renewal of ${this.o.dns} due at ${new Date(due).toISOString()} starts ${(late / 1000).toFixed(1)} s late (this process was held up: an overloaded machine, a blocked event loop, a suspend); the certificate in force expires in ${Math.max(0, Math.round(left / 1000))} s`,
    );
  }

  /** identity.expiring, once per certificate: it is near its end and no renewal has replaced it. */
  private warnExpiring(): void {
    if (this.stopped || this.warnedExpiring) return;
    const left = Date.parse(this.facts.notAfter) - this.clock.now();
    if (left <= 0) return; // identity.expired says the rest
    // A schedule that renews this late on purpose (fraction > 5/6) is not a stall yet.
    if (this.clock.now() < this.nextRenewal && this.failures === 0) return;
    this.warnedExpiring = true;
    const why = this.lastError
      ? `could not be renewed (${this.lastError})`
      : `has not been renewed (due at ${new Date(this.nextRenewal).toISOString()}${this.renewing ? ", still in progress" : ""})`;
    this.h.log.warn(
      {
        event: "identity.expiring",
        ...factsFields(this.facts),
        expiresInMs: left,
        secondsLeft: Math.round(left / 1000),
        failures: this.failures,
        lastError: this.lastError ?? null,
      },
      `${this.o.dns}'s certificate expires in ${Math.max(0, Math.round(left / 1000))} s and ${why}: once it expires, every peer refuses this service; check the CA at ${this.o.caUrl}`,
    );
  }

  /** Time for one EST call of a renewal (timing.ts's renewalCallMs); the handshake's part at most 5 s. */
  private callTimeouts(): { timeoutMs: number; connectTimeoutMs: number } {
    const timeoutMs = renewalCallMs(Date.parse(this.facts.notAfter) - this.clock.now(), this.callDeadline);
    return { timeoutMs, connectTimeoutMs: Math.min(5_000, timeoutMs) };
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
      `the identity ${this.o.dns} (serial ${this.facts.serial}) expired at ${this.facts.notAfter}${processClockNote()}: every peer now refuses this service and the CA will not renew it; enrol again: make a token (npm run -s ca -- token --domain ${this.o.dns} > token) and restart this service with --token-file token or MESH_ENROL_TOKEN`,
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
      const chain = await enrolCsr({ ...this.tls(cur), ...this.callTimeouts() }, "simplereenroll", csr, {
        lifetime: this.o.lifetime,
      });
      // Judged against the bundle in force now, not the one read before the call: a poll may have
      // brought the new generation meanwhile, and the CA, which saw that poll, may sign with it
      // (a rotation's gate passes on the fetch). The old certificate is superseded by now: a
      // refusal here could never be retried. Its dates are the machine's to judge here, not this
      // process's moved clock: a certificate the CA just signed, refused for a clock behind,
      // would leave only the superseded one (the schedule and identity.expired use the clock).
      const facts = checkChain(
        chain,
        splitPem(readFileSync(this.o.paths.bundle, "utf8")),
        this.o.dns,
        keyPem,
        Date.now(),
        { generations: readGenerations(this.o.paths.bundle) },
      );
      if (this.stopped) return false;
      commitIdentity(this.o.paths, keyPem, pemOf(chain));
      if (!this.h.reloadTls())
        throw new IdentityError("STATE_INVALID", "the runtime refused the renewed certificate (see tls.reload_failed)");
      this.facts = facts;
      const failedBefore = this.failures;
      this.failures = 0;
      this.failedWith = undefined;
      this.lastError = undefined;
      this.warnedExpiring = false;
      this.h.metrics.renewed();
      this.h.log.info(
        {
          event: "identity.renewed",
          ...factsFields(facts),
          previous: before.serial,
          reason,
          ...(failedBefore > 0 ? { failuresBefore: failedBefore } : {}),
        },
        `renewed ${this.o.dns}: serial ${facts.serial} from ${facts.root} (generation ${facts.generation ?? "unknown"}), valid until ${facts.notAfter}`,
      );
      this.scheduleRenewal();
      return true;
    } catch (e) {
      if (this.stopped) return false;
      this.failures += 1;
      this.lastError = messageOf(e);
      this.h.metrics.renewalFailed();
      const now = this.clock.now();
      const notAfter = Date.parse(before.notAfter);
      const period = notAfter - Math.max(Date.parse(before.notBefore), Math.min(this.receivedAt(), now));
      const status = e instanceof IdentityError ? e.status : undefined;
      // A rate-limited renewal waits as long as the CA asks, but not past expiry.
      const asked =
        e instanceof IdentityError && e.retryAfterMs !== undefined ? Math.min(e.retryAfterMs, notAfter - now - 250) : 0;
      const delay = Math.max(retryDelay(this.failures, period, notAfter - now, this.random), asked);
      const code = (e as { code?: string }).code;
      // The CA down is said once (and again should the reason change), not at every retry: the
      // poll's trust.poll_restored says when it is back, and the renewal then runs at once.
      // A CA_TIMEOUT is warned at every attempt (docs/identity.md): a CA that takes the
      // connection and never answers is up but stuck, and each attempt costs its whole deadline.
      const repeated = code === "CA_UNREACHABLE" && this.failedWith === code;
      this.failedWith = code;
      this.h.log[repeated ? "debug" : "warn"](
        {
          event: "identity.renew_failed",
          ...factsFields(before),
          reason: messageOf(e),
          code: (e as { code?: string }).code,
          status,
          failures: this.failures,
          nextRetry: new Date(now + delay).toISOString(),
          expiresInMs: notAfter - now,
          trigger: reason,
        },
        `could not renew ${this.o.dns}: ${messageOf(e)}; retrying in ${(delay / 1000).toFixed(1)} s${code === "CA_UNREACHABLE" ? " and as soon as the CA answers a poll again (further failures while it is unreachable are not logged)" : ""}; the certificate in force (still served) expires at ${before.notAfter}`,
      );
      if (notAfter - now < this.expiringLead()) this.warnExpiring();
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
      const fetched = await getCrls(tls);
      if (this.stopped) return;
      const crls = this.notOlder(fetched);
      // What the CA sent must make a TLS context before it replaces the cache: a broken cache
      // would stop the next start, when the CA may be down.
      try {
        createSecureContext({
          ca: bundle.changed ? pemOf(bundle.roots) : cur.bundlePem,
          crl: pemBlocks(crls, "X509 CRL"),
        });
      } catch (e) {
        throw new IdentityError(
          "CA_ANSWER_INVALID",
          `the bundle or CRLs from the CA are unusable, the cached ones stay: ${messageOf(e)}`,
        );
      }
      const changed: string[] = [];
      let roots = cur.roots;
      // The roots' generations first (also from a 304: how a state folder from before learns them),
      // so a reload on the new bundle finds its facts.
      const gens = parseRootGenerations(bundle.rootGenerations, (bundle.changed ? bundle.roots : cur.roots).length);
      if (gens) {
        const text = formatGenerationsFile(rootGenerations(bundle.changed ? bundle.roots : cur.roots, gens));
        if (text !== readText(generationsPath(p.bundle))) writeAtomic(generationsPath(p.bundle), text);
      }
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
      const resume = this.failures > 0 && (this.failedWith === "CA_UNREACHABLE" || this.failedWith === "CA_TIMEOUT");
      if (changed.length > 0) this.updated(changed, bundle.changed ? bundle.etag : etag, roots, crls, "poll");
      if (resume) await this.renew("the CA answers again");
      else if (bundle.renewNow) {
        this.h.log.info(
          { event: "identity.renew_now", ...factsFields(this.facts) },
          "the CA asks for renewal now (Mesh-Renew-Now: its signer changed)",
        );
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

  /** Applies new trust through the runtime's reload, and says so. */
  private updated(
    changed: string[],
    etag: string | null,
    roots: readonly X509Certificate[],
    crls: string,
    via: "poll" | "watch",
  ): void {
    const ok = this.h.reloadTls();
    this.h.log.info(
      {
        event: "trust.updated",
        changed,
        etag,
        roots: roots.map((r) => /CN=([^\n]*)/.exec(r.subject)?.[1] ?? r.subject),
        crls: countPem(crls, "X509 CRL"),
        applied: ok,
        via,
      },
      `new ${changed.join(" and ")} from the CA ${ok ? "in force" : "NOT applied (see tls.reload_failed)"}`,
    );
  }

  /**
   * `crls`, unless one of its CRLs is older than the one this service holds (a lower cRLNumber):
   * then the held set stays, so an answer that left the CA before a revocation can never undo it.
   */
  private notOlder(crls: string): string {
    const held = readText(this.o.paths.crls) ?? "";
    const older = olderCrls(pemBlocks(crls, "X509 CRL"), pemBlocks(held, "X509 CRL"));
    if (older.length === 0) return crls;
    this.h.log.warn(
      { event: "trust.crls_stale", ca: this.o.caUrl, issuers: older },
      `the CA sent an older CRL than the one in force for ${older.join(", ")}: kept the newer one`,
    );
    return held;
  }

  /**
   * The watch's answer (trust-watch.ts): new CRLs in force at once; a new bundle is fetched by a
   * full poll (cacerts over mTLS: the CA records it, and may hint renew-now).
   */
  private async watched(crls: string, bundleEtag: string | null): Promise<void> {
    if (this.stopped) return;
    const p = this.o.paths;
    if (bundleEtag !== null && bundleEtag !== (readText(p.etag)?.trim() || null)) {
      // A poll under way may have read the bundle before it changed: one more after it.
      await this.polling;
      await this.poll();
      return;
    }
    try {
      const cur = this.current();
      const fresh = this.notOlder(crls);
      if (fresh === readText(p.crls)) return;
      createSecureContext({ ca: cur.bundlePem, crl: pemBlocks(fresh, "X509 CRL") });
      writeAtomic(p.crls, fresh);
      this.updated(["crls"], readText(p.etag)?.trim() || null, cur.roots, fresh, "watch");
    } catch (e) {
      this.h.log.warn(
        { event: "trust.update_failed", ca: this.o.caUrl, reason: messageOf(e) },
        `the CRLs the CA announced are unusable, the cached ones stay: ${messageOf(e)}`,
      );
    }
  }
}
