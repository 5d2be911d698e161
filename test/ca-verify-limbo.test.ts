// `ca verify`'s library function (verifyPath) on the x509-limbo path-validation vectors
// (test/fixtures/x509-limbo/, see its README), judged against what OpenSSL 3.0 and a real
// Node 20 handshake decided on the same cases. The rule (docs/ca.md): verify is never looser
// than OpenSSL. A case whose verdict differs from the reference must be on DIVERGENCES with
// its direction and reason, and an entry that no longer diverges fails too, so the list
// cannot go stale. As Go's crypto/x509 runs limbo, with an explicit list of known differences.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { chainFault } from "../services/mesh/chain.ts";
import { verifyPath, type VerifyResult } from "../ca/verify.ts";
import { x509 } from "../ca/x509.ts";

type Verdict = "SUCCESS" | "FAILURE" | "SKIPPED";
interface Case {
  id: string;
  kind: "SERVER" | "CLIENT";
  time: string | null;
  trusted: string[];
  intermediates: string[];
  peer: string;
  name?: { kind: "DNS" | "IP" | "RFC822"; value: string };
  eku?: string[];
  maxDepth?: number;
  crls?: string[];
  expected: "SUCCESS" | "FAILURE";
  openssl: Verdict;
  node: Verdict;
}

const fixture = JSON.parse(readFileSync(new URL("./fixtures/x509-limbo/cases.json", import.meta.url), "utf8")) as {
  cases: Case[];
};

/** What verify is held to: OpenSSL's verdict; where its harness skipped a case, Node's; else the suite's own. */
function reference(c: Case): { verdict: "SUCCESS" | "FAILURE"; by: string } {
  if (c.openssl !== "SKIPPED") return { verdict: c.openssl, by: "openssl" };
  if (c.node !== "SKIPPED") return { verdict: c.node, by: "node" };
  return { verdict: c.expected, by: "limbo" };
}

const RFC822 =
  "rfc822Name constraints are not processed by verify (the mesh names no mail addresses), so a CA carrying them certifies nothing (fails closed); OpenSSL's and Node's harnesses skipped these cases";

/**
 * Every case on which verify and the reference disagree. "stricter": verify refuses what the
 * reference accepts. "looser": verify accepts what the reference refuses; there are none, and
 * the test below keeps it so.
 */
const DIVERGENCES: Record<string, { direction: "stricter" | "looser"; reason: string }> = {
  "cve::cve-2025-61727": {
    direction: "stricter",
    reason:
      "a wildcard SAN (*.example.com) under a CA excluding bar.example.com: the wildcard covers an excluded name, so verify refuses it (limbo expects FAILURE; OpenSSL 3.0 compares the wildcard as a literal string)",
  },
  "rfc5280::nc::nc-forbids-dnsname-wildcard-san": {
    direction: "stricter",
    reason: "the same as cve-2025-61727: a wildcard SAN that can stand for an excluded name (limbo expects FAILURE)",
  },
  "rfc5280::nc::nc-forbids-othername-noop": {
    direction: "stricter",
    reason:
      "an otherName constraint verify cannot evaluate: name constraints it cannot check fail closed, whatever the leaf holds",
  },
  "rfc5280::root-missing-basic-constraints": {
    direction: "stricter",
    reason:
      "a trust anchor without basicConstraints CA:TRUE may sign nothing in verify (RFC 5280 4.2.1.9; limbo expects FAILURE); OpenSSL does not check the anchor's own flags",
  },
  "webpki::san::wildcard-embedded-leftmost-san": {
    direction: "stricter",
    reason:
      "partial wildcards (ba*.example.com) are not honoured (X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS; RFC 6125 6.4.3 allows refusing them; limbo expects FAILURE)",
  },
  "webpki::san::no-san": {
    direction: "stricter",
    reason:
      "the name is looked for in the SANs only, never in the subject's CN (as RFC 6125 6.4.4 advises and the mesh's identities always carry SANs; limbo expects FAILURE)",
  },
  "webpki::v1-cert": {
    direction: "stricter",
    reason:
      "a v1 certificate has no SANs, so it cannot hold the expected name (names are never taken from the CN; limbo expects FAILURE)",
  },
  "webpki::malformed-aia": {
    direction: "stricter",
    reason:
      "an extension that cannot be parsed fails the path closed (limbo expects FAILURE); OpenSSL ignores a non-critical AIA it cannot decode",
  },
  "webpki::forbidden-p192-root": {
    direction: "stricter",
    reason: "WebCrypto verifies no P-192 signatures, so a P-192 root signs nothing here (limbo expects FAILURE)",
  },
  "webpki::forbidden-dsa-root": {
    direction: "stricter",
    reason: "WebCrypto verifies no DSA signatures, so a DSA root signs nothing here (limbo expects FAILURE)",
  },
  "webpki::ee-basicconstraints-ca": {
    direction: "stricter",
    reason: "a CA certificate (CA:TRUE) is never accepted as a peer, for any purpose (limbo expects FAILURE)",
  },
  "rfc5280::nc::nc-permits-email-exact": { direction: "stricter", reason: RFC822 },
  "rfc5280::nc::nc-permits-email-domain": { direction: "stricter", reason: RFC822 },
  "rfc5280::nc::nc-permits-email-literal-asterisk-exact-match": { direction: "stricter", reason: RFC822 },
  "rfc5280::nc::nc-permits-email-literal-double-asterisk": { direction: "stricter", reason: RFC822 },
  "rfc5280::nc::nc-permits-email-literal-mid-asterisk": { direction: "stricter", reason: RFC822 },
};

function certs(pems: readonly string[]): x509.X509Certificate[] {
  return pems.map((p) => new x509.X509Certificate(p));
}

/** verifyPath's verdict; a certificate or CRL @peculiar/x509 cannot parse is refused, as `ca verify` refuses its file. */
async function run(c: Case): Promise<VerifyResult> {
  let input: Pick<Parameters<typeof verifyPath>[0], "certs" | "trusted" | "intermediates" | "crls">;
  try {
    input = {
      certs: certs([c.peer]),
      trusted: certs(c.trusted),
      intermediates: certs(c.intermediates),
      crls: c.crls?.map((p) => new x509.X509Crl(p)),
    };
  } catch (err) {
    return {
      ok: false,
      chain: [],
      failed: { check: "parse", message: (err as Error).message },
      revocationChecked: false,
    };
  }
  return verifyPath({
    ...input,
    at: new Date(c.time ?? "2024-01-01T00:00:00Z"),
    // The cases' EKU is that of their kind (serverAuth for SERVER, clientAuth for CLIENT) or none.
    purpose: c.kind === "CLIENT" ? "client" : "server",
    // verify checks DNS names and IP addresses; the suite's RFC822 names (CLIENT cases) are not peer names here.
    name: c.name && c.name.kind !== "RFC822" ? c.name.value : undefined,
    maxDepth: c.maxDepth,
  });
}

describe("ca verify on x509-limbo", () => {
  it("holds 208 cases with the fields it uses", () => {
    assert.equal(fixture.cases.length, 208);
    for (const c of fixture.cases) {
      assert.ok(c.peer.startsWith("-----BEGIN CERTIFICATE-----"), c.id);
      // Purpose covers the EKU the suite asks for only when it is the kind's own.
      for (const e of c.eku ?? []) assert.equal(e, c.kind === "CLIENT" ? "clientAuth" : "serverAuth", c.id);
    }
  });

  it("never accepts what OpenSSL refuses, and every divergence is listed with its reason", async () => {
    const unlisted: string[] = [];
    const stale: string[] = [];
    let agree = 0;
    for (const c of fixture.cases) {
      const r = await run(c);
      const got = r.ok ? "SUCCESS" : "FAILURE";
      const ref = reference(c);
      const listed = DIVERGENCES[c.id];
      if (got === ref.verdict) {
        agree++;
        if (listed) stale.push(`${c.id}: listed as ${listed.direction} but now agrees with ${ref.by}`);
        continue;
      }
      const direction = got === "SUCCESS" ? "looser" : "stricter";
      if (listed?.direction !== direction)
        unlisted.push(
          `${c.id}: ${direction} than ${ref.by} (${ref.verdict})${r.failed ? `: ${r.failed.check}: ${r.failed.message}` : ""}`,
        );
    }
    assert.deepEqual(unlisted, [], "divergences not on the list");
    assert.deepEqual(stale, [], "list entries that no longer diverge");
    assert.equal(agree + Object.keys(DIVERGENCES).length, fixture.cases.length);
  });

  it("has no looser divergence at all", () => {
    assert.deepEqual(
      Object.entries(DIVERGENCES)
        .filter(([, d]) => d.direction === "looser")
        .map(([id]) => id),
      [],
    );
  });

  it("refuses the trust anchors whose AKI does not describe themselves, as OpenSSL and Node do", async () => {
    for (const id of [
      "webpki::aki::root-with-aki-authoritycertissuer",
      "webpki::aki::root-with-aki-authoritycertserialnumber",
      "webpki::aki::root-with-aki-all-fields",
      "webpki::aki::root-with-aki-ski-mismatch",
    ]) {
      const c = fixture.cases.find((x) => x.id === id)!;
      assert.equal(c.openssl, "FAILURE", id);
      assert.equal(c.node, "FAILURE", id);
      const r = await run(c);
      assert.equal(r.ok, false, `${id} must be refused`);
      assert.equal(r.failed!.check, "trust", `${id}: ${r.failed!.message}`);
    }
  });

  it("refuses at notAfter itself, a critical CRL number and a chain deeper than maxDepth, as OpenSSL does", async () => {
    const expect = {
      "rfc5280::validity::notafter-exact": "validity",
      "crl::crlnumber-critical": "crl",
      "pathlen::max-chain-depth-0-exhausted": "path-length",
      "pathlen::max-chain-depth-1-exhausted": "path-length",
    } as const;
    for (const [id, check] of Object.entries(expect)) {
      const r = await run(fixture.cases.find((x) => x.id === id)!);
      assert.equal(r.failed?.check, check, `${id}: ${r.failed?.message ?? "accepted"}`);
    }
  });

  it("checks the peer's name with OpenSSL's matcher: wrong names and an IP in a DNS SAN are refused", async () => {
    for (const id of [
      "webpki::san::mismatch-domain-san",
      "webpki::san::wildcard-match-across-labels-san",
      "webpki::san::public-suffix-wildcard-san",
      "rfc5280::san::ip-in-dns",
    ]) {
      const r = await run(fixture.cases.find((x) => x.id === id)!);
      assert.equal(r.failed?.check, "name", `${id}: ${r.failed?.message ?? "accepted"}`);
    }
    const ok = fixture.cases.find((x) => x.id === "webpki::san::exact-localhost-ip-san")!;
    if (ok) assert.equal((await run(ok)).ok, true);
  });

  // The services decide trust with Node's TLS (OpenSSL), whose verdicts are the fixture's `node`
  // field; services/mesh/chain.ts only names the fault of a chain OpenSSL already refused. Its
  // diagnosis must never name a fault in a chain OpenSSL accepts.
  it("the services' chain diagnosis names no fault in a chain OpenSSL accepts", async () => {
    const wrong: string[] = [];
    let diagnosed = 0;
    for (const c of fixture.cases) {
      const r = await run(c);
      const path = r.chain.map((cert) => new X509Certificate(new Uint8Array(cert.rawData)));
      const fault = chainFault(path);
      if (!fault) continue;
      diagnosed++;
      // The one chain OpenSSL accepts with a fault in it: its root lacks CA:TRUE, which verify refuses too (DIVERGENCES).
      if (c.id === "rfc5280::root-missing-basic-constraints" && fault.reason === "issuer_not_ca") continue;
      if (c.openssl === "SUCCESS" || c.node === "SUCCESS") wrong.push(`${c.id}: ${fault.reason}`);
    }
    assert.deepEqual(wrong, []);
    assert.ok(
      diagnosed >= 3,
      `chainFault named ${diagnosed} faults; the suite has at least the pathlen and CA-bit cases`,
    );
  });
});
