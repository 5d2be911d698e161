// lib/spiffe.ts against spiffe/spiffe standards/SPIFFE-ID.md and X509-SVID.md: what parses,
// what is refused and why, and how Node's subjectAltName text is read (the sidecar uses these too).
import { test } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CertificateAuthority } from "../ca/index.ts";
import {
  dnsNameOfSpiffeId,
  parseSpiffeId,
  sanEntries,
  spiffeIdForName,
  spiffeIdOf,
  svidIdOf,
  trustDomainProblem,
} from "../lib/spiffe.ts";
import { cleanup, tempDir } from "./helpers/ca.ts";

test("valid SPIFFE IDs parse to trust domain and segments", () => {
  for (const [text, td, segs] of [
    ["spiffe://internal/order", "internal", ["order"]],
    ["spiffe://example.org/ns/prod/sa/web", "example.org", ["ns", "prod", "sa", "web"]],
    ["spiffe://a_b-c.d/A.b-C_d", "a_b-c.d", ["A.b-C_d"]],
    ["spiffe://example.org", "example.org", []],
  ] as const) {
    const r = parseSpiffeId(text);
    assert.ok(r.ok, text);
    assert.deepEqual([r.value.trustDomain, [...r.value.segments], r.value.id], [td, [...segs], text]);
  }
});

test("invalid SPIFFE IDs are refused, each with its reason", () => {
  for (const [text, why] of [
    ["", /empty/],
    ["SPIFFE://internal/order", /scheme/],
    ["https://internal/order", /scheme/],
    ["spiffe:/internal/order", /scheme/],
    ["spiffe://Internal/order", /lower-case/],
    ["spiffe://internal:8443/order", /port/],
    ["spiffe://user@internal/order", /user info/],
    ["spiffe://internal/order?x=1", /query or a fragment/],
    ["spiffe://internal/order#f", /query or a fragment/],
    ["spiffe://internal/", /ends with a slash/],
    ["spiffe://internal/order/", /ends with a slash/],
    ["spiffe://internal//order", /empty segment/],
    ["spiffe://internal/./order", /"\." segment/],
    ["spiffe://internal/../order", /"\.\." segment/],
    ["spiffe://internal/or%20der", /letters, digits/],
    ["spiffe://internal/ord er", /letters, digits/],
    ["spiffe:///order", /empty/],
    [`spiffe://internal/${"a".repeat(2040)}`, /2048 bytes/],
  ] as const) {
    const r = parseSpiffeId(text);
    assert.equal(r.ok, false, text);
    if (!r.ok) assert.match(r.why, why, text);
  }
  assert.match(trustDomainProblem("a".repeat(256)) ?? "", /at most 255/);
  assert.equal(trustDomainProblem("example.org"), null);
});

test("names to SPIFFE IDs and back", () => {
  assert.equal(spiffeIdForName("internal", "order.internal"), "spiffe://internal/order");
  assert.equal(spiffeIdForName("internal", "api.example.com"), "spiffe://internal/api.example.com");
  assert.equal(spiffeIdForName("example.org", "order.internal"), "spiffe://example.org/order.internal");
  assert.equal(spiffeIdForName("internal", "*.x.internal"), null);
  for (const [td, dns] of [
    ["internal", "order.internal"],
    ["internal", "api.example.com"],
    ["example.org", "order.internal"],
    ["example.org", "web.example.org"],
  ]) {
    const id = parseSpiffeId(spiffeIdForName(td!, dns!)!);
    assert.ok(id.ok);
    assert.equal(dnsNameOfSpiffeId(id.value), dns, `${td} ${dns}`);
  }
});

test("Node's subjectAltName text: quoted values, and a URI that tries to smuggle a second one", () => {
  assert.deepEqual(sanEntries('DNS:a.internal, URI:spiffe://x/y, DNS:"b,c"'), [
    { type: "DNS", value: "a.internal" },
    { type: "URI", value: "spiffe://x/y" },
    { type: "DNS", value: "b,c" },
  ]);
  assert.equal(
    svidIdOf({ subjectaltname: 'DNS:o.internal, URI:"spiffe://internal/o, URI:spiffe://internal/p"' }).kind,
    "invalid",
  );
  assert.equal(svidIdOf({ subjectaltname: "DNS:o.internal" }).kind, "none");
  assert.equal(
    svidIdOf({ subjectaltname: "URI:spiffe://internal/o, URI:spiffe://internal/o" }).kind,
    "ambiguous",
    "even the same ID twice",
  );
  assert.equal(spiffeIdOf({ subjectaltname: "DNS:o.internal, URI:spiffe://internal/o" }), "spiffe://internal/o");
  assert.equal(spiffeIdOf({ subjectaltname: "URI:spiffe://internal/o, URI:https://x" }), null);
});

test("spiffeIdOf reads a real certificate of the CA (node:crypto X509Certificate)", async () => {
  const dir = tempDir("mesh-spiffe-id-");
  const ca = await CertificateAuthority.init({ dir: join(dir, "pki"), name: "Id CA" });
  try {
    const leaf = await ca.issue({ domain: "order.internal" });
    assert.equal(spiffeIdOf(new X509Certificate(readFileSync(leaf.certPath))), "spiffe://internal/order");
    assert.equal(
      spiffeIdOf(new X509Certificate(readFileSync(ca.paths.root(1).cert))),
      null,
      "the CA certificate carries none",
    );
  } finally {
    ca.close();
    cleanup(dir);
  }
});
