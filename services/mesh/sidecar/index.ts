// The sidecar as an app the mesh runtime hosts (see ../app.ts): the runtime does the mTLS,
// identity, revocation, policy, logs and metrics of the inbound side as for any service; this
// adds the forwarding to the app (inbound.ts) and the loopback listeners for its calls
// (outbound.ts). docs/sidecar.md.
import type { App } from "../app.ts";
import { Inbound, describeApp, type AppAddress, type AppProtocol } from "./inbound.ts";
import { Outbound, type OutboundRoute } from "./outbound.ts";

export { parseAppAddress, type AppAddress, type AppProtocol } from "./inbound.ts";
export type { OutboundRoute } from "./outbound.ts";
export { XFCC, spiffeIdOf, xfccElement } from "./xfcc.ts";

export interface SidecarOptions {
  /** Where the app listens (loopback or unix socket). */
  app: AppAddress;
  appProtocol?: AppProtocol;
  /** The upstreams the app may call, each on its own loopback port. */
  outbound?: readonly OutboundRoute[];
  /** Told the outbound ports once they listen (also logged as `outbound.listening`). */
  onOutbound?: (ports: Readonly<Record<string, number>>) => void;
}

export function sidecarApp(o: SidecarOptions): App {
  return async (ctx) => {
    const inbound = new Inbound({
      service: ctx.service,
      app: o.app,
      protocol: o.appProtocol ?? "http1",
      log: ctx.log,
      material: ctx.material,
    });
    const outbound = new Outbound(ctx.service, o.outbound ?? [], ctx.material, ctx.log, ctx.metrics);
    let ports: Record<string, number>;
    try {
      ports = await outbound.listen();
    } catch (e) {
      inbound.close();
      await outbound.close();
      throw e;
    }
    for (const r of o.outbound ?? []) {
      ctx.log.info(
        { event: "outbound.listening", upstream: r.name, addr: r.addr, port: ports[r.name] },
        `${ctx.service}'s app calls ${r.name} at http://127.0.0.1:${ports[r.name]} (mTLS to ${r.addr} as ${ctx.service})`,
      );
    }
    ctx.log.info(
      { event: "sidecar.app", app: describeApp(o.app), protocol: o.appProtocol ?? "http1" },
      `forwarding allowed requests to the app at ${describeApp(o.app)} (${o.appProtocol ?? "http1"})`,
    );
    o.onOutbound?.(ports);
    return {
      forward: inbound.forward,
      splice: inbound.splice,
      setMaterial(m) {
        inbound.setMaterial(m);
        outbound.setMaterial(m);
      },
      async close() {
        inbound.close();
        await outbound.close();
      },
    };
  };
}
