// Where the services a service calls are, when they run on other machines: a peers file maps
// each peer's mesh name to an address, as /etc/hosts maps names, with the port. The address
// only says where to connect; who answers is still checked by its certificate
// (`payment.internal`), so a wrong address fails the handshake, it never reaches an impostor.
//
//   # peers: <name>.internal  <host>:<port>
//   payment.internal    10.0.0.3:7402
//   inventory.internal  inventory.prod.example:7403
//   order.internal      [fd00::2]:7401
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { MeshError } from "./errors.ts";
import { MESH_DOMAIN, isIdentityName } from "./names.ts";

/** Peer name (short, "payment") → "host:port", as --upstream takes it. */
export type PeerMap = Record<string, string>;

/** A DNS host name (RFC 1123 labels), for peers reached by name rather than address. */
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** Parses a peers file's text; errors name the file and line. Validates everything before returning anything. */
export function parsePeers(text: string, file: string): PeerMap {
  const peers: PeerMap = {};
  const lines = text.split(/\r?\n/);
  if (lines.length > 10_000)
    throw new MeshError(
      "BAD_ARGUMENT",
      `${file}: more than 10000 lines; a peers file lists the services one service calls`,
    );
  lines.forEach((raw, i) => {
    const where = `${file}:${i + 1}`;
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") return;
    const fields = line.split(/\s+/);
    if (fields.length !== 2)
      throw new MeshError(
        "BAD_ARGUMENT",
        `${where}: expected "<name>.${MESH_DOMAIN} <host>:<port>", e.g. "payment.${MESH_DOMAIN} 10.0.0.3:7402"`,
      );
    const [name, addr] = fields as [string, string];
    const suffix = `.${MESH_DOMAIN}`;
    const short = name.toLowerCase().endsWith(suffix) ? name.slice(0, -suffix.length).toLowerCase() : "";
    if (!isIdentityName(short))
      throw new MeshError(
        "BAD_ARGUMENT",
        `${where}: ${JSON.stringify(name.slice(0, 80))} is not a mesh name such as payment.${MESH_DOMAIN}`,
      );
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(addr);
    const host = m?.[1]?.startsWith("[") ? m[1].slice(1, -1) : m?.[1];
    const port = Number(m?.[2]);
    if (!m || !host || !(isIP(host) || HOSTNAME.test(host)) || (m[1]!.startsWith("[") && isIP(host) !== 6)) {
      throw new MeshError(
        "BAD_ARGUMENT",
        `${where}: ${JSON.stringify(addr.slice(0, 80))} is not <host>:<port> (an IPv4 address, [IPv6] or a host name, then a port)`,
      );
    }
    if (port < 1 || port > 65535) throw new MeshError("BAD_ARGUMENT", `${where}: port ${m[2]} is not 1-65535`);
    if (peers[short] !== undefined)
      throw new MeshError("BAD_ARGUMENT", `${where}: ${short}.${MESH_DOMAIN} is listed twice`);
    peers[short] = `${m[1]}:${port}`;
  });
  return peers;
}

export function readPeers(file: string): PeerMap {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new MeshError(
      "BAD_ARGUMENT",
      `cannot read --peers ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  return parsePeers(text, file);
}
