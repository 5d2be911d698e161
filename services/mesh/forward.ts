// What the server hands a forwarder (the sidecar's inbound side, see app.ts): the request, its
// answer, and the caller as a forwarder needs it. Its own module, so that the server and app.ts
// both import it without importing each other.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { TLSSocket } from "node:tls";
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

/**
 * What the mesh server lends a splice for one HTTP/1.1 connection it hands over whole (the
 * sidecar's inbound side, sidecar/splice.ts): the caller, the policy's verdict on each request
 * logged and counted as the server's own, and the server's limits.
 */
export interface SpliceGate {
  readonly peer: ForwardPeer;
  readonly limits: {
    readonly headersTimeoutMs: number;
    readonly requestTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
    readonly maxHeaderSize: number;
  };
  /** The verdict on one request (logged as authz.denied / authz.would_deny, counted). */
  admit(method: string, path: string): SpliceAdmission;
  /** The connection was made under an earlier certificate of this server: close it after its answer. */
  draining(): boolean;
  /** Logs a request that is not valid HTTP/1.1 or came too slowly (http.client_error); the status to answer it with. */
  clientError(code: string, detail: string): number;
}

export type SpliceAdmission =
  | {
      readonly allow: true;
      /** The answer is complete (or the exchange broke: 499, 502, 503): log and count it. */
      done(status: number): void;
    }
  | { readonly allow: false; readonly status: 403; readonly body: string };

/** Takes an authenticated HTTP/1.1 connection whole, instead of node:http's parser. */
export type Splice = (sock: TLSSocket, gate: SpliceGate) => void;
