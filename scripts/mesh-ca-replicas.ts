// mesh:up --ca-replicas N --store postgres://…: N `ca serve` processes on one PostgreSQL store
// acting as one CA (docs/est.md, "Running several CA replicas"), each supervised on its own
// ports, the services given every address. Replica 1 is "ca" (logs/ca.log, --ca-port); replica
// k is "ca<k>" (logs/ca<k>.log) on --ca-port + 20 × (k - 1) and its admin port + 20 × (k - 1):
// 7420/7430 and 7440/7450 by default, clear of the services' 7401-7403 and the dashboard's 7480.
import { InvalidArgumentError } from "commander";
import { parseStore } from "../ca/index.ts";
import { messageOf } from "../services/mesh/errors.ts";
import { caProcess, type CaProcess } from "./mesh-components.ts";

/** One PostgreSQL store serves any number; three show fail-over on a laptop without swamping it. */
export const MAX_CA_REPLICAS = 3;

export const replicaCount = (v: string): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > MAX_CA_REPLICAS)
    throw new InvalidArgumentError(`must be a whole number from 1 to ${MAX_CA_REPLICAS}`);
  return n;
};

/** The name of replica k (1-based): its supervisor component and log file. */
export const replicaName = (k: number): string => (k === 1 ? "ca" : `ca${k}`);

/**
 * What is wrong with --store/--ca-replicas together, in one line, or null. Several replicas need
 * a store they share over the network (two servers on one SQLite file share a disk: a second
 * process, not a second machine), and file mode has no CA server at all.
 */
export function storeFlagsProblem(o: { store?: string; caReplicas: number; fileMode?: boolean }): string | null {
  let kind: "sqlite" | "postgres";
  try {
    kind = parseStore(o.store).kind;
  } catch (e) {
    return messageOf(e);
  }
  if (o.fileMode && (o.caReplicas > 1 || kind === "postgres"))
    return "--file-mode runs no CA server: --ca-replicas and --store are for the online mode";
  if (o.caReplicas > 1 && kind !== "postgres")
    return `--ca-replicas ${o.caReplicas} needs a store they share: add --store postgres://user@host/db (or MESH_CA_STORE; docs/est.md, "Running several CA replicas")`;
  return null;
}

/** Ports of replica k: 0 stays 0 (any free one); otherwise the first replica's plus 20 × (k - 1). */
export function replicaPorts(k: number, caPort: number, caAdminPort: number): { port: number; adminPort: number } {
  const next = (p: number) => (p === 0 ? 0 : p + 20 * (k - 1));
  return { port: next(caPort), adminPort: next(caAdminPort) };
}

type CaProcessOptions = Parameters<typeof caProcess>[0];

/** Replicas 2…n as supervised processes (not yet started), each with its own name, ports and log. */
export function furtherReplicas(
  n: number,
  common: Omit<CaProcessOptions, "name" | "port" | "adminPort" | "onStderr">,
  stderrOf: (name: string) => (text: string) => void,
  caPort: number,
  caAdminPort: number,
): CaProcess[] {
  const out: CaProcess[] = [];
  for (let k = 2; k <= n; k++)
    out.push(
      caProcess({
        ...common,
        name: replicaName(k),
        onStderr: stderrOf(replicaName(k)),
        ...replicaPorts(k, caPort, caAdminPort),
      }),
    );
  return out;
}

/** The services' CA address list: every replica mesh:up runs, then any started elsewhere (--ca-urls). */
export function caAddressList(replicas: readonly CaProcess[], elsewhere: string | undefined): string {
  return [...replicas.map((r) => r.url), ...(elsewhere ? [elsewhere] : [])].join(",");
}

/** The banner's lines for replicas 2…n (replica 1 has its own). */
export function replicaBannerLines(replicas: readonly CaProcess[], store: string | undefined): string {
  if (replicas.length === 0) return "";
  const lines = replicas.map(
    (r) => `  ${r.runner.name.padEnd(10)} ${r.url}      (a replica on the same store; metrics ${r.adminUrl}/metrics)\n`,
  );
  return `${lines.join("")}             ${replicas.length + 1} CA replicas on ${store ?? "one store"}: kill one (kill -9 <pid>, pids in logs/mesh.json) and the services renew through the others; it is restarted\n`;
}
