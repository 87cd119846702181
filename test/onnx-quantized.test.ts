/**
 * ONNX INT8/UINT8 quantized weights stay quantized (issue #16 item 4): small models built here
 * hold an INT8 weight in raw_data and a UINT8 weight in int32_data varints, each the input of a
 * DequantizeLinear (scale as an initializer or a Constant, zero point as an initializer) feeding
 * MatMul. The store reads them as the dequantized float32 values onnxruntime computes; a diff and
 * an apply keep the dtype, the bytes' places and the file size, and onnxruntime-web runs the
 * patched file with the values the store holds; the grid clamps at its ends; per-axis
 * quantization, a weight read by something else, a payload for another grid and a changed
 * quantization are refused with the file untouched; the hashed kernel gives the same bits in
 * TypeScript and WebAssembly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-web';
import { applyPayload } from '../src/apply/index.ts';
import { BudgetError, ModelMismatchError } from '../src/core/errors.ts';
import { decodePayload } from '../src/core/format.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { affineStep, gridLevel, snapValue, type LinearQuantGrid } from '../src/core/grid.ts';
import { getHasher } from '../src/core/hasher.ts';
import { useHashKernel } from '../src/core/patch-math.ts';
import { MemoryWeightStore, type WeightStore } from '../src/core/weight-store.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { checkOnnxPair, diffOnnxModels } from '../src/diff/onnx.ts';
import { OnnxWeightStore, type OnnxTensorEntry } from '../src/io/onnx/store.ts';
import { applyToOnnxFile } from '../src/io/onnx/files.ts';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { DT, f32le, graph, model, node, tensor, valueInfo } from './helpers/onnx-build.ts';
import { rng } from './helpers/models.ts';

const hasher = await getHasher();
ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

const W_SCALE = Math.fround(0.02);
const W_ZP = -3;
const U_SCALE = Math.fround(0.01);
const U_ZP = 3;
const X = Float32Array.from({ length: 2 * 16 }, (_, i) => Math.sin(i) * 0.5);

interface Ints {
  w: number[]; // INT8 [16, 24], raw_data
  u: number[]; // UINT8 [24, 8], int32_data
  b: number[]; // FLOAT [8]
  wScale?: number;
  wZp?: number;
}

/** X [2, 16] → MatMul(X, DQ(W_q)) → MatMul(., DQ(U_q)) → Add(., B); outputs W, U and out. */
function quantModel(v: Ints): Uint8Array {
  return model(graph({
    name: 'q',
    nodes: [
      node({ opType: 'DequantizeLinear', name: 'dq_w', inputs: ['W_q', 'W_scale', 'W_zp'], outputs: ['W'] }),
      node({ opType: 'MatMul', inputs: ['X', 'W'], outputs: ['Y'] }),
      node({ opType: 'Constant', outputs: ['U_scale'], attributes: [{ name: 'value_float', type: 1, f: U_SCALE }] }),
      node({ opType: 'DequantizeLinear', name: 'dq_u', inputs: ['U_q', 'U_scale', 'U_zp'], outputs: ['U'] }),
      node({ opType: 'MatMul', inputs: ['Y', 'U'], outputs: ['Z'] }),
      node({ opType: 'Add', inputs: ['Z', 'B'], outputs: ['out'] }),
    ],
    initializers: [
      tensor({ name: 'W_q', dims: [16, 24], dataType: DT.INT8, raw: v.w.map((x) => x & 0xff) }),
      tensor({ name: 'W_scale', dims: [], dataType: DT.FLOAT, raw: f32le([v.wScale ?? W_SCALE]) }),
      tensor({ name: 'W_zp', dims: [], dataType: DT.INT8, raw: [(v.wZp ?? W_ZP) & 0xff] }),
      tensor({ name: 'U_q', dims: [24, 8], dataType: DT.UINT8, int32Data: v.u }),
      tensor({ name: 'U_zp', dims: [], dataType: DT.UINT8, int32Data: [U_ZP] }),
      tensor({ name: 'B', dims: [8], dataType: DT.FLOAT, raw: f32le(v.b) }),
    ],
    inputs: [valueInfo('X', [2, 16])],
    outputs: [valueInfo('W', [16, 24]), valueInfo('U', [24, 8]), valueInfo('out', [2, 8])],
  }));
}

/** The base and a retrained target: 40% of W moved up to 20 steps (clamped), some of U (keeping each varint's length), one bias. */
function versions(): { base: Ints; target: Ints } {
  const r = rng(16);
  const w = Array.from({ length: 16 * 24 }, () => Math.floor(r() * 256) - 128);
  const u = Array.from({ length: 24 * 8 }, () => Math.floor(r() * 256));
  w.splice(0, 4, -128, 127, W_ZP, 0);
  const b = [0.5, -0.25, 0.125, 0, 1, -1, 0.75, 2];
  const tw = w.map((q) => (r() < 0.4 ? Math.max(-128, Math.min(127, q + Math.floor(r() * 41) - 20)) : q));
  const tu = u.map((q) => (r() < 0.3 ? (q < 128 ? Math.floor(r() * 128) : 128 + Math.floor(r() * 128)) : q));
  return { base: { w, u, b }, target: { w: tw, u: tu, b: b.map((x, i) => (i === 2 ? 0.375 : x)) } };
}

function store(bytes: Uint8Array): OnnxWeightStore {
  return new OnnxWeightStore(bytes.slice(), { source: 'q.onnx' });
}

async function run(bytes: Uint8Array): Promise<{ W: Float32Array; U: Float32Array; out: Float32Array }> {
  const s = await ort.InferenceSession.create(bytes);
  const r = await s.run({ X: new ort.Tensor('float32', X, [2, 16]) });
  await s.release();
  return { W: r.W.data as Float32Array, U: r.U.data as Float32Array, out: r.out.data as Float32Array };
}

function bits(a: Float32Array): number[] {
  return Array.from(new Uint32Array(a.slice().buffer));
}

/** The ints stored in the file, read back through a fresh store's grid. */
function storedInts(s: OnnxWeightStore, name: string): number[] {
  const g = s.grid(name) as LinearQuantGrid;
  return Array.from(s.read(name), (v) => gridLevel(v, g));
}

/** out = (X W) U + B in float64 from the store's values (onnxruntime may fuse DequantizeLinear into the MatMul). */
function reference(s: OnnxWeightStore): Float32Array {
  const [w, u, b] = [s.read('W_q'), s.read('U_q'), s.read('B')];
  const out = new Float32Array(16);
  for (let i = 0; i < 2; i++) {
    const y = Array.from({ length: 24 }, (_, j) => { let a = 0; for (let k = 0; k < 16; k++) a += X[i * 16 + k] * w[k * 24 + j]; return a; });
    for (let j = 0; j < 8; j++) { let a = b[j]; for (let k = 0; k < 24; k++) a += y[k] * u[k * 8 + j]; out[i * 8 + j] = a; }
  }
  return out;
}

function close(a: Float32Array, b: Float32Array, tol: number, what: string): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol * (1 + Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

/** A writable float32 copy of every tensor (for payloads the diff tools would never make). */
function everythingWritable(s: WeightStore): MemoryWeightStore {
  return new MemoryWeightStore(s.list().map((t) => [t.name, { shape: [...t.shape], data: (s.read?.(t.name) ?? s.values(t.name)).slice() }] as [string, { shape: number[]; data: Float32Array }]));
}

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'nd-onnx-q-'));
}

test('the qint8/quint8 grids round like QuantizeLinear and dequantize like onnxruntime: ties to even on x / scale, clamped, +0 at the zero point', () => {
  const qi8: LinearQuantGrid = { dtype: 'qint8', scale: 0.5, zeroPoint: -3 };
  const qu8: LinearQuantGrid = { dtype: 'quint8', scale: 0.25, zeroPoint: 3 };
  assert.equal(snapValue(0.25, qi8), 0, '0.5 steps: ties to even → 0');
  assert.equal(snapValue(0.75, qi8), 1, '1.5 steps → 2 steps');
  assert.equal(gridLevel(0.75, qi8), -1);
  assert.ok(Object.is(snapValue(-0.1, qi8), 0), 'the zero point is +0, never -0');
  assert.equal(snapValue(1000, qi8), (127 + 3) * 0.5, 'clamped at q = 127');
  assert.equal(snapValue(-1000, qi8), (-128 + 3) * 0.5, 'clamped at q = -128');
  assert.equal(gridLevel(-1000, qi8), -128);
  assert.equal(snapValue(4.5 * 0.25, qu8), 4 * 0.25, 'x / scale = 4.5 → 4 (q = 7), not q + 0.5 = 7.5 → 8');
  assert.equal(gridLevel(-5, qu8), 0);
  assert.equal(snapValue(-5, qu8), -3 * 0.25);
  assert.equal(affineStep(100, qu8), 252, 'q - zp at q = 255');
  // fround((q - zp) x scale) is onnxruntime's float32 multiply: one rounding of an exact product.
  const g: LinearQuantGrid = { dtype: 'qint8', scale: W_SCALE, zeroPoint: W_ZP };
  for (let q = -128; q <= 127; q++) {
    const v = Math.fround((q - W_ZP) * W_SCALE);
    assert.ok(Object.is(snapValue(v, g), v) && gridLevel(v, g) === q, `q = ${q}`);
    assert.equal(v, Math.fround(Math.fround(q - W_ZP) * W_SCALE));
  }
});

test('reading: INT8 (raw_data) and UINT8 (int32_data) weights of DequantizeLinear nodes are patchable on their grid, with the values onnxruntime dequantizes; scales and zero points are read-only', async () => {
  const { base } = versions();
  const bytes = quantModel(base);
  const s = store(bytes);
  const byName = new Map(s.list().map((e) => [e.name, e] as const));
  assert.deepEqual(s.weights().map((e) => e.name).sort(), ['B', 'U_q', 'W_q']);
  const w = byName.get('W_q') as OnnxTensorEntry;
  assert.equal(w.dtype, 'INT8');
  assert.deepEqual(w.quantization, { dtype: 'qint8', scale: W_SCALE, zeroPoint: W_ZP });
  assert.deepEqual(s.grid('U_q'), { dtype: 'quint8', scale: U_SCALE, zeroPoint: U_ZP });
  assert.equal(s.grid('W_scale'), undefined);
  for (const [name, says] of [['W_scale', /scale of DequantizeLinear node "dq_w"/], ['W_zp', /zero point of DequantizeLinear node "dq_w"/], ['U_scale', /scale of DequantizeLinear node "dq_u"/], ['U_zp', /zero point/]] as const) {
    const e = byName.get(name) as OnnxTensorEntry;
    assert.equal(e.patchable, false, name);
    assert.match(e.readOnly ?? '', says);
  }
  assert.deepEqual(storedInts(s, 'W_q'), base.w);
  assert.deepEqual(storedInts(s, 'U_q'), base.u);
  const ran = await run(bytes);
  assert.deepEqual(bits(s.read('W_q')), bits(ran.W), 'W: the dequantized values, bit for bit');
  assert.deepEqual(bits(s.read('U_q')), bits(ran.U), 'U: the dequantized values, bit for bit');
  close(ran.out, reference(s), 1e-5, 'out');
  // Budgets are a percentage of the model as stored: 1 byte per int8/uint8 weight.
  const stored = s.weights().reduce((n, e) => n + (e.dtype === 'FLOAT' ? 4 : 1) * e.shape.reduce((a, b) => a * b, 1), 0);
  assert.equal(stored, 16 * 24 + 24 * 8 + 4 * 8);
});

test('diff + apply within a budget: the payload carries the grids, the file keeps its dtypes, offsets and size, and onnxruntime-web runs the values the store holds', async () => {
  const { base, target } = versions();
  const [b, t] = [quantModel(base), quantModel(target)];
  const res = diffOnnxModels(hasher, store(b), store(t), { budgetBytes: 600, modelId: 'q' });
  assert.ok(res.bytes.length <= 600);
  const grids = new Map(res.payload.patches.map((p) => [p.name, p.grid] as const));
  assert.deepEqual(grids.get('W_q'), { dtype: 'qint8', scale: W_SCALE, zeroPoint: W_ZP });
  assert.equal(res.payload.header.version, 2);
  const s = store(b);
  assert.equal((await applyPayload(s, res.bytes, { hasher })).status, 'applied');
  const after = s.modelBytes();
  assert.equal(after.length, b.length, 'same size');
  // Only value bytes changed: the store reopens with the same frame, dtypes and grids.
  const reopened = store(after);
  assert.deepEqual(reopened.list().map((e) => [e.name, e.dtype, e.patchable]), store(b).list().map((e) => [e.name, e.dtype, e.patchable]));
  assert.deepEqual(bits(reopened.read('onnx:frame')), bits(store(b).read('onnx:frame')));
  assert.equal(fingerprintStore(hasher, reopened).fingerprint, res.payload.header.targetFingerprint);
  const ran = await run(after);
  assert.deepEqual(bits(ran.W), bits(reopened.read('W_q')));
  assert.deepEqual(bits(ran.U), bits(reopened.read('U_q')));
  close(ran.out, reference(reopened), 1e-5, 'out');
  // Closer to the target than the base was.
  const err = (x: Float32Array, y: Float32Array) => x.reduce((e, v, i) => e + (v - y[i]) ** 2, 0);
  const want = store(t).read('W_q');
  assert.ok(err(reopened.read('W_q'), want) < err(store(b).read('W_q'), want) / 2);
});

test('lowbit within a budget on int8 tensors: the changes stay on the grid, and a value the file cannot hold at its offsets is refused at diff time, not on the device', async () => {
  const { base, target } = versions();
  const [b, t] = [quantModel(base), quantModel(target)];
  // U_q is stored as int32_data varints: lowbit moves every value, and one needs a longer varint.
  assert.throws(() => diffOnnxModels(hasher, store(b), store(t), { budgetBytes: 600, modelId: 'q', method: 'lowbit' }), (e: unknown) => e instanceof BudgetError && /base file cannot hold at its byte offsets, so devices would refuse it: tensor "U_q" .* needs a 2-byte varint/.test(e.message));
  // The same update with U unchanged: W's changes land on its grid, the file keeps dtypes and size.
  const [b2, t2] = [quantModel(base), quantModel({ ...target, u: base.u })];
  const res = diffOnnxModels(hasher, store(b2), store(t2), { budgetBytes: 600, modelId: 'q', method: 'lowbit' });
  assert.ok(res.bytes.length <= 600);
  assert.equal(res.payload.header.method, 'lowbit');
  const s = store(b2);
  assert.equal((await applyPayload(s, res.bytes, { hasher })).status, 'applied');
  const after = s.modelBytes();
  assert.equal(after.length, b2.length, 'same size');
  const reopened = store(after);
  assert.deepEqual(reopened.list().map((e) => [e.name, e.dtype, e.patchable]), store(b2).list().map((e) => [e.name, e.dtype, e.patchable]));
  assert.equal(fingerprintStore(hasher, reopened).fingerprint, res.payload.header.targetFingerprint);
  const ran = await run(after);
  assert.deepEqual(bits(ran.W), bits(reopened.read('W_q')));
  close(ran.out, reference(reopened), 1e-5, 'out');
  const err = (x: Float32Array, y: Float32Array) => x.reduce((e, v, i) => e + (v - y[i]) ** 2, 0);
  const want = store(t2).read('W_q');
  assert.ok(err(reopened.read('W_q'), want) < err(store(b2).read('W_q'), want), 'closer to the target');
});

test('--budget all (mode all): whole grid steps (i8), and the patched file is the target, byte for byte; onnxruntime agrees', async () => {
  const { base, target } = versions();
  const [b, t] = [quantModel(base), quantModel(target)];
  const res = diffOnnxModels(hasher, store(b), store(t), { mode: 'all', budgetBytes: 0, modelId: 'q' });
  const codecs = new Map(res.payload.patches.map((p) => [p.name, p.codec] as const));
  assert.equal(codecs.get('W_q'), 'i8');
  assert.equal(codecs.get('U_q'), 'i8');
  assert.equal(codecs.get('B'), 'x');
  const s = store(b);
  await applyPayload(s, res.bytes, { hasher });
  assert.deepEqual(s.modelBytes(), t, 'the target file, bit for bit');
  const [got, want] = [await run(s.modelBytes()), await run(t)];
  assert.deepEqual(bits(got.out), bits(want.out));
});

test('clamping at the grid\'s ends: the stored integers stop at -128/127 and 0/255, and onnxruntime reads them so', async () => {
  const { base } = versions();
  const b = quantModel(base);
  const s0 = store(b);
  // Position 0 holds -128, 1 holds 127; push them and others past the ends.
  const specs: PatchSpec[] = [
    { kind: 'sparse', name: 'W_q', positions: Uint32Array.of(0, 1, 5, 6), values: Float32Array.of(-3, 3, 100 * W_SCALE, -100 * W_SCALE), codec: 'f32' },
    // int32_data: up from the 2-byte varints (128..255), down from the 1-byte ones (0..127).
    { kind: 'dense', name: 'U_q', values: Float32Array.from(base.u, (q) => (q >= 128 ? 5 : -5)), codec: 'f16' },
  ];
  const built = buildPayload(hasher, s0, specs, { method: 'topk', modelId: 'q' });
  const s = store(b);
  await applyPayload(s, built.bytes, { hasher });
  const w = storedInts(store(s.modelBytes()), 'W_q');
  assert.deepEqual(w.slice(0, 2), [-128, 127]);
  assert.equal(w[5], Math.max(-128, Math.min(127, base.w[5] + 100)));
  assert.equal(w[6], Math.max(-128, Math.min(127, base.w[6] - 100)));
  assert.deepEqual(storedInts(store(s.modelBytes()), 'U_q'), base.u.map((q) => (q >= 128 ? 255 : 0)));
  const ran = await run(s.modelBytes());
  assert.deepEqual(bits(ran.W), bits(store(s.modelBytes()).read('W_q')));
  assert.deepEqual(Array.from(ran.U), base.u.map((q) => Math.fround(((q >= 128 ? 255 : 0) - U_ZP) * U_SCALE)));
});

test('int32_data: a new integer is written in the length of the varint it replaces (padded), which onnxruntime reads; one that needs a longer varint is refused, nothing written', async () => {
  const { base } = versions();
  const u = base.u.slice();
  u[0] = 5; // 1-byte varint
  u[1] = 200; // 2-byte varint
  const b = quantModel({ ...base, u });
  // 200 → 7 fits its 2 bytes (written 87 00); 5 → 100 fits its 1 byte.
  const ok = buildPayload(hasher, store(b), [{ kind: 'sparse', name: 'U_q', positions: Uint32Array.of(0, 1), values: Float32Array.of(95 * U_SCALE, -193 * U_SCALE), codec: 'f32' }], { method: 'topk', modelId: 'q' });
  const s = store(b);
  await applyPayload(s, ok.bytes, { hasher });
  assert.equal(s.modelBytes().length, b.length);
  assert.deepEqual(storedInts(store(s.modelBytes()), 'U_q').slice(0, 2), [100, 7]);
  const ran = await run(s.modelBytes());
  assert.deepEqual(bits(ran.U), bits(store(s.modelBytes()).read('U_q')), 'onnxruntime reads the padded varint as 7');
  // 5 → 130 needs 2 bytes where the file has 1: refused at commit, the model unchanged.
  const long = buildPayload(hasher, store(b), [{ kind: 'sparse', name: 'U_q', positions: Uint32Array.of(0), values: Float32Array.of(125 * U_SCALE), codec: 'f32' }], { method: 'topk', modelId: 'q' });
  const s2 = store(b);
  await assert.rejects(applyPayload(s2, long.bytes, { hasher }), (e: unknown) => e instanceof ModelMismatchError && /int32_data varints, and the new value at position 0 \(130\) needs a 2-byte varint where the file has 1/.test(e.message) && /raw_data/.test(e.message));
  assert.deepEqual(s2.modelBytes(), b);
  assert.deepEqual(bits(s2.read('U_q')), bits(store(b).read('U_q')), 'values restored');
});

test('a payload whose grid is not the file\'s (another scale) is refused before anything is written, on disk too; one without a grid that leaves a value off it is refused at commit', async () => {
  const { base } = versions();
  const b = quantModel(base);
  const other = quantModel({ ...base, wScale: Math.fround(0.021) });
  const foreign = buildPayload(hasher, store(other), [{ kind: 'sparse', name: 'W_q', positions: Uint32Array.of(3), values: Float32Array.of(2 * 0.021), codec: 'f32' }], { method: 'topk', modelId: 'q' });
  assert.equal(decodePayload(foreign.bytes).patches[0].grid?.dtype, 'qint8');
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'q.onnx');
    await writeFile(file, b);
    await assert.rejects(applyToOnnxFile(file, foreign.bytes, { state: null }), (e: unknown) => e instanceof ModelMismatchError && /stored as qint8 \(scale 0\.019999999552965164, zero point -3\) in this model but the payload rounds it onto qint8 \(scale 0\.020999999716877937, zero point -3\)/.test(e.message));
    assert.deepEqual(new Uint8Array(await readFile(file)), b, 'untouched, byte for byte');
    // Without the grid (store: float32), the sum is not on the grid: the ONNX store will not store it.
    const off = buildPayload(hasher, store(b), [{ kind: 'sparse', name: 'W_q', positions: Uint32Array.of(3), values: Float32Array.of(0.3 * W_SCALE), codec: 'f32', grid: null }], { method: 'topk', modelId: 'q' });
    assert.equal(decodePayload(off.bytes).header.version, 1);
    await assert.rejects(applyToOnnxFile(file, off.bytes, { state: null }), (e: unknown) => e instanceof ModelMismatchError && /is INT8 quantized as qint8 .* position 3 .* is not on that grid/.test(e.message));
    assert.deepEqual(new Uint8Array(await readFile(file)), b, 'untouched, byte for byte');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the diff refuses a target whose quantization changed (scale, zero point), and --store float32 leaving values off the grid', () => {
  const { base, target } = versions();
  const b = store(quantModel(base));
  assert.throws(
    () => diffOnnxModels(hasher, b, store(quantModel({ ...target, wScale: Math.fround(0.025) })), { budgetBytes: 600 }),
    (e: unknown) => e instanceof ModelMismatchError && e.message === 'the quantization parameters of "W_q" changed (scale 0.019999999552965164 → 0.02500000037252903): a payload cannot move a grid; fetch the full model',
  );
  assert.throws(() => checkOnnxPair(b, store(quantModel({ ...target, wZp: 4 }))), (e: unknown) => e instanceof ModelMismatchError && /quantization parameters of "W_q" changed \(zero point -3 → 4\)/.test(e.message));
  assert.throws(() => diffOnnxModels(hasher, b, store(quantModel(target)), { budgetBytes: 600, store: 'float32', codec: 'f16' }), (e: unknown) => e instanceof BudgetError && /off that grid/.test(e.message));
});

/** A model of the cases that stay read-only. */
function refusals(): Uint8Array {
  return model(graph({
    name: 'r',
    nodes: [
      node({ opType: 'DequantizeLinear', name: 'per_axis', inputs: ['P_q', 'P_scale', 'P_zp'], outputs: ['P'], attributes: [{ name: 'axis', type: 2, i: 1 }] }),
      node({ opType: 'DequantizeLinear', name: 'dq_a', inputs: ['S_q', 'S_scale_a'], outputs: ['Sa'] }),
      node({ opType: 'DequantizeLinear', name: 'dq_b', inputs: ['S_q', 'S_scale_b'], outputs: ['Sb'] }),
      node({ opType: 'MatMulInteger', name: 'mmi', inputs: ['A8', 'M_q'], outputs: ['Mo'] }),
      node({ opType: 'DequantizeLinear', name: 'dq_ok', inputs: ['K_q', 'S_scale_a'], outputs: ['K'] }),
      node({ opType: 'DequantizeLinear', name: 'dq_t', inputs: ['T_q', 'T_scale'], outputs: ['T'] }),
      node({ opType: 'Mul', name: 'twice', inputs: ['T_scale', 'T_scale'], outputs: ['T2'] }),
    ],
    initializers: [
      tensor({ name: 'P_q', dims: [3, 4], dataType: DT.INT8, raw: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] }),
      tensor({ name: 'P_scale', dims: [4], dataType: DT.FLOAT, raw: f32le([0.1, 0.2, 0.3, 0.4]) }),
      tensor({ name: 'P_zp', dims: [4], dataType: DT.INT8, raw: [0, 0, 0, 0] }),
      tensor({ name: 'S_q', dims: [2], dataType: DT.INT8, raw: [1, 2] }),
      tensor({ name: 'S_scale_a', dims: [], dataType: DT.FLOAT, raw: f32le([0.5]) }),
      tensor({ name: 'S_scale_b', dims: [], dataType: DT.FLOAT, raw: f32le([0.25]) }),
      tensor({ name: 'M_q', dims: [2, 2], dataType: DT.INT8, raw: [1, 2, 3, 4] }),
      tensor({ name: 'K_q', dims: [2], dataType: DT.INT8, raw: [3, 4] }),
      tensor({ name: 'L_q', dims: [2], dataType: DT.UINT8, raw: [3, 4] }),
      tensor({ name: 'T_q', dims: [2], dataType: DT.UINT8, raw: [3, 4] }),
      tensor({ name: 'T_scale', dims: [], dataType: DT.FLOAT, raw: f32le([0.5]) }),
    ],
    inputs: [valueInfo('A8', [2, 2], DT.INT8)],
    outputs: [valueInfo('P', [3, 4]), valueInfo('Sa', [2]), valueInfo('Sb', [2]), valueInfo('Mo', [2, 2], DT.INT32), valueInfo('K', [2]), valueInfo('T', [2])],
  }));
}

test('per-axis quantization, a weight feeding DequantizeLinear nodes with different scales, one read by another op or by nothing: read-only, and a payload naming one is refused with why, the file untouched', async () => {
  const bytes = refusals();
  const s = new OnnxWeightStore(bytes.slice(), { source: 'r.onnx' });
  const why = new Map(s.list().map((e) => [e.name, e.readOnly] as const));
  assert.deepEqual(s.weights().map((e) => e.name).sort(), ['K_q', 'T_q'], 'the per-tensor ones only');
  assert.match(why.get('P_q') ?? '', /quantized per axis or per block: the scale of DequantizeLinear node "per_axis" has shape \[4\]/);
  assert.match(why.get('S_q') ?? '', /different quantization \(qint8 \(scale 0\.5, zero point 0\) and qint8 \(scale 0\.25, zero point 0\)\)/);
  assert.match(why.get('M_q') ?? '', /input 1 of MatMulInteger node "mmi"/);
  assert.match(why.get('L_q') ?? '', /no node reads it/);
  assert.match(why.get('T_scale') ?? '', /scale of DequantizeLinear node "dq_t"/, 'a scale another node also reads stays read-only');
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'r.onnx');
    await writeFile(file, bytes);
    for (const [name, says] of [['P_q', /is INT8 and read-only: it is quantized per axis/], ['S_q', /different quantization/], ['M_q', /MatMulInteger/], ['L_q', /is UINT8 and read-only/], ['P_scale', /is FLOAT and read-only: it is the scale of DequantizeLinear node "per_axis" \(input 1\), and quantization parameters are never patched/]] as const) {
      const built = buildPayload(hasher, everythingWritable(s), [{ kind: 'sparse', name, positions: Uint32Array.of(0), values: Float32Array.of(1), codec: 'f32', grid: null }], { method: 'topk', modelId: 'r' });
      await assert.rejects(applyToOnnxFile(file, built.bytes, { state: null }), (e: unknown) => e instanceof ModelMismatchError && says.test(e.message) && /fetch the full model/.test(e.message), name);
      assert.deepEqual(new Uint8Array(await readFile(file)), bytes, `${name}: untouched, byte for byte`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  // A retrained per-axis weight: the diff says it is read-only and why.
  const t = new OnnxWeightStore(bytes.slice());
  const p = t.list().find((e) => e.name === 'P_q') as OnnxTensorEntry;
  const moved = bytes.slice();
  const at = moved.findIndex((_, i) => moved.subarray(i, i + 12).every((x, j) => x === j + 1));
  moved[at] = 9;
  assert.throws(() => checkOnnxPair(t, new OnnxWeightStore(moved)), (e: unknown) => e instanceof ModelMismatchError && /the INT8 tensor "P_q" differs .* read-only \(it is quantized per axis/.test(e.message));
  assert.equal(p.patchable, false);
});

test('hashed patches on a qint8 grid: the same bits with the TypeScript and the WebAssembly kernel (the kernel adds, the grid rounds in TypeScript)', async () => {
  const { base } = versions();
  const b = quantModel(base);
  const built = buildPayload(hasher, store(b), [{ kind: 'hash', name: 'W_q', seed: 12345, signed: true, buckets: Float32Array.of(3 * W_SCALE, -2.5 * W_SCALE, 0.4 * W_SCALE, 40 * W_SCALE), codec: 'f32' }], { method: 'hash', modelId: 'q' });
  const out: Uint8Array[] = [];
  for (const kernel of ['js', 'wasm'] as const) {
    const was = useHashKernel(kernel);
    try {
      const s = store(b);
      await applyPayload(s, built.bytes, { hasher });
      out.push(s.modelBytes().slice());
    } finally {
      useHashKernel(was);
    }
  }
  assert.deepEqual(out[0], out[1]);
  assert.notDeepEqual(out[0], b);
  const ran = await run(out[0]);
  assert.deepEqual(bits(ran.W), bits(store(out[0]).read('W_q')));
});

test('ndiff diff / apply on int8 .onnx files: budgets are a percentage of the int8 bytes, --budget all ends at the target, a changed scale takes a structural payload', async () => {
  const dir = await tempDir();
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const ndiff = async (...argv: string[]) => {
    stdout.length = 0;
    stderr.length = 0;
    return main(argv, io);
  };
  try {
    const { base, target } = versions();
    const [b, t] = [path.join(dir, 'a.onnx'), path.join(dir, 'b.onnx')];
    await writeFile(b, quantModel(base));
    await writeFile(t, quantModel(target));
    assert.equal(await ndiff('diff', '--model-id', 'q', '--base', b, '--target', t, '--budget', '100%', '--out', path.join(dir, 'p.ndiff')), 0, stderr.join('\n') + stdout.join('\n'));
    assert.match(stderr.join('\n'), /608 B as stored; budget 608 B \(100\.00% of the model as stored\)/);
    const copy = path.join(dir, 'device.onnx');
    await writeFile(copy, quantModel(base));
    assert.equal(await ndiff('apply', '--model', copy, '--patch', path.join(dir, 'p.ndiff')), 0, stderr.join('\n'));
    assert.equal((await stat(copy)).size, (await stat(b)).size);
    assert.equal(await ndiff('diff', '--model-id', 'q', '--base', b, '--target', t, '--budget', 'all', '--out', path.join(dir, 'all.ndiff'), '--sequence', '2'), 0, stderr.join('\n'));
    assert.match(stderr.join('\n'), /2 quantized tensor\(s\) in whole grid steps \(codec i8\); XOR masks of their bits for 1 tensor\(s\) as codec x; format v2/);
    await writeFile(copy, quantModel(base)); // the device back at the base (its sequence record stays: 2 > 1)
    assert.equal(await ndiff('apply', '--model', copy, '--patch', path.join(dir, 'all.ndiff')), 0, stderr.join('\n'));
    assert.deepEqual(new Uint8Array(await readFile(copy)), new Uint8Array(await readFile(t)), 'the target, byte for byte');
    await writeFile(t, quantModel({ ...target, wScale: Math.fround(0.03) }));
    // A value payload cannot move a grid: the scale is part of the file's frame, so ndiff diff
    // writes a structural payload (format v7), and the device rebuilds the file to the target.
    assert.equal(await ndiff('diff', '--model-id', 'q', '--base', b, '--target', t, '--budget', 'all', '--out', path.join(dir, 'x.ndiff'), '--sequence', '3'), 0, stderr.join('\n'));
    assert.match(stdout.join('\n'), /a structural payload \(format v7/);
    await writeFile(copy, quantModel(base));
    assert.equal(await ndiff('apply', '--model', copy, '--patch', path.join(dir, 'x.ndiff')), 0, stderr.join('\n'));
    assert.deepEqual(new Uint8Array(await readFile(copy)), new Uint8Array(await readFile(t)), 'the target with its new scale, byte for byte');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
