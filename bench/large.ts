/**
 * Large models (`npm run bench:large`): an ONNX model with more than 4 GB of external data, and a
 * TF.js folder of the same size, fingerprinted, given a payload that changes 1% of every tensor's
 * values (spread over every tensor, the hardest case for memory), and applied crash-safely. Each
 * step runs in its own process, so its peak RSS is its own; the report gives time and peak RSS.
 *
 *   node --import tsx bench/large.ts [--gb 5] [--tensor-mb 64] [--dir /tmp] [--only onnx|tfjs] [--json FILE]
 *
 * The weights files are sparse (made with truncate, then a few values written in each tensor),
 * so the disk is not filled; every byte is still read (holes read as zeros at page-cache speed),
 * hashed and copied, so time and memory are what a real model of that size costs, give or take
 * the disk. Needs about 2x `--gb` of free address space on the file system, not of disk.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { combineDigests, tensorDigest } from '../src/core/fingerprint.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { FORMAT_VERSION, type PayloadHeader } from '../src/core/format.ts';
import { packPayload, wirePatch, type WirePatch } from '../src/core/encode.ts';
import { applyTensorPatch } from '../src/core/patch-math.ts';
import { CREATED_BY, encodeSpec } from '../src/diff/build.ts';
import type { WeightStore } from '../src/core/weight-store.ts';
import { applyToOnnxFile, openOnnxFile } from '../src/io/onnx/files.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.lastIndexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1];
}

const FRACTION = 0.01;

/** Varint and field helpers: the smallest ONNX writer this needs (initializers in external data). */
function varint(v: number): number[] {
  const out: number[] = [];
  let x = BigInt(v);
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return out;
}
const str = (field: number, s: string) => bytesField(field, [...new TextEncoder().encode(s)]);
const bytesField = (field: number, b: number[]) => [...varint((field << 3) | 2), ...varint(b.length), ...b];
const intField = (field: number, v: number) => [...varint(field << 3), ...varint(v)];

/** Lay out `count` float32 tensors of `values` each in the sparse file `data`, a few non-zero values in each. */
async function writeSparse(data: string, count: number, values: number, offsetOf: (i: number) => number, size: number): Promise<void> {
  await writeFile(data, new Uint8Array(0));
  await truncate(data, size);
  const fh = await open(data, 'r+');
  try {
    for (let i = 0; i < count; i++) await fh.write(new Uint8Array(new Float32Array([i + 1, -(i + 1), 0.5]).buffer), 0, 12, offsetOf(i) + 4 * (values >>> 1));
  } finally {
    await fh.close();
  }
}

async function makeOnnx(dir: string, count: number, values: number): Promise<string> {
  const bytesPer = 4 * values;
  const data = path.join(dir, 'weights.bin');
  await writeSparse(data, count, values, (i) => i * bytesPer, count * bytesPer);
  const inits: number[] = [];
  for (let i = 0; i < count; i++) {
    const ext = (k: string, v: string) => bytesField(13, [...str(1, k), ...str(2, v)]);
    inits.push(...bytesField(5, [...bytesField(1, varint(values)), ...intField(2, 1), ...str(8, `layer${String(i).padStart(3, '0')}/kernel`),
      ...ext('location', 'weights.bin'), ...ext('offset', String(i * bytesPer)), ...ext('length', String(bytesPer)), ...intField(14, 1)]));
  }
  const file = path.join(dir, 'big.onnx');
  await writeFile(file, Uint8Array.from([...intField(1, 8), ...bytesField(7, [...inits, ...str(2, 'g')]), ...bytesField(8, [...str(1, ''), ...intField(2, 17)])]));
  return file;
}

async function makeTfjs(dir: string, count: number, values: number): Promise<string> {
  const folder = path.join(dir, 'tfjs');
  await import('node:fs/promises').then((fs) => fs.mkdir(folder));
  const weights = [];
  const paths = [];
  for (let i = 0; i < count; i++) {
    const shard = `group1-shard${i + 1}of${count}.bin`;
    paths.push(shard);
    weights.push({ name: `layer${String(i).padStart(3, '0')}/kernel`, shape: [values], dtype: 'float32' });
    await writeSparse(path.join(folder, shard), 1, values, () => 0, 4 * values);
  }
  await writeFile(path.join(folder, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: {}, weightsManifest: [{ paths, weights }] }));
  return folder;
}

/**
 * A payload changing 1% of the values of every tensor (every 100th value, +0.25), made a tensor
 * at a time: the base read, patched in a copy and hashed, then let go.
 */
function streamedPayload(hasher: Hasher, store: WeightStore, modelId: string): Uint8Array {
  const read = (name: string) => (store.read ? store.read(name) : store.values(name));
  const digests = new Map<string, string>();
  const after = new Map<string, string>();
  const wires: WirePatch[] = [];
  const tensors = store.list().slice().sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const t of tensors) {
    const base = read(t.name);
    const baseDigest = tensorDigest(hasher, t.name, t.shape, base);
    digests.set(t.name, baseDigest);
    const grid = store.grid?.(t.name);
    if (!t.name.includes('/kernel') || (grid && grid.dtype !== 'float32')) {
      after.set(t.name, baseDigest);
      continue;
    }
    const step = Math.round(1 / FRACTION);
    const positions = Uint32Array.from({ length: Math.ceil(base.length / step) }, (_, k) => k * step);
    const enc = encodeSpec({ kind: 'sparse', name: t.name, positions, values: new Float32Array(positions.length).fill(0.25), codec: 'f32' }, t.shape, grid);
    if (!enc) throw new Error('encode failed');
    const w = base.slice();
    applyTensorPatch(w, enc.patch, false);
    const targetDigest = tensorDigest(hasher, t.name, t.shape, w);
    after.set(t.name, targetDigest);
    wires.push(wirePatch({ ...enc.patch, baseDigest, targetDigest }, enc.valueBytes));
  }
  const header: PayloadHeader = { version: FORMAT_VERSION, method: 'topk', modelId, baseFingerprint: combineDigests(hasher, digests), targetFingerprint: combineDigests(hasher, after), sequence: 1, budgetBytes: 0, createdBy: CREATED_BY };
  header.version = 1;
  return packPayload(header, wires);
}

/** One step, in this process (the child): prints one JSON line. */
async function step(kind: string, what: string, model: string, payloadFile: string): Promise<void> {
  const hasher = await getHasher();
  const t0 = performance.now();
  let detail: unknown;
  if (kind === 'onnx') {
    if (what === 'fingerprint' || what === 'payload') {
      const disk = await openOnnxFile(model);
      try {
        if (what === 'fingerprint') detail = fingerprintStore(hasher, disk).fingerprint;
        else {
          const bytes = streamedPayload(hasher, disk, 'big');
          await writeFile(payloadFile, bytes);
          detail = bytes.length;
        }
      } finally {
        await disk.close();
      }
    } else {
      const r = await applyToOnnxFile(model, await readFile(payloadFile), { state: null });
      detail = { status: r.status, target: r.targetFingerprint, tensors: r.changedTensors.length, values: r.writtenValues };
    }
  } else {
    if (what === 'fingerprint' || what === 'payload') {
      const store = await openTfjsModelDir(model, { lazy: true });
      if (what === 'fingerprint') detail = fingerprintStore(hasher, store).fingerprint;
      else {
        const bytes = streamedPayload(hasher, store, 'big');
        await writeFile(payloadFile, bytes);
        detail = bytes.length;
      }
    } else {
      const r = await applyToModelDir(model, await readFile(payloadFile), { state: null });
      detail = { status: r.status, target: r.targetFingerprint, tensors: r.changedTensors.length, values: r.writtenValues };
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ seconds, peakRssMb: process.resourceUsage().maxRSS / 1024, detail }));
}

async function main(): Promise<void> {
  const phase = process.argv.indexOf('--phase');
  if (phase >= 0) {
    await step(process.argv[phase + 1], process.argv[phase + 2], process.argv[phase + 3], process.argv[phase + 4]);
    return;
  }
  const gb = Number(arg('gb', '5'));
  const tensorMb = Number(arg('tensor-mb', '64'));
  const only = arg('only', '');
  const values = (tensorMb * 2 ** 20) / 4;
  const count = Math.ceil((gb * 1e9) / (4 * values));
  const dir = await mkdtemp(path.join(arg('dir', tmpdir()), 'nd-large-'));
  const self = fileURLToPath(import.meta.url);
  const rows: Record<string, unknown>[] = [];
  console.log(`large models: ${count} float32 tensors of ${tensorMb} MiB = ${((count * 4 * values) / 1e9).toFixed(2)} GB of weights; payload: 1% of every tensor's values`);
  try {
    for (const kind of ['onnx', 'tfjs']) {
      if (only && only !== kind) continue;
      const model = kind === 'onnx' ? await makeOnnx(dir, count, values) : await makeTfjs(dir, count, values);
      const payloadFile = path.join(dir, `${kind}.ndiff`);
      for (const what of ['fingerprint', 'payload', 'apply']) {
        const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', self, '--phase', kind, what, model, payloadFile], { encoding: 'utf8', maxBuffer: 1 << 24 });
        if (r.status !== 0) throw new Error(`${kind} ${what} failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
        const out = JSON.parse(r.stdout.trim().split('\n').pop() as string);
        rows.push({ kind, step: what, ...out });
        console.log(`${kind.padEnd(5)} ${what.padEnd(12)} ${out.seconds.toFixed(1).padStart(7)} s   peak RSS ${out.peakRssMb.toFixed(0).padStart(5)} MB   ${JSON.stringify(out.detail)}`);
      }
      await rm(kind === 'onnx' ? path.join(dir, 'weights.bin') : model, { recursive: true, force: true });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const json = arg('json', '');
  if (json) await writeFile(json, JSON.stringify({ gb, tensorMb, count, fraction: FRACTION, rows }, null, 2) + '\n');
}

await main();
