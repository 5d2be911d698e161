// The benchmark's baselines: a bare Node https server with the mesh's certificates, client
// certificates required and verified (bundle + CRLs); with --identity it also reads each peer's CN.
import { createServer } from "node:https";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";

const args = process.argv.slice(2);
const identity = args.includes("--identity");
const [pki = "./pki", name = "payment.internal"] = args.filter((a) => a !== "--identity");

// The least a server that knows its callers must do: read the peer certificate once per TLS
// connection and answer each request with the caller's name. No identity checks, no policy,
// no logging: what the mesh does beyond this is what the targets measure.
const callers = new WeakMap<TLSSocket, string>();
const callerOf = (sock: TLSSocket): string => {
  let caller = callers.get(sock);
  if (caller === undefined) {
    const cn = sock.getPeerCertificate().subject?.CN;
    caller = String(cn ?? "").split(".")[0]!;
    callers.set(sock, caller);
  }
  return caller;
};

const fixedBody = JSON.stringify({ service: "payment", caller: "order" });
const server = createServer(
  {
    cert: readFileSync(join(pki, "certs", `${name}.crt`)),
    key: readFileSync(join(pki, "certs", `${name}.key`)),
    ca: readFileSync(join(pki, "bundle.pem")),
    crl: readFileSync(join(pki, "crls.pem")),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.2",
  },
  (req, res) => {
    req.resume();
    const body = identity
      ? JSON.stringify({ service: "payment", caller: callerOf(req.socket as TLSSocket) })
      : fixedBody;
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  },
);
// Prepended, like the mesh's listener, so the identity is cached before the HTTP layer reads a byte.
if (identity) server.prependListener("secureConnection", (sock: TLSSocket) => void callerOf(sock));
server.keepAliveTimeout = 5_000;
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  console.log(JSON.stringify({ event: "listening", port: typeof a === "object" && a ? a.port : 0, identity }));
});
process.on("SIGTERM", () => process.exit(0));
