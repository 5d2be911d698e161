// ledger: a gRPC server (@grpc/grpc-js) behind its sidecar. It speaks plaintext HTTP/2 (h2c) on
// loopback only; its sidecar terminates mTLS, applies the policy and tells it who called in
// x-forwarded-client-cert. Entries live in memory (a demo ledger, not a database).
import { grpc, ledger } from "./proto.mjs";

const entries = [];

/** The caller's name from the XFCC element the sidecar set: URI=spiffe://<domain>/<name>. */
function callerOf(call) {
  const xfcc = String(call.metadata.get("x-forwarded-client-cert")[0] ?? "");
  const uri = /(?:^|;)URI=("?)([^;"]+)\1/.exec(xfcc)?.[2];
  return uri ? uri.slice(uri.lastIndexOf("/") + 1) : "";
}

const server = new grpc.Server();
server.addService(ledger.Ledger.service, {
  Record(call, done) {
    const { orderId, amount } = call.request;
    if (!orderId || !(amount > 0))
      return done({ code: grpc.status.INVALID_ARGUMENT, details: "order_id and a positive amount are required" });
    const entry = { entry: entries.length + 1, orderId: String(orderId).slice(0, 200), amount, caller: callerOf(call) };
    entries.push(entry);
    done(null, { entry: entry.entry, recordedBy: entry.caller });
  },
  List(_call, done) {
    done(null, { entries });
  },
});

const port = Number(process.env.MESH_APP_PORT ?? 0);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) {
    console.error(`ledger: cannot listen on 127.0.0.1:${port}: ${err.message}`);
    process.exit(1);
  }
  console.log(JSON.stringify({ event: "app.listening", service: "ledger", port: bound }));
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => server.tryShutdown(() => process.exit(0)));
