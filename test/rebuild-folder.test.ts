/**
 * Structural payloads for TF.js models (format v7 with `fk` = `tfjs` and the file list `fl`,
 * FORMAT.md §17): built by structuralDiffFiles over the model JSON and its shards, rebuilt in
 * memory by neural-diff/rebuild (rebuildModelFiles) and on disk by rebuildModelDir with the
 * folder update's journal. Tensors added, removed, renamed, reshaped and a changed graph each end
 * at the target's fingerprint; hostile file lists and deltas are refused with the folder byte for
 * byte untouched; a crash at each step leaves the old or the new model, and recovery finishes.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Packr } from 'msgpackr';
import { structuralDiffFiles } from '../src/diff/structural.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { rebuildModelFiles } from '../src/apply/rebuild.ts';
import { applyPayload } from '../src/apply/apply.ts';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { HealthCheckError, PayloadFormatError, PendingUpdateError, TargetMismatchError, UnsupportedVersionError } from '../src/core/errors.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { concatModelFiles, type ModelFile } from '../src/core/model-files.ts';
import { TfjsFilesStore } from '../src/io/tfjs/files-store.ts';
import { rebuildModelDir, readTfjsModelFiles, TFJS_REBUILD } from '../src/io/tfjs/folder-rebuild.ts';
import { applyToModelDir, recoverModelDir } from '../src/io/tfjs/folder-update.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { nodeFileOps, type FileOps } from '../src/io/durable/durable.ts';

const hasher = await getHasher();

function noise(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1).map(Math.fround);
}
const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
const i32 = (xs: number[]) => new Uint8Array(new Int32Array(xs).buffer);
const concat = (parts: Uint8Array[]) => concatModelFiles(parts.map((bytes) => ({ path: '', bytes })));

interface W { name: string; shape: number[]; dtype?: string; bytes: Uint8Array; quantization?: Record<string, unknown> }

/** A graph model's files: model.json, then `shards` shard files of the one group (cut evenly by entries). */
function tfjsModel(nodes: string[], weights: W[], shards = 2, prefix = 'group1'): ModelFile[] {
  const data = concat(weights.map((w) => w.bytes));
  const cut = Math.ceil(data.length / shards);
  const paths = Array.from({ length: shards }, (_, i) => `${prefix}-shard${i + 1}of${shards}.bin`);
  const modelJson = {
    format: 'graph-model',
    generatedBy: 'test',
    modelTopology: { node: nodes.map((n) => ({ name: n, op: n.startsWith('x') ? 'Placeholder' : 'Conv2D' })) },
    weightsManifest: [{ paths, weights: weights.map((w) => ({ name: w.name, shape: w.shape, dtype: w.dtype ?? 'float32', ...(w.quantization ? { quantization: w.quantization } : {}) })) }],
  };
  return [
    { path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify(modelJson, null, 1)) },
    ...paths.map((p, i) => ({ path: p, bytes: data.slice(i * cut, Math.min(data.length, (i + 1) * cut)) })),
  ];
}

const CONV = noise(256, 1);
const BIAS = noise(64, 2);
const OLD = noise(48, 3);
const FLAT = noise(60, 4);
const HEAD = noise(128, 5);
const Q = Uint8Array.from({ length: 40 }, (_, i) => (i * 37) & 255);
const quant = { dtype: 'uint8', scale: 0.01, min: -1 };

function base(): ModelFile[] {
  return tfjsModel(['x', 'conv', 'add'], [
    { name: 'conv/w', shape: [16, 16], bytes: f32(CONV) },
    { name: 'bias', shape: [64], bytes: f32(BIAS) },
    { name: 'old', shape: [48], bytes: f32(OLD) },
    { name: 'shape', shape: [2], dtype: 'int32', bytes: i32([-1, 16]) },
    { name: 'q', shape: [40], bytes: Q, quantization: quant },
    { name: 'flat', shape: [60], bytes: f32(FLAT) },
  ]);
}
const nudged = (xs: number[], every: number) => xs.map((x, i) => (i % every === 0 ? Math.fround(x + 0.01) : x));

/** Every kind of change at once: conv/w retrained, bias renamed, old removed, flat reshaped, head added, q requantized, a node added, 3 shards. */
function target(): ModelFile[] {
  const q2 = Q.slice();
  q2[3] ^= 1;
  return tfjsModel(['x', 'conv', 'add', 'relu'], [
    { name: 'head/w', shape: [8, 16], bytes: f32(HEAD) },
    { name: 'conv/w', shape: [16, 16], bytes: f32(nudged(CONV, 7)) },
    { name: 'stem/bias', shape: [64], bytes: f32(BIAS) },
    { name: 'shape', shape: [2], dtype: 'int32', bytes: i32([-1, 16]) },
    { name: 'q', shape: [40], bytes: q2, quantization: quant },
    { name: 'flat', shape: [6, 10], bytes: f32(FLAT) },
  ], 3, 'weights');
}

const fp = (files: ModelFile[]) => fingerprintStore(hasher, new TfjsFilesStore(files)).fingerprint;
const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

async function folderOf(files: ModelFile[]): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-rebuild-folder-'));
  for (const f of files) await writeFile(path.join(dir, f.path), f.bytes);
  return dir;
}
/** Every file of a folder, name -> bytes. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of (await readdir(dir)).sort()) out.set(name, Buffer.from(await readFile(path.join(dir, name))).toString('hex'));
  return out;
}
async function folderFingerprint(dir: string): Promise<string> {
  return fingerprintStore(hasher, await openTfjsModelDir(dir)).fingerprint;
}

const built = structuralDiffFiles(hasher, base(), target(), TFJS_REBUILD, { modelId: 'net', sequence: 2 });

describe('structural payload for a TF.js model', () => {
  test('the in-memory store fingerprints a folder as the folder store does', async () => {
    const dir = await folderOf(base());
    try {
      assert.equal(fp(base()), await folderFingerprint(dir));
      assert.deepEqual((await readTfjsModelFiles(dir, 'model.json')).map((f) => f.path), base().map((f) => f.path));
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  test('the change is named; the payload lists the target files and is smaller than them', () => {
    const c = built.change;
    assert.deepEqual(c.added, ['head/w']);
    assert.deepEqual(c.removed, ['old']);
    assert.deepEqual(c.renamed, [{ from: 'bias', to: 'stem/bias' }]);
    assert.deepEqual(c.reshaped.map((r) => r.name), ['flat']);
    assert.equal(c.frameChanged, true);
    assert.equal(c.keptChanged, 2); // conv/w and q
    assert.equal(built.header.fileKind, 'tfjs');
    assert.deepEqual(built.header.files, target().map((f) => ({ path: f.path, length: f.bytes.length })));
    const doc = readMsgpack(built.bytes) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc), ['nd', 'm', 'id', 'bf', 'if', 'tf', 'sq', 'bb', 'cb', 'x', 'fk', 'fl', 'rb', 'pv']);
    assert.ok(built.bytes.length < concat(target().map((f) => f.bytes)).length);
  });

  test('rebuilt in memory, it ends at the target files byte for byte', async () => {
    const r = await rebuildModelFiles(base(), built.bytes, TFJS_REBUILD);
    assert.equal(r.status, 'applied');
    assert.equal(fp(r.files!), fp(target()));
    assert.deepEqual(r.files!.map((f) => f.path), target().map((f) => f.path));
    r.files!.forEach((f, i) => assert.ok(equal(f.bytes, target()[i].bytes), f.path));
    const again = await rebuildModelFiles(target(), built.bytes, TFJS_REBUILD);
    assert.equal(again.status, 'already-applied');
  });

  test('each kind of change alone round-trips to the target', async () => {
    const W0 = noise(32, 9);
    const one = (nodes: string[], ws: W[]) => tfjsModel(nodes, ws, 1);
    const b = one(['x', 'a'], [{ name: 'a', shape: [32], bytes: f32(W0) }, { name: 'b', shape: [8], bytes: f32(noise(8, 10)) }]);
    const cases: [string, ModelFile[]][] = [
      ['added', one(['x', 'a'], [{ name: 'a', shape: [32], bytes: f32(W0) }, { name: 'b', shape: [8], bytes: f32(noise(8, 10)) }, { name: 'c', shape: [4], bytes: f32(noise(4, 11)) }])],
      ['removed', one(['x', 'a'], [{ name: 'a', shape: [32], bytes: f32(W0) }])],
      ['renamed', one(['x', 'a'], [{ name: 'a2', shape: [32], bytes: f32(W0) }, { name: 'b', shape: [8], bytes: f32(noise(8, 10)) }])],
      ['reshaped', one(['x', 'a'], [{ name: 'a', shape: [4, 8], bytes: f32(W0) }, { name: 'b', shape: [8], bytes: f32(noise(8, 10)) }])],
      ['graph', one(['x', 'a', 'relu'], [{ name: 'a', shape: [32], bytes: f32(W0) }, { name: 'b', shape: [8], bytes: f32(noise(8, 10)) }])],
    ];
    for (const [name, t] of cases) {
      const p = structuralDiffFiles(hasher, b, t, TFJS_REBUILD, { modelId: 'm', sequence: 1 });
      const r = await rebuildModelFiles(b, p.bytes, TFJS_REBUILD);
      assert.equal(fp(r.files!), fp(t), name);
      r.files!.forEach((f, i) => assert.ok(equal(f.bytes, t[i].bytes), `${name}: ${f.path}`));
      const dir = await folderOf(b);
      try {
        const d = await rebuildModelDir(dir, p.bytes);
        assert.equal(d.status, 'applied', name);
        assert.equal(await folderFingerprint(dir), fp(t), name);
      } finally {
        await rm(dir, { recursive: true });
      }
    }
  });

  test('deterministic: the same files give the same payload bytes', () => {
    assert.ok(equal(structuralDiffFiles(hasher, base(), target(), TFJS_REBUILD, { modelId: 'net', sequence: 2 }).bytes, built.bytes));
  });

  test('a live store refuses it, saying to rebuild the files and reload; applyToModelDir (and so ndiff update) routes it to the rebuild', async () => {
    const live = new MemoryWeightStore({ w: { shape: [1], data: new Float32Array(1) } });
    await assert.rejects(applyPayload(live, built.bytes), (e: Error) => e instanceof UnsupportedVersionError && /structural payload/.test(e.message) && /reload the model/.test(e.message));
    const dir = await folderOf(base());
    try {
      const before = await snapshot(dir);
      let seen = '';
      await assert.rejects(applyToModelDir(dir, built.bytes, { state: null, healthCheck: ({ store, result }) => { seen = fingerprintStore(hasher, store).fingerprint + result?.targetFingerprint; return false; } }), HealthCheckError);
      assert.equal(seen, fp(target()) + fp(target()), 'the health check sees the rebuilt model');
      assert.deepEqual(await snapshot(dir), before);
      const r = await applyToModelDir(dir, built.bytes, { expectedModelId: 'net' });
      assert.equal(r.status, 'applied');
      assert.equal(r.targetFingerprint, fp(target()));
      assert.equal(r.sequenceRecorded, true);
      assert.deepEqual(r.changedTensors.sort(), ['conv/w', 'q']);
      assert.equal(await folderFingerprint(dir), fp(target()));
      assert.equal((await applyToModelDir(dir, built.bytes)).status, 'already-applied');
    } finally {
      await rm(dir, { recursive: true });
    }
  });
});

describe('a TF.js folder rebuilt on disk', () => {
  test('switches to the target, deletes the old shards after the confirmation, records the sequence', async () => {
    const dir = await folderOf(base());
    try {
      const r = await rebuildModelDir(dir, built.bytes, { expectedModelId: 'net' });
      assert.equal(r.status, 'applied');
      assert.equal(r.sequenceRecorded, true);
      assert.equal(await folderFingerprint(dir), fp(target()));
      const names = await readdir(dir);
      assert.deepEqual(names.filter((n) => /^group1-shard\d+of\d+\.bin$/.test(n) || /\.prev$|\.tmp-|journal/.test(n)), []);
      // The shards hold the target's bytes, under the device's own names.
      const onDisk = await readTfjsModelFiles(dir, 'model.json');
      onDisk.slice(1).forEach((f, i) => assert.ok(equal(f.bytes, target()[i + 1].bytes)));
      const again = await rebuildModelDir(dir, built.bytes);
      assert.equal(again.status, 'already-applied');
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  test('a folder an earlier update rewrote (shards under the device\'s own names, the manifest written again) takes a payload built from the stored files', async () => {
    // v2 keeps v1's structure with new conv/w values: shipped as a value payload, which the
    // folder update writes as new shards named by their content and a model.json whose manifest
    // is written again. v3 then changes the structure, and its payload is built from v2's files
    // as the release stores them, not as this device holds them.
    const v2 = tfjsModel(['x', 'conv', 'add'], [
      { name: 'conv/w', shape: [16, 16], bytes: f32(nudged(CONV, 3)) },
      { name: 'bias', shape: [64], bytes: f32(BIAS) },
      { name: 'old', shape: [48], bytes: f32(OLD) },
      { name: 'shape', shape: [2], dtype: 'int32', bytes: i32([-1, 16]) },
      { name: 'q', shape: [40], bytes: Q, quantization: quant },
      { name: 'flat', shape: [60], bytes: f32(FLAT) },
    ]);
    const dir = await folderOf(base());
    try {
      const values = exactDiff(hasher, new TfjsFilesStore(base()), new TfjsFilesStore(v2), { modelId: 'net', sequence: 2 });
      assert.equal((await applyToModelDir(dir, values.bytes, { expectedModelId: 'net' })).status, 'applied');
      const held = await readTfjsModelFiles(dir, 'model.json');
      assert.equal(fp(held), fp(v2));
      assert.ok(!equal(held[0].bytes, v2[0].bytes), 'the device\'s model.json is not the stored one');
      assert.ok(held.slice(1).some((f, i) => f.path !== v2[i + 1].path), 'the device named its shards');
      const v3 = structuralDiffFiles(hasher, v2, target(), TFJS_REBUILD, { modelId: 'net', sequence: 3 });
      // Both the stored files and the device's read as the same base: the payload reaches the target from either.
      assert.equal((await rebuildModelFiles(v2, v3.bytes, TFJS_REBUILD)).status, 'applied');
      const r = await rebuildModelDir(dir, v3.bytes, { expectedModelId: 'net' });
      assert.equal(r.status, 'applied');
      assert.equal(await folderFingerprint(dir), fp(target()));
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  test('a failed health check rolls back to the base byte for byte', async () => {
    const dir = await folderOf(base());
    try {
      const before = await snapshot(dir);
      await assert.rejects(rebuildModelDir(dir, built.bytes, { healthCheck: () => false, state: null }), HealthCheckError);
      assert.deepEqual(await snapshot(dir), before);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  test('hostile payloads are refused before any write, the folder byte for byte untouched', async () => {
    const packr = new Packr({ useRecords: false, variableMapSize: true });
    const doc = () => ({ ...(readMsgpack(built.bytes) as Record<string, unknown>) });
    const pack = (o: Record<string, unknown>) => new Uint8Array(packr.pack(o));
    const fl = doc().fl as [string, number][];
    const withFl = (f: (l: [string, number][]) => unknown) => pack({ ...doc(), fl: f(fl.map((e) => [...e] as [string, number])) });
    const rename = (i: number, p: string) => withFl((l) => ((l[i][0] = p), l));
    const baseBytes = concat(base().map((f) => f.bytes));
    const cases: [string, Uint8Array, RegExp][] = [
      ['path traversal', rename(1, '../evil.bin'), /"\.\." segment/],
      ['absolute path', rename(1, '/etc/passwd'), /absolute/],
      ['backslash', rename(1, 'a\\b.bin'), /backslash/],
      ['drive letter', rename(1, 'C:x.bin'), /colon/],
      ['the journal', rename(1, '.ndiff-journal.json'), /updater's files/],
      ['the lock', rename(2, '.ndiff-apply.lock'), /updater's files/],
      ['a kept model.json', rename(2, 'model.json.prev'), /updater's files/],
      ['a temp file', rename(2, 'weights-shard1of3.bin.tmp-1-ab'), /temporary/],
      ['a retired shard name', rename(2, 'x.ndiff-prev'), /updater's files/],
      ['duplicate names', rename(2, fl[1][0]), /twice/],
      ['duplicate names by case', rename(2, fl[1][0].toUpperCase()), /twice/],
      ['a shard named like a model file', rename(2, 'other.json'), /model JSON/],
      ['the model JSON not first', withFl((l) => [l[1], l[0], ...l.slice(2)]), /model JSON/],
      ['no file list', pack(Object.fromEntries(Object.entries(doc()).filter(([k]) => k !== 'fl'))), /"fl"/],
      ['too many files', withFl(() => Array.from({ length: 5000 }, (_, i) => [`f${i}.bin`, 0])), /4096|at most/],
      ['lengths not the delta output', withFl((l) => ((l[1][1] += 1), l)), /"fl" lists/],
      ['copy out of range', pack({ ...doc(), rb: forgedCopy(baseBytes.length) }), /base|range|past/],
      ['frame grows past the cap', pack({ ...doc(), rb: grownDelta(baseBytes.length) }), /limit/],
    ];
    for (const [name, bytes, message] of cases) {
      const dir = await folderOf(base());
      try {
        const before = await snapshot(dir);
        await assert.rejects(rebuildModelDir(dir, bytes, { maxFileBytes: 1 << 20 }), (e: Error) => {
          assert.ok(e instanceof PayloadFormatError || e instanceof TargetMismatchError, `${name}: ${e.name} ${e.message}`);
          assert.match(e.message, message, name);
          return true;
        }, name);
        assert.deepEqual(await snapshot(dir), before, name);
      } finally {
        await rm(dir, { recursive: true });
      }
    }
  });
});

/** A delta over a base of `n` bytes whose one instruction copies past its end. */
function forgedCopy(n: number): Uint8Array {
  const v = (x: number) => { const o: number[] = []; do { let b = x & 0x7f; x = Math.floor(x / 128); if (x) b |= 0x80; o.push(b); } while (x); return o; };
  const want = built.header.files!.reduce((s, f) => s + f.length, 0);
  return Uint8Array.from([...v(want), ...v(n), 1, 0, 0, ...v(4 * want + 1), ...v(2 * 8)]);
}
/** A delta declaring an output past any cap the device sets. */
function grownDelta(n: number): Uint8Array {
  const v = (x: number) => { const o: number[] = []; do { let b = x & 0x7f; x = Math.floor(x / 128); if (x) b |= 0x80; o.push(b); } while (x); return o; };
  return Uint8Array.from([...v(2 ** 31), ...v(n), 1, 0, 0, 1]);
}

describe('a crash during a TF.js folder rebuild', () => {
  test('power lost after each file operation: the folder is the base or the target, and recovery then the same rebuild end at the target', async () => {
    // Count the operations of a whole rebuild, then stop at each in turn.
    const count = await folderOf(base());
    let ops = 0;
    const counting = countingOps(() => ops++);
    await rebuildModelDir(count, built.bytes, { fileOps: counting, state: null });
    await rm(count, { recursive: true });
    assert.ok(ops > 5, `${ops} file operations`);
    const [b, t] = [fp(base()), fp(target())];
    for (let stop = 0; stop < ops; stop++) {
      const dir = await folderOf(base());
      try {
        let n = 0;
        const crashing = countingOps(() => {
          // From this operation on, nothing reaches the disk (the process is gone).
          if (n++ >= stop) throw new Error('power lost');
        });
        await assert.rejects(rebuildModelDir(dir, built.bytes, { fileOps: crashing, state: null }));
        // What a loader sees now: the base or the target.
        const now = await folderFingerprint(dir);
        assert.ok(now === b || now === t, `stop ${stop}: ${now}`);
        await recoverModelDir(dir);
        const after = await folderFingerprint(dir);
        assert.ok(after === b || after === t, `stop ${stop} recovered: ${after}`);
        assert.deepEqual((await readdir(dir)).filter((f) => /\.prev$|\.tmp-|journal/.test(f)), [], `stop ${stop}`);
        const r = await rebuildModelDir(dir, built.bytes, { state: null });
        assert.equal(await folderFingerprint(dir), t, `stop ${stop}: ${r.status}`);
        assert.deepEqual((await readdir(dir)).filter((f) => /^group1-shard\d+of\d+\.bin$/.test(f)), [], `stop ${stop}: old shards left`);
      } finally {
        await rm(dir, { recursive: true });
      }
    }
  });
});

/** node:fs operations that call `hook` before each one that changes the folder. */
function countingOps(hook: () => void): FileOps {
  const wrapped: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(nodeFileOps)) {
    wrapped[k] = typeof v === 'function' ? (...args: unknown[]) => { hook(); return (v as (...a: unknown[]) => unknown).apply(nodeFileOps, args); } : v;
  }
  return wrapped as unknown as FileOps;
}


describe('ndiff diff and ndiff apply on two TF.js folders whose structure differs', () => {
  const run = async (...argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const { main } = await import('../cli/ndiff.ts');
    const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
    return { code, out: out.join('\n'), err: err.join('\n') };
  };
  test('diff writes a structural payload and lists the changes in --json; --model-out is what a device holds; apply rebuilds the folder', async () => {
    const work = await mkdtemp(path.join(tmpdir(), 'nd-sdiff-tfjs-'));
    const [b, t] = [await folderOf(base()), await folderOf(target())];
    try {
      const [out, modelOut] = [path.join(work, 'p.ndiff'), path.join(work, 'v2-out')];
      const r = await run('diff', '--base', b, '--target', path.join(t, 'model.json'), '--budget', 'all', '--model-id', 'net', '--out', out, '--model-out', modelOut, '--json');
      assert.equal(r.code, 0, r.err);
      const doc = JSON.parse(r.out) as Record<string, any>;
      assert.equal(doc.structural, true);
      assert.equal(doc.formatVersion, 7);
      assert.deepEqual(doc.added, ['head/w']);
      assert.deepEqual(doc.removed, ['old']);
      assert.deepEqual(doc.renamed, [{ from: 'bias', to: 'stem/bias' }]);
      assert.deepEqual(doc.reshaped, [{ name: 'flat', base: [60], target: [6, 10] }]);
      assert.equal(doc.graphChanged, true);
      assert.deepEqual(doc.targetFiles.map((f: { path: string }) => f.path), target().map((f) => f.path));
      const payload = new Uint8Array(await readFile(out));
      assert.equal(doc.bytes, payload.length);
      assert.equal(fp((await rebuildModelFiles(base(), payload, TFJS_REBUILD)).files!), fp(target()));
      assert.equal(doc.modelOutFingerprint, fp(target()));
      assert.equal(await folderFingerprint(modelOut), fp(target()));
      const a = await run('apply', '--model', b, '--patch', out, '--json');
      assert.equal(a.code, 0, a.err);
      const ad = JSON.parse(a.out) as Record<string, any>;
      assert.equal(ad.structural, true);
      assert.equal(ad.status, 'applied');
      assert.equal(await folderFingerprint(b), fp(target()));
      // The device's folder is, byte for byte, what --model-out holds: the next diff starts from it.
      const [dev, srv] = [await readTfjsModelFiles(b, 'model.json'), await readTfjsModelFiles(modelOut, 'model.json')];
      assert.deepEqual(dev.map((f) => f.path), srv.map((f) => f.path));
      dev.forEach((f, i) => assert.ok(equal(f.bytes, srv[i].bytes), f.path));
    } finally {
      for (const d of [work, b, t]) await rm(d, { recursive: true, force: true });
    }
  });
});

describe('structural payload for an ONNX model with external data files', async () => {
  const { DT, f32le, graph, model, node, tensor, valueInfo } = await import('./helpers/onnx-build.ts');
  const { ONNX_FILES_REBUILD, OnnxFilesStore } = await import('../src/io/onnx/files-store.ts');
  const { rebuildModelBytes } = await import('../src/apply/rebuild.ts');
  const { OnnxWeightStore } = await import('../src/io/onnx/store.ts');
  const { ModelMismatchError } = await import('../src/core/errors.ts');
  const ext = (location: string, offset: number, length: number) => ({ location, offset: String(offset), length: String(length) });
  /** v1: conv.w and bias in weights.bin, old inline; v2: conv.w retrained, bias renamed and moved to a second file, old removed, head.w added there, a Relu node added. */
  const onnxBase = (): ModelFile[] => [
    { path: 'net.onnx', bytes: model(graph({
      name: 'net',
      initializers: [
        tensor({ name: 'conv.w', dims: [16, 16], dataType: DT.FLOAT, external: ext('weights.bin', 0, 1024) }),
        tensor({ name: 'bias', dims: [64], dataType: DT.FLOAT, external: ext('weights.bin', 1024, 256) }),
        tensor({ name: 'old', dims: [48], dataType: DT.FLOAT, raw: f32le(OLD) }),
      ],
      nodes: [node({ opType: 'MatMul', inputs: ['x', 'conv.w'], outputs: ['h'] }), node({ opType: 'Add', inputs: ['h', 'bias'], outputs: ['y'] })],
      inputs: [valueInfo('x', [1, 16])],
      outputs: [valueInfo('y', [1, 16])],
    })) },
    { path: 'weights.bin', bytes: concat([f32(CONV), f32(BIAS)]) },
  ];
  const onnxTarget = (): ModelFile[] => [
    { path: 'net.onnx', bytes: model(graph({
      name: 'net',
      initializers: [
        tensor({ name: 'conv.w', dims: [16, 16], dataType: DT.FLOAT, external: ext('weights.bin', 0, 1024) }),
        tensor({ name: 'head.w', dims: [8, 16], dataType: DT.FLOAT, external: ext('head/extra.bin', 0, 512) }),
        tensor({ name: 'stem.bias', dims: [64], dataType: DT.FLOAT, external: ext('head/extra.bin', 512, 256) }),
      ],
      nodes: [node({ opType: 'MatMul', inputs: ['x', 'conv.w'], outputs: ['h'] }), node({ opType: 'Add', inputs: ['h', 'stem.bias'], outputs: ['z'] }), node({ opType: 'Relu', inputs: ['z'], outputs: ['y'] })],
      inputs: [valueInfo('x', [1, 16])],
      outputs: [valueInfo('y', [1, 16])],
    })) },
    { path: 'weights.bin', bytes: f32(nudged(CONV, 7)) },
    { path: 'head/extra.bin', bytes: concat([f32(HEAD), f32(BIAS)]) },
  ];
  const ofp = (files: ModelFile[]) => fingerprintStore(hasher, new OnnxFilesStore(files.map((f) => ({ path: f.path, bytes: f.bytes.slice() })))).fingerprint;
  const p = structuralDiffFiles(hasher, onnxBase(), onnxTarget(), ONNX_FILES_REBUILD, { modelId: 'net', sequence: 1 });

  test('the change is named and the payload lists the .onnx and its data files', () => {
    assert.deepEqual(p.change.added, ['head.w']);
    assert.deepEqual(p.change.removed, ['old']);
    assert.deepEqual(p.change.renamed, [{ from: 'bias', to: 'stem.bias' }]);
    assert.equal(p.change.keptChanged, 1);
    assert.equal(p.header.fileKind, 'onnx');
    assert.deepEqual(p.header.files!.map((f) => f.path), ['net.onnx', 'weights.bin', 'head/extra.bin']);
    assert.ok(equal(structuralDiffFiles(hasher, onnxBase(), onnxTarget(), ONNX_FILES_REBUILD, { modelId: 'net', sequence: 1 }).bytes, p.bytes), 'deterministic');
  });

  test('rebuilt in memory, it ends at the target files byte for byte; the base files are only read', async () => {
    const base = onnxBase();
    const before = base.map((f) => f.bytes.slice());
    const r = await rebuildModelFiles(base, p.bytes, ONNX_FILES_REBUILD);
    assert.equal(r.status, 'applied');
    assert.equal(ofp(r.files!), ofp(onnxTarget()));
    r.files!.forEach((f, i) => assert.ok(equal(f.bytes, onnxTarget()[i].bytes), f.path));
    base.forEach((f, i) => assert.ok(equal(f.bytes, before[i])));
    assert.equal((await rebuildModelFiles(onnxTarget(), p.bytes, ONNX_FILES_REBUILD)).status, 'already-applied');
  });

  test('ndiff diff writes it for two .onnx files with external data, and --model-out is the target with its data files', async () => {
    const work = await mkdtemp(path.join(tmpdir(), 'nd-sdiff-onnx-ext-'));
    try {
      const write = async (sub: string, files: ModelFile[]) => {
        for (const f of files) {
          await mkdir(path.dirname(path.join(work, sub, f.path)), { recursive: true });
          await writeFile(path.join(work, sub, f.path), f.bytes);
        }
        return path.join(work, sub, files[0].path);
      };
      const [b, t] = [await write('v1', onnxBase()), await write('v2', onnxTarget())];
      const { main } = await import('../cli/ndiff.ts');
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['diff', '--base', b, '--target', t, '--budget', 'all', '--model-id', 'net', '--out', path.join(work, 'p.ndiff'), '--model-out', path.join(work, 'out', 'net.onnx'), '--json'], { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
      assert.equal(code, 0, err.join('\n'));
      const doc = JSON.parse(out.join('\n')) as Record<string, any>;
      assert.equal(doc.structural, true);
      assert.deepEqual(doc.targetFiles.map((f: { path: string }) => f.path), ['net.onnx', 'weights.bin', 'head/extra.bin']);
      assert.deepEqual(doc.added, ['head.w']);
      for (const f of onnxTarget()) assert.ok(equal(new Uint8Array(await readFile(path.join(work, 'out', f.path))), f.bytes), f.path);
      const r = await rebuildModelFiles(onnxBase(), new Uint8Array(await readFile(path.join(work, 'p.ndiff'))), ONNX_FILES_REBUILD);
      assert.equal(ofp(r.files!), ofp(onnxTarget()));
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  test('on disk (rebuildOnnxFile): the .onnx and its data file switched, a failed health check and a crash after the switch put both back byte for byte; a new data file with a file in its way is refused untouched', async () => {
    const { cp } = await import('node:fs/promises');
    const { rebuildOnnxFile, recoverOnnxFile } = await import('../src/io/onnx/files.ts');
    const { UsageError } = await import('../src/core/errors.ts');
    // v2 keeps its data in weights.bin alone: conv.w retrained, head.w and stem.bias (bias renamed) appended, old removed.
    const sameFiles = (): ModelFile[] => [
      { path: 'net.onnx', bytes: model(graph({
        name: 'net',
        initializers: [
          tensor({ name: 'conv.w', dims: [16, 16], dataType: DT.FLOAT, external: ext('weights.bin', 0, 1024) }),
          tensor({ name: 'head.w', dims: [8, 16], dataType: DT.FLOAT, external: ext('weights.bin', 1024, 512) }),
          tensor({ name: 'stem.bias', dims: [64], dataType: DT.FLOAT, external: ext('weights.bin', 1536, 256) }),
        ],
        nodes: [node({ opType: 'MatMul', inputs: ['x', 'conv.w'], outputs: ['h'] }), node({ opType: 'Add', inputs: ['h', 'stem.bias'], outputs: ['z'] }), node({ opType: 'Relu', inputs: ['z'], outputs: ['y'] })],
        inputs: [valueInfo('x', [1, 16])],
        outputs: [valueInfo('y', [1, 16])],
      })) },
      { path: 'weights.bin', bytes: concat([f32(nudged(CONV, 7)), f32(HEAD), f32(BIAS)]) },
    ];
    const payload = structuralDiffFiles(hasher, onnxBase(), sameFiles(), ONNX_FILES_REBUILD, { modelId: 'net', sequence: 2 }).bytes;
    const work = await mkdtemp(path.join(tmpdir(), 'nd-rebuild-onnx-ext-'));
    try {
      const live = path.join(work, 'live');
      await mkdir(live);
      for (const f of onnxBase()) await writeFile(path.join(live, f.path), f.bytes);
      const file = path.join(live, 'net.onnx');
      // a file named head where the new data file's folder goes (an app's own file, say)
      await writeFile(path.join(live, 'head'), 'not a folder');
      const before = await snapshot(live);
      // the data files' set changes (head/extra.bin added), but a file is in the way: refused, nothing written
      await assert.rejects(rebuildOnnxFile(file, p.bytes, { state: null }), (e: Error) => e instanceof UsageError && /creates the data file "head\/extra\.bin", but .*head is a file, not a folder/.test(e.message));
      assert.deepEqual(await snapshot(live), before);
      await assert.rejects(rebuildOnnxFile(file, payload, { state: null, healthCheck: () => false }), HealthCheckError);
      assert.deepEqual(await snapshot(live), before, 'rolled back byte for byte');
      // power lost after the switch: the folder as the health check sees it
      const frozen = path.join(work, 'frozen');
      await assert.rejects(rebuildOnnxFile(file, payload, { state: null, healthCheck: async () => { await cp(live, frozen, { recursive: true }); return false; } }), HealthCheckError);
      const left = (await readdir(frozen)).sort();
      assert.ok(left.includes('net.onnx.ndiff-update.json') && left.includes('net.onnx.ndiff-prev') && left.includes('weights.bin.ndiff-prev'), left.join(', '));
      // The update awaited a health check: without one the next command refuses, untouched; with its (failing) check, rolled back.
      await assert.rejects(recoverOnnxFile(path.join(frozen, 'net.onnx')), PendingUpdateError);
      assert.equal((await recoverOnnxFile(path.join(frozen, 'net.onnx'), { healthCheck: () => false })).rolledBack, true);
      // (the copy holds the live apply's lock too, which is no part of the model)
      const recovered = await snapshot(frozen);
      for (const k of recovered.keys()) if (k.startsWith('.ndiff-apply.lock')) recovered.delete(k);
      assert.deepEqual(recovered, before, 'recovery puts both files back');
      const r = await rebuildOnnxFile(file, payload);
      assert.equal(r.status, 'applied');
      assert.deepEqual(r.filesWritten.map((f) => path.basename(f)).sort(), ['net.onnx', 'weights.bin']);
      for (const f of sameFiles()) assert.ok(equal(new Uint8Array(await readFile(path.join(live, f.path))), f.bytes), f.path);
      assert.deepEqual((await readdir(live)).filter((f) => /ndiff-(prev|update)|\.tmp-/.test(f)), []);
      assert.equal((await rebuildOnnxFile(file, payload)).status, 'already-applied');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  test('a single-file rebuild refuses it, saying the model is several files; hostile lists are refused', async () => {
    const onnx = { kind: 'onnx' as const, open: (b: Uint8Array) => new OnnxWeightStore(b) };
    await assert.rejects(rebuildModelBytes(onnxBase()[0].bytes, p.bytes, onnx), (e: Error) => e instanceof ModelMismatchError && /3 files/.test(e.message));
    const packr = new Packr({ useRecords: false, variableMapSize: true });
    const doc = readMsgpack(p.bytes) as Record<string, unknown>;
    const fl = doc.fl as [string, number][];
    for (const [bad, why] of [['../weights.bin', /"\.\." segment/], ['head\\extra.bin', /backslash/], ['net.onnx.ndiff-prev', /updater's files/]] as const) {
      const hostile = new Uint8Array(packr.pack({ ...doc, fl: [fl[0], [bad, fl[1][1]], fl[2]] }));
      const base = onnxBase();
      await assert.rejects(rebuildModelFiles(base, hostile, ONNX_FILES_REBUILD), (e: Error) => e instanceof PayloadFormatError && why.test(e.message), bad);
    }
  });
});
