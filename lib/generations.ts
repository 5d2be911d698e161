// Which root generation each trust anchor is, carried as data from the CA's ledger to whoever
// shows it (the identity agent's log lines, the runtime's metrics), never read back from a
// root's name: a root may be named anything (`generation add --name`), and a name is no fact.
// Two carriers, both written by the CA and read here:
//  - on EST cacerts answers, a header listing the generation of each root of the PKCS#7, in order;
//  - next to a bundle.pem, a small JSON file naming each root (by the SHA-256 of its DER) and its
//    generation: the CA writes it beside its own bundle, the identity agent beside the cached one.
// Absent (an older CA, a state folder from before), a generation is unknown, not guessed.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

/** On cacerts answers: "1, 2", the generation of each certificate of the PKCS#7, in order. */
export const ROOT_GENERATIONS_HEADER = "Mesh-Root-Generations";

const MAX_ROOTS = 64;
const MAX_FILE_BYTES = 16_384;

export function formatRootGenerations(generations: readonly number[]): string {
  return generations.join(", ");
}

/**
 * The generations a header lists, when they are exactly one positive whole number per root
 * (`count` roots); otherwise undefined: a header that does not fit the answer is ignored.
 */
export function parseRootGenerations(value: unknown, count: number): number[] | undefined {
  if (typeof value !== "string" || value.length > MAX_ROOTS * 8) return undefined;
  const parts = value.split(",").map((s) => s.trim());
  if (parts.length !== count || !parts.every((p) => /^[1-9]\d{0,5}$/.test(p))) return undefined;
  return parts.map(Number);
}

/** A root's key in the generations file: lower-case hex SHA-256 of its DER. */
export function rootSha256(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
}

export interface RootGeneration {
  readonly sha256: string;
  readonly generation: number;
}

/** Each root (its DER) with the generation the CA gave it, in the same order. */
export function rootGenerations(
  roots: readonly { readonly raw: Uint8Array }[],
  generations: readonly number[],
): RootGeneration[] {
  return roots.map((r, i) => ({ sha256: rootSha256(r.raw), generation: generations[i]! }));
}

/** Where the generations of `bundle` are kept: bundle.pem → bundle.generations.json. */
export function generationsPath(bundle: string): string {
  return `${bundle.replace(/\.pem$/, "")}.generations.json`;
}

export function formatGenerationsFile(roots: readonly RootGeneration[]): string {
  return `${JSON.stringify({ roots: roots.map((r) => ({ sha256: r.sha256, generation: r.generation })) }, null, 2)}\n`;
}

/** The generations a file names, by root SHA-256. Throws on a file that is not one. */
export function parseGenerationsFile(text: string): Map<string, number> {
  if (text.length > MAX_FILE_BYTES) throw new Error("the generations file is too large");
  const doc = JSON.parse(text) as unknown;
  const roots = (doc as { roots?: unknown } | null)?.roots;
  if (!Array.isArray(roots) || roots.length > MAX_ROOTS) throw new Error("the generations file lists no roots");
  const out = new Map<string, number>();
  for (const r of roots as unknown[]) {
    const { sha256, generation } = (r ?? {}) as { sha256?: unknown; generation?: unknown };
    if (
      typeof sha256 !== "string" ||
      !/^[0-9a-f]{64}$/.test(sha256) ||
      !Number.isSafeInteger(generation) ||
      (generation as number) < 1
    ) {
      throw new Error("the generations file holds an entry that is not { sha256, generation }");
    }
    out.set(sha256, generation as number);
  }
  return out;
}

/** The generations kept beside `bundle`; empty when there is no such file or it does not parse. */
export function readGenerations(bundle: string): Map<string, number> {
  let text: string;
  try {
    text = readFileSync(generationsPath(bundle), "utf8");
  } catch {
    return new Map();
  }
  try {
    return parseGenerationsFile(text);
  } catch {
    return new Map();
  }
}
