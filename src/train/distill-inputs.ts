/**
 * Wider distillation inputs: unlabeled inputs from where the model runs (the base's own training
 * inputs, field captures) mixed with the update's own inputs in a teacher diff's training stream.
 * A teacher needs no labels, so every such input teaches; the update's inputs alone do not cover
 * where the teacher moved (BitDelta matches logits on broad C4 text, not on the fine-tune's data).
 *
 * How the mix is weighted: the wider inputs make up a fixed share of the stream (default 0.5),
 * drawn once per run, seeded, without replacement from all the folders pooled (each folder in
 * proportion to its size). A fixed share, not one proportional to sizes, so a large capture folder
 * cannot drown the update's own inputs (where the teacher changed most) and a small one still
 * counts; where there are fewer wider inputs than the share asks, all of them are taken and the
 * progress says the share reached. The validation split is taken from the mixed stream, so
 * checkpoints are chosen on held-out inputs of both kinds.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../core/errors.ts';
import { seededRandom } from '../core/random.ts';
import { permutation, type InputData, type LabelledData } from './data.ts';

/** The default share of the training stream drawn from the wider inputs. */
export const DEFAULT_DISTILL_MIX = 0.5;

/** Which wider inputs join the stream: per source, the indices drawn (sorted), and how many that makes. */
export interface WiderDraw {
  /** Per source (in the order given), the indices of its examples drawn, ascending. */
  picked: Int32Array[];
  /** Examples drawn in all. */
  count: number;
  /** The share of the mixed stream they make: count / (own + count). */
  share: number;
}

/**
 * Draw `share` of a stream whose other part is `own` examples from sources of `sizes` examples:
 * round(own · share / (1 − share)) of them (all of them when fewer), uniformly without replacement
 * from the pooled sources, seeded.
 */
export function drawWiderInputs(own: number, sizes: readonly number[], share: number, seed: number): WiderDraw {
  if (!(share >= 0 && share < 1)) throw new UsageError(`the distillation mix must be a share of the training stream in [0, 1), found ${share}: 0.5 draws half of each epoch's examples from --distill-inputs`);
  const total = sizes.reduce((a, n) => a + n, 0);
  const count = share === 0 || total === 0 ? 0 : Math.min(total, Math.round((own * share) / (1 - share)));
  const order = permutation(total, seededRandom((seed ^ 0x5eed1d) >>> 0)).subarray(0, count);
  const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((a, n) => a + n, 0));
  const picked = sizes.map((size, s) => Int32Array.from([...order].filter((i) => i >= starts[s] && i < starts[s] + size).map((i) => i - starts[s])).sort());
  return { picked, count, share: count / Math.max(1, own + count) };
}

/**
 * The training stream with the wider inputs drawn into it, after the update's own examples; the
 * wider inputs' `y` is the teacher's top-1 (`labelsOf`). The same data back when nothing is drawn.
 */
export function mixDistillInputs(train: LabelledData, wider: readonly InputData[], share: number, seed: number, labelsOf: (x: tf.Tensor) => Int32Array): { data: LabelledData; draw: WiderDraw } {
  const example = train.x.shape.slice(1);
  wider.forEach((w, i) => {
    const s = w.x.shape.slice(1);
    if (w.x.shape[0] > 0 && s.join('x') !== example.join('x')) throw new UsageError(`distillation inputs ${i + 1} hold examples of shape [${s.join(', ')}], the training inputs [${example.join(', ')}]: expected the model's input shape; pass inputs from where this model runs`, { source: i });
  });
  const draw = drawWiderInputs(train.y.length, wider.map((w) => w.x.shape[0]), share, seed);
  if (draw.count === 0) return { data: train, draw };
  const x = tf.tidy(() => tf.concat([train.x, ...wider.flatMap((w, s) => (draw.picked[s].length ? [tf.gather(w.x, tf.tensor1d(draw.picked[s], 'int32'))] : []))], 0));
  const widerX = tf.slice(x, [train.y.length], [draw.count]);
  const y = new Int32Array(train.y.length + draw.count);
  y.set(train.y);
  y.set(labelsOf(widerX), train.y.length);
  widerX.dispose();
  return { data: { x, y, ...(train.replay ? { replay: Uint8Array.from([...train.replay, ...new Uint8Array(draw.count)]) } : {}) }, draw };
}
