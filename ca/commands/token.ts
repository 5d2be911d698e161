// ca token: a one-time enrolment token for one name (EST simpleenroll, docs/est.md).
import { fchmodSync, fstatSync } from "node:fs";
import type { Command } from "commander";
import { shown } from "../format.ts";
import { CA_READ, help } from "./exits.ts";
import { jsonOption, stateful } from "./flags.ts";
import { withCa } from "./session.ts";
import { caCommand } from "./suggest.ts";

export function register(program: Command): void {
  help(
    stateful(program.command("token").description("a one-time enrolment token for one name (for EST simpleenroll)"))
      .requiredOption(
        "--domain <name>",
        "the one name the token may enrol (not a wildcard, a bare domain or ca.internal)",
      )
      .option("--ttl <duration>", "how long it stays usable (max 24h)", "10m")
      .option(
        "--replace",
        "the name has a live certificate: mint anyway; enrolling supersedes it, and the service holding it can no longer renew",
      )
      .addOption(jsonOption()),
    [
      "token --domain shipping.internal",
      "token --domain shipping.internal --ttl 1h",
      "token --domain shipping.internal --json | jq -r .token > shipping.token",
      "token --domain shipping.internal --replace   # shipping's key is lost: enrol a new one in its place",
    ],
    {
      3: "refused: a reserved name, or the name has a live certificate and --replace was not given (nothing was changed)",
      4: CA_READ,
    },
  ).action((o) =>
    withCa(o, async (ca) => {
      const { createToken, TOKEN_MAX_TTL_MS } = await import("../tokens.ts");
      const { parseDuration } = await import("../duration.ts");
      const ttlMs = parseDuration(o.ttl, { flag: "--ttl", min: 10_000, max: TOKEN_MAX_TTL_MS });
      const t = createToken(ca, { domain: o.domain, ttlMs, replace: o.replace });
      const fp = `sha256 Fingerprint=${t.root.fingerprint.hex}`;
      privateStdout();
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify(
            {
              token: t.token,
              domain: t.domain,
              expiresAt: t.expiresAt.toISOString(),
              ttl: t.ttl,
              root: {
                name: t.root.name,
                generation: t.root.generation,
                sha256: t.root.fingerprint.hex,
                sha256B64url: t.root.fingerprint.b64url,
              },
              replaces: t.replaces ? { serial: t.replaces.serial, notAfter: t.replaces.notAfter.toISOString() } : null,
            },
            null,
            2,
          )}\n`,
        );
      } else {
        // The token alone on stdout (TOKEN=$(npm run -s ca -- token ...)); the rest for people on stderr.
        process.stdout.write(`${t.token}\n`);
        console.error(
          `One-time enrolment token for ${t.domain}: works once, until ${t.expiresAt.toISOString()} (${t.ttl})`,
        );
        console.error(`  CA root   ${t.root.name} (generation ${t.root.generation})`);
        console.error(`            ${fp}`);
        console.error(
          `  the token carries this fingerprint; check it with: openssl x509 -noout -fingerprint -sha256 -in ${shown(ca.layout.root(t.root.generation).cert)}`,
        );
        console.error(`  keep it secret: it is a credential (pass it by file or environment, never as an argument)`);
      }
      if (t.replaces) {
        console.error(
          `warning: enrolling with it supersedes ${t.domain}'s live certificate (serial ${t.replaces.serial}, valid until ${t.replaces.notAfter.toISOString()}): the service running with that one then fails to renew and stops being trusted when it expires`,
        );
      }
      if (!t.root.published)
        console.error(
          `warning: generation ${t.root.generation} signs but is not in the trust bundle yet (run: ${caCommand("bundle")})`,
        );
    }),
  );
}

/**
 * `token … > file` writes a credential: when stdout is a regular file, it is made 0600 before the
 * token goes in, whatever the shell's umask left it (a pipe or a terminal is left alone).
 */
function privateStdout(): void {
  try {
    const st = fstatSync(1);
    if (st.isFile() && (st.mode & 0o077) !== 0) fchmodSync(1, 0o600);
  } catch {
    // not ours to change (another user's file): the shell's redirection decided
  }
}
