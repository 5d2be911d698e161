// The sidecar bench's app: a plain node:http server on loopback that does what payment's
// GET /healthz does in the mesh process (answer with the caller's name), reading the caller
// from the sidecar's x-forwarded-client-cert, as an app behind a sidecar does. Compiled with
// esbuild into the bench's temporary folder, so no tsx runs in the measured process.
import { createServer } from "node:http";

/** The caller's name from XFCC's URI (spiffe://<domain>/<name>), or "none" (a direct call). */
function callerOf(xfcc: string | string[] | undefined): string {
  if (typeof xfcc !== "string") return "none";
  const m = /;URI=spiffe:\/\/[^/;,]+\/([^;,"]+)/.exec(xfcc);
  return m ? m[1]! : "none";
}

const server = createServer((req, res) => {
  req.resume();
  const body = JSON.stringify({ service: "payment", caller: callerOf(req.headers["x-forwarded-client-cert"]) });
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
// As long as the sidecar's pool keeps a connection (and longer than Node's 5 s default).
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  console.log(JSON.stringify({ event: "listening", port: typeof a === "object" && a ? a.port : 0 }));
});
process.on("SIGTERM", () => process.exit(0));
