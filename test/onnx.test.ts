/**
 * ONNX models: the protobuf reader and store on small models built here (every storage the
 * reader knows, and bad input), and on the real Silero VAD and openWakeWord files shipped in
 * node_modules; the crash-safe file apply.
 */
import { decodePayload } from '../src/core/format.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, link, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { applyPayload } from '../src/apply/index.ts';
import { BaseMismatchError, FreshnessError, HealthCheckError, ModelFormatError, ModelMismatchError, UsageError } from '../src/core/errors.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { MemoryWeightStore, type WeightStore } from '../src/core/weight-store.ts';
import { buildPayload } from '../src/diff/build.ts';
import { checkOnnxPair, diffOnnxModels } from '../src/diff/onnx.ts';
import { OnnxWeightStore, ONNX_FRAME, type OnnxTensorEntry } from '../src/io/onnx/store.ts';
import { applyToOnnxFile, openOnnxFile, recoverOnnxFile, saveOnnxFileAs, ONNX_JOURNAL_SUFFIX, ONNX_PREVIOUS_SUFFIX } from '../src/io/onnx/files.ts';
import { DT, f32le, fBytes, fixture, fString, fVarint, graph, model, node, tensor } from './helpers/onnx-build.ts';

const VAD = 'node_modules/@ricky0123/vad-web/dist';
const WAKE = 'node_modules/openwakeword-js/models';
const hasher = await getHasher();

function storeOf(f = fixture()): OnnxWeightStore {
  return new OnnxWeightStore(f.model.slice(), { external: { 'weights.bin': f.external.slice() }, source: 'fixture.onnx' });
}

async function realFile(file: string): Promise<OnnxWeightStore> {
  return new OnnxWeightStore(new Uint8Array(await readFile(file)), { source: file });
}

/** A writable in-memory copy of every tensor (patchable or not), for payloads the diff tools would never make. */
function everythingWritable(store: WeightStore): MemoryWeightStore {
  return new MemoryWeightStore(store.list().map((t) => [t.name, { shape: [...t.shape], data: (store.read?.(t.name) ?? store.values(t.name)).slice() }] as [string, { shape: number[]; data: Float32Array }]));
}

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'nd-onnx-test-'));
}

test('the reader finds every float weight, names it stably and reads exact values', () => {
  const store = storeOf();
  const byName = new Map(store.list().map((e) => [e.name, e] as const));
  assert.deepEqual([...byName.keys()].sort(), [
    'branch/else_branch/k', 'branch/then_branch/k', 'c_floats', 'c_value', 'dense/bias', 'dense/kernel', 'far', 'half', 'half_int32', ONNX_FRAME, 'quantized', 'shape', 'unpacked',
  ]);
  assert.deepEqual(store.weights().map((e) => e.name).sort(), ['branch/else_branch/k', 'branch/then_branch/k', 'c_floats', 'c_value', 'dense/bias', 'dense/kernel', 'far', 'half', 'half_int32', 'unpacked']);
  const get = (n: string) => Array.from(store.read(n));
  assert.deepEqual(get('dense/kernel'), [0.1, 0.2, 0.3, -0.4, -0.5, 0.6].map(Math.fround));
  assert.deepEqual(get('dense/bias'), [0.01, 0.02, 0.03].map(Math.fround));
  assert.deepEqual(get('unpacked'), [1.25, -1.75]);
  assert.deepEqual(get('half'), [0.5, -1, 2, 0.25]);
  assert.deepEqual(get('half_int32'), [1.5, -0.5]);
  assert.deepEqual(get('quantized'), [1, -1, 3, -128]);
  assert.deepEqual(get('shape'), [-1, 3]);
  assert.deepEqual(get('c_value'), [7, 8]);
  assert.deepEqual(get('c_floats'), [4, 5, 6]);
  assert.deepEqual(get('branch/then_branch/k'), [9]);
  assert.deepEqual(get('branch/else_branch/k'), [-9]);
  assert.deepEqual(get('far'), [0.5, -0.25, 1.5, 2, -3, 0.125]);
  assert.deepEqual((byName.get('half') as OnnxTensorEntry).dtype, 'FLOAT16');
  assert.deepEqual((byName.get('quantized') as OnnxTensorEntry).patchable, false);
  assert.deepEqual((byName.get('far') as OnnxTensorEntry).external, 'weights.bin');
  assert.deepEqual(byName.get('dense/kernel')?.shape, [2, 3]);
});

test('integer tensors and the frame are never patch targets: a payload naming one is refused with its dtype, nothing written', async () => {
  const store = storeOf();
  const before = store.modelBytes().slice();
  for (const [name, says] of [['quantized', /is INT8 and read-only: no node reads it by name, so it is no DequantizeLinear input/], ['shape', /is INT64: only FLOAT/], [ONNX_FRAME, /stands for the graph and every read-only tensor/]] as const) {
    const writable = everythingWritable(store);
    const built = buildPayload(hasher, writable, [{ kind: 'sparse', name, positions: Uint32Array.of(0), values: Float32Array.of(1), codec: 'f32' }], { method: 'topk', modelId: 'fixture' });
    await assert.rejects(applyPayload(store, built.bytes, { hasher }), (e: unknown) => e instanceof ModelMismatchError && e.message.includes(JSON.stringify(name)) && says.test(e.message));
    assert.deepEqual(store.modelBytes(), before);
  }
});

test('reading an integer tensor: values() says it is read-only and to use read(), which gives its values; no payload is blamed', () => {
  const store = storeOf();
  assert.throws(() => store.values('shape'), (e: unknown) => e instanceof ModelMismatchError && /is INT64: only FLOAT/.test(e.message) && /read\(name\) gives any tensor's values/.test(e.message) && !/The payload was made/.test(e.message));
  assert.deepEqual([...store.read('shape')], [-1, 3]);
});

test('a payload from one version to another patches raw_data, float_data, external data and float16 in place: the target file, byte for byte', async () => {
  const base = storeOf(fixture(1));
  const res = diffOnnxModels(hasher, base, storeOf(fixture(2)), { mode: 'all', budgetBytes: 0, modelId: 'fixture' });
  assert.deepEqual(res.payload.patches.map((p) => p.name).sort(), ['branch/else_branch/k', 'branch/then_branch/k', 'c_floats', 'c_value', 'dense/bias', 'dense/kernel', 'far', 'half', 'unpacked']);
  const got = storeOf(fixture(1));
  const r = await applyPayload(got, res.bytes, { hasher });
  assert.equal(r.status, 'applied');
  assert.deepEqual(got.modelBytes(), fixture(2).model);
  assert.deepEqual(got.externalBytes().get('weights.bin'), fixture(2).external);
  assert.equal(fingerprintStore(hasher, got).fingerprint, fingerprintStore(hasher, storeOf(fixture(2))).fingerprint);
});

test('float16: a payload built on the model rounds onto its float16 grid and stays float16; one without the grid landing off it is refused at commit, and one in int32_data varints always; bytes untouched', async () => {
  const store = storeOf();
  const original = store.modelBytes().slice();
  // Built against the store, the patch carries the tensor's float16 grid: 0.0001 lands on a half.
  const onGrid = buildPayload(hasher, storeOf(), [{ kind: 'sparse', name: 'half', positions: Uint32Array.of(1), values: Float32Array.of(0.0001), codec: 'f32' }], { method: 'topk', modelId: 'fixture' });
  assert.deepEqual(decodePayload(onGrid.bytes).patches[0].grid, { dtype: 'float16' });
  const rounded = storeOf();
  await applyPayload(rounded, onGrid.bytes, { hasher });
  assert.deepEqual(Array.from(rounded.read('half')), [0.5, -1, 2, 0.25], '-1 + 0.0001 rounds back to the half -1');
  assert.equal(rounded.modelBytes().length, original.length);
  // Without the grid (store: 'float32'), the sum is no half: the ONNX store refuses to store it.
  const off = buildPayload(hasher, storeOf(), [{ kind: 'sparse', name: 'half', positions: Uint32Array.of(1), values: Float32Array.of(0.0001), codec: 'f32', grid: null }], { method: 'topk', modelId: 'fixture' });
  await assert.rejects(applyPayload(store, off.bytes, { hasher }), (e: unknown) => e instanceof ModelMismatchError && /FLOAT16/.test(e.message) && /position 1/.test(e.message));
  assert.deepEqual(store.modelBytes(), original);
  assert.deepEqual(Array.from(store.read('half')), [0.5, -1, 2, 0.25], 'values restored');
  const varints = buildPayload(hasher, storeOf(), [{ kind: 'sparse', name: 'half_int32', positions: Uint32Array.of(0), values: Float32Array.of(0.5), codec: 'f32', grid: null }], { method: 'topk', modelId: 'fixture' });
  await assert.rejects(applyPayload(store, varints.bytes, { hasher }), (e: unknown) => e instanceof ModelMismatchError && /int32_data/.test(e.message));
  assert.deepEqual(store.modelBytes(), original);
  const on = buildPayload(hasher, storeOf(), [{ kind: 'sparse', name: 'half', positions: Uint32Array.of(0), values: Float32Array.of(0.25), codec: 'f32' }], { method: 'topk', modelId: 'fixture' });
  await applyPayload(store, on.bytes, { hasher });
  assert.deepEqual(Array.from(store.read('half')), [0.75, -1, 2, 0.25]);
  assert.deepEqual(Array.from(new OnnxWeightStore(store.modelBytes(), { external: { 'weights.bin': fixture().external } }).read('half')), [0.75, -1, 2, 0.25], 'written as float16 into the file');
  assert.equal(store.modelBytes().length, original.length);
});

test('the diff refuses a pair that differs outside the float weights, and an explicit codec leaving float16 off its grid', () => {
  const a = storeOf();
  const other = fixture();
  const b = new OnnxWeightStore(model(graph({ initializers: [tensor({ name: 'dense/kernel', dims: [2, 3], dataType: DT.FLOAT, raw: f32le([1, 2, 3, 4, 5, 6]) })] })));
  assert.throws(() => checkOnnxPair(a, b), ModelMismatchError);
  const renamed = new OnnxWeightStore(model(graph({ name: 'main', initializers: [tensor({ name: 'w', dims: [1], dataType: DT.FLOAT, raw: f32le([1]) })] }), { producer: 'someone else' }));
  const same = new OnnxWeightStore(model(graph({ name: 'main', initializers: [tensor({ name: 'w', dims: [1], dataType: DT.FLOAT, raw: f32le([2]) })] })));
  assert.throws(() => checkOnnxPair(renamed, same), (e: unknown) => e instanceof ModelMismatchError && /outside their weights/.test(e.message));
  const halfA = new OnnxWeightStore(model(graph({ initializers: [tensor({ name: 'h', dims: [2], dataType: DT.FLOAT16, raw: [0, 0x38, 0, 0x3c] })] })));
  const halfB = new OnnxWeightStore(model(graph({ initializers: [tensor({ name: 'h', dims: [2], dataType: DT.FLOAT16, raw: [0x01, 0x38, 0, 0x3c] })] })));
  const ok = diffOnnxModels(hasher, halfA, halfB, { budgetBytes: 10_000 });
  assert.equal(ok.codec, 'f32');
  void other;
});

test('bad input is refused with a typed error: truncated, lengths past the end, unknown wire types, data disagreeing with dims', () => {
  const good = fixture().model;
  const open = (bytes: Uint8Array) => new OnnxWeightStore(bytes, { external: { 'weights.bin': fixture().external }, source: 'bad.onnx' });
  for (const cut of [1, 10, Math.floor(good.length / 2), good.length - 3]) {
    assert.throws(() => open(good.slice(0, cut)), ModelFormatError, `cut at ${cut}`);
  }
  const g = (t: number[]) => model(graph({ initializers: [t] }));
  assert.throws(() => open(g(tensor({ name: 'x', dims: [2, 3], dataType: DT.FLOAT, raw: f32le([1, 2, 3, 4, 5]) }))), (e: unknown) => e instanceof ModelFormatError && /needs 24 bytes of raw_data, found 20/.test(e.message));
  assert.throws(() => open(g(tensor({ name: 'x', dims: [4], dataType: DT.FLOAT, floatData: [1, 2, 3] }))), (e: unknown) => e instanceof ModelFormatError && /needs 4 values/.test(e.message));
  assert.throws(() => open(g(tensor({ name: 'x', dims: [3], dataType: DT.FLOAT, external: { location: 'weights.bin', offset: '8', length: '24' } }))), (e: unknown) => e instanceof ModelFormatError && /needs 12 bytes/.test(e.message));
  assert.throws(() => open(g(tensor({ name: 'x', dims: [3], dataType: DT.FLOAT, external: { location: '../etc/passwd', length: '12' } }))), (e: unknown) => e instanceof ModelFormatError && /without "\.\."/.test(e.message));
  assert.throws(() => open(g(tensor({ name: 'x', dims: [3], dataType: DT.FLOAT, external: { location: 'missing.bin', length: '12' } }))), (e: unknown) => e instanceof ModelFormatError && /not provided/.test(e.message));
  assert.throws(() => open(g(tensor({ name: 'x', dims: [-1], dataType: DT.FLOAT }))), (e: unknown) => e instanceof ModelFormatError && /negative dimension/.test(e.message));
  // A start-group wire type (3) as the first field.
  assert.throws(() => open(Uint8Array.from([0x0b, ...good])), (e: unknown) => e instanceof ModelFormatError && /start-group/.test(e.message));
  // A length far past the end.
  assert.throws(() => open(Uint8Array.from([...fVarint(1, 8), 0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f])), (e: unknown) => e instanceof ModelFormatError && /says it holds 4294967295 bytes/.test(e.message));
  // Not a model at all.
  assert.throws(() => open(new TextEncoder().encode('{"format": "layers-model"}')), ModelFormatError);
  assert.throws(() => open(new Uint8Array(0)), ModelFormatError);
  // A 12-byte varint.
  assert.throws(() => open(Uint8Array.from([0x08, ...new Array(11).fill(0xff), 0x01])), (e: unknown) => e instanceof ModelFormatError && /longer than 10 bytes/.test(e.message));
  // Subgraphs nested deeper than the limit.
  let deep = graph({});
  for (let i = 0; i < 40; i++) deep = graph({ nodes: [node({ opType: 'If', outputs: [`o${i}`], attributes: [{ name: 'then_branch', type: 5, g: deep }] })] });
  assert.throws(() => open(model(deep)), (e: unknown) => e instanceof ModelFormatError && /nested more than/.test(e.message));
});

test('duplicate names get " #2" in file order; a tensor named like the frame too; functions get their prefix', () => {
  const w = (name: string, x: number) => tensor({ name, dims: [1], dataType: DT.FLOAT, raw: f32le([x]) });
  const fn = [...fString(1, 'Scale'), ...fBytes(7, node({ opType: 'Constant', outputs: ['s'], attributes: [{ name: 'value_float', type: 1, f: 2.5 }] })), ...fString(10, 'custom')];
  const store = new OnnxWeightStore(model(graph({ initializers: [w('w', 1), w('w', 2), w(ONNX_FRAME, 3)] }), { functions: [fn] }));
  assert.deepEqual(store.list().map((e) => e.name), ['w', 'w #2', `${ONNX_FRAME} #2`, 'custom:Scale/s', ONNX_FRAME]);
  assert.deepEqual(Array.from(store.read('w #2')), [2]);
  assert.deepEqual(Array.from(store.read('custom:Scale/s')), [2.5]);
  assert.deepEqual(store.list().find((e) => e.name === 'custom:Scale/s')?.shape, []);
});

// ---------------------------------------------------------------------------------------------
// real models from node_modules

test('Silero VAD v5: 36 float weights in Constant nodes inside the If branches, 345 tensors in all', async () => {
  const v5 = await realFile(`${VAD}/silero_vad_v5.onnx`);
  assert.equal(v5.list().length, 346, '345 tensors and the frame');
  assert.equal(v5.weights().length, 36);
  assert.ok(v5.weights().every((e) => e.name.startsWith('If_0/then_branch/') || e.name.startsWith('If_0/else_branch/')));
  assert.equal(v5.weights().reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1), 0), 545_288);
});

test('Silero VAD v5 -> v6: the 28 retrained tensors; every change applies, and every weight ends at v6 bit for bit (codecs x and xr)', async () => {
  const [v5, v6] = await Promise.all([realFile(`${VAD}/silero_vad_v5.onnx`), realFile(`${VAD}/silero_vad_v6.onnx`)]);
  const res = diffOnnxModels(hasher, v5, v6, { mode: 'all', budgetBytes: 0, modelId: 'silero-vad', sequence: 6 });
  assert.equal(res.payload.patches.length, 28);
  // Range-coded where it is smaller (the retrained tensors), so format v3.
  assert.equal(res.payload.header.version, 3);
  assert.ok(res.payload.patches.some((p) => p.codec === 'xr'));
  assert.ok(res.payload.patches.every((p) => p.codec === 'x' || p.codec === 'xr'));
  // Codec x only: format v2, for older appliers, larger.
  const v2 = diffOnnxModels(hasher, v5, v6, { mode: 'all', budgetBytes: 0, modelId: 'silero-vad', sequence: 6, exactCodecs: ['x'] });
  assert.equal(v2.payload.header.version, 2);
  assert.ok(v2.payload.patches.every((p) => p.codec === 'x'));
  assert.ok(res.bytes.length < v2.bytes.length, `xr ${res.bytes.length} < x ${v2.bytes.length}`);
  assert.equal(v2.payload.header.targetFingerprint, res.payload.header.targetFingerprint);
  const patched = await realFile(`${VAD}/silero_vad_v5.onnx`);
  await applyPayload(patched, res.bytes, { hasher });
  let exact = 0;
  let unreachableByAddition = 0;
  for (const e of v6.weights()) {
    const got = new Uint32Array(patched.read(e.name).slice().buffer);
    const want = v6.read(e.name);
    const wantBits = new Uint32Array(want.slice().buffer);
    const was = v5.read(e.name);
    for (let i = 0; i < want.length; i++) {
      assert.equal(got[i], wantBits[i], `${e.name}[${i}]`);
      exact++;
      // Counted for the record: the weights no float32 delta could have reached.
      if (!Object.is(Math.fround(was[i] + Math.fround(want[i] - was[i])), want[i])) unreachableByAddition++;
    }
  }
  assert.equal(exact, 545_288);
  assert.equal(unreachableByAddition, 164_745, 'the weights an additive payload (format v1) cannot reach');
  assert.equal(patched.modelBytes().length, 2_327_524);
  // The patched file is v6's bytes: the same graph, every weight at v6.
  assert.deepEqual(patched.modelBytes(), v6.modelBytes());
});

test('openWakeWord classifiers: hello_deepa_old -> namaste_deepa applies; to hello_deepa (other shapes) the diff refuses and the applier says fetch the full model', async () => {
  const [old, namaste, hello] = await Promise.all([realFile(`${WAKE}/hello_deepa_old.onnx`), realFile(`${WAKE}/namaste_deepa.onnx`), realFile(`${WAKE}/hello_deepa.onnx`)]);
  assert.equal(old.weights().length, 14);
  const res = diffOnnxModels(hasher, old, namaste, { budgetBytes: 30_000, modelId: 'wake' });
  const store = await realFile(`${WAKE}/hello_deepa_old.onnx`);
  const r = await applyPayload(store, res.bytes, { hasher });
  assert.equal(r.status, 'applied');
  assert.throws(() => diffOnnxModels(hasher, old, hello, { budgetBytes: 30_000 }), (e: unknown) => e instanceof ModelMismatchError && /\[32, 2304\].*\[32, 2400\]/.test(e.message));
  const before = hello.modelBytes().slice();
  await assert.rejects(applyPayload(hello, res.bytes, { hasher }), (e: unknown) => e instanceof ModelMismatchError && /fetch the full model/.test(e.message));
  assert.deepEqual(hello.modelBytes(), before);
});

// ---------------------------------------------------------------------------------------------
// files on disk

async function setup(): Promise<{ dir: string; file: string; v6: Uint8Array; payload: Uint8Array; v5: Uint8Array }> {
  const dir = await tempDir();
  const file = path.join(dir, 'vad.onnx');
  await copyFile(`${VAD}/silero_vad_v5.onnx`, file);
  const [v5, v6] = await Promise.all([realFile(`${VAD}/silero_vad_v5.onnx`), realFile(`${VAD}/silero_vad_v6.onnx`)]);
  const res = diffOnnxModels(hasher, v5, v6, { budgetBytes: 50_000, modelId: 'silero-vad', sequence: 6 });
  return { dir, file, v5: new Uint8Array(await readFile(file)), v6: v6.modelBytes(), payload: res.bytes };
}

test('applyToOnnxFile: applies, records the sequence, refuses a replay and a payload for another model; files untouched on refusal', async () => {
  const { dir, file, v5, payload } = await setup();
  try {
    const wrong = diffOnnxModels(hasher, await realFile(`${WAKE}/hello_deepa_old.onnx`), await realFile(`${WAKE}/namaste_deepa.onnx`), { budgetBytes: 20_000, modelId: 'silero-vad', sequence: 9 });
    await assert.rejects(applyToOnnxFile(file, wrong.bytes), ModelMismatchError);
    assert.deepEqual(new Uint8Array(await readFile(file)), v5, 'untouched, byte for byte');
    const r = await applyToOnnxFile(file, payload);
    assert.equal(r.status, 'applied');
    assert.deepEqual(r.filesWritten, [file]);
    assert.equal(r.sequenceRecorded, true);
    const after = new Uint8Array(await readFile(file));
    assert.equal(after.length, v5.length);
    const reread = await openOnnxFile(file);
    assert.equal(fingerprintStore(hasher, reread.contents).fingerprint, r.targetFingerprint);
    await reread.close();
    assert.deepEqual((await readdir(dir)).sort(), ['vad.onnx', 'vad.onnx.ndiff-model.json', 'vad.onnx.ndiff-state.json'], 'no journal, no previous version left; the model id and sequence recorded beside the file');
    assert.equal((await applyToOnnxFile(file, payload)).status, 'already-applied');
    // An older update (sequence 5) is refused as stale before the model is even read.
    const older = diffOnnxModels(hasher, await realFile(`${VAD}/silero_vad_v5.onnx`), await realFile(`${VAD}/silero_vad_v6.onnx`), { budgetBytes: 20_000, modelId: 'silero-vad', sequence: 5 });
    await assert.rejects(applyToOnnxFile(file, older.bytes), FreshnessError);
    assert.deepEqual(new Uint8Array(await readFile(file)), after);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('applyToOnnxFile: a failing health check rolls back to the previous file; a dry run writes nothing', async () => {
  const { dir, file, v5, payload } = await setup();
  try {
    const dry = await applyToOnnxFile(file, payload, { dryRun: true });
    assert.equal(dry.status, 'applied');
    assert.deepEqual(new Uint8Array(await readFile(file)), v5);
    let sawNew = false;
    await assert.rejects(
      applyToOnnxFile(file, payload, {
        healthCheck: async ({ file: f }) => {
          sawNew = (await readFile(f)).equals(Buffer.from(v5)) === false;
          return false;
        },
      }),
      HealthCheckError,
    );
    assert.ok(sawNew, 'the health check saw the new version in place');
    assert.deepEqual(new Uint8Array(await readFile(file)), v5, 'rolled back, byte for byte');
    assert.deepEqual(await readdir(dir), ['vad.onnx']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('recoverOnnxFile: after a crash between the switch and the confirmation the previous version comes back; a crash before the switch leaves it', async () => {
  const { dir, file, v5, v6 } = await setup();
  try {
    // Crash after the switch: journal written, previous version kept, new file in place.
    await writeFile(file + ONNX_JOURNAL_SUFFIX, JSON.stringify({ format: 'neural-diff-onnx-update', version: 1, files: [''] }));
    await link(file, file + ONNX_PREVIOUS_SUFFIX);
    await writeFile(`${file}.tmp-123-abcdef`, v6);
    await (await import('node:fs/promises')).rename(`${file}.tmp-123-abcdef`, file);
    let report = await recoverOnnxFile(file);
    assert.equal(report.rolledBack, true);
    assert.deepEqual(new Uint8Array(await readFile(file)), v5);
    assert.deepEqual(await readdir(dir), ['vad.onnx']);
    // Crash before the switch: journal, link and a temp file; the model is still v5.
    await writeFile(file + ONNX_JOURNAL_SUFFIX, JSON.stringify({ format: 'neural-diff-onnx-update', version: 1, files: [''] }));
    await link(file, file + ONNX_PREVIOUS_SUFFIX);
    await writeFile(`${file}.tmp-123-abcdef`, v6.subarray(0, 1000));
    report = await recoverOnnxFile(file);
    assert.equal(report.rolledBack, false);
    assert.deepEqual(new Uint8Array(await readFile(file)), v5);
    assert.deepEqual(await readdir(dir), ['vad.onnx']);
    // A damaged journal fails closed.
    await writeFile(file + ONNX_JOURNAL_SUFFIX, 'not json');
    await assert.rejects(recoverOnnxFile(file), ModelFormatError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('applyToOnnxFile with external data: only the external file is rewritten; a truncated model file is refused untouched', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'm.onnx');
    const f1 = fixture(1);
    await writeFile(file, f1.model);
    await writeFile(path.join(dir, 'weights.bin'), f1.external);
    const base = await openOnnxFile(file);
    const target = new OnnxWeightStore(fixture(2).model, { external: { 'weights.bin': fixture(2).external } });
    // Only the external tensor differs between these two.
    const mixed = everythingWritable(base.contents);
    mixed.values('far').set(target.read('far'));
    const res = buildPayload(hasher, base.contents, [{ kind: 'dense', name: 'far', values: Float32Array.from(target.read('far'), (v, i) => v - base.read('far')[i]), codec: 'f32' }], { method: 'topk', modelId: 'm' });
    const r = await applyToOnnxFile(file, res.bytes, { state: null });
    assert.deepEqual(r.filesWritten, [path.join(dir, 'weights.bin')]);
    assert.deepEqual(new Uint8Array(await readFile(file)), f1.model, 'the .onnx file was not rewritten');
    assert.deepEqual(new Uint8Array(await readFile(path.join(dir, 'weights.bin'))), fixture(2).external);
    // A truncated model file: refused before anything is written.
    const bad = path.join(dir, 'bad.onnx');
    const cut = f1.model.subarray(0, f1.model.length - 5);
    await writeFile(bad, cut);
    await assert.rejects(applyToOnnxFile(bad, res.bytes, { state: null }), ModelFormatError);
    assert.deepEqual(new Uint8Array(await readFile(bad)), cut);
    await base.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a payload for the wrong base is refused by fingerprint even when names and shapes match', async () => {
  const { dir, file, payload } = await setup();
  try {
    await copyFile(`${VAD}/silero_vad_v6.onnx`, file);
    const before = new Uint8Array(await readFile(file));
    await assert.rejects(applyToOnnxFile(file, payload, { state: null }), BaseMismatchError);
    assert.deepEqual(new Uint8Array(await readFile(file)), before);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('saveOnnxFileAs (--model-out) beside a base with external data is refused before anything is written: the new files would be the base\'s own; into another folder it writes the target', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'm.onnx');
    const f1 = fixture(1);
    await writeFile(file, f1.model);
    await writeFile(path.join(dir, 'weights.bin'), f1.external);
    const target = new OnnxWeightStore(fixture(2).model, { external: { 'weights.bin': fixture(2).external } });
    const probe = await openOnnxFile(file);
    const res = buildPayload(hasher, probe.contents, [{ kind: 'dense', name: 'far', values: Float32Array.from(target.read('far'), (v, i) => v - probe.read('far')[i]), codec: 'f32' }], { method: 'topk', modelId: 'm' });
    await probe.close();
    const save = async (out: string) => {
      const disk = await openOnnxFile(file);
      try {
        const r = await applyPayload(disk.contents, res.bytes, { hasher });
        await saveOnnxFileAs(disk, r.changedTensors, out);
      } finally {
        await disk.close();
      }
    };
    // The same folder: weights.bin beside the new model is the base's weights.bin.
    await assert.rejects(save(path.join(dir, 'm-v2.onnx')), (e: unknown) => e instanceof UsageError && /own external data/.test(e.message) && /another folder/.test(e.message));
    assert.deepEqual(new Uint8Array(await readFile(path.join(dir, 'weights.bin'))), f1.external, 'the base\'s external data, byte for byte');
    assert.deepEqual(new Uint8Array(await readFile(file)), f1.model);
    assert.deepEqual((await readdir(dir)).sort(), ['m.onnx', 'weights.bin']);
    // Another folder: the new model and its external data, the target's bytes there.
    await save(path.join(dir, 'out', 'm-v2.onnx'));
    assert.deepEqual(new Uint8Array(await readFile(path.join(dir, 'out', 'weights.bin'))), fixture(2).external);
    assert.deepEqual(new Uint8Array(await readFile(path.join(dir, 'weights.bin'))), f1.external);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
