// A small, strict HTTP/1.1 reader for a proxy that passes bytes on rather than re-encoding them
// (the sidecar's inbound splice): a request head (method, target, headers and the body's
// framing), a response head (status and framing), and a chunked body's framing, read as it
// streams past. Strict because the bytes go on to another parser: anything two parsers could
// read two ways (Content-Length with Transfer-Encoding, two Content-Lengths, obs-fold, a bare LF
// or CR, a space before a colon, a bad chunk size) is refused, never guessed at (RFC 9112 6.3,
// 11.2: request smuggling). No I/O here.

/** Why a head or a body was refused: an llhttp-like code, for the log, and a sentence. */
export interface Http1Refusal {
  readonly ok: false;
  readonly code: string;
  readonly detail: string;
}

export interface RequestHead {
  readonly ok: true;
  readonly method: string;
  /** The request target as sent (origin-form, or `*` for OPTIONS). */
  readonly target: string;
  readonly version: "HTTP/1.1" | "HTTP/1.0";
  /** The header lines to pass on, each `name: value` as received, hop-by-hop ones left out (see DROP). */
  readonly lines: readonly string[];
  /** A body of this many bytes follows (0: none), unless chunked. */
  readonly contentLength: number;
  readonly chunked: boolean;
  /** The client wants the connection closed after this exchange (Connection: close, or HTTP/1.0). */
  readonly close: boolean;
  /** `Expect: 100-continue`: the client may hold its body back until told to send it. */
  readonly expectContinue: boolean;
  /** `te` asked for trailers (passed on as `te: trailers`, as gRPC needs). */
  readonly teTrailers: boolean;
}

export interface ResponseHead {
  readonly ok: true;
  readonly status: number;
  /** -1: no Content-Length. */
  readonly contentLength: number;
  readonly chunked: boolean;
  /** The server closes after this response (Connection: close, or HTTP/1.0 without keep-alive). */
  readonly close: boolean;
  /** Headers its Connection names besides close and keep-alive: for this hop only, not passed on. */
  readonly options: readonly string[] | undefined;
  /** Keep-Alive's `timeout=` in seconds: how long the server says it keeps the connection idle. */
  readonly keepAliveS: number | undefined;
}

/** Headers a proxy never passes on (RFC 9110 7.6.1), plus the one only the sidecar sets. */
const DROP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "upgrade",
  "http2-settings",
  "te",
  "x-forwarded-client-cert",
]);
/** Headers that say where a message ends, or to whom: never removable by a Connection option. */
const FRAMING = new Set(["content-length", "transfer-encoding", "host"]);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Token characters (RFC 9110 5.6.2) by char code: a header name is checked without a regex. */
const TCHAR = new Uint8Array(128);
for (const ch of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
  TCHAR[ch.charCodeAt(0)] = 1;
const TARGET = /^[\x21-\x7e]+$/;
const DIGITS = /^\d{1,15}$/;

function refuse(code: string, detail: string): Http1Refusal {
  return { ok: false, code, detail };
}

/** Where a field line's name ends (its colon), or -1: the name must be a token, the colon right after it. */
function nameEnd(line: string): number {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 58 /* : */) return i > 0 ? i : -1;
    if (c >= 128 || TCHAR[c] === 0) return -1;
  }
  return -1;
}

/** A field's value: after the colon, without its leading and trailing spaces and tabs (OWS). */
function fieldValue(line: string, colon: number): string {
  let a = colon + 1;
  let b = line.length;
  while (a < b && (line.charCodeAt(a) === 32 || line.charCodeAt(a) === 9)) a++;
  while (b > a && (line.charCodeAt(b - 1) === 32 || line.charCodeAt(b - 1) === 9)) b--;
  return line.slice(a, b);
}

/** The lengths of the request header names acted on: any other name is passed on without being lower-cased. */
const ACTED_ON = new Set([...DROP, ...FRAMING, "expect"].map((n) => n.length));
/** The same for an answer's: content-length, transfer-encoding, connection. */
const ANSWER_ACTED_ON = new Set([14, 17, 10]);

/**
 * What no head may hold, checked once over the whole head rather than per line (a loop: a
 * regex with look-arounds cost more than the rest of the parse): a control character but tab
 * (NUL, DEL …), or a CR or LF that is not part of a CRLF line end. Values may hold tab, visible
 * ASCII, space and obs-text.
 */
function badHead(head: string): Http1Refusal | undefined {
  for (let i = 0; i < head.length; i++) {
    const c = head.charCodeAt(i);
    if ((c >= 32 && c !== 127) || c === 9) continue;
    if (c === 13 && head.charCodeAt(i + 1) === 10) {
      i++;
      continue;
    }
    const firstLine = head.indexOf("\r\n");
    return refuse(
      firstLine === -1 || i < firstLine ? "HPE_INVALID_REQUEST_LINE" : "HPE_INVALID_HEADER_TOKEN",
      "a control character, or a CR or LF that does not end a line",
    );
  }
  return undefined;
}

/**
 * Reads one request head: `head` is its text (latin1) up to and without the blank line that
 * ends it. Returns the head, or why it is refused (always answered 400 and the connection closed).
 */
export function parseRequestHead(head: string): RequestHead | Http1Refusal {
  const bad = badHead(head);
  if (bad) return bad;
  const lines = head.split("\r\n");
  const requestLine = lines[0]!;
  const sp1 = requestLine.indexOf(" ");
  const sp2 = requestLine.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 < 0 || requestLine.indexOf(" ", sp2 + 1) !== -1)
    return refuse("HPE_INVALID_REQUEST_LINE", "the request line is not METHOD SP target SP version");
  const method = requestLine.slice(0, sp1);
  const target = requestLine.slice(sp1 + 1, sp2);
  const version = requestLine.slice(sp2 + 1);
  if (!TOKEN.test(method)) return refuse("HPE_INVALID_METHOD", "the method is not a token");
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0")
    return refuse("HPE_INVALID_VERSION", "only HTTP/1.1 and HTTP/1.0 are spoken here");
  if (!TARGET.test(target) || !(target.charCodeAt(0) === 47 /* / */ || (target === "*" && method === "OPTIONS")))
    return refuse("HPE_INVALID_URL", "the request target must be a path (origin-form)");
  const kept: string[] = [];
  let contentLength = -1;
  let chunked = false;
  let te = 0;
  let hosts = 0;
  let close = version === "HTTP/1.0";
  let expectContinue = false;
  let teTrailers = false;
  let options: string[] | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.charCodeAt(0);
    if (c === 32 || c === 9) return refuse("HPE_INVALID_HEADER_TOKEN", "a folded header line (obs-fold)");
    const colon = nameEnd(line);
    if (colon === -1) return refuse("HPE_INVALID_HEADER_TOKEN", "a header line that is not name: value");
    if (!ACTED_ON.has(colon)) {
      kept.push(line);
      continue;
    }
    const value = fieldValue(line, colon);
    const name = line.slice(0, colon).toLowerCase();
    switch (name) {
      case "content-length":
        if (contentLength !== -1) return refuse("HPE_UNEXPECTED_CONTENT_LENGTH", "two Content-Length headers");
        if (!DIGITS.test(value)) return refuse("HPE_INVALID_CONTENT_LENGTH", "a Content-Length that is not a number");
        contentLength = Number(value);
        break;
      case "transfer-encoding":
        if (++te > 1) return refuse("HPE_INVALID_TRANSFER_ENCODING", "two Transfer-Encoding headers");
        if (value.toLowerCase() !== "chunked")
          return refuse("HPE_INVALID_TRANSFER_ENCODING", "a Transfer-Encoding other than chunked");
        chunked = true;
        break;
      case "host":
        if (++hosts > 1) return refuse("HPE_INVALID_HEADER_TOKEN", "two Host headers");
        break;
      case "connection":
        for (const t of value.toLowerCase().split(",")) {
          const o = t.trim();
          if (o === "close") close = true;
          else if (o === "keep-alive" || o === "") continue;
          else if (FRAMING.has(o)) return refuse("HPE_INVALID_HEADER_TOKEN", `Connection names ${o}`);
          else (options ??= []).push(o);
        }
        continue;
      case "expect":
        if (value.toLowerCase() === "100-continue") expectContinue = true;
        break;
      case "te":
        if (value.toLowerCase().includes("trailers")) teTrailers = true;
        continue;
    }
    if (DROP.has(name)) continue;
    kept.push(line);
  }
  if (chunked && contentLength !== -1)
    return refuse("HPE_UNEXPECTED_CONTENT_LENGTH", "both Content-Length and Transfer-Encoding");
  if (chunked && version === "HTTP/1.0")
    return refuse("HPE_INVALID_TRANSFER_ENCODING", "Transfer-Encoding in an HTTP/1.0 request");
  if (hosts === 0 && version === "HTTP/1.1") return refuse("HPE_INVALID_HEADER_TOKEN", "no Host header");
  // Headers the client named in Connection are for this hop only.
  const pass = options ? kept.filter((l) => !options.includes(l.slice(0, l.indexOf(":")).toLowerCase())) : kept;
  return {
    ok: true,
    method,
    target,
    version,
    lines: pass,
    contentLength: contentLength === -1 ? 0 : contentLength,
    chunked,
    close,
    expectContinue,
    teTrailers,
  };
}

/** Reads a response head (text without the blank line), for its status and where its body ends. */
export function parseResponseHead(head: string): ResponseHead | Http1Refusal {
  const bad = badHead(head);
  if (bad) return bad;
  const lines = head.split("\r\n");
  const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0]!);
  if (!m) return refuse("HPE_INVALID_STATUS", "the status line is not HTTP/1.x NNN");
  let close = m[1] === "0";
  let contentLength = -1;
  let chunked = false;
  let te = false;
  let options: string[] | undefined;
  let keepAliveS: number | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.charCodeAt(0);
    if (c === 32 || c === 9) return refuse("HPE_INVALID_HEADER_TOKEN", "a folded header line (obs-fold)");
    const colon = nameEnd(line);
    if (colon === -1) return refuse("HPE_INVALID_HEADER_TOKEN", "a malformed header line");
    if (!ANSWER_ACTED_ON.has(colon)) continue;
    const name = line.slice(0, colon).toLowerCase();
    const value = fieldValue(line, colon).toLowerCase();
    if (name === "content-length") {
      if (!DIGITS.test(value) || (contentLength !== -1 && contentLength !== Number(value)))
        return refuse("HPE_INVALID_CONTENT_LENGTH", "a bad or repeated Content-Length");
      contentLength = Number(value);
    } else if (name === "transfer-encoding") {
      te = true;
      // The last coding decides: chunked, or the body runs to the connection's close.
      chunked = value.split(",").at(-1)!.trim() === "chunked";
    } else if (name === "connection") {
      for (const t of value.split(",")) {
        const o = t.trim();
        if (o === "close") close = true;
        else if (o === "keep-alive") {
          if (m[1] === "0") close = false;
        } else if (FRAMING.has(o)) return refuse("HPE_INVALID_HEADER_TOKEN", `Connection names ${o}`);
        else if (o !== "") (options ??= []).push(o);
      }
    } else if (name === "keep-alive") {
      const t = /(?:^|[,;\s])timeout=(\d{1,9})/.exec(value);
      if (t) keepAliveS = Number(t[1]);
    }
  }
  if (te && contentLength !== -1)
    return refuse("HPE_UNEXPECTED_CONTENT_LENGTH", "both Content-Length and Transfer-Encoding");
  // A body that is neither sized nor chunked ends when the connection does.
  if (te && !chunked) close = true;
  return { ok: true, status: Number(m[2]), contentLength, chunked, close, options, keepAliveS };
}

/** The longest chunk-size line (size and extensions) and trailer section read. */
const MAX_CHUNK_LINE = 1024;
const MAX_TRAILERS = 16 * 1024;

/** The chunked reader's states. */
const C = {
  Size: 0,
  Ext: 1,
  SizeLf: 2,
  Data: 3,
  DataCr: 4,
  DataLf: 5,
  Trailer: 6,
  TrailerLf: 7,
  EndLf: 8,
  Done: 9,
} as const;
type C = (typeof C)[keyof typeof C];

/**
 * A chunked body's framing (RFC 9112 7.1), read as it streams past without copying it: where
 * it ends, or that it is malformed. Sizes are hex digits only (no sign, no space, at most 8),
 * lines end in CRLF, extensions and trailers are bounded and free of control characters.
 */
export class ChunkedBody {
  private state: C = C.Size;
  private left = 0;
  private digits = 0;
  private lineLen = 0;
  private trailerLen = 0;
  private lineStart = true;
  error: string | undefined;

  get done(): boolean {
    return this.state === C.Done;
  }

  /**
   * Reads buf[from, to): returns where the body ended (once `done`), `to` if it goes on, or -1
   * with `error` set.
   */
  feed(buf: Uint8Array, from: number, to: number): number {
    let i = from;
    while (i < to) {
      switch (this.state) {
        case C.Data: {
          const n = Math.min(this.left, to - i);
          i += n;
          this.left -= n;
          if (this.left === 0) this.state = C.DataCr;
          continue;
        }
        case C.Size: {
          const b = buf[i]!;
          const h = hexValue(b);
          if (h >= 0) {
            if (++this.digits > 8) return this.fail("a chunk size of more than 8 hex digits");
            this.left = this.left * 16 + h;
          } else if (this.digits === 0) return this.fail("a chunk size that is not hex");
          else if (b === 59 /* ; */) this.state = C.Ext;
          else if (b === 13) this.state = C.SizeLf;
          else return this.fail("a chunk size followed by something other than ; or CRLF");
          if (++this.lineLen > MAX_CHUNK_LINE) return this.fail("a chunk-size line too long");
          i++;
          continue;
        }
        case C.Ext: {
          const b = buf[i]!;
          if (b === 13) this.state = C.SizeLf;
          else if (b !== 9 && (b < 0x20 || b === 0x7f)) return this.fail("a control character in a chunk extension");
          if (++this.lineLen > MAX_CHUNK_LINE) return this.fail("a chunk-size line too long");
          i++;
          continue;
        }
        case C.SizeLf:
          if (buf[i] !== 10) return this.fail("a chunk-size line not ended by CRLF");
          i++;
          this.lineLen = 0;
          this.digits = 0;
          if (this.left === 0) {
            this.state = C.Trailer;
            this.lineStart = true;
          } else this.state = C.Data;
          continue;
        case C.DataCr:
          if (buf[i] !== 13) return this.fail("chunk data longer than its size");
          i++;
          this.state = C.DataLf;
          continue;
        case C.DataLf:
          if (buf[i] !== 10) return this.fail("chunk data not ended by CRLF");
          i++;
          this.state = C.Size;
          continue;
        case C.Trailer: {
          const b = buf[i]!;
          if (++this.trailerLen > MAX_TRAILERS) return this.fail("a trailer section too large");
          i++;
          if (b === 13) {
            this.state = this.lineStart ? C.EndLf : C.TrailerLf;
            continue;
          }
          if (this.lineStart && (b === 32 || b === 9)) return this.fail("a folded trailer line (obs-fold)");
          if (b !== 9 && (b < 0x20 || b === 0x7f)) return this.fail("a control character in a trailer");
          this.lineStart = false;
          continue;
        }
        case C.TrailerLf:
          if (buf[i] !== 10) return this.fail("a trailer line not ended by CRLF");
          i++;
          this.state = C.Trailer;
          this.lineStart = true;
          continue;
        case C.EndLf:
          if (buf[i] !== 10) return this.fail("a chunked body not ended by CRLF");
          this.state = C.Done;
          return i + 1;
        case C.Done:
          return i;
      }
    }
    return i;
  }

  private fail(why: string): number {
    this.error = why;
    return -1;
  }
}

function hexValue(b: number): number {
  if (b >= 48 && b <= 57) return b - 48;
  if (b >= 97 && b <= 102) return b - 87;
  if (b >= 65 && b <= 70) return b - 55;
  return -1;
}
