/**
 * `--budget auto` on the keyword chain (issue #81): at each update a team holds the new version
 * (the teacher: the full chain's model, as bench.ts trains it) and its unlabeled training inputs,
 * and asks for the smallest payload whose devices agree with the new version on at least
 * `--min-agreement` of the evaluation inputs (every held-out split so far, as bench.ts reports).
 * Each update runs `train({ budget: 'auto', minAgreement })` exactly as `ndiff train --budget auto
 * --min-agreement X` does, from the model the chain's devices hold (the base, then each payload
 * auto chose, applied); then the same training at the budget it chose alone (`--budget B`, its
 * own tuning), the cost the search is held against (also when a post-hoc payload was chosen: what
 * training that budget would have cost); and, with `--check-smaller`, each smaller
 * grid budget alone, to see whether one of them would have met the target too.
 *
 *   node --conditions=neural-diff-source --import tsx examples/keyword-spotting/bench.ts \
 *     --methods none --teacher-methods none --save-states STATES      (the teachers: about 5 min)
 *   node --conditions=neural-diff-source --import tsx examples/keyword-spotting/budget-auto.ts \
 *     --states STATES [--min-agreement 0.98] [--updates 5] [--method M] [--check-smaller]
 *     [--data DIR] [--work DIR] [--out FILE.json] [--keep DIR]   (--keep: the models and inputs stay in DIR)
 *   node ... examples/keyword-spotting/budget-auto.ts --table FILE.json   (a run's table again, nothing trained)
 *
 * The training inputs are bench.ts's for its teacher chains: the update's new rows and a replayed
 * sample of earlier ones as large (`--replay-ratio 1`), without labels; `train()` splits its own
 * validation from them.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { apply } from '../../src/front/apply.ts';
import type { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { saveNpy } from '../../src/io/npy/files.ts';
import { writeModelDir, type TensorInput } from '../../src/io/tfjs/model-dir.ts';
import { DEFAULT_BUDGET_GRID } from '../../src/front/quality-target.ts';
import type { BudgetSearchReport } from '../../src/front/budget-search.ts';
import { train } from '../../src/train/front.ts';
import type { TrainMethod } from '../../src/train/methods.ts';
import type { KwsManifest } from './data.ts';
import { keywordModel } from './model.ts';
import { concatRows, loadSplit, readWeights, replaySample, type SplitRows } from './splits.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    data: { type: 'string' }, work: { type: 'string' }, states: { type: 'string' }, out: { type: 'string' },
    'min-agreement': { type: 'string', default: '0.98' }, updates: { type: 'string' }, method: { type: 'string' },
    'replay-ratio': { type: 'string', default: '1' }, 'check-smaller': { type: 'boolean', default: false }, keep: { type: 'string' },
    table: { type: 'string' },
  },
});
/** The run's table (Markdown): each update's choice, the best figure each smaller budget reached, the search's time against one training at its budget. */
function table(rows: UpdateRow[], min: number): string {
  const pct = (x: number | undefined) => (x === undefined ? '-' : `${(100 * x).toFixed(2)}%`);
  const lines = [
    `| update | chosen | bytes | agreement | best below it (budget: post hoc / trained) | search | one training at the chosen budget | search / training |`,
    '|---|---|---:|---:|---|---:|---:|---:|',
  ];
  for (const r of rows) {
    const below = [...new Set(r.tried.filter((t) => t.budget !== r.chosen).map((t) => t.budget))].map((b) => `${b}: ${r.tried.filter((t) => t.budget === b).map((t) => pct(t.figure)).join(' / ')}`).join('; ');
    lines.push(`| ${r.update} (${r.id}) | ${r.chosen} (${r.chosenHow}) | ${r.bytes.toLocaleString('en-US')} | ${pct(r.agreement)} | ${below || '-'} | ${r.searchSeconds.toFixed(0)} s | ${r.alone ? `${r.alone.seconds.toFixed(0)} s` : '-'} | ${r.alone ? `${(r.searchSeconds / r.alone.seconds).toFixed(2)}x` : '-'} |`);
  }
  return `target: top-1 agreement with the new version >= ${(100 * min).toFixed(1)}% on the evaluation inputs\n\n${lines.join('\n')}`;
}
if (args.table) {
  const done = JSON.parse(readFileSync(resolve(args.table), 'utf8')) as { minAgreement: number; rows: UpdateRow[] };
  console.log(table(done.rows, done.minAgreement));
  process.exit(0);
}
if (!args.states) throw new Error('--states DIR: the folder bench.ts --save-states DIR wrote (the full chain: --methods none --teacher-methods none)');
const dataDir = resolve(args.data ?? join(here, 'data'));
const workDir = resolve(args.work ?? join(here, 'work/full'));
const statesDir = resolve(args.states);
const minAgreement = Number(args['min-agreement']);
const replayRatio = Number(args['replay-ratio']);
const manifest = (await import(join(dataDir, 'manifest.json'), { with: { type: 'json' } })).default as KwsManifest;
const lastUpdate = Math.min(Number(args.updates ?? manifest.updates.length - 1), manifest.updates.length - 1);
const log = (l: string) => console.log(l);

/** The model's topology as model.json carries it, and a folder of it holding `weights`. */
const topology = keywordModel(manifest.numClasses, 0).toJSON(null, false);
function writeFolder(dir: string, weights: MemoryWeightStore): Promise<unknown> {
  const tensors = new Map<string, TensorInput>(weights.list().map((t) => [t.name, { shape: t.shape, data: weights.values(t.name) }]));
  return writeModelDir(dir, { format: 'layers-model', modelTopology: topology as unknown as Record<string, unknown> } as Parameters<typeof writeModelDir>[1], tensors);
}
/** Rows of `parts` as one x.npy (and y.npy when `labels`) in `dir`. */
function writeRows(dir: string, parts: SplitRows[], labels: boolean): void {
  mkdirSync(dir, { recursive: true });
  const { x, shape, y } = concatRows(parts);
  saveNpy(join(dir, 'x.npy'), x, shape);
  if (labels) saveNpy(join(dir, 'y.npy'), y, [y.length]);
}

interface UpdateRow {
  update: number;
  id: string;
  chosen: string;
  chosenHow: string;
  bytes: number;
  agreement?: number;
  tried: BudgetSearchReport['tried'];
  searchSeconds: number;
  alone?: { budget: string; seconds: number; bytes: number };
  smaller: { budget: string; bytes?: number; agreement?: number; meets: boolean; seconds: number; note?: string }[];
}

const scratch = args.keep ? resolve(args.keep) : mkdtempSync(join(tmpdir(), 'nd-kws-auto-'));
// The chain's devices: the base, then each payload auto chose applied in place (ndiff apply).
const deviceDir = join(scratch, 'device');
await writeFolder(deviceDir, readWeights(join(workDir, 'base.json')));
const rows: UpdateRow[] = [];
const started = performance.now();
const common = (u: number) => ({ modelId: 'kws-en', sequence: u, seed: 100 * u, ...(args.method ? { method: args.method as TrainMethod } : {}) });
try {
  for (let u = 1; u <= lastUpdate; u++) {
    const up = manifest.updates[u];
    const dir = join(scratch, `u${u}`);
    const teacherDir = join(dir, 'teacher');
    await writeFolder(teacherDir, readWeights(join(statesDir, `u${u}-full-full.json`)));
    const fresh = loadSplit(dataDir, manifest, up.train);
    const replay = replaySample(dataDir, manifest, up.replay, Math.round(fresh.y.length * replayRatio), 1000 + u);
    writeRows(join(dir, 'train'), [fresh, ...replay], false);
    writeRows(join(dir, 'eval'), up.evalAll.map((n) => loadSplit(dataDir, manifest, n)), true);
    const o = { base: deviceDir, teacher: teacherDir, train: join(dir, 'train'), eval: join(dir, 'eval'), ...common(u) };
    log(`update ${u} (${up.id}): budget auto, at least ${(100 * minAgreement).toFixed(1)}% agreement with the new version on ${up.evalAll.join(', ')}`);
    const t0 = performance.now();
    const auto = await train({ ...o, budget: 'auto', minAgreement, onProgress: (e) => { if (e.kind === 'message' && e.text.startsWith('budget auto')) log(`  ${e.text}`); } });
    const searchSeconds = (performance.now() - t0) / 1000;
    const report = auto.budgetSearch as BudgetSearchReport;
    const chosenTry = report.tried.find((t) => t.budget === report.chosen && t.how === report.chosenHow);
    const row: UpdateRow = { update: u, id: up.id, chosen: report.chosen, chosenHow: report.chosenHow, bytes: auto.bytes, ...(chosenTry?.figure !== undefined ? { agreement: chosenTry.figure } : {}), tried: report.tried, searchSeconds, smaller: [] };
    log(`  chose ${report.chosen} (${report.chosenHow}): ${auto.bytes} bytes, search ${searchSeconds.toFixed(0)} s`);
    // The search's cost is held against one training at the budget it chose (when post hoc was
    // chosen, what training that budget would have cost).
    if (!report.fallback) {
      const t1 = performance.now();
      const alone = await train({ ...o, budget: report.chosen });
      row.alone = { budget: report.chosen, seconds: (performance.now() - t1) / 1000, bytes: alone.bytes };
      log(`  ${report.chosen} alone: ${alone.bytes} bytes in ${row.alone.seconds.toFixed(0)} s: the search cost ${(searchSeconds / row.alone.seconds).toFixed(2)}x`);
    }
    if (args['check-smaller']) {
      for (const b of DEFAULT_BUDGET_GRID.slice(0, Math.max(0, DEFAULT_BUDGET_GRID.indexOf(report.chosen)))) {
        const t2 = performance.now();
        try {
          // The smaller budget alone, measured as the search measures (a grid of that one budget: its post hoc and trained payloads).
          const r = await train({ ...o, budget: 'auto', minAgreement, budgetGrid: [b] });
          const s = r.budgetSearch as BudgetSearchReport;
          const best = s.tried.filter((t) => t.budget === b).sort((a, c) => (c.figure ?? 0) - (a.figure ?? 0))[0];
          row.smaller.push({ budget: b, ...(best?.bytes !== undefined ? { bytes: best.bytes } : {}), ...(best?.figure !== undefined ? { agreement: best.figure } : {}), meets: !s.fallback, seconds: (performance.now() - t2) / 1000 });
        } catch (e) {
          row.smaller.push({ budget: b, meets: false, seconds: (performance.now() - t2) / 1000, note: (e as Error).message.slice(0, 200) });
        }
        const last = row.smaller[row.smaller.length - 1];
        log(`  ${b} alone (its own tuning): ${last.meets ? 'meets' : 'misses'} the target${last.agreement !== undefined ? ` (${(100 * last.agreement).toFixed(2)}%)` : ''}`);
      }
    }
    rows.push(row);
    // The chain's devices apply what auto shipped.
    const payloadFile = join(dir, 'auto.ndiff');
    writeFileSync(payloadFile, auto.payload);
    await apply({ model: deviceDir, payload: payloadFile, modelId: 'kws-en' });
    if (!args.keep) rmSync(dir, { recursive: true, force: true });
  }
} finally {
  if (!args.keep) rmSync(scratch, { recursive: true, force: true });
}
const out = resolve(args.out ?? join(here, 'results', 'budget-auto.json'));
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ minAgreement, replayRatio, method: args.method ?? null, grid: DEFAULT_BUDGET_GRID, rows }, null, 2) + '\n');
log(table(rows, minAgreement));
log(`wrote ${out}: ${rows.length} updates in ${((performance.now() - started) / 60000).toFixed(1)} min`);
