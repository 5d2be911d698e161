// Everything the dashboard shows, gathered: log lines into the model, identities and CRLs
// from the CA's ledger (read-only), the policy from its file, assembled into one snapshot.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Ledger, type IssuerRow } from "../../ca/ledger.ts";
import { callerName, decide, loadPolicy, policyCallers, type Policy } from "../../services/mesh/policy.ts";
import { CALLERS, dnsName, shortName } from "../../services/mesh/names.ts";
import { DEFAULT_TRUST_DOMAIN, spiffeIdForName } from "../../lib/spiffe.ts";
import { messageOf } from "../../services/mesh/errors.ts";
import { LogTail } from "./log-tail.ts";
import { MeshModel, WINDOW_SECONDS, type ServiceState } from "./model.ts";
import type { CellView, IdentityView, IssuerView, MatrixView, ServiceView, Snapshot } from "./view.ts";

export interface Sources {
  logs: string;
  pki: string;
  policy: string;
}

const normaliseSerial = (s: string) => s.toLowerCase().replace(/^0+(?=.)/, "");

export class DashboardState {
  readonly model = new MeshModel();
  private readonly tail: LogTail;
  private ledger: Ledger | null = null;
  private policy: Policy | null = null;
  private policyError: string | null = null;
  private policyText = "";
  private pkiVersion = 0;
  private lastPki = "";

  constructor(readonly sources: Sources) {
    this.tail = new LogTail(sources.logs, (l) => this.model.ingest(l));
  }

  /** Reads new log lines, the policy and the ledger; true when the page should be told. */
  refresh(): boolean {
    const before = this.model.version;
    this.tail.poll();
    this.readPolicy();
    this.readPki();
    return this.model.version !== before;
  }

  /** A number that changes whenever the snapshot would. */
  version(): number {
    return this.model.version + this.pkiVersion;
  }

  snapshot(now = new Date()): Snapshot {
    const services = this.model.servicesView().filter((s) => s.name !== "drill");
    const issuers = this.issuers();
    return {
      version: this.version(),
      at: now.toISOString(),
      windowSeconds: WINDOW_SECONDS,
      services: services.map((s) => this.serviceView(s, now)),
      edges: this.model.edgesView(now.getTime()),
      matrix: this.matrix(services.map((s) => s.name)),
      feed: this.model.feedView(),
      timeline: this.model.timelineView(now.getTime()),
      issuers,
      sources: { logs: resolve(this.sources.logs), pki: resolve(this.sources.pki), policy: resolve(this.sources.policy) },
    };
  }

  close(): void {
    this.ledger?.close();
    this.ledger = null;
  }

  private serviceView(s: ServiceState, now: Date): ServiceView {
    let identity: IdentityView | null = null;
    if (s.serial && s.notAfter) {
      const row = this.ledgerRow(s.serial);
      const expired = Date.parse(s.notAfter) <= now.getTime();
      identity = {
        dns: s.dns ?? s.name,
        serial: s.serial,
        notAfter: s.notAfter,
        issuer: row?.issuerName ?? null,
        generation: row?.generation ?? null,
        status: row?.status === "revoked" ? "revoked" : expired ? "expired" : (row?.status ?? "unknown"),
        revokedAt: row?.revokedAt ?? null,
      };
    }
    return { name: s.name, port: s.port, up: s.up, identity, lastRenewal: s.lastRenewal, trusts: s.trusts };
  }

  private matrix(running: string[]): MatrixView {
    const p = this.policy;
    const services = [...new Set([...(p ? [...p.services.keys()] : []), ...running])].sort();
    // The demo's callers, any other the policy names (a fourth identity), and any seen calling.
    // A caller the policy names by SPIFFE ID is shown by its short name, like the services log it.
    const seen = new Set<string>([...CALLERS, ...(p ? policyCallers(p).map(callerName) : [])]);
    for (const e of this.model.edgesView(Date.now())) if (shortName(`${e.from}.internal`) === e.from) seen.add(e.from);
    const callers = [...seen].sort();
    const cells: CellView[] = [];
    for (const caller of callers) {
      for (const service of services) {
        // As the services decide for a certificate of the mesh's CA (mesh:up's trust domain is the default).
        const d = p ? decide(p, service, caller, "GET", "/healthz", spiffeIdForName(DEFAULT_TRUST_DOMAIN, dnsName(caller))) : { allow: false, rule: "no policy" };
        const o = this.model.observedFor(caller, service);
        cells.push({ caller, service, allow: d.allow, rule: d.rule, observed: o?.text ?? null, observedAt: o?.at ?? null });
      }
    }
    return { callers, services, cells, policyFile: this.sources.policy, policyError: this.policyError };
  }

  private readPolicy(): void {
    let textNow: string;
    try {
      textNow = readFileSync(this.sources.policy, "utf8");
    } catch (e) {
      textNow = `unreadable: ${messageOf(e)}`;
    }
    if (textNow === this.policyText) return;
    this.policyText = textNow;
    this.model.version++;
    try {
      this.policy = loadPolicy(this.sources.policy);
      this.policyError = null;
    } catch (e) {
      // Keep showing the last good one, as the services do.
      this.policyError = messageOf(e);
    }
  }

  /** The ledger changes when the CA issues, renews or revokes: notice it cheaply. */
  private readPki(): void {
    const db = join(this.sources.pki, "ca.db");
    if (!this.ledger) {
      if (!existsSync(db)) return;
      try {
        this.ledger = Ledger.open(db, { readonly: true });
      } catch {
        return;
      }
    }
    let stamp: string;
    try {
      const r = this.ledger.db.prepare("SELECT count(*) AS n, max(created_at) AS c, sum(status = 'revoked') AS r, (SELECT group_concat(state || crl_next_update) FROM issuers) AS i FROM certs").get() as Record<string, unknown>;
      stamp = JSON.stringify(r);
    } catch {
      this.close();
      return;
    }
    if (stamp !== this.lastPki) {
      this.lastPki = stamp;
      this.pkiVersion++;
    }
  }

  private ledgerRow(serial: string): { issuerName: string; generation: number; status: "valid" | "revoked" | "superseded"; revokedAt: string | null } | null {
    if (!this.ledger) return null;
    const row = this.ledger.bySerial(normaliseSerial(serial)) ?? this.ledger.bySerial(serial);
    if (!row) return null;
    const issuer = this.ledger.issuer(row.issuer_id);
    return { issuerName: issuer?.name ?? row.issuer_id, generation: issuer?.generation ?? 0, status: row.status, revokedAt: row.revoked_at };
  }

  private issuers(): IssuerView[] {
    if (!this.ledger) return [];
    let rows: IssuerRow[];
    try {
      rows = this.ledger.issuers();
    } catch {
      return [];
    }
    return rows.map((r) => ({ id: r.id, name: r.name, kind: r.kind, generation: r.generation, state: r.state, notAfter: r.not_after, crlNextUpdate: r.crl_next_update }));
  }
}
