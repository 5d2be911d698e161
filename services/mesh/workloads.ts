// The mesh's workloads file (mesh-workloads.toml): the apps, in any language, that join the mesh
// behind a sidecar, declared rather than coded. Parsed and validated strictly, as the policy is:
// every mistake is refused with its file:line, and nothing half-valid is returned. Pure: no I/O
// but reading the file, so mesh:up, the tools and the tests read the same thing.
import { readFileSync } from "node:fs";
import { parse, TomlError } from "smol-toml";
import { MeshError, messageOf } from "./errors.ts";
import { isIdentityName } from "./names.ts";
import { parseAppAddress, type AppAddress, type AppProtocol } from "./sidecar/inbound.ts";
import { KeyLines } from "./toml-lines.ts";

/** Where the app listens: a loopback port or unix socket mesh:up gives the app it starts, or an address of an app started elsewhere. */
export type WorkloadApp =
  | { readonly kind: "port"; readonly port: number }
  | { readonly kind: "socket"; readonly path: string }
  | { readonly kind: "address"; readonly address: AppAddress };

export interface Workload {
  /** Its mesh identity (certificate `<name>.internal`), and the policy table that guards it. */
  readonly name: string;
  /** The app's command line (argv; run from the workloads file's folder), or null for an app started elsewhere. */
  readonly command: readonly string[] | null;
  readonly app: WorkloadApp;
  readonly protocol: AppProtocol;
  /** The sidecar's mTLS port, which callers reach (0: any free one). */
  readonly port: number;
  /** Each upstream the app calls → the loopback port the app calls it on (0: any free one). */
  readonly upstreams: ReadonlyMap<string, number>;
  readonly line: number;
}

export interface Workloads {
  readonly file: string;
  /** In the file's order. */
  readonly workloads: readonly Workload[];
}

const KEYS = ["command", "address", "app_port", "app_socket", "protocol", "port", "upstreams"];
const PROTOCOLS: readonly AppProtocol[] = ["http1", "h2c"];

export function loadWorkloads(file: string, services: Iterable<string>): Workloads {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new MeshError("WORKLOADS_UNREADABLE", `${file}: cannot read the workloads file: ${messageOf(e)}`);
  }
  return parseWorkloads(text, file, services);
}

/**
 * Parse and validate. `services`: the names that serve without a sidecar (the built-in apps):
 * a workload may call them, and may not take their name.
 */
export function parseWorkloads(text: string, file: string, services: Iterable<string>): Workloads {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
      throw new MeshError("WORKLOADS_SYNTAX", `${file}:${e.line}:${e.column}: invalid TOML: ${first}`);
    }
    throw new MeshError("WORKLOADS_SYNTAX", `${file}: invalid TOML: ${messageOf(e)}`);
  }
  const lines = new KeyLines(text);
  const fail = (key: string, msg: string): never => {
    throw new MeshError("WORKLOADS_INVALID", `${file}:${lines.of(key)}: ${msg}`);
  };
  const builtIn = new Set(services);
  const out: Workload[] = [];
  const ports = new Map<number, string>();
  const claim = (port: number, key: string, what: string) => {
    if (port === 0) return;
    const before = ports.get(port);
    if (before) fail(key, `${what} is port ${port}, already ${before}: every port in the file must differ`);
    ports.set(port, what);
  };
  for (const [name, table] of Object.entries(doc)) {
    if (!isIdentityName(name))
      fail(
        name,
        `"${name}" is not a mesh name: a workload is named for its identity, one lower-case DNS label such as [billing] or [billing-api]`,
      );
    if (builtIn.has(name))
      fail(
        name,
        `[${name}] is a built-in service of the mesh (${[...builtIn].join(", ")}): name the workload otherwise`,
      );
    if (!isPlainTable(table)) fail(name, `[${name}] must be a table, e.g. [${name}] command = ["python3", "app.py"]`);
    const t = table as Record<string, unknown>;
    for (const k of Object.keys(t)) {
      if (!KEYS.includes(k)) fail(`${name}.${k}`, `unknown key "${k}" in [${name}] (allowed: ${KEYS.join(", ")})`);
    }
    const command = t.command === undefined ? null : argv(t.command, `${name}.command`, fail);
    if ((command === null) === (t.address === undefined)) {
      fail(
        name,
        `[${name}] needs either "command" (the app mesh:up starts, e.g. command = ["python3", "app.py"]) or "address" (an app started elsewhere, e.g. address = "http://127.0.0.1:8080"), not ${command ? "both" : "neither"}`,
      );
    }
    let app: WorkloadApp;
    if (command) {
      if ((t.app_port === undefined) === (t.app_socket === undefined))
        fail(
          name,
          `[${name}] needs either "app_port" (the loopback port its app listens on) or "app_socket" (an absolute unix socket path), not ${t.app_port === undefined ? "neither" : "both"}`,
        );
      if (t.app_port !== undefined) {
        app = { kind: "port", port: portOf(t.app_port, `${name}.app_port`, fail) };
        claim(app.port, `${name}.app_port`, `${name}.app_port`);
      } else {
        if (typeof t.app_socket !== "string" || !t.app_socket.startsWith("/") || t.app_socket.includes("\0"))
          fail(`${name}.app_socket`, `${name}.app_socket must be an absolute path, e.g. "/run/${name}.sock"`);
        app = { kind: "socket", path: t.app_socket as string };
      }
    } else {
      for (const k of ["app_port", "app_socket"])
        if (t[k] !== undefined)
          fail(
            `${name}.${k}`,
            `${name}.${k} is for an app mesh:up starts ("command"); "address" already says where this one listens`,
          );
      if (typeof t.address !== "string")
        fail(
          `${name}.address`,
          `${name}.address must be a string such as "http://127.0.0.1:8080" or "unix:/run/app.sock"`,
        );
      try {
        app = { kind: "address", address: parseAppAddress(t.address as string) };
      } catch (e) {
        fail(`${name}.address`, `${name}.address: ${messageOf(e).replace(/^--app /, "")}`);
      }
    }
    let protocol: AppProtocol = "http1";
    if (t.protocol !== undefined) {
      if (!PROTOCOLS.includes(t.protocol as AppProtocol))
        fail(`${name}.protocol`, `${name}.protocol must be "http1" or "h2c" (HTTP/2 without TLS: a gRPC server)`);
      protocol = t.protocol as AppProtocol;
    }
    if (t.port === undefined)
      fail(name, `[${name}] needs "port": the sidecar's mTLS port, which callers reach (0: any free one)`);
    const port = portOf(t.port, `${name}.port`, fail);
    claim(port, `${name}.port`, `${name}.port`);
    const upstreams = new Map<string, number>();
    if (t.upstreams !== undefined) {
      if (!isPlainTable(t.upstreams))
        fail(
          `${name}.upstreams`,
          `${name}.upstreams must be a table of name = local port, e.g. upstreams = { payment = 15002 }`,
        );
      for (const [u, p] of Object.entries(t.upstreams as Record<string, unknown>)) {
        const key = `${name}.upstreams.${u}`;
        if (!isIdentityName(u)) fail(key, `${key}: "${u}" is not a mesh name`);
        if (u === name) fail(key, `${key}: a workload does not call itself through its sidecar`);
        upstreams.set(u, portOf(p, key, fail));
        claim(upstreams.get(u)!, key, key);
      }
    }
    out.push(
      Object.freeze({ name, command, app: Object.freeze(app!), protocol, port, upstreams, line: lines.of(name) }),
    );
  }
  // Every upstream must be something the mesh serves: a built-in service or another workload.
  const names = new Set([...builtIn, ...out.map((w) => w.name)]);
  for (const w of out) {
    for (const u of w.upstreams.keys()) {
      if (!names.has(u))
        fail(
          `${w.name}.upstreams.${u}`,
          `${w.name}.upstreams names "${u}", which is neither a workload in this file nor a built-in service (${[...builtIn].join(", ")})`,
        );
    }
  }
  return Object.freeze({ file, workloads: Object.freeze(out) });
}

function argv(v: unknown, key: string, fail: (k: string, m: string) => never): readonly string[] {
  if (
    !Array.isArray(v) ||
    v.length === 0 ||
    v.some((x) => typeof x !== "string" || x.length === 0 || x.includes("\0"))
  ) {
    fail(
      key,
      `${key} must be a non-empty array of strings, the program and its arguments (no shell), e.g. ["python3", "app.py"]`,
    );
  }
  return Object.freeze([...(v as string[])]);
}

function portOf(v: unknown, key: string, fail: (k: string, m: string) => never): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 65535)
    fail(key, `${key} must be a port number 0-65535 (0: any free one)`);
  return v as number;
}

function isPlainTable(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** The environment variable an app reads an upstream's URL from: MESH_UPSTREAM_<NAME>, `-` as `_`. */
export function upstreamEnvName(name: string): string {
  return `MESH_UPSTREAM_${name.toUpperCase().replace(/-/g, "_")}`;
}
