// The folder tree is the architecture (DEVELOPERS.md): no import circles anywhere, and scripts
// reach the CA only through its public surface, ca/index.ts. Both read from the source files
// themselves, so a circle or a stray import fails here the day it is written.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";

const ROOT = resolve(import.meta.dirname, "..");
const FOLDERS = ["ca", "services", "scripts", "lib", "bin", "bench", "test", "web"];

/** Every .ts/.mjs source under the project's folders (no node_modules, no build output). */
function sources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (name === "node_modules" || name.startsWith(".")) continue;
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|mts|mjs|js)$/.test(name) && !name.endsWith(".d.ts")) out.push(path);
    }
  };
  for (const f of FOLDERS) walk(join(ROOT, f));
  return out;
}

/**
 * The relative modules a file imports: static imports and re-exports (type-only ones too: a
 * circle of types is still a circle of concepts) and dynamic import("…") of a literal.
 */
export function importsOf(text: string): string[] {
  const specs: string[] = [];
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  for (const m of code.matchAll(/(?:^|[;\s])(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']/g)) specs.push(m[1]!);
  for (const m of code.matchAll(/(?:^|[;\s])import\s*["']([^"']+)["']/g)) specs.push(m[1]!);
  for (const m of code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) specs.push(m[1]!);
  return specs.filter((s) => s.startsWith("."));
}

function graph(): Map<string, string[]> {
  const files = new Set(sources());
  const g = new Map<string, string[]>();
  for (const file of files) {
    const deps = importsOf(readFileSync(file, "utf8"))
      .map((s) => resolve(dirname(file), s))
      .filter((p) => files.has(p));
    g.set(file, [...new Set(deps)]);
  }
  return g;
}

/** Strongly connected components of more than one module, or a module importing itself (Tarjan). */
export function circles(g: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (g.get(v) ?? []).includes(v)) found.push(scc.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return found;
}

const rel = (p: string) => relative(ROOT, p);

describe("the import graph", () => {
  it("finds a circle when there is one (the checker itself can fail)", () => {
    const g = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a"]],
      ["d", ["a"]],
      ["e", ["e"]],
    ]);
    assert.deepEqual(circles(g), [["a", "b", "c"], ["e"]]);
    assert.deepEqual(
      importsOf(
        `import type { X } from "./x.ts";\nexport { y } from "../y.ts";\nconst z = await import("./z.ts");\nimport "./side.ts";\n// import { no } from "./comment.ts";`,
      ),
      ["./x.ts", "../y.ts", "./side.ts", "./z.ts"],
    );
  });

  it("has no import circles, type-only imports included", () => {
    const found = circles(graph()).map((c) => c.map(rel).join(" <-> "));
    assert.deepEqual(found, [], `import circles:\n${found.join("\n")}`);
  });

  // Micro-benchmarks of the CA's own encoders time its internals, as a unit test would; each is
  // named here with why, and every other script and benchmark goes through ca/index.ts.
  const INTERNAL_BENCHES = new Set([
    "bench/der.ts", // the DER/CRL encoders and readers against their earlier versions (docs/bench.md)
  ]);

  it("scripts/ and bench/ import the CA only through ca/index.ts", () => {
    const index = join(ROOT, "ca", "index.ts");
    const stray: string[] = [];
    for (const [file, deps] of graph()) {
      if (!/^(scripts|bench)\//.test(rel(file)) || INTERNAL_BENCHES.has(rel(file))) continue;
      for (const d of deps) if (rel(d).startsWith("ca/") && d !== index) stray.push(`${rel(file)} imports ${rel(d)}`);
    }
    assert.deepEqual(stray, []);
  });
});
