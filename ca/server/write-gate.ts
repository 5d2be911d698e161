// Lets the server's occasional long ledger transaction (re-signing CRLs holds one across the
// asynchronous signing) run alone: requests that write wait for it, and it waits for them.
// Without it a request's write would nest inside that transaction as a savepoint and vanish
// with it if it rolled back, after the certificate had been handed out.
export class WriteGate {
  private active = 0;
  private exclusive: Promise<unknown> | null = null;
  private drained: (() => void) | null = null;

  /** Runs fn alongside other shared users, never during an exclusive section. */
  async shared<T>(fn: () => Promise<T> | T): Promise<T> {
    while (this.exclusive) await this.exclusive.catch(() => {});
    this.active++;
    try {
      return await fn();
    } finally {
      if (--this.active === 0) this.drained?.();
    }
  }

  /** Runs fn once every shared user has finished, holding new ones back until it is done. */
  async alone<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive.catch(() => {});
    const run = (async () => {
      while (this.active > 0) await new Promise<void>((r) => (this.drained = r));
      this.drained = null;
      return fn();
    })();
    this.exclusive = run;
    try {
      return await run;
    } finally {
      if (this.exclusive === run) this.exclusive = null;
    }
  }
}
