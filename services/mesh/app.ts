// What a mesh runtime hosts: an app handed to it where the process starts. The runtime knows
// no app and no list of names; an app is a function that gets the runtime's parts and returns
// either routes (an in-process TypeScript service) or a forwarder (the sidecar, in front of an
// app in another process). services/apps/index.ts registers the in-process demo apps.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Route } from "./server.ts";
import type { Upstreams } from "./client.ts";
import type { MeshLogger } from "./log.ts";
import type { MeshMetrics } from "./metrics.ts";
import type { TlsMaterial } from "./material.ts";
import type { PeerIdentity } from "./peer-identity.ts";

/** What the runtime gives an app when it starts it. */
export interface AppContext {
  /** The identity this process serves as (`payment`). */
  readonly service: string;
  /** mTLS calls to the upstreams the process was given (--upstream). */
  readonly upstreams: Upstreams;
  readonly log: MeshLogger;
  readonly metrics: MeshMetrics;
  /** The TLS material in force at start; setMaterial() hears of every change after. */
  readonly material: TlsMaterial;
}

export type MeshRequest = IncomingMessage | Http2ServerRequest;
export type MeshResponse = ServerResponse | Http2ServerResponse;

/** The caller of an authorized request, as a forwarder needs it. */
export interface ForwardPeer {
  readonly identity: PeerIdentity;
  /** The caller's leaf certificate as DER (for XFCC's Hash). */
  readonly der: Buffer;
  /** Its SANs as Node renders them ("DNS:order.internal, URI:spiffe://…"). */
  readonly san: string | undefined;
  readonly subject: string | undefined;
}

/**
 * Hands an authorized request on and answers it. It calls `done(status)` once the answer is
 * complete (or the exchange broke: status 499 or 502/503), so the server logs and counts it.
 */
export type Forward = (req: MeshRequest, res: MeshResponse, peer: ForwardPeer, done: (status: number) => void) => void;

export interface AppInstance {
  /** An in-process app: the server matches these after the policy allowed the request. */
  readonly routes?: readonly Route[];
  /** Or a forwarder: every allowed request goes to it whatever its path. */
  readonly forward?: Forward;
  /** New TLS material is in force (a renewal, a new bundle or CRLs). */
  setMaterial?(m: TlsMaterial): void;
  close?(): Promise<void>;
}

export type App = (ctx: AppContext) => AppInstance | Promise<AppInstance>;

/** An app that is only a list of routes. */
export function routesApp(make: (ctx: AppContext) => readonly Route[]): App {
  return (ctx) => ({ routes: make(ctx) });
}
