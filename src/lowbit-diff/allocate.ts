/**
 * lowbit's allocation: which option (width, layout, outliers, low-rank factors, or nothing) each
 * tensor's change takes within the budget. Only bytes and errors matter here; encoder.ts makes the
 * options.
 */

/** A tensor's options, cheapest first: each its bytes (estimated framing included) and the error it leaves. */
export interface Choices {
  readonly options: readonly { readonly bytes: number; readonly error: number }[];
}

/** Buckets of the allocation's knapsack: the room is counted in steps of room / BUCKETS bytes. */
const BUCKETS = 4096;

/**
 * The option of each tensor within `room` bytes (estimated) of least total error: a multiple-choice
 * knapsack solved exactly by dynamic programming on bytes counted in steps of room / 4096 (each
 * option's bytes rounded up, so the choice always fits), then upgrades while bytes are left, the
 * most error removed per byte first. A greedy or Lagrangian search is not enough: a large tensor's
 * next option (1 to 2 bits) can cost more than every upgrade of the small ones together, and only
 * a search over combinations finds that giving up the small upgrades pays. `tensors` list every
 * option, cheapest first.
 */
export function allocate(tensors: readonly Choices[], room: number): number[] {
  const cells = Math.max(1, Math.min(BUCKETS, Math.floor(room)));
  const unit = Math.max(room, 1) / cells;
  // best[b]: the least error of the tensors so far within b cells; pick[t][b]: tensor t's option there.
  let best = new Float64Array(cells + 1);
  const pick: Int16Array[] = [];
  for (const t of tensors) {
    const next = new Float64Array(cells + 1).fill(Infinity);
    const mine = new Int16Array(cells + 1).fill(-1);
    t.options.forEach((o, q) => {
      const cost = Math.ceil(o.bytes / unit - 1e-9);
      for (let b = cost; b <= cells; b++) {
        const e = best[b - cost] + o.error;
        if (e < next[b]) {
          next[b] = e;
          mine[b] = q;
        }
      }
    });
    pick.push(mine);
    best = next;
  }
  const picks = tensors.map(() => 0);
  let at = cells;
  if (Number.isFinite(best[at])) {
    for (let t = tensors.length - 1; t >= 0; t--) {
      const q = pick[t][at];
      picks[t] = q;
      at -= Math.ceil(tensors[t].options[q].bytes / unit - 1e-9);
    }
  }
  const total = (p: number[]) => p.reduce((sum, q, i) => sum + tensors[i].options[q].bytes, 0);
  let left = room - total(picks);
  for (;;) {
    let bestI = -1;
    let bestQ = -1;
    let bestRate = 0;
    for (let i = 0; i < tensors.length; i++) {
      const o = tensors[i].options;
      const p = picks[i];
      for (let q = p + 1; q < o.length; q++) {
        const extra = o[q].bytes - o[p].bytes;
        if (extra > left) break;
        const rate = (o[p].error - o[q].error) / Math.max(extra, 1e-9);
        if (rate > bestRate) {
          bestRate = rate;
          bestI = i;
          bestQ = q;
        }
      }
    }
    if (bestI < 0) break;
    left -= tensors[bestI].options[bestQ].bytes - tensors[bestI].options[picks[bestI]].bytes;
    picks[bestI] = bestQ;
  }
  return picks;
}

/** Options on each side of a tensor's current choice (in bytes) the local search measures. */
const NEIGHBOURS = 4;

/**
 * A local search from `start` (the weight-space allocation) within `room`: each step tries the
 * options next to each tensor's current one in bytes ({@link NEIGHBOURS} on each side) that fit
 * the bytes left, measures the model with that one change,
 * and keeps the change that lowers the error most; it stops when none does. Starting from a point
 * where every tensor carries something matters: one tensor's change alone barely moves the
 * outputs, so upgrades bought from nothing are myopic.
 */
export function improveJointly(tensors: readonly Choices[], room: number, start: number[], errorOf: (picks: number[]) => number): number[] {
  const picks = start.slice();
  const bytes = (p: number[]) => p.reduce((s, q, i) => s + tensors[i].options[q].bytes, 0);
  let current = errorOf(picks);
  for (let step = 0; step < 64; step++) {
    const left = room - bytes(picks);
    let best: { i: number; q: number; error: number } | null = null;
    for (let i = 0; i < tensors.length; i++) {
      const o = tensors[i].options;
      // The neighbours of the current choice in bytes (a tensor has a hundred options or more).
      for (let q = Math.max(0, picks[i] - NEIGHBOURS); q <= Math.min(o.length - 1, picks[i] + NEIGHBOURS); q++) {
        if (q === picks[i] || o[q].bytes - o[picks[i]].bytes > left) continue;
        const trial = picks.slice();
        trial[i] = q;
        const error = errorOf(trial);
        if (error < (best ? best.error : current)) best = { i, q, error };
      }
    }
    if (!best) break;
    picks[best.i] = best.q;
    current = best.error;
  }
  return picks;
}
