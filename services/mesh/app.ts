// What a mesh runtime hosts: an app handed to it where the process starts. The runtime knows
// no app and no list of names; an app is a function that gets the runtime's parts and returns
// either routes (an in-process TypeScript service) or a forwarder (the sidecar, in front of an
// app in another process). services/apps/index.ts registers the in-process demo apps.
import type { Route } from "./server.ts";
import type { Upstreams } from "./client.ts";
import type { MeshLogger } from "./log.ts";
import type { MeshMetrics } from "./metrics.ts";
import type { TlsMaterial } from "./material.ts";
import type { Forward, Splice } from "./forward.ts";

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

export type { Forward, ForwardPeer, MeshRequest, MeshResponse, Splice, SpliceGate } from "./forward.ts";

export interface AppInstance {
  /** An in-process app: the server matches these after the policy allowed the request. */
  readonly routes?: readonly Route[];
  /** Or a forwarder: every allowed request goes to it whatever its path. */
  readonly forward?: Forward;
  /** With forward: HTTP/1.1 connections handed over whole (see forward.ts), HTTP/2 ones still to forward. */
  readonly splice?: Splice;
  /** New TLS material is in force (a renewal, a new bundle or CRLs). */
  setMaterial?(m: TlsMaterial): void;
  close?(): Promise<void>;
}

export type App = (ctx: AppContext) => AppInstance | Promise<AppInstance>;

/** An app that is only a list of routes. */
export function routesApp(make: (ctx: AppContext) => readonly Route[]): App {
  return (ctx) => ({ routes: make(ctx) });
}
