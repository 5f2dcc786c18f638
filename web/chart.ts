import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Mark, Rates, Spans } from './types.js';

/** What one drawing of the chart shows. */
export interface ChartData {
  rates: Rates;
  spans: Spans[];
  marks: Mark[];
}

/** What the chart tells the page. */
export interface ChartEvents {
  /** A range was dragged across: show it. */
  zoom(fromUs: number, toUs: number): void;
  /** The cursor is over bucket [fromUs, toUs). */
  hover(fromUs: number, toUs: number): void;
}

const COLORS = ['#2563eb', '#d97706', '#059669', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#dc2626'];

/** A uPlot chart of writes/s per node with windows as bands, holes, baselines as ticks and dangerous events as lines. */
export class TimelineChart {
  private plot: uPlot | undefined;
  private data: ChartData | undefined;

  constructor(
    private readonly el: HTMLElement,
    private readonly on: ChartEvents,
  ) {
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(el);
  }

  /** Chart width in CSS pixels: the bucket count the page asks for follows it. */
  width(): number {
    return Math.max(300, this.el.clientWidth);
  }

  private size() {
    return { width: this.width(), height: 320 };
  }

  /** Draws `d` (a new chart each time: the set of nodes may change). */
  show(d: ChartData): void {
    this.data = d;
    const { rates } = d;
    const n = Math.ceil((rates.toUs - rates.fromUs) / rates.bucketUs);
    const perSecond = 1e6 / rates.bucketUs;
    const xs = Array.from({ length: n }, (_, i) => (rates.fromUs + i * rates.bucketUs) / 1e6);
    const ys = rates.nodes.map((s) => s.counts.map((c) => c * perSecond));
    const opts: uPlot.Options = {
      ...this.size(),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      scales: {
        x: { time: true, range: () => [rates.fromUs / 1e6, rates.toUs / 1e6] },
        y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] },
      },
      axes: [{}, { label: 'writes/s', size: 60 }],
      series: [
        { label: 'time (UTC)' },
        ...rates.nodes.map((s, i) => ({
          label: s.node,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          paths: uPlot.paths.stepped!({ align: 1 }),
          value: (_u: uPlot, v: number | null) => (v === null ? '–' : `${+v.toFixed(2)}/s`),
        })),
      ],
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      hooks: {
        drawClear: [(u) => this.drawSpans(u)],
        draw: [(u) => this.drawMarks(u)],
        setSelect: [
          (u) => {
            if (u.select.width < 3) return;
            const a = u.posToVal(u.select.left, 'x');
            const b = u.posToVal(u.select.left + u.select.width, 'x');
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            this.on.zoom(Math.floor(a * 1e6), Math.ceil(b * 1e6));
          },
        ],
        setCursor: [
          (u) => {
            const i = u.cursor.idx;
            if (i === null || i === undefined) return;
            const from = rates.fromUs + i * rates.bucketUs;
            this.on.hover(from, Math.min(rates.toUs, from + rates.bucketUs));
          },
        ],
      },
    };
    this.plot?.destroy();
    this.plot = new uPlot(opts, [xs, ...ys] as uPlot.AlignedData, this.el);
  }

  /** Windows as green bands, holes as red ones, baselines as ticks on top: behind the series. */
  private drawSpans(u: uPlot): void {
    if (!this.data) return;
    const { ctx, bbox } = u;
    const x = (us: number) => Math.min(bbox.left + bbox.width, Math.max(bbox.left, u.valToPos(us / 1e6, 'x', true)));
    ctx.save();
    for (const s of this.data.spans) {
      ctx.fillStyle = 'rgba(16, 185, 129, 0.10)';
      for (const w of s.windows)
        ctx.fillRect(x(w.fromTsUs), bbox.top, Math.max(1, x(w.toTsUs) - x(w.fromTsUs)), bbox.height);
      ctx.fillStyle = 'rgba(220, 38, 38, 0.25)';
      for (const h of s.holes)
        ctx.fillRect(x(h.fromTsUs), bbox.top, Math.max(2, x(h.toTsUs) - x(h.fromTsUs)), bbox.height);
      ctx.fillStyle = '#0f766e';
      for (const b of s.baselines) {
        const bx = x(b.tsUs);
        if (bx > bbox.left && bx < bbox.left + bbox.width) ctx.fillRect(bx - 1, bbox.top, 3, 10 * devicePixelRatio);
      }
    }
    ctx.restore();
  }

  /** Dangerous events as red vertical lines with a triangle on top. */
  private drawMarks(u: uPlot): void {
    if (!this.data) return;
    const { ctx, bbox } = u;
    ctx.save();
    ctx.strokeStyle = '#dc2626';
    ctx.fillStyle = '#dc2626';
    ctx.lineWidth = 1.5 * devicePixelRatio;
    for (const m of this.data.marks) {
      const mx = u.valToPos(m.tsUs / 1e6, 'x', true);
      if (mx < bbox.left || mx > bbox.left + bbox.width) continue;
      ctx.beginPath();
      ctx.moveTo(mx, bbox.top);
      ctx.lineTo(mx, bbox.top + bbox.height);
      ctx.stroke();
      const t = 6 * devicePixelRatio;
      ctx.beginPath();
      ctx.moveTo(mx - t, bbox.top);
      ctx.lineTo(mx + t, bbox.top);
      ctx.lineTo(mx, bbox.top + t * 1.4);
      ctx.fill();
    }
    ctx.restore();
  }
}
