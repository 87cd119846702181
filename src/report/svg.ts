/** Small self-contained SVG charts for the report (no scripts, no external assets). */

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
  /** Draw markers only (no line). */
  markersOnly?: boolean;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  series: Series[];
  width?: number;
  height?: number;
  /** Format tick labels. */
  xFormat?: (v: number) => string;
  yFormat?: (v: number) => string;
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

/** Human bytes for axes: 950 B, 12 KB, 3.4 MB. */
export function shortBytes(v: number): string {
  if (v < 1000) return `${Math.round(v)} B`;
  if (v < 1e6) return `${+(v / 1e3).toPrecision(3)} KB`;
  return `${+(v / 1e6).toPrecision(3)} MB`;
}

/** An SVG line/scatter chart with axes, ticks, legend and a tooltip per point. */
export function lineChart(spec: ChartSpec): string {
  const W = spec.width ?? 640;
  const H = spec.height ?? 360;
  const m = { l: 64, r: 178, t: 34, b: 48 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = spec.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.xLog || x > 0) && (!spec.yLog || y > 0));
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (!all.length) [x0, x1, y0, y1] = spec.xLog || spec.yLog ? [1, 10, 1, 10] : [0, 1, 0, 1];
  if (spec.xLog) [x0, x1] = [x0 / 1.5, x1 * 1.5];
  else if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (spec.yLog) [y0, y1] = [y0 / 1.5, y1 * 1.5];
  else {
    const pad = (y1 - y0 || Math.abs(y1) || 1) * 0.08;
    [y0, y1] = [y0 - pad, y1 + pad];
  }
  const sx = (x: number) => m.l + (spec.xLog ? (Math.log(x) - Math.log(x0)) / (Math.log(x1) - Math.log(x0)) : (x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.t + ph - (spec.yLog ? (Math.log(y) - Math.log(y0)) / (Math.log(y1) - Math.log(y0)) : (y - y0) / (y1 - y0)) * ph;
  const xf = spec.xFormat ?? ((v: number) => String(+v.toPrecision(3)));
  const yf = spec.yFormat ?? ((v: number) => String(+v.toPrecision(3)));
  const parts: string[] = [];
  parts.push(`<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(spec.title)}" data-series="${spec.series.length}" data-points="${all.length}">`);
  parts.push(`<text x="${m.l}" y="20" class="title">${esc(spec.title)}</text>`);
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" class="plot"/>`);
  for (const t of spec.xLog ? logTicks(x0, x1) : niceTicks(x0, x1)) {
    const x = sx(t);
    parts.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${m.t}" y2="${m.t + ph}" class="grid"/><text x="${x.toFixed(1)}" y="${m.t + ph + 16}" class="tick" text-anchor="middle">${esc(xf(t))}</text>`);
  }
  for (const t of spec.yLog ? logTicks(y0, y1) : niceTicks(y0, y1)) {
    const y = sy(t);
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" class="grid"/><text x="${m.l - 6}" y="${(y + 4).toFixed(1)}" class="tick" text-anchor="end">${esc(yf(t))}</text>`);
  }
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 8}" class="axis" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${m.t + ph / 2}) rotate(-90)" class="axis" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  spec.series.forEach((s, i) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.xLog || x > 0) && (!spec.yLog || y > 0));
    if (pts.length > 1 && !s.markersOnly) {
      parts.push(`<polyline class="series" data-name="${esc(s.name)}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    }
    for (const [x, y] of pts) parts.push(`<circle class="point" cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${s.color}"><title>${esc(`${s.name}: ${xf(x)}, ${yf(y)}`)}</title></circle>`);
    const ly = m.t + 8 + i * 18;
    parts.push(`<line x1="${m.l + pw + 12}" x2="${m.l + pw + 32}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/><text x="${m.l + pw + 38}" y="${ly + 4}" class="legend">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
