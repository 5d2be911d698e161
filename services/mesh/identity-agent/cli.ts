// The identity-mode flags of services/main.ts, checked and turned into IdentityOptions.
import { join } from "node:path";
import { IdentityError } from "./errors.ts";
import { readToken } from "./bootstrap.ts";
import { caOrigins } from "./est-client.ts";
import type { IdentityOptions } from "./service.ts";
import { renewFraction, scheduleAt } from "./timing.ts";

export const IDENTITY_HELP = `
Identity mode (--ca): the service keeps its own key and certificate in --state, enrols on first
start with a one-time token (--token-file FILE or MESH_ENROL_TOKEN; make one with
npm run -s ca -- token --domain <service>.internal > FILE), trusts the CA only through the root
fingerprint in the token, renews over mTLS at about 2/3 of the certificate's life (--renew-at), and
polls the CA's bundle and CRLs. It starts from its cached state when the CA is down. See docs/identity.md.`;

function caOrigin(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new IdentityError(
      "STATE_INVALID",
      `--ca ${JSON.stringify(text.slice(0, 80))} is not a URL: use the CA's EST address, e.g. https://127.0.0.1:7400`,
    );
  }
  if (url.protocol !== "https:" || url.pathname !== "/" || url.search || url.username) {
    throw new IdentityError(
      "STATE_INVALID",
      `--ca must be https:// origins such as https://127.0.0.1:7400 (EST paths are added by the service)`,
    );
  }
  return url.origin;
}

export function identityOptions(
  o: {
    service: string;
    ca: string;
    state?: string;
    tokenFile?: string;
    lifetime?: string;
    poll?: string;
    renewAt?: string;
  },
  env: NodeJS.ProcessEnv = process.env,
): IdentityOptions {
  // Several CA replicas: their origins separated by commas, tried in turn (est-client.ts).
  const origins = caOrigins(o.ca);
  if (origins.length === 0 || origins.length > 16)
    throw new IdentityError(
      "STATE_INVALID",
      `--ca needs from 1 to 16 CA addresses, e.g. https://127.0.0.1:7400 or https://10.0.0.1:7400,https://10.0.0.2:7400`,
    );
  const urls = origins.map((u) => caOrigin(u));
  if (o.lifetime !== undefined && !/^\d{1,9}(s|m|h|d)$/.test(o.lifetime)) {
    throw new IdentityError(
      "STATE_INVALID",
      `--lifetime ${JSON.stringify(o.lifetime.slice(0, 40))} is not a duration: use a whole number and a unit, e.g. 90s, 10m, 1h`,
    );
  }
  let pollMs: number | undefined;
  if (o.poll !== undefined) {
    const n = Number(o.poll);
    if (!/^\d+(\.\d+)?$/.test(o.poll) || n < 0.1 || n > 86_400)
      throw new IdentityError(
        "STATE_INVALID",
        `--poll ${JSON.stringify(o.poll.slice(0, 40))} must be a number of seconds from 0.1 to 86400`,
      );
    pollMs = Math.round(n * 1000);
  }
  let schedule: IdentityOptions["schedule"];
  if (o.renewAt !== undefined) {
    const fraction = renewFraction(o.renewAt);
    if (fraction === undefined)
      throw new IdentityError(
        "STATE_INVALID",
        `--renew-at ${JSON.stringify(o.renewAt.slice(0, 40))} must be a fraction of the certificate's life from 0.1 to 0.9, e.g. 0.5`,
      );
    schedule = scheduleAt(fraction);
  }
  const token = readToken(o.tokenFile, env);
  // Read once; nothing this process starts should inherit it.
  delete env.MESH_ENROL_TOKEN;
  return {
    caUrl: urls.join(","),
    stateDir: o.state ?? join("state", o.service),
    token,
    lifetime: o.lifetime,
    pollMs,
    schedule,
  };
}
