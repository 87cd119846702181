/**
 * Operator variants that ONNX 1.12's backend test data does not cover (it only has the defaults
 * of some, and nothing of opsets 18 and 19), each checked against onnxruntime-web on a one-node
 * graph built here: 3-D ConvTranspose with every attribute, MaxPool's Indices output, BatchNormalization
 * in training mode, Resize (opsets 10, 18 and 19: axes, keep_aspect_ratio_policy, antialias,
 * half_pixel_symmetric), Upsample, ScatterND and ScatterElements (max and min), Einsum; and the
 * typed refusal of the variants not implemented.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-web';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { UnsupportedOperatorError } from '../src/core/errors.ts';
import { DT, f32le, fBytes, fString, fVarint, graph, model, node, tensor, valueInfo, type AttrSpec } from './helpers/onnx-build.ts';
import { seeded } from './helpers/onnx-models.ts';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';
await initBackend('wasm');

/** A value of the graph: fed as an input (float32) or stored as an initializer (any type). */
interface Value {
  name: string;
  dims: number[];
  values: number[];
  dataType?: number;
  /** Stored in the file rather than fed (shapes, indices, scales). */
  stored?: boolean;
}


/** `n` seeded values in [-1, 1). */
export function randoms(n: number, seed: number): number[] {
  const r = seeded(seed);
  return Array.from({ length: n }, () => r());
}

const size = (dims: number[]) => dims.reduce((p, d) => p * d, 1);

function storedTensor(v: Value): number[] {
  const dt = v.dataType ?? DT.FLOAT;
  if (dt === DT.FLOAT) return tensor({ name: v.name, dims: v.dims, dataType: dt, raw: f32le(v.values) });
  if (dt === DT.INT64) return tensor({ name: v.name, dims: v.dims, dataType: dt, int64Data: v.values });
  return tensor({ name: v.name, dims: v.dims, dataType: dt, int32Data: v.values });
}

/**
 * Run one node with onnxruntime-web and with the executor on the same values and compare every
 * output: equal shapes, and values within `tol` of the largest magnitude (integer outputs exactly).
 */
async function sameAsOrt(label: string, spec: { opType: string; attributes?: AttrSpec[]; inputs: (Value | undefined)[]; outputs: { name: string; dataType?: number }[]; opset: number; tol?: number }): Promise<void> {
  const inputs = spec.inputs.map((v) => v?.name ?? '');
  const fed = spec.inputs.filter((v): v is Value => !!v && !v.stored);
  const g = graph({
    nodes: [node({ opType: spec.opType, inputs, outputs: spec.outputs.map((o) => o.name), attributes: spec.attributes })],
    initializers: spec.inputs.filter((v): v is Value => !!v && !!v.stored).map(storedTensor),
    inputs: fed.map((v) => valueInfo(v.name, v.dims, v.dataType ?? DT.FLOAT)),
    outputs: spec.outputs.map((o) => valueInfoNoShape(o.name, o.dataType ?? DT.FLOAT)),
  });
  const bytes = model(g, { opset: spec.opset });
  const session = await ort.InferenceSession.create(bytes);
  const feeds: Record<string, ort.Tensor> = {};
  for (const v of fed) feeds[v.name] = new ort.Tensor('float32', Float32Array.from(v.values), v.dims);
  const want = await session.run(feeds);
  await session.release();
  const program = new OnnxProgram(bytes, { source: label });
  try {
    tf.tidy(() => {
      const got = program.run(Object.fromEntries(fed.map((v) => [v.name, tf.tensor(v.values, v.dims, 'float32')])));
      for (const o of spec.outputs) {
        const w = want[o.name];
        const h = got[o.name];
        assert.deepEqual(h.shape, Array.from(w.dims, Number), `${label}: ${o.name} shape`);
        const wv = Array.from(w.data as ArrayLike<number | bigint>, Number);
        const hv = Array.from(h.dataSync() as ArrayLike<number>, Number);
        if ((o.dataType ?? DT.FLOAT) !== DT.FLOAT) {
          assert.deepEqual(hv, wv, `${label}: ${o.name}`);
          continue;
        }
        const scale = Math.max(1e-6, ...wv.map(Math.abs));
        const worst = Math.max(0, ...hv.map((x, i) => Math.abs(x - wv[i])));
        assert.ok(worst <= (spec.tol ?? 1e-5) * scale, `${label}: ${o.name} differs by ${worst} (largest magnitude ${scale})\n ours ${hv.slice(0, 16).join(', ')}\n  ort ${wv.slice(0, 16).join(', ')}`);
      }
    });
  } finally {
    program.dispose();
  }
}

/** A ValueInfoProto with an element type and no shape (the output's shape left to each runtime). */
function valueInfoNoShape(name: string, elemType: number): number[] {
  return [...fString(1, name), ...fBytes(2, fBytes(1, fVarint(1, elemType)))];
}

const ints = (name: string, v: number[]): AttrSpec => ({ name, type: 7, ints: v });
const int = (name: string, v: number): AttrSpec => ({ name, type: 2, i: v });
const str = (name: string, v: string): AttrSpec => ({ name, type: 3, s: v });
const flt = (name: string, v: number): AttrSpec => ({ name, type: 1, f: v });
const x = (dims: number[], seed = 1, name = 'x'): Value => ({ name, dims, values: randoms(size(dims), seed) });

test('3-D ConvTranspose equals onnxruntime-web with pads, output_padding, output_shape, strides, dilations, group, auto_pad and a bias', async () => {
  const w = (dims: number[]) => ({ name: 'w', dims, values: randoms(size(dims), 7) });
  const b = { name: 'b', dims: [4], values: [0.5, -1, 2, 0.25] };
  const cases: [string, AttrSpec[], Value[]][] = [
    ['default', [], [x([1, 2, 3, 4, 3]), w([2, 3, 2, 3, 2])]],
    ['strides and pads', [ints('strides', [2, 1, 3]), ints('pads', [1, 0, 1, 0, 1, 2])], [x([2, 2, 3, 4, 3]), w([2, 3, 3, 2, 3])]],
    ['output_padding', [ints('strides', [2, 2, 3]), ints('output_padding', [1, 0, 2])], [x([1, 2, 2, 3, 2]), w([2, 3, 2, 2, 3])]],
    ['output_shape', [ints('strides', [2, 2, 2]), ints('output_shape', [6, 7, 5])], [x([1, 2, 3, 3, 2]), w([2, 3, 2, 2, 2])]],
    ['dilations', [ints('dilations', [2, 1, 3]), ints('strides', [1, 2, 1])], [x([1, 2, 3, 3, 3]), w([2, 3, 2, 2, 2])]],
    ['group 2 and a bias', [int('group', 2), ints('strides', [2, 1, 1])], [x([1, 4, 2, 3, 2]), w([4, 2, 2, 2, 2]), b]],
    ['auto_pad SAME_UPPER', [str('auto_pad', 'SAME_UPPER'), ints('strides', [2, 2, 2])], [x([1, 2, 3, 2, 3]), w([2, 3, 3, 3, 2])]],
    ['auto_pad SAME_LOWER', [str('auto_pad', 'SAME_LOWER'), ints('strides', [2, 1, 2])], [x([1, 2, 3, 2, 3]), w([2, 3, 2, 3, 2])]],
  ];
  for (const [label, attributes, inputs] of cases) {
    await sameAsOrt(`ConvTranspose 3-D ${label}`, { opType: 'ConvTranspose', attributes, inputs, outputs: [{ name: 'y' }], opset: 17 });
  }
});

test('MaxPool\'s Indices output and MaxPool over uint8 and int8 equal onnxruntime-web (pads, strides, dilations, ceil_mode, storage_order, 1-D to 3-D)', async () => {
  const both = [{ name: 'y' }, { name: 'i', dataType: DT.INT64 }];
  const cases: [string, AttrSpec[], number[]][] = [
    ['2-D pads and strides', [ints('kernel_shape', [3, 2]), ints('pads', [1, 0, 1, 1]), ints('strides', [2, 1])], [2, 3, 5, 4]],
    ['2-D storage_order 1', [ints('kernel_shape', [2, 3]), ints('strides', [1, 2]), int('storage_order', 1)], [2, 3, 5, 6]],
    ['2-D dilations and ceil_mode', [ints('kernel_shape', [2, 2]), ints('dilations', [2, 1]), ints('strides', [2, 2]), int('ceil_mode', 1)], [1, 2, 7, 6]],
    ['2-D auto_pad SAME_UPPER', [ints('kernel_shape', [3, 3]), str('auto_pad', 'SAME_UPPER'), ints('strides', [2, 2])], [1, 2, 5, 6]],
    ['1-D', [ints('kernel_shape', [3]), ints('strides', [2]), ints('pads', [1, 1])], [2, 2, 9]],
    ['3-D', [ints('kernel_shape', [2, 2, 2]), ints('strides', [1, 2, 1]), ints('pads', [0, 1, 0, 1, 0, 1])], [1, 2, 3, 4, 3]],
    ['3-D storage_order 1', [ints('kernel_shape', [2, 3, 2]), int('storage_order', 1)], [1, 2, 3, 4, 3]],
  ];
  for (const [label, attributes, dims] of cases) {
    await sameAsOrt(`MaxPool ${label}`, { opType: 'MaxPool', attributes, inputs: [x(dims, 3)], outputs: both, opset: 12 });
  }
  // Integer values with ties: the first maximum of a window wins in both.
  const bytes = (dims: number[], lo: number, hi: number) => randoms(size(dims), 5).map((v) => Math.floor(lo + ((v + 1) / 2) * (hi - lo)));
  for (const [dataType, lo, hi] of [[DT.UINT8, 0, 4], [DT.INT8, -128, 128]]) {
    const dims = [1, 2, 6, 5];
    const input: Value = { name: 'x', dims, values: bytes(dims, lo, hi), dataType, stored: true };
    await sameAsOrt(`MaxPool over ${dataType === DT.UINT8 ? 'uint8' : 'int8'}`, {
      opType: 'MaxPool', attributes: [ints('kernel_shape', [3, 2]), ints('pads', [1, 1, 1, 0]), ints('strides', [1, 2])], inputs: [input],
      outputs: [{ name: 'y', dataType }, { name: 'i', dataType: DT.INT64 }], opset: 12,
    });
  }
});

test('BatchNormalization in training mode, and with per-activation statistics, equals onnxruntime-web', async () => {
  const stats = (seed: number, shift = 0) => ({ dims: [3], values: randoms(3, seed).map((v) => v + shift) });
  await sameAsOrt('BatchNormalization training_mode', {
    opType: 'BatchNormalization', attributes: [int('training_mode', 1), flt('momentum', 0.8)],
    inputs: [x([2, 3, 4, 5]), { name: 's', ...stats(2) }, { name: 'b', ...stats(3) }, { name: 'm', ...stats(4) }, { name: 'v', ...stats(5, 1.5) }],
    outputs: [{ name: 'y' }, { name: 'rm' }, { name: 'rv' }], opset: 15,
  });
  // Opset 7's per-activation statistics (spatial 0), in inference.
  const perActivation = (name: string, seed: number, shift = 0) => ({ name, dims: [3, 2, 2], values: randoms(12, seed).map((v) => v + shift) });
  await sameAsOrt('BatchNormalization spatial 0', {
    opType: 'BatchNormalization', attributes: [int('spatial', 0)],
    inputs: [x([2, 3, 2, 2]), perActivation('s', 2), perActivation('b', 3), perActivation('m', 4), perActivation('v', 5, 1.5)],
    outputs: [{ name: 'y' }], opset: 7,
  });
});

test('Resize and Upsample equal onnxruntime-web: opsets 10 to 19, every mode, coordinate mode and nearest rounding, axes, keep_aspect_ratio_policy, antialias, any rank', async () => {
  const scales = (v: number[]): Value => ({ name: 'scales', dims: [v.length], values: v, stored: true });
  const sizes = (v: number[]): Value => ({ name: 'sizes', dims: [v.length], values: v, dataType: DT.INT64, stored: true });
  const roi = (v: number[]): Value => ({ name: 'roi', dims: [v.length], values: v, stored: true });
  const mode = (m: string) => str('mode', m);
  const coord = (m: string) => str('coordinate_transformation_mode', m);
  const x4 = x([1, 2, 5, 7], 11);
  type Case = [string, number, AttrSpec[], (Value | undefined)[]];
  const cases: Case[] = [
    ['opset 10 nearest, shrinking', 10, [mode('nearest')], [x4, scales([1, 1, 0.6, 0.45])]],
    ['opset 10 nearest, enlarging', 10, [mode('nearest')], [x4, scales([1, 1, 1.5, 2.2])]],
    ['opset 10 linear', 10, [mode('linear')], [x4, scales([1, 1, 0.7, 1.8])]],
    ['opset 13 linear half_pixel, sizes', 13, [mode('linear')], [x4, undefined, undefined, sizes([1, 2, 3, 11])]],
    // align_corners with scales whose product with the input length is whole: otherwise onnxruntime divides by the
    // output length less one, and ONNX's reference (and its test data, which the executor follows) by scale × input less one.
    ['opset 13 linear align_corners, scales', 13, [mode('linear'), coord('align_corners')], [x4, undefined, scales([1, 1, 0.4, 3])]],
    ['opset 13 cubic align_corners, sizes', 13, [mode('cubic'), coord('align_corners')], [x4, undefined, undefined, sizes([1, 2, 3, 10])]],
    ['opset 13 cubic pytorch_half_pixel', 13, [mode('cubic'), coord('pytorch_half_pixel')], [x4, undefined, scales([1, 1, 0.8, 1.3])]],
    ['opset 13 cubic exclude_outside, A -0.5', 13, [mode('cubic'), int('exclude_outside', 1), flt('cubic_coeff_a', -0.5)], [x4, undefined, scales([1, 1, 2, 0.7])]],
    ['opset 13 nearest round_prefer_ceil half_pixel', 13, [mode('nearest'), str('nearest_mode', 'round_prefer_ceil')], [x4, undefined, scales([1, 1, 1.6, 0.5])]],
    ['opset 13 nearest floor asymmetric', 13, [mode('nearest'), str('nearest_mode', 'floor'), coord('asymmetric')], [x4, undefined, scales([1, 1, 2.5, 0.8])]],
    ['opset 13 nearest ceil align_corners', 13, [mode('nearest'), str('nearest_mode', 'ceil'), coord('align_corners')], [x4, undefined, undefined, sizes([1, 2, 8, 4])]],
    ['opset 13 tf_crop_and_resize linear', 13, [mode('linear'), coord('tf_crop_and_resize'), flt('extrapolation_value', -3)], [x4, roi([0, 0, 0.2, -0.1, 1, 1, 0.9, 1.3]), undefined, sizes([1, 2, 4, 6])]],
    // (onnxruntime skips an axis whose size does not change, crop box or not: sizes that change both.)
    ['opset 13 tf_crop_and_resize nearest', 13, [mode('nearest'), coord('tf_crop_and_resize')], [x4, roi([0, 0, -0.2, 0.1, 1, 1, 0.7, 1.2]), undefined, sizes([1, 2, 4, 5])]],
    ['opset 13 linear over a rank-3 input', 13, [mode('linear')], [x([2, 3, 6], 12), undefined, scales([1, 1, 1.5])]],
    ['opset 13 linear over a rank-5 input', 13, [mode('linear')], [x([1, 2, 3, 4, 3], 13), undefined, scales([1, 1, 2, 0.5, 1.5])]],
    ['opset 18 axes and sizes', 18, [mode('linear'), ints('axes', [3, 2])], [x4, undefined, undefined, sizes([9, 3])]],
    // (onnxruntime-web 1.24 leaves the input as it is for a negative axis, which ONNX allows and the executor counts from the end.)
    ['opset 18 axes and scales, cubic', 18, [mode('cubic'), ints('axes', [3])], [x4, undefined, scales([1.6])]],
    ['opset 18 keep_aspect_ratio_policy not_larger', 18, [mode('linear'), str('keep_aspect_ratio_policy', 'not_larger'), ints('axes', [2, 3])], [x4, undefined, undefined, sizes([7, 8])]],
    ['opset 18 keep_aspect_ratio_policy not_smaller', 18, [mode('nearest'), str('keep_aspect_ratio_policy', 'not_smaller'), ints('axes', [2, 3])], [x4, undefined, undefined, sizes([3, 10])]],
    ['opset 18 antialias linear', 18, [mode('linear'), int('antialias', 1)], [x([1, 2, 9, 11], 14), undefined, scales([1, 1, 0.45, 0.6])]],
    ['opset 18 antialias cubic', 18, [mode('cubic'), int('antialias', 1)], [x([1, 2, 9, 11], 14), undefined, undefined, sizes([1, 2, 4, 5])]],
    ['opset 19 half_pixel_symmetric', 19, [mode('linear'), coord('half_pixel_symmetric')], [x4, undefined, scales([1, 1, 0.7, 1.3])]],
  ];
  for (const [label, opset, attributes, inputs] of cases) {
    const named = inputs.map((v, i) => v && { ...v, name: v.name === 'x' ? 'x' : `${v.name}${i}` });
    await sameAsOrt(`Resize ${label}`, { opType: 'Resize', attributes, inputs: named, outputs: [{ name: 'y' }], opset });
  }
  await sameAsOrt('Upsample opset 7 nearest', { opType: 'Upsample', attributes: [mode('nearest'), { name: 'scales', type: 6, floats: [1, 1, 2, 3] }], inputs: [x4], outputs: [{ name: 'y' }], opset: 7 });
  await sameAsOrt('Upsample opset 9 linear', { opType: 'Upsample', attributes: [mode('linear')], inputs: [x4, scales([1, 1, 2.5, 1.5])], outputs: [{ name: 'y' }], opset: 9 });
});

test('ScatterND and ScatterElements equal onnxruntime-web: every reduction of opset 18 with repeated indices, negative indices, slices, any axis', async () => {
  const indices = (dims: number[], v: number[]): Value => ({ name: 'i', dims, values: v, dataType: DT.INT64, stored: true });
  const reductions = ['none', 'add', 'mul', 'max', 'min'];
  for (const reduction of reductions) {
    // Rows 1 and -3 (= 1) repeat but for reduction none, where ONNX leaves repeats undefined.
    const rows = reduction === 'none' ? [1, -1, 0] : [1, -3, 0];
    await sameAsOrt(`ScatterND ${reduction}, slices`, {
      opType: 'ScatterND', attributes: [str('reduction', reduction)], opset: 18,
      inputs: [x([4, 2, 3], 21, 'data'), indices([3, 1], rows), x([3, 2, 3], 22, 'u')], outputs: [{ name: 'y' }],
    });
    await sameAsOrt(`ScatterND ${reduction}, elements`, {
      opType: 'ScatterND', attributes: [str('reduction', reduction)], opset: 18,
      inputs: [x([3, 4], 23, 'data'), indices([2, 2, 2], reduction === 'none' ? [0, 1, 2, -1, 1, 1, 0, 0] : [0, 1, 2, -1, 0, 1, 2, 3]), x([2, 2], 24, 'u')], outputs: [{ name: 'y' }],
    });
    for (const axis of [0, 1, -1]) {
      // Two updates along the axis for each other position: both aimed at index 1 (1 and -2), or, for none, at 2 and 0.
      const at = (axis + 3) % 3;
      const dims: number[] = [0, 1, 2].map((d) => (d === at ? 2 : d === (at + 1) % 3 ? 2 : 1));
      const idx = Array.from({ length: 4 }, (_, e) => {
        const along = Math.floor(e / dims.slice(at + 1).reduce((p, d) => p * d, 1)) % 2;
        return reduction === 'none' ? (along ? 0 : 2) : along ? -2 : 1;
      });
      await sameAsOrt(`ScatterElements ${reduction}, axis ${axis}`, {
        opType: 'ScatterElements', attributes: [str('reduction', reduction), int('axis', axis)], opset: 18,
        inputs: [x([3, 3, 3], 25, 'data'), indices(dims, idx), x(dims, 26, 'u')], outputs: [{ name: 'y' }],
      });
    }
  }
  await sameAsOrt('Scatter (opset 10)', { opType: 'Scatter', attributes: [int('axis', 1)], opset: 10, inputs: [x([2, 4], 27, 'data'), indices([2, 2], [3, 0, 1, 2]), x([2, 2], 28, 'u')], outputs: [{ name: 'y' }] });
});

test('Einsum equals onnxruntime-web on the equations of matMuls, attention, outer and inner products, traces, diagonals, sums, broadcast ellipses, three operands and implicit outputs', async () => {
  const cases: [string, number[][]][] = [
    ['ij,jk->ik', [[3, 4], [4, 5]]],
    ['bij,bjk->bik', [[2, 3, 4], [2, 4, 2]]],
    ['bhqd,bhkd->bhqk', [[2, 3, 4, 5], [2, 3, 6, 5]]],
    ['bhqk,bhkd->bhqd', [[1, 2, 4, 6], [1, 2, 6, 3]]],
    ['i,i', [[7], [7]]],
    ['i,j->ij', [[3], [4]]],
    ['ij->', [[3, 4]]],
    ['ij->j', [[3, 4]]],
    ['ii->i', [[4, 4]]],
    ['ii', [[4, 4]]],
    ['...ii->...i', [[2, 3, 3]]],
    ['ijk->kji', [[2, 3, 4]]],
    ['ij,ij->ij', [[3, 4], [3, 4]]],
    ['abc,cd->abd', [[2, 3, 4], [4, 5]]],
    ['ij,jk,kl->il', [[2, 3], [3, 4], [4, 2]]],
    ['ij,jk', [[3, 4], [4, 2]]],
    ['ji', [[3, 4]]],
    ['...ij,...jk->...ik', [[2, 1, 3, 4], [2, 3, 4, 2]]],
    ['b...d,bd->b...', [[2, 3, 4, 5], [2, 5]]],
    ['ijk,ik->j', [[3, 4, 5], [3, 5]]],
  ];
  for (const [equation, shapes] of cases) {
    const inputs = shapes.map((dims, i) => x(dims, 31 + i, `x${i}`));
    await sameAsOrt(`Einsum ${equation}`, { opType: 'Einsum', attributes: [str('equation', equation)], opset: 12, inputs, outputs: [{ name: 'y' }] });
  }
  const ints32 = (name: string, dims: number[], seed: number): Value => ({ name, dims, values: randoms(size(dims), seed).map((v) => Math.round(v * 50)), dataType: DT.INT32, stored: true });
  await sameAsOrt('Einsum over int32', { opType: 'Einsum', attributes: [str('equation', 'ij,jk->ik')], opset: 12, inputs: [ints32('a', [3, 4], 41), ints32('b', [4, 2], 42)], outputs: [{ name: 'y', dataType: DT.INT32 }] });
});

test('variants the executor does not implement are refused with the typed error, naming the node, the opset and the variant', () => {
  const refused = (label: string, opType: string, opset: number, attributes: AttrSpec[], inputs: (Value | undefined)[], why: RegExp) => {
    const fed = inputs.filter((v): v is Value => !!v && !v.stored);
    const g = graph({
      nodes: [node({ opType, name: 'n', inputs: inputs.map((v) => v?.name ?? ''), outputs: ['y'], attributes })],
      initializers: inputs.filter((v): v is Value => !!v && !!v.stored).map(storedTensor),
      inputs: fed.map((v) => valueInfo(v.name, v.dims)),
      outputs: [valueInfoNoShape('y', DT.FLOAT)],
    });
    const program = new OnnxProgram(model(g, { opset }), { source: label });
    try {
      assert.throws(() => tf.tidy(() => program.run(Object.fromEntries(fed.map((v) => [v.name, tf.tensor(v.values, v.dims)])))), (e: unknown) => {
        assert.ok(e instanceof UnsupportedOperatorError, `${label}: ${String(e)}`);
        assert.deepEqual([e.details.op, e.details.node, e.details.opset], [opType, 'n', opset]);
        assert.match(e.message, why, label);
        return true;
      });
    } finally {
      program.dispose();
    }
  };
  const bytes: Value = { name: 'x', dims: [1, 1, 2, 2], values: [1, 2, 3, 4], dataType: DT.UINT8, stored: true };
  const scales: Value = { name: 's', dims: [4], values: [1, 1, 2, 2], stored: true };
  const sizes: Value = { name: 'z', dims: [4], values: [1, 1, 4, 4], dataType: DT.INT64, stored: true };
  refused('linear over uint8', 'Resize', 13, [str('mode', 'linear')], [bytes, undefined, scales], /linear interpolation of int32 values/);
  refused('an unknown mode', 'Resize', 13, [str('mode', 'area')], [x([1, 1, 2, 2]), undefined, scales], /mode "area"/);
  refused('scales and sizes', 'Resize', 13, [], [x([1, 1, 2, 2]), undefined, scales, sizes], /both scales and sizes/);
  refused('max before opset 18', 'ScatterElements', 16, [str('reduction', 'max')], [x([3], 1, 'd'), { name: 'i', dims: [1], values: [0], dataType: DT.INT64, stored: true }, x([1], 2, 'u')], /reduction "max" at opset 16/);
  refused('a 4-D transposed convolution', 'ConvTranspose', 17, [], [x([1, 1, 2, 2, 2, 2]), x([1, 1, 1, 1, 1, 1], 3, 'w')], /a 4-D transposed convolution/);
});
