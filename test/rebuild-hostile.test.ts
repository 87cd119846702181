/**
 * Structural payloads (format v7) against hostile or unlucky model folders, as issue #61 found
 * them: another model's data file deleted or rewritten by this model's rebuild (finding 2); a
 * FIFO or a link to /dev/zero as a TF.js shard, and an ONNX model's gigabytes of data files read
 * whole before its base was checked (finding 3); a few hundred bytes of byte delta rebuilding a
 * model JSON of 20 million objects (finding 4); a model JSON 5 million levels deep (finding 8).
 * Each ends in a typed refusal with the folder as it was; the cases that cost memory or could
 * hang run in a process of their own (test/helpers/rebuild-child.ts), whose peak resident
 * memory must stay under 1 GiB.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import type { Hash64Stream } from '../src/core/hash-types.ts';
import { ModelFormatError, TargetMismatchError, UsageError } from '../src/core/errors.ts';
import { rebuildModelBytes } from '../src/apply/rebuild.ts';
import { structuralDiff } from '../src/diff/structural.ts';
import { encodeByteDelta } from '../src/diff/byte-delta.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { buildTflite, T } from './helpers/tflite-build.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { measureJson } from '../src/core/json-shape.ts';
import { structuralDiffFiles } from '../src/diff/structural.ts';
import { openOnnxFile, rebuildOnnxFile } from '../src/io/onnx/files.ts';
import { ONNX_FILES_REBUILD } from '../src/io/onnx/files-store.ts';
import { parseModelJson } from '../src/io/tfjs/manifest.ts';
import { rebuildModelDir, TFJS_REBUILD } from '../src/io/tfjs/folder-rebuild.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { DT, graph, model as onnxModel, tensor, valueInfo } from './helpers/onnx-build.ts';
import { onnxDataFilesPair, structuralPair, type PairFile } from './helpers/structural-pairs.ts';

const hasher = await getHasher();
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const packr = new Packr({ useRecords: false, variableMapSize: true });
const GiB = 1024;

async function withFolder(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-rebuild-hostile-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function writeFiles(dir: string, files: readonly PairFile[]): Promise<void> {
  for (const f of files) {
    await mkdir(path.dirname(path.join(dir, f.path)), { recursive: true });
    await writeFile(path.join(dir, f.path), f.bytes);
  }
}

/** Every regular file under `dir` but the applier's own, by name, as base64. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (!e.isFile() || /\.ndiff-(state|model|apply\.lock)/.test(e.name)) continue;
    out.set(e.name, (await readFile(path.join(dir, e.name))).toString('base64'));
  }
  return out;
}

/** `ndiff ARGV` in this process: its exit code and what it printed. */
async function ndiff(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

interface ChildReport { status?: string; error?: string; code?: string; message?: string; maxRssMiB: number; seconds: number }

/** Run test/helpers/rebuild-child.ts; a child still running after `timeoutMs` is killed and reported as such. */
function runChild(args: string[], timeoutMs: number): Promise<ChildReport> {
  return new Promise<ChildReport>((resolve) => {
    execFile(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', path.join(root, 'test/helpers/rebuild-child.ts'), ...args], { cwd: root, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as ChildReport);
      } catch {
        resolve({ error: `the child did not report (${err?.signal ? `killed by ${err.signal} after ${timeoutMs / 1000} s` : `exit ${err?.code}`}): ${stderr.slice(-400)}`, maxRssMiB: NaN, seconds: NaN });
      }
    });
  }).then((r) => {
    // The figures docs/SECURITY.md quotes: peak RSS and seconds of each case.
    process.stdout.write(`child ${args[0]} ${path.basename(args[1])}: ${r.error ?? r.status}, peak RSS ${r.maxRssMiB} MiB, ${r.seconds} s\n`);
    return r;
  });
}

function tfjsPayload(seed = 7): { baseFiles: PairFile[]; targetFiles: PairFile[]; payload: Uint8Array } {
  const pair = structuralPair('tfjs', seed);
  const [baseFiles, targetFiles] = [pair.baseFiles as PairFile[], pair.targetFiles as PairFile[]];
  return { baseFiles, targetFiles, payload: structuralDiffFiles(hasher, baseFiles, targetFiles, TFJS_REBUILD, { modelId: 'net', sequence: 1 }).bytes };
}

describe('finding 2: a file another model of the folder names is never deleted or rewritten', () => {
  /** An .onnx model whose one initializer reads 16 bytes of `location` (another model sharing the folder's data files). */
  const otherModel = (location: string) => onnxModel(graph({
    initializers: [tensor({ name: 'other.w', dims: [4], dataType: DT.FLOAT, external: { location, offset: '0', length: '16' } })],
    inputs: [valueInfo('x', [4])],
    outputs: [valueInfo('other.w', [4])],
  }));

  test('ONNX: a data file the new version drops is kept, with a warning, when other.onnx names it; other.onnx still opens', () => withFolder(async (dir) => {
    const pair = onnxDataFilesPair(3, 'dropped');
    const [baseFiles, targetFiles] = [pair.baseFiles as PairFile[], pair.targetFiles as PairFile[]];
    const payload = structuralDiffFiles(hasher, baseFiles, targetFiles, ONNX_FILES_REBUILD, { modelId: 'net', sequence: 1 }).bytes;
    await writeFiles(dir, baseFiles);
    await writeFile(path.join(dir, 'other.onnx'), otherModel('more.bin'));
    const more = await readFile(path.join(dir, 'more.bin'));
    const r = await rebuildOnnxFile(path.join(dir, 'model.onnx'), payload);
    assert.equal(r.status, 'applied');
    assert.deepEqual(await readFile(path.join(dir, 'more.bin')), more, 'more.bin kept byte for byte');
    assert.deepEqual(r.filesRemoved, []);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0], /no longer names the data file "more\.bin", but .*other\.onnx names it too: kept it/);
    const other = await openOnnxFile(path.join(dir, 'other.onnx'));
    try {
      assert.equal(other.read('other.w').length, 4);
    } finally {
      await other.close();
    }
    // The model itself is the target, and a second run has nothing to do.
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), Buffer.from(targetFiles[0].bytes));
    assert.equal((await rebuildOnnxFile(path.join(dir, 'model.onnx'), payload)).status, 'already-applied');
  }));

  test('ndiff apply says which data file it kept, on stderr and in --json', () => withFolder(async (dir) => {
    const pair = onnxDataFilesPair(5, 'dropped');
    const payload = structuralDiffFiles(hasher, pair.baseFiles as PairFile[], pair.targetFiles as PairFile[], ONNX_FILES_REBUILD, { modelId: 'net', sequence: 1 }).bytes;
    await writeFiles(dir, pair.baseFiles as PairFile[]);
    await writeFile(path.join(dir, 'other.onnx'), otherModel('more.bin'));
    await writeFile(path.join(dir, 'update.ndiff'), payload);
    const r = await ndiff('apply', '--model', path.join(dir, 'model.onnx'), '--patch', path.join(dir, 'update.ndiff'), '--json');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /warning: the new version of .*model\.onnx no longer names the data file "more\.bin", but .*other\.onnx names it too: kept it/);
    assert.equal((JSON.parse(r.out) as { warnings?: string[] }).warnings?.length, 1);
    assert.ok((await readdir(dir)).includes('more.bin'));
  }));

  test('ONNX: a data file whose bytes the new version changes is refused when other.onnx names it; every file untouched', () => withFolder(async (dir) => {
    const pair = onnxDataFilesPair(3, 'dropped');
    const [baseFiles, targetFiles] = [pair.baseFiles as PairFile[], pair.targetFiles as PairFile[]];
    assert.notDeepEqual(baseFiles[1].bytes, targetFiles[1].bytes, 'the pair changes weights.bin');
    const payload = structuralDiffFiles(hasher, baseFiles, targetFiles, ONNX_FILES_REBUILD, { modelId: 'net', sequence: 1 }).bytes;
    await writeFiles(dir, baseFiles);
    await writeFile(path.join(dir, 'other.onnx'), otherModel('weights.bin'));
    const before = await snapshot(dir);
    for (const dryRun of [true, false]) {
      await assert.rejects(rebuildOnnxFile(path.join(dir, 'model.onnx'), payload, { dryRun }), (e: unknown) => e instanceof UsageError && /changes its data file "weights\.bin", but .*other\.onnx names it too: rewriting it would change that model too, so nothing was written/.test(e.message));
      assert.deepEqual(await snapshot(dir), before);
    }
  }));

  test('ONNX: a model file beside it that cannot be read (a FIFO) counts as naming every file: the rewrite is refused, every file untouched; a dangling link names nothing', () => withFolder(async (dir) => {
    const pair = onnxDataFilesPair(11, 'dropped');
    const [baseFiles, targetFiles] = [pair.baseFiles as PairFile[], pair.targetFiles as PairFile[]];
    assert.notDeepEqual(baseFiles[1].bytes, targetFiles[1].bytes, 'the pair changes weights.bin');
    const payload = structuralDiffFiles(hasher, baseFiles, targetFiles, ONNX_FILES_REBUILD, { modelId: 'net', sequence: 1 }).bytes;
    await writeFiles(dir, baseFiles);
    await new Promise<void>((resolve, reject) => execFile('mkfifo', [path.join(dir, 'other.onnx')], (e) => (e ? reject(e) : resolve())));
    await symlink('missing.onnx', path.join(dir, 'dangling.onnx'));
    const before = await snapshot(dir);
    await assert.rejects(rebuildOnnxFile(path.join(dir, 'model.onnx'), payload), (e: unknown) => e instanceof UsageError && /changes its data file "weights\.bin", but .*other\.onnx \(.*\) beside it cannot be read, so it may name it/.test(e.message) && !e.message.includes('dangling'));
    assert.deepEqual(await snapshot(dir), before);
  }));

  test('TF.js: a shard the new version retires stays when another model JSON of the folder names it', () => withFolder(async (dir) => {
    const { baseFiles, payload } = tfjsPayload();
    await writeFiles(dir, baseFiles);
    // face.json: another model naming the base's first shard.
    const shard = baseFiles[1].path;
    await writeFile(path.join(dir, 'face.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [{ paths: [shard], weights: [{ name: 'w', shape: [baseFiles[1].bytes.length / 4], dtype: 'float32' }] }] }));
    const kept = await readFile(path.join(dir, shard));
    assert.equal((await rebuildModelDir(dir, payload)).status, 'applied');
    assert.deepEqual(await readFile(path.join(dir, shard)), kept);
    assert.ok(!(JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] }).weightsManifest.some((g) => g.paths.includes(shard)), 'the new model.json does not name it');
  }));
});

describe('finding 3: a TF.js rebuild reads shards as the value apply does', () => {
  test('a FIFO as a shard: a typed refusal, no hang, the lock let go (the same rebuild then applies)', { timeout: 120_000 }, () => withFolder(async (dir) => {
    const { baseFiles, payload } = tfjsPayload();
    await writeFiles(dir, baseFiles);
    const shard = path.join(dir, baseFiles[1].path);
    const bytes = await readFile(shard);
    await unlink(shard);
    await new Promise<void>((resolve, reject) => execFile('mkfifo', [shard], (e) => (e ? reject(e) : resolve())));
    const payloadFile = path.join(dir, '..', `${path.basename(dir)}.payload`);
    await writeFile(payloadFile, payload);
    try {
      const r = await runChild(['dir', dir, payloadFile], 60_000);
      assert.equal(r.error, 'ModelFormatError', JSON.stringify(r));
      assert.match(r.message ?? '', /group1-shard1of2\.bin.*not a regular file/);
      // readTfjsModelFiles (the rebuild's reader once the base is checked; ndiff diff's and release's) refuses it too.
      const read = await runChild(['read', dir, payloadFile], 60_000);
      assert.equal(read.error, 'ModelFormatError', JSON.stringify(read));
      assert.match(read.message ?? '', /group1-shard1of2\.bin, a weight shard model\.json names, is a FIFO/);
      await unlink(shard);
      await writeFile(shard, bytes);
      assert.equal((await rebuildModelDir(dir, payload)).status, 'applied');
    } finally {
      await rm(payloadFile, { force: true });
    }
  }));

  test('a shard linked to /dev/zero: a typed refusal within 1 GiB', { timeout: 120_000 }, () => withFolder(async (dir) => {
    const { baseFiles, payload } = tfjsPayload();
    await writeFiles(dir, baseFiles);
    const shard = path.join(dir, baseFiles[1].path);
    await unlink(shard);
    await symlink('/dev/zero', shard);
    const before = await snapshot(dir);
    const payloadFile = path.join(dir, '..', `${path.basename(dir)}.payload`);
    await writeFile(payloadFile, payload);
    try {
      const r = await runChild(['dir', dir, payloadFile], 60_000);
      assert.equal(r.error, 'ModelFormatError', JSON.stringify(r));
      assert.match(r.message ?? '', /group1-shard1of2\.bin.*not a regular file/);
      assert.ok(r.maxRssMiB < GiB, `peak RSS ${r.maxRssMiB} MiB`);
      const read = await runChild(['read', dir, payloadFile], 60_000);
      assert.equal(read.error, 'ModelFormatError', JSON.stringify(read));
      assert.match(read.message ?? '', /a weight shard model\.json names, is a character device/);
      assert.ok(read.maxRssMiB < GiB, `peak RSS ${read.maxRssMiB} MiB`);
      assert.deepEqual(await snapshot(dir), before);
    } finally {
      await rm(payloadFile, { force: true });
    }
  }));
});

describe('finding 3: an ONNX model with large data files is checked before they are read whole', () => {
  test('a payload for another base: refused as base mismatch within 1 GiB, having read the 768 MiB of data files a tensor at a time', { timeout: 180_000 }, () => withFolder(async (dir) => {
    // 12 tensors of 16 Mi float32 values each in big.bin (a sparse file of zeros: no disk used).
    const TENSORS = 12;
    const PER = 16 * 1024 * 1024;
    const inits = Array.from({ length: TENSORS }, (_, i) => tensor({ name: `w${i}`, dims: [PER], dataType: DT.FLOAT, external: { location: 'big.bin', offset: String(i * PER * 4), length: String(PER * 4) } }));
    await writeFile(path.join(dir, 'model.onnx'), onnxModel(graph({ initializers: inits, inputs: [valueInfo('x', [1])], outputs: [valueInfo('w0', [PER])] })));
    await writeFile(path.join(dir, 'big.bin'), new Uint8Array(0));
    await truncate(path.join(dir, 'big.bin'), TENSORS * PER * 4);
    // A valid payload made for another model with data files.
    const pair = onnxDataFilesPair(3, 'added');
    const payload = structuralDiffFiles(hasher, pair.baseFiles as PairFile[], pair.targetFiles as PairFile[], ONNX_FILES_REBUILD, { modelId: 'net', sequence: 1 }).bytes;
    const payloadFile = path.join(dir, '..', `${path.basename(dir)}.payload`);
    await writeFile(payloadFile, payload);
    try {
      const r = await runChild(['onnx', path.join(dir, 'model.onnx'), payloadFile], 150_000);
      assert.equal(r.error, 'BaseMismatchError', JSON.stringify(r));
      assert.ok(r.maxRssMiB < GiB, `peak RSS ${r.maxRssMiB} MiB (${r.seconds} s)`);
      assert.ok(r.maxRssMiB < (TENSORS * PER * 4) / 2 ** 20 / 2, `peak RSS ${r.maxRssMiB} MiB: the data files were read whole`);
    } finally {
      await rm(payloadFile, { force: true });
    }
  }));
});

describe('finding 3: a TF.js folder with large shards is checked before they are read whole', () => {
  /** A graph-model folder of `shards` float32 weights of `per` values, one shard each (sparse files of zeros: no disk used). */
  async function shardFolder(dir: string, shards: number, per: number): Promise<void> {
    const paths = Array.from({ length: shards }, (_, i) => `group1-shard${i + 1}of${shards}.bin`);
    await writeFile(path.join(dir, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [{ name: 'x', op: 'Placeholder' }] }, weightsManifest: [{ paths, weights: paths.map((_, i) => ({ name: `w${i}`, shape: [per], dtype: 'float32' })) }] }));
    for (const p of paths) {
      await writeFile(path.join(dir, p), new Uint8Array(0));
      await truncate(path.join(dir, p), per * 4);
    }
  }

  test('a payload for another base: refused as base mismatch within 1 GiB, having read the 512 MiB of shards a tensor at a time', { timeout: 180_000 }, () => withFolder(async (dir) => {
    // 8 float32 weights of 16 Mi values (one at a time is 64 MiB); the same refusal of a folder of
    // 8 small shards is the child's own footprint (Node, the transpiler and the modules), so the
    // bound does not move with how much memory a busy machine lets a process keep before it collects.
    const SHARDS = 8;
    const PER = 16 * 1024 * 1024;
    await shardFolder(dir, SHARDS, PER);
    const small = path.join(dir, 'small');
    await mkdir(small);
    await shardFolder(small, SHARDS, 16);
    const { payload } = tfjsPayload();
    const payloadFile = path.join(dir, '..', `${path.basename(dir)}.payload`);
    await writeFile(payloadFile, payload);
    try {
      const own = await runChild(['dir', small, payloadFile], 150_000);
      assert.equal(own.error, 'BaseMismatchError', JSON.stringify(own));
      const r = await runChild(['dir', dir, payloadFile], 150_000);
      assert.equal(r.error, 'BaseMismatchError', JSON.stringify(r));
      assert.ok(r.maxRssMiB < GiB, `peak RSS ${r.maxRssMiB} MiB (${r.seconds} s)`);
      const shardsMiB = (SHARDS * PER * 4) / 2 ** 20;
      assert.ok(r.maxRssMiB - own.maxRssMiB < shardsMiB / 2, `peak RSS ${r.maxRssMiB} MiB, ${r.maxRssMiB - own.maxRssMiB} MiB above the same refusal of small shards (${own.maxRssMiB} MiB): the ${shardsMiB} MiB of shards were read whole`);
    } finally {
      await rm(payloadFile, { force: true });
    }
  }));
});

/** Unsigned LEB128. */
function varint(v: number): number[] {
  const out: number[] = [];
  for (; v >= 0x80; v = Math.floor(v / 128)) out.push((v % 128) | 0x80);
  out.push(v);
  return out;
}

/**
 * A raw byte delta (coding 0, FORMAT.md §16) writing `head`, then `unit` `count` times (one
 * insert, then copies of the output written so far, doubling), then `tail`: a few hundred
 * bytes that rebuild tens of megabytes.
 */
function repeatingDelta(baseLength: number, head: string, unit: string, count: number, tail: string): { delta: Uint8Array; outputLength: number } {
  const instructions: number[] = [];
  const literals = new TextEncoder().encode(head + unit + tail);
  let n = 0;
  const insert = (length: number) => { instructions.push(...varint(4 * length)); n++; };
  insert(head.length + unit.length);
  let written = head.length + unit.length;
  for (let units = 1; units < count; ) {
    const c = Math.min(units, count - units);
    const length = c * unit.length;
    // COPY from the output (kind 2): from = written - length - distance, the first unit's byte.
    instructions.push(...varint(4 * length + 2), ...varint(written - length - head.length));
    n++;
    written += length;
    units += c;
  }
  insert(tail.length);
  written += tail.length;
  const header = [written, baseLength, n, 0, literals.length].flatMap(varint);
  return { delta: Uint8Array.from([...header, ...instructions, ...literals]), outputLength: written };
}

describe('finding 4: a byte delta rebuilding a huge model JSON', () => {
  test('a ~700-byte TF.js payload whose delta writes a 60 MB model JSON of 20 million objects: a typed refusal within 1 GiB, in memory and on disk', { timeout: 240_000 }, () => withFolder(async (dir) => {
    const { baseFiles, payload } = tfjsPayload();
    await writeFiles(dir, baseFiles);
    const doc = readMsgpack(payload) as Record<string, unknown>;
    // The base the delta reads: the model JSON with its shard paths emptied, then the shards (FORMAT.md §17).
    const baseLength = (await import('../src/core/model-files.ts')).deltaBaseBytes('tfjs', baseFiles).length;
    const { delta, outputLength } = repeatingDelta(baseLength, '{"format":"graph-model","modelTopology":{"node":[', '{},', 20_000_000, '{}]},"weightsManifest":[]}');
    const hostile = new Uint8Array(packr.pack({ ...doc, rb: delta, fl: [['model.json', outputLength]] }));
    assert.ok(hostile.length < 1024, `${hostile.length} bytes`);
    assert.ok(outputLength > 60_000_000);
    const before = await snapshot(dir);
    const payloadFile = path.join(dir, '..', `${path.basename(dir)}.payload`);
    await writeFile(payloadFile, hostile);
    try {
      for (const mode of ['files', 'dir']) {
        const r = await runChild([mode, dir, payloadFile], 200_000);
        assert.equal(r.code, 'ND_TARGET_MISMATCH', JSON.stringify(r));
        assert.match(r.message ?? '', /more than 2000000 JSON values/);
        assert.ok(r.maxRssMiB < GiB, `${mode}: peak RSS ${r.maxRssMiB} MiB (${r.seconds} s)`);
        assert.deepEqual(await snapshot(dir), before);
      }
    } finally {
      await rm(payloadFile, { force: true });
    }
  }));
});

/** `hasher`, counting the bytes it hashes. */
function countingHasher(): { hasher: Hasher; hashed: () => number } {
  let n = 0;
  const counted: Hasher = {
    kind: hasher.kind,
    h32: (input, seed) => ((n += input.length), hasher.h32(input, seed)),
    h64: (input, seed) => ((n += input.length), hasher.h64(input, seed)),
    create64(seed) {
      const inner = hasher.create64(seed);
      const stream: Hash64Stream = { update: (input) => ((n += input.length), inner.update(input), stream), digest: () => inner.digest() };
      return stream;
    },
  };
  return { hasher: counted, hashed: () => n };
}

test('finding 4: a rebuilt model JSON just under the limit (2 million values) is parsed, fingerprinted and refused as the wrong intermediate within 1 GiB', { timeout: 240_000 }, () => withFolder(async (dir) => {
  const { baseFiles, payload } = tfjsPayload();
  await writeFiles(dir, baseFiles);
  const doc = readMsgpack(payload) as Record<string, unknown>;
  const baseLength = (await import('../src/core/model-files.ts')).deltaBaseBytes('tfjs', baseFiles).length;
  // 1,999,990 objects and the 9 other values of the text.
  const { delta, outputLength } = repeatingDelta(baseLength, '{"format":"graph-model","modelTopology":{"node":[', '{},', 1_999_990, '{}]},"weightsManifest":[]}');
  const payloadFile = path.join(dir, '..', `${path.basename(dir)}.payload`);
  await writeFile(payloadFile, new Uint8Array(packr.pack({ ...doc, rb: delta, fl: [['model.json', outputLength]] })));
  try {
    const r = await runChild(['files', dir, payloadFile], 200_000);
    assert.equal(r.code, 'ND_TARGET_MISMATCH', JSON.stringify(r));
    assert.match(r.message ?? '', /the payload expects the intermediate/);
    assert.ok(r.maxRssMiB < GiB, `peak RSS ${r.maxRssMiB} MiB (${r.seconds} s)`);
  } finally {
    await rm(payloadFile, { force: true });
  }
}));

describe('finding 4: a rebuilt .tflite of many tensors sharing one buffer', () => {
  test('refused before its tensors are hashed: the work stays linear in the rebuilt file', async () => {
    const TFLITE = { kind: 'tflite' as const, open: (b: Uint8Array) => new TfliteWeightStore(b) };
    const pair = structuralPair('tflite', 7);
    const built = structuralDiff(hasher, pair.base, pair.target, TFLITE, { modelId: 'net', sequence: 1 });
    // The intermediate: 300 int8 tensors reading one 256 KiB buffer (each 256 Ki elements: 78.6 M in a file of ~280 KB).
    const SIZE = 256 * 1024;
    const hostileFile = buildTflite({ tensors: Array.from({ length: 300 }, (_, i) => ({ name: `t${i}`, shape: [SIZE], type: T.INT8, buffer: 1, quant: { scale: [0.1], zeroPoint: [0] } })), buffers: [new Uint8Array(SIZE).fill(3)], inputs: [], outputs: [] });
    const doc = readMsgpack(built.bytes) as Record<string, unknown>;
    const hostile = new Uint8Array(packr.pack({ ...doc, rb: encodeByteDelta(pair.base, hostileFile).bytes }));
    const { hasher: counted, hashed } = countingHasher();
    // Refused as an intermediate: by the LiteRT reader (tensors reading one buffer past 4x the
    // file, finding 5) before the rebuild's own element bound would see it; either way unhashed.
    await assert.rejects(rebuildModelBytes(pair.base, hostile, TFLITE, { hasher: counted }), (e: unknown) => e instanceof TargetMismatchError && (e.details.stage === 'intermediate' || /rebuilt by the payload's byte delta is not a valid tflite model .*read \d+ bytes of constant data/.test(e.message)));
    // The base is hashed once (its fingerprint); the 300 x 1 MiB of float values never are.
    assert.ok(hashed() < 8 * hostileFile.length + 4 * pair.base.length, `${hashed()} bytes hashed for a rebuilt file of ${hostileFile.length}`);
  });
});

describe('finding 8: a model JSON 5 million levels deep', () => {
  const deep = `{"format":"graph-model","modelTopology":${'['.repeat(5_000_000)}${']'.repeat(5_000_000)},"weightsManifest":[]}`;

  test('parseModelJson refuses it with a typed error, as it refuses 2 million values; shallow JSON with brackets in strings passes', () => {
    assert.throws(() => parseModelJson(deep), (e: unknown) => e instanceof ModelFormatError && /nested more than 512 levels deep/.test(e.message));
    assert.deepEqual(measureJson('{"a":"[[[{\\"","b":[1,-2.5e3,true,null,{"c":[]}]}', 10, 100), { depth: 4, values: 12 });
    assert.equal(measureJson('[[[[]]]]', 3, 100).over, 'depth');
    assert.equal(measureJson('[1,2,3,4]', 10, 3).over, 'values');
  });

  test('a folder holding it: the value apply and the structural rebuild each end in ModelFormatError, every file untouched', () => withFolder(async (dir) => {
    const { baseFiles, payload } = tfjsPayload();
    await writeFiles(dir, baseFiles);
    await writeFile(path.join(dir, 'model.json'), deep);
    const before = await snapshot(dir);
    const values = (readMsgpack(payload) as Record<string, unknown>).pv as Uint8Array;
    await assert.rejects(applyToModelDir(dir, values), ModelFormatError);
    assert.deepEqual(await snapshot(dir), before);
    await assert.rejects(rebuildModelDir(dir, payload), ModelFormatError);
    assert.deepEqual(await snapshot(dir), before);
    // ndiff apply: a typed refusal (exit 7, the files' code), not a stack overflow (exit 1).
    await writeFile(path.join(dir, '..', `${path.basename(dir)}.ndiff`), values);
    try {
      const r = await ndiff('apply', '--model', dir, '--patch', path.join(dir, '..', `${path.basename(dir)}.ndiff`));
      assert.equal(r.code, 7, r.err);
      assert.match(r.err, /nested more than 512 levels deep/);
    } finally {
      await rm(path.join(dir, '..', `${path.basename(dir)}.ndiff`), { force: true });
    }
    assert.deepEqual(await snapshot(dir), before);
  }));
});
