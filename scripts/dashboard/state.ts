// Everything the dashboard shows, gathered: log lines into the model, identities and CRLs
// from the CA's ledger (read-only), the policy from its file, assembled into one snapshot.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Ledger, openLedgerIn, parseStore, type IssuerRow, type LedgerStore } from "../../ca/index.ts";
import { callerName, decide, loadPolicy, policyCallers, type Policy } from "../../services/mesh/policy.ts";
import { CALLERS, dnsName, isIdentityName, isServiceName } from "../../services/mesh/names.ts";
import { DEFAULT_TRUST_DOMAIN, spiffeIdForName } from "../../lib/spiffe.ts";
import { messageOf } from "../../services/mesh/errors.ts";
import { ClientIdentities, type ClientCert } from "./clients.ts";
import { LogTail } from "./log-tail.ts";
import { MeshModel, WINDOW_SECONDS, type ServiceState } from "./model.ts";
import { readRotation } from "./rotation.ts";
import type {
  CellView,
  IdentityView,
  IssuerView,
  MatrixView,
  RotationView,
  SeenView,
  ServiceView,
  Snapshot,
} from "./view.ts";

export interface Sources {
  logs: string;
  pki: string;
  policy: string;
  /** The CA's store when its ledger is not the folder's ca.db: a postgres:// URL (default MESH_CA_STORE). */
  store?: string;
}

const normaliseSerial = (s: string) => s.toLowerCase().replace(/^0+(?=.)/, "");

/** The path a route pattern stands for, to ask the policy about it: "/stock/:sku" -> "/stock/x". */
const samplePath = (pattern: string) => pattern.replace(/\/\*$/, "/x").replace(/\/:[^/]+/g, "/x");
/** "CN=Mesh Dev Issuing CA, O=Acme" -> "Mesh Dev Issuing CA". */
const commonName = (dn: string) => /(?:^|[,/]\s*)CN=([^,/]+)/.exec(dn)?.[1]?.trim() ?? dn.trim();

/** An identity that never said it listens and is not one of the mesh's services: a caller only. */
const isClient = (s: ServiceState) => s.port === null && !isServiceName(s.name);

export class DashboardState {
  readonly model: MeshModel;
  private readonly tail: LogTail;
  private readonly clients: ClientIdentities;
  private ownIssuers = new Set<string>();
  private rotation: RotationView | null = null;
  private rotationReadAt = 0;
  /** ca.db opened read-only, or the CA's PostgreSQL store (read through its store interface only). */
  private ledger: LedgerStore | null = null;
  private policy: Policy | null = null;
  private policyError: string | null = null;
  private policyText = "";
  private pkiVersion = 0;
  private lastPki = "";

  constructor(readonly sources: Sources) {
    this.model = new MeshModel({ isOwnIssuer: (issuer) => this.ownIssuers.has(commonName(issuer)) });
    this.tail = new LogTail(sources.logs, (l) => this.model.ingest(l));
    this.clients = new ClientIdentities(sources.logs);
  }

  /** Reads the ledger, the policy and new log lines; true when the page should be told. */
  refresh(now = Date.now()): boolean {
    const before = this.version();
    // The ledger first: whether a refused certificate came from one of our CAs is decided as its line is read.
    this.readPki();
    this.readPolicy();
    this.tail.poll();
    if (this.clients.refresh()) this.pkiVersion++;
    this.readRotation(now);
    return this.version() !== before;
  }

  /** A number that changes whenever the snapshot would. */
  version(): number {
    return this.model.version + this.pkiVersion;
  }

  snapshot(now = new Date()): Snapshot {
    const running = this.model.servicesView().filter((s) => s.name !== "drill" && s.name !== "mesh-up");
    const names = new Set(running.map((s) => s.name));
    const clients = this.clients.list().filter((c) => !names.has(c.name));
    // A callee listens; an identity that only logs its certificate (the drill's edge) is a client.
    const matrix = this.matrix(running.filter((s) => !isClient(s)).map((s) => s.name));
    const mismatched = new Set(matrix.cells.filter((c) => c.mismatch).map((c) => `${c.caller}>${c.service}`));
    return {
      version: this.version(),
      at: now.toISOString(),
      windowSeconds: WINDOW_SECONDS,
      services: [...running.map((s) => this.serviceView(s, now)), ...clients.map((c) => this.clientView(c, now))],
      edges: this.model
        .edgesView(now.getTime())
        .map((e) => (mismatched.has(`${e.from}>${e.to}`) ? { ...e, mismatch: true } : e)),
      matrix,
      feed: this.model.feedView(),
      timeline: this.model.timelineView(now.getTime()),
      issuers: this.issuers(),
      components: this.model.componentsView(),
      caReplicas: this.model.caReplicasView(),
      rotation: this.rotation,
      runStartedAt: this.model.runStartedAt(),
      sources: {
        logs: resolve(this.sources.logs),
        pki: resolve(this.sources.pki),
        policy: resolve(this.sources.policy),
      },
    };
  }

  close(): void {
    this.ledger?.close();
    this.ledger = null;
  }

  private identityView(serial: string, notAfter: string, dns: string, now: Date): IdentityView {
    const row = this.ledgerRow(serial);
    const expired = Date.parse(notAfter) <= now.getTime();
    return {
      dns,
      serial,
      notAfter,
      issuer: row?.issuerName ?? null,
      generation: row?.generation ?? null,
      status: row?.status === "revoked" ? "revoked" : expired ? "expired" : (row?.status ?? "unknown"),
      revokedAt: row?.revokedAt ?? null,
    };
  }

  private serviceView(s: ServiceState, now: Date): ServiceView {
    const identity = s.serial && s.notAfter ? this.identityView(s.serial, s.notAfter, s.dns ?? s.name, now) : null;
    return {
      name: s.name,
      port: s.port,
      up: s.up,
      client: isClient(s),
      identity,
      lastRenewal: s.lastRenewal,
      trusts: s.trusts,
      toggle: s.toggle,
    };
  }

  /** edge (and any other client identity mesh:up keeps): its certificate file is all there is. */
  private clientView(c: ClientCert, now: Date): ServiceView {
    const identity = c.serial && c.notAfter ? this.identityView(c.serial, c.notAfter, c.dns, now) : null;
    return {
      name: c.name,
      port: null,
      up: true,
      client: true,
      identity,
      lastRenewal: c.notBefore,
      trusts: [],
      toggle: null,
    };
  }

  /**
   * The policy beside what was seen. Each call seen is judged against the policy's verdict for
   * its own method and path (decide(), the function the services run), with the policy in force
   * now; a call seen before the callee last reloaded its policy or restarted is shown, not judged.
   */
  private matrix(running: string[]): MatrixView {
    const p = this.policy;
    const services = [...new Set([...(p ? [...p.services.keys()] : []), ...running])].sort();
    // The demo's callers, any other the policy names (a fourth identity), and any seen calling.
    // A caller the policy names by SPIFFE ID is shown by its short name, like the services log it.
    const callerSet = new Set<string>([...CALLERS, ...(p ? policyCallers(p).map(callerName) : [])]);
    for (const c of this.model.callersSeen()) if (isIdentityName(c)) callerSet.add(c);
    const callers = [...callerSet].sort();
    const cells: CellView[] = [];
    for (const caller of callers) {
      // As the services decide for a certificate of the mesh's CA (mesh:up's trust domain is the default).
      const callerId = spiffeIdForName(DEFAULT_TRUST_DOMAIN, dnsName(caller));
      for (const service of services) {
        const d = p ? decide(p, service, caller, "GET", "/healthz", callerId) : { allow: false, rule: "no policy" };
        const exceptions: string[] = [];
        for (const r of p?.services.get(service)?.routes ?? []) {
          const dr = decide(p!, service, caller, r.method === "*" ? "GET" : r.method, samplePath(r.path), callerId);
          if (dr.allow !== d.allow && dr.rule.startsWith(r.name))
            exceptions.push(`${dr.allow ? "allow" : "deny"} ${r.method} ${r.path} (${r.name})`);
        }
        const { seen, judgedSince } = this.model.seenFor(caller, service);
        const seenViews = seen.map((o): SeenView => {
          const path = o.path.split("?")[0]!;
          const e =
            p && o.status !== null ? decide(p, service, caller, o.method, path, callerId) : { allow: false, rule: "" };
          const verdict =
            o.status === null
              ? "failed"
              : o.atMs < judgedSince
                ? "stale"
                : (o.status !== 403) === e.allow
                  ? "agrees"
                  : "mismatch";
          return {
            method: o.method,
            path: o.path,
            status: o.status,
            text: o.text,
            at: o.at,
            count: o.count,
            expectAllow: e.allow,
            expectRule: e.rule,
            verdict,
          };
        });
        cells.push({
          caller,
          service,
          allow: d.allow,
          rule: d.rule,
          exceptions: exceptions.slice(0, 6),
          seen: seenViews,
          mismatch: p !== null && seenViews.some((v) => v.verdict === "mismatch"),
        });
      }
    }
    return { callers, services, cells, policyFile: this.sources.policy, policyError: this.policyError };
  }

  /** The CA rotation, from the ledger: read at most once a second (a waiting gate reads a few tables). */
  private readRotation(now: number): void {
    if (!this.ledger || now - this.rotationReadAt < 1_000) return;
    this.rotationReadAt = now;
    const r = readRotation(this.ledger, new Date(now));
    const key = JSON.stringify(r);
    if (key !== JSON.stringify(this.rotation)) {
      this.rotation = r;
      this.pkiVersion++;
    }
    if (!r) return;
    const at = (iso: string | null) => (iso ? Math.floor(Date.parse(iso) / 1000) : NaN);
    for (const [t, label] of [
      [at(r.startedAt), "prepare"],
      [at(r.activatedAt), "activate"],
      [at(r.finishedAt), "retire"],
    ] as const) {
      if (Number.isFinite(t)) this.model.mark(t, label);
    }
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
      const store = this.sources.store ?? process.env.MESH_CA_STORE;
      try {
        if (parseStore(store).kind === "postgres") this.ledger = openLedgerIn(this.sources.pki, store);
        else if (existsSync(db)) this.ledger = Ledger.open(db, { readonly: true });
        else return;
      } catch {
        return; // not there yet, or the database is down: tried again at the next refresh
      }
    }
    let stamp: string;
    try {
      const l = this.ledger;
      // SQLite: one query. A store: its change counter (issuers, settings, CRLs) and the certificates' counts by status.
      const r =
        l instanceof Ledger
          ? l.db
              .prepare(
                "SELECT count(*) AS n, max(created_at) AS c, sum(status = 'revoked') AS r, (SELECT group_concat(state || crl_next_update) FROM issuers) AS i FROM certs",
              )
              .get()
          : { v: l.dataVersion(), counts: l.counts(new Date().toISOString()) };
      stamp = JSON.stringify(r);
    } catch {
      this.close();
      return;
    }
    if (stamp !== this.lastPki) {
      this.lastPki = stamp;
      this.pkiVersion++;
      // A retired generation is no longer ours to trust: its certificates refused is the rotation done.
      this.ownIssuers = new Set(
        this.issuers()
          .filter((i) => i.state !== "retired")
          .map((i) => i.name),
      );
      this.rotationReadAt = 0; // the ledger moved: the rotation may have too, read it with the rest
    }
  }

  private ledgerRow(serial: string): {
    issuerName: string;
    generation: number;
    status: "valid" | "revoked" | "superseded";
    revokedAt: string | null;
  } | null {
    if (!this.ledger) return null;
    const row = this.ledger.bySerial(normaliseSerial(serial)) ?? this.ledger.bySerial(serial);
    if (!row) return null;
    const issuer = this.ledger.issuer(row.issuerId);
    return {
      issuerName: issuer?.name ?? row.issuerId,
      generation: issuer?.generation ?? 0,
      status: row.status,
      revokedAt: row.revokedAt,
    };
  }

  private issuers(): IssuerView[] {
    if (!this.ledger) return [];
    let rows: IssuerRow[];
    try {
      rows = this.ledger.issuers();
    } catch {
      return [];
    }
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      kind: r.kind,
      generation: r.generation,
      state: r.state,
      notAfter: r.notAfter,
      crlNextUpdate: r.crlNextUpdate,
    }));
  }
}
