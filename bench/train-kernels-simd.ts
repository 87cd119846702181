/**
 * The trainer's SIMD kernels (src/engine/kernels/depthwise.c, activation-grad.c, batch-norm-grad.c,
 * max-pool-grad.c, adam.c, softmax-gather-grad.c) beside what ran before them, in one process on the wasm backend,
 * interleaved call by call:
 *
 * - the depthwise conv gradients (backprop-filter, backprop-input) against their JavaScript loops,
 *   on MobileNetV2's depthwise layers at batch 8;
 * - the max-pool gradient's JavaScript loop against its SIMD twin, on the keyword model's pools;
 * - the ReLU6 gradient as Keras' MobileNetV2 builds it (ReLU(max_value=6): Relu then ClipByValue)
 *   and tf.relu6's, one kernel each against tfjs' chains of elementwise ops;
 * - the batch norm's gradients of its input, scale and offset (statistics frozen, as the trainer
 *   keeps them), one kernel each against tfjs' elementwise ops, transposes and sums;
 * - Softmax's gradient on the small transformer's attention probabilities, and a first-axis
 *   Gather's on its embedding and on a hashed diff's buckets (softmax-gather-grad.c), one kernel
 *   each against tfjs' chains;
 * - Adam's step on the keyword model's twelve variables (515k weights): tfjs' optimizer against
 *   FusedAdam (adam.c, one kernel per variable);
 * - one MobileNetV2 training step (nsfwjs's model, every weight, batch 8), before and after all of
 *   them, and with only the batch-norm kernels switched.
 *
 * CPU time of the process per call (process.cpuUsage: steadier than wall time on a shared
 * machine), the median of the repetitions; ratios are before / after.
 *
 *   npm run bench:train-kernels [-- --quick]
 *   (node --expose-gc --conditions=neural-diff-source --import tsx bench/train-kernels-simd.ts [--quick])
 *
 * --quick: batch 2, fewer repetitions, no MobileNetV2 step (a smoke run of the set-up).
 * Writes bench/out/train-kernels-simd.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { simdKernelSwitch } from '../src/engine/kernels/train-kernels-simd.ts';
import { FusedAdam } from '../src/engine/kernels/adam.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { pretrainedModelDir } from '../examples/pretrained/nsfwjs.ts';
import { seededRandom } from '../src/train/data.ts';

const quick = process.argv.includes('--quick');
const batch = quick ? 2 : 8;
const reps = quick ? 3 : 7;

const collect = (globalThis as { gc?: () => void }).gc;

/**
 * CPU milliseconds of `f`, after any pending work of its outputs is done. The process's CPU time
 * counts V8's background threads too, so the garbage of the previous call (the JavaScript loops
 * allocate float64 buffers of tens of MB) is collected first (--expose-gc), not charged to this one.
 */
function cpuMs(f: () => tf.Tensor | tf.Tensor[]): number {
  collect?.();
  const start = process.cpuUsage();
  const out = f();
  for (const t of Array.isArray(out) ? out : [out]) t.dataSync();
  const used = process.cpuUsage(start);
  tf.dispose(out);
  return (used.user + used.system) / 1000;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

/** Time `f` with the settings `before` and `after`, alternating, `reps` times each after a warm-up. */
function beforeAfter(f: () => tf.Tensor | tf.Tensor[], before: () => void, after: () => void, n = reps): { beforeMs: number; afterMs: number } {
  const b: number[] = [];
  const a: number[] = [];
  for (let i = 0; i <= n; i++) {
    before();
    const tb = cpuMs(f);
    after();
    const ta = cpuMs(f);
    if (i > 0) {
      b.push(tb);
      a.push(ta);
    }
  }
  return { beforeMs: median(b), afterMs: median(a) };
}

const random = seededRandom(11);
const randomTensor = (shape: number[]) => tf.tensor(Float32Array.from({ length: shape.reduce((p, d) => p * d, 1) }, () => random() * 2 - 1), shape);

const jsLoops = () => {
  simdKernelSwitch.enabled = false;
};
const simd = () => {
  simdKernelSwitch.enabled = true;
};

await initBackend('wasm');
const load = os.loadavg()[0];

// MobileNetV2 (224x224, width 1.0): the depthwise 3x3 layers' inputs and strides.
const layers: Array<{ h: number; c: number; s: 1 | 2 }> = [
  { h: 112, c: 32, s: 1 },
  { h: 112, c: 96, s: 2 },
  { h: 56, c: 144, s: 1 },
  { h: 28, c: 192, s: 1 },
  { h: 14, c: 576, s: 1 },
  { h: 7, c: 960, s: 1 },
];
interface Row { kernel: string; shape: string; beforeMs: number; afterMs: number; ratio: number }
const rows: Row[] = [];
const row = (kernel: string, shape: string, r: { beforeMs: number; afterMs: number }) => {
  rows.push({ kernel, shape, ...r, ratio: r.beforeMs / r.afterMs });
  console.log(`${kernel.padEnd(34)} ${shape.padEnd(22)} ${r.beforeMs.toFixed(1).padStart(8)} ms ${r.afterMs.toFixed(1).padStart(8)} ms ${(r.beforeMs / r.afterMs).toFixed(1).padStart(6)}x`);
};
console.log(`load average ${load.toFixed(1)}, batch ${batch}, median of ${reps} calls (CPU ms per call, before / after)`);
console.log(`${'kernel'.padEnd(34)} ${'input (stride)'.padEnd(22)} ${'before'.padStart(11)} ${'after'.padStart(11)}  ratio`);
for (const { h, c, s } of layers) {
  const x = randomTensor([batch, h, h, c]);
  const filter = randomTensor([3, 3, c, 1]);
  const oh = Math.ceil(h / s);
  const dy = randomTensor([batch, oh, oh, c]);
  const shape = `${h}x${h}x${c} (s${s})`;
  const attrs = { strides: s, pad: 'same', dilations: 1 };
  row('depthwise backprop-filter JS / SIMD', shape, beforeAfter(
    () => tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy }, { ...attrs, filterShape: [3, 3, c, 1] }) as tf.Tensor,
    jsLoops,
    simd,
  ));
  row('depthwise backprop-input JS / SIMD', shape, beforeAfter(
    () => tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy, filter }, { ...attrs, inputShape: [batch, h, h, c] }) as tf.Tensor,
    jsLoops,
    simd,
  ));
  tf.dispose([x, filter, dy]);
}

for (const [w, c] of [[25, 128], [12, 160]] as const) {
  // The keyword model's two max pools (MaxPooling1D, pool 2) at its training batch of 64.
  const x = randomTensor([64, 1, w, c]);
  const dy = randomTensor([64, 1, Math.floor(w / 2), c]);
  const grad = () => tf.engine().runKernel('MaxPoolGrad', { dy, input: x }, { filterSize: [1, 2], strides: [1, 2], pad: 'valid' }) as tf.Tensor;
  row('max-pool gradient JS / SIMD', `64x1x${w}x${c} (keyword)`, beforeAfter(grad, jsLoops, simd));
  tf.dispose([x, dy]);
}

const stockGrads = () => {
  simdKernelSwitch.fuseActivationGrads = false;
};
const fusedGrads = () => {
  simdKernelSwitch.fuseActivationGrads = true;
};
for (const [h, c] of [[112, 96], [56, 144], [14, 576]] as const) {
  const x = tf.mul(randomTensor([batch, h, h, c]), 8);
  const dy = randomTensor([batch, h, h, c]);
  const shape = `${h}x${h}x${c}`;
  const keras = tf.grad((v: tf.Tensor) => tf.clipByValue(tf.relu(v), 0, 6));
  row('Keras ReLU6 gradient tfjs / ours', shape, beforeAfter(() => keras(x, dy), stockGrads, fusedGrads));
  const relu6 = tf.grad((v: tf.Tensor) => tf.relu6(v));
  row('tf.relu6 gradient tfjs / ours', shape, beforeAfter(() => relu6(x, dy), stockGrads, fusedGrads));
  tf.dispose([x, dy]);
}

const stockBatchNorm = () => {
  simdKernelSwitch.fuseBatchNormGrads = false;
};
const fusedBatchNorm = () => {
  simdKernelSwitch.fuseBatchNormGrads = true;
};
for (const [h, c] of [[112, 96], [56, 144], [14, 576]] as const) {
  // MobileNetV2's batch norms: statistics frozen, gradients of the input, scale and offset.
  const x = tf.mul(randomTensor([batch, h, h, c]), 8);
  const dy = randomTensor([batch, h, h, c]);
  const [mean, variance, offset, scale] = [randomTensor([c]), tf.add(randomTensor([c]), 1), randomTensor([c]), randomTensor([c])];
  const bn = tf.grads((a: tf.Tensor, o: tf.Tensor, sc: tf.Tensor) => tf.batchNorm(a, mean as tf.Tensor1D, variance as tf.Tensor1D, o as tf.Tensor1D, sc as tf.Tensor1D, 1e-3));
  row('batch norm forward + gradients tfjs / ours', `${h}x${h}x${c}`, beforeAfter(() => bn([x, offset, scale], dy), stockBatchNorm, fusedBatchNorm));
  tf.dispose([x, dy, mean, variance, offset, scale]);
}

const stockSoftmaxGather = () => Object.assign(simdKernelSwitch, { fuseSoftmaxGrad: false, fuseGatherGrad: false });
const fusedSoftmaxGather = () => Object.assign(simdKernelSwitch, { fuseSoftmaxGrad: true, fuseGatherGrad: true });
{
  // The small transformer's (bench/torch-transformer.py) attention probabilities at batch 32.
  const logits = randomTensor([32, 4, 32, 32]);
  const dy = randomTensor([32, 4, 32, 32]);
  const softmax = tf.grad((v: tf.Tensor) => tf.softmax(v));
  row('softmax forward + gradient tfjs / ours', '32x4x32x32', beforeAfter(() => softmax(logits, dy), stockSoftmaxGather, fusedSoftmaxGather, 5 * reps));
  tf.dispose([logits, dy]);
  // Its embedding (64 tokens of 64) over a batch of 32 sequences of 32 tokens; a hashed diff's
  // 4,096 buckets read by 100,000 weights.
  for (const [rows, inner, n] of [[64, 64, 1024], [4096, 1, 100000]] as const) {
    const table = randomTensor(inner > 1 ? [rows, inner] : [rows]);
    const ids = tf.tensor1d(Array.from({ length: n }, () => Math.floor(random() * rows)), 'int32');
    const dyg = randomTensor(inner > 1 ? [n, inner] : [n]);
    const gather = tf.grad((t: tf.Tensor) => tf.gather(t, ids));
    row('gather forward + gradient tfjs / ours', `${rows}x${inner} from ${n}`, beforeAfter(() => gather(table, dyg), stockSoftmaxGather, fusedSoftmaxGather, 5 * reps));
    tf.dispose([table, ids, dyg]);
  }
}

{
  // The keyword benchmark's model (examples/keyword-spotting/model.ts): its variables' shapes.
  const shapes = [[5, 40, 96], [96], [3, 96, 128], [128], [3, 128, 160], [160], [3, 160, 192], [192], [1152, 256], [256], [256, 38], [38]];
  const vars = shapes.map((sh, j) => tf.variable(randomTensor(sh), true, `kws-adam-${j}`));
  const grads = shapes.map((sh) => randomTensor(sh));
  const map: tf.NamedTensorMap = Object.fromEntries(vars.map((v, j) => [v.name, grads[j]]));
  const stock = tf.train.adam(1e-3);
  const fused = new FusedAdam(1e-3);
  let opt: tf.Optimizer = stock;
  row('Adam step tfjs / ours', 'keyword model, 515k', beforeAfter(() => {
    opt.applyGradients(map);
    return tf.sum(vars[0]);
  }, () => (opt = stock), () => (opt = fused), quick ? reps : 3 * reps));
  stock.dispose();
  fused.dispose();
  tf.dispose([...vars, ...grads]);
}

let step: { beforeMs: number; afterMs: number } | undefined;
if (!quick) {
  const model = await tf.loadLayersModel(fileSystemIO(await pretrainedModelDir('layers')));
  for (const layer of model.layers) layer.trainable = true;
  const inputShape = (model.inputs[0].shape as number[]).slice(1);
  const classes = model.outputs[0].shape[model.outputs[0].shape.length - 1] as number;
  const x = randomTensor([batch, ...inputShape]);
  const y = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % classes), 'int32'), classes);
  const stockAdam = tf.train.adam(1e-5);
  const fusedAdam = new FusedAdam(1e-5);
  let opt: tf.Optimizer = stockAdam;
  // Forward, loss, backward through every weight, Adam: what trainLoop does each step.
  const trainStep = (): tf.Tensor => {
    const { value, grads } = tf.variableGrads(() => tf.tidy(() => {
      const p = model.apply(x, { training: false }) as tf.Tensor;
      return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.log(tf.add(p, 1e-7))), -1))) as tf.Scalar;
    }));
    opt.applyGradients(grads as tf.NamedTensorMap as Record<string, tf.Variable>);
    tf.dispose(grads);
    return value;
  };
  const before = () => {
    jsLoops();
    stockGrads();
    stockBatchNorm();
    opt = stockAdam;
  };
  const after = () => {
    simd();
    fusedGrads();
    fusedBatchNorm();
    opt = fusedAdam;
  };
  step = beforeAfter(trainStep, before, after, 2);
  row('MobileNetV2 training step', `224x224x3, batch ${batch}`, step);
  // The batch-norm kernels alone, every other kernel of ours in place on both sides.
  const bnStep = beforeAfter(trainStep, () => (after(), stockBatchNorm()), after, 2);
  row('MobileNetV2 step, batch norm tfjs / ours', `224x224x3, batch ${batch}`, bnStep);
  tf.dispose([x, y]);
  stockAdam.dispose();
  fusedAdam.dispose();
  model.dispose();
}

const here = path.dirname(fileURLToPath(import.meta.url));
mkdirSync(path.join(here, 'out'), { recursive: true });
writeFileSync(
  path.join(here, 'out', 'train-kernels-simd.json'),
  `${JSON.stringify({ quick, batch, reps, loadAverageStart: load, loadAverageEnd: os.loadavg()[0], rows }, null, 2)}\n`,
);
console.log(`load average at the end ${os.loadavg()[0].toFixed(1)}${collect ? '' : ' (run with --expose-gc: without it, garbage of one call is charged to the next)'}`);
console.log('wrote bench/out/train-kernels-simd.json');
