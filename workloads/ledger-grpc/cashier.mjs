// cashier: a small HTTP app that records each payment in the ledger over gRPC. It calls the
// ledger as a gRPC client in plaintext to its own sidecar's outbound listener
// (MESH_UPSTREAM_LEDGER); the sidecar opens mTLS to the ledger's sidecar as cashier. So every
// call crosses two sidecars, and the ledger sees cashier as the caller.
//   POST /pay {"orderId", "amount"} -> 201 {"recorded": true, "entry", "recordedBy"}
//   GET  /entries                   -> the ledger's entries (gRPC List)
import { createServer } from "node:http";
import { grpc, ledger } from "./proto.mjs";

const upstream = process.env.MESH_UPSTREAM_LEDGER ?? "";
const target = upstream.replace(/^http:\/\//, "");
const client = new ledger.Ledger(target, grpc.credentials.createInsecure());
const MAX_BODY = 64 * 1024;

function answer(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
  res.end(data);
}

/** A gRPC error as the cashier's caller sees it: 403 for PERMISSION_DENIED, else 502. */
function failed(res, err) {
  answer(res, err.code === grpc.status.PERMISSION_DENIED ? 403 : 502, {
    error: "ledger_failed",
    grpcStatus: err.code,
    message: String(err.details ?? err.message).slice(0, 300),
  });
}

const server = createServer((req, res) => {
  const deadline = Date.now() + 10_000;
  if (req.method === "GET" && req.url === "/healthz") return answer(res, 200, { service: "cashier" });
  if (req.method === "GET" && req.url === "/entries") {
    return client.List({}, { deadline }, (err, out) => (err ? failed(res, err) : answer(res, 200, out)));
  }
  if (req.method !== "POST" || req.url !== "/pay") return answer(res, 404, { error: "not_found" });
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (c) => {
    body += c;
    if (body.length > MAX_BODY) req.destroy();
  });
  req.on("end", () => {
    let charge;
    try {
      const b = JSON.parse(body || "{}");
      charge = { orderId: String(b.orderId ?? ""), amount: Number(b.amount) };
      if (!charge.orderId || !Number.isSafeInteger(charge.amount) || charge.amount <= 0) throw new Error("bad");
    } catch {
      return answer(res, 400, {
        error: "bad_request",
        message: 'expected {"orderId": "...", "amount": <positive integer>}',
      });
    }
    client.Record(charge, { deadline }, (err, receipt) =>
      err ? failed(res, err) : answer(res, 201, { recorded: true, ...receipt }),
    );
  });
});

const port = Number(process.env.MESH_APP_PORT ?? 0);
server.listen(port, "127.0.0.1", () => {
  console.log(JSON.stringify({ event: "app.listening", service: "cashier", port: server.address().port }));
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
