// gRPC's way of saying no: a trailers-only answer (HTTP 200, grpc-status and grpc-message in
// the one HEADERS frame that ends the stream), so a gRPC client sees PERMISSION_DENIED or
// UNAVAILABLE with the reason, never a broken stream or an HTTP status it does not read.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";

/** The gRPC status codes the mesh itself answers with (grpc/doc/statuscodes.md). */
export const GRPC_PERMISSION_DENIED = 7;
export const GRPC_UNAVAILABLE = 14;
export const GRPC_DEADLINE_EXCEEDED = 4;

export function isGrpc(req: IncomingMessage | Http2ServerRequest): boolean {
  const t = req.headers["content-type"];
  return typeof t === "string" && t.startsWith("application/grpc");
}

/** grpc-message is percent-encoded UTF-8: bytes outside 0x20-0x7E, and '%' itself. */
export function grpcMessage(text: string): string {
  let out = "";
  for (const b of Buffer.from(text.slice(0, 1024), "utf8")) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export function sendGrpcStatus(
  res: ServerResponse | Http2ServerResponse,
  peer: { inFlight: number } | undefined,
  code: number,
  message: string,
): void {
  if (res.headersSent) return;
  if (peer) peer.inFlight--;
  const headers = {
    "content-type": "application/grpc",
    "grpc-status": String(code),
    "grpc-message": grpcMessage(message),
  };
  if ("stream" in res && !res.stream.destroyed) {
    res.stream.respond({ ":status": 200, ...headers }, { endStream: true });
    return;
  }
  (res as ServerResponse).writeHead(200, headers);
  res.end();
}
