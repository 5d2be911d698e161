// What the server hands a forwarder (the sidecar's inbound side, see app.ts): the request, its
// answer, and the caller as a forwarder needs it. Its own module, so that the server and app.ts
// both import it without importing each other.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { PeerIdentity } from "./peer-identity.ts";

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
