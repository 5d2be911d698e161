// The CA rotation as the dashboard shows it, read from the CA's ledger: `ca rotate` keeps its
// progress there (the rotations row) whatever it prints, so a rotation run from any terminal,
// with or without --json, shows. Who a waiting gate waits for is the gate's own verdict,
// evaluated on the same ledger facts `ca rotate` reads (read-only here).
import {
  GATE_NUMBER,
  Ledger,
  evaluatePrepare,
  evaluateRetire,
  prepareFacts,
  retireFacts,
  type GateVerdict,
  type LedgerStore,
  type RotationRow,
} from "../../ca/index.ts";
import type { RotationView } from "./view.ts";

/** A finished rotation stays on the page this long. */
const SHOW_DONE_MS = 15 * 60_000;
const NAMES_MAX = 50;

export function readRotation(ledger: LedgerStore, now: Date): RotationView | null {
  let row: RotationRow | undefined;
  try {
    // A store other than SQLite is read through its interface: the rotation under way (a finished one is not shown).
    row = ledger instanceof Ledger ? ledger.lastRotation() : ledger.unfinishedRotation();
  } catch {
    return null; // a CA from before rotations: no such table
  }
  if (!row) return null;
  if (row.phase === "done" && (!row.finishedAt || now.getTime() - Date.parse(row.finishedAt) > SHOW_DONE_MS))
    return null;
  let v: GateVerdict | null = null;
  try {
    if (row.phase === "prepare") v = evaluatePrepare(prepareFacts(ledger, row, now));
    else if (row.phase === "retire") v = evaluateRetire(retireFacts(ledger, row, now, { inUse: row.inUse === 1 }));
  } catch {
    v = null;
  }
  return {
    id: row.id,
    from: row.fromGeneration,
    to: row.toGeneration,
    phase: row.phase,
    gate: row.phase === "done" ? 3 : GATE_NUMBER[row.phase],
    startedAt: row.startedAt,
    activatedAt: row.activatedAt,
    finishedAt: row.finishedAt,
    owner: row.owner,
    total: v?.total ?? 0,
    waitingFor: (v?.waitingFor ?? [])
      .slice(0, NAMES_MAX)
      .map((w) => ({ name: w.name.slice(0, 120), why: w.why.slice(0, 600) })),
    notes: (v?.notes ?? []).slice(0, 5).map((n) => n.slice(0, 600)),
  };
}
