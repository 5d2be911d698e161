// A mesh service in identity mode: its TLS material comes from its own state folder, enrolled
// with a token on first start and renewed by the agent, instead of from the CA's folder (--pki).
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { startService, type RunningService, type ServiceOptions } from "../runtime.ts";
import { createLogger } from "../log.ts";
import { dnsName } from "../names.ts";
import { nowMs, processClockNote, processClockOffsetMs, type Clock } from "../../../lib/clock.ts";
import { IdentityError } from "./errors.ts";
import { enrolWithToken, type Token } from "./bootstrap.ts";
import { IdentityAgent, factsFields } from "./renewer.ts";
import { hasIdentity, receivedAt, recover, statePaths } from "./state-folder.ts";
import type { CaObserver } from "./est-client.ts";
import type { CallDeadline, Schedule } from "./timing.ts";

export interface IdentityOptions {
  /** The CA's EST server, e.g. https://127.0.0.1:7400. */
  caUrl: string;
  /** This service's own folder: key.pem, cert.pem, bundle.pem, crls.pem, bundle.etag. */
  stateDir: string;
  /** Needed only when the folder holds no identity yet, or an expired one. */
  token?: Token;
  lifetime?: string;
  schedule?: Schedule;
  pollMs?: number;
  random?: () => number;
  /** The agent's clock (renewal, expiry and poll timers); tests pass a TestClock. */
  clock?: Clock;
  /** Bounds of a renewal call's deadline (renewer.ts); default 2 s to 15 s. */
  callDeadline?: CallDeadline;
}

export interface IdentityService extends RunningService {
  readonly identity: IdentityAgent;
}

/**
 * Enrols if the state folder has no usable identity (with the token), then starts the service
 * on the folder's files and the agent that renews them. Throws IdentityError or MeshError
 * before listening on anything.
 */
export async function startIdentityService(
  o: Omit<ServiceOptions, "pkiDir" | "tlsPaths"> & { identity: IdentityOptions },
): Promise<IdentityService> {
  processClockOffsetMs(); // a bad MESH_CLOCK_OFFSET_MS stops the start here, not a renewal later
  const log = o.log ?? createLogger(o.service, o.logDestination);
  const dns = dnsName(o.service);
  const id = o.identity;
  const paths = statePaths(id.stateDir);
  recover(paths);
  const expiredAt = hasIdentity(paths) ? expiryOf(paths.cert) : undefined;
  // By the machine's clock: an identity that only this process's moved clock calls expired is
  // served all the same, and its agent says identity.expired with the clock (renewer.ts).
  const usable = expiredAt !== undefined && expiredAt > Date.now();
  // The enrolment's EST calls happen before the service (and its metrics) exist: kept, then counted.
  const early: Parameters<CaObserver>[] = [];
  if (!usable) {
    if (!id.token) {
      throw expiredAt !== undefined
        ? new IdentityError(
            "IDENTITY_EXPIRED",
            `the identity in ${paths.cert} expired at ${new Date(expiredAt).toISOString()} and an expired certificate cannot be renewed: make a token (npm run -s ca -- token --domain ${dns} > token) and start again with --token-file token or MESH_ENROL_TOKEN`,
          )
        : new IdentityError(
            "TOKEN_MISSING",
            `${id.stateDir} holds no identity yet: enrol with a one-time token (npm run -s ca -- token --domain ${dns} > token; add --replace if ${dns} still has a live certificate, e.g. this folder was lost: the old one is then superseded), passed with --token-file token or MESH_ENROL_TOKEN`,
          );
    }
    const e = await enrolWithToken({
      caUrl: id.caUrl,
      token: id.token,
      dns,
      paths,
      lifetime: id.lifetime,
      observe: (...call) => early.push(call),
    });
    log.info(
      {
        event: "identity.enrolled",
        ...factsFields(e.facts),
        etag: e.etag,
        roots: e.roots,
        stateDir: id.stateDir,
        ca: id.caUrl,
      },
      `enrolled ${dns} with the CA at ${id.caUrl}: serial ${e.facts.serial} from ${e.facts.root} (generation ${e.facts.generation ?? "unknown"}), valid until ${e.facts.notAfter}`,
    );
  } else if (id.token) {
    log.info(
      { event: "identity.token_unused", stateDir: id.stateDir },
      `${id.stateDir} already holds a valid identity: the enrolment token was not used`,
    );
  }
  const svc = await startService({ ...o, log, pkiDir: id.stateDir, tlsPaths: paths });
  for (const call of early) svc.metrics.caRequest(...call);
  // The renewal heartbeat counts from when this identity was obtained, which a restart must not reset.
  svc.metrics.certificateObtained(receivedAt(paths));
  let agent: IdentityAgent;
  try {
    agent = new IdentityAgent(
      {
        caUrl: id.caUrl,
        dns,
        paths,
        lifetime: id.lifetime,
        schedule: id.schedule,
        pollMs: id.pollMs,
        random: id.random,
        clock: id.clock,
        callDeadline: id.callDeadline,
      },
      { reloadTls: () => svc.reloadTls(), log, metrics: svc.metrics },
    );
  } catch (e) {
    await svc.close();
    throw e;
  }
  agent.start();
  log.info(
    {
      event: "identity.agent_started",
      ...factsFields(agent.identity),
      nextRenewal: new Date(agent.nextRenewal).toISOString(),
      ca: id.caUrl,
    },
    // Expired by this process's moved clock only: identity.expired said so, and nothing is scheduled.
    Date.parse(agent.identity.notAfter) <= nowMs()
      ? `${dns} does not renew: its certificate has expired${processClockNote()} (see identity.expired)`
      : `${dns} renews at ${new Date(agent.nextRenewal).toISOString()}${processClockNote()}`,
  );
  return {
    ...svc,
    identity: agent,
    close: async () => {
      agent.stop();
      await svc.close();
    },
  };
}

function expiryOf(certFile: string): number {
  try {
    return Date.parse(new X509Certificate(readFileSync(certFile)).validTo);
  } catch (e) {
    throw new IdentityError(
      "STATE_INVALID",
      `${certFile} is not a PEM certificate (${(e as Error).message.split("\n")[0]}): move the state folder aside and enrol again with a new token`,
    );
  }
}
