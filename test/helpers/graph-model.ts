/**
 * A small TF.js graph model written by hand, as tensorflowjs_converter writes one: a GraphDef
 * as JSON (`modelTopology.node`) and a weights manifest, `"format": "graph-model"`. The graph is
 * the computation of a small Keras CNN, conv 3x3 (fused BiasAdd + Relu, as the converter fuses
 * it) -> MaxPool 2x2 -> Reshape (an int32 shape constant) -> MatMul -> BiasAdd -> Softmax, so the
 * same weights give the same outputs as the layers model {@link layersCnn} builds, and a layers
 * model can be the teacher of a graph model. `extra` inserts an operator before the Softmax.
 */
import * as tf from '@tensorflow/tfjs';
import { writeModelDir } from '../../src/io/tfjs/model-dir.ts';

/** The input side, filters and classes of the test CNN. */
export const SIDE = 12;
export const FILTERS = 16;
export const CLASSES = 10;
const FLAT = (SIDE / 2) * (SIDE / 2) * FILTERS;

/** The weights of the CNN, by the Keras layers' order: conv kernel, conv bias, dense kernel, dense bias. */
export interface CnnWeights {
  convKernel: Float32Array;
  convBias: Float32Array;
  denseKernel: Float32Array;
  denseBias: Float32Array;
}

/** An operator placed between the classifier's BiasAdd and the Softmax. */
export type ExtraOp = 'none' | 'topk' | 'where' | 'unknown';

/** Seeded pseudo-random numbers in [-1, 1). */
export function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 31 - 1;
  };
}

/** Weights of a trained-looking CNN (seeded), and a second version that changed some of them. */
export function cnnWeights(seed: number): CnnWeights {
  const r = seeded(seed);
  const fill = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * r());
  return { convKernel: fill(9 * FILTERS, 0.5), convBias: fill(FILTERS, 0.1), denseKernel: fill(FLAT * CLASSES, 0.15), denseBias: fill(CLASSES, 0.1) };
}

/** `w` with a tenth of the classifier's weights and a quarter of the filters moved (a fine-tune, v2). */
export function retrained(w: CnnWeights, seed: number): CnnWeights {
  const r = seeded(seed);
  const move = (a: Float32Array, share: number, by: number) => Float32Array.from(a, (v) => (Math.abs(r()) < share ? v + by * r() : v));
  return { convKernel: move(w.convKernel, 0.25, 0.3), convBias: w.convBias.slice(), denseKernel: move(w.denseKernel, 0.1, 0.6), denseBias: move(w.denseBias, 0.5, 0.2) };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const dims = (shape: number[]) => ({ dim: shape.map((d) => ({ size: String(d) })) });
const floatConst = (name: string, shape: number[]) => ({ name, op: 'Const', attr: { value: { tensor: { dtype: 'DT_FLOAT', tensorShape: dims(shape) } }, dtype: { type: 'DT_FLOAT' } } });
const intConst = (name: string, shape: number[]) => ({ name, op: 'Const', attr: { value: { tensor: { dtype: 'DT_INT32', tensorShape: dims(shape) } }, dtype: { type: 'DT_INT32' } } });
const T = { T: { type: 'DT_FLOAT' } };

/**
 * Write the CNN as a graph-model folder (float32 weights; quantize it with quantizeModelDir).
 * `inputSide` changes the declared input (an interface mismatch), `classes` the output width.
 */
export async function writeGraphCnn(dir: string, w: CnnWeights, options: { extra?: ExtraOp; inputSide?: number; classes?: number; batchOfOne?: boolean } = {}): Promise<void> {
  const side = options.inputSide ?? SIDE;
  // A graph exported for one example at a time (as MoveNet's [1, 192, 192, 3]) fixes the batch.
  const batch = options.batchOfOne ? 1 : -1;
  const classes = options.classes ?? CLASSES;
  const flat = (side / 2) * (side / 2) * FILTERS;
  const nodes: Record<string, unknown>[] = [
    { name: 'x', op: 'Placeholder', attr: { shape: { shape: dims([batch, side, side, 1]) }, dtype: { type: 'DT_FLOAT' } } },
    floatConst('conv/kernel', [3, 3, 1, FILTERS]), floatConst('conv/bias', [FILTERS]), intConst('flatten/shape', [2]),
    floatConst('dense/kernel', [flat, classes]), floatConst('dense/bias', [classes]),
    {
      name: 'conv/Relu', op: '_FusedConv2D', input: ['x', 'conv/kernel', 'conv/bias'],
      attr: { ...T, num_args: { i: '1' }, fused_ops: { list: { s: [b64('BiasAdd'), b64('Relu')] } }, strides: { list: { i: ['1', '1', '1', '1'] } }, padding: { s: b64('SAME') }, data_format: { s: b64('NHWC') }, dilations: { list: { i: ['1', '1', '1', '1'] } }, epsilon: { f: 0 } },
    },
    { name: 'pool/MaxPool', op: 'MaxPool', input: ['conv/Relu'], attr: { ...T, ksize: { list: { i: ['1', '2', '2', '1'] } }, strides: { list: { i: ['1', '2', '2', '1'] } }, padding: { s: b64('VALID') }, data_format: { s: b64('NHWC') } } },
    { name: 'flatten/Reshape', op: 'Reshape', input: ['pool/MaxPool', 'flatten/shape'], attr: { ...T, Tshape: { type: 'DT_INT32' } } },
    { name: 'dense/MatMul', op: 'MatMul', input: ['flatten/Reshape', 'dense/kernel'], attr: { ...T, transpose_a: { b: false }, transpose_b: { b: false } } },
    { name: 'dense/BiasAdd', op: 'BiasAdd', input: ['dense/MatMul', 'dense/bias'], attr: { ...T, data_format: { s: b64('NHWC') } } },
  ];
  const tensors = new Map<string, { shape: number[]; data: Float32Array | Int32Array }>([
    ['conv/kernel', { shape: [3, 3, 1, FILTERS], data: w.convKernel }],
    ['conv/bias', { shape: [FILTERS], data: w.convBias }],
    ['flatten/shape', { shape: [2], data: Int32Array.of(batch, flat) }],
    ['dense/kernel', { shape: [flat, classes], data: options.classes || options.inputSide ? Float32Array.from({ length: flat * classes }, (_, i) => w.denseKernel[i % w.denseKernel.length]) : w.denseKernel }],
    ['dense/bias', { shape: [classes], data: Float32Array.from({ length: classes }, (_, i) => w.denseBias[i % w.denseBias.length]) }],
  ]);
  let last = 'dense/BiasAdd';
  if (options.extra === 'topk') {
    nodes.push(intConst('top/k', []), { name: 'top/TopKV2', op: 'TopKV2', input: [last, 'top/k'], attr: { ...T, sorted: { b: true } } });
    tensors.set('top/k', { shape: [], data: Int32Array.of(classes) });
    last = 'top/TopKV2';
  } else if (options.extra === 'where') {
    nodes.push({ name: 'mask/Where', op: 'Where', input: [last], attr: T }, { name: 'mask/Cast', op: 'Cast', input: ['mask/Where'], attr: { SrcT: { type: 'DT_INT64' }, DstT: { type: 'DT_FLOAT' } } });
    last = 'mask/Cast';
  } else if (options.extra === 'unknown') {
    nodes.push({ name: 'special/Op', op: 'MySpecialOp', input: [last], attr: T });
    last = 'special/Op';
  }
  nodes.push({ name: 'probs/Softmax', op: 'Softmax', input: [last], attr: T }, { name: 'Identity', op: 'Identity', input: ['probs/Softmax'], attr: T });
  await writeModelDir(dir, {
    format: 'graph-model',
    generatedBy: '2.15.0',
    convertedBy: 'TensorFlow.js Converter v4.22.0',
    modelTopology: { node: nodes, library: {}, versions: { producer: 1482 } },
    signature: {
      inputs: { 'x:0': { name: 'x:0', dtype: 'DT_FLOAT', tensorShape: dims([batch, side, side, 1]) } },
      outputs: { 'Identity:0': { name: 'Identity:0', dtype: 'DT_FLOAT', tensorShape: dims([batch, classes]) } },
    },
    weightsManifest: [{ paths: [], weights: [...tensors].map(([name, t]) => ({ name, shape: t.shape, dtype: t.data instanceof Int32Array ? 'int32' : 'float32' })) }],
  }, tensors);
}

/** The same CNN as a Keras layers model holding `w`. */
export function layersCnn(w: CnnWeights): tf.LayersModel {
  const m = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [SIDE, SIDE, 1], filters: FILTERS, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv' }),
      tf.layers.maxPooling2d({ poolSize: 2, name: 'pool' }),
      tf.layers.flatten({ name: 'flatten' }),
      tf.layers.dense({ units: CLASSES, activation: 'softmax', name: 'dense' }),
    ],
  });
  m.setWeights([
    tf.tensor(w.convKernel, [3, 3, 1, FILTERS]), tf.tensor(w.convBias, [FILTERS]),
    tf.tensor(w.denseKernel, [FLAT, CLASSES]), tf.tensor(w.denseBias, [CLASSES]),
  ]);
  return m;
}

/** `n` inputs of the CNN (seeded): blobs on noise, as images of a few kinds. */
export function cnnInputs(n: number, seed: number): Float32Array {
  const r = seeded(seed);
  const x = new Float32Array(n * SIDE * SIDE);
  for (let i = 0; i < n; i++) {
    const cx = 2 + ((r() + 1) / 2) * (SIDE - 4);
    const cy = 2 + ((r() + 1) / 2) * (SIDE - 4);
    for (let p = 0; p < SIDE * SIDE; p++) {
      const dx = (p % SIDE) - cx;
      const dy = Math.floor(p / SIDE) - cy;
      x[i * SIDE * SIDE + p] = Math.exp(-(dx * dx + dy * dy) / 6) + 0.3 * r();
    }
  }
  return x;
}
