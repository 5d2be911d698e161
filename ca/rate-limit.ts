// Token buckets in memory, one per key (a name, a remote address): a burst of
// `capacity`, refilled at `perMinute`. Bounded, so a flood of keys cannot grow it.

export interface BucketSpec {
  capacity: number;
  perMinute: number;
}

export type Take = { ok: true } | { ok: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly spec: BucketSpec,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 10_000,
  ) {
    if (!(spec.capacity >= 1) || !(spec.perMinute > 0))
      throw new Error(`a rate limit needs capacity >= 1 and perMinute > 0 (got ${spec.capacity}, ${spec.perMinute})`);
  }

  /** Whether key has a token now, without taking it (a key never seen has a full bucket). */
  peek(key: string): Take {
    const b = this.buckets.get(key);
    if (!b) return { ok: true };
    return this.verdict(Math.min(this.spec.capacity, b.tokens + (this.now() - b.at) * this.perMs));
  }

  /** Takes one token for key, or says how many seconds until one is back. */
  take(key: string): Take {
    const now = this.now();
    const perMs = this.perMs;
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.spec.capacity, b.tokens + (now - b.at) * perMs);
      b.at = now;
      // Re-inserting keeps the Map in least-recently-used order for eviction.
      this.buckets.delete(key);
    } else {
      b = { tokens: this.spec.capacity, at: now };
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    return this.verdict(b.tokens);
  }

  /** Keys held now (at most maxKeys). */
  get size(): number {
    return this.buckets.size;
  }

  private get perMs(): number {
    return this.spec.perMinute / 60_000;
  }

  private verdict(tokens: number): Take {
    if (tokens >= 1) return { ok: true };
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - tokens) / this.perMs / 1000)) };
  }
}
