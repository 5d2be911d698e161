// XFCC as the sidecar writes it and the SPIFFE IDs in it: the trust domain comes from the
// certificate's URI SAN when it has one, else spiffe://internal/<name>.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { spiffeIdOf, xfccElement, sanValues } from "../services/mesh/sidecar/xfcc.ts";
import { forwardable, forwardableList, type RawScan } from "../services/mesh/sidecar/headers.ts";
import { grpcMessage } from "../services/mesh/grpc-status.ts";

test("the SPIFFE ID is the certificate's spiffe:// URI SAN when present, else spiffe://internal/<name>", () => {
  assert.equal(spiffeIdOf("order", "DNS:order.internal"), "spiffe://internal/order");
  assert.equal(
    spiffeIdOf("order", "DNS:order.internal, URI:spiffe://prod.example/ns/shop/order"),
    "spiffe://prod.example/ns/shop/order",
  );
  assert.equal(spiffeIdOf("order", "URI:https://example.com/x, DNS:order.internal"), "spiffe://internal/order");
  assert.equal(spiffeIdOf("order", undefined), "spiffe://internal/order");
});

test("SANs Node renders JSON-quoted are read whole, and a comma inside one does not split it", () => {
  assert.deepEqual(sanValues('DNS:a.internal, URI:"spiffe://x/a, b", DNS:b.internal', "DNS"), [
    "a.internal",
    "b.internal",
  ]);
  assert.deepEqual(sanValues('DNS:a.internal, URI:"spiffe://x/a, b"', "URI"), ["spiffe://x/a, b"]);
});

test("one element in Envoy's order; Subject always quoted; odd values quoted and escaped", () => {
  const der = Buffer.from("not really DER, but hashed all the same");
  const x = xfccElement("spiffe://internal/billing", {
    identity: { name: "order", dns: "order.internal", serial: "1", spiffeId: "spiffe://internal/order" },
    der,
    san: 'DNS:order.internal, URI:"spiffe://internal/order;x=\\"y\\""',
    subject: 'CN=order.internal,O=A\\, "B"',
  });
  const hash = createHash("sha256").update(der).digest("hex");
  assert.equal(
    x,
    `By=spiffe://internal/billing;Hash=${hash};Subject="CN=order.internal,O=A\\\\, \\"B\\"";URI="spiffe://internal/order;x=\\"y\\"";DNS=order.internal`,
  );
});

test("a control character in the caller's subject or SANs is written as \\xHH: XFCC stays one header line", () => {
  const x = xfccElement("spiffe://internal/billing", {
    identity: { name: "order", dns: "order.internal", serial: "1", spiffeId: "spiffe://internal/order" },
    der: Buffer.from("x"),
    san: 'DNS:order.internal, DNS:"a\\r\\nb.internal"',
    subject: "CN=order.internal\r\nx-forwarded-client-cert: By=evil",
  });
  assert.doesNotMatch(x, /[\x00-\x1f\x7f]/);
  assert.match(x, /Subject="CN=order\.internal\\x0d\\x0ax-forwarded-client-cert: By=evil"/);
  assert.match(x, /;DNS="a\\x0d\\x0ab\.internal"$/);
});

test("forwardable() drops pseudo-headers, hop-by-hop headers, those named in Connection, Host and every XFCC; keeps te: trailers", () => {
  const out = forwardable({
    ":path": "/x",
    ":method": "GET",
    host: "a",
    connection: "keep-alive, x-secret",
    "keep-alive": "5",
    "x-secret": "1",
    "x-forwarded-client-cert": "By=evil",
    "transfer-encoding": "chunked",
    upgrade: "websocket",
    te: "trailers, deflate",
    "content-type": "application/grpc",
    accept: "*/*",
  });
  assert.deepEqual(out, { te: "trailers", "content-type": "application/grpc", accept: "*/*" });
});

test("forwardableList() does the same over a raw list: names lower-cased, repeats kept in order, control characters refused; it finds the authority and whether a body follows", () => {
  const scan: RawScan = { authority: undefined, body: false };
  const out = forwardableList(
    [
      "Host",
      "billing.internal:7404",
      "Connection",
      "keep-alive, X-Secret",
      "X-Secret",
      "1",
      "Keep-Alive",
      "5",
      "X-Forwarded-Client-Cert",
      "By=evil",
      "x-forwarded-client-cert",
      "By=evil2",
      "Transfer-Encoding",
      "chunked",
      "TE",
      "trailers",
      "X-Rep",
      "a",
      "x-rep",
      "b",
      "X-Bad",
      "a\r\nInjected: yes",
      "Accept",
      "*/*",
    ],
    scan,
  );
  assert.deepEqual(out, ["te", "trailers", "x-rep", "a", "x-rep", "b", "accept", "*/*"]);
  assert.deepEqual(scan, { authority: "billing.internal:7404", body: true });

  const h2: RawScan = { authority: undefined, body: false };
  assert.deepEqual(forwardableList([":method", "GET", ":authority", "a:1", "content-length", "0", "x", "y"], h2), [
    "content-length",
    "0",
    "x",
    "y",
  ]);
  assert.deepEqual(h2, { authority: "a:1", body: false }, "content-length: 0 is no body");
  const sized: RawScan = { authority: undefined, body: false };
  forwardableList(["Content-Length", "12"], sized);
  assert.equal(sized.body, true);
});

test("grpc-message is percent-encoded as the gRPC spec says", () => {
  assert.equal(
    grpcMessage("edge may not call POST /x (rule a.routes[0])"),
    "edge may not call POST /x (rule a.routes[0])",
  );
  assert.equal(grpcMessage("100% é\n"), "100%25 %C3%A9%0A");
});
