// mesh:check's verdicts as pure functions over literal facts and a fixed clock: each check
// passes on a healthy mesh and turns ‼ or × on the one fact changed, with its sentence and fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkMesh, checkService, checkCa, clockSkew, type Check } from "../scripts/check/checks.ts";
import type { CaFacts, IssuerFacts, MeshFacts, ServiceFacts } from "../scripts/check/facts.ts";
import { renderText, printable } from "../scripts/check/render.ts";
import { samples } from "../scripts/check/prom.ts";

const NOW = Date.parse("2026-12-01T12:00:00Z");
const DAY = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString();
const httpDate = (ms: number) => new Date(ms).toUTCString();

const ROOT: IssuerFacts = {
  id: "root-1",
  kind: "root",
  name: "Mesh Dev CA",
  generation: 1,
  state: "published",
  notBefore: iso(NOW - DAY),
  notAfter: iso(NOW + 3650 * DAY),
  crlNextUpdate: iso(NOW + 30 * DAY),
};
const CA: CaFacts = {
  dir: "pki",
  bundleSha256: "b".repeat(64),
  crlsSha256: "c".repeat(64),
  policyFile: "mesh-policy.toml",
  policySha256: "p".repeat(64),
  issuers: [ROOT],
};

function service(
  over: {
    mtls?: Partial<ServiceFacts["mtls"]>;
    admin?: Partial<ServiceFacts["admin"]>;
    ledger?: Partial<NonNullable<ServiceFacts["ledger"]>> | null;
  } = {},
): ServiceFacts {
  const serial = "4c99cf4d6ea7c4333fc95f244c5c5d92";
  return {
    name: "inventory",
    port: 7403,
    mtls: {
      identity: "edge.internal",
      status: 403,
      rule: "inventory.accepts",
      verifyError: null,
      served: {
        subject: "CN=inventory.internal",
        issuer: "CN=Mesh Dev CA",
        serial,
        notBefore: iso(NOW - DAY),
        notAfter: iso(NOW + 89 * DAY),
      },
      ...over.mtls,
    },
    admin: {
      port: 7413,
      healthz: 200,
      metrics: 200,
      date: httpDate(NOW),
      sentAt: NOW - 5,
      receivedAt: NOW + 5,
      trustBundleSha256: CA.bundleSha256,
      crlsSha256: CA.crlsSha256,
      policySha256: CA.policySha256,
      crlNextUpdates: [{ issuer: "CN=Mesh Dev CA", at: NOW + 30 * DAY }],
      lastRenewalAt: NOW - DAY,
      certExpiresAt: NOW + 89 * DAY,
      ...over.admin,
    },
    ledger:
      over.ledger === null
        ? undefined
        : {
            serial,
            domain: "inventory.internal",
            status: "VALID",
            issuer: "Mesh Dev CA",
            generation: 1,
            revokedAt: null,
            reason: null,
            supersededBy: null,
            ...over.ledger,
          },
  };
}

const byName = (checks: readonly Check[], name: string) => {
  const c = checks.find((x) => x.name === name);
  assert.ok(c, `no check ${name} in ${checks.map((x) => x.name).join(", ")}`);
  return c;
};
const only = (s: ServiceFacts, ca: CaFacts = CA) => checkService(s, ca, NOW);

test("a healthy mesh: every check ✓, the report ok", () => {
  const r = checkMesh({ ca: CA, services: [service()] }, NOW);
  const all = [...r.ca.checks, ...r.services[0]!.checks];
  assert.deepEqual(
    all.map((c) => c.name),
    [
      "issuer:root-1",
      "crls-published",
      "mtls",
      "admin",
      "certificate",
      "renewal",
      "trust-bundle",
      "crls",
      "policy",
      "clock",
    ],
  );
  for (const c of all) assert.equal(c.severity, "ok", `${c.name}: ${c.detail}`);
  assert.equal(r.ok, true);
  assert.match(
    byName(all, "certificate").detail,
    /serial 4c99cf4d6ea7c4333fc95f244c5c5d92, valid until 2027-02-28 12:00 UTC \(in 89 days\), from Mesh Dev CA, generation 1/,
  );
});

test("a certificate still in force past 2/3 of its life plus slack is ×, with a sentence and the fix; just before, ✓", () => {
  // 90 days obtained 61 days ago: due at day 60, late after day 69.
  const ontime = byName(
    only(service({ admin: { lastRenewalAt: NOW - 61 * DAY, certExpiresAt: NOW + 29 * DAY } })),
    "renewal",
  );
  assert.equal(ontime.severity, "ok", ontime.detail);
  const overdue = byName(
    only(service({ admin: { lastRenewalAt: NOW - 70 * DAY, certExpiresAt: NOW + 20 * DAY } })),
    "renewal",
  );
  assert.equal(overdue.severity, "error");
  assert.equal(overdue.ok, false);
  assert.match(
    overdue.detail,
    /^inventory's certificate is overdue for renewal: obtained 2026-09-22 12:00 UTC, due at 2026-11-21 12:00 UTC \(2\/3 of its life\), still in force, and it expires in 480 hours; once it does, every peer refuses inventory \("Ready, then expired"\)/,
  );
  assert.equal(overdue.fix, "npm run ca -- renew --domain inventory.internal");
  // Online, the service renews itself: the fix is to read why it failed.
  const online = {
    ...CA,
    online: { lifetimeMs: 3_600_000, pollMs: 30_000, bundleChangedAt: NOW - DAY, crlsChangedAt: NOW - DAY },
  };
  const agent = byName(
    checkService(
      service({ admin: { lastRenewalAt: NOW - 50 * 60_000, certExpiresAt: NOW + 10 * 60_000 } }),
      online,
      NOW,
    ),
    "renewal",
  );
  assert.equal(agent.severity, "error");
  assert.match(agent.detail, /a renewal keeps failing or never ran/);
  assert.equal(agent.fix, "npm run mesh:logs -- --service inventory --event identity.renew_failed --no-follow");
  // The heartbeat counts from when it was obtained, not from a backdated notBefore: an hour's certificate obtained 39 min ago is on time.
  assert.equal(
    byName(
      checkService(
        service({ admin: { lastRenewalAt: NOW - 39 * 60_000, certExpiresAt: NOW + 21 * 60_000 } }),
        online,
        NOW,
      ),
      "renewal",
    ).severity,
    "ok",
  );
  // An older build without the heartbeat: said, not guessed.
  const old = byName(only(service({ admin: { lastRenewalAt: undefined } })), "renewal");
  assert.equal(old.severity, "warning");
  assert.match(old.detail, /exports no renewal heartbeat/);
});

test("a CRL lapsing in 3 days is ‼ with `npm run ca -- crl`; a lapsed one is ×", () => {
  const soon = byName(
    only(service({ admin: { crlNextUpdates: [{ issuer: "CN=Mesh Dev CA", at: NOW + 3 * DAY }] } })),
    "crls",
  );
  assert.equal(soon.severity, "warning");
  assert.equal(soon.ok, true);
  assert.match(soon.detail, /the CRL of CN=Mesh Dev CA lapses in 3 days, on 2026-12-04 12:00 UTC/);
  assert.equal(soon.fix, "npm run ca -- crl");
  const lapsed = byName(
    only(service({ admin: { crlNextUpdates: [{ issuer: "CN=Mesh Dev CA", at: NOW - 1000 }] } })),
    "crls",
  );
  assert.equal(lapsed.severity, "error");
  assert.match(lapsed.detail, /lapsed on .*crl_expired/);
  // The CA's own CRLs, from the ledger, likewise.
  const pub = checkCa({ ...CA, issuers: [{ ...ROOT, crlNextUpdate: iso(NOW + 3 * DAY) }] }, NOW);
  assert.equal(byName(pub, "crls-published").severity, "warning");
});

test("CRLs other than crls.pem are ×: revocations published since are not in force", () => {
  const c = byName(only(service({ admin: { crlsSha256: "d".repeat(64) } })), "crls");
  assert.equal(c.severity, "error");
  assert.match(c.detail, /holds CRLs \(sha256 dddddddddddd…\) other than pki\/crls\.pem \(cccccccccccc…\)/);
  assert.equal(c.fix, "npm run ca -- crl");
});

test("a root expiring in 30 days is ‼ (60 days, as Linkerd); 61 days is ✓; expired is ×", () => {
  const at = (days: number, kind: IssuerFacts["kind"] = "root") =>
    byName(checkCa({ ...CA, issuers: [{ ...ROOT, kind, notAfter: iso(NOW + days * DAY) }] }, NOW), "issuer:root-1");
  const warn = at(30);
  assert.equal(warn.severity, "warning");
  assert.equal(warn.ok, true);
  assert.match(warn.title, /root "Mesh Dev CA" \(generation 1\) is valid for at least 60 days/);
  assert.match(warn.detail, /expires in 30 days, on 2026-12-31 12:00 UTC/);
  assert.equal(warn.fix, "npm run ca -- generation add");
  assert.equal(at(61).severity, "ok");
  const gone = at(-1);
  assert.equal(gone.severity, "error");
  assert.match(gone.detail, /expired on 2026-11-30/);
  assert.equal(at(10, "intermediate").fix, `npm run ca -- intermediate --name "Mesh Dev CA 2"`);
  // A retired generation is not checked: it is out of the bundle on purpose.
  assert.deepEqual(
    checkCa(
      {
        ...CA,
        issuers: [
          { ...ROOT, state: "retired", notAfter: iso(NOW - DAY) },
          { ...ROOT, id: "root-2", generation: 2 },
        ],
      },
      NOW,
    ).map((c) => c.severity),
    ["ok", "ok"],
  );
});

test("clock skew: within the Date header's rounding ✓, 10 s ahead ‼, 6 minutes behind ×", () => {
  // The header has whole seconds: a service exactly in step may print up to 999 ms less.
  assert.equal(clockSkew(httpDate(NOW - 900), NOW - 5, NOW + 5), 0);
  assert.equal(clockSkew(httpDate(NOW + 10_000), NOW - 5, NOW + 5), 9_995);
  assert.equal(clockSkew("garbage", NOW, NOW), null);
  const ahead = byName(only(service({ admin: { date: httpDate(NOW + 10_000) } })), "clock");
  assert.equal(ahead.severity, "warning");
  assert.match(ahead.detail, /inventory's clock is 10\.0 s ahead of this host/);
  const behind = byName(only(service({ admin: { date: httpDate(NOW - 6 * 60_000) } })), "clock");
  assert.equal(behind.severity, "error");
  assert.match(behind.detail, /behind this host, more than the 5 minutes certificates are backdated/);
  assert.equal(byName(only(service({ admin: { date: undefined } })), "clock").severity, "error");
  assert.match(
    byName(only(service()), "clock").detail,
    /^in step with this host, to the Date header's second \(Date: Tue, 01 Dec 2026 12:00:00 GMT\)$/,
  );
  assert.match(
    byName(only(service({ admin: { date: httpDate(NOW + 2_000) } })), "clock").detail,
    /^2\.0 s ahead of this host \(Date: /,
  );
});

test("a trust bundle other than bundle.pem is × with `npm run ca -- bundle`", () => {
  const c = byName(only(service({ admin: { trustBundleSha256: "a".repeat(64) } })), "trust-bundle");
  assert.equal(c.severity, "error");
  assert.equal(c.ok, false);
  assert.match(
    c.detail,
    /inventory holds a trust bundle \(sha256 aaaaaaaaaaaa…\) other than the one the CA publishes in pki\/bundle\.pem \(bbbbbbbbbbbb…\)/,
  );
  assert.equal(c.fix, "npm run ca -- bundle");
  assert.equal(byName(only(service({ admin: { trustBundleSha256: undefined } })), "trust-bundle").severity, "error");
});

test("a policy other than the file on disk is ×; a file that does not load is named with its error", () => {
  const c = byName(only(service({ admin: { policySha256: "q".repeat(64) } })), "policy");
  assert.equal(c.severity, "error");
  assert.match(c.detail, /other than mesh-policy\.toml/);
  const broken = byName(
    only(service({ admin: { policySha256: "q".repeat(64) } }), {
      ...CA,
      policyError: 'mesh-policy.toml:3: unknown key "acepts"',
    }),
    "policy",
  );
  assert.match(
    broken.detail,
    /mesh-policy\.toml on disk does not load \(mesh-policy\.toml:3: unknown key "acepts"\), so inventory keeps its previous policy/,
  );
  assert.equal(broken.fix, "npm run mesh:logs -- --service inventory --event policy.reload_failed --no-follow");
});

test("the certificate: revoked ×, unknown to the CA ×, expired ×, refused by OpenSSL ×, superseded ‼, expiring within 7 days ‼", () => {
  const revoked = byName(
    only(service({ ledger: { status: "REVOKED", revokedAt: iso(NOW - 60_000), reason: "keyCompromise" } })),
    "certificate",
  );
  assert.equal(revoked.severity, "error");
  assert.match(
    revoked.detail,
    /inventory serves a revoked certificate \(serial 4c99cf4d6ea7c4333fc95f244c5c5d92, revoked 2026-12-01 11:59 UTC, reason keyCompromise\)/,
  );
  assert.equal(revoked.fix, "npm run ca -- issue --domain inventory.internal");
  const unknown = byName(only(service({ ledger: null })), "certificate");
  assert.match(unknown.detail, /that the CA in pki never issued/);
  assert.equal(unknown.fix, "npm run ca -- renew --domain inventory.internal");
  const served = service().mtls.served!;
  assert.match(
    byName(only(service({ mtls: { served: { ...served, notAfter: iso(NOW - 1) } } })), "certificate").detail,
    /expired on/,
  );
  assert.match(
    byName(only(service({ mtls: { verifyError: "CERT_HAS_EXPIRED" } })), "certificate").detail,
    /OpenSSL refuses .*: CERT_HAS_EXPIRED/,
  );
  const superseded = byName(only(service({ ledger: { status: "SUPERSEDED", supersededBy: "abc" } })), "certificate");
  assert.equal(superseded.severity, "warning");
  const soon = byName(only(service({ mtls: { served: { ...served, notAfter: iso(NOW + 3 * DAY) } } })), "certificate");
  assert.equal(soon.severity, "warning");
  assert.match(soon.detail, /expires in 3 days/);
});

test("a service that does not answer: × with `npm run mesh:up`, and what depends on its admin port is × too", () => {
  const down = only(
    service({
      mtls: { error: "ECONNREFUSED", status: undefined, served: undefined },
      admin: { error: "ECONNREFUSED", healthz: undefined, metrics: undefined },
    }),
  );
  assert.match(byName(down, "mtls").detail, /nothing listens on 127\.0\.0\.1:7403: inventory is not running/);
  assert.equal(byName(down, "mtls").fix, "npm run mesh:up");
  for (const c of down) assert.equal(c.severity, "error", c.name);
  const noAdmin = byName(only(service({ admin: { port: null } })), "admin");
  assert.match(noAdmin.detail, /records no admin port for inventory/);
  assert.equal(byName(only(service({ admin: { healthz: 503 } })), "admin").severity, "error");
  assert.equal(
    byName(only(service({ mtls: { identity: null } })), "mtls").fix,
    "npm run ca -- issue --domain edge.internal",
  );
});

test("only warnings: the report is ok (exit 0), as linkerd check passes with ‼", () => {
  const f: MeshFacts = { ca: { ...CA, issuers: [{ ...ROOT, notAfter: iso(NOW + 30 * DAY) }] }, services: [service()] };
  assert.equal(checkMesh(f, NOW).ok, true);
  assert.equal(checkMesh({ ...f, services: [service({ admin: { policySha256: "x" } })] }, NOW).ok, false);
});

test("the text report: ✓ lines, and under × or ‼ the sentence and the fix; what a service sent cannot steer the terminal", () => {
  const hostile = service({
    mtls: { served: { ...service().mtls.served!, issuer: "CN=evil\u001b[2J\u001b]0;pwned\u0007" } },
    ledger: null,
  });
  const text = renderText(checkMesh({ ca: CA, services: [hostile, service()] }, NOW));
  assert.doesNotMatch(text, /\u001b|\u0007/);
  assert.match(text, /CN=evil\\u001b\[2J\\u001b\]0;pwned\\u0007/);
  assert.match(
    text,
    /^× certificate is valid\n {4}inventory serves a certificate .* never issued\n {4}fix: npm run ca -- renew --domain inventory\.internal$/m,
  );
  assert.match(text, /^✓ answers over mTLS: handshake as edge\.internal/m);
  assert.match(text, /Status check results are ×: 1 failed, 0 warnings, 18 checks/);
  assert.equal(printable("a\nb"), "a\\u000ab");
  // A check that could not run for a failure above: one line, the fix is the one above it.
  const down = renderText(
    checkMesh({ ca: CA, services: [service({ admin: { error: "ECONNREFUSED", metrics: undefined } })] }, NOW),
  );
  assert.match(
    down,
    /^× admin port answers\n {4}nothing answers on http:\/\/127\.0\.0\.1:7413: ECONNREFUSED\n {4}fix: npm run mesh:up\n✓ certificate is valid: .*\n× renews its certificate on time: not checked: its admin port 7413 does not serve \/metrics\n× holds the CA's current trust bundle: not checked: its admin port 7413 does not serve \/metrics\n/m,
  );
});

test("the metrics reader takes the format's escapes and skips lines that do not parse", () => {
  const text = [
    "# HELP mesh_policy_info x",
    'mesh_policy_info{sha256="abc"} 1',
    'mesh_crl_next_update_timestamp_seconds{issuer="CN=a \\"b\\", O=c\\\\d"} 1790000000',
    'mesh_crls_info{sha256="unterminated} 1',
    "mesh_trust_bundle_info",
    'other_metric{sha256="zzz"} 1',
  ].join("\n");
  const s = samples(
    text,
    new Set(["mesh_policy_info", "mesh_crl_next_update_timestamp_seconds", "mesh_crls_info", "mesh_trust_bundle_info"]),
  );
  assert.deepEqual(s, [
    { name: "mesh_policy_info", labels: { sha256: "abc" }, value: 1 },
    { name: "mesh_crl_next_update_timestamp_seconds", labels: { issuer: 'CN=a "b", O=c\\d' }, value: 1790000000 },
  ]);
});

test("online: hour-long certificates are healthy; a late renewal warns, a revoked one's fix is restarting mesh:up; the CA server is checked", () => {
  const HOUR = 3_600_000;
  const online = {
    lifetimeMs: HOUR,
    pollMs: 30_000,
    bundleChangedAt: NOW - DAY,
    crlsChangedAt: NOW - DAY,
    server: { url: "https://127.0.0.1:7400", status: 200 },
  };
  const ONLINE: CaFacts = { ...CA, online };
  const fresh = service({
    mtls: {
      served: {
        subject: "CN=inventory.internal",
        issuer: "CN=Mesh Dev Issuing CA",
        serial: "4c99cf4d6ea7c4333fc95f244c5c5d92",
        notBefore: iso(NOW - 20 * 60_000),
        notAfter: iso(NOW + 40 * 60_000),
      },
    },
  });
  // In file mode the same 40 minutes left is a warning (7 days); online it is the normal state.
  assert.equal(byName(only(fresh), "certificate").severity, "warning");
  const ok = byName(only(fresh, ONLINE), "certificate");
  assert.equal(ok.severity, "ok", ok.detail);
  assert.match(ok.detail, /renews itself/);

  const late = service({
    mtls: {
      served: {
        subject: "CN=inventory.internal",
        issuer: "CN=Mesh Dev Issuing CA",
        serial: "4c99cf4d6ea7c4333fc95f244c5c5d92",
        notBefore: iso(NOW - 50 * 60_000),
        notAfter: iso(NOW + 10 * 60_000),
      },
    },
  });
  const lateCheck = byName(only(late, ONLINE), "certificate");
  assert.equal(lateCheck.severity, "warning");
  assert.match(lateCheck.detail, /should have renewed itself by now/);
  assert.equal(lateCheck.fix, "npm run mesh:logs -- --service inventory --event identity.renew_failed --no-follow");

  const revoked = byName(
    only(service({ ledger: { status: "REVOKED", revokedAt: iso(NOW - 60_000) } }), ONLINE),
    "certificate",
  );
  assert.equal(revoked.severity, "error");
  assert.equal(revoked.fix, "npm run mesh:up");

  // CRLs the CA changed 10 s ago are on their way (the next poll); after a poll and more, an error.
  const behind = service({ admin: { crlsSha256: "d".repeat(64) } });
  assert.equal(
    byName(only(behind, { ...CA, online: { ...online, crlsChangedAt: NOW - 10_000 } }), "crls").severity,
    "warning",
  );
  assert.equal(
    byName(only(behind, { ...CA, online: { ...online, crlsChangedAt: NOW - 60_000 } }), "crls").severity,
    "error",
  );

  assert.equal(byName(checkCa(ONLINE, NOW), "ca-server").severity, "ok");
  const down = byName(
    checkCa({ ...CA, online: { ...online, server: { url: "https://127.0.0.1:7400", error: "ECONNREFUSED" } } }, NOW),
    "ca-server",
  );
  assert.equal(down.severity, "error");
  assert.match(down.detail, /ECONNREFUSED; services keep serving on what they hold, but cannot renew/);
  assert.equal(down.fix, "npm run mesh:up");
  assert.equal(
    checkCa(CA, NOW).some((c) => c.name === "ca-server"),
    false,
    "file mode has no CA server to check",
  );
});

test("CA replicas (mesh:up --ca-replicas): each further one checked; one down is a warning while another answers, an error when none does", () => {
  const online = { lifetimeMs: 3_600_000, pollMs: 30_000, bundleChangedAt: NOW - DAY, crlsChangedAt: NOW - DAY };
  const up: { url: string; status?: number; error?: string } = { url: "https://127.0.0.1:7400", status: 200 };
  const r2 = (srv: { url: string; status?: number; error?: string }, first = up) =>
    checkCa({ ...CA, online: { ...online, server: first, replicas: [srv] } }, NOW).find(
      (c) => c.name === "ca-replica-2",
    )!;
  assert.equal(r2({ url: "https://127.0.0.1:7420", status: 200 }).severity, "ok");
  const down = r2({ url: "https://127.0.0.1:7420", error: "ECONNREFUSED" });
  assert.equal(down.severity, "warning");
  assert.match(
    down.detail,
    /^GET https:\/\/127\.0\.0\.1:7420\/\.well-known\/est\/cacerts: ECONNREFUSED; the services renew through the replicas that answer/,
  );
  assert.equal(
    r2(
      { url: "https://127.0.0.1:7420", error: "ECONNREFUSED" },
      { url: "https://127.0.0.1:7400", error: "ECONNREFUSED" },
    ).severity,
    "error",
  );
  assert.equal(
    checkCa({ ...CA, online: { ...online, server: up } }, NOW).some((c) => c.name.startsWith("ca-replica")),
    false,
    "one CA server: no replica checks",
  );
});

test("a fix for a CA outside ./pki carries --dir, so it works when pasted", () => {
  const other = { ...CA, dir: "other-pki" };
  assert.equal(
    byName(only(service({ admin: { crlsSha256: "d".repeat(64) } }), other), "crls").fix,
    "npm run ca -- crl --dir other-pki",
  );
  assert.equal(
    byName(checkCa({ ...other, issuers: [{ ...ROOT, crlNextUpdate: iso(NOW + 3 * DAY) }] }, NOW), "crls-published").fix,
    "npm run ca -- crl --dir other-pki",
  );
});
