// The dashboard page: draws the snapshot the page came with at once, then listens to the
// server's snapshot stream and redraws each panel.
import type {
  CaReplicasView,
  CellView,
  ComponentView,
  FeedItem,
  IssuerView,
  RotationView,
  SeenView,
  ServiceView,
  Snapshot,
} from "../../scripts/dashboard/view.ts";
import { clock, fill, h, until } from "./dom.ts";
import { drawGraph } from "./graph.ts";
import { Timeline } from "./chart.ts";

const $ = (id: string) => document.getElementById(id)!;
let last: Snapshot | null = null;
const timeline = new Timeline($("timeline"));

function render(snap: Snapshot): void {
  last = snap;
  $("window").textContent = `(last ${snap.windowSeconds} s)`;
  $("updated").textContent = `updated ${clock(snap.at)}`;
  $("run").textContent = snap.runStartedAt ? `this mesh:up run since ${clock(snap.runStartedAt)}` : "";
  drawGraph($("graph") as unknown as SVGSVGElement, snap);
  renderServices(snap.services, snap.components);
  renderFeed(snap.feed);
  renderMatrix(snap);
  renderIssuers(snap.issuers);
  renderRotation(snap.rotation);
  renderProcesses(snap.components);
  renderCaReplicas(snap.caReplicas);
  timeline.update(snap.timeline);
  fill($("sources"), `logs ${snap.sources.logs} · CA ${snap.sources.pki} · policy ${snap.sources.policy}`);
}

/** What the supervisor says of a component, for its card: [text, look], or null when it never restarted. */
function restartNote(c: ComponentView | undefined): [string, string] | null {
  if (!c) return null;
  if (c.state === "gave_up") return [`gave up after ${c.restarts} restart${c.restarts === 1 ? "" : "s"}`, "bad"];
  if (c.state === "restarting") return [`restarting (attempt ${c.attempt ?? "?"})`, "warn"];
  if (c.restarts === 0) return null;
  if (c.restarts === 1) return ["restarted once", "calm"];
  return [`restarted ${c.restarts}×`, "warn"];
}

function renderServices(services: ServiceView[], components: ComponentView[]): void {
  const now = Date.now();
  fill(
    $("services"),
    ...services.map((svc) => {
      const id = svc.identity;
      const status =
        id?.status === "revoked"
          ? ["REVOKED", "bad"]
          : id?.status === "expired"
            ? ["EXPIRED", "bad"]
            : svc.client
              ? ["client", "calm"]
              : !svc.up
                ? ["down", "warn"]
                : !id
                  ? ["no identity yet", "warn"]
                  : ["up", ""];
      const comp = components.find((c) => c.component === svc.name);
      const note = restartNote(comp);
      return h(
        "div",
        { class: `card${svc.client ? " client" : ""}`, "data-service": svc.name },
        h(
          "h3",
          {},
          svc.name,
          h("span", { class: `badge ${status[1]}`, "data-status": status[0] }, status[0]!),
          note
            ? h(
                "span",
                {
                  class: `badge ${note[1]}`,
                  "data-restarts": String(comp!.restarts),
                  title: comp!.lastExit ? `last exit: ${comp!.lastExit} at ${clock(comp!.lastExitAt)}` : "",
                },
                note[0],
              )
            : null,
          svc.toggle
            ? h(
                "span",
                { class: "badge bad", "data-toggle": svc.toggle, title: "npm run mesh:toggle -- <service> --restore" },
                `toggle: ${svc.toggle}`,
              )
            : null,
          svc.port ? h("small", { class: "muted" }, `:${svc.port}`) : null,
        ),
        id
          ? h(
              "dl",
              {},
              h("dt", {}, "identity"),
              h("dd", {}, id.dns),
              h("dt", {}, "serial"),
              h("dd", {}, id.serial),
              h("dt", {}, "issuer"),
              h(
                "dd",
                {},
                id.issuer
                  ? `${id.issuer}${id.generation ? ` (generation ${id.generation})` : ""}`
                  : "not in this CA's ledger",
              ),
              h("dt", {}, "expires in"),
              h("dd", { class: "countdown", "data-not-after": id.notAfter }, until(id.notAfter, now)),
              h("dt", {}, svc.client ? "valid from" : "last renewal"),
              h("dd", {}, svc.lastRenewal ? clock(svc.lastRenewal) : "—"),
              svc.client ? null : h("dt", {}, "trusts"),
              svc.client ? null : h("dd", {}, svc.trusts.join("; ") || "—"),
              id.revokedAt ? h("dt", {}, "revoked") : null,
              id.revokedAt ? h("dd", {}, id.revokedAt) : null,
              comp?.lastExit ? h("dt", {}, "last exit") : null,
              comp?.lastExit ? h("dd", {}, `${comp.lastExit} at ${clock(comp.lastExitAt)}`) : null,
            )
          : svc.client
            ? h("p", { class: "muted" }, "no certificate in its folder yet")
            : null,
        svc.client
          ? h(
              "p",
              { class: "muted note" },
              `the identity the tools use (mesh:probe, the README's curl); it serves nothing`,
            )
          : null,
      );
    }),
  );
  if (services.length === 0) fill($("services"), h("p", { class: "muted" }, "No identity seen in this run yet."));
}

function renderFeed(feed: FeedItem[]): void {
  fill(
    $("feed"),
    ...feed.map((f) =>
      h(
        "li",
        { class: f.severity, "data-event": f.event, "data-reason": f.reason },
        h(
          "div",
          { class: "head" },
          `${clock(f.time)} · ${f.service} · ${f.event} · `,
          h("span", { class: "reason" }, f.reason),
          f.severity === "denied"
            ? " · as the policy says"
            : f.severity === "kept-out"
              ? " · kept out, as intended"
              : "",
        ),
        f.peer ? h("div", { class: "peer" }, `peer: ${f.peer}`) : null,
        h("div", { class: "sentence" }, f.sentence),
        f.fix
          ? h(
              "div",
              { class: "fix" },
              `${f.severity === "denied" || f.severity === "kept-out" ? "if it should have been let in" : "fix"}: ${f.fix}`,
            )
          : null,
      ),
    ),
  );
  if (feed.length === 0) fill($("feed"), h("li", { class: "note" }, "nothing refused yet"));
}

function seenLine(v: SeenView): HTMLElement {
  const times = v.count > 1 ? ` ×${v.count}` : "";
  const say =
    v.verdict === "mismatch"
      ? ` ≠ policy: ${v.expectAllow ? "allow" : "deny"} (${v.expectRule})`
      : v.verdict === "stale"
        ? " · under an earlier policy"
        : "";
  const why =
    v.verdict === "stale"
      ? "; seen before the callee last reloaded its policy or restarted, so not judged by the policy in force now"
      : "";
  return h(
    "span",
    {
      class: `seen ${v.verdict}`,
      "data-verdict": v.verdict,
      title: `last at ${clock(v.at)}; the policy in force says ${v.expectAllow ? "allow" : "deny"}${v.expectRule ? ` (${v.expectRule})` : ""} for ${v.method} ${v.path}${why}`,
    },
    `seen ${v.text}${times}${say}`,
  );
}

function renderMatrix(snap: Snapshot): void {
  const m = snap.matrix;
  $("policy-file").textContent = m.policyError
    ? `policy ${m.policyFile}: ${m.policyError} (showing the last good one)`
    : `policy ${m.policyFile}: each cell's verdict is for GET /healthz (what mesh:probe asks); each call seen is judged by the policy for its own method and path`;
  const cell = (c: CellView | undefined) => {
    if (!c) return h("td");
    return h(
      "td",
      {
        class: `${c.allow ? "allow" : "deny"}${c.mismatch ? " mismatch" : ""}`,
        "data-cell": `${c.caller}>${c.service}`,
      },
      h("span", { class: "verdict" }, `${c.allow ? "allow" : "deny"} · ${c.rule}`),
      ...c.exceptions.map((x) => h("span", { class: "exception" }, `but ${x}`)),
      ...c.seen.map(seenLine),
    );
  };
  fill(
    $("matrix"),
    h("thead", {}, h("tr", {}, h("th", {}, "caller \\ callee"), ...m.services.map((x) => h("th", {}, x)))),
    h(
      "tbody",
      {},
      ...m.callers.map((caller) =>
        h(
          "tr",
          {},
          h("th", {}, caller),
          ...m.services.map((svc) => cell(m.cells.find((c) => c.caller === caller && c.service === svc))),
        ),
      ),
    ),
  );
}

function renderIssuers(issuers: IssuerView[]): void {
  const now = Date.now();
  fill(
    $("issuers"),
    h(
      "thead",
      {},
      h("tr", {}, ...["CA", "kind", "gen.", "state", "expires in", "CRL next update"].map((t) => h("th", {}, t))),
    ),
    h(
      "tbody",
      {},
      ...issuers.map((i) => {
        const crlSoon = i.crlNextUpdate !== null && Date.parse(i.crlNextUpdate) - now < 7 * 86_400_000;
        return h(
          "tr",
          {},
          h("td", {}, i.name),
          h("td", {}, i.kind),
          h("td", {}, String(i.generation)),
          h("td", {}, i.state),
          h("td", {}, until(i.notAfter, now)),
          h("td", { class: crlSoon ? "mismatch" : "" }, i.crlNextUpdate ? `in ${until(i.crlNextUpdate, now)}` : "—"),
        );
      }),
    ),
  );
}

const GATES = ["prepare", "activate", "retire"] as const;

function renderRotation(r: RotationView | null): void {
  if (!r) {
    fill($("rotation"), h("p", { class: "muted" }, "No rotation in progress (start one: npm run ca -- rotate)."));
    return;
  }
  const done = r.phase === "done";
  const head = done
    ? `Rotation ${r.id}: generation ${r.from} → ${r.to}, done at ${clock(r.finishedAt)}`
    : `Rotation ${r.id}: generation ${r.from} → ${r.to}, at gate ${r.gate}/3 (${r.phase}), started ${clock(r.startedAt)}`;
  const waiting = !done && r.waitingFor.length > 0;
  fill(
    $("rotation"),
    h("p", { class: "rotation-head", "data-phase": r.phase }, head),
    h(
      "ol",
      { class: "gates" },
      ...GATES.map((g, i) =>
        h(
          "li",
          { class: done || i + 1 < r.gate ? "passed" : i + 1 === r.gate ? "current" : "", "data-gate": g },
          `${i + 1} ${g}`,
        ),
      ),
    ),
    !done && r.owner === null
      ? h(
          "p",
          { class: "warn-text" },
          "no run in progress: it stopped at this gate (run npm run ca -- rotate to carry on)",
        )
      : null,
    waiting
      ? h("p", {}, `waiting for ${r.waitingFor.length} of ${r.total}:`)
      : !done && (r.phase === "prepare" || r.phase === "retire")
        ? h("p", { class: "muted" }, "the gate would pass now")
        : null,
    waiting
      ? h(
          "ul",
          { class: "waiting" },
          ...r.waitingFor.map((w) => h("li", { "data-waiting": w.name }, h("strong", {}, w.name), ` ${w.why}`)),
        )
      : null,
    ...r.notes.map((n) => h("p", { class: "muted" }, `note: ${n}`)),
  );
}

function renderProcesses(components: ComponentView[]): void {
  if (components.length === 0) {
    fill($("processes"), h("p", { class: "muted" }, "No supervisor events in this run's mesh-up.log."));
    return;
  }
  fill(
    $("processes"),
    h(
      "table",
      { class: "processes" },
      h("thead", {}, h("tr", {}, ...["process", "state", "pid", "restarts", "last exit"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        ...components.map((c) => {
          const note = restartNote(c);
          const state =
            c.state === "restarting"
              ? `restarting (attempt ${c.attempt ?? "?"}, in ${c.delayMs ?? "?"} ms)`
              : c.state === "gave_up"
                ? "gave up"
                : c.state;
          return h(
            "tr",
            { class: note ? note[1] : "", "data-component": c.component, "data-state": c.state },
            h("td", {}, c.component),
            h("td", {}, state),
            h("td", {}, c.pid === null ? "—" : String(c.pid)),
            h("td", {}, note ? `${c.restarts} (${note[0]})` : String(c.restarts)),
            h("td", {}, c.lastExit ? `${c.lastExit} at ${clock(c.lastExitAt)}` : "—"),
          );
        }),
      ),
    ),
  );
}

/** The CA servers from their own lines: where each listens, its pid, restarts, and which one runs the once-only jobs. */
function renderCaReplicas(v: CaReplicasView): void {
  if (v.replicas.length === 0) {
    fill($("ca-replicas"), h("p", { class: "muted" }, "No ca.started line in this run's logs."));
    return;
  }
  const lease = v.leaseHolder
    ? `the once-only jobs (re-signing CRLs) run on ${v.leaseHolder} since ${clock(v.leaseSince)}`
    : "no replica holds the jobs' lease now";
  fill(
    $("ca-replicas"),
    h(
      "table",
      { class: "processes" },
      h("thead", {}, h("tr", {}, ...["address", "state", "pid", "starts", "store", "jobs"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        ...v.replicas.map((r) =>
          h(
            "tr",
            {
              class: r.state === "stopped" ? "warn" : r.starts > 1 ? "calm" : "",
              "data-ca-url": r.url,
              "data-runs-jobs": String(r.runsJobs),
            },
            h("td", {}, r.url),
            h("td", {}, r.state),
            h("td", {}, r.pid === null ? "—" : String(r.pid)),
            h("td", {}, r.starts > 1 ? `${r.starts} (restarted ${r.starts - 1}×)` : String(r.starts)),
            h("td", {}, r.store ?? "—"),
            h("td", {}, r.runsJobs ? "holds the lease" : "—"),
          ),
        ),
      ),
    ),
    h("p", { class: "muted" }, lease),
  );
}

// Countdowns tick between snapshots.
setInterval(() => {
  for (const el of document.querySelectorAll<HTMLElement>(".countdown"))
    el.textContent = until(el.dataset.notAfter ?? "");
}, 1000);

function setStatus(text: string, cls: string): void {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${cls}`;
}

/** The snapshot the page came with (a JSON data block: no script runs from it). */
function initial(): Snapshot | null {
  const el = document.getElementById("initial-state");
  if (!el?.textContent) return null;
  try {
    return JSON.parse(el.textContent) as Snapshot;
  } catch {
    return null;
  }
}

function connect(): void {
  const es = new EventSource("/events");
  es.addEventListener("snapshot", (ev) => {
    setStatus("live", "live");
    render(JSON.parse((ev as MessageEvent<string>).data) as Snapshot);
  });
  es.onerror = () => setStatus(last ? "connection lost, retrying…" : "connecting…", "lost");
}

const first = initial();
if (first) {
  render(first);
  setStatus("live", "live");
}
connect();
