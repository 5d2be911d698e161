// Where things live in the CA's state folder, and the journal that makes a
// certificate's files and its ledger row land together or not at all.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { CaError } from "./errors.ts";
import { CERT_MODE, KEY_MODE, inside, writeDurable, type NewFile } from "./files.ts";
import type { LedgerStore } from "./store/interface.ts";
import { fileStem } from "./names.ts";
import { processAlive } from "../lib/process-alive.ts";

export interface IssuerPaths {
  dir: string;
  key: string;
  cert: string;
  crl: string;
}

export class Layout {
  readonly dir: string;
  readonly ledger: string;
  readonly bundle: string;
  readonly crls: string;
  readonly certsDir: string;
  readonly pendingDir: string;

  constructor(dir: string) {
    this.dir = inside(dir);
    this.ledger = inside(this.dir, "ca.db");
    this.bundle = inside(this.dir, "bundle.pem");
    this.crls = inside(this.dir, "crls.pem");
    this.certsDir = inside(this.dir, "certs");
    this.pendingDir = inside(this.certsDir, ".pending");
  }

  /** Files of an issuer: "root-2" → roots/2/, "int-1" → intermediates/1/. */
  issuer(id: string): IssuerPaths {
    const m = /^(root|int)-(\d+)$/.exec(id);
    if (!m)
      throw new CaError("CORRUPT", `the ledger names an issuer ${JSON.stringify(id)} this CA does not understand`);
    const dir = inside(this.dir, m[1] === "root" ? "roots" : "intermediates", m[2]!);
    return { dir, key: join(dir, "ca.key"), cert: join(dir, "ca.crt"), crl: join(dir, "crl.pem") };
  }

  root(generation: number): IssuerPaths {
    return this.issuer(`root-${generation}`);
  }

  leaf(name: string): { cert: string; key: string } {
    const stem = fileStem(name);
    return { cert: inside(this.certsDir, `${stem}.crt`), key: inside(this.certsDir, `${stem}.key`) };
  }
}

/** Reads a file the CA wrote, with an error that names it when it is missing. */
export function readStateFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new CaError(
      "CORRUPT",
      `cannot read ${what} ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); restore it from your backup`,
    );
  }
}

/** A certificate's files as the journal stages them: its chain PEM, and its key when the CA made it. */
export interface StagedFiles {
  serial: string;
  cert: string;
  key?: string;
}

/**
 * A certificate's files are first written to certs/.pending/<serial>.<pid>.*,
 * then the ledger row is committed, then the files are renamed into place.
 * After a crash, open() rolls each pending file forward if its row committed
 * and deletes it otherwise.
 */
export class Journal {
  constructor(private readonly layout: Layout) {}

  /**
   * Writes the staged files of one or more certificates, durably, before their rows commit:
   * their data and the folder's entries in one round of fsyncs (files.ts writeDurable), not
   * two files and two folder flushes per certificate one after the other. A file here need not
   * be written atomically: its row commits only once it is whole, and recovery deletes a
   * staged file whose row did not commit.
   */
  async stage(items: ReadonlyArray<StagedFiles>): Promise<void> {
    mkdirSync(this.layout.pendingDir, { recursive: true, mode: 0o700 });
    const files: NewFile[] = [];
    for (const it of items) {
      if (it.key !== undefined) files.push({ path: this.pendingPath(it.serial, "key"), data: it.key, mode: KEY_MODE });
      files.push({ path: this.pendingPath(it.serial, "crt"), data: it.cert, mode: CERT_MODE });
    }
    await writeDurable(files);
  }

  /** Moves a committed certificate's staged files into place. */
  publish(serial: string, name: string): void {
    const target = this.layout.leaf(name);
    const key = this.pendingPath(serial, "key");
    // Key first: a reader that sees the new certificate then always finds its key.
    if (existsSync(key)) renameSync(key, target.key);
    renameSync(this.pendingPath(serial, "crt"), target.cert);
  }

  discard(serial: string): void {
    for (const ext of ["key", "crt"] as const) {
      try {
        unlinkSync(this.pendingPath(serial, ext));
      } catch {
        /* not staged */
      }
    }
  }

  /** Finishes or undoes what crashed commands left behind. */
  recover(ledger: LedgerStore): void {
    let entries: string[];
    try {
      entries = readdirSync(this.layout.pendingDir);
    } catch {
      return;
    }
    for (const file of entries) {
      const m = /^([0-9a-f]+)\.(\d+)\.(key|crt)$/.exec(file);
      const path = join(this.layout.pendingDir, file);
      if (!m) {
        // A temporary file of a write that crashed: never a complete file.
        if (/\.tmp$/.test(file) && !processAlive(Number(file.split(".").at(-3)))) gone(() => unlinkSync(path));
        continue;
      }
      const [, serial, pid] = m;
      if (Number(pid) !== process.pid && processAlive(Number(pid))) continue; // another command is mid-flight
      const row = ledger.bySerial(serial!);
      if (row && row.status === "valid") {
        const target = this.layout.leaf(row.name);
        gone(() => renameSync(path, m[3] === "key" ? target.key : target.cert));
      } else {
        gone(() => unlinkSync(path));
      }
    }
  }

  private pendingPath(serial: string, ext: "key" | "crt"): string {
    return join(this.layout.pendingDir, `${serial}.${process.pid}.${ext}`);
  }
}

/**
 * Runs a move or removal of a staged file that may be gone already: between the listing and the
 * move, the command that staged it may have published it and exited (so it no longer counts as
 * mid-flight), or another command started at the same time may have recovered it first.
 */
function gone(op: () => void): void {
  try {
    op();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
