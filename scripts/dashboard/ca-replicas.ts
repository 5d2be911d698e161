// The CA's replicas as their own log lines tell (issue 13: mesh:up --ca-replicas): each
// `ca serve` says `ca.started` with its URL and its name as a lease holder (host:pid:random);
// `ca.lease_acquired`/`ca.lease_lost`/`ca.lease_released` say who runs the once-only jobs.
// Keyed by URL: a restarted replica comes back on the same one. Pure: fed parsed lines; every
// value from a line is bounded before it is kept.
import type { MeshLine } from "../mesh-format.ts";
import type { CaReplicasView, CaReplicaView } from "./view.ts";

/** Replicas kept: mesh:up runs at most three; a log could name any number of URLs. */
const MAX_REPLICAS = 8;
const TEXT_MAX = 200;

const text = (v: unknown): string | null => (typeof v === "string" && v.length > 0 ? v.slice(0, TEXT_MAX) : null);
/** The pid in a lease holder's name (host:pid:random), when it has one. */
const pidOf = (holder: string): number | null => {
  const m = /:(\d{1,9}):[^:]*$/.exec(holder);
  return m ? Number(m[1]) : null;
};

export const CA_REPLICA_EVENTS = new Set([
  "ca.started",
  "ca.stopped",
  "ca.lease_acquired",
  "ca.lease_lost",
  "ca.lease_released",
]);

export class CaReplicas {
  private readonly replicas = new Map<string, CaReplicaView>();
  private leaseHolder: string | null = null;
  private leaseSince: string | null = null;

  /** Takes one line of a CA server; false when it is not one this view reads. */
  ingest(l: MeshLine, time: string): boolean {
    if (!l.event || !CA_REPLICA_EVENTS.has(l.event)) return false;
    switch (l.event) {
      case "ca.started": {
        const url = text(l.url);
        if (!url) return false;
        let r = this.replicas.get(url);
        if (!r) {
          if (this.replicas.size >= MAX_REPLICAS) return false;
          this.replicas.set(
            url,
            (r = {
              url,
              holder: null,
              pid: null,
              store: null,
              state: "running",
              starts: 0,
              startedAt: time,
              runsJobs: false,
            }),
          );
        }
        r.holder = text(l.lease_holder);
        r.pid = r.holder ? pidOf(r.holder) : null;
        r.store = text(l.store);
        r.state = "running";
        r.starts++;
        r.startedAt = time;
        // Started holding the lease (a lone server takes it at once): it runs the jobs from here.
        if (l.runs_jobs === true && r.holder) this.hold(r.holder, time);
        break;
      }
      case "ca.stopped": {
        const r = this.replicas.get(text(l.url) ?? "");
        if (r) r.state = "stopped";
        break;
      }
      case "ca.lease_acquired":
        this.hold(text(l.holder), time);
        break;
      case "ca.lease_lost":
        // `holder` is whoever holds it now (null: nobody yet).
        this.hold(text(l.holder), time);
        break;
      case "ca.lease_released":
        if (text(l.holder) === this.leaseHolder) this.hold(null, time);
        break;
    }
    return true;
  }

  private hold(holder: string | null, time: string): void {
    if (holder === this.leaseHolder) return;
    this.leaseHolder = holder;
    this.leaseSince = time;
  }

  view(): CaReplicasView {
    const replicas = [...this.replicas.values()].map((r) => ({
      ...r,
      runsJobs: r.holder !== null && r.holder === this.leaseHolder,
    }));
    return { replicas, leaseHolder: this.leaseHolder, leaseSince: this.leaseSince };
  }
}
