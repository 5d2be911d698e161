// One long poll kept open on the CA's CRLs (GET /.well-known/est/crls?wait=…, If-None-Match):
// the CA answers as soon as its CRLs or its bundle change, so a revocation is in force at every
// service within a second of the CA noticing it, not at each one's next poll. The periodic poll
// stays, for a CA without this endpoint and as the fallback while the watch cannot connect.
import { setTimeout as sleep } from "node:timers/promises";
import type { MeshLogger } from "../log.ts";
import { IdentityError } from "./errors.ts";
import { CRLS_WATCH_PATH, watchCrls, type CaTls } from "./est-client.ts";

/** How long the CA may hold one call: below the CA's cap (55 s) and common proxy idle timeouts. */
export const WATCH_WAIT_S = 25;

export interface TrustWatchOptions {
  /** The TLS of the next call: the agent's identity in force (it renews). */
  tls(): CaTls;
  /** New CRLs and the bundle's ETag; resolves once they are applied (or refused, logged there). */
  changed(crls: string, bundleEtag: string | null): Promise<void> | void;
  log: MeshLogger;
  caUrl: string;
  /** The pace after a failure or an answer the CA did not hold (its own poll interval, at most). */
  retryMs: number;
  waitS?: number;
  random?: () => number;
}

export class TrustWatch {
  private readonly abort = new AbortController();
  private etag: string | null = null;
  private stopped = false;
  private running?: Promise<void>;

  constructor(private readonly o: TrustWatchOptions) {}

  start(): void {
    this.running ??= this.loop();
  }

  /** Ends the loop and the call it holds. */
  stop(): void {
    this.stopped = true;
    this.abort.abort(new IdentityError("CA_UNREACHABLE", "the identity agent stopped"));
  }

  private async loop(): Promise<void> {
    const waitS = this.o.waitS ?? WATCH_WAIT_S;
    const random = this.o.random ?? Math.random;
    let failures = 0;
    while (!this.stopped) {
      const started = Date.now();
      let pause = 0;
      try {
        const a = await watchCrls({ ...this.o.tls(), signal: this.abort.signal }, this.etag, waitS);
        if (this.stopped) return;
        failures = 0;
        // Taken even when applying fails: the same answer again at once would only fail again;
        // the next change, or the periodic poll, brings the next chance.
        this.etag = a.etag;
        if (a.changed) await this.o.changed(a.crls, a.bundleEtag);
        // A 304 long before the wait was up: the CA holds no more calls (its limits), or a proxy
        // cut it short. Come back at the poll's pace rather than spin.
        else if (Date.now() - started < (waitS * 1000) / 2) pause = this.o.retryMs;
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof IdentityError && (e.status === 404 || e.status === 405)) {
          this.o.log.info(
            { event: "trust.watch_unsupported", ca: this.o.caUrl, status: e.status },
            `the CA at ${this.o.caUrl} offers no ${CRLS_WATCH_PATH}: CRLs come with the periodic poll only`,
          );
          return;
        }
        // Not logged: the periodic poll says when the CA stops and starts answering (trust.poll_failed).
        failures += 1;
        pause = Math.min(this.o.retryMs, 250 * 2 ** Math.min(failures, 10)) * (0.8 + 0.4 * random());
      }
      if (pause > 0) await sleep(pause, undefined, { signal: this.abort.signal }).catch(() => {});
    }
  }
}
