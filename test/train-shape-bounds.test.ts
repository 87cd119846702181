/**
 * Shapes the trainer derives from a model file (issue #61): a PAD, RESHAPE, RESIZE, transposed
 * convolution or broadcast in a `.tflite` file, and ONNX's Pad, Reshape, Resize, Upsample, Tile,
 * Expand, ConstantOfShape, Range, OneHot, Gather, MatMul, Where and element-wise broadcasts, each
 * asking for far more elements than any example holds: refused with a ModelFormatError before tfjs
 * allocates (src/engine/program/shape-bound.ts). The cases (a 1 KB `.tflite` whose PAD asks
 * for 10^8 and 2 × 10^9 elements, and the same in ONNX) run `ndiff train` in a child process whose
 * peak memory is measured.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ModelFormatError } from '../src/core/errors.ts';
import { TfliteProgram } from '../src/engine/tflite/program.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { DerivedShapeBound, MIN_ELEMENTS_PER_EXAMPLE } from '../src/engine/program/shape-bound.ts';
import { buildTflite, f32Bytes, T, type OperatorSpec, type TensorSpec } from './helpers/tflite-build.ts';
import { DT, f32le, graph, model, node, tensor, valueInfo } from './helpers/onnx-build.ts';

await tf.setBackend('cpu');

const refusal = (what: RegExp) => (e: unknown) =>
  e instanceof ModelFormatError && what.test(e.message) && /at most 16777216 elements per example/.test(e.message) && /Nothing was allocated/.test(e.message);

const i32 = (v: number[]) => new Uint8Array(Int32Array.from(v).buffer);

/** x [1, 2, 2, 1] -> OP (with constant `consts` as tensors 2, 3, ...) -> y, y -> ADD w -> z (w the one weight). */
function tfliteWith(op: number, consts: { shape: number[]; type: number; data: Uint8Array }[], inputs: (n: number) => number[], options?: OperatorSpec['options']): Uint8Array {
  const tensors: TensorSpec[] = [
    { name: 'x', shape: [1, 2, 2, 1], type: T.FLOAT32 },
    { name: 'y', shape: [1, 2, 2, 1], type: T.FLOAT32 },
    ...consts.map((c, i) => ({ name: `c${i}`, shape: c.shape, type: c.type, buffer: i + 1 })),
    { name: 'w', shape: [1], type: T.FLOAT32, buffer: consts.length + 1 },
    { name: 'z', shape: [1, 2, 2, 1], type: T.FLOAT32 },
  ];
  const w = 2 + consts.length;
  return buildTflite({
    tensors,
    buffers: [...consts.map((c) => c.data), f32Bytes([0.5])],
    operators: [{ op, inputs: inputs(2), outputs: [1], ...(options ? { options } : {}) }, { op: 0, inputs: [1, w], outputs: [w + 1], options: { type: 11, fields: [{ u8: 0 }] } }],
    inputs: [0],
    outputs: [w + 1],
  });
}

test('the bound: 2^24 elements per example, or 64 times the largest input example; the batch counts per example', () => {
  const small = DerivedShapeBound.of('m', [[8, 2, 2, 1]]);
  assert.equal(small.perExample, MIN_ELEMENTS_PER_EXAMPLE);
  assert.deepEqual(small.check([8, 4096, 4096, 1], 'pad'), [8, 4096, 4096, 1]);
  assert.throws(() => small.check([1, 8, 4096, 4096], 'pad'), refusal(/m: pad asks for a tensor of shape \[1, 8, 4096, 4096\], 134217728 elements/));
  assert.throws(() => small.check([1, -3], 'reshape'), (e: unknown) => e instanceof ModelFormatError && /expected whole, non-negative dimensions/.test(e.message));
  assert.deepEqual(small.check([-1, 4], 'reshape', true), [-1, 4]);
  assert.equal(DerivedShapeBound.of('m', [[2, 1024, 1024, 3]]).perExample, 64 * 1024 * 1024 * 3);
});

test('LiteRT: PAD, RESIZE, RESHAPE, TRANSPOSE_CONV and a broadcast ADD asking for billions of elements are refused before allocating', () => {
  const x = tf.zeros([1, 2, 2, 1]);
  const run = (bytes: Uint8Array) => tf.tidy(() => new TfliteProgram(bytes, { source: 'tiny.tflite' }).run({ x }));
  // PAD (34) of [1, 2, 2, 1] by 100,000 on each side of H and W: 4 × 10^10 elements from a 300-byte file.
  const pad = tfliteWith(34, [{ shape: [4, 2], type: T.INT32, data: i32([0, 0, 0, 100_000, 0, 100_000, 0, 0]) }], (c) => [0, c]);
  assert.throws(() => run(pad), refusal(/tiny\.tflite: operator 0 \(PAD\) asks for a tensor of shape \[1, 100002, 100002, 1\]/));
  // RESIZE_BILINEAR (23) and RESIZE_NEAREST_NEIGHBOR (97) to 100,000 × 100,000.
  for (const op of [23, 97]) assert.throws(() => run(tfliteWith(op, [{ shape: [2], type: T.INT32, data: i32([100_000, 100_000]) }], (c) => [0, c])), refusal(/\(RESIZE_(BILINEAR|NEAREST_NEIGHBOR)\) asks for a tensor of shape \[1, 100000, 100000, 1\]/));
  // RESHAPE (22) to a shape of 10^10 elements (tfjs would throw a plain Error; here a typed refusal naming the operator).
  assert.throws(() => run(tfliteWith(22, [{ shape: [4], type: T.INT32, data: i32([1, 100_000, 100_000, 1]) }], (c) => [0, c])), refusal(/\(RESHAPE\) asks for a tensor of shape \[1, 100000, 100000, 1\]/));
  // TRANSPOSE_CONV (67): output shape 1 × 100,000 × 100,000 × 1 from its first input.
  const tconv = tfliteWith(67, [{ shape: [4], type: T.INT32, data: i32([1, 100_000, 100_000, 1]) }, { shape: [1, 1, 1, 1], type: T.FLOAT32, data: f32Bytes([1]) }], (c) => [c, c + 1, 0], { type: 49, fields: [{ u8: 2 }, { i32: 1 }, { i32: 1 }] });
  assert.throws(() => run(tconv), refusal(/\(TRANSPOSE_CONV\) asks for a tensor of shape \[1, 100000, 100000, 1\]/));
  // ADD (0) of a [1, 70000] and a [70000, 1] constant: 4.9 × 10^9 elements from 560 KB.
  const n = 70_000;
  const add = tfliteWith(0, [{ shape: [1, n], type: T.FLOAT32, data: f32Bytes(new Float32Array(n)) }, { shape: [n, 1], type: T.FLOAT32, data: f32Bytes(new Float32Array(n)) }], (c) => [c, c + 1], { type: 11, fields: [{ u8: 0 }] });
  assert.throws(() => run(add), refusal(/\(ADD\) asks for a tensor of shape \[70000, 70000\]/));
  x.dispose();
});

/** An ONNX model: x [1, 2] float -> `nodes` -> y, with `initializers`. */
function onnxWith(nodes: Parameters<typeof node>[0][], initializers: Parameters<typeof tensor>[0][], opset = 17): Uint8Array {
  return model(graph({ nodes: nodes.map(node), initializers: initializers.map(tensor), inputs: [valueInfo('x', [1, 2])], outputs: [valueInfo('y', [1, 2])] }), { opset });
}
const i64 = (name: string, values: number[], dims = [values.length]) => ({ name, dims, dataType: DT.INT64, int64Data: values });
const f32 = (name: string, values: number[], dims = [values.length]) => ({ name, dims, dataType: DT.FLOAT, raw: f32le(values) });

test('ONNX: Pad, Reshape, Resize, Upsample, Tile, Expand, ConstantOfShape, Range, OneHot, Conv and MaxPool pads, Conv dilations, Gather, MatMul, Where and broadcasts asking for billions of elements are refused before allocating', () => {
  const x = tf.zeros([1, 2]);
  const big = 100_000;
  const cases: [string, Uint8Array, RegExp][] = [
    ['Pad', onnxWith([{ opType: 'Pad', inputs: ['x', 'p'], outputs: ['y'] }], [i64('p', [0, 0, big, big])]), /\(Pad\) asks for a tensor of shape \[100001, 100002\]/],
    ['Reshape', onnxWith([{ opType: 'Reshape', inputs: ['x', 's'], outputs: ['y'] }], [i64('s', [big, big])]), /\(Reshape\) asks for a tensor of shape \[100000, 100000\]/],
    ['Resize', onnxWith([{ opType: 'Resize', inputs: ['x', '', '', 's'], outputs: ['y'] }], [i64('s', [big, big])]), /\(Resize\) asks for a tensor of shape \[100000, 100000\]/],
    ['Upsample', onnxWith([{ opType: 'Upsample', inputs: ['x', 's'], outputs: ['y'] }], [f32('s', [big, big])], 9), /\(Upsample\) asks for a tensor of shape \[100000, 200000\]/],
    ['Tile', onnxWith([{ opType: 'Tile', inputs: ['x', 'r'], outputs: ['y'] }], [i64('r', [big, big])]), /\(Tile\) asks for a tensor of shape \[100000, 200000\]/],
    ['Expand', onnxWith([{ opType: 'Expand', inputs: ['x', 's'], outputs: ['y'] }], [i64('s', [big, big, 2])]), /\(Expand\) asks for a tensor of shape \[100000, 100000, 2\]/],
    ['ConstantOfShape', onnxWith([{ opType: 'ConstantOfShape', inputs: ['s'], outputs: ['y'] }], [i64('s', [big, big])]), /\(ConstantOfShape\) asks for a tensor of shape \[100000, 100000\]/],
    ['Range', onnxWith([{ opType: 'Range', inputs: ['a', 'b', 'd'], outputs: ['y'] }], [f32('a', [0], []), f32('b', [1e10], []), f32('d', [1], [])]), /\(Range\) asks for a tensor of shape \[10000000000\]/],
    ['OneHot', onnxWith([{ opType: 'OneHot', inputs: ['i', 'n', 'v'], outputs: ['y'] }], [i64('i', [0, 1, 2]), i64('n', [2e9], []), f32('v', [0, 1])]), /\(OneHot\) asks for a tensor of shape \[3, 2000000000\]/],
  ];
  for (const [label, bytes, why] of cases) {
    assert.throws(() => tf.tidy(() => new OnnxProgram(bytes, { source: 'tiny.onnx' }).run({ x })), refusal(why), label);
  }
  // Conv and MaxPool pads (the padded input is built with tf.pad) and Conv dilations (the kernel is dilated with zeros).
  const image = tf.zeros([1, 1, 2, 2]);
  const spatial = (opType: string, attributes: Parameters<typeof node>[0]['attributes'], kernel: number[]) =>
    model(graph({ nodes: [node({ opType, inputs: opType === 'Conv' ? ['x', 'w'] : ['x'], outputs: ['y'], attributes })], initializers: [tensor(f32('w', new Array(kernel[0] * kernel[1]).fill(1), [1, 1, ...kernel]))], inputs: [valueInfo('x', [1, 1, 2, 2])], outputs: [valueInfo('y', [1, 1, 2, 2])] }));
  const pads = { name: 'pads', type: 7, ints: [0, 0, big, big] };
  for (const [label, bytes, why] of [
    ['Conv pads', spatial('Conv', [pads], [1, 1]), /\(Conv\) asks for a tensor of shape \[1, 1, 100002, 100002\]/],
    ['Conv dilations', spatial('Conv', [{ name: 'dilations', type: 7, ints: [big, big] }], [2, 2]), /\(Conv\) asks for a tensor of shape \[100001, 100001, 1, 1\]/],
    ['MaxPool pads', spatial('MaxPool', [pads, { name: 'kernel_shape', type: 7, ints: [1, 1] }], [1, 1]), /\(MaxPool\) asks for a tensor of shape \[1, 1, 100002, 100002\]/],
  ] as const) {
    assert.throws(() => tf.tidy(() => new OnnxProgram(bytes, { source: 'tiny.onnx' }).run({ x: image })), refusal(why), label);
  }
  image.dispose();
  // Operands the graph is fed (a file's constants of 70,000 values are bound by the file): their
  // product or broadcast, 4.9 × 10^9 elements, is refused all the same.
  const n = 70_000;
  const fed = (nodes: Parameters<typeof node>[0][], extra: [string, number[], number][]) =>
    model(graph({ nodes: nodes.map(node), initializers: [tensor({ name: 'c', dims: [1], dataType: 9, raw: [1] })], inputs: [valueInfo('x', [1, 2]), ...extra.map(([name, dims, type]) => valueInfo(name, dims, type))], outputs: [valueInfo('y', [n, n])] }));
  const feeds = { x, a: tf.zeros([n, 1]), b: tf.zeros([1, n]), i: tf.zeros([n], 'int32') };
  const twoOperands: [string, number[], number][] = [['a', [n, 1], DT.FLOAT], ['b', [1, n], DT.FLOAT]];
  for (const op of ['MatMul', 'Add', 'Mul']) {
    assert.throws(() => tf.tidy(() => new OnnxProgram(fed([{ opType: op, inputs: ['a', 'b'], outputs: ['y'] }], twoOperands), { source: 'tiny.onnx' }).run(feeds)), refusal(new RegExp(`\\(${op}\\) asks for a tensor of shape \\[70000, 70000\\]`)), op);
  }
  assert.throws(() => tf.tidy(() => new OnnxProgram(fed([{ opType: 'Where', inputs: ['c', 'a', 'b'], outputs: ['y'] }], twoOperands), { source: 'tiny.onnx' }).run(feeds)), refusal(/\(Where\) asks for a tensor of shape \[70000, 70000\]/));
  assert.throws(() => tf.tidy(() => new OnnxProgram(fed([{ opType: 'Gather', inputs: ['b', 'i'], outputs: ['y'] }], [['b', [1, n], DT.FLOAT], ['i', [n], DT.INT32]]), { source: 'tiny.onnx' }).run(feeds)), refusal(/\(Gather\) asks for a tensor of shape \[70000, 70000\]/));
  for (const t of Object.values(feeds)) t.dispose();
});

/** Run `ndiff ARGS` in a child; its exit code, output and peak RSS (kB). */
function ndiffInChild(args: string[]): { status: number | null; peakKb: number; out: string } {
  const script = `import { main } from './cli/ndiff.ts';
const code = await main(${JSON.stringify(args)}, { out: (l) => console.log(l), err: (l) => console.error(l), progress: () => {} });
console.log('PEAK', process.resourceUsage().maxRSS);
process.exit(code);`;
  const r = spawnSync(process.execPath, ['--max-old-space-size=1024', '--max-semi-space-size=16', '--conditions=neural-diff-source', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: path.resolve('.') });
  return { status: r.status, peakKb: Number(/PEAK (\d+)/.exec(r.stdout)?.[1] ?? NaN), out: (r.stdout + r.stderr).slice(0, 4000) };
}

/** A float32 .npy file of zeros with `shape`. */
function npyFloat32(shape: number[]): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')},), }`;
  while ((10 + header.length + 1) % 64) header += ' ';
  header += '\n';
  const out = new Uint8Array(10 + header.length + 4 * shape.reduce((a, b) => a * b, 1));
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  return out;
}

test('ndiff train on a 1 KB model whose PAD asks for 10^8 or 2 × 10^9 elements (.tflite and .onnx): a typed refusal within 1 GiB', { timeout: 300_000 }, async (ctx) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-shape-bounds-'));
  try {
    await writeFile(path.join(dir, 'x.npy'), npyFloat32([4, 2, 2, 1]));
    const onnxDir = path.join(dir, 'onnx');
    await mkdir(onnxDir);
    await writeFile(path.join(onnxDir, 'x.npy'), npyFloat32([4, 2]));
    for (const [label, side] of [['10^8', 5_000], ['2 × 10^9', 22_360]] as const) {
      const tfl = path.join(dir, 'pad.tflite');
      await writeFile(tfl, tfliteWith(34, [{ shape: [4, 2], type: T.INT32, data: i32([0, 0, 0, 2 * side - 2, 0, 2 * side - 2, 0, 0]) }], (c) => [0, c]));
      const onnx = path.join(dir, 'pad.onnx');
      await writeFile(onnx, onnxWith([{ opType: 'Pad', inputs: ['x', 'p'], outputs: ['h'] }, { opType: 'Add', inputs: ['h', 'w'], outputs: ['y'] }], [i64('p', [0, 0, 0, 4 * side * side - 2]), f32('w', [0.5], [1])]));
      for (const [file, train] of [[tfl, dir], [onnx, onnxDir]]) {
        const r = ndiffInChild(['train', '--model-id', 'm', '--base', file, '--teacher', file, '--train', train, '--epochs', '1', '--tune', 'off', '--out', path.join(dir, 'p.ndiff')]);
        ctx.diagnostic(`${path.basename(file)} asking ${label}: exit ${r.status}, peak RSS ${(r.peakKb / 1024).toFixed(0)} MB`);
        assert.equal(r.status, 7, r.out);
        assert.match(r.out, /asks for a tensor of shape .*at most 16777216 elements per example/, r.out);
        assert.ok(r.peakKb < 1024 * 1024, `peak ${r.peakKb} kB`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
