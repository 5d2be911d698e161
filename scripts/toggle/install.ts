// Puts a toggle's folder in place, and takes it away, each in one rename: the service's watcher
// sees a whole toggle or none, never a key without its certificate.
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type { TogglePaths } from "../../services/mesh/toggle.ts";

function write(path: string, data: string, mode: number): void {
  const fd = openSync(path, "wx", mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Installs (or replaces) the toggle: key 0600, certificate, toggle.json, in a folder 0700. */
export function install(p: TogglePaths, t: { certPem: string; keyPem: string; kind: string; serial: string }): void {
  // File mode's pki/toggles/ is made the first time (online, the parent is the state folder).
  mkdirSync(dirname(p.dir), { recursive: true, mode: 0o700 });
  const staged = mkdtempSync(join(dirname(p.dir), ".toggle-new-"));
  try {
    write(join(staged, "key.pem"), t.keyPem, 0o600);
    write(join(staged, "cert.pem"), t.certPem, 0o644);
    write(
      join(staged, "toggle.json"),
      `${JSON.stringify({ kind: t.kind, serial: t.serial, since: new Date().toISOString() })}\n`,
      0o644,
    );
    remove(p);
    renameSync(staged, p.dir);
  } catch (e) {
    rmSync(staged, { recursive: true, force: true });
    throw e;
  }
}

/** Removes the toggle; false when none was installed. */
export function remove(p: TogglePaths): boolean {
  if (!existsSync(p.dir)) return false;
  const gone = `${p.dir}.gone-${process.pid}-${Date.now()}`;
  renameSync(p.dir, gone);
  rmSync(gone, { recursive: true, force: true });
  return true;
}

/** What toggle.json says of the toggle installed, if any. */
export function installedKind(p: TogglePaths): { kind: string; serial: string; since: string } | null {
  if (!existsSync(p.about)) return null;
  try {
    return JSON.parse(readFileSync(p.about, "utf8")) as { kind: string; serial: string; since: string };
  } catch {
    return null;
  }
}
