/**
 * Small ONNX models the tests build (with test/helpers/onnx-build.ts), their data, and
 * onnxruntime-web's outputs on them, shared by the ONNX training and `ndiff diff --eval` tests:
 * - {@link cnn}: Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm whose weight is INT8
 *   through DequantizeLinear, 3 logits; {@link images} its inputs;
 * - {@link lstm}: one frame of an LSTM carrying (h, c) from frame to frame, a speech-like
 *   probability out; {@link sequences} its frames.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-web';
import { applyToOnnxFile } from '../../src/io/onnx/files.ts';
import type { OnnxDataset } from '../../src/train/onnx/train-onnx.ts';
import { DT, f32le, graph, model, node, tensor, valueInfoFree } from './onnx-build.ts';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

export function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 31 - 1;
  };
}
const floats = (n: number, rand: () => number, scale = 0.5) => Array.from({ length: n }, () => scale * rand());
const init = (name: string, dims: number[], values: number[]) => tensor({ name, dims, dataType: DT.FLOAT, raw: f32le(values) });

export const FC_SCALE = 0.02;

/**
 * Conv 3x3 (4 filters) -> Relu -> GlobalAveragePool -> Flatten -> Gemm with an INT8 weight read
 * through DequantizeLinear (scale 0.02) -> 3 logits. `shift` moves the float weights (a second
 * version of the model) and `fcShift` the int8 steps of the classifier. `rotate` renumbers the
 * filters (filter k holds filter k + rotate's weights, and the classifier reads it where it read
 * that one): the same function with other weights. `head` adds a tensor `head.s` [3] and a Mul
 * scaling the logits by it (a version whose structure changed; the outputs keep their name).
 */
export function cnn(shift = 0, fcShift = 0, rotate = 0, head?: number[]): Uint8Array {
  const rand = seeded(7);
  const moved = (xs: number[]) => xs.map((x, i) => x + shift * Math.sin(3 * i + 1));
  const q0 = Array.from({ length: 12 }, (_, i) => Math.max(-128, Math.min(127, Math.round(40 * Math.sin(5 * i + 2)) + (i % 3 === 0 ? fcShift : -fcShift))));
  // Filter k (its 9 weights, its bias, column k of the classifier) takes filter (k + rotate) % 4's.
  const from = (k: number) => (k + rotate) % 4;
  const w0 = moved(floats(36, rand));
  const b0 = moved(floats(4, rand, 0.1));
  const w = Array.from({ length: 36 }, (_, i) => w0[from(Math.floor(i / 9)) * 9 + (i % 9)]);
  const b = Array.from({ length: 4 }, (_, k) => b0[from(k)]);
  const q = Array.from({ length: 12 }, (_, i) => q0[Math.floor(i / 4) * 4 + from(i % 4)]);
  return model(graph({
    initializers: [
      init('conv.w', [4, 1, 3, 3], w), init('conv.b', [4], b),
      tensor({ name: 'fc.q', dims: [3, 4], dataType: DT.INT8, raw: q.map((v) => v & 0xff) }),
      tensor({ name: 'fc.scale', dims: [], dataType: DT.FLOAT, raw: f32le([FC_SCALE]) }),
      tensor({ name: 'fc.zp', dims: [], dataType: DT.INT8, raw: [0] }),
      init('fc.b', [3], [0.05, -0.02, 0.01].map((x, i) => x + shift * Math.sin(3 * i + 1))),
      ...(head ? [init('head.s', [3], head)] : []),
    ],
    nodes: [
      node({ opType: 'Conv', inputs: ['x', 'conv.w', 'conv.b'], outputs: ['c'], attributes: [{ name: 'pads', type: 7, ints: [1, 1, 1, 1] }] }),
      node({ opType: 'Relu', inputs: ['c'], outputs: ['r'] }),
      node({ opType: 'GlobalAveragePool', inputs: ['r'], outputs: ['p'] }),
      node({ opType: 'Flatten', inputs: ['p'], outputs: ['f'] }),
      node({ opType: 'DequantizeLinear', inputs: ['fc.q', 'fc.scale', 'fc.zp'], outputs: ['fc.w'] }),
      node({ opType: 'Gemm', inputs: ['f', 'fc.w', 'fc.b'], outputs: [head ? 'g' : 'logits'], attributes: [{ name: 'transB', type: 2, i: 1 }] }),
      ...(head ? [node({ opType: 'Mul', inputs: ['g', 'head.s'], outputs: ['logits'] })] : []),
    ],
    inputs: [valueInfoFree('x', ['N', 1, 8, 8])],
    outputs: [valueInfoFree('logits', ['N', 3])],
  }));
}

export const H = 6;
/** The LSTM's weights, `shift` moving every value (v2 of the same model). */
function lstmValues(shift: number) {
  const rand = seeded(11);
  const moved = (xs: number[]) => xs.map((x, i) => x + shift * Math.cos(7 * i + 3));
  const W = moved(floats(4 * H * 3, rand, 0.8));
  const R = moved(floats(4 * H * H, rand, 0.5));
  const B = moved(floats(8 * H, rand, 0.1));
  const outW = moved(floats(H, rand, 1.5));
  return { W, R, B, outW, outB: moved([0.1]) };
}

/** The external data file of `lstm(shift, location)`: lstm.R as float32. */
export function lstmExternalData(shift = 0): Uint8Array {
  return Uint8Array.from(f32le(lstmValues(shift).R));
}

/**
 * One frame of an LSTM carrying (h, c) from frame to frame, as a streaming model is exported
 * (`externalR`: lstm.R kept in that external data file, {@link lstmExternalData}):
 * x [N, 3] -> LSTM step from (h, c) -> hN, cN; the speech-like probability Sigmoid(Gemm(hN)).
 */
export function lstm(shift = 0, externalR?: string): Uint8Array {
  const v = lstmValues(shift);
  const R = externalR
    ? tensor({ name: 'lstm.R', dims: [1, 4 * H, H], dataType: DT.FLOAT, external: { location: externalR, offset: '0', length: String(4 * v.R.length) } })
    : init('lstm.R', [1, 4 * H, H], v.R);
  return model(graph({
    initializers: [
      init('lstm.W', [1, 4 * H, 3], v.W), R, init('lstm.B', [1, 8 * H], v.B),
      init('out.w', [1, H], v.outW), init('out.b', [1], v.outB),
      tensor({ name: 'axis0', dims: [1], dataType: DT.INT64, int64Data: [0] }),
    ],
    nodes: [
      node({ opType: 'Unsqueeze', inputs: ['x', 'axis0'], outputs: ['seq'] }),
      node({ opType: 'LSTM', inputs: ['seq', 'lstm.W', 'lstm.R', 'lstm.B', '', 'h', 'c'], outputs: ['', 'hN', 'cN'], attributes: [{ name: 'hidden_size', type: 2, i: H }] }),
      node({ opType: 'Squeeze', inputs: ['hN', 'axis0'], outputs: ['hs'] }),
      node({ opType: 'Gemm', inputs: ['hs', 'out.w', 'out.b'], outputs: ['z'], attributes: [{ name: 'transB', type: 2, i: 1 }] }),
      node({ opType: 'Sigmoid', inputs: ['z'], outputs: ['p'] }),
    ],
    inputs: [valueInfoFree('x', ['N', 3]), valueInfoFree('h', [1, 'N', H]), valueInfoFree('c', [1, 'N', H])],
    outputs: [valueInfoFree('p', ['N', 1]), valueInfoFree('hN', [1, 'N', H]), valueInfoFree('cN', [1, 'N', H])],
  }));
}

/**
 * One attention head pair over token embeddings, as a transformer's export writes it (opset 13):
 * Gather(embedding, tokens) [N, 6, 8]; its heads' shape made from Shape -> Gather -> Unsqueeze ->
 * Concat of the activation's own shape, Reshape to [N, 6, 2, 4], Transpose, scores by MatMul,
 * Softmax, MatMul, back to [N, 6, 8] the same way, ReduceMean over the tokens, Gemm to 3 logits.
 * Tokens take values 0-9 ({@link tokenSequences}).
 */
export function attention(): Uint8Array {
  const rand = seeded(5);
  const i64 = (name: string, values: number[], dims = [values.length]) => tensor({ name, dims, dataType: DT.INT64, int64Data: values });
  const shapeOf = (x: string, tail: string, out: string) => [
    node({ opType: 'Shape', inputs: [x], outputs: [`${out}.shape`] }),
    node({ opType: 'Gather', inputs: [`${out}.shape`, 'zero'], outputs: [`${out}.n`], attributes: [{ name: 'axis', type: 2, i: 0 }] }),
    node({ opType: 'Gather', inputs: [`${out}.shape`, 'one'], outputs: [`${out}.t`], attributes: [{ name: 'axis', type: 2, i: 0 }] }),
    node({ opType: 'Unsqueeze', inputs: [`${out}.n`, 'axis0'], outputs: [`${out}.n1`] }),
    node({ opType: 'Unsqueeze', inputs: [`${out}.t`, 'axis0'], outputs: [`${out}.t1`] }),
    node({ opType: 'Concat', inputs: [`${out}.n1`, `${out}.t1`, tail], outputs: [out], attributes: [{ name: 'axis', type: 2, i: 0 }] }),
  ];
  return model(graph({
    initializers: [
      init('emb', [10, 8], floats(80, rand)), init('fc.w', [8, 3], floats(24, rand)), init('fc.b', [3], floats(3, rand, 0.1)),
      i64('zero', [0], []), i64('one', [1], []), i64('axis0', [0]), i64('heads', [2, 4]), i64('width', [8]),
    ],
    nodes: [
      node({ opType: 'Gather', inputs: ['emb', 'tokens'], outputs: ['e'], attributes: [{ name: 'axis', type: 2, i: 0 }] }),
      ...shapeOf('e', 'heads', 'split'),
      node({ opType: 'Reshape', inputs: ['e', 'split'], outputs: ['h4'] }),
      node({ opType: 'Transpose', inputs: ['h4'], outputs: ['h'], attributes: [{ name: 'perm', type: 7, ints: [0, 2, 1, 3] }] }),
      node({ opType: 'Transpose', inputs: ['h'], outputs: ['hT'], attributes: [{ name: 'perm', type: 7, ints: [0, 1, 3, 2] }] }),
      node({ opType: 'MatMul', inputs: ['h', 'hT'], outputs: ['scores'] }),
      node({ opType: 'Softmax', inputs: ['scores'], outputs: ['p'], attributes: [{ name: 'axis', type: 2, i: -1 }] }),
      node({ opType: 'MatMul', inputs: ['p', 'h'], outputs: ['a'] }),
      node({ opType: 'Transpose', inputs: ['a'], outputs: ['a4'], attributes: [{ name: 'perm', type: 7, ints: [0, 2, 1, 3] }] }),
      ...shapeOf('a4', 'width', 'merge'),
      node({ opType: 'Reshape', inputs: ['a4', 'merge'], outputs: ['m'] }),
      node({ opType: 'ReduceMean', inputs: ['m'], outputs: ['pooled'], attributes: [{ name: 'axes', type: 7, ints: [1] }, { name: 'keepdims', type: 2, i: 0 }] }),
      node({ opType: 'Gemm', inputs: ['pooled', 'fc.w', 'fc.b'], outputs: ['logits'] }),
    ],
    inputs: [valueInfoFree('tokens', ['N', 6], DT.INT64)],
    outputs: [valueInfoFree('logits', ['N', 3])],
  }), { opset: 13 });
}

/** `count` sequences of 6 tokens (0-9) for {@link attention}, labelled by which third of 0-9 holds most of them. */
export function tokenSequences(count: number, seed: number): { data: OnnxDataset; labels: Int32Array } {
  const rand = seeded(seed);
  const values = new Int32Array(count * 6);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const votes = [0, 0, 0];
    for (let t = 0; t < 6; t++) {
      const v = Math.min(9, Math.floor(((rand() + 1) / 2) * 10));
      values[i * 6 + t] = v;
      votes[Math.min(2, Math.floor(v / 3.34))]++;
    }
    labels[i] = votes.indexOf(Math.max(...votes));
  }
  return { data: { inputs: { tokens: { values, shape: [6] } } }, labels };
}

export function images(n: number, seed: number): OnnxDataset {
  const rand = seeded(seed);
  const values = new Float32Array(n * 64);
  for (let i = 0; i < n; i++) {
    // A blob somewhere on a noisy background.
    const cx = 1 + Math.floor(((rand() + 1) / 2) * 6);
    const cy = 1 + Math.floor(((rand() + 1) / 2) * 6);
    const amplitude = 2 * rand();
    const offset = rand();
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) values[i * 64 + y * 8 + x] = offset + 0.3 * rand() + Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 2) * amplitude;
  }
  return { inputs: { x: { values, shape: [1, 8, 8] } } };
}

export function sequences(count: number, frames: number, seed: number): OnnxDataset {
  const rand = seeded(seed);
  const values = new Float32Array(count * frames * 3);
  const sequence = new Int32Array(count * frames);
  for (let s = 0; s < count; s++) {
    const phase = 3 * rand();
    for (let t = 0; t < frames; t++) {
      const i = s * frames + t;
      sequence[i] = s;
      for (let k = 0; k < 3; k++) values[i * 3 + k] = Math.sin(0.6 * t + phase + k) + 0.3 * rand();
    }
  }
  return { inputs: { x: { values, shape: [3] } }, sequence };
}

/** onnxruntime-web on a file: the CNN's logits for every image. */
export async function ortImages(file: string, data: OnnxDataset): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(readFileSync(file));
  const n = data.inputs.x.values.length / 64;
  const r = await s.run({ x: new ort.Tensor('float32', data.inputs.x.values as Float32Array, [n, 1, 8, 8]) });
  await s.release();
  return r.logits.data as Float32Array;
}

/** onnxruntime-web on a file: the LSTM's probability for every frame, each sequence from a zero state with (h, c) carried. */
export async function ortFrames(file: string, data: OnnxDataset): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(readFileSync(file));
  const seq = data.sequence as Int32Array;
  const x = data.inputs.x.values as Float32Array;
  const out = new Float32Array(seq.length);
  let h = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
  let c = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
  for (let i = 0; i < seq.length; i++) {
    if (i === 0 || seq[i] !== seq[i - 1]) {
      h = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
      c = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
    }
    const r = await s.run({ x: new ort.Tensor('float32', x.slice(i * 3, i * 3 + 3), [1, 3]), h, c });
    out[i] = (r.p.data as Float32Array)[0];
    h = r.hN as ort.TypedTensor<'float32'>;
    c = r.cN as ort.TypedTensor<'float32'>;
  }
  await s.release();
  return out;
}

/** Largest |a − b| relative to the largest |b| (floored at 1e-6). */
export function worstRelative(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst / Math.max(scale, 1e-6);
}

/** Share of positions where two decision arrays are equal. */
export function agreement(a: Int32Array, b: Int32Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) n++;
  return n / a.length;
}

/** Apply `payload` to a copy of `bytes` with the device applier; the patched file's path. */
export async function patched(dir: string, name: string, bytes: Uint8Array, payload: Uint8Array): Promise<string> {
  const file = path.join(dir, name);
  writeFileSync(file, bytes);
  await applyToOnnxFile(file, payload, { state: null });
  return file;
}
