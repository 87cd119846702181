/**
 * The ONNX file surface against hostile files (issue: hardening, round three): external
 * locations that alias one file, the model itself or the applier's files; duplicate tensor
 * names (resolved as onnxruntime resolves them); parsing memory bounded by the file; offsets past
 * 4 GiB; FIFOs; the recorded model id; symlinks; permissions; quantization parameters of
 * onnxruntime's contrib ops; the changed-file check. Every refusal leaves every file of the
 * folder byte for byte as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, link, lstat, mkdtemp, open, readdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-web';
import { ModelFormatError, ModelMismatchError } from '../src/core/errors.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { buildPayload } from '../src/diff/build.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { applyToOnnxFile, openOnnxFile } from '../src/io/onnx/files.ts';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { DT, f32le, fBytes, fString, fVarint, graph, halfBits, model, node, tensor, valueInfo, varint } from './helpers/onnx-build.ts';

ort.env.wasm.numThreads = 1;
const hasher = await getHasher();

/** Close a store opened by openOnnxFile (written so the file also runs against code before close() existed, to show each finding there). */
async function closeStore(store: object): Promise<void> {
  await (store as { close?: () => Promise<void> }).close?.();
}

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'nd-onnx-hard-'));
}

/** Every file under `dir` (not following links) with its bytes, mode and link target: what a refusal must leave as it was. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(dir, p);
      if (e.isDirectory()) await walk(p);
      else if (e.isSymbolicLink()) out.set(rel, `link`);
      else if (e.isFile()) {
        const st = await stat(p);
        // Sparse giants: size and a hash of the first MiB stand for them.
        const bytes = st.size > 64 << 20 ? (await readFile(p, { encoding: null, flag: 'r' })).subarray(0, 0) : await readFile(p);
        out.set(rel, `${st.mode.toString(8)} ${st.size} ${Buffer.from(bytes).toString('base64')}`);
      } else out.set(rel, 'special');
    }
  };
  await walk(dir);
  return out;
}

async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

/** A model whose initializers `w<i>` each hold `n` floats in external data at the given locations and offsets. */
function externalModel(parts: { name: string; location: string; offset: number; n: number }[]): Uint8Array {
  return model(graph({
    initializers: parts.map((p) => tensor({ name: p.name, dims: [p.n], dataType: DT.FLOAT, external: { location: p.location, offset: String(p.offset), length: String(4 * p.n) } })),
  }));
}

/** A payload setting `values` into tensor `name` of `store` (dense, exact). */
function payloadFor(store: OnnxWeightStore | { read(name: string): Float32Array; list(): { name: string; shape: readonly number[] }[] }, name: string, values: number[], modelId = 'm', sequence = 1): Uint8Array {
  const old = store.read(name);
  const delta = Float32Array.from(values, (v, i) => v - old[i]);
  return buildPayload(hasher, store as never, [{ kind: 'dense', name, values: delta, codec: 'f32' }], { method: 'topk', modelId, sequence }).bytes;
}

// ---------------------------------------------------------------------------------------------
// 1. external locations: one resolution to real files, compared by identity

test('external locations that alias one file, the model itself or a file of the applier are refused, every file untouched', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'm.onnx');
    await writeFile(path.join(dir, 'w.bin'), Uint8Array.from(f32le([1, 2, 3, 4])));
    // A clean base to build the payload from: one location.
    const clean = externalModel([{ name: 'a', location: 'w.bin', offset: 0, n: 2 }, { name: 'b', location: 'w.bin', offset: 8, n: 2 }]);
    await writeFile(file, clean);
    const base = await openOnnxFile(file);
    const payloadA = payloadFor(base.contents, 'a', [5, 6]);
    await closeStore(base);
    await writeFile(path.join(dir, '.ndiff-state.json'), JSON.stringify({ format: 'neural-diff-state', version: 1, models: {} }));

    const cases: [string, Uint8Array, RegExp][] = [
      ['w.bin and ./w.bin', externalModel([{ name: 'a', location: 'w.bin', offset: 0, n: 2 }, { name: 'b', location: './w.bin', offset: 8, n: 2 }]), /is the same file as location "w\.bin"/],
      ['a hard link of w.bin', externalModel([{ name: 'a', location: 'w.bin', offset: 0, n: 2 }, { name: 'b', location: 'hard.bin', offset: 8, n: 2 }]), /is the same file as location "w\.bin"/],
      ['the model file itself', externalModel([{ name: 'a', location: 'w.bin', offset: 0, n: 2 }, { name: 'b', location: 'm.onnx', offset: 0, n: 2 }]), /is the same file as the model file itself/],
      ['the state file', externalModel([{ name: 'a', location: 'w.bin', offset: 0, n: 2 }, { name: 'b', location: '.ndiff-state.json', offset: 0, n: 2 }]), /names a file of the applier/],
    ];
    await link(path.join(dir, 'w.bin'), path.join(dir, 'hard.bin'));
    for (const [what, bytes, says] of cases) {
      await writeFile(file, bytes);
      const before = await snapshot(dir);
      await assert.rejects(applyToOnnxFile(file, payloadA), (e: unknown) => e instanceof ModelFormatError && says.test(e.message), what);
      assert.deepEqual(await snapshot(dir), before, `${what}: every file untouched`);
    }
    // The same location spelt once, used by two tensors, is the ordinary case and applies.
    await writeFile(file, clean);
    assert.equal((await applyToOnnxFile(file, payloadA)).status, 'applied');
    assert.deepEqual(Array.from(new Float32Array(Uint8Array.from(await readFile(path.join(dir, 'w.bin'))).buffer)), [5, 6, 3, 4]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// 2. duplicate names

test('duplicate names: nodes read the last initializer of a name, as onnxruntime-web runs it; the hidden one is read-only', async () => {
  // Two initializers "w" ([1] then [2]) and y = Identity(w).
  const bytes = model(graph({
    nodes: [node({ opType: 'Identity', inputs: ['w'], outputs: ['y'] })],
    initializers: [tensor({ name: 'w', dims: [1], dataType: DT.FLOAT, raw: f32le([1]) }), tensor({ name: 'w', dims: [1], dataType: DT.FLOAT, raw: f32le([2]) })],
    outputs: [valueInfo('y', [1])],
  }));
  const session = await ort.InferenceSession.create(bytes);
  assert.deepEqual(Array.from((await session.run({})).y.data as Float32Array), [2], 'onnxruntime uses the last initializer of a name');
  const store = new OnnxWeightStore(bytes.slice());
  const byName = new Map(store.list().map((e) => [e.name, e] as const));
  assert.equal(byName.get('w')?.patchable, false);
  assert.match(byName.get('w')?.readOnly ?? '', /hides it: onnxruntime uses the last initializer/);
  assert.equal(byName.get('w #2')?.patchable, true);

  // The attack of the issue: the DequantizeLinear scale "s" defined twice (2, then 4).
  const q = model(graph({
    nodes: [node({ opType: 'DequantizeLinear', inputs: ['x_q', 's'], outputs: ['y'] })],
    initializers: [
      tensor({ name: 'x_q', dims: [2], dataType: DT.INT8, raw: [1, 2] }),
      tensor({ name: 's', dims: [], dataType: DT.FLOAT, raw: f32le([2]) }),
      tensor({ name: 's', dims: [], dataType: DT.FLOAT, raw: f32le([4]) }),
    ],
    outputs: [valueInfo('y', [2])],
  }));
  const qs = await ort.InferenceSession.create(q);
  assert.deepEqual(Array.from((await qs.run({})).y.data as Float32Array), [4, 8], 'onnxruntime dequantizes with the last "s"');
  const qstore = new OnnxWeightStore(q.slice());
  const qn = new Map(qstore.list().map((e) => [e.name, e] as const));
  assert.equal(qn.get('s #2')?.patchable, false, 'the scale onnxruntime runs is read-only');
  assert.match(qn.get('s #2')?.readOnly ?? '', /scale of DequantizeLinear/);
  assert.equal(qn.get('s')?.patchable, false, 'the hidden one too');
  assert.deepEqual(Array.from(qstore.read('x_q')), [4, 8], 'the int8 weight dequantized with the scale onnxruntime uses');
});

test('naming is linear: 100,000 initializers of one name are named in one pass', { timeout: 120_000 }, () => {
  // Quadratic naming probed " #2" .. " #k" for the k-th repeat: 5e9 probes here, hours; linear, well under a second.
  const one = Uint8Array.from(fBytes(5, tensor({ name: 'w', dims: [1], dataType: DT.FLOAT, raw: f32le([1]) })));
  const n = 100_000;
  const inits = new Uint8Array(one.length * n);
  for (let i = 0; i < n; i++) inits.set(one, i * one.length);
  const head = Uint8Array.from([...fVarint(1, 8)]);
  const graphBody = inits;
  const graphField = Uint8Array.from([...varint((7 << 3) | 2), ...varint(graphBody.length)]);
  const bytes = new Uint8Array(head.length + graphField.length + graphBody.length);
  bytes.set(head, 0);
  bytes.set(graphField, head.length);
  bytes.set(graphBody, head.length + graphField.length);
  const store = new OnnxWeightStore(bytes);
  const names = store.list().map((e) => e.name);
  assert.equal(names.length, n + 1);
  assert.equal(names[n - 1], `w #${n}`);
  assert.equal(new Set(names).size, names.length);
});

// ---------------------------------------------------------------------------------------------
// 3. memory bounded by the file

/**
 * Peak RSS in MB of `ndiff fingerprint file` in a child process with a 512 MB heap cap (and its
 * exit code). The young generation is pinned to 16 MB semi-spaces, Node 20's and 22's default:
 * Node 24's V8 grows them to 64 MB, which adds up to ~150 MB of short-lived garbage to the peak
 * whatever the parser keeps (measured: 2M inputs, 339 MB at 64 MB semi-spaces, 169 MB at 8 MB,
 * the same heap in use after).
 */
function fingerprintInChild(file: string): { status: number | null; peakMb: number; out: string } {
  const script = `import { main } from './cli/ndiff.ts';
const code = await main(['fingerprint', ${JSON.stringify(file)}], { out: (l) => console.log(l), err: (l) => console.error(l), progress: () => {} });
console.log('PEAK', process.resourceUsage().maxRSS);
process.exit(code);`;
  const r = spawnSync(process.execPath, ['--max-old-space-size=512', '--max-semi-space-size=16', '--conditions=neural-diff-source', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: path.resolve('.') });
  const peak = Number(/PEAK (\d+)/.exec(r.stdout)?.[1] ?? NaN) / 1024;
  return { status: r.status, peakMb: peak, out: r.stdout + r.stderr };
}

test('parsing memory is bounded by the file: 20 MB of unpacked float_data and a node with 2M inputs', { timeout: 120_000 }, async (ctx) => {
  const dir = await tempDir();
  try {
    // One FLOAT tensor of 4M values, each its own fixed32 field (5 bytes a value): 20 MB.
    const n = 4_000_000;
    const body = new Uint8Array(5 * n);
    for (let i = 0; i < n; i++) body[5 * i] = (4 << 3) | 5; // float_data, fixed32; the value bytes stay 0
    const t = Uint8Array.from([...fBytes(1, varint(n)), ...fVarint(2, DT.FLOAT), ...fString(8, 'big')]);
    const tensorBytes = new Uint8Array(t.length + body.length);
    tensorBytes.set(t, 0);
    tensorBytes.set(body, t.length);
    const big = path.join(dir, 'unpacked.onnx');
    await writeFile(big, wrapGraph([[5, tensorBytes]]));
    const r1 = fingerprintInChild(big);
    assert.equal(r1.status, 0, r1.out);
    const fileMb = (await stat(big)).size / 2 ** 20;
    // Stated bound (docs/security/attacks.md, issue #32): parsing holds at most 16 bytes per byte of the file, plus the runtime.
    ctx.diagnostic(`unpacked float_data: ${fileMb.toFixed(1)} MB file, peak RSS ${r1.peakMb.toFixed(0)} MB`);
    assert.ok(r1.peakMb < 16 * fileMb + 200, `peak ${r1.peakMb.toFixed(0)} MB for a ${fileMb.toFixed(0)} MB file`);

    // A node with 2M inputs, every one naming the same initializer "a": 3 bytes an input, 6 MB.
    const m = 2_000_000;
    const inputs = new Uint8Array(3 * m);
    for (let i = 0; i < m; i++) inputs.set([0x0a, 1, 0x61], 3 * i);
    const tail = Uint8Array.from([...fString(2, 'y'), ...fString(4, 'Sum')]);
    const nodeBytes = new Uint8Array(inputs.length + tail.length);
    nodeBytes.set(inputs, 0);
    nodeBytes.set(tail, inputs.length);
    const wide = path.join(dir, 'wide.onnx');
    await writeFile(wide, wrapGraph([[1, nodeBytes], [5, Uint8Array.from(tensor({ name: 'a', dims: [1], dataType: DT.FLOAT, raw: f32le([1]) }))]]));
    const r2 = fingerprintInChild(wide);
    assert.equal(r2.status, 0, r2.out);
    const wideMb = (await stat(wide)).size / 2 ** 20;
    ctx.diagnostic(`2M inputs: ${wideMb.toFixed(1)} MB file, peak RSS ${r2.peakMb.toFixed(0)} MB`);
    assert.ok(r2.peakMb < 16 * wideMb + 200, `peak ${r2.peakMb.toFixed(0)} MB for a ${wideMb.toFixed(0)} MB file`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** A ModelProto (ir_version 8) whose graph holds these fields (field number, message bytes). */
function wrapGraph(fields: [number, Uint8Array][]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [f, b] of fields) parts.push(Uint8Array.from([...varint((f << 3) | 2), ...varint(b.length)]), b);
  const g = concat(parts);
  return concat([Uint8Array.from(fVarint(1, 8)), Uint8Array.from([...varint((7 << 3) | 2), ...varint(g.length)]), g]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

// ---------------------------------------------------------------------------------------------
// 4. offsets past 4 GiB, streamed

test('a tensor at an offset past 4 GiB of a sparse external file: fingerprinted, patched and read back; the file stays sparse', { timeout: 120_000 }, async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'm.onnx');
    const data = path.join(dir, 'big.bin');
    const far = 4 * 2 ** 30 + 4096; // past 2^32
    await writeFile(data, new Uint8Array(0));
    await truncate(data, far + 16);
    const fh = await open(data, 'r+');
    await fh.write(Uint8Array.from(f32le([1, 2, 3, 4])), 0, 16, far);
    await fh.write(Uint8Array.from(f32le([7, 8])), 0, 8, 0);
    await closeStore(fh);
    await writeFile(file, externalModel([{ name: 'near', location: 'big.bin', offset: 0, n: 2 }, { name: 'far', location: 'big.bin', offset: far, n: 4 }]));
    const disk = await openOnnxFile(file);
    assert.deepEqual(Array.from(disk.read('far')), [1, 2, 3, 4]);
    const payload = payloadFor(disk.contents, 'far', [10, 20, 30, 40]);
    await closeStore(disk);
    const r = await applyToOnnxFile(file, payload, { state: null });
    assert.equal(r.status, 'applied');
    assert.deepEqual(r.filesWritten, [data]);
    const after = await open(data, 'r');
    const buf = new Uint8Array(16);
    await after.read(buf, 0, 16, far);
    const head = new Uint8Array(8);
    await after.read(head, 0, 8, 0);
    await closeStore(after);
    assert.deepEqual(Array.from(new Float32Array(buf.buffer)), [10, 20, 30, 40]);
    assert.deepEqual(Array.from(new Float32Array(head.buffer)), [7, 8]);
    const st = await stat(data);
    assert.equal(st.size, far + 16);
    assert.ok(st.blocks * 512 < 64 << 20, `still sparse: ${st.blocks * 512} bytes on disk`);
    const check = await openOnnxFile(file);
    assert.equal(fingerprintStore(hasher, check).fingerprint, r.targetFingerprint);
    await closeStore(check);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// 5. FIFOs

test('a FIFO as the model or as its external data is refused at once, never waited on', { timeout: 60_000 }, async () => {
  const dir = await tempDir();
  try {
    execFileSync('mkfifo', [path.join(dir, 'pipe.onnx'), path.join(dir, 'pipe.bin')]);
    await assert.rejects(openOnnxFile(path.join(dir, 'pipe.onnx')), (e: unknown) => e instanceof ModelFormatError && /FIFO/.test(e.message));
    const file = path.join(dir, 'm.onnx');
    await writeFile(file, externalModel([{ name: 'a', location: 'pipe.bin', offset: 0, n: 2 }]));
    const before = await snapshot(dir);
    const r = await ndiff('fingerprint', file);
    assert.equal(r.code, 7, r.err);
    assert.match(r.err, /FIFO/);
    const payload = buildPayload(hasher, new OnnxWeightStore(externalModel([{ name: 'a', location: 'w.bin', offset: 0, n: 2 }]), { external: { 'w.bin': new Uint8Array(8) } }) as never, [{ kind: 'dense', name: 'a', values: Float32Array.of(1, 1), codec: 'f32' }], { method: 'topk', modelId: 'm' }).bytes;
    await assert.rejects(applyToOnnxFile(file, payload), (e: unknown) => e instanceof ModelFormatError && /FIFO/.test(e.message));
    assert.deepEqual(await snapshot(dir), before);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// 6. empty half tensors

test('a payload naming an empty FLOAT16 or BFLOAT16 tensor applies', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'm.onnx');
    await writeFile(file, model(graph({
      initializers: [
        tensor({ name: 'h', dims: [0], dataType: DT.FLOAT16 }),
        tensor({ name: 'b', dims: [0], dataType: DT.BFLOAT16, raw: [] }),
        tensor({ name: 'x', dims: [2], dataType: DT.FLOAT16, raw: halfBits([1, 2]).flatMap((h) => [h & 0xff, h >> 8]) }),
      ],
    })));
    const disk = await openOnnxFile(file);
    const payload = buildPayload(hasher, disk.contents, [
      { kind: 'dense', name: 'h', values: new Float32Array(0), codec: 'f32' },
      { kind: 'dense', name: 'b', values: new Float32Array(0), codec: 'f32' },
      { kind: 'dense', name: 'x', values: Float32Array.of(1, 0), codec: 'f32' },
    ], { method: 'topk', modelId: 'm' }).bytes;
    await closeStore(disk);
    const r = await applyToOnnxFile(file, payload, { state: null });
    assert.equal(r.status, 'applied');
    const check = await openOnnxFile(file);
    assert.deepEqual(Array.from(check.read('x')), [2, 2]);
    await closeStore(check);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// 7. the recorded model id

test('an ONNX file records the model id of its first apply; a payload of another id is refused, file and state untouched', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'kws.onnx');
    const v1 = model(graph({ initializers: [tensor({ name: 'w', dims: [2], dataType: DT.FLOAT, raw: f32le([1, 1]) })] }));
    await writeFile(file, v1);
    const s1 = new OnnxWeightStore(v1.slice());
    const toV2 = payloadFor(s1, 'w', [2, 2], 'kws', 2);
    const beta = payloadFor(new OnnxWeightStore(model(graph({ initializers: [tensor({ name: 'w', dims: [2], dataType: DT.FLOAT, raw: f32le([2, 2]) })] }))), 'w', [1, 1], 'kws-beta', 1);
    assert.equal((await applyToOnnxFile(file, toV2)).status, 'applied');
    assert.match(await readFile(file + '.ndiff-model.json', 'utf8'), /"modelId":"kws"/);
    const before = await snapshot(dir);
    await assert.rejects(applyToOnnxFile(file, beta), (e: unknown) => e instanceof ModelMismatchError && /payload is for model "kws-beta", this device holds "kws"/.test(e.message));
    assert.deepEqual(await snapshot(dir), before, 'file, state and record untouched');
    const r = await ndiff('apply', '--model', file, '--patch', await writeTemp(dir, beta));
    assert.equal(r.code, 4, r.err);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

async function writeTemp(dir: string, bytes: Uint8Array): Promise<string> {
  const p = path.join(await mkdtemp(path.join(tmpdir(), 'nd-payload-')), 'p.ndiff');
  await writeFile(p, bytes);
  return p;
}

// ---------------------------------------------------------------------------------------------
// 8. symlinks

test('symlinks: an external location through a symlinked folder or file is refused with nothing written anywhere; a symlinked model path patches the real file', async () => {
  const dir = await tempDir();
  const outside = await tempDir();
  try {
    await writeFile(path.join(outside, 'w.bin'), Uint8Array.from(f32le([1, 2])));
    await symlink(outside, path.join(dir, 'sub'));
    await symlink(path.join(outside, 'w.bin'), path.join(dir, 'linked.bin'));
    const file = path.join(dir, 'm.onnx');
    const payload = payloadFor(new OnnxWeightStore(externalModel([{ name: 'a', location: 'x.bin', offset: 0, n: 2 }]), { external: { 'x.bin': Uint8Array.from(f32le([1, 2])) } }), 'a', [3, 4]);
    for (const location of ['sub/w.bin', 'linked.bin']) {
      await writeFile(file, externalModel([{ name: 'a', location, offset: 0, n: 2 }]));
      const [b1, b2] = [await snapshot(dir), await snapshot(outside)];
      await assert.rejects(applyToOnnxFile(file, payload), (e: unknown) => e instanceof ModelFormatError && /symbolic link/.test(e.message), location);
      assert.deepEqual(await snapshot(dir), b1);
      assert.deepEqual(await snapshot(outside), b2, 'nothing written outside the model folder');
    }
    // The model path as a link: the real file is patched, the link stays a link.
    const real = path.join(outside, 'real.onnx');
    const inline = model(graph({ initializers: [tensor({ name: 'a', dims: [2], dataType: DT.FLOAT, raw: f32le([1, 2]) })] }));
    await writeFile(real, inline);
    await symlink(real, path.join(dir, 'alias.onnx'));
    const r = await applyToOnnxFile(path.join(dir, 'alias.onnx'), payloadFor(new OnnxWeightStore(inline.slice()), 'a', [3, 4]), { state: null });
    assert.deepEqual(r.filesWritten, [real]);
    assert.ok((await lstat(path.join(dir, 'alias.onnx'))).isSymbolicLink(), 'the link stays a link');
    assert.deepEqual(Array.from(new OnnxWeightStore(new Uint8Array(await readFile(real))).read('a')), [3, 4]);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// weak points

test('an apply keeps the files\' permissions: a 0600 model and external file stay 0600', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'm.onnx');
    await writeFile(path.join(dir, 'w.bin'), Uint8Array.from(f32le([1, 2])));
    await writeFile(file, model(graph({ initializers: [
      tensor({ name: 'a', dims: [2], dataType: DT.FLOAT, external: { location: 'w.bin', offset: '0', length: '8' } }),
      tensor({ name: 'i', dims: [1], dataType: DT.FLOAT, raw: f32le([5]) }),
    ] })));
    await chmod(file, 0o600);
    await chmod(path.join(dir, 'w.bin'), 0o600);
    const disk = await openOnnxFile(file);
    const payload = buildPayload(hasher, disk.contents, [
      { kind: 'dense', name: 'a', values: Float32Array.of(1, 1), codec: 'f32' },
      { kind: 'dense', name: 'i', values: Float32Array.of(1), codec: 'f32' },
    ], { method: 'topk', modelId: 'm' }).bytes;
    await closeStore(disk);
    assert.equal((await applyToOnnxFile(file, payload, { state: null })).filesWritten.length, 2);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(path.join(dir, 'w.bin'))).mode & 0o777, 0o600);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('ndiff fingerprint X.onnx --json prints the fingerprint; --tensors escapes names; an error quoting a million dimensions is bounded', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'm.onnx');
    await writeFile(file, model(graph({ initializers: [tensor({ name: 'evil\u001b[2J\u202ename', dims: [1], dataType: DT.FLOAT, raw: f32le([1]) })] })));
    const j = await ndiff('fingerprint', file, '--json');
    assert.equal(j.code, 0, j.err);
    const doc = JSON.parse(j.out);
    assert.match(doc.fingerprint, /^[0-9a-f]{16}$/);
    const t = await ndiff('fingerprint', file, '--tensors');
    assert.doesNotMatch(t.out, /\u001b|\u202e/);
    assert.match(t.out, /evil\\u001b\[2J\\u202ename/);
    // A tensor of 10^6 dimensions whose data does not match its shape.
    const dims = new Array(1_000_000).fill(1);
    const bad = path.join(dir, 'bad.onnx');
    await writeFile(bad, wrapGraph([[5, concat([Uint8Array.from(fBytes(1, dims.flatMap((d) => varint(d)))), Uint8Array.from([...fVarint(2, DT.FLOAT), ...fString(8, 'w'), ...fBytes(9, [1, 2])])])]]));
    const e = await ndiff('fingerprint', bad);
    assert.equal(e.code, 7);
    assert.ok(e.err.length < 10_000, `error of ${e.err.length} characters`);
    assert.match(e.err, /needs 4 bytes of raw_data, found 2/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('quantization parameters of com.microsoft DequantizeLinear and of QLinearMatMul are read-only', () => {
  const f = (name: string, x: number) => tensor({ name, dims: [], dataType: DT.FLOAT, raw: f32le([x]) });
  const z = (name: string) => tensor({ name, dims: [], dataType: DT.INT8, raw: [0] });
  const bytes = model(graph({
    nodes: [
      node({ opType: 'DequantizeLinear', domain: 'com.microsoft', inputs: ['q', 'ms', 'mz'], outputs: ['d'] }),
      node({ opType: 'QLinearMatMul', inputs: ['a', 'as', 'az', 'b', 'bs', 'bz', 'ys', 'yz'], outputs: ['y'] }),
    ],
    initializers: [
      tensor({ name: 'q', dims: [1], dataType: DT.INT8, raw: [1] }), f('ms', 0.5), z('mz'),
      tensor({ name: 'a', dims: [1, 1], dataType: DT.INT8, raw: [1] }), f('as', 0.1), z('az'),
      tensor({ name: 'b', dims: [1, 1], dataType: DT.INT8, raw: [1] }), f('bs', 0.2), z('bz'), f('ys', 0.3), z('yz'),
    ],
  }));
  const store = new OnnxWeightStore(bytes);
  const byName = new Map(store.list().map((e) => [e.name, e] as const));
  for (const name of ['ms', 'as', 'bs', 'ys']) {
    assert.equal(byName.get(name)?.patchable, false, name);
    assert.match(byName.get(name)?.readOnly ?? '', /scale of .*(DequantizeLinear|QLinearMatMul) node/, name);
  }
  assert.throws(() => store.values('ms'), ModelMismatchError);
});

test('the changed-file check sees a file rewritten in place mid-apply with its size and mtime restored (ctime)', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'm.onnx');
    const w = path.join(dir, 'w.bin');
    await writeFile(w, Uint8Array.from(f32le([1, 2])));
    await writeFile(file, externalModel([{ name: 'a', location: 'w.bin', offset: 0, n: 2 }]));
    const disk = await openOnnxFile(file);
    const payload = payloadFor(disk.contents, 'a', [3, 4]);
    await closeStore(disk);
    // Once the new file is written (the apply reads it back), another writer changes w.bin in place and restores its mtime
    // (a whole second, set first, so it comes back exactly; only ctime tells).
    const mtime = 1_700_000_000;
    utimesSync(w, mtime, mtime);
    let tampered = false;
    const sneaky: Hasher = {
      ...hasher,
      create64: (seed: bigint) => {
        if (!tampered && readdirSync(dir).some((n) => n.includes('.tmp-'))) {
          tampered = true;
          writeFileSync(w, Uint8Array.from(f32le([9, 9])));
          utimesSync(w, mtime, mtime);
        }
        return hasher.create64(seed);
      },
    };
    await assert.rejects(applyToOnnxFile(file, payload, { state: null, hasher: sneaky }), (e: unknown) => e instanceof ModelFormatError && /changed on disk while it was being patched/.test(e.message));
    assert.deepEqual(Array.from(new Float32Array(Uint8Array.from(readFileSync(w)).buffer)), [9, 9], 'the other writer\'s bytes stay');
    assert.deepEqual((await readdir(dir)).sort(), ['m.onnx', 'w.bin']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});




test('crash injection on an ONNX apply with external data: after a kill at the first, middle and last operations, recovery gives the old or the new model and a re-run finishes', { timeout: 300_000 }, async () => {
  const { crashOnnx } = await import('./crash/onnx.ts');
  const s = await crashOnnx({ points: (n) => [1, Math.ceil(n / 2), n] });
  assert.equal(s.kills, 3);
  assert.deepEqual(s.bad, []);
  assert.equal(s.sawOld + s.sawNew, 3);
});
