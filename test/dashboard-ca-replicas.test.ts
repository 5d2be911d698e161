// The dashboard's CA servers (issue 13, mesh:up --ca-replicas): from hand-written ca.log and
// ca2.log lines, which replicas run, their restarts, and who holds the once-only jobs' lease as
// it moves (taken, lost to a killed holder, released on a clean stop); hostile values bounded.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DashboardState } from "../scripts/dashboard/state.ts";

const dir = mkdtempSync(join(tmpdir(), "mesh-dash-replicas-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const at = (msAgo: number) => new Date(Date.now() - msAgo).toISOString();

test("two replicas: the lease holder, a kill -9 and restart of the holder, the lease taken over, a clean stop", () => {
  const logs = join(dir, "logs");
  mkdirSync(logs);
  const policy = join(dir, "policy.toml");
  writeFileSync(policy, `[payment]\naccepts = ["order"]\n`);
  const line = (file: string, l: Record<string, unknown>) =>
    appendFileSync(join(logs, file), `${JSON.stringify({ level: 30, service: "ca", ...l })}\n`);
  line("mesh-up.log", { time: at(60_000), service: "mesh-up", event: "mesh.started", pid: 1 });
  const A = "https://127.0.0.1:7400";
  const B = "https://127.0.0.1:7420";
  line("ca.log", {
    time: at(50_000),
    event: "ca.started",
    url: A,
    store: "postgres",
    lease_holder: "host:101:aa",
    runs_jobs: true,
  });
  line("ca2.log", {
    time: at(49_000),
    event: "ca.started",
    url: B,
    store: "postgres",
    lease_holder: "host:102:bb",
    runs_jobs: false,
  });
  const st = new DashboardState({ logs, pki: join(dir, "no-pki"), policy });
  try {
    st.refresh();
    let v = st.snapshot().caReplicas;
    assert.deepEqual(
      v.replicas.map((r) => [r.url, r.pid, r.starts, r.runsJobs, r.state]),
      [
        [A, 101, 1, true, "running"],
        [B, 102, 1, false, "running"],
      ],
    );
    assert.equal(v.leaseHolder, "host:101:aa");

    // A killed -9 (no line of its own): B takes the lease when it runs out; A comes back on its URL, not holding it.
    const takenAt = at(30_000);
    line("ca2.log", {
      time: takenAt,
      event: "ca.lease_acquired",
      lease: "ca-server-jobs",
      holder: "host:102:bb",
      expires_at: at(-15_000),
    });
    line("ca.log", {
      time: at(29_000),
      event: "ca.started",
      url: A,
      store: "postgres",
      lease_holder: "host:201:cc",
      runs_jobs: false,
    });
    st.refresh();
    v = st.snapshot().caReplicas;
    assert.deepEqual(
      v.replicas.map((r) => [r.url, r.pid, r.starts, r.runsJobs]),
      [
        [A, 201, 2, false],
        [B, 102, 1, true],
      ],
    );
    assert.equal(v.leaseHolder, "host:102:bb");
    assert.equal(v.leaseSince, takenAt);

    // B stops cleanly: it releases the lease; A takes it.
    line("ca2.log", { time: at(10_000), event: "ca.lease_released", lease: "ca-server-jobs", holder: "host:102:bb" });
    line("ca2.log", { time: at(10_000), event: "ca.stopped", signal: "SIGTERM", url: B });
    st.refresh();
    v = st.snapshot().caReplicas;
    assert.equal(v.leaseHolder, null);
    assert.equal(v.replicas.find((r) => r.url === B)?.state, "stopped");
    line("ca.log", {
      time: at(5_000),
      event: "ca.lease_acquired",
      lease: "ca-server-jobs",
      holder: "host:201:cc",
      expires_at: at(-15_000),
    });
    st.refresh();
    v = st.snapshot().caReplicas;
    assert.deepEqual(
      v.replicas.filter((r) => r.runsJobs).map((r) => r.url),
      [A],
    );

    // A holder that cannot renew says whom it lost it to (null: nobody yet).
    line("ca.log", { time: at(2_000), event: "ca.lease_lost", lease: "ca-server-jobs", holder: null });
    st.refresh();
    assert.equal(st.snapshot().caReplicas.leaseHolder, null);
    assert.equal(
      st.snapshot().caReplicas.replicas.some((r) => r.runsJobs),
      false,
    );

    // Hostile lines: long values cut, not-a-string URLs ignored, at most a handful of replicas kept.
    line("ca.log", {
      time: at(1_000),
      event: "ca.started",
      url: `https://x/${"a".repeat(5_000)}`,
      lease_holder: "h".repeat(5_000),
    });
    line("ca.log", { time: at(1_000), event: "ca.started", url: { not: "a string" } });
    for (let i = 0; i < 20; i++)
      line("ca.log", { time: at(900), event: "ca.started", url: `https://127.0.0.1:${9000 + i}` });
    st.refresh();
    v = st.snapshot().caReplicas;
    assert.ok(v.replicas.length <= 8, `${v.replicas.length} replicas kept`);
    assert.ok(v.replicas.every((r) => r.url.length <= 200 && (r.holder ?? "").length <= 200));
  } finally {
    st.close();
  }
});
