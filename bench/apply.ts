/**
 * Device apply speed and memory, side by side with the floors of the same machine, in one
 * process.
 *
 *   npm run bench:apply               # 32M weights in memory, 8M on disk
 *   npm run bench:apply -- --quick    # 8M in memory, 2M on disk
 *   npm run bench:apply -- --reps 11  # more runs per row (default 5, quick 3): steadier minima
 *
 * (the script runs `node --expose-gc --import tsx bench/apply.ts`; the GC hook makes the memory
 * figures clean.)
 *
 * - **sparse**: a 10% sparse diff (f16 values, varint gap positions) of every tensor, against the
 *   scatter-add floor: pre-decoded Int32Array positions and Float32Array values added into a
 *   Float32Array in a tight loop. Measured four ways: the patch kernel alone (patch-math.ts on
 *   decoded patches, undo log included), decode + kernel (decodePayload from payload bytes, no
 *   hashing), the whole `applyPayload` (every position and value checked first, then each patch
 *   decoded once on its way to the weights with the patched tensors hashed as the base and the
 *   target in the same pass, region by region), and that first check alone.
 * - **hashed**: one hashed patch (4096 buckets, signed) per tensor, against a linear pass
 *   `w[i] += b[i % nb]`; kernel alone (WebAssembly SIMD, and the TypeScript loop that runs
 *   without WebAssembly) and whole `applyPayload`.
 * - **bounds**: what the whole applies cannot go below, from bench/digest-bound.ts: the copies of
 *   every region into WebAssembly memory and back, one XXH64 pass on data already in the module,
 *   and one XXH3 pass (its long-input loop) on the same data (would the format be faster with
 *   XXH3?); the
 *   ratios print the most the whole sparse apply could reach if decoding and patching cost nothing
 *   (copies + two digest passes + the check, against the scatter floor), and the most the whole
 *   hashed apply could (its kernel with the undo log + two digest passes, against the linear floor).
 * - **after a detach**: last, the linear floor again once an ArrayBuffer has been detached (V8
 *   then runs typed-array loops more slowly for the rest of the process; every other row is
 *   measured before, and nothing before detaches one: see bench/digest-bound.ts on wabt).
 * - **memory**: `process.memoryUsage()` sampled at every store call during `applyPayload` on the
 *   in-memory model (peak), minus the baseline taken once GC has settled; the goal is at most
 *   payload bytes + undo log + 1 MiB (the applier decodes a patch a piece at a time; the size
 *   of the whole payload decoded is printed for scale).
 * - **disk**: a 10% diff applied to a TF.js model folder with `applyToModelDir`, the device path
 *   (lock, recovery, verify, journal, write the changed shards and read each back as written,
 *   atomic switch with fsync, confirm), against loading the full new model folder from disk (read + decode every tensor
 *   into memory the process has not used yet, as at app start: each load's result is kept until
 *   the next, so the allocator cannot hand the previous load's pages back; reusing them would
 *   skip the page faults and halve the load time in a long-running process),
 *   against installing the full new model folder into an empty one (the same atomic, fsync'd
 *   write), and against replacing the model without diffs: that install, then deleting the
 *   version it replaces (its files, then a folder fsync), the end state the apply reaches (it
 *   deletes the shards it retires; how an app points at the new folder is left out). Two
 *   diffs: every weight of the last 10% of the tensors (fine-tuned last layers: only their
 *   shards are read and rewritten), and 10% of the weights of every tensor (every shard is read
 *   and rewritten). Each apply is timed twice: the first on a folder (no digests recorded, so
 *   every tensor is read and hashed, and the model id is recorded) and with the digests and id a
 *   previous apply recorded; and the
 *   recorded apply and the load are timed again with the folder dropped from the page cache
 *   first (`dd iflag=nocache`, as at app start; skipped where dd lacks it).
 *   The **durable-rewrite floor** is the least any crash-safe apply of that diff must do: read
 *   the shards holding changed bytes and write each as a new file with fsync (four at a time,
 *   like the applier), then fsync the folder; no decoding, hashing or patching. When that floor
 *   is above the load, no apply that keeps the old-or-new guarantee can be faster than the load.
 *   Peak memory of the recorded apply and of the load is measured in fresh processes
 *   (bench/disk-memory-child.ts), over an idle process that loads the same modules.
 *   The **update protocol's file operations** (issue #14: the lock, the journal, the kept
 *   previous version, the switch, the confirmation, deleting the retired shards, the folder's
 *   records; every one with its fsyncs) are timed through the applier's FileOps during the
 *   recorded apply: everything it does to the folder but writing the new shards, which the
 *   floor does too.
 *
 * Times are the best of several runs (after a warm-up), in CPU time of this process for the
 * in-memory rows (robust on a shared machine) and wall time for the disk rows. Prints a table and the ratios and writes
 * bench/out/apply.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyPayload } from '../src/apply/index.ts';
import { decodePayload, openPayload } from '../src/core/format.ts';
import { getHasher } from '../src/core/hasher.ts';
import { seededRandom } from '../src/core/random.ts';
import { applyTensorPatch, useHashKernel, type UndoRecord } from '../src/core/patch-math.ts';
import { MemoryWeightStore, type WeightStore } from '../src/core/weight-store.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { readModelTensors, writeModelDir } from '../src/io/tfjs/index.ts';
import { TFJS_FRAME, tfjsFrameValues } from '../src/io/tfjs/frame.ts';
import type { TfjsModelJson } from '../src/io/tfjs/manifest.ts';
import { applyToModelDir, recordFolderModelId } from '../src/io/tfjs/folder-update.ts';
import { recordModelDirDigests } from '../src/io/tfjs/recorded-digests.ts';
import { nodeFileOps, type FileOps } from '../src/io/durable/durable.ts';
import type { Payload } from '../src/core/format.ts';
import { digestLoops } from './digest-bound.ts';

const quick = process.argv.includes('--quick');
const here = path.dirname(fileURLToPath(import.meta.url));
const MEMORY_WEIGHTS = quick ? 8 << 20 : 32 << 20;
const DISK_WEIGHTS = quick ? 2 << 20 : 8 << 20;
const TENSOR = 1 << 22; // 4M weights per tensor in memory
const DISK_TENSOR = 1 << 18; // 256K weights (1 MiB) per tensor on disk: 4 tensors per 4 MiB shard
const DENSITY = 0.1;
const BUCKETS = 4096;
const repsArg = process.argv.indexOf('--reps');
const REPS = repsArg > 0 ? Number(process.argv[repsArg + 1]) : quick ? 3 : 5;
const MiB = 1 << 20;

const gc = (globalThis as { gc?: () => void }).gc;

const rng = seededRandom;

/** A model of `total` weights in tensors of at most `tensor` weights, values ~U(-0.1, 0.1). */
function makeModel(total: number, seed: number, tensor = TENSOR): MemoryWeightStore {
  const r = rng(seed);
  const tensors: [string, { shape: number[]; data: Float32Array }][] = [];
  for (let i = 0, left = total; left > 0; i++) {
    const n = Math.min(tensor, left);
    const data = new Float32Array(n);
    for (let k = 0; k < n; k++) data[k] = (r() - 0.5) * 0.2;
    tensors.push([`layer_${String(i).padStart(2, '0')}/kernel`, { shape: [n / 1024, 1024], data }]);
    left -= n;
  }
  return new MemoryWeightStore(tensors);
}

/** Sparse specs: each weight kept with probability DENSITY, delta ~U(-0.01, 0.01), f16. */
function sparseSpecs(model: WeightStore, seed: number): PatchSpec[] {
  const r = rng(seed);
  return model.list().map((t) => {
    const n = model.values(t.name).length;
    const pos: number[] = [];
    for (let i = 0; i < n; i++) if (r() < DENSITY) pos.push(i);
    return { kind: 'sparse', name: t.name, positions: Uint32Array.from(pos), values: Float32Array.from(pos, () => (r() - 0.5) * 0.02), codec: 'f16' } as PatchSpec;
  });
}

function hashSpecs(model: WeightStore, seed: number): PatchSpec[] {
  const r = rng(seed);
  return model.list().map((t, i) => ({ kind: 'hash', name: t.name, seed: 1000 + i, signed: true, buckets: Float32Array.from({ length: BUCKETS }, () => (r() - 0.5) * 0.002), codec: 'f16' }) as PatchSpec);
}

/**
 * Best CPU time (user + system of this process) in ms of `fn` over REPS runs after one
 * warm-up; `setup` runs untimed before each. CPU time, not wall time, because the machine may be
 * shared: waiting for a core is not the code's cost. (The disk rows use wall time.)
 */
async function best(fn: () => unknown, setup?: () => unknown): Promise<number> {
  let min = Infinity;
  for (let i = 0; i <= REPS; i++) {
    await setup?.();
    const t0 = process.cpuUsage();
    await fn();
    const d = process.cpuUsage(t0);
    if (i > 0) min = Math.min(min, (d.user + d.system) / 1000);
  }
  return min;
}

/**
 * Drop a folder's files from the OS page cache, so the next read comes from the disk (as at app
 * start): GNU dd's `iflag=nocache` asks the kernel to drop the cached pages of a file
 * (posix_fadvise DONTNEED; no root needed; the files here are fsynced, so their pages are clean).
 */
async function evict(dir: string): Promise<void> {
  for (const f of await readdir(dir)) execFileSync('dd', [`if=${path.join(dir, f)}`, 'iflag=nocache', 'count=0', 'status=none']);
}

/**
 * The durable-rewrite floor: read each of `files` (shards in `dir`) and write it to a new file
 * with fsync, four at a time (as the applier writes shards), then fsync the folder.
 */
async function rewriteDurably(dir: string, files: readonly string[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const f = files[next++];
      const bytes = await readFile(path.join(dir, f));
      const tmp = path.join(dir, `${f}.floor-tmp`);
      const fh = await open(tmp, 'wx');
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path.join(dir, `${f}.floor`));
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, files.length) }, worker));
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/**
 * Peak resident memory of bench/disk-memory-child.ts run in a fresh process with `args`
 * (`idle`, `load <dir>`, `apply <dir> <payload>`), in bytes.
 */
function peakRss(args: string[]): number {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(here, 'disk-memory-child.ts'), ...args], { encoding: 'utf8' });
  return (JSON.parse(out.trim().split('\n').pop() as string) as { maxRssKiB: number }).maxRssKiB * 1024;
}

/** The shard files a folder's model.json names. */
async function shardPaths(dir: string): Promise<string[]> {
  const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  return json.weightsManifest.flatMap((g) => g.paths);
}

/** Total length of the union of intervals `[from, to]`, less the parts `minus` covers. */
function coveredMs(intervals: readonly [number, number][], minus: readonly [number, number][]): number {
  const merge = (xs: readonly [number, number][]) => {
    const out: [number, number][] = [];
    for (const [a, b] of [...xs].sort((x, y) => x[0] - y[0])) {
      const last = out[out.length - 1];
      if (last && a <= last[1]) last[1] = Math.max(last[1], b);
      else out.push([a, b]);
    }
    return out;
  };
  const cut = merge(minus);
  let total = 0;
  for (const [a, b] of merge(intervals)) {
    let len = b - a;
    for (const [c, d] of cut) len -= Math.max(0, Math.min(b, d) - Math.max(a, c));
    total += len;
  }
  return total;
}

/**
 * node:fs FileOps that time every operation of an apply: the new shards' temporary files
 * (written, fsynced, renamed) apart, everything else the update protocol does to the folder.
 * The protocol's time is the wall time in which one of its operations runs and no shard is
 * being written (the journal and the new model.json are written while the shards are: that
 * part costs the apply nothing).
 */
function timedFileOps() {
  const t = { fileSyncs: 0, folderSyncs: 0 };
  const protocolSpans: [number, number][] = [];
  const shardSpans: [number, number][] = [];
  // A shard's temp file: named by its content when written whole, by its place when a piece at a time.
  const shard = (file: string) => /^group\d+-shard\d+of\d+(-[0-9a-f]{16})?\.bin\.tmp-/.test(path.basename(file));
  const timed = <A extends unknown[]>(f: (...a: A) => Promise<void>, count?: (...a: A) => void) => async (...a: A): Promise<void> => {
    const t0 = performance.now();
    try {
      await f(...a);
    } finally {
      if (!shard(String(a[0]))) {
        protocolSpans.push([t0, performance.now()]);
        count?.(...a);
      } else shardSpans.push([t0, performance.now()]);
    }
  };
  const ops: FileOps = {
    writeNewFile: timed((file: string, parts: readonly Uint8Array[], o?: { sync?: boolean }) => nodeFileOps.writeNewFile(file, parts, o), (_f, _p, o) => o?.sync && t.fileSyncs++),
    // A shard written a piece at a time: the time from its creation to its last fsync is shard time.
    async openNewFile(file: string) {
      const t0 = performance.now();
      const real = await (nodeFileOps.openNewFile as NonNullable<FileOps['openNewFile']>)(file);
      return {
        append: (bytes: Uint8Array) => real.append(bytes),
        async sync() {
          await real.sync();
          shardSpans.push([t0, performance.now()]);
        },
        close: () => real.close(),
      };
    },
    rename: timed((from: string, to: string) => nodeFileOps.rename(from, to)),
    link: timed((existing: string, to: string) => nodeFileOps.link(existing, to)),
    unlink: timed((file: string) => nodeFileOps.unlink(file)),
    mkdir: timed((d: string) => nodeFileOps.mkdir(d)),
    syncDir: timed((d: string) => nodeFileOps.syncDir(d), () => t.folderSyncs++),
  };
  const reset = () => {
    protocolSpans.length = 0;
    shardSpans.length = 0;
    Object.assign(t, { fileSyncs: 0, folderSyncs: 0 });
  };
  return { ops, reset, get: () => ({ protocolMs: coveredMs(protocolSpans, shardSpans), fileSyncs: t.fileSyncs, folderSyncs: t.folderSyncs }) };
}

/** Whether {@link evict} works here (coreutils dd with nocache). */
function evictWorks(): boolean {
  try {
    execFileSync('dd', ['if=/dev/null', 'iflag=nocache', 'count=0', 'status=none']);
    return true;
  } catch {
    return false;
  }
}
const canEvict = evictWorks();

/** A copy of a store's arrays into an existing store (so reruns start from the base). */
function resetTo(dst: MemoryWeightStore, src: MemoryWeightStore): void {
  for (const t of src.list()) dst.values(t.name).set(src.values(t.name));
}

interface Row {
  what: string;
  ms: number;
  /** Items per second (weights or entries). */
  rate: number;
  unit: string;
}
const rows: Row[] = [];
function row(what: string, ms: number, items: number, unit: string): Row {
  const r = { what, ms, rate: items / (ms / 1000), unit };
  rows.push(r);
  return r;
}

function payloadDecodedBytes(p: Payload): number {
  let n = 0;
  for (const x of p.patches) {
    if (x.kind === 'sparse') n += x.positions.byteLength + x.values.byteLength;
    else if (x.kind === 'hash') n += x.buckets.byteLength;
    else if (x.kind === 'dense') n += x.values.byteLength;
  }
  return n;
}

/** A store wrapper that samples memory at every call, to see the peak inside applyPayload. */
class SampledStore implements WeightStore {
  peak = { rss: 0, arrayBuffers: 0, heapUsed: 0 };
  constructor(private readonly inner: MemoryWeightStore) {}
  sample(): void {
    const m = process.memoryUsage();
    this.peak.rss = Math.max(this.peak.rss, m.rss);
    this.peak.arrayBuffers = Math.max(this.peak.arrayBuffers, m.arrayBuffers);
    this.peak.heapUsed = Math.max(this.peak.heapUsed, m.heapUsed);
  }
  list() {
    this.sample();
    return this.inner.list();
  }
  values(name: string) {
    this.sample();
    return this.inner.values(name);
  }
  commit(): void {
    this.sample();
  }
}

/**
 * Collect garbage until the array-buffer total stops falling: V8 frees the backing stores of
 * dead ArrayBuffers on a background thread after a GC, so one gc() alone can leave a baseline
 * that still counts them, and the buffers freed later during the measurement would hide what
 * the apply allocates.
 */
async function settle(): Promise<void> {
  let last = Infinity;
  for (let i = 0; i < 20; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 20));
    const now = process.memoryUsage().arrayBuffers;
    if (now >= last) return;
    last = now;
  }
}

async function memoryOf(model: MemoryWeightStore, bytes: Uint8Array, undoBytes: (p: Payload) => number) {
  await settle();
  const base = process.memoryUsage();
  const store = new SampledStore(model);
  store.sample();
  await applyPayload(store, bytes);
  store.sample();
  const decoded = decodePayload(bytes);
  const allowance = bytes.length + undoBytes(decoded) + MiB;
  return {
    peakExtraArrayBuffers: store.peak.arrayBuffers - base.arrayBuffers,
    peakExtraRss: store.peak.rss - base.rss,
    peakExtraHeap: store.peak.heapUsed - base.heapUsed,
    payloadBytes: bytes.length,
    decodedPayloadBytes: payloadDecodedBytes(decoded),
    undoLogBytes: undoBytes(decoded),
    allowance,
  };
}

async function main(): Promise<void> {
  const hasher = await getHasher();
  console.log(`bench:apply${quick ? ' --quick' : ''}: ${MEMORY_WEIGHTS / MiB}M weights in memory (${(MEMORY_WEIGHTS * 4) / MiB} MiB), ${DISK_WEIGHTS / MiB}M on disk; hasher ${hasher.kind}; node ${process.version}; ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}; load ${os.loadavg()[0].toFixed(2)}${gc ? '' : ' (no --expose-gc: memory figures are noisier)'}`);

  const base = makeModel(MEMORY_WEIGHTS, 1);
  const work = makeModel(MEMORY_WEIGHTS, 1);

  // ---- sparse
  const sparse = buildPayload(hasher, base, sparseSpecs(base, 2), { method: 'sparse' });
  const sparsePayload = decodePayload(sparse.bytes);
  const entries = sparsePayload.patches.reduce((n, p) => n + (p.kind === 'sparse' ? p.positions.length : 0), 0);
  // The floor: pre-decoded int32 positions and float32 values.
  const floorPos = sparsePayload.patches.map((p) => Int32Array.from((p as { positions: Uint32Array }).positions));
  const floorVal = sparsePayload.patches.map((p) => (p as { values: Float32Array }).values.slice());
  const arrays = sparsePayload.patches.map((p) => work.values(p.name));
  const scatterFloor = row('floor: scatter-add (pre-decoded int32 + f32)', await best(() => {
    for (let t = 0; t < arrays.length; t++) {
      const w = arrays[t], p = floorPos[t], v = floorVal[t];
      for (let k = 0; k < p.length; k++) w[p[k]] += v[k];
    }
  }), entries, 'entries/s');
  const sparseKernel = row('sparse: patch kernel (decoded, with undo log)', await best(() => {
    for (let t = 0; t < arrays.length; t++) applyTensorPatch(arrays[t], sparsePayload.patches[t], true);
  }), entries, 'entries/s');
  const sparseDecodeKernel = row('sparse: decode + patch kernel (from bytes)', await best(() => {
    const p = decodePayload(sparse.bytes);
    for (let t = 0; t < arrays.length; t++) applyTensorPatch(arrays[t], p.patches[t], true);
  }), entries, 'entries/s');
  const sparseWhole = row('sparse: applyPayload (decode, verify base+target, patch)', await best(() => applyPayload(work, sparse.bytes), () => resetTo(work, base)), entries, 'entries/s');
  const sparseCheck = row('sparse: of which checking every position and value first (openPayload; no float decode)', await best(() => openPayload(sparse.bytes)), entries, 'entries/s');

  // ---- hashed
  const hashed = buildPayload(hasher, base, hashSpecs(base, 3), { method: 'hash' });
  const hashedPayload = decodePayload(hashed.bytes);
  const nb = BUCKETS;
  const buckets = new Float32Array(nb).fill(1e-7);
  const linearPass = () => {
    for (const w of arrays) for (let i = 0; i < w.length; i++) w[i] += buckets[i % nb];
  };
  const linearFloor = row('floor: linear w[i] += b[i % nb]', await best(linearPass), MEMORY_WEIGHTS, 'weights/s');
  const hashKernel = row('hashed: patch kernel (decoded, with undo log)', await best(() => {
    for (let t = 0; t < arrays.length; t++) applyTensorPatch(arrays[t], hashedPayload.patches[t], true);
  }), MEMORY_WEIGHTS, 'weights/s');
  const hashKernelNoUndo = row('hashed: patch kernel without undo log (reference)', await best(() => {
    for (let t = 0; t < arrays.length; t++) applyTensorPatch(arrays[t], hashedPayload.patches[t], false);
  }), MEMORY_WEIGHTS, 'weights/s');
  // The TypeScript loops, as on runtimes without WebAssembly (React Native's Hermes).
  useHashKernel('js');
  const hashKernelJs = row('hashed: patch kernel with undo log, TypeScript loop (no WebAssembly)', await best(() => {
    for (let t = 0; t < arrays.length; t++) applyTensorPatch(arrays[t], hashedPayload.patches[t], true);
  }), MEMORY_WEIGHTS, 'weights/s');
  useHashKernel('wasm');
  const hashWhole = row('hashed: applyPayload (decode, verify base+target, patch)', await best(() => applyPayload(work, hashed.bytes), () => resetTo(work, base)), MEMORY_WEIGHTS, 'weights/s');
  const hashOnly = row('fingerprint of the whole model (for reference)', await best(() => {
    for (const t of work.list()) hasher.create64(0n).update(new Uint8Array(work.values(t.name).buffer)).digest();
  }), MEMORY_WEIGHTS, 'weights/s');
  // ---- what the whole applies cannot go below (bench/digest-bound.ts)
  const loops = digestLoops();
  const modelBytes = MEMORY_WEIGHTS * 4;
  const copies = row('bound: every 32 KiB region copied into WebAssembly memory and back (as the region kernel does)', await best(() => loops.copies(arrays)), MEMORY_WEIGHTS, 'weights/s');
  const xxh64Pass = row('bound: one XXH64 pass, data already in the module (the region kernel\'s stripe loop; the apply makes two)', await best(() => loops.xxh64(modelBytes)), MEMORY_WEIGHTS, 'weights/s');
  const xxh3Pass = loops.xxh3 && row('bound: one XXH3 pass (its long-input loop in WebAssembly SIMD), same data: if the format used XXH3', await best(() => loops.xxh3!(modelBytes)), MEMORY_WEIGHTS, 'weights/s');

  // ---- memory (fresh copies so nothing is cached)
  // The undo log of the sparse patches: whatever applyTensorPatch records, applied to the base.
  resetTo(work, base);
  let sparseUndoBytes = 0;
  for (const p of sparsePayload.patches) sparseUndoBytes += undoRecordBytes(applyTensorPatch(work.values(p.name), p, true) as UndoRecord);
  resetTo(work, base);
  const memSparse = await memoryOf(work, sparse.bytes, () => sparseUndoBytes);
  resetTo(work, base);
  // The undo log of a hashed patch: whatever applyTensorPatch records; measure it directly.
  const probe = makeModel(TENSOR, 1);
  const rec = applyTensorPatch(probe.values(probe.list()[0].name), hashedPayload.patches[0], true);
  const undoBytesPerTensor = rec ? undoRecordBytes(rec) : 0;
  const undoHash = () => Math.round((undoBytesPerTensor * MEMORY_WEIGHTS) / TENSOR);
  const memHash = await memoryOf(work, hashed.bytes, undoHash);

  // ---- disk
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nd-bench-apply-'));
  type DiskRow = {
    applyFullMs: number; applyRecordedMs: number; applyColdMs: number; loadMs: number; loadColdMs: number; installMs: number; floorMs: number; floorColdMs: number; replaceMs: number;
    recordedOverLoad: number; fullOverLoad: number; recordedOverInstall: number; coldOverColdLoad: number; floorOverLoad: number; floorColdOverColdLoad: number; recordedOverFloor: number;
    rewrittenShards: number; shards: number; hashedTensors: number; recordedTensors: number; payloadBytes: number; modelBytes: number;
    /** Peak resident memory over an idle process of the same modules, each job in a fresh process. */
    applyPeakBytes: number; loadPeakBytes: number;
    /** Of the recorded apply (its fastest run): time in the update protocol's file operations, and their fsyncs. */
    protocolMs: number; protocolFileSyncs: number; protocolFolderSyncs: number; recordedWithoutProtocolOverFloor: number;
  };
  let disk: Record<string, DiskRow>;
  try {
    const dbase = makeModel(DISK_WEIGHTS, 4, DISK_TENSOR);
    const names = dbase.list().map((t) => t.name);
    const lastTenth = names.slice(Math.floor(names.length * 0.9));
    const r = rng(6);
    const cases = [
      { key: 'spread', label: '10% of the weights of every tensor (sparse)', specs: sparseSpecs(dbase, 5) },
      {
        key: 'lastLayers',
        label: 'every weight of the last 10% of the tensors (dense f16)',
        specs: lastTenth.map((name) => ({ kind: 'dense', name, values: Float32Array.from({ length: dbase.values(name).length }, () => (r() - 0.5) * 0.02), codec: 'f16' }) as PatchSpec),
      },
    ];
    const graph = { format: 'graph-model', generatedBy: 'bench', modelTopology: {} };
    const tensorsOf = (s: MemoryWeightStore) => new Map(s.list().map((t) => [t.name, { shape: t.shape, data: s.values(t.name) }]));
    disk = {};
    // The folder's store includes the model's frame (topology, signature, integer tensors): the
    // payloads must be built against it, as ndiff diff builds them, or the apply refuses them.
    const framedBase = new MemoryWeightStore([
      ...dbase.list().map((t) => [t.name, { shape: [...t.shape], data: dbase.values(t.name) }] as [string, { shape: number[]; data: Float32Array }]),
      [TFJS_FRAME, { shape: [8], data: tfjsFrameValues({ ...graph, weightsManifest: [] } as unknown as TfjsModelJson, () => new Uint8Array()), patchable: false }],
    ]);
    for (const c of cases) {
      const built = buildPayload(hasher, framedBase, c.specs, { method: 'sparse' });
      const modelId = decodePayload(built.bytes).header.modelId;
      const target = new MemoryWeightStore(dbase.list().map((t) => [t.name, { shape: [...t.shape], data: built.targetValues.get(t.name) ?? dbase.values(t.name) }] as [string, { shape: number[]; data: Float32Array }]));
      const baseDir = path.join(dir, `${c.key}-base`);
      const newDir = path.join(dir, `${c.key}-new`);
      const installDir = path.join(dir, `${c.key}-install`);
      await writeModelDir(newDir, graph, tensorsOf(target));
      let applyFullMs = Infinity;
      let applyRecordedMs = Infinity;
      let applyColdMs = Infinity;
      let loadMs = Infinity;
      let loadColdMs = Infinity;
      let installMs = Infinity;
      let floorMs = Infinity;
      let floorColdMs = Infinity;
      let replaceMs = Infinity;
      let check = { hashedTensors: 0, recordedTensors: 0 };
      const timing = timedFileOps();
      let protocol = timing.get();
      let basePaths: string[] = [];
      let rewritten: string[] = [];
      // The device path: applyToModelDir (lock, recovery, verify, journal, write the changed
      // shards and read each back, atomic switch, confirm), without a sequence file.
      const applyOnce = async (baseCheck: 'full' | 'recorded', cold = false) => {
        await rm(baseDir, { recursive: true, force: true });
        await writeModelDir(baseDir, graph, tensorsOf(dbase));
        // After a first apply a folder has its tensors' digests and its model id recorded (the
        // apply writes both): the usual case. The first apply also writes the id (one more
        // durable file write).
        if (baseCheck === 'recorded') {
          await recordModelDirDigests(baseDir, { hasher });
          await recordFolderModelId(baseDir, modelId);
        }
        if (cold) await evict(baseDir);
        gc?.();
        const t0 = performance.now();
        const before = await shardPaths(baseDir);
        timing.reset();
        const res = await applyToModelDir(baseDir, built.bytes, { state: null, hasher, baseCheck, fileOps: timing.ops });
        const ms = performance.now() - t0;
        if (res.status !== 'applied') throw new Error('apply failed');
        const after = new Set(await shardPaths(baseDir));
        basePaths = before;
        rewritten = before.filter((p) => !after.has(p));
        if (baseCheck === 'recorded') check = res.baseCheck;
        return ms;
      };
      // The same work without the applier: the shards the apply rewrote, read and written durably.
      const floorOnce = async (cold: boolean) => {
        await rm(baseDir, { recursive: true, force: true });
        await writeModelDir(baseDir, graph, tensorsOf(dbase));
        if (cold) await evict(baseDir);
        gc?.();
        const t0 = performance.now();
        await rewriteDurably(baseDir, rewritten);
        return performance.now() - t0;
      };
      // What a device without diffs does to replace its model: install the new version durably,
      // then delete the version it replaces (its files, then a folder fsync), as the apply
      // deletes the shards it retires. How the app points at the new folder is left out.
      const oldDir = path.join(dir, `${c.key}-old`);
      const replaceOnce = async (loaded: Map<string, { shape: readonly number[]; data: Float32Array }>) => {
        await rm(installDir, { recursive: true, force: true });
        await rm(oldDir, { recursive: true, force: true });
        await writeModelDir(oldDir, graph, tensorsOf(dbase));
        gc?.();
        const t0 = performance.now();
        await writeModelDir(installDir, graph, loaded);
        await rm(oldDir, { recursive: true });
        const d = await open(dir, 'r');
        try {
          await d.sync();
        } finally {
          await d.close();
        }
        return performance.now() - t0;
      };
      const loadOnce = async (cold: boolean) => {
        if (cold) await evict(newDir);
        gc?.();
        const t0 = performance.now();
        const loaded = await readModelTensors(newDir);
        const ms = performance.now() - t0;
        if (loaded.size !== names.length) throw new Error('load failed');
        return { ms, loaded };
      };
      for (let i = 0; i <= REPS; i++) {
        const f = await applyOnce('full');
        const a = await applyOnce('recorded');
        if (i > 0 && a < applyRecordedMs) protocol = timing.get();
        const ac = canEvict ? await applyOnce('recorded', true) : NaN;
        const fl = await floorOnce(false);
        const flc = canEvict ? await floorOnce(true) : NaN;
        const { ms: l, loaded } = await loadOnce(false);
        const lc = canEvict ? (await loadOnce(true)).ms : NaN;
        await rm(installDir, { recursive: true, force: true });
        const t0 = performance.now();
        await writeModelDir(installDir, graph, loaded);
        const w = performance.now() - t0;
        const rp = await replaceOnce(loaded);
        if (i > 0) {
          applyFullMs = Math.min(applyFullMs, f);
          applyRecordedMs = Math.min(applyRecordedMs, a);
          applyColdMs = Math.min(applyColdMs, ac);
          loadMs = Math.min(loadMs, l);
          loadColdMs = Math.min(loadColdMs, lc);
          installMs = Math.min(installMs, w);
          floorMs = Math.min(floorMs, fl);
          floorColdMs = Math.min(floorColdMs, flc);
          replaceMs = Math.min(replaceMs, rp);
        }
      }
      // Peak memory, each job in a fresh process (as on a device: the app applies, or loads).
      const payloadFile = path.join(dir, `${c.key}.ndiff`);
      writeFileSync(payloadFile, built.bytes);
      let applyPeakBytes = Infinity;
      let loadPeakBytes = Infinity;
      for (let i = 0; i < 2; i++) {
        await rm(baseDir, { recursive: true, force: true });
        await writeModelDir(baseDir, graph, tensorsOf(dbase));
        await recordModelDirDigests(baseDir, { hasher });
        const idle = peakRss(['idle']);
        applyPeakBytes = Math.min(applyPeakBytes, peakRss(['apply', baseDir, payloadFile]) - idle);
        loadPeakBytes = Math.min(loadPeakBytes, peakRss(['load', newDir]) - idle);
      }
      row(`disk, ${c.label}: apply, first on the folder (every tensor read and hashed)`, applyFullMs, DISK_WEIGHTS, 'weights/s');
      row(`disk, same: apply with digests and model id recorded, as after a first apply (${check.hashedTensors} of ${names.length} tensors read and hashed)`, applyRecordedMs, DISK_WEIGHTS, 'weights/s');
      row(`disk, same: of which the update protocol's file operations (lock, journal, kept previous version, switch, confirmation, retired shards, records: ${protocol.fileSyncs} file + ${protocol.folderSyncs} folder fsyncs)`, protocol.protocolMs, DISK_WEIGHTS, 'weights/s');
      row(`disk, same: durable-rewrite floor (read + write + fsync the ${rewritten.length} of ${basePaths.length} shards it changes; nothing else)`, floorMs, DISK_WEIGHTS, 'weights/s');
      row(`disk, same model: load the full new folder (read + decode, warm cache)`, loadMs, DISK_WEIGHTS, 'weights/s');
      if (canEvict) {
        row(`disk, same: apply with digests and model id recorded, cold cache (folder evicted from the page cache first)`, applyColdMs, DISK_WEIGHTS, 'weights/s');
        row(`disk, same: durable-rewrite floor, cold cache`, floorColdMs, DISK_WEIGHTS, 'weights/s');
        row(`disk, same model: load the full new folder, cold cache`, loadColdMs, DISK_WEIGHTS, 'weights/s');
      }
      row(`disk, same model: install the full new folder (atomic fsync'd write)`, installMs, DISK_WEIGHTS, 'weights/s');
      row(`disk, same model: install it, then delete the version it replaces (its files, then a folder fsync), as the apply deletes the shards it retires`, replaceMs, DISK_WEIGHTS, 'weights/s');
      disk[c.key] = {
        applyFullMs, applyRecordedMs, applyColdMs, loadMs, loadColdMs, installMs, floorMs, floorColdMs, replaceMs,
        recordedOverLoad: applyRecordedMs / loadMs, fullOverLoad: applyFullMs / loadMs, recordedOverInstall: applyRecordedMs / installMs,
        coldOverColdLoad: applyColdMs / loadColdMs, floorOverLoad: floorMs / loadMs, floorColdOverColdLoad: floorColdMs / loadColdMs, recordedOverFloor: applyRecordedMs / floorMs,
        rewrittenShards: rewritten.length, shards: basePaths.length, applyPeakBytes, loadPeakBytes,
        protocolMs: protocol.protocolMs, protocolFileSyncs: protocol.fileSyncs, protocolFolderSyncs: protocol.folderSyncs,
        recordedWithoutProtocolOverFloor: (applyRecordedMs - protocol.protocolMs) / floorMs,
        ...check, payloadBytes: built.bytes.length, modelBytes: DISK_WEIGHTS * 4,
      };
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  // Last, as it cannot be undone: the linear floor again once an ArrayBuffer has been detached
  // (a transfer, a WebAssembly memory growing), after which V8 runs every typed-array loop of
  // the process more slowly; the applier's WebAssembly kernels are not affected.
  const detached = new ArrayBuffer(8);
  structuredClone(detached, { transfer: [detached] });
  const linearFloorDetached = row('floor: linear w[i] += b[i % nb], again after an ArrayBuffer was detached in this process', await best(linearPass), MEMORY_WEIGHTS, 'weights/s');

  const ratios = {
    sparseKernelVsFloor: sparseKernel.rate / scatterFloor.rate,
    sparseDecodeKernelVsFloor: sparseDecodeKernel.rate / scatterFloor.rate,
    sparseWholeApplyVsFloor: sparseWhole.rate / scatterFloor.rate,
    hashKernelVsFloor: hashKernel.rate / linearFloor.rate,
    hashWholeApplyVsFloor: hashWhole.rate / linearFloor.rate,
    hashKernelWeightsPerSecond: hashKernel.rate,
    hashKernelNoUndoVsFloor: hashKernelNoUndo.rate / linearFloor.rate,
    hashKernelJsVsFloor: hashKernelJs.rate / linearFloor.rate,
    hashKernelJsWeightsPerSecond: hashKernelJs.rate,
    diskSpreadApplyOverFullLoad: disk.spread.recordedOverLoad,
    diskSpreadApplyOverFullInstall: disk.spread.recordedOverInstall,
    diskSpreadApplyOverReplace: disk.spread.applyRecordedMs / disk.spread.replaceMs,
    diskLastLayersApplyOverReplace: disk.lastLayers.applyRecordedMs / disk.lastLayers.replaceMs,
    diskLastLayersApplyOverFullLoad: disk.lastLayers.recordedOverLoad,
    diskLastLayersColdApplyOverColdLoad: disk.lastLayers.coldOverColdLoad,
    diskSpreadColdApplyOverColdLoad: disk.spread.coldOverColdLoad,
    diskLastLayersFirstApplyOverFullLoad: disk.lastLayers.fullOverLoad,
    diskLastLayersApplyOverFullInstall: disk.lastLayers.recordedOverInstall,
    diskLastLayersFloorOverLoad: disk.lastLayers.floorOverLoad,
    diskLastLayersColdFloorOverColdLoad: disk.lastLayers.floorColdOverColdLoad,
    diskLastLayersApplyOverFloor: disk.lastLayers.recordedOverFloor,
    diskSpreadFloorOverLoad: disk.spread.floorOverLoad,
    diskSpreadColdFloorOverColdLoad: disk.spread.floorColdOverColdLoad,
    diskSpreadApplyOverFloor: disk.spread.recordedOverFloor,
    sparseCheckVsFloor: sparseCheck.rate / scatterFloor.rate,
    diskSpreadProtocolOverFloor: disk.spread.protocolMs / disk.spread.floorMs,
    diskLastLayersProtocolOverFloor: disk.lastLayers.protocolMs / disk.lastLayers.floorMs,
    diskSpreadApplyWithoutProtocolOverFloor: disk.spread.recordedWithoutProtocolOverFloor,
    diskLastLayersApplyWithoutProtocolOverFloor: disk.lastLayers.recordedWithoutProtocolOverFloor,
    // The most the whole applies could reach: the floor over what stays with a free patch kernel.
    sparseWholeBoundVsFloor: scatterFloor.ms / (copies.ms + 2 * xxh64Pass.ms + sparseCheck.ms),
    sparseWholeBoundWithXxh3VsFloor: xxh3Pass ? scatterFloor.ms / (copies.ms + 2 * xxh3Pass.ms + sparseCheck.ms) : undefined,
    hashWholeBoundVsFloor: linearFloor.ms / (hashKernel.ms + 2 * xxh64Pass.ms),
    xxh3LoopOverXxh64: xxh3Pass ? xxh64Pass.ms / xxh3Pass.ms : undefined,
    linearFloorSlowdownAfterDetach: linearFloorDetached.ms / linearFloor.ms,
  };

  const fmt = (r: number) => (r >= 1e9 ? `${(r / 1e9).toFixed(2)} G` : `${(r / 1e6).toFixed(1)} M`);
  console.log('\n| measurement | ms | throughput |\n|---|---:|---:|');
  for (const r of rows) console.log(`| ${r.what} | ${r.ms.toFixed(1)} | ${fmt(r.rate)} ${r.unit} |`);
  const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
  console.log(`
ratios (goal in brackets):
  sparse kernel / scatter floor          ${ratios.sparseKernelVsFloor.toFixed(2)}x   [>= 0.5x]
  sparse decode+kernel / scatter floor   ${ratios.sparseDecodeKernelVsFloor.toFixed(2)}x
  sparse whole applyPayload / floor      ${ratios.sparseWholeApplyVsFloor.toFixed(2)}x   [>= 0.3x, #15]   (checks every entry, then decodes each patch once, hashing base and target in the same pass)
  sparse check (openPayload) / floor     ${ratios.sparseCheckVsFloor.toFixed(2)}x   (every position and value checked before the first write)
  hashed kernel / linear floor           ${ratios.hashKernelVsFloor.toFixed(2)}x   [>= 0.4x]
  hashed kernel                          ${fmt(ratios.hashKernelWeightsPerSecond)} weights/s   [>= 100M/s]
  hashed kernel without undo / floor     ${ratios.hashKernelNoUndoVsFloor.toFixed(2)}x   (what the undo log check costs)
  hashed kernel, TypeScript / floor      ${ratios.hashKernelJsVsFloor.toFixed(2)}x, ${fmt(ratios.hashKernelJsWeightsPerSecond)} weights/s   (without WebAssembly)
  hashed whole applyPayload / floor      ${ratios.hashWholeApplyVsFloor.toFixed(2)}x   [>= 1.0x, #15]
  sparse whole apply, at most / floor    ${ratios.sparseWholeBoundVsFloor.toFixed(2)}x   (if decoding and patching cost nothing: copies ${copies.ms.toFixed(1)} + 2 XXH64 passes ${(2 * xxh64Pass.ms).toFixed(1)} + check ${sparseCheck.ms.toFixed(1)} ms${ratios.sparseWholeBoundWithXxh3VsFloor !== undefined ? `; with XXH3 as the digest ${ratios.sparseWholeBoundWithXxh3VsFloor.toFixed(2)}x` : ''})
  hashed whole apply, at most / floor    ${ratios.hashWholeBoundVsFloor.toFixed(2)}x   (its kernel with the undo log, which the apply must keep, ${hashKernel.ms.toFixed(1)} + 2 XXH64 passes ${(2 * xxh64Pass.ms).toFixed(1)} ms, no copies counted)
  linear floor after a detach            ${ratios.linearFloorSlowdownAfterDetach.toFixed(2)}x as slow   (V8 runs typed-array loops more slowly once any ArrayBuffer has been detached; every floor above is measured before)
  XXH3 pass / XXH64 pass, per byte       ${ratios.xxh3LoopOverXxh64 !== undefined ? `${ratios.xxh3LoopOverXxh64.toFixed(2)}x as fast` : 'n/a (no WebAssembly SIMD)'}   (XXH3 is xxHash's faster digest where CPUs have wide vectors: ${ratios.xxh3LoopOverXxh64 === undefined ? 'not measured' : ratios.xxh3LoopOverXxh64 >= 1.1 ? 'here a format change to it would make the digests faster' : 'here a format change to it would not make the digests faster'})
  disk, last 10%: apply / load full      ${ratios.diskLastLayersApplyOverFullLoad.toFixed(2)}x   [< 1x]   (warm page cache; digests and model id recorded: the usual case after the first apply)
  disk, last 10%: apply / load, cold     ${canEvict ? ratios.diskLastLayersColdApplyOverColdLoad.toFixed(2) + 'x' : 'n/a'}   [< 1x]   (both start with the folder out of the page cache, as at app start)
  disk, last 10%: first apply / load     ${ratios.diskLastLayersFirstApplyOverFullLoad.toFixed(2)}x   (no digests recorded: every tensor read and hashed)
  disk, last 10%: apply / install full   ${ratios.diskLastLayersApplyOverFullInstall.toFixed(2)}x   (both end with the new model durable on disk)
  disk, last 10%: apply / replace        ${ratios.diskLastLayersApplyOverReplace.toFixed(2)}x   (install plus deleting the version it replaces)
  disk, last 10%: floor / load           ${ratios.diskLastLayersFloorOverLoad.toFixed(2)}x warm, ${canEvict ? ratios.diskLastLayersColdFloorOverColdLoad.toFixed(2) + 'x' : 'n/a'} cold   (durable rewrite of the changed shards: the least a crash-safe apply does)
  disk, last 10%: apply / floor          ${ratios.diskLastLayersApplyOverFloor.toFixed(2)}x   [<= 3x, #15]   (what verifying, decoding, patching and the switch cost on top)
  disk, last 10%: protocol ops / floor   ${ratios.diskLastLayersProtocolOverFloor.toFixed(2)}x   (${disk.lastLayers.protocolMs.toFixed(1)} ms in the update protocol's file operations, ${disk.lastLayers.protocolFileSyncs} file + ${disk.lastLayers.protocolFolderSyncs} folder fsyncs; the apply without them: ${ratios.diskLastLayersApplyWithoutProtocolOverFloor.toFixed(2)}x the floor)
  disk, 10% spread: apply / load full    ${ratios.diskSpreadApplyOverFullLoad.toFixed(2)}x   [< 1x]   (every shard holds changed bytes, so every shard is read and rewritten)
  disk, 10% spread: apply / load, cold   ${canEvict ? ratios.diskSpreadColdApplyOverColdLoad.toFixed(2) + 'x' : 'n/a'}
  disk, 10% spread: apply / install full ${ratios.diskSpreadApplyOverFullInstall.toFixed(2)}x   [<= 1.0x, #15]   (${disk.spread.applyRecordedMs.toFixed(1)} vs ${disk.spread.installMs.toFixed(1)} ms: the install writes into an empty folder)
  disk, 10% spread: apply / replace      ${ratios.diskSpreadApplyOverReplace.toFixed(2)}x   (against installing the full new model and deleting the version it replaces, ${disk.spread.replaceMs.toFixed(1)} ms: both end with one version on disk)
  disk, 10% spread: floor / load         ${ratios.diskSpreadFloorOverLoad.toFixed(2)}x warm, ${canEvict ? ratios.diskSpreadColdFloorOverColdLoad.toFixed(2) + 'x' : 'n/a'} cold   (above 1x: no crash-safe apply of this diff can beat the load)
  disk, 10% spread: apply / floor        ${ratios.diskSpreadApplyOverFloor.toFixed(2)}x   [<= 2.5x, #15]
  disk, 10% spread: protocol ops / floor ${ratios.diskSpreadProtocolOverFloor.toFixed(2)}x   (${disk.spread.protocolMs.toFixed(1)} ms in the update protocol's file operations, ${disk.spread.protocolFileSyncs} file + ${disk.spread.protocolFolderSyncs} folder fsyncs; the apply without them: ${ratios.diskSpreadApplyWithoutProtocolOverFloor.toFixed(2)}x the floor)
disk, peak memory over an idle process, each job in a fresh process (model ${mib(DISK_WEIGHTS * 4)}):
  last 10%: apply ${mib(disk.lastLayers.applyPeakBytes)}, load the new model ${mib(disk.lastLayers.loadPeakBytes)}
  spread:   apply ${mib(disk.spread.applyPeakBytes)}, load the new model ${mib(disk.spread.loadPeakBytes)}
memory during applyPayload on ${mib(MEMORY_WEIGHTS * 4)} in memory (peak extra arrayBuffers over the model and the payload bytes already in memory):
  sparse 10%: ${mib(memSparse.peakExtraArrayBuffers)} (rss +${mib(memSparse.peakExtraRss)}); payload ${mib(memSparse.payloadBytes)}, undo log ${mib(memSparse.undoLogBytes)}; the whole payload decoded would be ${mib(memSparse.decodedPayloadBytes)}
  hashed:     ${mib(memHash.peakExtraArrayBuffers)} (rss +${mib(memHash.peakExtraRss)}); payload ${mib(memHash.payloadBytes)}, undo log ${mib(memHash.undoLogBytes)}
  goal, extra <= payload + undo log + 1 MiB: sparse ${memSparse.peakExtraArrayBuffers <= memSparse.allowance ? 'met' : 'NOT met'} (${mib(memSparse.peakExtraArrayBuffers)} vs ${mib(memSparse.allowance)}), hashed ${memHash.peakExtraArrayBuffers <= memHash.allowance ? 'met' : 'NOT met'} (${mib(memHash.peakExtraArrayBuffers)} vs ${mib(memHash.allowance)})`);

  const out = path.join(here, 'out', 'apply.json');
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({
    quick, node: process.version, cpu: os.cpus()[0]?.model, cores: os.cpus().length, loadavg: os.loadavg()[0], hasher: hasher.kind,
    memoryWeights: MEMORY_WEIGHTS, diskWeights: DISK_WEIGHTS, density: DENSITY, buckets: BUCKETS, reps: REPS,
    rows, ratios, memory: { sparse: memSparse, hashed: memHash }, disk,
  }, null, 2));
  console.log(`\nwrote ${path.relative(process.cwd(), out)}`);
}

/** Bytes an undo record holds of its own: its exception log (the patch is the payload's). */
function undoRecordBytes(rec: UndoRecord): number {
  return rec.exceptions.reduce((n, b) => n + b.positions.buffer.byteLength + b.bits.buffer.byteLength, 0);
}

await main();
