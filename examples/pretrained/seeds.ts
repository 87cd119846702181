/**
 * The pretrained example's runs over several seeds (`--seeds 1,2,3`): which runs each worker
 * process takes, and each method's accuracy per seed with its mean and spread (min-max), so a
 * change that moves one method by more than its seeds do shows in the benchmark rather than
 * passing for one lucky or unlucky draw.
 */
import { UsageError } from '../../src/core/errors.ts';

/** One training run of the example: a method at a seed. */
export interface PretrainedRun {
  method: string;
  seed: number;
}

/** One method's accuracy (the applied folder's) over the seeds it ran with. */
export interface SeedSummary {
  method: string;
  /** Each seed's accuracy, in the order of `--seeds`. */
  seeds: { seed: number; accuracy: number }[];
  mean: number;
  min: number;
  max: number;
}

/**
 * `--seeds`: a comma-separated list of distinct whole numbers (each the seed of every method's
 * training run: its validation split, batch order and initialisation).
 * @throws UsageError naming what was found.
 */
export function parseSeeds(text: string): number[] {
  const seeds = text.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0) || new Set(seeds).size !== seeds.length) {
    throw new UsageError(`--seeds takes distinct whole numbers >= 0 separated by commas, e.g. 1,2,3; found ${JSON.stringify(text)}`);
  }
  return seeds;
}

/**
 * The runs dealt to `jobs` worker processes. Per seed, full and topk-retrain stay together in
 * one job, full first (topk-retrain reuses that seed's full fine-tune); every other run is dealt
 * in turn. A job's runs come in seed order, so a teacher (full of that seed) precedes its pupils.
 */
export function dealRuns(methods: readonly string[], seeds: readonly number[], jobs: number): PretrainedRun[][] {
  const out: PretrainedRun[][] = Array.from({ length: jobs }, () => []);
  const paired = methods.filter((m) => m === 'full' || m === 'topk-retrain');
  const rest = methods.filter((m) => m !== 'full' && m !== 'topk-retrain');
  let k = 0;
  for (const seed of seeds) {
    if (paired.length) {
      out[k].push(...paired.map((method) => ({ method, seed })));
      k = (k + 1) % jobs;
    }
    for (const method of rest) {
      out[k].push({ method, seed });
      k = (k + 1) % jobs;
    }
  }
  return out;
}

/** Each method's accuracy per seed, mean and min-max, in the order the methods first appear in `rows`. */
export function summarizeSeeds(rows: readonly { method: string; seed?: number; folderAccuracy: number }[], seeds: readonly number[]): SeedSummary[] {
  const methods = [...new Set(rows.map((r) => r.method))];
  return methods.map((method) => {
    const mine = rows.filter((r) => r.method === method);
    // The base is not trained: its one row stands for every seed.
    const per = method === 'base' ? [{ seed: mine[0].seed ?? seeds[0], accuracy: mine[0].folderAccuracy }] : seeds.flatMap((seed) => mine.filter((r) => r.seed === seed).map((r) => ({ seed, accuracy: r.folderAccuracy })));
    const values = per.map((p) => p.accuracy);
    return { method, seeds: per, mean: values.reduce((a, b) => a + b, 0) / Math.max(1, values.length), min: Math.min(...values), max: Math.max(...values) };
  });
}

/** The summary as a markdown table: accuracy at each seed, mean, and spread (min-max). */
export function renderSeedSummary(summary: readonly SeedSummary[], seeds: readonly number[]): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lines = [
    `| method | ${seeds.map((s) => `seed ${s}`).join(' | ')} | mean | spread (min-max) |`,
    `|---|${seeds.map(() => '---:|').join('')}---:|---:|`,
  ];
  for (const s of summary) {
    const cells = seeds.map((seed) => {
      const hit = s.seeds.find((p) => p.seed === seed) ?? (s.method === 'base' ? s.seeds[0] : undefined);
      return hit ? pct(hit.accuracy) : '-';
    });
    lines.push(`| ${s.method} | ${cells.join(' | ')} | ${pct(s.mean)} | ${pct(s.min)}-${pct(s.max)} (${(100 * (s.max - s.min)).toFixed(1)} points) |`);
  }
  return lines.join('\n');
}
