// The HTTP side of a service, on the wire: HEAD answers like GET without a body, and a body
// that is not declared JSON is refused (415) before any handler sees it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:tls";
import { readFileSync } from "node:fs";
import { freshPki, start, call, identity, type TestPki, type TestService } from "./mesh-fixtures.ts";
import { ev } from "./helpers/events.ts";

let pki: TestPki;
let pay: TestService;

before(async () => {
  pki = await freshPki();
  pay = await start(pki, "payment");
});

after(async () => {
  await pay.svc.close();
  pki.cleanup();
});

/** One raw HTTP/1.1 exchange over mTLS as `who`; the bytes the server sent, until it closed. */
function raw(who: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(
      {
        host: "127.0.0.1",
        port: pay.svc.port,
        servername: "payment.internal",
        ca: readFileSync(pki.ca.paths.bundle),
        ...identity(pki, who),
      },
      () => s.end(request),
    );
    let text = "";
    s.setEncoding("utf8");
    s.on("data", (c: string) => (text += c));
    s.on("close", () => resolve(text));
    s.on("error", reject);
    s.setTimeout(5_000, () => s.destroy(new Error(`timed out; got ${JSON.stringify(text)}`)));
  });
}

function headersOf(response: string): { status: number; headers: Record<string, string>; body: string } {
  const end = response.indexOf("\r\n\r\n");
  assert.ok(end > 0, `a complete head: ${JSON.stringify(response)}`);
  const [statusLine, ...lines] = response.slice(0, end).split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) headers[l.slice(0, l.indexOf(":")).toLowerCase()] = l.slice(l.indexOf(":") + 1).trim();
  return { status: Number(statusLine!.split(" ")[1]), headers, body: response.slice(end + 4) };
}

test("HEAD /healthz answers 200 with GET's headers and no body", async () => {
  const get = headersOf(
    await raw("order", "GET /healthz HTTP/1.1\r\nHost: payment.internal\r\nConnection: close\r\n\r\n"),
  );
  assert.equal(get.status, 200);
  const since = pay.logs.lines.length;
  const head = headersOf(
    await raw("order", "HEAD /healthz HTTP/1.1\r\nHost: payment.internal\r\nConnection: close\r\n\r\n"),
  );
  assert.equal(head.status, 200);
  assert.equal(head.headers["content-type"], "application/json");
  assert.equal(head.headers["content-length"], String(Buffer.byteLength(get.body)));
  assert.equal(head.body, "", "no body after the head");
  const l = await pay.logs.wait(
    ev("request", (x) => x.method === "HEAD"),
    2_000,
    since,
  );
  assert.equal(l.status, 200);
  assert.equal(l.path, "/healthz");
});

test("HEAD is authorized as GET: a caller refused GET is refused HEAD", async () => {
  const head = headersOf(
    await raw("inventory", "HEAD /healthz HTTP/1.1\r\nHost: payment.internal\r\nConnection: close\r\n\r\n"),
  );
  assert.equal(head.status, 403);
  assert.equal(head.body, "");
});

test("a body sent as text/plain to a JSON route gets 415 with a one-line reason, and charges nothing", async () => {
  const body = JSON.stringify({ orderId: "plain-1", amount: 100 });
  const since = pay.logs.lines.length;
  const res = headersOf(
    await raw(
      "order",
      `POST /charge HTTP/1.1\r\nHost: payment.internal\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    ),
  );
  assert.equal(res.status, 415);
  const answer = JSON.parse(res.body) as { error: string; message: string };
  assert.equal(answer.error, "unsupported_media_type");
  assert.match(
    answer.message,
    /^POST \/charge takes a JSON body: send it with content-type: application\/json \(got text\/plain\)$/,
  );
  const l = await pay.logs.wait(
    ev("request", (x) => x.path === "/charge"),
    2_000,
    since,
  );
  assert.equal(l.status, 415);

  for (const type of [null, "application/x-www-form-urlencoded", "application/jsonp"]) {
    const r = headersOf(
      await raw(
        "order",
        `POST /charge HTTP/1.1\r\nHost: payment.internal\r\n${type ? `Content-Type: ${type}\r\n` : ""}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      ),
    );
    assert.equal(r.status, 415, String(type));
  }
  // The same charge sent as JSON is a first charge (201), not a repeat (200): nothing was charged before.
  const ok = await call(pki, pay.svc.port, "payment.internal", identity(pki, "order"), "POST", "/charge", {
    orderId: "plain-1",
    amount: 100,
  });
  assert.ok("status" in ok);
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  // JSON with parameters, or a +json type, is JSON.
  const charset = headersOf(
    await raw(
      "order",
      `POST /charge HTTP/1.1\r\nHost: payment.internal\r\nContent-Type: Application/JSON; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    ),
  );
  assert.equal(charset.status, 200, "a repeat of the charge above");
});
