// The ledger's gRPC definitions, loaded from ledger.proto for the server and the client.
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const definition = protoLoader.loadSync(fileURLToPath(new URL("./ledger.proto", import.meta.url)), {
  keepCase: false,
  longs: Number,
  defaults: true,
});
export const ledger = grpc.loadPackageDefinition(definition).ledger;
export { grpc };
