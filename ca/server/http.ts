// The HTTP edges of the CA server: refusals with a status and a one-line reason,
// bounded bodies, media types, base64 transfer encoding, Bearer tokens.
import type { IncomingMessage, ServerResponse } from "node:http";

/** A refusal: the status, a one-line reason for the body, and a stable code for the log. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    /** The name the request was about, once known (for the log). */
    readonly subject?: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  // One line, whatever a reason contains: it may quote a name a peer sent.
  const line = text.replace(/[\r\n]+/g, " ").slice(0, 500);
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", ...headers });
  res.end(`${line}\n`);
}

/** The media type of a Content-Type header, lower case, without parameters. */
export function mediaType(header: string | undefined): string {
  return (header ?? "").split(";")[0]!.trim().toLowerCase();
}

/** Reads a request body of at most `limit` bytes; a longer one is refused with 413 before it is all read. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners("data");
        req.resume();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function tooLarge(limit: number): HttpError {
  return new HttpError(
    413,
    "body_too_large",
    `the request body is larger than ${limit} bytes: a CSR is a few hundred`,
    { Connection: "close" },
  );
}

/**
 * The body as EST sends it: base64 (Content-Transfer-Encoding: base64, RFC 7030 3.2.2),
 * line breaks allowed. Anything else is refused rather than guessed at.
 */
export function decodeBase64(body: Buffer): Uint8Array {
  const text = body.toString("latin1").replace(/[\r\n\t ]+/g, "");
  if (text.length === 0)
    throw new HttpError(400, "malformed_csr", "the request body is empty: send the base64 of a DER PKCS#10 CSR");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 === 1) {
    throw new HttpError(
      400,
      "malformed_csr",
      "the request body is not base64: send the base64 of a DER PKCS#10 CSR (Content-Transfer-Encoding: base64)",
    );
  }
  return new Uint8Array(Buffer.from(text, "base64"));
}

/** The token of `Authorization: Bearer <token>`, or a 401 that says what is missing. */
export function bearerToken(req: IncomingMessage): string {
  const header = req.headers.authorization;
  const m = /^Bearer[ ]+([!-~]{1,200})$/i.exec(header ?? "");
  if (!m) {
    throw new HttpError(
      401,
      "token_missing",
      header
        ? 'the Authorization header is not "Bearer <token>"'
        : "enrolment needs a one-time token: Authorization: Bearer <token> (from: npm run ca -- token --domain NAME)",
      { "WWW-Authenticate": 'Bearer realm="est"' },
    );
  }
  return m[1]!;
}
