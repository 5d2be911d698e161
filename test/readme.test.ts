// The README's CA commands, run as written and in the order written, in a fresh folder where
// mesh:up has already created its CA in ./pki (as it has when a reader gets to them). Where the
// README shows a command's output, the real output must read the same, up to serials and dates.
// The mesh commands between them (mesh:up, curl, mesh:probe) are covered by mesh-up.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ca, cleanup, tempDir } from "./helpers/ca.ts";

const ROOT = join(import.meta.dirname, "..");

interface Step {
  line: number;
  argv: string[];
  /** The output the README shows under the command, or null when it shows none or elides it. */
  output: string[] | null;
}

/** Splits a command line the way a POSIX shell would for these lines: words, "…", '…', # comments. */
function words(command: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:"([^"]*)"|'([^']*)'|(#.*$)|(\S+))/gy;
  for (let m = re.exec(command); m && m[0] !== ""; m = re.exec(command)) {
    if (m[3] !== undefined) break;
    out.push(m[1] ?? m[2] ?? m[4]!);
  }
  return out;
}

/** Every `$ npm run ca -- …` and `$ openssl …` in the README's console blocks, in order. */
function readmeSteps(readme: string): Step[] {
  const steps: Step[] = [];
  const lines = readme.split("\n");
  let inConsole = false;
  let current: Step | null = null;
  lines.forEach((text, i) => {
    if (/^\s*```/.test(text)) {
      inConsole = !inConsole && /^\s*```console\s*$/.test(text);
      current = null;
      return;
    }
    if (!inConsole) return;
    const cmd = /^\$ (.*)$/.exec(text);
    if (cmd) {
      const argv = words(cmd[1]!);
      const isCa = argv.slice(0, 4).join(" ") === "npm run ca --";
      // mesh:up started again (after a revocation) re-enrols what is no longer valid: the step stands for that.
      if (argv.join(" ") === "npm run mesh:up" && steps.length > 0) {
        steps.push({ line: i + 1, argv: ["mesh:up"], output: null });
        current = null;
        return;
      }
      current =
        isCa || argv[0] === "openssl"
          ? { line: i + 1, argv: isCa ? ["ca", ...argv.slice(4)] : argv, output: [] }
          : null;
      if (current) steps.push(current);
      return;
    }
    if (current?.output) current.output = text.includes("…") ? null : [...current.output, text];
  });
  for (const s of steps) if (s.output?.length === 0) s.output = null;
  return steps;
}

/** Serials, dates and times differ from run to run; everything else must match. */
const normal = (text: string) =>
  text
    .replace(/\b[0-9a-f]{32}\b/g, "<serial>")
    .replace(/\b\d{4}-\d\d-\d\d\b/g, "<date>")
    .replace(/\b\d\d:\d\d UTC\b/g, "<time> UTC")
    .replace(
      /\b\d{1,2} (January|February|March|April|May|June|July|August|September|October|November|December) \d{4}\b/g,
      "<date>",
    )
    .replace(/[ \t]+$/gm, "")
    .trimEnd();

test("the README's CA commands work as written, in order, after mesh:up has made ./pki", {
  timeout: 240_000,
}, async () => {
  const steps = readmeSteps(readFileSync(join(ROOT, "README.md"), "utf8"));
  // Guard the parser itself: the session, the revocation step and the rotation by hand are all found.
  const shown = steps.map((s) => s.argv.join(" "));
  for (const expected of [
    "ca revoke --domain inventory.internal",
    "mesh:up",
    "ca list",
    "ca generation retire 1",
    "openssl verify",
  ]) {
    assert.ok(
      shown.some((s) => s.startsWith(expected)),
      `no README step starting "${expected}" in:\n${shown.join("\n")}`,
    );
  }

  const cwd = tempDir("mesh-readme-");
  try {
    // What mesh:up does on a fresh clone before the reader gets to any of these.
    assert.equal((await ca(["init", "--name", "Mesh Dev CA"], { cwd })).code, 0);
    for (const n of ["order", "payment", "inventory", "edge"])
      assert.equal((await ca(["issue", "--domain", `${n}.internal`], { cwd })).code, 0);

    for (const step of steps) {
      const where = `README.md:${step.line}: $ ${step.argv[0] === "ca" ? `npm run ca -- ${step.argv.slice(1).join(" ")}` : step.argv.join(" ")}`;
      let code: number | null;
      let out: string;
      if (step.argv[0] === "mesh:up") {
        // What mesh:up's restart does to the ledger: each of its identities that has no valid
        // certificate (revoked, expired) gets a new one (online, by enrolling with a new token).
        const list = await ca(["list", "--json"], { cwd });
        assert.equal(list.code, 0, list.stderr);
        const valid = new Set(
          (JSON.parse(list.stdout) as Array<{ domain: string; status: string }>)
            .filter((c) => c.status === "VALID")
            .map((c) => c.domain),
        );
        for (const n of ["order", "payment", "inventory", "edge"]) {
          if (!valid.has(`${n}.internal`))
            assert.equal((await ca(["issue", "--domain", `${n}.internal`], { cwd })).code, 0);
        }
        continue;
      }
      if (step.argv[0] === "ca") {
        const r = await ca(step.argv.slice(1), { cwd });
        code = r.code;
        out = r.stdout;
        if (r.code !== 0) out += r.stderr;
      } else {
        const r = spawnSync(step.argv[0]!, step.argv.slice(1), { cwd, encoding: "utf8" });
        code = r.status;
        out = r.stdout + r.stderr;
      }
      // The README shows two checks of a revoked certificate failing; every other step succeeds.
      const meantToFail = step.output?.some((l) => /FAILED|^error /.test(l)) ?? false;
      if (meantToFail) assert.notEqual(code, 0, `${where}\nshould fail, printed:\n${out}`);
      else assert.equal(code, 0, `${where}\nfailed:\n${out}`);
      if (step.output) assert.equal(normal(out), normal(step.output.join("\n")), where);
    }
  } finally {
    cleanup(cwd);
  }
});
