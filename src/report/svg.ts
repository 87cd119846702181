/**
 * Small self-contained SVG charts for the report (no scripts, no external assets), and their
 * legends as HTML (which wraps on a narrow screen where an SVG legend would shrink).
 */

/**
 * A point: x, y, what its tooltip says (several settings when one point stands for them all),
 * and a short tag naming it in the caption when it is drawn at the edge (`1%`, `u3`).
 */
export type ChartPoint = [number, number, string?, string?];

/** One line (or set of markers) of a chart. */
export interface Series {
  name: string;
  color: string;
  points: ChartPoint[];
  dashed?: boolean;
  /** Draw markers only (no line). */
  markersOnly?: boolean;
  /** Marker shape (default circle). */
  marker?: 'circle' | 'square';
  /**
   * Whether the y-axis is fitted to this series (default true). A series that is not, drawn
   * where it falls inside the axis, is marked at the edge where it falls outside (so a baseline
   * far below does not squash the methods compared).
   */
  fit?: boolean;
}

/** A horizontal reference line (the base model, the teacher). */
export interface ReferenceLine {
  y: number;
  label: string;
  color: string;
  dashed?: boolean;
  /** Whether the axis stretches to show it (default false: marked at the edge when outside). */
  fit?: boolean;
}

/** A chart to draw. */
export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  series: Series[];
  lines?: ReferenceLine[];
  /** A shaded band of y values (the tolerance below a reference), with its label; the axis shows it. */
  band?: { lo: number; hi: number; label: string };
  width?: number;
  height?: number;
  /** Format tick labels. */
  xFormat?: (v: number) => string;
  yFormat?: (v: number) => string;
  /** Unit after a y value in tooltips and captions (`%`). */
  yUnit?: string;
}

/** A point or line drawn at the edge because its value is outside the y-axis. */
export interface OffAxis {
  name: string;
  tag?: string;
  x?: number;
  y: number;
  side: 'below' | 'above';
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (hi <= lo) return [lo];
  const span = hi - lo;
  const step0 = span / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  // A log axis needs a finite positive range; anything else has no ticks (and must not loop).
  if (!(lo > 0) || !(hi >= lo) || !Number.isFinite(hi)) return ticks;
  const decades = Math.log10(hi / lo);
  // fewer ticks per decade as the range widens, so labels never overlap
  const mantissas = decades > 3 ? [1] : decades > 1.5 ? [1, 3] : [1, 2, 5];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of mantissas) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  }
  return ticks;
}

/** An SVG line/scatter chart with axes, ticks and a tooltip per point, and what it drew at the edges. */
export function chart(spec: ChartSpec): { svg: string; offAxis: OffAxis[] } {
  const W = spec.width ?? 640;
  const H = spec.height ?? 360;
  const m = { l: 58, r: 14, t: 30, b: 48 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const ok = ([x, y]: ChartPoint) => Number.isFinite(x) && Number.isFinite(y) && (!spec.xLog || x > 0) && (!spec.yLog || y > 0);
  const all = spec.series.flatMap((s) => s.points).filter(ok);
  const fitted = spec.series.filter((s) => s.fit !== false).flatMap((s) => s.points).filter(ok);
  // The axis fits the fitted series, the band and fitted lines; with none of those, everything.
  const fitYs = [...fitted.map((p) => p[1]), ...(spec.band ? [spec.band.lo, spec.band.hi] : []), ...(spec.lines ?? []).filter((l) => l.fit).map((l) => l.y)];
  const ys = fitted.length ? fitYs : [...all.map((p) => p[1]), ...fitYs];
  const xs = all.map((p) => p[0]);
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : spec.xLog ? [1, 10] : [0, 1];
  let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : spec.yLog ? [1, 10] : [0, 1];
  if (spec.xLog) [x0, x1] = [x0 / 1.5, x1 * 1.5];
  else if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (spec.yLog) [y0, y1] = [y0 / 1.5, y1 * 1.5];
  else {
    const pad = (y1 - y0 || Math.abs(y1) || 1) * 0.08;
    [y0, y1] = [y0 - pad, y1 + pad];
  }
  const sx = (x: number) => m.l + (spec.xLog ? (Math.log(x) - Math.log(x0)) / (Math.log(x1) - Math.log(x0)) : (x - x0) / (x1 - x0)) * pw;
  const syRaw = (y: number) => m.t + ph - (spec.yLog ? (Math.log(y) - Math.log(y0)) / (Math.log(y1) - Math.log(y0)) : (y - y0) / (y1 - y0)) * ph;
  const side = (y: number): OffAxis['side'] | null => (y < y0 ? 'below' : y > y1 ? 'above' : null);
  const sy = (y: number) => Math.min(m.t + ph, Math.max(m.t, syRaw(y)));
  const xf = spec.xFormat ?? ((v: number) => String(+v.toPrecision(3)));
  const yf = spec.yFormat ?? ((v: number) => String(+v.toPrecision(3)));
  const yv = (v: number) => `${yf(v)}${spec.yUnit ?? ''}`;
  const offAxis: OffAxis[] = [];
  const parts: string[] = [];
  parts.push(`<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(spec.title)}" data-series="${spec.series.length}" data-points="${all.length}">`);
  parts.push(`<text x="${m.l}" y="19" class="title">${esc(spec.title)}</text>`);
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" class="plot"/>`);
  if (spec.band && !spec.yLog) {
    const [a, b] = [sy(spec.band.hi), sy(spec.band.lo)];
    parts.push(`<rect class="band" x="${m.l}" y="${a.toFixed(1)}" width="${pw}" height="${Math.max(0, b - a).toFixed(1)}"><title>${esc(spec.band.label)}</title></rect>`);
  }
  for (const t of spec.xLog ? logTicks(x0, x1) : niceTicks(x0, x1)) {
    const x = sx(t);
    parts.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${m.t}" y2="${m.t + ph}" class="grid"/><text x="${x.toFixed(1)}" y="${m.t + ph + 16}" class="tick" text-anchor="middle">${esc(xf(t))}</text>`);
  }
  for (const t of spec.yLog ? logTicks(y0, y1) : niceTicks(y0, y1)) {
    const y = syRaw(t);
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" class="grid"/><text x="${m.l - 6}" y="${(y + 4).toFixed(1)}" class="tick" text-anchor="end">${esc(yf(t))}</text>`);
  }
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 8}" class="axis" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${m.t + ph / 2}) rotate(-90)" class="axis" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  for (const l of spec.lines ?? []) {
    const off = side(l.y);
    if (off) {
      offAxis.push({ name: l.label, y: l.y, side: off });
      continue;
    }
    const y = syRaw(l.y).toFixed(1);
    parts.push(`<line class="reference" x1="${m.l}" x2="${m.l + pw}" y1="${y}" y2="${y}" stroke="${l.color}" stroke-width="1.5"${l.dashed ? ' stroke-dasharray="5 4"' : ''}><title>${esc(`${l.label}: ${yv(l.y)}`)}</title></line><text class="reference-label" x="${m.l + 4}" y="${(Number(y) - 4).toFixed(1)}" fill="${l.color}">${esc(`${l.label} ${yv(l.y)}`)}</text>`);
  }
  // A point where another series already drew one is a ring around it, so neither hides the other.
  const taken = new Set<string>();
  const marker = (s: Series, x: number, y: number, title: string, off: OffAxis['side'] | null) => {
    const cx = sx(x).toFixed(1);
    const cy = sy(y);
    const at = `${cx},${cy.toFixed(0)}`;
    if (!off && taken.has(at)) return `<circle class="point ring" cx="${cx}" cy="${cy.toFixed(1)}" r="6.5" fill="none" stroke="${s.color}" stroke-width="2"><title>${esc(title)}</title></circle>`;
    if (!off) taken.add(at);
    if (off) {
      // A triangle at the edge, pointing the way the value lies.
      const [tip, back] = off === 'below' ? [cy + 1, cy - 8] : [cy - 1, cy + 8];
      return `<path class="point off-axis" d="M${cx} ${tip.toFixed(1)} l-5 ${(back - tip).toFixed(1)} h10 z" fill="${s.color}"><title>${esc(title)}</title></path>`;
    }
    return s.marker === 'square'
      ? `<rect class="point" x="${(Number(cx) - 3.5).toFixed(1)}" y="${(cy - 3.5).toFixed(1)}" width="7" height="7" fill="${s.color}"><title>${esc(title)}</title></rect>`
      : `<circle class="point" cx="${cx}" cy="${cy.toFixed(1)}" r="3.5" fill="${s.color}"><title>${esc(title)}</title></circle>`;
  };
  for (const s of spec.series) {
    const pts = s.points.filter(ok);
    // A line joins only the points inside the axis; off-axis points are marked on their own.
    const inside = pts.filter(([, y]) => !side(y));
    if (inside.length > 1 && !s.markersOnly) {
      parts.push(`<polyline class="series" data-name="${esc(s.name)}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${inside.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    }
    for (const [x, y, label, tag] of pts) {
      const off = side(y);
      const title = `${label ?? s.name}: ${xf(x)}, ${yv(y)}${off ? ` (${off} the axis)` : ''}`;
      if (off) offAxis.push({ name: s.name, ...(tag ? { tag } : {}), x, y, side: off });
      parts.push(marker(s, x, y, title, off));
    }
  }
  parts.push('</svg>');
  return { svg: parts.join('\n'), offAxis };
}

/** {@link chart}'s SVG alone. */
export function lineChart(spec: ChartSpec): string {
  return chart(spec).svg;
}

/** A chart's legend as an HTML list (wraps on narrow screens). */
export function legendHtml(series: Pick<Series, 'name' | 'color' | 'dashed' | 'marker' | 'markersOnly'>[], lines: Pick<ReferenceLine, 'label' | 'color' | 'dashed'>[] = []): string {
  const item = (name: string, color: string, o: { dashed?: boolean; marker?: Series['marker'] | 'circle'; line: boolean }) => {
    const line = o.line ? `<line x1="1" x2="25" y1="6" y2="6" stroke="${color}" stroke-width="${o.dashed ? 2 : 3}"${o.dashed ? ' stroke-dasharray="5 3"' : ''}/>` : '';
    const marker = o.marker === 'square' ? `<rect x="9.5" y="2.5" width="7" height="7" fill="${color}"/>` : o.marker === 'circle' ? `<circle cx="13" cy="6" r="3.5" fill="${color}"/>` : '';
    return `<li><svg width="26" height="12" aria-hidden="true">${line}${marker}</svg>${esc(name)}</li>`;
  };
  return `<ul class="legend">${[
    ...series.map((s) => item(s.name, s.color, { dashed: s.dashed, marker: s.marker ?? (s.markersOnly ? 'circle' : undefined), line: !s.markersOnly })),
    ...lines.map((l) => item(l.label, l.color, { dashed: l.dashed, line: true })),
  ].join('')}</ul>`;
}
