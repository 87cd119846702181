/**
 * A small full fine-tune, trained here (seeded, tfjs cpu backend, a few seconds): an MLP of 32
 * inputs, two hidden layers of 96 and 8 classes (13.2k weights). v1 learns classes 0-5 of 8
 * Gaussian clusters; v2 is v1 trained further on all 8, every weight moving a little, as a team's
 * own v2 is. The low-bit tests measure payloads against it by accuracy on held-out examples.
 */
import * as tf from '@tensorflow/tfjs';
import { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { seeded } from './graph-model.ts';
import { fileSystemIO } from '../../src/io/tfjs/index.ts';

export const FT_INPUTS = 32;
export const FT_CLASSES = 8;
const HIDDEN = 96;

/** `n` examples of the 8 clusters (the first `classes` only), seeded. */
export function clusterData(n: number, seed: number, classes = FT_CLASSES): { x: Float32Array; y: Int32Array } {
  const centres = seeded(99);
  const mu = Float32Array.from({ length: FT_CLASSES * FT_INPUTS }, () => 1.1 * centres());
  const r = seeded(seed);
  const gauss = () => {
    // Irwin-Hall: the sum of 4 uniforms, centred: close enough to normal for clusters.
    let s = 0;
    for (let i = 0; i < 4; i++) s += r();
    return s * 0.87;
  };
  const x = new Float32Array(n * FT_INPUTS);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(((r() + 1) / 2) * classes) % classes;
    y[i] = c;
    for (let j = 0; j < FT_INPUTS; j++) x[i * FT_INPUTS + j] = mu[c * FT_INPUTS + j] + gauss();
  }
  return { x, y };
}

function mlp(seed: number): tf.Sequential {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: seed + s });
  return tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [FT_INPUTS], units: HIDDEN, activation: 'relu', name: 'h1', kernelInitializer: init(1) }),
      tf.layers.dense({ units: HIDDEN, activation: 'relu', name: 'h2', kernelInitializer: init(2) }),
      tf.layers.dense({ units: FT_CLASSES, activation: 'softmax', name: 'out', kernelInitializer: init(3) }),
    ],
  });
}

function storeOf(m: tf.LayersModel): MemoryWeightStore {
  return new MemoryWeightStore(m.weights.map((w) => [w.name, { shape: w.shape as number[], data: w.read().dataSync().slice() as Float32Array }]));
}

async function fit(m: tf.LayersModel, d: { x: Float32Array; y: Int32Array }, epochs: number, lr: number): Promise<void> {
  m.compile({ optimizer: tf.train.adam(lr), loss: 'sparseCategoricalCrossentropy' });
  const x = tf.tensor2d(d.x, [d.y.length, FT_INPUTS]);
  const y = tf.tensor1d(Float32Array.from(d.y));
  await m.fit(x, y, { epochs, batchSize: 64, shuffle: false, verbose: 0 });
  x.dispose();
  y.dispose();
}

/** v1 and v2 as stores, and a function giving a store's accuracy on held-out examples of all 8 classes. */
export async function fineTunePair(): Promise<{ v1: MemoryWeightStore; v2: MemoryWeightStore; accuracy: (s: MemoryWeightStore) => number; distortion: (name: string, delta: Float32Array) => number; modelDistortion: (deltas: ReadonlyMap<string, Float32Array>) => number; save: (dir: string, s: MemoryWeightStore) => Promise<void>; model: (s: MemoryWeightStore) => tf.LayersModel }> {
  await tf.setBackend('cpu');
  const m = mlp(5);
  await fit(m, clusterData(1200, 11, 6), 8, 3e-3);
  const v1 = storeOf(m);
  await fit(m, clusterData(1600, 12), 8, 1e-3);
  const v2 = storeOf(m);
  const test = clusterData(1000, 13);
  const names = m.weights.map((w) => w.name);
  const accuracy = (s: MemoryWeightStore): number => tf.tidy(() => {
    m.setWeights(names.map((n, i) => tf.tensor(s.values(n), m.weights[i].shape as number[])));
    const p = (m.predict(tf.tensor2d(test.x, [test.y.length, FT_INPUTS])) as tf.Tensor).argMax(-1).dataSync();
    let ok = 0;
    for (let i = 0; i < p.length; i++) if (p[i] === test.y[i]) ok++;
    return ok / p.length;
  });
  // Output distortion on 400 calibration examples (not the test set): v2 with one tensor at
  // v1 + delta, against v2's class probabilities (mean squared difference).
  const calib = clusterData(400, 14);
  const run = (get: (n: string) => Float32Array): Float32Array => tf.tidy(() => {
    m.setWeights(names.map((n, i) => tf.tensor(get(n), m.weights[i].shape as number[])));
    return (m.predict(tf.tensor2d(calib.x, [calib.y.length, FT_INPUTS])) as tf.Tensor).dataSync() as Float32Array;
  });
  const want = run((n) => v2.values(n));
  const fromV2 = (got: Float32Array): number => {
    let e = 0;
    for (let i = 0; i < got.length; i++) e += (got[i] - want[i]) ** 2;
    return e / calib.y.length;
  };
  const distortion = (name: string, delta: Float32Array): number => {
    const w = Float32Array.from(v1.values(name), (x, i) => x + delta[i]);
    return fromV2(run((n) => (n === name ? w : v2.values(n))));
  };
  const modelDistortion = (deltas: ReadonlyMap<string, Float32Array>): number => fromV2(run((n) => {
    const d = deltas.get(n);
    return d ? Float32Array.from(v1.values(n), (x, i) => x + d[i]) : v1.values(n);
  }));
  /** Write the MLP with a store's weights as a TF.js layers-model folder. */
  const save = async (dir: string, s: MemoryWeightStore): Promise<void> => {
    m.setWeights(names.map((n, i) => tf.tensor(s.values(n), m.weights[i].shape as number[])));
    await m.save(fileSystemIO(dir));
  };
  /** A new MLP holding a store's weights (the caller disposes it). */
  const model = (s: MemoryWeightStore): tf.LayersModel => {
    const out = mlp(5);
    out.setWeights(names.map((n, i) => tf.tensor(s.values(n), out.weights[i].shape as number[])));
    return out;
  };
  return { v1, v2, accuracy, distortion, modelDistortion, save, model };
}
