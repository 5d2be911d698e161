// The benchmark's baseline: a bare Node https server with the mesh's certificates, client
// certificates required and verified (bundle + CRLs), and nothing else.
import { createServer } from "node:https";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const [pki = "./pki", name = "payment.internal"] = process.argv.slice(2);
const body = JSON.stringify({ service: "payment", caller: "order" });
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
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  },
);
server.keepAliveTimeout = 5_000;
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  console.log(JSON.stringify({ event: "listening", port: typeof a === "object" && a ? a.port : 0 }));
});
process.on("SIGTERM", () => process.exit(0));
