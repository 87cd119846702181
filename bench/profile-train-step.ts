/**
 * Where a training step's time goes, kernel by kernel: tf.profile over a few steps of full
 * fine-tuning (forward, backward and Adam, as bench/train-step-child.ts runs them on one thread),
 * summed by tfjs kernel name. Pair it with `node --cpu-prof` for the JavaScript around the kernels.
 *
 *   node --conditions=neural-diff-source --import tsx bench/profile-train-step.ts keyword|mobilenetv2 [BATCH] [STEPS] [wasm|native]
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { namedVariables } from '../src/engine/model-weights.ts';
import { sparseCrossEntropy } from '../src/train/data.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';
import { pretrainedModelDir } from '../examples/pretrained/nsfwjs.ts';

const [name = 'keyword', batchArg, stepsArg, backendArg = 'wasm'] = process.argv.slice(2);
const batch = Number(batchArg ?? (name === 'keyword' ? 32 : 4));
const steps = Number(stepsArg ?? 3);
await initBackend(backendArg === 'native' ? 'native' : 'wasm', backendArg === 'native' ? { threads: 1 } : {});
const model = name === 'keyword' ? keywordModel(12) : await tf.loadLayersModel(fileSystemIO(await pretrainedModelDir('layers')));
const inputShape = (model.inputs[0].shape as number[]).slice(1);
const classes = model.outputs[0].shape[model.outputs[0].shape.length - 1] as number;
const x = tf.randomUniform([batch, ...inputShape], -1, 1, 'float32', 7);
const y = tf.tensor1d(Int32Array.from({ length: batch }, (_, i) => i % classes), 'int32');
const vars = namedVariables(model).filter((v) => v.trainable).map((v) => v.variable);
const opt = tf.train.adam(1e-4);
const fromLogits = (model.layers[model.layers.length - 1].getConfig() as { activation?: string }).activation !== 'softmax';
const step = () => tf.tidy(() => {
  const { grads } = tf.variableGrads(() => sparseCrossEntropy(model.apply(x, { training: false }) as tf.Tensor, y, fromLogits), vars);
  opt.applyGradients(grads as never);
});
step();
const t0 = performance.now();
const info = await tf.profile(() => {
  for (let i = 0; i < steps; i++) step();
});
const wall = performance.now() - t0;
const byKernel = new Map<string, { ms: number; calls: number }>();
for (const k of info.kernels) {
  const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
  e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  e.calls++;
  byKernel.set(k.name, e);
}
const total = [...byKernel.values()].reduce((a, e) => a + e.ms, 0);
console.log(`${name}, batch ${batch}, ${steps} step(s): ${(wall / steps).toFixed(0)} ms per step (profiled), kernels ${(total / steps).toFixed(0)} ms per step`);
console.log('| kernel | share | ms per step | calls per step |');
console.log('|---|---:|---:|---:|');
for (const [k, e] of [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15)) {
  console.log(`| ${k} | ${((100 * e.ms) / total).toFixed(1)}% | ${(e.ms / steps).toFixed(1)} | ${(e.calls / steps).toFixed(0)} |`);
}
