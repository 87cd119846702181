/**
 * A structural payload on an ONNX model whose external data file is gigabytes, most of it a
 * hole (issue #77, finding 3): the model's fingerprint is right, so the payload passes the base
 * check, and the rebuild used to read the data file whole (2.5 GiB: 13.6 s, 2,623 MB peak)
 * before its byte delta was even checked. Now the delta's base is read a range at a time: its
 * length is checked against the files' sizes and only the bytes its copies take are read. Each
 * case runs `rebuildOnnxFile` in a process of its own (test/helpers/rebuild-child.ts) whose peak
 * resident memory must stay far below the data file's size; the data files are sparse (no disk).
 * A payload naming no files, whose new version keeps its weights in the `.onnx` file, is applied
 * to such a model too (it used to be refused as a disk that did not keep what was written).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { decodePayload } from '../src/core/format.ts';
import { hexToBytes8, packDocument, wireHeader } from '../src/core/encode.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { STRUCTURAL_VERSION, type StructuralHeader } from '../src/apply/rebuild.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { openOnnxFile, rebuildOnnxFile } from '../src/io/onnx/files.ts';
import { OnnxFilesStore } from '../src/io/onnx/files-store.ts';
import { DT, f32le, graph, model, tensor, valueInfo } from './helpers/onnx-build.ts';

const hasher = await getHasher();
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const packr = new Packr({ useRecords: false, variableMapSize: true });
/** The most peak resident memory a child may reach, in MiB: Node, the transpiler and the modules, with room to spare. */
const MAX_RSS_MIB = 400;

interface ChildReport { status?: string; error?: string; code?: string; message?: string; maxRssMiB: number; seconds: number }

/** `rebuildOnnxFile(modelFile, payload)` in a process of its own (test/helpers/rebuild-child.ts): what it reports. */
function rebuildInChild(modelFile: string, payloadFile: string): Promise<ChildReport> {
  return new Promise<ChildReport>((resolve) => {
    execFile(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', path.join(root, 'test/helpers/rebuild-child.ts'), 'onnx', modelFile, payloadFile], { cwd: root, timeout: 240_000, killSignal: 'SIGKILL', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '') as ChildReport);
      } catch {
        resolve({ error: `the child did not report (${err?.signal ? `killed by ${err.signal}` : `exit ${err?.code}`}): ${stderr.slice(-400)}`, maxRssMiB: NaN, seconds: NaN });
      }
    });
  }).then((r) => {
    process.stdout.write(`child: ${r.error ?? r.status}, peak RSS ${r.maxRssMiB} MiB, ${r.seconds} s\n`);
    return r;
  });
}

/** An ONNX model of one FLOAT initializer `w` of 4 values, its 16 bytes at `offset` of the external data file `location`. */
const oneTensorModel = (location: string, offset: number) => model(graph({
  initializers: [tensor({ name: 'w', dims: [4], dataType: DT.FLOAT, external: { location, offset: String(offset), length: '16' } })],
  inputs: [valueInfo('x', [4])],
  outputs: [valueInfo('w', [4])],
}));

/** Unsigned LEB128. */
function varint(v: number): number[] {
  const out: number[] = [];
  for (; v >= 0x80; v = Math.floor(v / 128)) out.push((v % 128) | 0x80);
  out.push(v);
  return out;
}

/**
 * A model folder: `model.onnx` whose tensor `w` (`values`) lies at `offset` of `big.bin`, a
 * sparse file of `size` bytes. Returns the model file and its fingerprint, taken as a device
 * takes it (a tensor at a time).
 */
async function sparseModel(dir: string, size: number, offset: number, values: number[]): Promise<{ file: string; onnx: Uint8Array; fingerprint: string }> {
  const onnx = oneTensorModel('big.bin', offset);
  const file = path.join(dir, 'model.onnx');
  await writeFile(file, onnx);
  await writeFile(path.join(dir, 'big.bin'), new Uint8Array(0));
  await truncate(path.join(dir, 'big.bin'), size);
  const fh = await open(path.join(dir, 'big.bin'), 'r+');
  await fh.write(Uint8Array.from(f32le(values)), 0, 16, offset);
  await fh.close();
  const disk = await openOnnxFile(file);
  try {
    return { file, onnx, fingerprint: fingerprintStore(hasher, disk).fingerprint };
  } finally {
    await disk.close();
  }
}

/** The same model with `w`'s values in the `.onnx` file (raw_data). */
const inlineModel = (values: number[]) => model(graph({
  initializers: [tensor({ name: 'w', dims: [4], dataType: DT.FLOAT, raw: f32le(values) })],
  inputs: [valueInfo('x', [4])],
  outputs: [valueInfo('w', [4])],
}));

/**
 * A structural payload (unsigned) from the model `base` fingerprints as to the model whose `w`
 * holds `target`: alone in `w.bin`, or (`inline`) in the `.onnx` file, the payload then naming
 * no files (`fl`). Its byte delta (raw coding) inserts the intermediate's bytes but `w`'s 16,
 * which it copies from base byte `copyFrom`, declaring a base of `baseLength` bytes; then an
 * exact value payload from those values (`baseValues`) to the target's.
 */
function movePayload(baseFingerprint: string, baseLength: number, copyFrom: number, baseValues: number[], target: number[], layout: 'w.bin' | 'inline' = 'w.bin'): { bytes: Uint8Array; targetFiles: { path: string; bytes: Uint8Array }[] } {
  const files = (values: number[]) => layout === 'inline'
    ? [{ path: 'model.onnx', bytes: inlineModel(values) }]
    : [{ path: 'model.onnx', bytes: oneTensorModel('w.bin', 0) }, { path: 'w.bin', bytes: Uint8Array.from(f32le(values)) }];
  const inter = files(baseValues);
  const values = exactDiff(hasher, new OnnxFilesStore(files(baseValues)), new OnnxFilesStore(files(target)), { modelId: 'net', sequence: 1 }).bytes;
  const inner = decodePayload(values).header;
  const out = Buffer.concat(inter.map((f) => f.bytes));
  const at = out.indexOf(Buffer.from(f32le(baseValues)));
  const literals = Buffer.concat([out.subarray(0, at), out.subarray(at + 16)]);
  // INSERT (kind 0) what comes before, COPY from the base (kind 1, its offset zigzag-coded), INSERT the rest: no empty instruction.
  const steps = [at && varint(4 * at), [...varint(4 * 16 + 1), ...varint(2 * copyFrom)], out.length - at - 16 && varint(4 * (out.length - at - 16))].filter((x): x is number[] => !!x);
  const rb = Uint8Array.from([...[out.length, baseLength, steps.length, 0, literals.length].flatMap(varint), ...steps.flat(), ...literals]);
  const list = layout === 'inline' ? undefined : inter.map((f) => ({ path: f.path, length: f.bytes.length }));
  const header: StructuralHeader = { ...inner, version: STRUCTURAL_VERSION, baseFingerprint, intermediateFingerprint: inner.baseFingerprint, fileKind: 'onnx', ...(list ? { files: list } : {}) };
  const doc = wireHeader(header, inner.baseFingerprint);
  Object.assign(doc, { fk: 'onnx', ...(list ? { fl: list.map((f) => [f.path, f.length]) } : {}), rb, pv: values });
  return { bytes: packDocument(doc), targetFiles: files(target) };
}

async function withFolder(fn: (dir: string, payloadFile: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-rebuild-ranges-'));
  try {
    await fn(dir, `${dir}.payload`);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(`${dir}.payload`, { force: true });
  }
}

const GiB = 2 ** 30;

test('a payload with the right base fingerprint on a model with a 2.5 GiB data file: refused without reading the data file', { timeout: 600_000 }, () => withFolder(async (dir, payloadFile) => {
  // The issue's case: one 16-byte tensor in a 2.5 GiB sparse data file, a few hundred bytes of
  // unsigned payload made for its fingerprint. No byte delta can address a base past 2 GiB.
  const SIZE = 2.5 * GiB;
  const OFFSET = SIZE - 16;
  const base = await sparseModel(dir, SIZE, OFFSET, [0.5, -1, 2, 0.25]);
  const { bytes } = movePayload(base.fingerprint, base.onnx.length + SIZE, base.onnx.length + OFFSET, [0.5, -1, 2, 0.25], [0.5, -1, 2, 0.75]);
  assert.ok(bytes.length < 1024, `${bytes.length} bytes`);
  await writeFile(payloadFile, bytes);
  const before = await readdir(dir);
  const r = await rebuildInChild(base.file, payloadFile);
  assert.equal(r.error, 'PayloadFormatError', JSON.stringify(r));
  assert.match(r.message ?? '', /the base is declared \d+ bytes, at most 2147483647/);
  assert.ok(r.maxRssMiB < MAX_RSS_MIB, `peak RSS ${r.maxRssMiB} MiB: the ${SIZE / 2 ** 20} MiB data file was read whole`);
  assert.deepEqual((await readdir(dir)).sort(), before.sort());

  // The same payload saying the model is already its target: nothing to read either.
  const doc = readMsgpack(bytes) as Record<string, unknown>;
  const pv = readMsgpack(doc.pv as Uint8Array) as Record<string, unknown>;
  const tf = hexToBytes8(base.fingerprint);
  await writeFile(payloadFile, new Uint8Array(packr.pack({ ...doc, tf, pv: new Uint8Array(packr.pack({ ...pv, tf })) })));
  const again = await rebuildInChild(base.file, payloadFile);
  assert.equal(again.status, 'already-applied', JSON.stringify(again));
  assert.ok(again.maxRssMiB < MAX_RSS_MIB, `peak RSS ${again.maxRssMiB} MiB: the data file was read whole for an already-applied payload`);
}));

test('a valid payload moving a 16-byte tensor out of a 1.5 GiB data file: applied, reading only the bytes the byte delta copies', { timeout: 600_000 }, () => withFolder(async (dir, payloadFile) => {
  const SIZE = 1.5 * GiB;
  const OFFSET = SIZE - 4096;
  const base = await sparseModel(dir, SIZE, OFFSET, [0.5, -1, 2, 0.25]);
  const target = [0.5, -1, 2, 0.75];
  const { bytes, targetFiles } = movePayload(base.fingerprint, base.onnx.length + SIZE, base.onnx.length + OFFSET, [0.5, -1, 2, 0.25], target);
  await writeFile(payloadFile, bytes);
  const r = await rebuildInChild(base.file, payloadFile);
  assert.equal(r.status, 'applied', JSON.stringify(r));
  assert.ok(r.maxRssMiB < MAX_RSS_MIB, `peak RSS ${r.maxRssMiB} MiB: the ${SIZE / 2 ** 20} MiB data file was read whole`);
  // The folder holds the target: the new model file and w.bin; big.bin, no longer named, is gone.
  assert.deepEqual((await readdir(dir)).filter((n) => !n.includes('.ndiff-')).sort(), ['model.onnx', 'w.bin']);
  for (const f of targetFiles) assert.ok(Buffer.from(await readFile(path.join(dir, f.path))).equals(Buffer.from(f.bytes)), f.path);
}));

test('a payload naming no files (the new version keeps its weights in the .onnx file) on a model with a data file: applied, the data file deleted', () => withFolder(async (dir, payloadFile) => {
  const SIZE = 64 * 2 ** 20;
  const base = await sparseModel(dir, SIZE, 4096, [1, 2, 3, 4]);
  const { bytes, targetFiles } = movePayload(base.fingerprint, base.onnx.length + SIZE, base.onnx.length + 4096, [1, 2, 3, 4], [1, 2, 3, 5], 'inline');
  assert.equal((readMsgpack(bytes) as Record<string, unknown>).fl, undefined);
  await writeFile(payloadFile, bytes);
  const r = await rebuildOnnxFile(base.file, bytes);
  assert.equal(r.status, 'applied');
  assert.deepEqual(r.filesRemoved, [path.join(dir, 'big.bin')]);
  assert.deepEqual((await readdir(dir)).filter((n) => !n.includes('.ndiff-')), ['model.onnx']);
  assert.ok(Buffer.from(await readFile(base.file)).equals(Buffer.from(targetFiles[0].bytes)));
}));
