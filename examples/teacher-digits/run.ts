/**
 * "I already trained v2": ship a digits update a team trained in its own pipeline as a teacher
 * diff, or post hoc as low-bit deltas, and compare them with post-hoc top-k of (v2 - v1) and
 * BitDelta's code at the same budgets.
 *
 *   node --import tsx examples/teacher-digits/run.ts [--quick] [--budgets 1,5] [--seed 0]
 *     [--methods topk,sparse,hash,sparse-labels,lowbit,lowbit-calibrate,bitdelta] [--calibrate 1000]
 *     [--out NAME] (results/NAME.json and .md; default full, or quick with --quick)
 *
 * v1: a small CNN (examples/lib/drifted-digits.ts) trained on clean digits. v2: v1 fully
 * fine-tuned on drifted digits (washed out, noisy, shifted) with clean ones replayed, labels
 * used. The diffs of v1 learn toward v2 from the same inputs *without their labels* (a teacher
 * diff: `ndiff train --teacher v2/`), or keep v2's largest changes (`ndiff diff`), or carry every
 * change of v2 at 1 to 8 bits or as low-rank factors (`ndiff diff --method lowbit`, no data; with
 * `--calibrate`, the variant chosen on unlabeled inputs), or the sign of every change with a scale
 * per tensor (BitDelta before its distillation; lowbit is measured at its bytes too). Every model
 * is measured on held-out clean and drifted digits: accuracy, and top-1 agreement with v2.
 *
 * Writes examples/teacher-digits/results/{full,quick}.json and .md, or --out's name (the figures quoted in
 * docs/guides/shipping-a-trained-model.md come from full.md).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/engine/backend.ts';
import { evaluate, type LabelledData } from '../../src/train/data.ts';
import { modelToStore, setModelWeights } from '../../src/engine/model-weights.ts';
import { closeness, outputLayout, outputRows } from '../../src/train/teacher.ts';
import { trainDiff, type TrainDiffOptions, type TrainMethod } from '../../src/train/train-diff.ts';
import { calibrationMeasure, chooseOnCalibration, inputMoments, outputImportance } from '../../src/train/calibrate.ts';
import { BITDELTA_CODE, describeAllocation, lowbitDiff, lowbitVariants, type LowBitOptions, type LowBitResult } from '../../src/lowbit-diff/encoder.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { applyPayload } from '../../src/apply/apply.ts';
import { digitsCnn, driftedDigits } from '../lib/drifted-digits.ts';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const quick = process.argv.includes('--quick');
const seed = Number(arg('seed', '0'));
const budgets = arg('budgets', quick ? '5' : '1,5').split(',').map(Number);
const epochs = Number(arg('epochs', quick ? '3' : '8'));
// The trainer's defaults (temperature 1; sparse start chosen on validation): pass --temperature 2
// --sparse-start zero for the old ones.
const temperature = Number(arg('temperature', '1'));
const sparseStart = arg('sparse-start', 'auto') as 'zero' | 'teacher' | 'auto';
const only = arg('methods', '');
const v2Epochs = quick ? 6 : 16;
/** Teacher diffs also see v1's digits through the drifted camera, unlabeled (`--field-inputs no`: v2's inputs only). */
const moreInputs = arg('field-inputs', 'yes') !== 'no';
/** Unlabeled inputs the post-hoc lowbit rows with --calibrate choose their bits on. */
const calibrationCount = Number(arg('calibrate', '1000'));
const started = performance.now();
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const log = (m: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(0)} s] ${m}`);

await initBackend('wasm');
const data = quick ? driftedDigits({ v1Count: 1500, driftCount: 1200, replayCount: 400, evalCount: 600, seed }) : driftedDigits({ seed });
log(`digits: v1 trains on ${data.v1Train.y.length} clean; v2 on ${data.v2Train.y.length} (drifted + replayed clean); held out ${data.evalClean.y.length} clean, ${data.evalDrifted.y.length} drifted`);

const v1 = digitsCnn(1 + seed);
await trainDiff(v1, data.v1Train, { method: 'full', budgetBytes: 0, epochs, seed, tune: 'off', learningRate: 3e-3, validation: 0 });
const base = modelToStore(v1);
const weights = base.list().reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
const modelBytes = 4 * weights;
const v2 = digitsCnn(1 + seed);
setModelWeights(v2, (n) => base.values(n));
await trainDiff(v2, data.v2Train, { method: 'full', budgetBytes: 0, epochs: v2Epochs, seed: seed + 1, tune: 'off', learningRate: 2e-3, validation: 0, base: modelToStore(v2) });
log(`v1 and v2 trained (${weights} weights, ${modelBytes} bytes as float32)`);

const layout = outputLayout(v1, v2);
const measure = { ...layout, loss: 'kl' as const, temperature: 1 };
const v2Rows = new Map<LabelledData, Float32Array>([data.evalClean, data.evalDrifted].map((d) => [d, outputRows(v2, d.x, layout.width, 256)]));
interface Row { model: string; method: string; budgetPct: number | null; bytes: number; clean: number; drifted: number; agreeClean: number; agreeDrifted: number; seconds: number }
const rows: Row[] = [];
const measureNow = (m: tf.LayersModel, name: string, method: string, budgetPct: number | null, bytes: number, seconds: number): Row => {
  const agree = (d: LabelledData) => closeness(outputRows(m, d.x, layout.width, 256), v2Rows.get(d) as Float32Array, measure, 'top1').agreement;
  const row = { model: name, method, budgetPct, bytes, clean: evaluate(m, data.evalClean).accuracy, drifted: evaluate(m, data.evalDrifted).accuracy, agreeClean: agree(data.evalClean), agreeDrifted: agree(data.evalDrifted), seconds };
  rows.push(row);
  log(`${name}: clean ${pct(row.clean)}, drifted ${pct(row.drifted)}; agreement with v2 ${pct(row.agreeClean)} / ${pct(row.agreeDrifted)}`);
  return row;
};
measureNow(v1, 'v1 (devices hold it)', 'base', null, 0, 0);
measureNow(v2, 'v2 (the team trained it)', 'full', null, modelBytes, 0);

const inputs = { x: moreInputs ? tf.concat([data.v2Train.x, data.fieldInputs]) : data.v2Train.x };
const wanted = (name: string) => !only || only.split(',').includes(name);

// Post-hoc low-bit deltas (ndiff diff --method lowbit): every change of v2 at 1 to 8 bits, no
// training; with --calibrate, the bits chosen on the model's outputs on unlabeled inputs (v2's
// own inputs, not the held-out sets).
const hasher = await getHasher();
const v2Store = modelToStore(v2);
const calibration = tf.tidy(() => tf.slice(inputs.x, [0], [Math.min(calibrationCount, inputs.x.shape[0])]));
const applied = async (name: string, method: string, budgetPct: number | null, res: LowBitResult | { bytes: Uint8Array; allocation?: undefined }, seconds: number) => {
  const store = base.clone();
  await applyPayload(store, res.bytes);
  setModelWeights(v1, (n) => store.values(n));
  if (res.allocation) log(`${name}: ${res.allocation.map(describeAllocation).join(', ')}`);
  return measureNow(v1, name, method, budgetPct, res.bytes.length, seconds);
};
const lowbitRow = async (name: string, method: string, budgetPct: number | null, options: LowBitOptions) => {
  const t0 = performance.now();
  const res = lowbitDiff(hasher, base, v2Store, options);
  return applied(name, method, budgetPct, res, (performance.now() - t0) / 1000);
};
let importance: ReadonlyMap<string, Float32Array> | undefined;
let moments: ReturnType<typeof inputMoments> | undefined;
const lowbitRuns = async (pctBudget: number, budgetBytes: number) => {
  if (wanted('lowbit')) await lowbitRow(`post-hoc lowbit of v2 - v1, no data (ndiff diff --method lowbit) at ${pctBudget}%`, 'lowbit', pctBudget, { budgetBytes });
  if (wanted('lowbit-calibrate')) {
    // What ndiff diff --method lowbit --calibrate does: every variant measured on the inputs.
    const t0 = performance.now();
    const cal = calibrationMeasure(v1, v2, base, calibration);
    const variants = lowbitVariants(() => (importance ??= outputImportance(v2, calibration, { examples: 256 })), undefined, () => (moments ??= inputMoments(v2, calibration, { examples: 256 })));
    const { chosen, name } = chooseOnCalibration(variants.map((v) => ({ name: v.name, build: () => lowbitDiff(hasher, base, v2Store, { budgetBytes, ...v.options() }) })), cal);
    cal.dispose?.();
    await applied(`post-hoc ${name}, chosen on ${calibration.shape[0]} unlabeled inputs (--calibrate) at ${pctBudget}%`, 'lowbit (calibrated)', pctBudget, chosen, (performance.now() - t0) / 1000);
  }
};
if (wanted('bitdelta')) {
  // BitDelta's post-hoc code: the sign of every change and one scale per tensor (mean |delta|);
  // its size is fixed, so lowbit is measured at the same bytes beside it.
  const bitdelta = BITDELTA_CODE;
  const bd = await lowbitRow('BitDelta post hoc (the sign of every change, a scale per tensor)', 'bitdelta', null, { budgetBytes: 10 * modelBytes, ...bitdelta });
  const pctBudget = Number(((100 * bd.bytes) / modelBytes).toFixed(2));
  await lowbitRuns(pctBudget, bd.bytes);
  // BitDelta's recipe whole: its scales distilled toward v2 on the unlabeled inputs (ndiff train
  // --method lowbit with its code), and lowbit distilled at the same bytes.
  for (const [name, method, budgetBytes, lowbit] of [
    ['BitDelta distilled (its scales trained toward v2), no labels', 'bitdelta (distilled)', 10 * modelBytes, bitdelta],
    [`teacher lowbit (post-hoc lowbit, scales and codes distilled), no labels at ${pctBudget}%`, 'teacher lowbit', bd.bytes, undefined],
  ] as const) {
    setModelWeights(v1, (n) => base.values(n));
    const t0 = performance.now();
    const res = await trainDiff(v1, inputs, { method: 'lowbit', teacher: v2, temperature, budgetBytes, epochs, seed, base, ...(lowbit ? { lowbit, lowbitCodes: false } : {}) });
    measureNow(v1, name, method, lowbit ? null : pctBudget, res.bytes.length, (performance.now() - t0) / 1000);
  }
}

for (const pctBudget of budgets) {
  const budgetBytes = Math.floor((modelBytes * pctBudget) / 100);
  await lowbitRuns(pctBudget, budgetBytes);
  const runs: { name: string; method: TrainMethod; options: Partial<TrainDiffOptions>; labelled?: boolean }[] = [
    { name: `post-hoc top-k of v2 - v1 (ndiff diff)`, method: 'topk', options: { allowWorse: true } },
    { name: `teacher sparse, no labels`, method: 'sparse', options: {} },
    { name: `teacher hash, no labels`, method: 'hash', options: {} },
    { name: `teacher lowbit (post-hoc lowbit, scales and codes distilled), no labels`, method: 'lowbit', options: {} },
    { name: `sparse on the labels (no teacher)`, method: 'sparse', options: {}, labelled: true },
  ];
  for (const r of runs.filter((r) => wanted(r.labelled ? `${r.method}-labels` : r.method))) {
    setModelWeights(v1, (n) => base.values(n));
    const t0 = performance.now();
    const res = r.labelled
      ? await trainDiff(v1, data.v2Train, { method: r.method, budgetBytes, epochs, seed, base, ...r.options })
      : await trainDiff(v1, inputs, { method: r.method, teacher: v2, temperature, sparseStart, budgetBytes, epochs, seed, base, ...r.options });
    measureNow(v1, `${r.name} at ${pctBudget}%`, r.labelled ? `${r.method} (labels)` : r.method === 'topk' ? 'topk' : `teacher ${r.method}`, pctBudget, res.bytes.length, (performance.now() - t0) / 1000);
  }
}

const md = [
  `# Teacher diffs on a digits update${quick ? ' (quick mode)' : ''}`,
  '',
  `Command: \`node --import tsx examples/teacher-digits/run.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}\`; seed ${seed}; ${weights}-weight CNN. v1: ${data.v1Train.y.length} clean digits; v2: v1 fine-tuned (every weight, ${v2Epochs} epochs, labels) on ${data.v2Train.y.length} digits, drifted with clean ones replayed. Held out: ${data.evalClean.y.length} clean and ${data.evalDrifted.y.length} drifted digits.`,
  '',
  `Teacher diffs learn from ${inputs.x.shape[0]} unlabeled inputs (v2's ${data.v2Train.y.length}${moreInputs ? ` and v1's ${data.v1Train.y.length} digits through the drifted camera` : ''}), temperature ${temperature}, sparse start ${sparseStart}; the label-trained diff from v2's ${data.v2Train.y.length} labelled digits. ${epochs} epochs; learning rate tuned (quick) and checkpoint chosen on a seeded 10% validation split; every figure measured on the weights a device gets by applying the payload.`,
  '',
  '| model | budget | bytes | clean acc | drifted acc | agrees with v2 (clean) | agrees with v2 (drifted) | seconds |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.model} | ${r.budgetPct === null ? '-' : `${r.budgetPct}%`} | ${r.bytes} | ${pct(r.clean)} | ${pct(r.drifted)} | ${pct(r.agreeClean)} | ${pct(r.agreeDrifted)} | ${r.seconds.toFixed(0)} |`),
  '',
].join('\n');
const dir = join(import.meta.dirname, 'results');
await mkdir(dir, { recursive: true });
const name = arg('out', quick ? 'quick' : 'full');
await writeFile(join(dir, `${name}.json`), JSON.stringify({ seed, quick, weights, modelBytes, epochs, rows }, null, 2) + '\n');
await writeFile(join(dir, `${name}.md`), md);
console.log('\n' + md);
log('done');
