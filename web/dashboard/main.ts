// The dashboard page: listens to the server's snapshot stream and redraws each panel.
import type { CellView, FeedItem, IssuerView, ServiceView, Snapshot } from "../../scripts/dashboard/view.ts";
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
  drawGraph($("graph") as unknown as SVGSVGElement, snap);
  renderServices(snap.services);
  renderFeed(snap.feed);
  renderMatrix(snap);
  renderIssuers(snap.issuers);
  timeline.update(snap.timeline);
  fill($("sources"), `logs ${snap.sources.logs} · CA ${snap.sources.pki} · policy ${snap.sources.policy}`);
}

function renderServices(services: ServiceView[]): void {
  const now = Date.now();
  fill(
    $("services"),
    ...services.map((svc) => {
      const id = svc.identity;
      const status = !svc.up ? ["down", "warn"] : !id ? ["no identity yet", "warn"] : id.status === "revoked" ? ["REVOKED", "bad"] : id.status === "expired" ? ["EXPIRED", "bad"] : ["up", ""];
      return h(
        "div",
        { class: "card", "data-service": svc.name },
        h("h3", {}, svc.name, h("span", { class: `badge ${status[1]}`, "data-status": status[0] }, status[0]!), svc.port ? h("small", { class: "muted" }, `:${svc.port}`) : null),
        id
          ? h(
              "dl",
              {},
              h("dt", {}, "identity"), h("dd", {}, id.dns),
              h("dt", {}, "serial"), h("dd", {}, id.serial),
              h("dt", {}, "issuer"), h("dd", {}, id.issuer ? `${id.issuer}${id.generation ? ` (generation ${id.generation})` : ""}` : "not in this CA's ledger"),
              h("dt", {}, "expires in"), h("dd", { class: "countdown", "data-not-after": id.notAfter }, until(id.notAfter, now)),
              h("dt", {}, "last renewal"), h("dd", {}, svc.lastRenewal ? clock(svc.lastRenewal) : "—"),
              h("dt", {}, "trusts"), h("dd", {}, svc.trusts.join("; ") || "—"),
              id.revokedAt ? h("dt", {}, "revoked") : null, id.revokedAt ? h("dd", {}, id.revokedAt) : null,
            )
          : null,
      );
    }),
  );
}

function renderFeed(feed: FeedItem[]): void {
  fill(
    $("feed"),
    ...feed.map((f) =>
      h(
        "li",
        { class: f.severity, "data-event": f.event, "data-reason": f.reason },
        h("div", { class: "head" }, `${clock(f.time)} · ${f.service} · ${f.event} · `, h("span", { class: "reason" }, f.reason)),
        f.peer ? h("div", { class: "peer" }, `peer: ${f.peer}`) : null,
        h("div", { class: "sentence" }, f.sentence),
        f.fix ? h("div", { class: "fix" }, `fix: ${f.fix}`) : null,
      ),
    ),
  );
  if (feed.length === 0) fill($("feed"), h("li", { class: "warning" }, "nothing refused yet"));
}

function renderMatrix(snap: Snapshot): void {
  const m = snap.matrix;
  $("policy-file").textContent = m.policyError ? `policy ${m.policyFile}: ${m.policyError} (showing the last good one)` : `policy ${m.policyFile}, decided for GET /healthz; below it the last call seen`;
  const cell = (c: CellView | undefined) => {
    if (!c) return h("td");
    const seenDenied = c.observed?.startsWith("403") ?? false;
    const seenOk = c.observed !== null && /^[23]\d\d /.test(c.observed);
    const mismatch = c.observed !== null && ((c.allow && seenDenied) || (!c.allow && seenOk));
    return h("td", { class: `${c.allow ? "allow" : "deny"}${mismatch ? " mismatch" : ""}`, "data-cell": `${c.caller}>${c.service}` }, `${c.allow ? "allow" : "deny"} · ${c.rule}`, c.observed ? h("span", { class: "seen" }, `seen ${c.observed}`) : null);
  };
  fill(
    $("matrix"),
    h("thead", {}, h("tr", {}, h("th", {}, "caller \\ callee"), ...m.services.map((x) => h("th", {}, x)))),
    h("tbody", {}, ...m.callers.map((caller) => h("tr", {}, h("th", {}, caller), ...m.services.map((svc) => cell(m.cells.find((c) => c.caller === caller && c.service === svc)))))),
  );
}

function renderIssuers(issuers: IssuerView[]): void {
  const now = Date.now();
  fill(
    $("issuers"),
    h("thead", {}, h("tr", {}, ...["CA", "kind", "generation", "state", "expires in", "CRL next update"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      ...issuers.map((i) => {
        const crlSoon = i.crlNextUpdate !== null && Date.parse(i.crlNextUpdate) - now < 7 * 86_400_000;
        return h(
          "tr",
          {},
          h("td", {}, i.name), h("td", {}, i.kind), h("td", {}, String(i.generation)), h("td", {}, i.state),
          h("td", {}, until(i.notAfter, now)),
          h("td", { class: crlSoon ? "mismatch" : "" }, i.crlNextUpdate ? `in ${until(i.crlNextUpdate, now)}` : "—"),
        );
      }),
    ),
  );
}

// Countdowns tick between snapshots.
setInterval(() => {
  for (const el of document.querySelectorAll<HTMLElement>(".countdown")) el.textContent = until(el.dataset.notAfter ?? "");
}, 1000);

function connect(): void {
  const status = $("status");
  const es = new EventSource("/events");
  es.addEventListener("snapshot", (ev) => {
    status.textContent = "live";
    status.className = "status live";
    render(JSON.parse((ev as MessageEvent<string>).data) as Snapshot);
  });
  es.onerror = () => {
    status.textContent = last ? "connection lost, retrying…" : "connecting…";
    status.className = "status lost";
  };
}
connect();
