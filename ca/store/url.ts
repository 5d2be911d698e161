// Where the CA's ledger lives: the SQLite file in the state folder (the default), or a
// PostgreSQL database shared by several `ca serve` replicas (--store / MESH_CA_STORE).
import { userInfo } from "node:os";
import { CaError, badInput } from "../errors.ts";
import type { PgConfig } from "./pg-sync.ts";

export type StoreSetting = { kind: "sqlite" } | { kind: "postgres"; config: PgConfig; shown: string };

/**
 * Reads a store setting: empty or "sqlite" is the state folder's ca.db; a postgres:// URL
 * (postgres://user@host:5432/db, or postgres:///db?host=/var/run/postgresql for a socket)
 * is PostgreSQL. A password is refused: it would sit in `ps`, shell history and logs.
 */
export function parseStore(value: string | undefined): StoreSetting {
  if (value === undefined || value === "" || value === "sqlite") return { kind: "sqlite" };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw badInput(
      `--store ${JSON.stringify(value.slice(0, 80))} is neither "sqlite" nor a postgres:// URL (e.g. postgres://ca@db.internal/mesh_ca)`,
    );
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw badInput(
      `--store: ${url.protocol} is not a store this CA knows: use sqlite (the default) or postgres://user@host/db`,
    );
  }
  if (url.password) {
    throw new CaError(
      "BAD_INPUT",
      "--store must not carry a password: put it in PGPASSWORD or ~/.pgpass (or use peer/certificate auth), never on the command line",
    );
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (!database)
    throw badInput(`--store ${url.protocol}//… names no database: add one, e.g. postgres://ca@db.internal/mesh_ca`);
  const socket = url.searchParams.get("host");
  for (const k of url.searchParams.keys()) {
    if (k !== "host")
      throw badInput(
        `--store: the parameter ${JSON.stringify(k.slice(0, 40))} is not supported (only host=<socket folder>)`,
      );
  }
  const config: PgConfig = {
    host: socket ?? (url.hostname ? decodeURIComponent(url.hostname).replace(/^\[|\]$/g, "") : undefined),
    port: url.port ? Number(url.port) : undefined,
    // As libpq: PGUSER, else the operating system's user name (pg itself would need USER set).
    user: url.username ? decodeURIComponent(url.username) : process.env.PGUSER || userInfo().username,
    database,
    application_name: "mesh-ca",
  };
  const shown = `postgres://${config.user ? `${config.user}@` : ""}${url.host}/${database}${socket ? `?host=${socket}` : ""}`;
  return { kind: "postgres", config, shown };
}
