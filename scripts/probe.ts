// The probe as a library: call every caller -> callee pair of a running mesh
// with the caller's own certificate, plus strangers, and compare with the policy.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import type { PeerCertificate } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CertificateAuthority } from "../ca/index.ts";
import { decide, type Policy } from "../services/mesh/policy.ts";
import { DEFAULT_TRUST_DOMAIN, spiffeIdOf, svidIdOf } from "../lib/spiffe.ts";
import { calleeIdentity } from "../services/mesh/client.ts";
import { SERVICES } from "../services/mesh/names.ts";
import { parseEventLine } from "../lib/events.ts";
import { pemBlocks } from "../lib/pem.ts";
import { upstreamReason } from "../services/mesh/reasons.ts";
import { calleeClockSentence, dateRefusalOf } from "../services/mesh/callee-clock.ts";
import { nowMs, parseHttpDate } from "../lib/clock.ts";
import { toggleDirOf, toggleInstalled, togglePaths } from "../services/mesh/toggle.ts";

export const PROBE_PATH = "/healthz";
/** The name of the stranger's CA the probe makes for each run. */
export const PROBE_FOREIGN_CA = "Probe Foreign CA";
/** What the probe expects of an allowed call to a workload: its sidecar let it through to the app. */
export const REACHED_APP = "app";

interface Outcome {
  kind: "http" | "refused" | "error";
  status?: number;
  rule?: string;
  reason?: string;
  /** Refused by the probe itself (the server's certificate), not by the callee. */
  ours?: boolean;
  /** The callee refused the caller's certificate for dates it holds by this host's clock: the callee's clock. */
  calleeClock?: boolean;
}

export interface ProbeCell {
  caller: string;
  callee: string;
  expected: string;
  observed: string;
  ok: boolean;
}

/** What our side's verification of the server's certificate can say (reasons.ts). */
const SERVER_REFUSED = new Set([
  "server_untrusted",
  "server_revoked",
  "server_crl_missing",
  "server_crl_expired",
  "server_crl_not_yet_valid",
  "server_cert_expired",
  "server_cert_not_yet_valid",
  "server_name_mismatch",
]);

/**
 * One request on a fresh connection; a refusal is told apart from an HTTP answer. The callee is
 * judged as the services judge it, against the bundle and the CRLs (`crl`: one entry per CRL):
 * a revoked server is refused ("refused: server_revoked"), whatever it would have answered.
 */
function probe(
  port: number,
  callee: string,
  trust: { ca: Buffer; crl: string[] },
  trustDomain: string,
  who: { cert: Buffer; key: Buffer } | null,
): Promise<Outcome & { localPort?: number }> {
  return new Promise((done) => {
    let localPort: number | undefined;
    const req = request(
      {
        host: "127.0.0.1",
        port,
        servername: `${callee}.internal`,
        path: PROBE_PATH,
        method: "GET",
        ...trust,
        ...(who ?? {}),
        // As the services' client judges a callee: its name, and its SPIFFE ID when it has one.
        checkServerIdentity: (host: string, cert: PeerCertificate) => calleeIdentity(host, cert, trustDomain),
        agent: false,
        timeout: 4_000,
      },
      (res) => {
        // The callee refused the certificate for its dates, and said so with its clock (callee-clock.ts).
        const refusal = res.statusCode === 400 ? dateRefusalOf(res.headers) : null;
        if (refusal && who) {
          res.resume();
          const c = new X509Certificate(who.cert);
          const dates = { notBefore: new Date(c.validFrom).toISOString(), notAfter: new Date(c.validTo).toISOString() };
          const { byClock } = calleeClockSentence(callee, refusal, dates, parseHttpDate(res.headers.date), nowMs());
          done({ kind: "refused", reason: refusal, localPort, calleeClock: byClock });
          return;
        }
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          let rule: string | undefined;
          try {
            rule = (JSON.parse(text) as { rule?: string }).rule;
          } catch {
            /* not JSON: no rule to show */
          }
          done({ kind: "http", status: res.statusCode, rule, localPort });
        });
      },
    );
    req.on("socket", (s) => s.on("connect", () => (localPort = s.localPort)));
    req.on("error", (e: NodeJS.ErrnoException) => {
      // Our side refused the server's certificate (revoked, untrusted, a lapsed CRL…): the services' reason.
      const server = upstreamReason(e, callee, `127.0.0.1:${port}`).reason;
      if (SERVER_REFUSED.has(server)) {
        done({ kind: "refused", reason: server, localPort, ours: true });
        return;
      }
      const refused =
        ["ECONNRESET", "EPIPE", "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED"].includes(e.code ?? "") ||
        /socket hang up/.test(e.message);
      done({ kind: refused ? "refused" : "error", reason: e.code ?? e.message, localPort });
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.end();
  });
}

/**
 * The callee logged why it refused us: find its line by our source port, logged since `since`
 * (ms): an ephemeral port is reused, and an older refusal from it is someone else's.
 */
async function reasonFromLog(
  logs: string,
  callee: string,
  localPort: number | undefined,
  since = 0,
): Promise<string | undefined> {
  const file = join(logs, `${callee}.log`);
  if (localPort === undefined || !existsSync(file)) return undefined;
  const want = `127.0.0.1:${localPort}`;
  for (let i = 0; i < 20; i++) {
    // The log may have rotated since the refusal (lib/rotating-file.ts): its line is then in .1.
    for (const f of [file, `${file}.1`]) {
      let text: string;
      try {
        text = readFileSync(f, "utf8");
      } catch {
        continue; // not there (yet, or any more)
      }
      for (const raw of text
        .slice(Math.max(0, text.length - 200_000))
        .split("\n")
        .reverse()) {
        const l = parseEventLine(raw);
        if (l?.event === "tls.handshake_failed" && l.remote === want && !(Date.parse(l.time) < since)) return l.reason;
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

function pairs(cert: Buffer, key: Buffer): boolean {
  try {
    return new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch {
    return false;
  }
}

function describeOutcome(o: Outcome): string {
  if (o.kind === "http") return o.status === 403 ? `403 ${o.rule ?? ""}`.trim() : String(o.status);
  if (o.kind === "refused") return `refused: ${o.reason}${o.calleeClock ? " (the callee's clock)" : ""}`;
  return `error: ${o.reason}`;
}

/** Where one identity's certificate chain and key are (mesh.json's `identities`). */
export interface IdentityFiles {
  cert: string;
  key: string;
}

/**
 * Probes every pair; the callees' logs (in `logs`) give the reason for each refusal. Each
 * caller's certificate and key come from `identities` (online mode: its state folder), else
 * from the CA's `certs/` (file mode).
 */
export async function probeMesh(o: {
  pki: string;
  policy: Policy;
  ports: Record<string, number>;
  logs: string;
  identities?: Record<string, IdentityFiles>;
  workloads?: readonly string[];
}): Promise<{ cells: ProbeCell[]; callers: string[] }> {
  const { pki, policy, ports, logs } = o;
  // The callees: every service the mesh runs (mesh.json's ports: the built-in ones, then the
  // workloads behind their sidecars), in that order.
  const services = [...new Set([...SERVICES.filter((s) => ports[s] !== undefined), ...Object.keys(ports)])];
  const workloads = new Set(o.workloads ?? []);
  const bundle = join(pki, "bundle.pem");
  if (!existsSync(bundle)) throw new Error(`no trust bundle at ${bundle}: is the mesh up? (npm run mesh:up)`);
  const ca = readFileSync(bundle);
  // The CA's CRLs, as the services load them; a folder without (an old file-mode copy) checks no revocation.
  const crlsFile = join(pki, "crls.pem");
  const trust = { ca, crl: existsSync(crlsFile) ? pemBlocks(readFileSync(crlsFile, "utf8"), "X509 CRL") : [] };
  // The mesh's trust domain, as its own identities carry it (the CA's --trust-domain).
  let trustDomain = DEFAULT_TRUST_DOMAIN;
  for (const f of Object.values(o.identities ?? {})) {
    const id = existsSync(f.cert) ? svidIdOf(new X509Certificate(readFileSync(f.cert))) : undefined;
    if (id?.kind === "one") {
      trustDomain = id.id.trustDomain;
      break;
    }
  }
  const own = (n: string) => {
    const p = join(pki, "certs", `${n}.internal`);
    const held = o.identities?.[n] ?? { cert: `${p}.crt`, key: `${p}.key` };
    // What the identity presents now: a teaching toggle while one is on (docs/toggles.md).
    const toggle = togglePaths(toggleDirOf(held.cert, n));
    const f = toggleInstalled(toggle) ? toggle : held;
    if (!existsSync(f.cert) || !existsSync(f.key)) return null;
    // Read the key first: a renewal commits the key, then the certificate, so a pair read in the
    // other order could straddle it. Checked below, and read again once if it does not pair.
    for (let i = 0; ; i++) {
      const key = readFileSync(f.key);
      const cert = readFileSync(f.cert);
      if (i > 0 || pairs(cert, key)) return { cert, key };
    }
  };

  // A stranger: a CA nobody trusts, issuing a certificate that claims to be order.
  const tmp = mkdtempSync(join(tmpdir(), "mesh-probe-"));
  let foreign: { cert: Buffer; key: Buffer };
  try {
    const fca = await CertificateAuthority.init({ dir: tmp, name: PROBE_FOREIGN_CA });
    const leaf = await fca.issue({ domain: "order.internal", days: 1 });
    foreign = { cert: readFileSync(leaf.certPath), key: readFileSync(leaf.keyPath!) };
    fca.close();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }

  const callers: Array<{
    name: string;
    who: { cert: Buffer; key: Buffer } | null;
    expect: (callee: string) => string;
  }> = [];
  for (const c of [...services, "edge"]) {
    const who = own(c);
    if (!who) continue;
    // The SPIFFE ID the certificate carries, so a rule naming the caller by it is expected to allow.
    const spiffeId = spiffeIdOf(new X509Certificate(who.cert));
    callers.push({
      name: c,
      who,
      expect: (callee) => {
        const d = decide(policy, callee, c, "GET", PROBE_PATH, spiffeId);
        // Behind a sidecar, an allowed call reaches the app, whose answer is its own (a gRPC
        // server answers a GET with 415): the mesh's part is that the call got through.
        if (d.allow && workloads.has(callee)) return REACHED_APP;
        return d.allow ? "200" : `403 ${d.rule}`;
      },
    });
  }
  callers.push({ name: "(no cert)", who: null, expect: () => "refused: no_client_cert" });
  callers.push({ name: "(foreign CA)", who: foreign, expect: () => "refused: unknown_ca" });

  const cells: ProbeCell[] = [];
  for (const c of callers) {
    for (const callee of services) {
      const sent = Date.now();
      const out = await probe(ports[callee]!, callee, trust, trustDomain, c.who);
      if (out.kind === "refused" && !out.ours)
        out.reason =
          (await reasonFromLog(logs, callee, out.localPort, sent)) ??
          `${out.reason} (no reason found in ${logs}/${callee}.log)`;
      const observed =
        workloads.has(callee) && out.kind === "http" && !(out.status === 403 && out.rule) && out.status !== 503
          ? `${REACHED_APP} (${out.status})`
          : describeOutcome(out);
      const expected = c.expect(callee);
      cells.push({
        caller: c.name,
        callee,
        expected,
        observed,
        ok: observed === expected || (expected === REACHED_APP && observed.startsWith(`${REACHED_APP} (`)),
      });
    }
  }

  return { cells, callers: callers.map((c) => c.name) };
}
