/**
 * LiteRT (`.tflite`) files that cost far more than their size (issue #61): many tensors naming
 * one buffer (the reader stays linear in the file; reading one big buffer over and over is
 * refused), and weight bytes laid over an operator's options table (refused as FORMAT.md §15
 * says). Memory is measured in a child process (peak RSS), never time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ModelFormatError } from '../src/core/errors.ts';
import { scanTfliteModel, TfliteWeightStore } from '../src/io/tflite/store.ts';
import { buildTflite, f32Bytes, T, type TensorSpec } from './helpers/tflite-build.ts';

const GiB_KB = 1024 * 1024;

/** A model whose input goes through RELU, with `n` constant tensors of `size` floats all on buffer 1. */
function sharedBufferModel(n: number, size: number): Uint8Array {
  const tensors: TensorSpec[] = [
    { name: 'x', shape: [1, 4], type: T.FLOAT32 },
    { name: 'y', shape: [1, 4], type: T.FLOAT32 },
    ...Array.from({ length: n }, (_, i) => ({ name: `s${i}`, shape: [size], type: T.FLOAT32, buffer: 1 })),
  ];
  return buildTflite({ tensors, buffers: [f32Bytes(new Float32Array(size))], operators: [{ op: 19, inputs: [0], outputs: [1] }], inputs: [0], outputs: [1] });
}

/** Run `ndiff ARGS` in a child with a 1 GiB heap; its exit code, output and peak RSS (kB). */
function ndiffInChild(args: string[]): { status: number | null; peakKb: number; out: string } {
  const script = `import { main } from './cli/ndiff.ts';
const code = await main(${JSON.stringify(args)}, { out: (l) => console.log(l), err: (l) => console.error(l), progress: () => {} });
console.log('PEAK', process.resourceUsage().maxRSS);
process.exit(code);`;
  const r = spawnSync(process.execPath, ['--max-old-space-size=1024', '--max-semi-space-size=16', '--conditions=neural-diff-source', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: path.resolve('.') });
  return { status: r.status, peakKb: Number(/PEAK (\d+)/.exec(r.stdout)?.[1] ?? NaN), out: (r.stdout + r.stderr).slice(0, 4000) };
}

test('tensors sharing one buffer: each record names a few of the others, not all (the reader stays linear in the file)', () => {
  const n = 2000;
  const scan = scanTfliteModel(sharedBufferModel(n, 1));
  const shared = scan.tensors.filter((t) => t.sharedWith);
  assert.equal(shared.length, n);
  // Listing every other reader for every reader held n² names: 4M here, 256M for a 1 MB file.
  const names = shared.reduce((k, t) => k + (t.sharedWith as string[]).length, 0);
  assert.ok(names <= 3 * n, `${names} names kept for ${n} tensors on one buffer`);
  assert.ok(shared.every((t) => t.sharing === n));
  const store = new TfliteWeightStore(sharedBufferModel(n, 1));
  const entry = store.list().find((e) => e.name === 's5');
  assert.match(entry?.readOnly ?? '', /shares its buffer with "s0", "s1", "s2" and 1996 other tensors/);
  assert.ok((entry?.readOnly ?? '').length < 200);
});

test('tensors that read one big buffer over and over are refused: a 40 KB file may not make the fingerprint hash 5 MB', () => {
  const bytes = sharedBufferModel(300, 4096);
  assert.throws(() => new TfliteWeightStore(bytes), (e: unknown) => e instanceof ModelFormatError && /tensors read 4915200 bytes of constant data from a file of \d+ bytes \(300 tensors read buffer 1 alone\): expected at most 4 times the file/.test(e.message));
  // Tied weights (two readers of one buffer) stay a model.
  const tied = sharedBufferModel(2, 4096);
  assert.equal(new TfliteWeightStore(tied).list().filter((e) => e.readOnly).length, 2);
});

test('a 1 MB file of 16,000 tensors on one buffer: ndiff fingerprint and ndiff train --base end within 1 GiB', { timeout: 300_000 }, async (ctx) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-tflite-bounds-'));
  try {
    const file = path.join(dir, 'shared.tflite');
    const bytes = sharedBufferModel(16_000, 1);
    assert.ok(bytes.length > 1_000_000);
    await writeFile(file, bytes);
    const fp = ndiffInChild(['fingerprint', file]);
    ctx.diagnostic(`fingerprint: exit ${fp.status}, peak RSS ${(fp.peakKb / 1024).toFixed(0)} MB`);
    assert.equal(fp.status, 0, fp.out);
    assert.match(fp.out, /^[0-9a-f]{16}$/m);
    assert.ok(fp.peakKb < GiB_KB, `peak ${fp.peakKb} kB`);
    await writeFile(path.join(dir, 'x.npy'), npyFloat32([8, 4]));
    const tr = ndiffInChild(['train', '--model-id', 'm', '--base', file, '--teacher', file, '--train', dir, '--epochs', '1', '--tune', 'off', '--backend', 'cpu', '--out', path.join(dir, 'p.ndiff')]);
    ctx.diagnostic(`train: exit ${tr.status}, peak RSS ${(tr.peakKb / 1024).toFixed(0)} MB`);
    // The model has no weight to train: a typed refusal saying so, never a crash or a tfjs error.
    assert.equal(tr.status, 2, tr.out);
    assert.match(tr.out, /has no weight the trainer can change/);
    assert.ok(tr.peakKb < GiB_KB, `peak ${tr.peakKb} kB\n${tr.out}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** A float32 .npy file of zeros with `shape`. */
function npyFloat32(shape: number[]): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')},), }`;
  while ((10 + header.length + 1) % 64) header += ' ';
  header += '\n';
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(10 + header.length + 4 * n);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  return out;
}

/** Offsets in a built file: the table at field `f` of the table at `t` (reference fields), and the field's own place. */
function fieldAt(d: DataView, t: number, f: number): number {
  const vt = t - d.getInt32(t, true);
  const o = f * 2 + 4 < d.getUint16(vt, true) ? d.getUint16(vt + 4 + 2 * f, true) : 0;
  return o ? t + o : -1;
}
const deref = (d: DataView, p: number) => p + d.getUint32(p, true);
const element = (d: DataView, vec: number, i: number) => deref(d, vec + 4 + 4 * i);

/** ADD with a fused RELU (AddOptions.fused_activation_function, field 0): x + w, w a weight of 2 floats on buffer 1. */
function addModel(): Uint8Array {
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 2], type: T.FLOAT32 },
      { name: 'w', shape: [2], type: T.FLOAT32, buffer: 1 },
      { name: 'y', shape: [1, 2], type: T.FLOAT32 },
    ],
    buffers: [f32Bytes([0.5, -0.5])],
    offsetBuffers: [1],
    operators: [{ op: 0, inputs: [0, 1], outputs: [2], options: { type: 11, fields: [{ u8: 1 }] } }],
    inputs: [0],
    outputs: [2],
  });
}

test('a weight laid over an operator\'s options table (or another part of the graph) is refused, as FORMAT.md §15 says', async () => {
  const { bufferOffsetField } = await import('./helpers/tflite-build.ts');
  const base = addModel();
  assert.equal(new TfliteWeightStore(base.slice()).weights().length, 1);
  const d = new DataView(base.buffer, base.byteOffset, base.byteLength);
  const sub = element(d, deref(d, fieldAt(d, d.getUint32(0, true), 2)), 0);
  const op = element(d, deref(d, fieldAt(d, sub, 3)), 0);
  const options = deref(d, fieldAt(d, op, 4));
  const fused = fieldAt(d, options, 0);
  assert.equal(base[fused], 1, 'the fused activation byte (RELU)');
  const outputShape = deref(d, fieldAt(d, element(d, deref(d, fieldAt(d, sub, 0)), 2), 0));
  const cases: [string, number][] = [
    ['the ADD\'s options table (its fused activation)', options],
    ['the shape vector of the activation "y"', outputShape],
    ['the operator table itself', op],
  ];
  for (const [label, at] of cases) {
    const bytes = base.slice();
    // Buffer 1 (the weight, 8 bytes) stored "past the FlatBuffer" at an offset inside the graph.
    new DataView(bytes.buffer).setBigUint64(bufferOffsetField(bytes, 1), BigInt(at), true);
    // What a payload for this weight would write: its 8 bytes, the fused activation among them for the first case.
    if (at === options) assert.ok(fused >= at && fused < at + 8, 'the weight covers the fused activation byte');
    assert.throws(() => new TfliteWeightStore(bytes), (e: unknown) => e instanceof ModelFormatError && /the data of buffer 1 \(offsets \d+-\d+\) overlaps the model's own structure/.test(e.message), label);
  }
});

/**
 * RESHAPE by its options' `new_shape` (ReshapeOptions, type 17, a vector of int32), then ADD of w
 * (a weight of 2 floats on buffer 1, stored past the FlatBuffer); `options2` puts a StableHLO
 * options table (builtin_options_2) with a vector of int64 on the ADD.
 */
function reshapeModel(options2?: { type: number; fields: { vec: 'i64'; items: number[] }[] }): Uint8Array {
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 4], type: T.FLOAT32 },
      { name: 'r', shape: [2, 2], type: T.FLOAT32 },
      { name: 'w', shape: [2], type: T.FLOAT32, buffer: 1 },
      { name: 'y', shape: [2, 2], type: T.FLOAT32 },
    ],
    buffers: [f32Bytes([0.5, -0.5])],
    offsetBuffers: [1],
    operators: [
      { op: 22, inputs: [0], outputs: [1], options: { type: 17, fields: [{ vec: 'i32', items: [2, 2] }] } },
      { op: 0, inputs: [1, 2], outputs: [3], options: { type: 11, fields: [{ u8: 0 }] }, ...(options2 ? { options2 } : {}) },
    ],
    inputs: [0],
    outputs: [3],
  });
}

test('vectors inside operators\' options tables (RESHAPE\'s new_shape, a StableHLO dimension list) are walked: a weight laid over one, or one whose offset or length leaves the file, is refused', async () => {
  const { bufferOffsetField } = await import('./helpers/tflite-build.ts');
  const overlaps = (e: unknown) => e instanceof ModelFormatError && /the data of buffer 1 \(offsets \d+-\d+\) overlaps the model's own structure/.test(e.message);
  const base = reshapeModel();
  assert.equal(new TfliteWeightStore(base.slice()).weights().length, 1);
  const d = new DataView(base.buffer, base.byteOffset, base.byteLength);
  const sub = element(d, deref(d, fieldAt(d, d.getUint32(0, true), 2)), 0);
  const reshape = element(d, deref(d, fieldAt(d, sub, 3)), 0);
  const newShapeField = fieldAt(d, deref(d, fieldAt(d, reshape, 4)), 0);
  const newShape = deref(d, newShapeField);
  assert.deepEqual([d.getUint32(newShape, true), d.getInt32(newShape + 4, true), d.getInt32(newShape + 8, true)], [2, 2, 2], 'the new_shape vector: length 2, [2, 2]');

  // The weight (8 bytes) laid over new_shape's values: a payload for it would rewrite the shape.
  const over = base.slice();
  new DataView(over.buffer).setBigUint64(bufferOffsetField(over, 1), BigInt(newShape + 4), true);
  assert.throws(() => new TfliteWeightStore(over), overlaps, 'a weight over new_shape');
  assert.throws(() => scanTfliteModel(over), overlaps);

  // new_shape's offset past the end of the file, or its length past it: refused when the file is read.
  const far = base.slice();
  new DataView(far.buffer).setUint32(newShapeField, far.length, true);
  const long = base.slice();
  new DataView(long.buffer).setUint32(newShape, 0x3fffffff, true);
  for (const [label, bytes] of [['offset', far], ['length', long]] as const) {
    assert.throws(() => new TfliteWeightStore(bytes), (e: unknown) => e instanceof ModelFormatError && /an option of operator 0 of subgraph 0/.test(e.message), label);
  }

  // builtin_options_2: StablehloTransposeOptions (type 17) and its permutation (int64), walked the same way.
  const stablehlo = reshapeModel({ type: 17, fields: [{ vec: 'i64', items: [1, 0] }] });
  assert.equal(new TfliteWeightStore(stablehlo.slice()).weights().length, 1);
  const s = new DataView(stablehlo.buffer, stablehlo.byteOffset, stablehlo.byteLength);
  const add = element(s, deref(s, fieldAt(s, element(s, deref(s, fieldAt(s, s.getUint32(0, true), 2)), 0), 3)), 1);
  const permutation = deref(s, fieldAt(s, deref(s, fieldAt(s, add, 12)), 0));
  assert.equal(s.getUint32(permutation, true), 2, 'the permutation vector: length 2');
  const over2 = stablehlo.slice();
  new DataView(over2.buffer).setBigUint64(bufferOffsetField(over2, 1), BigInt(permutation + 4), true);
  assert.throws(() => new TfliteWeightStore(over2), overlaps, 'a weight over the permutation');
});
