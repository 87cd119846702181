/**
 * Our wasm kernels past 2 GiB of WebAssembly memory. tfjs-backend-wasm's memory grows to 4 GiB and
 * a large model's training (MobileNetV2 with its cached activations, on a pool thread) goes past
 * 2 GiB; there a tensor's byte offset is 2^31 or more, and an index computed from it with a signed
 * shift (`offset >> 2`) is negative: GatherV2's row copies and the fused element-wise kernel's
 * scalar and per-channel inputs then read and wrote from the heap's far end, corrupting the
 * allocator (a later allocation failed with "memory access out of bounds"). Each kernel here runs
 * on tensors placed above 2 GiB and must give the values it gives anywhere else; so do the other
 * kernels that compute with tensors' offsets in JavaScript (Slice, Transpose, SplitV, BatchMatMul),
 * and the convolutions, whose indirection tables hold addresses past 2 GiB.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { conv2dFilterGradWinogradReference, conv2dInputGradWinogradReference, conv2dWinogradReference, winogradFits } from '../src/engine/kernels/conv2d-winograd.ts';
import { conv2dFilterGradReference, conv2dInputGradReference, conv2dReference, convLimits, convShapeOf } from '../src/engine/kernels/conv2d.ts';
import { runElementwise, runElementwiseJs, type ElementwiseProgram } from '../src/engine/kernels/elementwise.ts';
import { asWasm, offsetOf } from '../src/engine/kernels/util.ts';
import type { TensorInfo } from '@tensorflow/tfjs';

const TWO_GIB = 2 ** 31;
let filler: TensorInfo | undefined;

before(async () => {
  await initBackend('wasm');
  // Memory reserved below (never written: allocating does not touch it), so what comes next lands above 2 GiB.
  filler = asWasm(tf.backend()).makeOutput([TWO_GIB / 4 + 2 ** 18], 'float32');
});

after(() => {
  if (filler) asWasm(tf.backend()).disposeData(filler.dataId);
});

/** Assert the test's premise: the tensor's data starts past 2 GiB. */
function above(t: tf.Tensor): tf.Tensor {
  const at = offsetOf(asWasm(tf.backend()), t as unknown as TensorInfo);
  assert.ok(at >= TWO_GIB, `the tensor's data starts at byte ${at}, below 2 GiB: the test cannot check offsets past it`);
  return t;
}

describe('wasm kernels past 2 GiB of memory', () => {
  for (const [dtype, slice] of [['float32', 3], ['float32', 40], ['int32', 3], ['int32', 40]] as const) {
    it(`GatherV2 takes the right rows (${dtype}, rows of ${slice})`, () => {
      const rows = 50;
      const values = Array.from({ length: rows * slice }, (_, i) => i - 7);
      const ids = [49, 0, 7, 7, 23, 1];
      const x = above(tf.tensor2d(values, [rows, slice], dtype));
      const idx = above(tf.tensor1d(ids, 'int32'));
      const got = tf.gather(x, idx);
      above(got);
      assert.deepEqual(Array.from(got.dataSync()), ids.flatMap((r) => values.slice(r * slice, (r + 1) * slice)));
      tf.dispose([x, idx, got]);
    });
  }

  it('Slice, Transpose, SplitV and BatchMatMul give the values they give below 2 GiB', () => {
    const v = Array.from({ length: 4 * 5 * 6 }, (_, i) => (i % 17) - 8);
    const x = above(tf.tensor3d(v, [4, 5, 6]));
    const at = (i: number, j: number, k: number) => v[(i * 5 + j) * 6 + k];
    const sliced = tf.slice(x, [1, 2, 1], [2, 3, 4]);
    const wantSlice: number[] = [];
    for (let i = 1; i < 3; i++) for (let j = 2; j < 5; j++) for (let k = 1; k < 5; k++) wantSlice.push(at(i, j, k));
    assert.deepEqual(Array.from(above(sliced).dataSync()), wantSlice);
    const t = tf.transpose(x, [2, 0, 1]);
    const wantT: number[] = [];
    for (let k = 0; k < 6; k++) for (let i = 0; i < 4; i++) for (let j = 0; j < 5; j++) wantT.push(at(i, j, k));
    assert.deepEqual(Array.from(above(t).dataSync()), wantT);
    const [left, right] = tf.split(x, [2, 4], 2);
    const part = (from: number, to: number) => v.filter((_, i) => i % 6 >= from && i % 6 < to);
    assert.deepEqual(Array.from(above(left).dataSync()), part(0, 2));
    assert.deepEqual(Array.from(above(right).dataSync()), part(2, 6));
    // [4, 5, 6] x [4, 5, 6]^T per batch item: a transposed operand, as attention multiplies.
    const prod = tf.matMul(x, x, false, true);
    const wantP: number[] = [];
    for (let i = 0; i < 4; i++) for (let a = 0; a < 5; a++) for (let c = 0; c < 5; c++) {
      let s = 0;
      for (let k = 0; k < 6; k++) s += at(i, a, k) * at(i, c, k);
      wantP.push(s);
    }
    assert.deepEqual(Array.from(above(prod).dataSync()), wantP);
    tf.dispose([x, sliced, t, left, right, prod]);
  });

  it('the fused element-wise kernel reads scalar and per-channel inputs where they are', () => {
    // out = relu((x + s) * c): x of the output's size, s a scalar, c one value per channel.
    const p: ElementwiseProgram = {
      inputs: ['full', 'scalar', 'channel'],
      immediates: [],
      registers: 1,
      channels: 16,
      code: [
        { op: 'add', dst: 4, a: 1, b: 2 },
        { op: 'mul', dst: 4, a: 4, b: 3 },
        { op: 'relu', dst: 0, a: 4 },
      ],
    };
    const shape: [number, number] = [300, 16];
    const xs = Float32Array.from({ length: 300 * 16 }, (_, i) => Math.sin(i) * 4);
    const s = Float32Array.of(0.75);
    const c = Float32Array.from({ length: 16 }, (_, i) => i / 4 - 1.5);
    const tensors = [above(tf.tensor2d(xs, shape)), above(tf.scalar(s[0])), above(tf.tensor1d(c))];
    const backend = tf.backend();
    const info = runElementwise(backend, p, tensors.map((t) => ({ dataId: t.dataId, shape: t.shape, dtype: t.dtype })), shape);
    const out = tf.engine().makeTensorFromTensorInfo(info, backend);
    const want = new Float32Array(xs.length);
    runElementwiseJs(p, [xs, s, c], want);
    assert.deepEqual(Array.from(out.dataSync()), Array.from(want));
    tf.dispose([...tensors, out]);
  });

  it('the keyword model\'s convolutions by Winograd\'s F(2, 3) read and write tensors past 2 GiB', () => {
    const xShape: [number, number, number, number] = [2, 1, 7, 8];
    const fShape: [number, number, number, number] = [1, 3, 8, 12];
    const sh = convShapeOf(tf.backend_util.computeConv2DInfo(xShape, fShape, 1, 1, 'same'));
    assert.ok(winogradFits(sh, 'forward') && winogradFits(sh, 'filter') && winogradFits(sh, 'input'));
    const xs = Float32Array.from({ length: 2 * 7 * 8 }, (_, i) => Math.sin(i));
    const ws = Float32Array.from({ length: 3 * 8 * 12 }, (_, i) => Math.cos(i));
    const dys = Float32Array.from({ length: 2 * 7 * 12 }, (_, i) => Math.sin(i * 0.3));
    const bias = Float32Array.from({ length: 12 }, (_, i) => i / 8 - 0.5);
    const [x, w, dy, b] = [above(tf.tensor(xs, xShape)), above(tf.tensor(ws, fShape)), above(tf.tensor(dys, [2, 1, 7, 12])), above(tf.tensor1d(bias))];
    const y = above(tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: 1, pad: 'same', bias: b, activation: 'relu' }));
    const dx = above(tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', inputShape: xShape } as unknown as tf.NamedAttrMap) as tf.Tensor);
    assert.deepEqual(Array.from(y.dataSync()), Array.from(conv2dWinogradReference(xs, ws, bias, 'relu', sh)));
    assert.deepEqual(Array.from(dx.dataSync()), Array.from(conv2dInputGradWinogradReference(dys, ws, sh)));
    const dw = above(tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', filterShape: fShape } as unknown as tf.NamedAttrMap) as tf.Tensor);
    assert.deepEqual(Array.from(dw.dataSync()), Array.from(conv2dFilterGradWinogradReference(xs, dys, sh)));
    tf.dispose([x, w, dy, b, y, dx, dw]);
  });

  for (const chunked of [false, true]) it(`the convolutions and their gradients read and write tensors past 2 GiB${chunked ? ', a batch item at a time' : ''}`, () => {
    const { indirectionEntries: entries, stridedInputGradient } = convLimits;
    if (chunked) convLimits.indirectionEntries = 1;
    convLimits.stridedInputGradient = true; // the input gradient below is of a strided convolution
    const xShape: [number, number, number, number] = [2, 5, 6, 8];
    const fShape: [number, number, number, number] = [3, 3, 8, 12];
    const sh = convShapeOf(tf.backend_util.computeConv2DInfo(xShape, fShape, [1, 2], 1, 'same'));
    const xs = Float32Array.from({ length: 2 * 5 * 6 * 8 }, (_, i) => Math.sin(i));
    const ws = Float32Array.from({ length: 3 * 3 * 8 * 12 }, (_, i) => Math.cos(i));
    const dys = Float32Array.from({ length: 2 * 5 * 3 * 12 }, (_, i) => Math.sin(i * 0.3));
    const bias = Float32Array.from({ length: 12 }, (_, i) => i / 8 - 0.5);
    const [x, w, dy, b] = [above(tf.tensor(xs, xShape)), above(tf.tensor(ws, fShape)), above(tf.tensor(dys, [2, 5, 3, 12])), above(tf.tensor1d(bias))];
    const y = above(tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: [1, 2], pad: 'same', bias: b, activation: 'relu' }));
    const attrs = { strides: [1, 2], pad: 'same', dataFormat: 'NHWC' };
    const dw = above(tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: fShape } as unknown as tf.NamedAttrMap) as tf.Tensor);
    const dx = above(tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, { ...attrs, inputShape: xShape } as unknown as tf.NamedAttrMap) as tf.Tensor);
    assert.deepEqual(Array.from(y.dataSync()), Array.from(conv2dReference(xs, ws, bias, 'relu', sh)));
    assert.deepEqual(Array.from(dw.dataSync()), Array.from(conv2dFilterGradReference(xs, dys, sh)));
    assert.deepEqual(Array.from(dx.dataSync()), Array.from(conv2dInputGradReference(dys, ws, sh)));
    tf.dispose([x, w, dy, b, y, dw, dx]);
    convLimits.indirectionEntries = entries;
    convLimits.stridedInputGradient = stridedInputGradient;
  });
});
