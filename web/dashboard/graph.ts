// The mesh as a graph in SVG: services and callers on a circle (a fixed layout, so nothing
// moves as counts change), one arrow per caller -> callee with its counts in the window.
import type { EdgeView, Snapshot } from "../../scripts/dashboard/view.ts";
import { UNAUTHENTICATED } from "../../scripts/dashboard/view.ts";
import { fill, s } from "./dom.ts";

const W = 640;
const H = 420;
const R = 20;

export function drawGraph(svg: SVGSVGElement, snap: Snapshot): void {
  const names = new Set<string>(snap.services.map((x) => x.name));
  for (const e of snap.edges) {
    names.add(e.from);
    names.add(e.to);
  }
  // Services first, then callers, the stranger node last (at the bottom-left).
  const services = snap.services.map((x) => x.name).sort();
  const others = [...names].filter((n) => !services.includes(n) && n !== UNAUTHENTICATED).sort();
  const order = [...services, ...others, ...(names.has(UNAUTHENTICATED) ? [UNAUTHENTICATED] : [])];
  const pos = new Map<string, { x: number; y: number }>();
  order.forEach((n, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(order.length, 1);
    pos.set(n, { x: W / 2 + 230 * Math.cos(a), y: H / 2 + 160 * Math.sin(a) });
  });

  const defs = s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z" })));
  const edges = snap.edges.map((e) => edge(e, pos));
  const nodes = order.map((n) => {
    const p = pos.get(n)!;
    const svc = snap.services.find((x) => x.name === n);
    const cls = ["node", n === UNAUTHENTICATED ? "stranger" : "", svc && !svc.up ? "down" : "", svc?.identity?.status === "revoked" ? "revoked" : ""].filter(Boolean).join(" ");
    return s("g", { class: cls, "data-node": n }, s("circle", { cx: p.x, cy: p.y, r: R }), s("text", { x: p.x, y: p.y + R + 16 }, n));
  });
  fill(svg, defs, ...edges, ...nodes);
}

function edge(e: EdgeView, pos: Map<string, { x: number; y: number }>): SVGElement {
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
  const total = e.allowed + e.denied + e.refused + e.failed;
  const parts = [e.allowed && `✓${e.allowed}`, e.denied && `⊘${e.denied}`, e.refused && `✗${e.refused}`, e.failed && `!${e.failed}`].filter(Boolean).join(" ");
  const label = parts || "idle";
  const mx = (x1 + x2) / 2;
  const my = (y1 + y2) / 2;
  const cls = ["edge", e.failing ? "failing" : "", total === 0 ? "idle" : "", e.locked ? "locked" : ""].filter(Boolean).join(" ");
  const title = `${e.from} → ${e.to}: ${e.allowed} allowed, ${e.denied} denied, ${e.refused} refused, ${e.failed} failed${e.lastReason ? ` (last: ${e.lastReason})` : ""}`;
  return s(
    "g",
    { class: cls, "data-edge": `${e.from}>${e.to}` },
    s("title", {}, title),
    s("line", { x1, y1, x2, y2, "marker-end": "url(#arrow)" }),
    e.locked ? lock(mx, my) : null,
    s("text", { x: mx + nx * 3, y: my + ny * 3 + 4 }, label),
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
