/**
 * The bound on shapes a TF.js graph model derives from its constants (src/engine/program/shape-bound.ts),
 * for the graphs tfjs' own executor runs: a Pad's paddings, a Tile's multiples, a BroadcastTo's or
 * a Fill's shape, a resize's size, a OneHot's depth, a Range's length. A 1 KB `model.json` can ask
 * any of them for 10^10 elements; tfjs would try to allocate them (gigabytes, then an out-of-memory
 * crash) instead of refusing the model.
 *
 * The executor gives no hook per node, so {@link executeBounded} watches the kernels it runs: while
 * `model.execute` runs (synchronously), every kernel call goes through the engine's `runKernel`,
 * and those that build a tensor from their attributes have their output shape checked against the
 * run's bound before the kernel runs: nothing of a refused tensor is allocated. (`BroadcastTo` runs
 * as a `Tile` in tfjs.) Kernels whose output is no larger than their inputs (element-wise,
 * reductions, Reshape, which keeps the element count) need no check.
 */
import * as tf from '@tensorflow/tfjs';
import { DerivedShapeBound } from '../program/shape-bound.ts';

type Attrs = Record<string, unknown>;
type Inputs = Record<string, tf.Tensor | undefined>;

/** Which graph operators run a kernel, for messages. */
const NODES: Record<string, string> = {
  PadV2: 'Pad or PadV2',
  MirrorPad: 'MirrorPad',
  Tile: 'Tile or BroadcastTo',
  Fill: 'Fill',
  ResizeBilinear: 'ResizeBilinear',
  ResizeNearestNeighbor: 'ResizeNearestNeighbor',
  OneHot: 'OneHot',
  Range: 'Range',
  LinSpace: 'LinSpace',
};

const num = (v: unknown): number => (typeof v === 'number' ? v : NaN);
const pairs = (v: unknown): unknown[][] => (Array.isArray(v) ? v.map((p) => (Array.isArray(p) ? p : [])) : []);

/** The output shape of a kernel that builds a tensor from its attributes, or undefined for any other. */
function outputShape(kernel: string, inputs: Inputs, attrs: Attrs): number[] | undefined {
  switch (kernel) {
    case 'PadV2':
    case 'MirrorPad': {
      const p = pairs(attrs.paddings);
      return inputs.x?.shape.map((d, i) => d + num(p[i]?.[0]) + num(p[i]?.[1]));
    }
    case 'Tile': {
      const reps = Array.isArray(attrs.reps) ? attrs.reps : [];
      return inputs.x?.shape.map((d, i) => d * num(reps[i]));
    }
    case 'Fill':
      return Array.isArray(attrs.shape) ? attrs.shape.map(num) : undefined;
    case 'ResizeBilinear':
    case 'ResizeNearestNeighbor': {
      const s = inputs.images?.shape;
      const size = Array.isArray(attrs.size) ? attrs.size : [];
      return s && s.length === 4 ? [s[0], num(size[0]), num(size[1]), s[3]] : undefined;
    }
    case 'OneHot':
      return inputs.indices ? [...inputs.indices.shape, num(attrs.depth)] : undefined;
    case 'Range': {
      const n = Math.ceil((num(attrs.stop) - num(attrs.start)) / num(attrs.step));
      return [Number.isNaN(n) ? n : Math.max(0, n)];
    }
    case 'LinSpace':
      return [num(attrs.num)];
    default:
      return undefined;
  }
}

interface KernelRunner {
  runKernel(kernel: string, inputs: Inputs, attrs?: Attrs): tf.Tensor | tf.Tensor[];
}

/**
 * `model.execute(feeds, names)` with every tensor its kernels build from attributes (module doc)
 * checked against the bound of a run on `feeds` (`source` names the model in messages).
 * @throws ModelFormatError before a kernel allocates a tensor beyond the bound.
 */
export function executeBounded(model: tf.GraphModel, feeds: Record<string, tf.Tensor>, names: string[], source: string): tf.Tensor[] {
  const bound = DerivedShapeBound.of(source, Object.values(feeds).map((t) => t.shape));
  const engine = tf.engine() as unknown as KernelRunner;
  const own = Object.prototype.hasOwnProperty.call(engine, 'runKernel');
  const before = engine.runKernel;
  engine.runKernel = function (kernel: string, inputs: Inputs, attrs: Attrs = {}) {
    const shape = outputShape(kernel, inputs ?? {}, attrs);
    if (shape) bound.check(shape, `a ${NODES[kernel]} node (tfjs kernel ${kernel})`);
    return before.call(this, kernel, inputs, attrs);
  };
  try {
    const out = model.execute(feeds, names);
    return Array.isArray(out) ? out : [out];
  } finally {
    if (own) engine.runKernel = before;
    else delete (engine as Partial<KernelRunner>).runKernel;
  }
}
