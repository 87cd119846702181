/** Byte budgets: `1%` (of the float32 model size), `40KB`, `40KiB`, `2MB`, or a plain byte count. */
import { UsageError } from '../core/errors.ts';

const UNITS: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 * 1024, gb: 1e9, gib: 1024 ** 3 };

/**
 * Turn a budget string into bytes. Percentages are of `modelBytes` (the float32 size of all
 * float tensors: 4 bytes per weight).
 * @throws UsageError on anything else
 */
export function parseBudget(budget: string | number, modelBytes: number): number {
  if (typeof budget === 'number') {
    if (Number.isInteger(budget) && budget > 0) return budget;
    throw new UsageError(`budget must be a positive whole number of bytes, found ${budget}`);
  }
  const s = budget.trim().toLowerCase();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(s);
  if (pct) {
    const p = Number(pct[1]);
    if (!(p > 0 && p <= 100)) throw new UsageError(`budget percentage must be in (0, 100], found ${budget}`);
    return Math.max(1, Math.floor((modelBytes * p) / 100));
  }
  const m = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/.exec(s);
  if (!m) throw new UsageError(`budget ${JSON.stringify(budget)} is not understood: use a percentage of the model (\`1%\`), bytes (\`40000\`), or a size (\`40KB\`, \`40KiB\`, \`2MB\`)`);
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2] ?? 'b']);
  if (bytes <= 0) throw new UsageError(`budget must be more than 0 bytes, found ${budget}`);
  return bytes;
}

/** Human size: `12.3 KB`. */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} KB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(2)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/**
 * Largest k in [0, max] with `fits(k)`, assuming fits is (nearly) monotone; checks the answer.
 */
export function largestFitting(max: number, fits: (k: number) => boolean): number {
  let lo = 0;
  let hi = max;
  if (fits(hi)) return hi;
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
