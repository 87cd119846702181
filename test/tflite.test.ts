/**
 * LiteRT (`.tflite`) models: the pure store over a file's bytes (float32, float16, int8 per
 * tensor and per channel, offset buffers, read-only tensors, the frame), hostile files refused
 * with the file untouched, and the crash-safe file apply and CLI shared with `.onnx` files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ModelFormatError, ModelMismatchError, BaseMismatchError } from '../src/core/errors.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { applyPayload } from '../src/apply/index.ts';
import { diffOnnxModels } from '../src/diff/onnx.ts';
import { TFLITE_FRAME, TfliteWeightStore } from '../src/io/tflite/store.ts';
import { applyToTfliteFile, openTfliteFile, recoverTfliteFile } from '../src/io/tflite/files.ts';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { buildTflite, f32Bytes, T, type TfliteSpec } from './helpers/tflite-build.ts';

const hasher = await getHasher();

function halfBytes(bits: number[]): Uint8Array {
  const out = new Uint8Array(2 * bits.length);
  const d = new DataView(out.buffer);
  bits.forEach((b, i) => d.setUint16(2 * i, b, true));
  return out;
}

/** A model with one tensor of each kind the store tells apart. */
function mixedSpec(): TfliteSpec {
  return {
    tensors: [
      { name: 'input', shape: [1, 3], type: T.FLOAT32 },
      { name: 'dense/kernel', shape: [2, 3], type: T.FLOAT32, buffer: 1 },
      { name: 'dense/bias', shape: [2], type: T.FLOAT32, buffer: 2 },
      { name: 'conv/half', shape: [4], type: T.FLOAT16, buffer: 3 }, // 1, 2, -0.5, 0
      { name: 'q/tensor', shape: [4], type: T.INT8, buffer: 4, quant: { scale: [0.5], zeroPoint: [1] } },
      { name: 'q/channel', shape: [2, 3], type: T.INT8, buffer: 5, quant: { scale: [0.25, 2], zeroPoint: [0, -1], dimension: 0 } },
      { name: 'shape', shape: [2], type: T.INT32, buffer: 6 },
      { name: 'raw/int8', shape: [2], type: T.INT8, buffer: 7 },
      { name: 'output', shape: [1, 2], type: T.FLOAT32 },
    ],
    buffers: [
      f32Bytes([1, 2, 3, 4, 5, 6]),
      f32Bytes([0.5, -0.5]),
      halfBytes([0x3c00, 0x4000, 0xb800, 0x0000]),
      Int8Array.from([1, 3, -1, 127]).reduce((u, x, i) => ((u[i] = x & 0xff), u), new Uint8Array(4)),
      Int8Array.from([4, 8, -4, 0, 1, 2]).reduce((u, x, i) => ((u[i] = x & 0xff), u), new Uint8Array(6)),
      new Uint8Array(new Int32Array([1, 2]).buffer),
      new Uint8Array([5, 6]),
    ],
    inputs: [0],
    outputs: [8],
  };
}

test('the store lists weights, read-only tensors and the frame, with values as LiteRT dequantizes them', () => {
  const store = new TfliteWeightStore(buildTflite(mixedSpec()));
  const byName = new Map(store.list().map((e) => [e.name, e]));
  assert.deepEqual(store.weights().map((e) => e.name), ['dense/kernel', 'dense/bias', 'conv/half', 'q/tensor', 'q/channel']);
  assert.equal(store.storedWeightBytes(), 24 + 8 + 8 + 4 + 6, 'float32 4, float16 2, int8 1 a value (per channel too)');
  assert.deepEqual([...store.values('dense/kernel')], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...store.values('conv/half')], [1, 2, -0.5, 0]);
  // (q - zp) * scale: zero point 1, scale 0.5
  assert.deepEqual([...store.values('q/tensor')], [0, 1, -1, 63]);
  // channel 0: scale 0.25, zp 0; channel 1: scale 2, zp -1
  assert.deepEqual([...store.values('q/channel')], [1, 2, -1, 2, 4, 6]);
  assert.deepEqual(store.grid('dense/kernel'), { dtype: 'float32' });
  assert.deepEqual(store.grid('conv/half'), { dtype: 'float16' });
  assert.deepEqual(store.grid('q/tensor'), { dtype: 'qint8', scale: 0.5, zeroPoint: 1 });
  assert.equal(store.grid('q/channel'), undefined, 'no single grid for a weight quantized per channel');
  assert.deepEqual(byName.get('q/channel')?.perChannel, { axis: 0, channels: 2 });
  assert.equal(byName.get('shape')?.patchable, false);
  assert.match(byName.get('raw/int8')?.readOnly ?? '', /no quantization scale/);
  assert.deepEqual([...store.read('shape')], [1, 2]);
  assert.throws(() => store.values('shape'), (e: unknown) => e instanceof ModelMismatchError && /INT32 and read-only/.test(e.message));
  assert.throws(() => store.values(TFLITE_FRAME), ModelMismatchError);
  assert.throws(() => store.values('nope'), (e: unknown) => e instanceof ModelMismatchError && /no tensor named "nope"/.test(e.message));
  assert.equal(store.read(TFLITE_FRAME).length, 8);
});

test('a patch changes the weight bytes and nothing else; values off a weight\'s dtype or grid are refused with the bytes untouched', () => {
  const bytes = buildTflite(mixedSpec());
  const before = bytes.slice();
  const store = new TfliteWeightStore(bytes);
  const frame = [...store.read(TFLITE_FRAME)];
  store.values('dense/kernel')[0] = 1.5; // a view: in place
  const half = store.values('conv/half');
  half[1] = 2.5; // a float16
  const q = store.values('q/tensor');
  q[3] = 10; // on the grid: (21 - 1) * 0.5
  const ch = store.values('q/channel');
  ch[1] = 0.75; // channel 0: 3 * 0.25
  ch[5] = -2; // channel 1: (-2 + ... ) (q = -2) -> (-2 - -1) * 2 = -2
  store.commit(['dense/kernel', 'conv/half', 'q/tensor', 'q/channel']);
  const changed: number[] = [];
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== before[i]) changed.push(i);
  assert.ok(changed.length > 0 && changed.length <= 4 + 2 + 1 + 2, `changed ${changed.length} bytes`);
  const again = new TfliteWeightStore(bytes.slice());
  assert.deepEqual([...again.values('dense/kernel')], [1.5, 2, 3, 4, 5, 6]);
  assert.deepEqual([...again.values('conv/half')], [1, 2.5, -0.5, 0]);
  assert.deepEqual([...again.values('q/tensor')], [0, 1, -1, 10]);
  assert.deepEqual([...again.values('q/channel')], [1, 0.75, -1, 2, 4, -2]);
  assert.deepEqual([...again.read(TFLITE_FRAME)], frame, 'weights are not in the frame');

  // Refusals: nothing written, the error names the tensor and position.
  for (const [name, pos, value, why] of [
    ['conv/half', 0, 1.0001, /not on it.*float16/],
    ['q/tensor', 0, 0.25, /quantized as qint8/],
    ['q/channel', 3, 3, /quantized per channel \(here qint8 \(scale 2, zero point -1\)\)/],
  ] as const) {
    const b = buildTflite(mixedSpec());
    const copy = b.slice();
    const s = new TfliteWeightStore(b);
    s.values(name)[pos] = value;
    assert.ok(s.writeProblem(name, s.values(name))?.includes(`position ${pos}`));
    assert.throws(() => s.commit([name]), (e: unknown) => e instanceof ModelMismatchError && why.test(e.message), name);
    assert.deepEqual(b, copy, `${name}: file untouched`);
  }
  // snap() rounds onto each channel's grid.
  const s = new TfliteWeightStore(buildTflite(mixedSpec()));
  assert.deepEqual([...s.snap('q/channel', Float32Array.from([0.3, 0.1, 100, 2.9, 0, -1000]))], [0.25, 0, 31.75, 2, 0, -254]);
});

test('buffers stored past the FlatBuffer (offset and size) are read and patched in place', () => {
  const spec = { ...mixedSpec(), offsetBuffers: [1, 3] };
  const bytes = buildTflite(spec);
  const store = new TfliteWeightStore(bytes);
  assert.deepEqual([...store.values('dense/kernel')], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...store.values('conv/half')], [1, 2, -0.5, 0]);
  const inline = new TfliteWeightStore(buildTflite(mixedSpec()));
  assert.notDeepEqual([...store.read(TFLITE_FRAME)], [...inline.read(TFLITE_FRAME)], 'the layout is part of the frame');
  store.values('conv/half')[3] = -2;
  store.commit(['conv/half']);
  assert.deepEqual([...new TfliteWeightStore(bytes).values('conv/half')], [1, 2, -0.5, -2]);
});

test('tensors that share a buffer are read-only, duplicate names renamed, sparse tensors left to the frame', () => {
  const spec = mixedSpec();
  spec.tensors.push({ name: 'dense/kernel', shape: [6], type: T.FLOAT32, buffer: 1 }); // the same buffer, and the same name
  spec.tensors.push({ name: 'sparse', shape: [64], type: T.FLOAT32, buffer: 8, sparse: true });
  spec.buffers.push(f32Bytes([1, 2]));
  const store = new TfliteWeightStore(buildTflite(spec));
  const byName = new Map(store.list().map((e) => [e.name, e]));
  assert.match(byName.get('dense/kernel')?.readOnly ?? '', /shares its buffer with "dense\/kernel #2"/);
  assert.match(byName.get('dense/kernel #2')?.readOnly ?? '', /shares its buffer/);
  assert.equal(byName.has('sparse'), false, 'a sparse tensor\'s buffer is not one value per element: frame only');
  // A sparse tensor whose buffer is shorter than its dense shape is read, fingerprinted and patched around.
  const store2 = new TfliteWeightStore(buildTflite(spec));
  fingerprintStore(hasher, store2);
});

test('a change outside the weights (the graph, a read-only tensor, the description) changes the fingerprint', () => {
  const fp = (spec: TfliteSpec) => fingerprintStore(hasher, new TfliteWeightStore(buildTflite(spec))).fingerprint;
  const base = fp(mixedSpec());
  const described = mixedSpec();
  described.description = 'another converter';
  assert.notEqual(fp(described), base);
  const shape = mixedSpec();
  shape.buffers[5] = new Uint8Array(new Int32Array([1, 3]).buffer);
  assert.notEqual(fp(shape), base);
  const weights = mixedSpec();
  weights.buffers[0] = f32Bytes([1, 2, 3, 4, 5, 7]);
  const a = new TfliteWeightStore(buildTflite(mixedSpec()));
  const b = new TfliteWeightStore(buildTflite(weights));
  assert.deepEqual([...a.read(TFLITE_FRAME)], [...b.read(TFLITE_FRAME)], 'a weight value is not in the frame');
});

/** Where field `f` of the table at `t` lies (tests poke hostile values there). */
function fieldAt(bytes: Uint8Array, t: number, f: number): number {
  const d = new DataView(bytes.buffer, bytes.byteOffset);
  const vt = t - d.getInt32(t, true);
  const o = d.getUint16(vt + 4 + 2 * f, true);
  return o ? t + o : -1;
}
function deref(bytes: Uint8Array, p: number): number {
  return p + new DataView(bytes.buffer, bytes.byteOffset).getUint32(p, true);
}
/** The tensors vector of subgraph 0. */
function tensorsVector(bytes: Uint8Array): number {
  const root = new DataView(bytes.buffer).getUint32(0, true);
  const subs = deref(bytes, fieldAt(bytes, root, 2));
  const sub = deref(bytes, subs + 4);
  return deref(bytes, fieldAt(bytes, sub, 0));
}

test('hostile files are refused before anything is patched: offsets out of range, overlapping buffers, loops, amplification', () => {
  const refused = (bytes: Uint8Array, why: RegExp, label: string) =>
    assert.throws(() => new TfliteWeightStore(bytes), (e: unknown) => e instanceof ModelFormatError && why.test(e.message), label);
  const good = buildTflite(mixedSpec());
  const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset);

  let b = good.slice();
  dv(b).setUint32(0, b.length + 100, true);
  refused(b, /outside the file/, 'root past the end');

  b = good.slice(0, 40);
  refused(b, /outside the file|cut short/, 'cut short');

  b = good.slice();
  b.set([0x4e, 0x4f, 0x50, 0x45], 4);
  refused(b, /not a LiteRT \(\.tflite\) model: expected the file identifier "TFL3"/, 'identifier');

  b = good.slice();
  dv(b).setUint32(tensorsVector(b), 0x7fffffff, true);
  refused(b, /outside the file/, 'a vector longer than the file');

  b = good.slice();
  const root = dv(b).getUint32(0, true);
  dv(b).setInt32(root, -(b.length + 8), true);
  refused(b, /vtable .*outside the file/, 'a vtable past the end');

  b = good.slice();
  dv(b).setUint32(fieldAt(b, root, 2), 0, true);
  refused(b, /refers to itself/, 'a table that refers to itself');

  // Two buffers at one place: the second buffer's data offset made to alias the first.
  const aliased = buildTflite({ ...mixedSpec(), offsetBuffers: [1, 2] });
  const bufs = deref(aliased, fieldAt(aliased, dv(aliased).getUint32(0, true), 4));
  const offsetOf = (i: number) => fieldAt(aliased, deref(aliased, bufs + 4 + 4 * i), 1);
  dv(aliased).setBigUint64(offsetOf(2), dv(aliased).getBigUint64(offsetOf(1), true), true);
  dv(aliased).setBigUint64(fieldAt(aliased, deref(aliased, bufs + 4 + 8), 2), 8n, true);
  refused(aliased, /share bytes/, 'overlapping buffers');

  // A buffer whose bytes are the model's own tables: patching it would rewrite the graph.
  const over = buildTflite({ ...mixedSpec(), offsetBuffers: [2] });
  const bufs2 = deref(over, fieldAt(over, dv(over).getUint32(0, true), 4));
  dv(over).setBigUint64(fieldAt(over, deref(over, bufs2 + 4 + 8), 1), 16n, true);
  refused(over, /overlaps the model's own structure/, 'a buffer over the structure');

  // A vector of a thousand tensors all naming one table with a long shape: more reads than the file holds.
  const many: TfliteSpec = { ...mixedSpec(), tensors: [...mixedSpec().tensors] };
  many.tensors.push({ name: 'wide', shape: Array.from({ length: 4000 }, () => 1), type: T.FLOAT32, buffer: 8 });
  for (let i = 0; i < 1000; i++) many.tensors.push({ name: `a${i}`, shape: [1], type: T.FLOAT32 });
  many.buffers.push(f32Bytes([7]));
  const amp = buildTflite(many);
  new TfliteWeightStore(amp.slice()); // well-formed as built
  const vec = tensorsVector(amp);
  const n = dv(amp).getUint32(vec, true);
  const wide = deref(amp, vec + 4 + 4 * 9);
  for (let i = 10; i < n; i++) dv(amp).setUint32(vec + 4 + 4 * i, wide - (vec + 4 + 4 * i), true);
  refused(amp, /refer to the same data over and over/, 'amplification');

  // Buffer index out of range.
  const badIndex = mixedSpec();
  badIndex.tensors[1].buffer = 99;
  refused(buildTflite(badIndex), /names buffer 99, but the model has 8/, 'buffer index');

  // Data that disagrees with the shape.
  const short = mixedSpec();
  short.buffers[0] = f32Bytes([1, 2, 3]);
  refused(buildTflite(short), /FLOAT32 \[2, 3\], 24 bytes, but its buffer 1 holds 12/, 'data vs shape');
});

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'nd-tflite-'));
}

function quiet(): CliIO & { lines: string[] } {
  const lines: string[] = [];
  return { lines, out: (s) => lines.push(s), err: (s) => lines.push(s), progress: () => {} };
}

test('a .tflite file on disk: exact payload applied crash-safely, byte for byte the target; a wrong base refused, file untouched', async () => {
  const dir = await tempDir();
  try {
    const v1 = buildTflite(mixedSpec());
    const spec2 = mixedSpec();
    spec2.buffers[0] = f32Bytes([1.25, 2, 3, 4, 5, 6.5]);
    spec2.buffers[2] = halfBytes([0x3c00, 0x4100, 0xb800, 0x3800]);
    const v2 = buildTflite(spec2);
    const payload = diffOnnxModels(hasher, new TfliteWeightStore(v1.slice()), new TfliteWeightStore(v2.slice()), { mode: 'all', budgetBytes: 0, modelId: 'tiny' }).bytes;
    const file = path.join(dir, 'model.tflite');
    await writeFile(file, v1);
    const res = await applyToTfliteFile(file, payload);
    assert.equal(res.status, 'applied');
    assert.deepEqual(new Uint8Array(await readFile(file)), v2);
    assert.equal(JSON.parse(await readFile(file + '.ndiff-model.json', 'utf8')).modelId, 'tiny');
    // Applied again: nothing to do. On another base: refused, nothing written.
    assert.equal((await applyToTfliteFile(file, payload)).status, 'already-applied');
    const other = path.join(dir, 'other.tflite');
    const spec3 = mixedSpec();
    spec3.buffers[1] = f32Bytes([9, 9]);
    const v3 = buildTflite(spec3);
    await writeFile(other, v3);
    await assert.rejects(applyToTfliteFile(other, payload), BaseMismatchError);
    assert.deepEqual(new Uint8Array(await readFile(other)), v3);
    // A crash after the switch, before the confirmation: the journal rolls back to the previous version.
    const crashed = path.join(dir, 'crashed.tflite');
    await writeFile(crashed, v2);
    await writeFile(crashed + '.ndiff-prev', v1);
    await writeFile(crashed + '.ndiff-update.json', JSON.stringify({ format: 'neural-diff-tflite-update', version: 1, files: [''] }));
    const rec = await recoverTfliteFile(crashed);
    assert.equal(rec.rolledBack, true);
    assert.deepEqual(new Uint8Array(await readFile(crashed)), v1);
    // An ONNX journal beside a .tflite file is not ours: refused as damaged.
    await writeFile(crashed + '.ndiff-update.json', JSON.stringify({ format: 'neural-diff-onnx-update', version: 1, files: [''] }));
    await assert.rejects(recoverTfliteFile(crashed), /damaged: expected \{"format": "neural-diff-tflite-update"/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a .tflite file past 2 GiB is refused from its size, before a byte is read', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'huge.tflite');
    await writeFile(file, buildTflite(mixedSpec()));
    await truncate(file, 2 ** 31 + 16); // sparse: no disk used
    await assert.rejects(openTfliteFile(file), (e: unknown) => e instanceof ModelFormatError && /at most 2 GiB - 1 bytes/.test(e.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('ndiff diff, apply and fingerprint take .tflite files; --calibrate without the model\'s inputs is refused, saying why', async () => {
  const dir = await tempDir();
  try {
    const spec2 = mixedSpec();
    spec2.buffers[0] = f32Bytes([1.25, 2, 3, 4, 5, 6.5]);
    await writeFile(path.join(dir, 'v1.tflite'), buildTflite(mixedSpec()));
    await writeFile(path.join(dir, 'v2.tflite'), buildTflite(spec2));
    await writeFile(path.join(dir, 'dev.tflite'), buildTflite(mixedSpec()));
    const at = (f: string) => path.join(dir, f);
    let io = quiet();
    assert.equal(await main(['diff', '--model-id', 'tiny', '--base', at('v1.tflite'), '--target', at('v2.tflite'), '--budget', 'all', '--out', at('p.ndiff')], io), 0, io.lines.join('\n'));
    io = quiet();
    assert.equal(await main(['apply', '--model', at('dev.tflite'), '--patch', at('p.ndiff')], io), 0, io.lines.join('\n'));
    assert.deepEqual(await readFile(at('dev.tflite')), await readFile(at('v2.tflite')));
    const fp = async (f: string) => {
      const o = quiet();
      await main(['fingerprint', at(f)], o);
      return o.lines[0];
    };
    assert.equal(await fp('dev.tflite'), await fp('v2.tflite'));
    io = quiet();
    // --calibrate takes .tflite pairs (test/tflite-train.test.ts); a folder without the model's inputs is refused, naming them.
    assert.equal(await main(['diff', '--model-id', 'tiny', '--base', at('v1.tflite'), '--target', at('v2.tflite'), '--budget', '50%', '--method', 'lowbit', '--calibrate', dir, '--out', at('q.ndiff')], io), 8, io.lines.join('\n'));
    assert.match(io.lines.join('\n'), /--calibrate/, io.lines.join('\n'));
    io = quiet();
    assert.equal(await main(['diff', '--model-id', 'tiny', '--base', at('v1.tflite'), '--target', dir, '--budget', 'all', '--out', at('q.ndiff')], io), 2);
    assert.match(io.lines.join('\n'), /is a \.tflite file and --target .* is a TF\.js folder/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the LiteRT store with the applier, bundled for a browser, stays within 40,000 bytes min+gzip and imports nothing of node or tfjs', async () => {
  const { buildApplyBundle } = await import('../scripts/build-apply.ts');
  const dir = await tempDir();
  try {
    const { tfliteWithApply } = await buildApplyBundle(dir);
    assert.ok(tfliteWithApply.gzipBytes <= 40_000, `${tfliteWithApply.gzipBytes} bytes min+gzip`);
    // docs/BENCHMARKS.md quotes it: within 5% of what was measured now.
    const doc = await readFile(path.join(import.meta.dirname, '..', 'docs', 'BENCHMARKS.md'), 'utf8');
    const quoted = Number(/`dist\/tflite-apply\.js`[^|]*\| ([\d,]+) bytes min\+gzip/.exec(doc)?.[1].replace(/,/g, ''));
    assert.ok(Math.abs(quoted - tfliteWithApply.gzipBytes) <= 0.05 * tfliteWithApply.gzipBytes, `docs/BENCHMARKS.md says ${quoted}, measured ${tfliteWithApply.gzipBytes}: write "${tfliteWithApply.gzipBytes.toLocaleString('en-US')} bytes min+gzip" there`);
    const text = await readFile(tfliteWithApply.outfile, 'utf8');
    assert.doesNotMatch(text, /from\s*["'](node:|fs|path|@tensorflow)/);
    const mod = await import(tfliteWithApply.outfile);
    assert.equal(typeof mod.TfliteWeightStore, 'function');
    assert.equal(typeof mod.applyPayload, 'function');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('fuzzing .tflite files on disk: 150 hostile files end in a typed refusal with the file byte for byte, or apply', async () => {
  const { fuzzTfliteFiles } = await import('./fuzz/tflite-files.ts');
  const s = await fuzzTfliteFiles({ cases: 150, seed: 20261125 });
  assert.equal(s.cases, 150);
  assert.equal(s.bad, 0, JSON.stringify(s));
  assert.ok((s.outcomes['refused ND_MODEL_FORMAT'] ?? 0) > 50, JSON.stringify(s.outcomes));
});

test('a lossy diff that would leave a weight quantized per channel off its channels\' grids is refused; the exact one reaches the target', async () => {
  const { BudgetError } = await import('../src/core/errors.ts');
  const scale = [0.5, 0.25, 0.1, 0.3, 0.7, 0.01, 0.02, 1.5];
  const mk = (q: number[]) => buildTflite({ tensors: [{ name: 'q', shape: [8, 64], type: T.INT8, buffer: 1, quant: { scale, zeroPoint: scale.map((_, i) => (i === 1 ? 1 : 0)), dimension: 0 } }], buffers: [Uint8Array.from(q, (x) => x & 0xff)] });
  const qa = Array.from({ length: 512 }, (_, i) => ((i * 37) % 200) - 100);
  const qb = qa.map((x, i) => Math.max(-128, Math.min(127, x + ((i * 13) % 7) - 3)));
  const [a, b] = [mk(qa), mk(qb)];
  for (const o of [{ budgetBytes: 300 }, { budgetBytes: 300, method: 'lowbit' as const }]) {
    assert.throws(() => diffOnnxModels(hasher, new TfliteWeightStore(a.slice()), new TfliteWeightStore(b.slice()), { ...o, modelId: 'q' }), (e: unknown) => e instanceof BudgetError && /quantized per channel .* use --budget all/.test(e.message));
  }
  const exact = diffOnnxModels(hasher, new TfliteWeightStore(a.slice()), new TfliteWeightStore(b.slice()), { mode: 'all', budgetBytes: 0, modelId: 'q' });
  const device = a.slice();
  await applyPayload(new TfliteWeightStore(device), exact.bytes, { hasher });
  assert.deepEqual(device, b);
});
