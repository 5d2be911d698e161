// The policy in force for one service, read from its file, and its reload: a new file is
// applied whole or not at all, and a broken one keeps the old policy (logged once per change).
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { parsePolicy, type Policy } from "./policy.ts";
import type { MeshLogger } from "./log.ts";
import { MeshError, messageOf } from "./errors.ts";
import type { MeshMetrics } from "./metrics.ts";

export class PolicyFile {
  #policy: Policy;
  #digest: string;
  // The content whose outcome was logged last: one line per change of the file, whichever
  // watcher (fs.watch or the stat poll) noticed it, and however often.
  #seen: string;
  #metrics: MeshMetrics | undefined;

  /** Throws MeshError (unreadable or invalid policy). */
  constructor(
    readonly file: string,
    private readonly service: string,
    private readonly log: MeshLogger,
  ) {
    // One read for the policy and its digest: a file changing in between would pair the old
    // policy with the new content's digest, and the change would never be applied.
    const bytes = readPolicy(file);
    this.#policy = parsePolicy(bytes.toString("utf8"), file);
    this.#digest = sha256(bytes);
    this.#seen = this.#digest;
  }

  get policy(): Policy {
    return this.#policy;
  }

  /** Reports the digest in force now and every reload's outcome from now on. */
  report(metrics: MeshMetrics): void {
    this.#metrics = metrics;
    metrics.setPolicy(this.#digest);
  }

  /** Re-reads the file; false when the previous policy stays in force (broken, or still being written). */
  reload(noticedAt = performance.now()): boolean {
    const file = this.file;
    let bytes: Buffer | null;
    try {
      bytes = readSettled(file);
    } catch (e) {
      return this.#failed(`unreadable:${(e as { code?: string }).code}`, unreadable(file, e));
    }
    // Changed while being read: the watcher sees the change too and comes back when it settles.
    if (bytes === null) return false;
    const d = sha256(bytes);
    if (d === this.#seen) return d === this.#digest;
    this.#seen = d;
    if (d === this.#digest) {
      this.log.info(
        { event: "policy.reloaded", file, accepts: summary(this.#policy), restored: true },
        `policy file ${file} again holds the policy in force`,
      );
      return true;
    }
    try {
      const next = parsePolicy(bytes.toString("utf8"), file);
      if (next.services.size === 0) {
        throw new MeshError(
          "POLICY_INVALID",
          `${file}: the policy file is empty (no [service] table): a file being rewritten in place is empty for a while, and applying it would refuse every call; to accept nobody on purpose, give each service a table with accepts = []`,
        );
      }
      this.#policy = next; // one assignment: a request sees the old policy or the new one, never a mix
      this.#digest = d;
      this.#metrics?.setPolicy(d);
      this.#metrics?.reloaded("policy", true, noticedAt);
      this.log.info({ event: "policy.reloaded", file, accepts: summary(next) }, `policy reloaded from ${file}`);
      this.warnIfNoTable("warn");
      return true;
    } catch (e) {
      this.#metrics?.reloaded("policy", false, noticedAt);
      return this.#failed(d, e);
    }
  }

  /** A service with no table is refused to everybody (default-deny): say so, it is rarely meant. */
  warnIfNoTable(level: "warn" | "error"): void {
    const { service, file } = this;
    if (this.#policy.services.has(service)) return;
    this.log[level](
      { event: "policy.table_missing", file },
      `${file} has no [${service}] table, so ${service} accepts nobody: every call to it is refused (403, rule default-deny); to let callers in, add [${service}] with accepts = ["…"]`,
    );
  }

  #failed(seen: string, e: unknown): false {
    this.#seen = seen;
    this.log.error(
      { event: "policy.reload_failed", file: this.file, code: (e as { code?: string }).code, error: messageOf(e) },
      `kept the previous policy: ${messageOf(e)}`,
    );
    return false;
  }
}

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function readPolicy(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw unreadable(file, e);
  }
}

function unreadable(file: string, e: unknown): MeshError {
  return new MeshError("POLICY_UNREADABLE", `${file}: cannot read the policy file: ${messageOf(e)}`);
}

/**
 * The file's bytes, or null when it changed while being read (inode, size or mtime moved, or
 * fewer bytes than its size): never a mix of two versions.
 */
function readSettled(file: string): Buffer | null {
  const sig = () => {
    const s = statSync(file);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  };
  const before = sig();
  const bytes = readFileSync(file);
  const after = sig();
  if (before !== after || Number(after.split(":")[1]) !== bytes.length) return null;
  return bytes;
}

function summary(p: Policy): Record<string, string[] | null> {
  const out: Record<string, string[] | null> = {};
  for (const [name, sp] of p.services) out[name] = sp.accepts ? [...sp.accepts] : null;
  return out;
}
