// The running mesh a toggle acts on, as mesh:up recorded it in logs/mesh.json, and where each
// service's toggle folder is (services/mesh/toggle.ts decides; the runtime reads the same place).
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { toggleDirOf, togglePaths, type TogglePaths } from "../../services/mesh/toggle.ts";
import { ToggleError } from "./errors.ts";
import { processAlive } from "../../lib/process-alive.ts";

export interface MeshState {
  logs: string;
  pid: number;
  mode: "online" | "file";
  pki: string;
  policy: string;
  ports: Record<string, number>;
  adminPorts: Record<string, number | null>;
  identities: Record<string, { cert: string; key: string; bundle: string; crls: string }>;
  dashboard: string | null;
  /** Online: the CA server, and where its ledger is ("sqlite", or a postgres:// URL). */
  ca?: { store?: string } | null;
}

/** mesh.json of a mesh:up that still runs; NO_MESH otherwise. */
export function readMesh(logs: string): MeshState {
  const file = join(logs, "mesh.json");
  if (!existsSync(file))
    throw new ToggleError("NO_MESH", `no mesh is running: ${file} does not exist (start one: npm run mesh:up)`);
  let m: MeshState;
  try {
    m = { ...(JSON.parse(readFileSync(file, "utf8")) as Omit<MeshState, "logs">), logs: resolve(logs) };
  } catch {
    throw new ToggleError(
      "NO_MESH",
      `${file} is not mesh:up's record (not JSON): start the mesh again (npm run mesh:up)`,
    );
  }
  if (typeof m.pid !== "number" || !processAlive(m.pid))
    throw new ToggleError(
      "NO_MESH",
      `no mesh is running: the mesh:up recorded in ${file} (pid ${m.pid}) has stopped (start one: npm run mesh:up)`,
    );
  return m;
}

/** The services a toggle can act on: each one mesh:up runs with an identity of its own. */
export function toggleable(m: MeshState): string[] {
  return Object.keys(m.ports ?? {}).filter((s) => m.identities?.[s] !== undefined);
}

export interface Target {
  service: string;
  port: number;
  adminPort: number | null;
  identity: { cert: string; key: string; bundle: string; crls: string };
  toggle: TogglePaths;
}

export function target(m: MeshState, service: string): Target {
  const names = toggleable(m);
  if (!names.includes(service)) {
    const why =
      service === "edge"
        ? "edge is mesh:up's own client identity and serves nothing"
        : `${JSON.stringify(service.slice(0, 40))} is not a service of this mesh`;
    throw new ToggleError("BAD_INPUT", `${why}: toggle one of ${names.join(", ")}`);
  }
  const identity = m.identities[service]!;
  return {
    service,
    port: m.ports[service]!,
    adminPort: m.adminPorts?.[service] ?? null,
    identity,
    toggle: togglePaths(toggleDirOf(identity.cert, service)),
  };
}
