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
  return { dims, data: new Uint8Array(b.buffer, b.byteOffset + 4 + 4 * rank) };
}

/** Images of the task: `perClass` of each class, in a seeded order, as [n, 224, 224, 3] floats. */
export function fashionTask(split: 'train' | 't10k', perClass: number, seed: number, skipPerClass = 0): { x: Float32Array; shape: number[]; y: Int32Array } {
  const images = readIdx(`${FASHION_DIR}/${split}-images-idx3-ubyte.gz`);
  const labels = readIdx(`${FASHION_DIR}/${split}-labels-idx1-ubyte.gz`);
  const [count, rows, cols] = images.dims;
  const random = seededRandom(seed);
  const order = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const picked: { index: number; cls: number }[] = [];
  CLASSES.forEach(({ label }, cls) => {
    const of = order.filter((i) => labels.data[i] === label).slice(skipPerClass, skipPerClass + perClass);
    for (const index of of) picked.push({ index, cls });
  });
  // Back in the seeded order, so the classes are mixed.
  const rank = new Int32Array(count);
  order.forEach((index, r) => (rank[index] = r));
  picked.sort((a, b) => rank[a.index] - rank[b.index]);
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
