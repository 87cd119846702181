/**
 * `npm run bench:tflite-learned`: a real published LiteRT model (MediaPipe's selfie segmentation,
 * a devDependency) fine-tuned here into a v2 (the npm versions checked ship the same file): every
 * weight trained (`method: 'full'`, kept float16) for a new domain, masking the bright objects of
 * a scene (the target mask is the pixels brighter than 0.75, softened). Then v1 -> v2 shipped at
 * a budget of the weights' bytes four ways: post hoc (`ndiff diff`: top-k, lowbit) and learned
 * toward v2 as the teacher (`ndiff train --teacher`: sparse, lowbit) on unlabeled images. Each
 * payload is applied to the `.tflite` file's bytes and run in LiteRT.js (`@litertjs/core`, CPU)
 * on held-out images: the mask's RMS distance to v2's, beside v1's (a device that takes no update).
 *
 * Images: 256x256 RGB in [0, 1], uniform noise under a few random bright rectangles.
 * Deterministic (seeded).
 *
 *   npm run bench:tflite-learned                 # 64 training images, 4 epochs, budgets 2% and 5%
 *   npm run bench:tflite-learned -- --quick      # 8 images, 1 epoch, 5% (a test runs it)
 *   npm run bench:tflite-learned -- --markdown out.md
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyPayload } from '../src/apply/index.ts';
import { seededRandom } from '../src/core/random.ts';
import { getHasher } from '../src/core/hasher.ts';
import { diffOnnxModels } from '../src/diff/onnx.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { readTfliteGraph } from '../src/io/tflite/graph.ts';
import { initBackend } from '../src/engine/backend.ts';
import { trainTfliteDiff } from '../src/train/tflite/train-tflite.ts';
import { TfliteProgram } from '../src/engine/tflite/program.ts';
import { trainProgramDiff } from '../src/train/program/train-program.ts';
import type { TrainableProgram } from '../src/engine/program/program.ts';
import * as tf from '@tensorflow/tfjs';
import { runTflite } from './litert.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const SIDE = 256;
const PIXELS = SIDE * SIDE * 3;

/** `n` images (module doc), seeded. */
function images(n: number, seed: number): Float32Array {
  const r = seededRandom(seed);
  const out = new Float32Array(n * PIXELS);
  for (let k = 0; k < n; k++) {
    const img = out.subarray(k * PIXELS, (k + 1) * PIXELS);
    for (let i = 0; i < PIXELS; i++) img[i] = r();
    for (let b = 0; b < 3; b++) {
      const [y0, x0] = [Math.floor(r() * 192), Math.floor(r() * 192)];
      const [h, w] = [32 + Math.floor(r() * 64), 32 + Math.floor(r() * 64)];
      const color = [r(), r(), r()];
      for (let y = y0; y < Math.min(SIDE, y0 + h); y++) for (let x = x0; x < Math.min(SIDE, x0 + w); x++) for (let c = 0; c < 3; c++) img[3 * (y * SIDE + x) + c] = 0.6 + 0.4 * color[c];
    }
  }
  return out;
}

/** One row of the result. */
export interface LearnedRow {
  method: string;
  budget: string;
  bytes: number;
  /** RMS distance of the patched model's masks to v2's on the held-out images (LiteRT.js). */
  rmsToV2: number;
  seconds: number;
}

/** Run the benchmark (module doc). */
export async function runLearned(options: { quick?: boolean; log?: (l: string) => void } = {}): Promise<{ v1ToV2: number; rows: LearnedRow[]; images: { train: number; eval: number } }> {
  const log = options.log ?? ((l: string) => console.error(l));
  const quick = options.quick ?? false;
  const backend = await initBackend('wasm', { threads: 1 });
  const hasher = await getHasher();
  const v1 = new Uint8Array(readFileSync(path.join(root, 'node_modules', '@mediapipe', 'selfie_segmentation', 'selfie_segmentation.tflite')));
  const graph = readTfliteGraph(v1);
  const input = graph.tensors[graph.inputs[0]].name;
  const output = graph.tensors[graph.outputs[0]].name;
  const nTrain = quick ? 8 : 64;
  const nEval = quick ? 2 : 12;
  const train = images(nTrain, 1);
  const evalX = images(nEval, 2);
  // v2: v1 fine-tuned, every weight, toward the new domain's masks (module doc).
  const domain: TrainableProgram = {
    source: 'bright-object masks', variables: [], inputs: [{ name: input, shape: [1, SIDE, SIDE, 3] }], outputs: [{ name: output, shape: [1, SIDE, SIDE, 1] }],
    run: (feeds) => ({ [output]: tf.sigmoid(tf.mul(tf.sub(tf.mean(feeds[input], 3, true), 0.75), 20)) }),
    outputOp: () => 'Sigmoid',
    dispose: () => {},
  };
  const t0 = performance.now();
  const tuned = await trainProgramDiff(new TfliteProgram(v1, { source: 'selfie_segmentation.tflite' }), new TfliteWeightStore(v1.slice()), { inputs: { [input]: { values: train, shape: [SIDE, SIDE, 3] } } }, {
    method: 'full', budgetBytes: 0, teacher: domain, teacherLoss: 'mse', epochs: quick ? 1 : 6, tune: 'off', seed: 3, batchSize: 8, learningRate: 3e-3, allowWorse: true, validation: quick ? 0.25 : 0.125, distill: 0,
    trainable: 'all', header: { modelId: 'selfie', sequence: 1 }, teacherFlag: 'the domain masks', onProgress: (m) => log(`    fine-tune: ${m}`),
  });
  const v2 = v1.slice();
  await applyPayload(new TfliteWeightStore(v2), tuned.bytes, { hasher });
  log(`v2: v1 fine-tuned (every weight, ${quick ? 1 : 6} epochs, ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  const masks = async (bytes: Uint8Array) => {
    const out: Float32Array[] = [];
    for (let k = 0; k < nEval; k++) out.push((await runTflite(bytes, [evalX.subarray(k * PIXELS, (k + 1) * PIXELS)]))[0].data);
    return out;
  };
  const ref = await masks(v2);
  const dist = (o: Float32Array[]) => {
    let sq = 0;
    let n = 0;
    o.forEach((a, k) => a.forEach((v, i) => ((sq += (v - ref[k][i]) ** 2), n++)));
    return Math.sqrt(sq / n);
  };
  const v1ToV2 = dist(await masks(v1));
  log(`backend ${backend}; selfie segmentation v1 -> v2 (fine-tuned); ${nTrain} training and ${nEval} held-out images; v1's mask RMS to v2: ${v1ToV2.toExponential(3)}`);
  const weightBytes = new TfliteWeightStore(v1.slice()).storedWeightBytes();
  const rows: LearnedRow[] = [];
  const measure = async (method: string, budget: string, payload: Uint8Array, seconds: number) => {
    const device = v1.slice();
    await applyPayload(new TfliteWeightStore(device), payload, { hasher });
    const row = { method, budget, bytes: payload.length, rmsToV2: dist(await masks(device)), seconds };
    rows.push(row);
    log(`  ${method} ${budget}: ${row.bytes} B, mask RMS to v2 ${row.rmsToV2.toExponential(3)} (${((100 * row.rmsToV2) / v1ToV2).toFixed(1)}% of v1's), ${seconds.toFixed(0)} s`);
  };
  for (const pct of quick ? [5] : [2, 5]) {
    const budgetBytes = Math.floor((pct / 100) * weightBytes);
    const budget = `${pct}%`;
    for (const method of ['topk', 'lowbit'] as const) {
      const t0 = performance.now();
      const bytes = diffOnnxModels(hasher, new TfliteWeightStore(v1.slice()), new TfliteWeightStore(v2.slice()), { budgetBytes, modelId: 'selfie', ...(method === 'lowbit' ? { method } : {}) }).bytes;
      await measure(`post hoc ${method}`, budget, bytes, (performance.now() - t0) / 1000);
    }
    for (const method of ['sparse', 'lowbit'] as const) {
      const t0 = performance.now();
      const res = await trainTfliteDiff(v1, { inputs: { [input]: { values: train, shape: [SIDE, SIDE, 3] } } }, {
        method, budgetBytes, teacher: v2, teacherLoss: 'mse', epochs: quick ? 1 : 4, tune: 'off', seed: 7, batchSize: 8, learningRate: method === 'lowbit' ? 1e-2 : 3e-3,
        allowWorse: true, validation: quick ? 0.25 : 0.125, header: { modelId: 'selfie', sequence: 1 }, source: 'selfie_segmentation.tflite',
        onProgress: (m) => log(`    ${m}`),
      });
      await measure(`learned ${method} (teacher v2)`, budget, res.bytes, (performance.now() - t0) / 1000);
    }
  }
  return { v1ToV2, rows, images: { train: nTrain, eval: nEval } };
}

export function learnedMarkdown(r: Awaited<ReturnType<typeof runLearned>>): string {
  return [
    `MediaPipe selfie segmentation v1 -> v2 (v1 fine-tuned here, every weight, to mask bright objects), in LiteRT.js on ${r.images.eval} held-out images; trained on ${r.images.train}. v1 unpatched: mask RMS to v2 ${r.v1ToV2.toExponential(3)}.`,
    '',
    '| payload | budget | bytes | mask RMS to v2 | share of v1\'s distance | seconds |',
    '|---|---|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.method} | ${x.budget} | ${x.bytes.toLocaleString('en-US')} | ${x.rmsToV2.toExponential(3)} | ${((100 * x.rmsToV2) / r.v1ToV2).toFixed(1)}% | ${x.seconds.toFixed(0)} |`),
  ].join('\n') + '\n';
}

if (process.argv[1]?.endsWith('tflite-learned.ts')) {
  const argv = process.argv.slice(2);
  const res = await runLearned({ quick: argv.includes('--quick') });
  const md = learnedMarkdown(res);
  process.stdout.write(md);
  const i = argv.indexOf('--markdown');
  if (i >= 0) writeFileSync(argv[i + 1], md);
}
