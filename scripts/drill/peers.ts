// Small peers the drill uses to look at the mesh from outside: which
// certificate a service serves, whether an old certificate still gets in, and
// a long-lived keep-alive connection that should be closed at retirement.
import { Agent, request } from "node:https";
import { connect } from "node:tls";

/** The serial of the certificate a service presents to a new handshake. */
export function servedSerial(port: number, servername: string, cert: Buffer, key: Buffer): Promise<string | undefined> {
  return new Promise((resolve) => {
    // Only the server's certificate is read here; whether it is trusted is not the question.
    const sock = connect({ host: "127.0.0.1", port, servername, cert, key, rejectUnauthorized: false }, () => {
      const serial = sock.getPeerCertificate().serialNumber?.toLowerCase();
      sock.end();
      resolve(serial);
    });
    sock.setTimeout(3_000, () => sock.destroy());
    sock.on("error", () => resolve(undefined));
    sock.on("close", () => resolve(undefined));
  });
}

function get(
  port: number,
  servername: string,
  opts: { ca: Buffer; cert: Buffer; key: Buffer; agent?: Agent | false; rejectUnauthorized?: boolean },
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, servername, path: "/healthz", method: "GET", timeout: 3_000, ...opts },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

/** True when a fresh connection with this certificate is refused before any HTTP answer. */
export async function tryOldCertificate(
  port: number,
  servername: string,
  ca: Buffer,
  who: { cert: Buffer; key: Buffer },
): Promise<boolean> {
  try {
    await get(port, servername, { ca, ...who, agent: false });
    return false;
  } catch {
    return true;
  }
}

/**
 * A client that holds one keep-alive connection open with an old certificate
 * and asks every 300 ms. It shows whether a service closes such connections
 * when their trust is withdrawn, or lets them linger.
 */
export class Straggler {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private timer?: NodeJS.Timeout;
  private readonly events: Array<{ at: number; kind: "ok" | "fail" | "closed" }> = [];

  constructor(private readonly o: { port: number; servername: string; ca: Buffer; cert: Buffer; key: Buffer }) {
    this.agent.on("free", (sock) => {
      if (!(sock as { straggled?: boolean }).straggled) {
        (sock as { straggled?: boolean }).straggled = true;
        sock.once("close", () => this.events.push({ at: Date.now(), kind: "closed" }));
      }
    });
  }

  start(): void {
    this.timer = setInterval(() => {
      // The service's own certificate changes generation during the drill; only its
      // treatment of *our* old certificate is under test, so its certificate is not checked.
      get(this.o.port, this.o.servername, {
        ca: this.o.ca,
        cert: this.o.cert,
        key: this.o.key,
        agent: this.agent,
        rejectUnauthorized: false,
      })
        .then((status) => this.events.push({ at: Date.now(), kind: status === 200 ? "ok" : "fail" }))
        .catch(() => this.events.push({ at: Date.now(), kind: "fail" }));
    }, 300);
  }

  /** What happened to the straggler after `since`. */
  summary(since: number): { closedAfter: boolean; failuresAfter: number; successesAfter: number } {
    const closeAt = this.events.find((e) => e.at >= since && e.kind === "closed")?.at;
    const after = closeAt === undefined ? [] : this.events.filter((e) => e.at > closeAt);
    return {
      closedAfter: closeAt !== undefined,
      failuresAfter: after.filter((e) => e.kind === "fail").length,
      successesAfter: after.filter((e) => e.kind === "ok").length,
    };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.agent.destroy();
  }
}
