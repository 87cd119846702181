/**
 * `--method auto`: successive halving against the exhaustive search and against the chosen
 * method trained alone, side by side in one process on the same model, teacher, inputs and seed:
 * the keyword model (temporal convolutions, ~0.5M weights), its teacher the base fine-tuned a few
 * epochs toward another keyword model's answers (every weight moved a little, as the keyword
 * benchmark's teachers are), distilled on unlabeled inputs at 1% of the model.
 *
 *   node --conditions=neural-diff-source --import tsx bench/auto-halving.ts [--quick] [--backend wasm|cpu]
 *        [--examples N] [--epochs N] [--tune off|quick|thorough]
 *
 * Prints what each search chose, its seconds and epochs, whether the halving winner's payload is
 * the chosen method's alone byte for byte, and the ratios halving / alone and halving /
 * exhaustive. Goal (issue #82): halving within 1.5x the chosen method alone, choosing as the
 * exhaustive search does. Writes bench/out/auto-halving.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type TrainBackendName } from '../src/engine/backend.ts';
import { silenceTfjsNodeBanner } from '../src/engine/quiet.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { trainAuto, type AutoResult, type AutoSearch } from '../src/train/auto.ts';
import { autoCandidateLine, autoChoiceLines } from '../src/train/front-settings.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import type { TuneMode } from '../src/train/options.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false }, backend: { type: 'string', default: 'wasm' }, examples: { type: 'string' }, epochs: { type: 'string' }, tune: { type: 'string' } } });
const quick = args.quick as boolean;
// --quick proves the script runs end to end; its figures measure nothing.
const n = Number(args.examples ?? (quick ? 64 : 1024));
const epochs = Number(args.epochs ?? (quick ? 2 : 5));
const tune = (args.tune ?? (quick ? 'off' : 'quick')) as TuneMode;
const CLASSES = 12;

await initBackend(args.backend as TrainBackendName);
silenceTfjsNodeBanner();

const x = tf.randomNormal([n, 49, 40, 1], 0, 1, 'float32', 1) as tf.Tensor4D;
// The teacher: the base fine-tuned toward another model's answers on these inputs.
const base = keywordModel(CLASSES, 0);
const teacher = keywordModel(CLASSES, 0);
{
  const other = keywordModel(CLASSES, 7);
  const y = tf.tidy(() => tf.cast(tf.argMax(other.predict(x) as tf.Tensor, -1), 'float32'));
  teacher.compile({ optimizer: tf.train.adam(1e-3), loss: 'sparseCategoricalCrossentropy' });
  await teacher.fit(x, y, { epochs: quick ? 1 : 4, batchSize: 32, shuffle: false, verbose: 0 });
  y.dispose();
  other.dispose();
}
const store = modelToStore(base);
const total = store.list().reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 4, 0);
const options = { teacher, budgetBytes: Math.round(total / 100), epochs, tune, seed: 1, base: store, threads: 1 };

// Warm-up (not measured): every candidate's kernels and plans built once, so the first search timed does not pay for them.
{
  const few = tf.slice(x, [0], [Math.min(n, 32)]);
  await trainAuto(base, { x: few }, { ...options, epochs: 1, tune: 'off', autoSearch: 'exhaustive' });
  few.dispose();
}

async function search(autoSearch: AutoSearch): Promise<{ res: AutoResult; seconds: number; epochs: number }> {
  setModelWeights(base, (name) => store.values(name));
  let count = 0;
  const t0 = performance.now();
  const res = await trainAuto(base, { x }, { ...options, autoSearch, onEpoch: () => count++ }, (c) => console.log(`${autoSearch}: ${autoCandidateLine(c)}`));
  return { res, seconds: (performance.now() - t0) / 1000, epochs: count };
}

/** The chosen method trained alone, as `--method M` runs it. */
async function trainAlone(method: AutoResult['auto']['chosen']): Promise<{ bytes: Uint8Array; seconds: number; epochs: number }> {
  setModelWeights(base, (name) => store.values(name));
  let count = 0;
  const t0 = performance.now();
  const res = await trainDiff(base, { x }, { ...options, method, onEpoch: () => count++ });
  return { bytes: res.bytes, seconds: (performance.now() - t0) / 1000, epochs: count };
}

// Order: halving, the chosen method alone, the exhaustive search, the chosen method alone again
// (the machine's load drifts: the two alone runs bracket the searches, their mean is the reference).
const halving = await search('halving');
for (const l of autoChoiceLines(halving.res.auto)) console.log(l);
const alone1 = await trainAlone(halving.res.auto.chosen);
const exhaustive = await search('exhaustive');
console.log(`exhaustive: chose ${exhaustive.res.auto.chosen}; ${exhaustive.res.auto.candidates.map((c) => `${c.method} ${c.scoreText ?? 'refused'} ${c.seconds.toFixed(1)} s`).join('; ')}`);
const alone2 = await trainAlone(halving.res.auto.chosen);
const aloneSeconds = (alone1.seconds + alone2.seconds) / 2;
const aloneEpochs = alone1.epochs;
const same = [alone1, alone2].every((a) => a.bytes.length === halving.res.bytes.length && a.bytes.every((b, i) => b === halving.res.bytes[i]));
const result = {
  model: 'keyword temporal-conv', examples: n, epochs, tune, budgetBytes: options.budgetBytes, backend: tf.getBackend(),
  halving: { chosen: halving.res.auto.chosen, seconds: halving.seconds, epochs: halving.epochs, estimate: halving.res.auto.exhaustiveSecondsEstimate, rounds: halving.res.auto.rounds },
  exhaustive: { chosen: exhaustive.res.auto.chosen, seconds: exhaustive.seconds, epochs: exhaustive.epochs, candidates: exhaustive.res.auto.candidates },
  alone: { method: halving.res.auto.chosen, seconds: aloneSeconds, runs: [alone1.seconds, alone2.seconds], epochs: aloneEpochs, samePayload: same },
  ratios: { halvingOverAlone: halving.seconds / aloneSeconds, halvingOverExhaustive: halving.seconds / exhaustive.seconds },
};
console.log(`keyword model, ${n} inputs x ${epochs} epochs, tune ${tune}, budget 1% (${options.budgetBytes} B), ${tf.getBackend()}: halving chose ${result.halving.chosen} in ${halving.seconds.toFixed(1)} s (${halving.epochs} epochs), exhaustive chose ${result.exhaustive.chosen} in ${exhaustive.seconds.toFixed(1)} s (${exhaustive.epochs} epochs), ${result.alone.method} alone ${aloneSeconds.toFixed(1)} s (mean of ${alone1.seconds.toFixed(1)} and ${alone2.seconds.toFixed(1)} s, ${aloneEpochs} epochs); halving / alone ${result.ratios.halvingOverAlone.toFixed(2)}x, halving / exhaustive ${result.ratios.halvingOverExhaustive.toFixed(2)}x; same payload as ${result.alone.method} alone: ${same ? 'yes' : 'NO'}`);
const out = join(import.meta.dirname, 'out');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'auto-halving.json'), JSON.stringify(result, null, 2));
x.dispose();
