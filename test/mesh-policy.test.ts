// The policy parser and the pure decision function, with literal identities.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { decide, parsePolicy, policyCallers, unknownCallers } from "../services/mesh/policy.ts";
import { MeshError } from "../services/mesh/errors.ts";
import { identityOf, sanDnsNames } from "../services/mesh/peer-identity.ts";
import type { PeerCertificate } from "node:tls";

import { SHIPPED_POLICY_FILE } from "./mesh-fixtures.ts";

// The policy as shipped, not the working copy a user may have edited (test/fixtures/README.md).
const seed = parsePolicy(readFileSync(SHIPPED_POLICY_FILE, "utf8"), "mesh-policy.toml");

test("the shipped policy is the seed matrix", () => {
  const allowed: string[] = [];
  for (const callee of ["order", "payment", "inventory"]) {
    for (const caller of ["order", "payment", "inventory", "edge"]) {
      if (decide(seed, callee, caller, "GET", "/healthz").allow) allowed.push(`${caller}->${callee}`);
    }
  }
  assert.deepEqual(allowed, ["order->payment", "order->inventory"]);
});

test("a denial names the rule, the reason and what would allow it", () => {
  const d = decide(seed, "payment", "inventory", "POST", "/charge");
  assert.equal(d.allow, false);
  assert.equal(d.rule, "payment.accepts");
  assert.match(d.reason, /inventory is not listed in payment\.accepts/);
  assert.match(d.hint ?? "", /mesh-policy\.toml:\d+/);
});

test("fails closed: no table, no identity, route not covered", () => {
  const p = parsePolicy(`[payment]\naccepts = ["order"]\n`, "p.toml");
  assert.equal(decide(p, "inventory", "order", "GET", "/stock/x").allow, false);
  assert.equal(decide(p, "inventory", "order", "GET", "/stock/x").rule, "default-deny");
  assert.equal(decide(p, "payment", null, "POST", "/charge").allow, false);
  const routesOnly = parsePolicy(
    `[[payment.routes]]\nmethod = "POST"\npath = "/charge"\naccepts = ["order"]\n`,
    "p.toml",
  );
  assert.equal(decide(routesOnly, "payment", "order", "POST", "/charge").allow, true);
  assert.equal(decide(routesOnly, "payment", "order", "GET", "/healthz").allow, false);
});

test("route rules refine per method and path; first match decides", () => {
  const p = parsePolicy(
    `[inventory]
accepts = ["order"]

[[inventory.routes]]
method = "GET"
path = "/stock/:sku"
accepts = ["order", "payment"]

[[inventory.routes]]
method = "*"
path = "/admin/*"
accepts = []
`,
    "p.toml",
  );
  const a = decide(p, "inventory", "payment", "GET", "/stock/widget");
  assert.equal(a.allow, true);
  assert.equal(a.rule, "inventory.routes[0] (GET /stock/:sku)");
  assert.equal(decide(p, "inventory", "payment", "POST", "/reserve").allow, false);
  assert.equal(decide(p, "inventory", "order", "POST", "/reserve").rule, "inventory.accepts");
  assert.equal(decide(p, "inventory", "order", "DELETE", "/admin/x/y").allow, false);
  assert.equal(
    decide(p, "inventory", "order", "GET", "/stock/a/b").allow,
    true,
    "two segments fall through to inventory.accepts",
  );
});

function policyError(text: string): MeshError {
  try {
    parsePolicy(text, "mesh-policy.toml");
  } catch (e) {
    assert.ok(e instanceof MeshError, `expected MeshError, got ${String(e)}`);
    return e;
  }
  assert.fail("the policy was accepted");
}

test("invalid TOML names file:line:column", () => {
  const e = policyError(`[payment]\naccepts = ["order"\n\n[order]\n`);
  assert.equal(e.code, "POLICY_SYNTAX");
  assert.match(e.message, /^mesh-policy\.toml:\d+:\d+: invalid TOML/);
});

test("any mesh name may have a table: the policy knows no fixed list of services", () => {
  const p = parsePolicy(`[billing-api]\naccepts = ["order"]\n`, "mesh-policy.toml");
  assert.deepEqual([...p.services.keys()], ["billing-api"]);
});

test("semantic errors name the line of the offending key", () => {
  const cases: Array<[string, RegExp]> = [
    [
      `[payment]\naccepts = ["order"]\n\n[Billing_API]\naccepts = []\n`,
      /^mesh-policy\.toml:4: "Billing_API" is not a mesh name/,
    ],
    [`[payment]\naccepts = ["order"]\nacept = ["x"]\n`, /^mesh-policy\.toml:3: unknown key "acept" in \[payment\]/],
    [`[payment]\naccepts = "order"\n`, /^mesh-policy\.toml:2: payment\.accepts must be an array/],
    [
      `[payment]\naccepts = ["order", "Order"]\n`,
      /^mesh-policy\.toml:2: payment\.accepts names "Order", which is not a mesh identity/,
    ],
    [
      `[payment]\naccepts = ["order", "shipping.internal"]\n`,
      /^mesh-policy\.toml:2: payment\.accepts names "shipping\.internal", which is not a mesh identity/,
    ],
    [
      `[[inventory.routes]]\nmethod = "GET"\npath = "/x"\naccepts = ["-x"]\n`,
      /^mesh-policy\.toml:4: inventory\.routes\[0\]\.accepts names "-x"/,
    ],
    [`[payment]\naccepts = [1]\n`, /^mesh-policy\.toml:2: /],
    [`payment = 3\n`, /^mesh-policy\.toml:1: \[payment\] must be a table/],
    [`[order]\n`, /^mesh-policy\.toml:1: \[order\] needs "accepts"/],
    [
      `[payment]\naccepts = []\n\n[[payment.routes]]\nmethod = "FETCH"\npath = "/x"\naccepts = []\n`,
      /^mesh-policy\.toml:5: payment\.routes\[0\]\.method must be one of/,
    ],
    [
      `[payment]\naccepts = []\n\n[[payment.routes]]\nmethod = "GET"\npath = "/x"\naccepts = []\n\n[[payment.routes]]\nmethod = "GET"\npath = "no-slash"\naccepts = []\n`,
      /^mesh-policy\.toml:11: payment\.routes\[1\]\.path must be/,
    ],
    [
      `[payment]\naccepts = []\n\n[[payment.routes]]\nmethod = "GET"\naccepts = []\n`,
      /^mesh-policy\.toml:4: payment\.routes\[0\] is missing "path"/,
    ],
  ];
  for (const [text, re] of cases) {
    const e = policyError(text);
    assert.equal(e.code, "POLICY_INVALID", text);
    assert.match(e.message, re, text);
  }
});

function cert(over: Partial<PeerCertificate>): PeerCertificate {
  return {
    subject: { CN: "order.internal" },
    subjectaltname: "DNS:order.internal",
    ca: false,
    serialNumber: "0ABC",
    ...over,
  } as unknown as PeerCertificate;
}

test("identity is the CN, refused when ambiguous", () => {
  const ok = identityOf(cert({}));
  assert.deepEqual(ok, { ok: true, identity: { name: "order", dns: "order.internal", spiffeId: null, serial: "abc" } });
  const svid = identityOf(cert({ subjectaltname: "DNS:order.internal, URI:spiffe://internal/order" }));
  assert.deepEqual(svid, {
    ok: true,
    identity: { name: "order", dns: "order.internal", spiffeId: "spiffe://internal/order", serial: "abc" },
  });
  const bad = (c: PeerCertificate) => {
    const r = identityOf(c);
    assert.equal(r.ok, false);
    return r.ok ? "" : r.reason;
  };
  assert.equal(bad(cert({ ca: true })), "bad_certificate");
  assert.equal(
    bad(cert({ subject: { CN: ["order.internal", "payment.internal"] } as unknown as PeerCertificate["subject"] })),
    "ambiguous_identity",
  );
  assert.equal(bad(cert({ subjectaltname: "DNS:payment.internal" })), "ambiguous_identity");
  assert.equal(bad(cert({ subject: {} as PeerCertificate["subject"] })), "ambiguous_identity");
  assert.equal(
    bad(cert({ subject: { CN: "example.com" } as PeerCertificate["subject"], subjectaltname: "DNS:example.com" })),
    "ambiguous_identity",
  );
  assert.equal(bad(cert({ subjectaltname: "DNS:order.internal, URI:spiffe://internal/payment" })), "spiffe_mismatch");
  assert.equal(
    bad(cert({ subjectaltname: 'DNS:order.internal, URI:spiffe://internal/order, URI:"spiffe://internal/order,x"' })),
    "spiffe_ambiguous",
  );
  assert.equal(
    bad(cert({ subjectaltname: "DNS:order.internal, URI:spiffe://other.example/order" })),
    "spiffe_foreign_domain",
  );
  // In a trust domain that is not the mesh's DNS domain, the CA names order.internal spiffe://other.example/order.internal.
  assert.equal(
    identityOf(
      cert({ subjectaltname: "DNS:order.internal, URI:spiffe://other.example/order.internal" }),
      "other.example",
    ).ok,
    true,
    "the local trust domain decides",
  );
  assert.equal(bad(cert({ subjectaltname: "DNS:order.internal, URI:spiffe://internal/order/x" })), "spiffe_mismatch");
  assert.equal(
    bad(cert({ subjectaltname: "DNS:order.internal, URI:spiffe://internal/Order" })),
    "spiffe_mismatch",
    "SPIFFE paths are case-sensitive",
  );
  assert.deepEqual(sanDnsNames('DNS:a.internal, URI:spiffe://x/y, DNS:"b,c"'), ["a.internal", "b,c"]);
});

test("a GET rule decides HEAD too: HEAD shows what GET shows, minus the body", () => {
  const p = parsePolicy(
    `[inventory]
accepts = ["order"]

[[inventory.routes]]
method = "GET"
path = "/stock/:sku"
accepts = ["order", "payment"]

[[inventory.routes]]
method = "GET"
path = "/admin/*"
accepts = []
`,
    "p.toml",
  );
  const head = decide(p, "inventory", "payment", "HEAD", "/stock/widget");
  assert.equal(head.allow, true);
  assert.equal(head.rule, "inventory.routes[0] (GET /stock/:sku)");
  const admin = decide(p, "inventory", "order", "HEAD", "/admin/x");
  assert.equal(admin.allow, false, "order may not GET /admin/x, so it may not HEAD it");
  assert.equal(admin.rule, "inventory.routes[1] (GET /admin/*)");
  assert.equal(
    decide(p, "inventory", "payment", "POST", "/stock/widget").allow,
    false,
    "only HEAD borrows GET's rules",
  );
});

test("any mesh identity may be a caller: a policy naming shipping loads, with a warning until shipping.internal holds a certificate", () => {
  const text = `[payment]\naccepts = ["order"]\n\n[inventory]\naccepts = ["order"]\n\n[[inventory.routes]]\nmethod = "GET"\npath = "/stock/:sku"\naccepts = ["order", "shipping"]\n`;
  const p = parsePolicy(text, "mesh-policy.toml");
  assert.deepEqual(policyCallers(p), ["order", "shipping"]);
  assert.equal(decide(p, "inventory", "shipping", "GET", "/stock/widget").allow, true);
  assert.equal(
    decide(p, "inventory", "shipping", "POST", "/reserve").allow,
    false,
    "the route grants GET /stock/:sku only",
  );
  assert.equal(decide(p, "payment", "shipping", "POST", "/charge").allow, false);
  const warned = unknownCallers(p, ["order.internal", "payment.internal", "inventory.internal", "edge.internal"]);
  assert.equal(warned.length, 1);
  assert.equal(warned[0]!.caller, "shipping");
  assert.deepEqual(warned[0]!.rules, ["inventory.routes[0]"]);
  assert.match(
    warned[0]!.message,
    /^mesh-policy\.toml lets "shipping" call \(inventory\.routes\[0\]\), but no certificate for shipping\.internal exists yet/,
  );
  assert.deepEqual(
    unknownCallers(p, ["order", "shipping.internal"]),
    [],
    "once shipping holds a certificate there is nothing to warn about",
  );
  // a typo is a warning too, not a refusal to start
  const typo = parsePolicy(`[payment]\naccepts = ["order", "ordr"]\n`, "mesh-policy.toml");
  assert.deepEqual(
    unknownCallers(typo, ["order"]).map((w) => w.caller),
    ["ordr"],
  );
});
