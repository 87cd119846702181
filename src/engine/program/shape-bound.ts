/**
 * The bound on every shape the trainer derives from a model file before tfjs allocates it: a
 * PAD's paddings, a RESHAPE's shape, a RESIZE's size, a TILE's multiples, a broadcast's shape, a
 * transposed convolution's output, ONNX's Expand, ConstantOfShape, Range, OneHot, ... A 1 KB
 * file can ask for 2 × 10^9 elements in one constant; without a bound the trainer tries (11 GB,
 * then a wasm out-of-bounds error) instead of refusing it.
 *
 * The bound (docs/security/attacks.md, issue #61): a tensor built from a model's constants holds at most
 * {@link MIN_ELEMENTS_PER_EXAMPLE} (2^24) elements per example of the batch, or
 * {@link INPUT_GROWTH} times the largest input example given, whichever is larger: activations of
 * vision models grow with the input they are fed (an upsampling decoder at 4× in each direction,
 * padded), never a thousandfold from constants alone. A tensor whose leading dimension is the
 * batch counts per example; any other counts whole.
 */
import { ModelFormatError } from '../../core/errors.ts';

/** Elements per example any derived tensor may hold (64 MiB of float32): a 512 × 512 × 64 activation. */
export const MIN_ELEMENTS_PER_EXAMPLE = 2 ** 24;
/** A derived tensor may also hold this many times the largest input example given. */
export const INPUT_GROWTH = 64;

/** The bound for one run of a program (module doc). */
export class DerivedShapeBound {
  /**
   * @param source the model's name, for messages
   * @param batch examples in the run (the leading dimension of its inputs)
   * @param perExample elements a derived tensor may hold per example
   */
  constructor(readonly source: string, readonly batch: number, readonly perExample: number) {}

  /** The bound for a run on `inputs` (their shapes; the first's leading dimension is the batch). */
  static of(source: string, inputs: readonly (readonly number[])[]): DerivedShapeBound {
    const batch = Math.max(1, inputs[0]?.[0] ?? 1);
    let largest = 0;
    for (const shape of inputs) largest = Math.max(largest, shape.reduce((p, d) => p * d, 1) / (shape[0] === batch ? batch : 1));
    return new DerivedShapeBound(source, batch, Math.max(MIN_ELEMENTS_PER_EXAMPLE, INPUT_GROWTH * largest));
  }

  /**
   * Check `shape` (a -1 where `inferred` allows one, as in a reshape) before anything of it is
   * allocated, and return it.
   * @throws ModelFormatError when a dimension is not a non-negative integer or the tensor would
   *   hold more than the bound.
   */
  check(shape: readonly number[], what: string, inferred = false): number[] {
    let elements = 1;
    for (const d of shape) {
      if (inferred && d === -1) continue;
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new ModelFormatError(`${this.source}: ${what} asks for a tensor of shape [${shape.join(', ')}]: expected whole, non-negative dimensions; the model file is corrupt or hostile, nothing was allocated`, { what, shape: shape.slice() });
      }
      elements *= d;
    }
    const examples = shape[0] === this.batch ? this.batch : 1;
    if (elements > this.perExample * examples) {
      throw new ModelFormatError(
        `${this.source}: ${what} asks for a tensor of shape [${shape.join(', ')}], ${elements} elements${examples > 1 ? ` (${elements / examples} per example)` : ''}: ` +
          `the trainer builds at most ${this.perExample} elements per example from a model's constants (2^24, or ${INPUT_GROWTH} times the largest input example). Nothing was allocated; the model file is hostile or corrupt, or its activations are too large to train here`,
        { what, shape: shape.slice(), elements, limit: this.perExample * examples },
      );
    }
    return shape.slice();
  }
}

/** The numpy broadcast of `shapes` (an incompatible pair keeps the larger dimension: tfjs refuses it after). */
export function broadcastOf(...shapes: readonly (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) for (let i = 0; i < s.length; i++) {
    const d = s[i];
    const k = rank - s.length + i;
    if (d !== 1) out[k] = out[k] === 1 ? d : Math.max(out[k], d);
  }
  return out;
}
