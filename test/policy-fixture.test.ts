// The tests read test/fixtures/mesh-policy.toml, not ./mesh-policy.toml, so that a user who
// edits the policy as docs/mesh.md suggests still has a passing `npm test`. This keeps the
// fixture equal to the policy the repository ships: the committed file, or the staged one
// while a change to it is being committed. The working copy is deliberately not compared.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SHIPPED_POLICY_FILE } from "./mesh-fixtures.ts";

const ROOT = join(import.meta.dirname, "..");

/** mesh-policy.toml as in git's index (the last commit unless a change is staged); null without git. */
function shippedPolicy(): string | null {
  const r = spawnSync("git", ["-C", ROOT, "show", ":mesh-policy.toml"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return null;
  return r.stdout;
}

const shipped = shippedPolicy();

test("the policy fixture is the policy the repository ships", {
  skip: shipped === null ? "no git checkout here: the fixture cannot be compared" : false,
}, () => {
  assert.equal(
    readFileSync(SHIPPED_POLICY_FILE, "utf8"),
    shipped,
    "test/fixtures/mesh-policy.toml differs from the committed mesh-policy.toml: if the shipped policy changed on purpose, copy it over the fixture (git show :mesh-policy.toml > test/fixtures/mesh-policy.toml)",
  );
});
