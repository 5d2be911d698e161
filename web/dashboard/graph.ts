// The mesh as a graph in SVG: services and callers on an ellipse (a fixed layout, so nothing
// moves as counts change), one arrow per caller -> callee with its counts in the window. Each
// node's name sits outside the ellipse, away from its centre: every arrow runs inside it, so
// no arrow crosses a name.
import type { EdgeView, Snapshot } from "../../scripts/dashboard/view.ts";
import { UNAUTHENTICATED } from "../../scripts/dashboard/view.ts";
import { fill, s } from "./dom.ts";

const W = 880;
const H = 460;
const R = 20;
const RX = 270;
const RY = 165;
/** Gap between a node's circle and its name. */
const GAP = 10;

interface Placed {
  x: number;
  y: number;
  /** Unit vector from the centre of the ellipse through the node. */
  ux: number;
  uy: number;
}

export function drawGraph(svg: SVGSVGElement, snap: Snapshot): void {
  const names = new Set<string>(snap.services.map((x) => x.name));
  for (const e of snap.edges) {
    names.add(e.from);
    names.add(e.to);
  }
  // Services first, then callers, the stranger node last (at the top-left).
  const services = snap.services
    .filter((x) => !x.client)
    .map((x) => x.name)
    .sort();
  const others = [...names].filter((n) => !services.includes(n) && n !== UNAUTHENTICATED).sort();
  const order = [...services, ...others, ...(names.has(UNAUTHENTICATED) ? [UNAUTHENTICATED] : [])];
  const pos = new Map<string, Placed>();
  order.forEach((n, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(order.length, 1);
    pos.set(n, { x: W / 2 + RX * Math.cos(a), y: H / 2 + RY * Math.sin(a), ux: Math.cos(a), uy: Math.sin(a) });
  });
  const gaveUp = new Set(snap.components.filter((c) => c.state === "gave_up").map((c) => c.component));

  const defs = s(
    "defs",
    {},
    s(
      "marker",
      {
        id: "arrow",
        viewBox: "0 0 10 10",
        refX: 10,
        refY: 5,
        markerWidth: 7,
        markerHeight: 7,
        orient: "auto-start-reverse",
      },
      s("path", { d: "M 0 0 L 10 5 L 0 10 z" }),
    ),
  );
  const taken: Box[] = [];
  const edges = snap.edges.map((e) => edge(e, pos, taken));
  const nodes = order.map((n) => {
    const p = pos.get(n)!;
    const svc = snap.services.find((x) => x.name === n);
    const bad = svc?.identity?.status === "revoked" || svc?.identity?.status === "expired" || gaveUp.has(n);
    const cls = [
      "node",
      n === UNAUTHENTICATED ? "stranger" : "",
      svc?.client ? "client" : "",
      svc && !svc.up ? "down" : "",
      bad ? "bad" : "",
    ]
      .filter(Boolean)
      .join(" ");
    return s("g", { class: cls, "data-node": n }, s("circle", { cx: p.x, cy: p.y, r: R }), label(n, p));
  });
  const empty =
    order.length === 0
      ? s(
          "text",
          { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" },
          "no service or caller seen in this run yet",
        )
      : null;
  fill(svg, defs, ...edges, ...nodes, empty);
}

/** The name outside the ellipse: beside a node on the sides, above or below one at the top or bottom. */
function label(name: string, p: Placed): SVGElement {
  const d = R + GAP;
  if (Math.abs(p.ux) > 0.35) {
    return s(
      "text",
      {
        class: "label",
        x: p.x + p.ux * d + (p.ux > 0 ? 2 : -2),
        y: p.y + p.uy * d + 4,
        "text-anchor": p.ux > 0 ? "start" : "end",
      },
      name,
    );
  }
  return s("text", { class: "label", x: p.x, y: p.uy < 0 ? p.y - d : p.y + d + 10, "text-anchor": "middle" }, name);
}

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

const overlaps = (a: Box, b: Box) => Math.abs(a.x - b.x) * 2 < a.w + b.w && Math.abs(a.y - b.y) * 2 < a.h + b.h;

/**
 * Where along its line an edge's counts go: the middle, unless another edge's counts are there
 * already (lines cross in the middle of the ellipse), then a little towards either end.
 */
function labelAt(x1: number, y1: number, x2: number, y2: number, text: string, taken: Box[]): { x: number; y: number } {
  const w = 7.5 * [...text].length + 6;
  let best = { x: (x1 + x2) / 2, y: (y1 + y2) / 2 };
  for (const t of [0.5, 0.38, 0.62, 0.3, 0.7]) {
    const b = { x: x1 + (x2 - x1) * t, y: y1 + (y2 - y1) * t, w, h: 16 };
    if (!taken.some((o) => overlaps(o, b))) {
      taken.push(b);
      return b;
    }
    if (t === 0.5) best = b;
  }
  taken.push({ ...best, w, h: 16 });
  return best;
}

function edge(e: EdgeView, pos: Map<string, Placed>, taken: Box[]): SVGElement {
  const a = pos.get(e.from)!;
  const b = pos.get(e.to)!;
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len = Math.hypot(dx, dy) || 1;
  // Two edges between the same pair (a->b, b->a) are drawn side by side.
  const off = 6;
  const nx = (-dy / len) * off;
  const ny = (dx / len) * off;
  const x1 = a.x + (dx / len) * R + nx;
  const y1 = a.y + (dy / len) * R + ny;
  const x2 = b.x - (dx / len) * (R + 3) + nx;
  const y2 = b.y - (dy / len) * (R + 3) + ny;
  const total = e.allowed + e.denied + e.keptOut + e.refused + e.failed;
  const parts = [
    e.allowed && `✓${e.allowed}`,
    e.denied && `⊘${e.denied}`,
    e.keptOut && `⊖${e.keptOut}`,
    e.refused && `✗${e.refused}`,
    e.failed && `!${e.failed}`,
  ]
    .filter(Boolean)
    .join(" ");
  const text = parts || "idle";
  // The counts sit beside the line (on the side of its own direction), the padlock on it.
  const at = labelAt(x1 + nx * 3, y1 + ny * 3 + 4, x2 + nx * 3, y2 + ny * 3 + 4, text, taken);
  const mx = at.x - nx * 3;
  const my = at.y - ny * 3 - 4;
  // One look per edge, the worst first: wrong (red), then held (calm), then allowed.
  const look =
    e.failing || e.mismatch
      ? "failing"
      : total === 0
        ? "idle"
        : e.allowed === 0 && e.denied > 0
          ? "held"
          : e.allowed === 0 && e.keptOut > 0
            ? "kept"
            : "ok";
  const cls = ["edge", look, e.mismatch ? "mismatch" : "", e.locked ? "locked" : ""].filter(Boolean).join(" ");
  const title = `${e.from} → ${e.to}: ${e.allowed} allowed, ${e.denied} denied by the policy, ${e.keptOut} kept out in the handshake, ${e.refused} refused unexpectedly, ${e.failed} failed${e.lastReason ? ` (last: ${e.lastReason})` : ""}${e.mismatch ? "; a call went otherwise than the policy says (see the policy table)" : ""}`;
  return s(
    "g",
    { class: cls, "data-edge": `${e.from}>${e.to}` },
    s("title", {}, title),
    s("line", { x1, y1, x2, y2, "marker-end": "url(#arrow)" }),
    e.locked ? lock(mx, my) : null,
    s("text", { class: "count", x: at.x, y: at.y }, text),
  );
}

/** A padlock on the edge: both ends proved who they are with certificates. */
function lock(x: number, y: number): SVGElement {
  return s(
    "g",
    { class: "lock", transform: `translate(${x - 5} ${y - 6})` },
    s("title", {}, "mTLS: both ends authenticated"),
    s("rect", { x: 0, y: 5, width: 10, height: 7, rx: 1 }),
    s("path", { d: "M2 5 V3.5 a3 3 0 0 1 6 0 V5" }),
  );
}
