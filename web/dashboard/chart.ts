// The timeline: calls per second that succeeded, were held back as the policy asks, and failed
// over the last minutes, with the
// drill's phases and the rotation's gates marked. uPlot draws it on a canvas.
import uPlot from "uplot";
import type { TimelineView } from "../../scripts/dashboard/view.ts";

export class Timeline {
  private plot: uPlot | null = null;
  private marks: TimelineView["marks"] = [];

  constructor(private readonly el: HTMLElement) {}

  update(t: TimelineView): void {
    const xs = t.ok.map((_, i) => t.start + i);
    const data: uPlot.AlignedData = [xs, t.ok, t.held, t.failed];
    this.marks = t.marks;
    if (!this.plot) {
      this.plot = new uPlot(
        {
          width: Math.max(this.el.clientWidth, 300),
          height: 220,
          series: [
            {},
            { label: "succeeded", stroke: "#3fb950", fill: "rgba(63,185,80,.15)" },
            {
              label: "denied or kept out, as intended",
              stroke: "#7d93b2",
              fill: "rgba(125,147,178,.15)",
              dash: [6, 4],
            },
            { label: "failed or refused unexpectedly", stroke: "#f85149", fill: "rgba(248,81,73,.25)" },
          ],
          axes: [
            { stroke: "#8b96a3", grid: { stroke: "#2d3640" } },
            { stroke: "#8b96a3", grid: { stroke: "#2d3640" } },
          ],
          hooks: { draw: [(u) => this.drawMarks(u)] },
        },
        data,
        this.el,
      );
      new ResizeObserver(() => this.plot?.setSize({ width: Math.max(this.el.clientWidth, 300), height: 220 })).observe(
        this.el,
      );
    } else {
      this.plot.setData(data);
    }
  }

  /** A vertical line and a label per phase or gate. */
  private drawMarks(u: uPlot): void {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#58a6ff";
    ctx.fillStyle = "#d8dee6";
    ctx.font = `${12 * devicePixelRatio}px system-ui`;
    const line = 14 * devicePixelRatio;
    // Where each of the six label rows is taken up to: a label goes in the first row free at its x.
    const rowRight = [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity];
    for (const m of this.marks) {
      const x = u.valToPos(m.t, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      // Labels that would overlap an earlier one go a row lower (the least taken row when none is free).
      const label = m.label.slice(0, 40);
      let row = rowRight.findIndex((r) => x + 4 >= r + 6);
      if (row < 0) row = rowRight.indexOf(Math.min(...rowRight));
      ctx.fillText(label, x + 4, u.bbox.top + line * (row + 1));
      rowRight[row] = x + 4 + ctx.measureText(label).width;
    }
    ctx.restore();
  }
}
