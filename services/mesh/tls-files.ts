// The TLS material in force for one service, read from its files, and its reload: a new set
// is handed to the server, the outbound client and the app together, and a broken set keeps
// the old material (reported once per broken content).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { loadMaterial, type MaterialPaths, type TlsMaterial } from "./material.ts";
import type { MeshLogger } from "./log.ts";
import { messageOf } from "./errors.ts";
import type { MeshMetrics } from "./metrics.ts";
import { toggleDirOf, togglePaths, withToggle, type ToggleInForce, type TogglePaths } from "./toggle.ts";

/** Who holds the material and must hear of a new one. */
export interface TlsUsers {
  /** The server says what changed; nothing changed means nothing else needs telling. */
  server: {
    setMaterial(m: TlsMaterial): { certChanged: boolean; trustChanged: boolean };
    /** Closes idle connections made under an earlier certificate (a toggle is met at once). */
    closeIdleBefore?(why: string): number;
  };
  others: ReadonlyArray<{ setMaterial?(m: TlsMaterial): void }>;
  log: MeshLogger;
  metrics: MeshMetrics;
  /** Called once a new trust bundle or CRL set is in force. */
  onTrustChanged(): void;
}

export class TlsFiles {
  #material: TlsMaterial;
  // The files' content when the last reload failed: the same broken set is reported once.
  #failedOn: string | undefined;
  #users: TlsUsers | undefined;
  /** A teaching toggle (toggle.ts, docs/toggles.md) is served in place of the identity while installed. */
  readonly toggle: TogglePaths;
  #toggled: ToggleInForce | undefined;

  /** Throws MeshError (missing or invalid TLS files). */
  constructor(
    readonly paths: MaterialPaths,
    private readonly dns: string,
    private readonly service: string,
    private readonly log: MeshLogger,
  ) {
    this.toggle = togglePaths(toggleDirOf(paths.cert, service));
    this.#material = this.load();
  }

  private load(): TlsMaterial {
    const next = withToggle(loadMaterial(this.paths, this.dns), this.toggle);
    this.noteToggle(next.toggle, next.material.leaf.notAfter);
    return next.material;
  }

  /** Said once per change: on (warn, with the fix) and off (info). */
  private noteToggle(next: ToggleInForce | undefined, notAfter: string): void {
    if (next?.serial === this.#toggled?.serial) return;
    const was = this.#toggled;
    this.#toggled = next;
    const { log, service } = this;
    if (next)
      log.warn(
        { event: "toggle.on", kind: next.kind, serial: next.serial, notAfter, dir: this.toggle.dir },
        `${service} now presents a teaching toggle (${next.kind}, serial ${next.serial}) instead of its own identity, to callers and callees alike; put it back with: npm run mesh:toggle -- ${service} --restore`,
      );
    else if (was)
      log.info(
        { event: "toggle.off", kind: was.kind, serial: was.serial, dir: this.toggle.dir },
        `${service} presents its own identity again (the ${was.kind} toggle is gone)`,
      );
  }

  get material(): TlsMaterial {
    return this.#material;
  }

  /** Names who gets the material of each reload from now on. */
  serve(users: TlsUsers): void {
    this.#users = users;
  }

  /**
   * Re-reads the files; false when the previous material stays in force. noticedAt: when the
   * watcher first saw the change (performance.now()), for the reload latency metric.
   */
  reload(noticedAt = performance.now()): boolean {
    const users = this.#users;
    if (!users) throw new Error("TlsFiles.reload before serve()");
    const { log, metrics } = users;
    let next: TlsMaterial;
    try {
      const toggledBefore = this.#toggled;
      next = this.load();
      const { certChanged, trustChanged } = users.server.setMaterial(next);
      if (certChanged && toggledBefore?.serial !== this.#toggled?.serial)
        users.server.closeIdleBefore?.(`a teaching toggle ${this.#toggled ? "was put on" : "was taken off"}`);
      const restored = this.#failedOn !== undefined;
      this.#failedOn = undefined;
      if (!certChanged && !trustChanged) {
        if (restored) {
          const material = this.#material;
          log.info(
            {
              event: "tls.reloaded",
              certChanged,
              trustChanged,
              restored,
              serial: material.leaf.serial,
              notAfter: material.leaf.notAfter,
              trusts: material.trust.subjects,
            },
            "the TLS files again hold the material in force",
          );
        }
        return true;
      }
      for (const u of users.others) u.setMaterial?.(next);
      this.#material = next;
      log.info(
        {
          event: "tls.reloaded",
          certChanged,
          trustChanged,
          serial: next.leaf.serial,
          notAfter: next.leaf.notAfter,
          trusts: next.trust.subjects,
        },
        `new ${[certChanged && "certificate", trustChanged && "trust bundle/CRLs"].filter(Boolean).join(" and ")} in force for new connections`,
      );
      metrics.reloaded("tls", true, noticedAt, next);
      if (trustChanged) users.onTrustChanged();
      return true;
    } catch (e) {
      const { cert, key, bundle, crls } = this.paths;
      const failedOn = digestOf(cert, key, bundle, crls, this.toggle.cert, this.toggle.key);
      if (failedOn === this.#failedOn) return false;
      this.#failedOn = failedOn;
      metrics.reloaded("tls", false, noticedAt);
      log.error(
        { event: "tls.reload_failed", code: (e as { code?: string }).code, error: messageOf(e) },
        `kept the previous TLS material: ${messageOf(e)}`,
      );
      return false;
    }
  }
}

function digestOf(...files: string[]): string {
  const h = createHash("sha256");
  for (const f of files) {
    try {
      h.update(readFileSync(f)).update("\0");
    } catch {
      h.update("unreadable\0");
    }
  }
  return h.digest("hex");
}
