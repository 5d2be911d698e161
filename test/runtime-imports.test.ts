// The layout is the architecture (DEVELOPERS.md): the runtime in services/mesh/ imports no app.
// Read from the sources themselves, every static import, re-export and dynamic import().
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(p));
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Every module specifier of a file: import … from "x", export … from "x", import("x"), import "x". */
export function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)["'`]([^"'`]+)["'`]/g))
    out.push(m[1]!);
  return out;
}

test("specifiers() sees every form of import (so the test below can fail)", () => {
  const text = `import { a } from "../apps/order.ts";\nexport * from '../apps/x.ts';\nconst m = await import("../apps/y.ts");\nimport "../apps/z.ts";\nimport type { T } from\n  "../apps/t.ts";`;
  assert.deepEqual(specifiers(text), [
    "../apps/order.ts",
    "../apps/x.ts",
    "../apps/y.ts",
    "../apps/z.ts",
    "../apps/t.ts",
  ]);
});

test("services/mesh/ imports nothing from services/apps/", () => {
  const mesh = join(ROOT, "services", "mesh");
  const apps = join(ROOT, "services", "apps");
  const files = tsFiles(mesh);
  assert.ok(files.length > 10, `found only ${files.length} files under services/mesh`);
  const bad: string[] = [];
  for (const f of files) {
    for (const s of specifiers(readFileSync(f, "utf8"))) {
      if (!s.startsWith(".")) continue;
      const target = resolve(dirname(f), s);
      if (target === apps || target.startsWith(`${apps}/`)) bad.push(`${relative(ROOT, f)} imports ${s}`);
    }
  }
  assert.deepEqual(bad, []);
});

test("the runtime knows no fixed list of services: only names.ts defines SERVICES, and no runtime module reads it", () => {
  const bad: string[] = [];
  for (const f of tsFiles(join(ROOT, "services", "mesh"))) {
    if (f.endsWith("/names.ts")) continue;
    if (/\bSERVICES\b|\bisServiceName\b|\bServiceName\b/.test(readFileSync(f, "utf8"))) bad.push(relative(ROOT, f));
  }
  assert.deepEqual(bad, []);
});
