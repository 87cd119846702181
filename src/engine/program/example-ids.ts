/**
 * The trainers' `x` for a program (src/engine/program/training-model.ts) holds example ids as
 * float32, exact up to 2^24. Augmented rows are numbered after the examples, so the ids they
 * reach are checked before any row is written. The inputs' rows the ids pick, and the sequences
 * they fall in.
 */
import * as tf from '@tensorflow/tfjs';
import { DataError } from '../../core/errors.ts';

/** One input's values for every example: `[count, ...shape]`, row-major. */
export interface ProgramInputValues {
  values: Float32Array | Int32Array;
  /** Shape of one example's value (without the example axis). */
  shape: number[];
}

/** The examples a program trains and is evaluated on (training-model.ts's module doc). */
export interface ProgramExamples {
  count: number;
  /** Per-example inputs by model input name (the examples on the first axis). */
  inputs: Record<string, ProgramInputValues>;
  /** Inputs fed as they are to every batch (a sample rate), by name. */
  shared?: Record<string, ProgramInputValues>;
  /** Stateful models: the sequence of each example; a sequence's frames are consecutive, in order. */
  sequence?: Int32Array;
  /**
   * Stateful models augmented (ProgramTrainingModel.augmentBatch): how many times each example's
   * values were rewritten; a model recomputes what it cached of a rewritten example (a teacher's
   * outputs, a sequence's entry states).
   */
  revision?: Uint32Array;
}

/** The largest id float32 holds exactly (with every id below it). */
export const EXACT_IDS = 2 ** 24;

/**
 * Refuse augmented rows numbered up to `highest` when float32 cannot hold that id exactly.
 * @throws DataError saying how many examples fit and what to do.
 */
export function checkAugmentedIds(source: string, count: number, highest: number, copies: string): void {
  if (highest <= EXACT_IDS) return;
  const most = copies === 'sequences' ? EXACT_IDS / 2 : EXACT_IDS - (highest - count);
  throw new DataError(
    `${source}: augmentation numbers ${copies === 'sequences' ? 'a copy of each' : 'the augmented rows'} of the ${count} examples after them, up to id ${highest}, and float32 ids are exact up to ${EXACT_IDS}: ` +
      `expected at most ${most} examples; split the training data into runs of at most that many, or use --augment none`,
    { examples: count, highestId: highest, most },
  );
}

/** The example ids in a trainers' `x`. */
export function idsOf(x: tf.Tensor): Int32Array {
  return Int32Array.from(x.dataSync() as Float32Array, (v) => Math.round(v));
}

/** Rows `ids` of an input, `[n, ...shape]` row-major in the input's own element type. */
export function gatherRows(v: ProgramInputValues, ids: ArrayLike<number>): Float32Array | Int32Array {
  const per = v.shape.reduce((a, d) => a * d, 1);
  const out = v.values instanceof Int32Array ? new Int32Array(ids.length * per) : new Float32Array(ids.length * per);
  for (let r = 0; r < ids.length; r++) out.set(v.values.subarray(ids[r] * per, (ids[r] + 1) * per) as never, r * per);
  return out;
}

/** Rows `ids` of an input as a tensor `[n, ...shape]`. */
export function rowsOf(v: ProgramInputValues, ids: Int32Array): tf.Tensor {
  return tf.tensor(gatherRows(v, ids), [ids.length, ...v.shape], v.values instanceof Int32Array ? 'int32' : 'float32');
}

/** For each example its sequence's first id and end id (a sequence's examples are consecutive). */
export function sequenceBounds(sequence: Int32Array): [Int32Array, Int32Array] {
  const start = new Int32Array(sequence.length);
  const end = new Int32Array(sequence.length);
  let from = 0;
  const seen = new Set<number>();
  for (let i = 1; i <= sequence.length; i++) {
    if (i === sequence.length || sequence[i] !== sequence[from]) {
      if (seen.has(sequence[from])) throw new DataError(`sequence ${sequence[from]} appears in two places (examples ${from} and earlier): a sequence's frames must be consecutive and in order`);
      seen.add(sequence[from]);
      start.fill(from, from, i);
      end.fill(i, from, i);
      from = i;
    }
  }
  return [start, end];
}
