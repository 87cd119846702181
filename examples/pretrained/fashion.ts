/**
 * A new 5-class image task for the pretrained MobileNetV2, built offline from Debian's
 * `dataset-fashion-mnist` (MIT; 70,000 28x28 grey images of clothes): T-shirt, trouser, sandal,
 * bag and ankle boot, balanced, upscaled to the model's 224x224x3 input (each pixel an 8x8
 * block, grey in all three channels, values in [0, 1] as nsfwjs feeds the model).
 *
 * The Debian package is installed with apt-get when it is missing (the script says so); nothing
 * is downloaded otherwise, and the images are never committed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { UsageError } from '../../src/core/errors.ts';
import { seededRandom } from '../../src/core/random.ts';

export const FASHION_DIR = '/usr/share/datasets/fashion-mnist';
/** Fashion-MNIST labels used, in the order of the new task's classes 0..4. */
export const CLASSES = [
  { label: 0, name: 'T-shirt' },
  { label: 1, name: 'trouser' },
  { label: 5, name: 'sandal' },
  { label: 8, name: 'bag' },
  { label: 9, name: 'ankle boot' },
] as const;
export const SIDE = 224;

/** Install Debian's dataset-fashion-mnist when its files are missing. */
export function ensureFashionMnist(log: (line: string) => void): void {
  if (existsSync(`${FASHION_DIR}/train-images-idx3-ubyte.gz`)) return;
  log('installing the Debian package dataset-fashion-mnist with apt-get (31 MB; the images of the new task)');
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', 'dataset-fashion-mnist'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0 || !existsSync(`${FASHION_DIR}/train-images-idx3-ubyte.gz`)) {
    throw new Error('could not install dataset-fashion-mnist with apt-get: install it (Debian package dataset-fashion-mnist, as root) and run again');
  }
}

/** An IDX file (the MNIST format): big-endian magic, dimensions, then unsigned bytes. */
function readIdx(file: string): { dims: number[]; data: Uint8Array } {
  const b = gunzipSync(readFileSync(file));
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const rank = dv.getUint8(3);
  const dims = Array.from({ length: rank }, (_, i) => dv.getUint32(4 + 4 * i));
  return { dims, data: new Uint8Array(b.buffer, b.byteOffset + 4 + 4 * rank, b.byteLength - 4 - 4 * rank) };
}

/** One picked image: its index in the split's IDX files and its class in the new task (0..4). */
export interface FashionPick {
  index: number;
  cls: number;
}

/**
 * Which images of `split` the task takes: `perClass` of each class after the first `skipPerClass`
 * of that class, in an order shuffled by `seed` (classes mixed). The same split, seed and a
 * different `skipPerClass` window give images no other window holds.
 */
export function fashionPicks(split: 'train' | 't10k', perClass: number, seed: number, skipPerClass = 0): FashionPick[] {
  const labels = readIdx(`${FASHION_DIR}/${split}-labels-idx1-ubyte.gz`);
  const count = labels.dims[0];
  const random = seededRandom(seed);
  const order = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const picked: FashionPick[] = [];
  CLASSES.forEach(({ label, name }, cls) => {
    const all = order.filter((i) => labels.data[i] === label);
    if (skipPerClass + perClass > all.length) {
      throw new UsageError(`Fashion-MNIST ${split} holds ${all.length} images of class ${name}; ${skipPerClass} + ${perClass} were asked of it: ask for fewer images per class`, { split, cls: name, available: all.length, asked: skipPerClass + perClass });
    }
    for (const index of all.slice(skipPerClass, skipPerClass + perClass)) picked.push({ index, cls });
  });
  // Back in the seeded order, so the classes are mixed.
  const rank = new Int32Array(count);
  order.forEach((index, r) => (rank[index] = r));
  picked.sort((a, b) => rank[a.index] - rank[b.index]);
  return picked;
}

/** Seeds of the example's draws: training and distillation images share the training split's order. */
export const TRAIN_SEED = 1;
export const EVAL_SEED = 2;

/** The example's three image sets as picks, each image in one set only. */
export interface FashionSets {
  /** Labelled training images (`train` split). */
  train: FashionPick[];
  /** Evaluation images (`t10k` split, held out from every training). */
  eval: FashionPick[];
  /** Unlabeled distillation inputs (`train` split, the window after the training images of each class). */
  distill: FashionPick[];
}

/**
 * The training, evaluation and distillation picks of the example: the distillation inputs are the
 * next `distillPerClass` images of each class in the training split's seeded order, after the
 * `trainPerClass` training ones, so they stand for more inputs from where the model runs that
 * the update's labelled set did not include; evaluation comes from the other split.
 */
export function fashionSets(o: { trainPerClass: number; evalPerClass: number; distillPerClass: number }): FashionSets {
  for (const [k, v] of Object.entries(o)) {
    const flag = { trainPerClass: '--train-per-class', evalPerClass: '--eval-per-class', distillPerClass: '--distill-inputs' }[k];
    const least = k === 'distillPerClass' ? 0 : 1;
    if (!Number.isInteger(v) || v < least) throw new UsageError(`${k} (${flag}) is images per class: a whole number >= ${least}, found ${v}; pass one such as 100`, { [k]: v });
  }
  return {
    train: fashionPicks('train', o.trainPerClass, TRAIN_SEED),
    eval: fashionPicks('t10k', o.evalPerClass, EVAL_SEED),
    distill: o.distillPerClass ? fashionPicks('train', o.distillPerClass, TRAIN_SEED, o.trainPerClass) : [],
  };
}

/** The images of `picks` from `split`, as [n, 224, 224, 3] floats in [0, 1], with their classes. */
export function fashionImages(split: 'train' | 't10k', picked: readonly FashionPick[]): { x: Float32Array; shape: number[]; y: Int32Array } {
  const images = readIdx(`${FASHION_DIR}/${split}-images-idx3-ubyte.gz`);
  const [, rows, cols] = images.dims;
  const n = picked.length;
  const scale = SIDE / rows;
  const x = new Float32Array(n * SIDE * SIDE * 3);
  const y = new Int32Array(n);
  picked.forEach(({ index, cls }, k) => {
    y[k] = cls;
    const src = images.data.subarray(index * rows * cols, (index + 1) * rows * cols);
    const out = k * SIDE * SIDE * 3;
    for (let r = 0; r < SIDE; r++) {
      const sr = Math.floor(r / scale);
      for (let c = 0; c < SIDE; c++) {
        const v = src[sr * cols + Math.floor(c / scale)] / 255;
        const o = out + (r * SIDE + c) * 3;
        x[o] = v;
        x[o + 1] = v;
        x[o + 2] = v;
      }
    }
  });
  return { x, shape: [n, SIDE, SIDE, 3], y };
}

/** Images of the task: `perClass` of each class, in a seeded order, as [n, 224, 224, 3] floats. */
export function fashionTask(split: 'train' | 't10k', perClass: number, seed: number, skipPerClass = 0): { x: Float32Array; shape: number[]; y: Int32Array } {
  return fashionImages(split, fashionPicks(split, perClass, seed, skipPerClass));
}
