// A hostile client for the abuse tests: POSTs simpleenroll with junk tokens and a well-formed
// CSR naming one service, from many loopback source addresses (Linux routes all of 127/8 to lo),
// a fresh TLS connection each, until SIGTERM or a request count; then prints what it got as JSON.
//   node --import tsx test/helpers/junk-flood.ts <ca-url> <name> <first-host> <addresses> <concurrency> [requests]
import { request } from "node:https";
import { randomBytes } from "node:crypto";
import { makeCsr } from "./est.ts";

const [url, name, firstHost, addressCount, concurrencyArg, requestsArg] = process.argv.slice(2);
if (!url || !name || !firstHost || !addressCount || !concurrencyArg) {
  process.stderr.write(
    "usage: junk-flood.ts <ca-url> <name> <first-host 2..254> <addresses> <concurrency> [requests]\n",
  );
  process.exit(2);
}
const first = Number(firstHost);
const addresses = Array.from({ length: Number(addressCount) }, (_, i) => `127.0.0.${first + i}`);
const limit = requestsArg ? Number(requestsArg) : Infinity;
const body = (await makeCsr(name)).body;
const statuses: Record<string, number> = {};
let sent = 0;
let errors = 0;
let stopping = false;
process.once("SIGTERM", () => (stopping = true));

function one(localAddress: string): Promise<void> {
  // A token of the right shape that no CA ever made.
  const token = `mt1.${randomBytes(32).toString("base64url")}.${randomBytes(32).toString("base64url")}`;
  return new Promise((resolve) => {
    const req = request(
      `${url}/.well-known/est/simpleenroll`,
      {
        method: "POST",
        agent: false,
        localAddress,
        rejectUnauthorized: false,
        timeout: 10_000,
        headers: {
          "Content-Type": "application/pkcs10",
          "Content-Transfer-Encoding": "base64",
          Authorization: `Bearer ${token}`,
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => {
          statuses[res.statusCode ?? 0] = (statuses[res.statusCode ?? 0] ?? 0) + 1;
          resolve();
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => {
      errors++;
      resolve();
    });
    req.end(body);
  });
}

let next = 0;
async function worker(): Promise<void> {
  while (!stopping && sent < limit) {
    sent++;
    await one(addresses[next++ % addresses.length]!);
  }
}

// Said once the first answer is back, so a test knows the flood is on.
let announced = false;
const started = setInterval(() => {
  if (!announced && Object.keys(statuses).length > 0) {
    announced = true;
    process.stderr.write("flooding\n");
  }
}, 50);
await Promise.all(Array.from({ length: Number(concurrencyArg) }, () => worker()));
clearInterval(started);
process.stdout.write(`${JSON.stringify({ sent, statuses, errors })}\n`);
