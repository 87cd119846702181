/**
 * Structural payloads (format v7, docs/FORMAT.md §17), the build side: a single-file model (ONNX,
 * LiteRT) whose structure changed between base and target. The target file is first rebuilt from
 * the base's bytes into an *intermediate* file: the target's bytes, except that every target
 * weight the base also has (same name, shape, dtype and storage grid) holds the base's values.
 * The byte delta (§16) from the base file to the intermediate then copies kept, moved and
 * renamed tensors from the base and inserts only what is new (graph, names, new tensors); an
 * ordinary value payload (exact by default: any v1-6 payload works) takes the intermediate to
 * the target. Device side: src/apply/rebuild.ts.
 *
 * Pure code (no node, no tfjs): the file format's store comes from the caller.
 */
import { UsageError } from '../core/errors.ts';
import { fingerprintStore } from '../core/fingerprint.ts';
import { sameGrid } from '../core/grid.ts';
import type { Hasher } from '../core/hasher.ts';
import { packDocument, wireHeader } from '../core/encode.ts';
import { decodePayload, type PayloadHeader } from '../core/format.ts';
import { readForDigest, type WeightStore } from '../core/weight-store.ts';
import { applyByteDelta } from '../core/byte-delta.ts';
import { STRUCTURAL_VERSION, type FileModelStore, type FilesModelStore, type RebuildFilesFormat, type RebuildFormat, type StructuralHeader } from '../apply/rebuild.ts';
import { checkModelFileList, concatModelFiles, deltaBaseBytes, type ModelFile } from '../core/model-files.ts';
import { encodeByteDelta, type ByteDeltaStats } from './byte-delta.ts';
import { confirmPayload } from './confirm.ts';
import { exactDiff, type ExactDiffOptions } from './exact.ts';
import { interfaceOf, sameBits, sameShape } from './interface.ts';

/** What changed between the two files' tensors. Names sorted. */
export interface StructuralChange {
  /** Weights and read-only tensors only the target has (renamed ones aside). */
  added: string[];
  /** Only the base has (renamed ones aside). */
  removed: string[];
  /** Weights under a new name with the same dtype, shape and values bit for bit. */
  renamed: { from: string; to: string }[];
  /** Same name, another shape (carried whole). */
  reshaped: { name: string; base: readonly number[]; target: readonly number[] }[];
  /** Same name and shape, another dtype, patchability or storage grid (carried whole). */
  retyped: string[];
  /** Weights of the target that the intermediate takes from the base (then patched to the target's values). */
  kept: number;
  /** Of `kept`, those whose values differ (patched by the value payload). */
  keptChanged: number;
  /** The bytes outside the weights (graph, attributes, names, metadata, read-only tensors) differ. */
  frameChanged: boolean;
}

export interface StructuralDiffOptions extends ExactDiffOptions {
  /**
   * The value payload from the intermediate to the target (default: `exactDiff`'s bytes with
   * these options). Any payload of versions 1-6 built against `intermediate` works (lossy,
   * learned); its model id and sequence must be this payload's. A payload that does not reach the
   * target exactly makes the structural payload end where it does (confirmed before returning).
   */
  valuePayload?: (intermediate: FileModelStore | FilesModelStore, target: FileModelStore | FilesModelStore) => Uint8Array;
}

export interface StructuralDiffResult {
  /** The structural payload's bytes. */
  bytes: Uint8Array;
  header: StructuralHeader;
  change: StructuralChange;
  /** The intermediate file's bytes (the base rebuilt with the target's structure; for several files, one after the other). */
  intermediate: Uint8Array;
  /** For a model of several files: the intermediate's files. */
  intermediateFiles?: ModelFile[];
  /** Bytes of the byte delta and of the value payload inside the payload. */
  rebuildBytes: number;
  valueBytes: number;
  rebuild: ByteDeltaStats;
}

function bitsKey(values: Float32Array): string {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  let h1 = 0x9e3779b9 ^ words.length;
  let h2 = 0x85ebca6b;
  for (let i = 0; i < words.length; i++) {
    h1 = Math.imul(h1 ^ words[i], 0x01000193);
    h2 = Math.imul(h2 + words[i], 0x5bd1e995) ^ (h2 >>> 15);
  }
  return `${(h1 >>> 0).toString(16)}:${(h2 >>> 0).toString(16)}`;
}

const FRAME = /^(onnx|tflite|tfjs):frame$/;

/** Compare the tensors of two files (see {@link StructuralChange}); `kept` lists the weights the intermediate takes from the base. */
function compareStructure(base: WeightStore, target: WeightStore): { change: StructuralChange; kept: string[] } {
  const a = interfaceOf(base);
  const b = interfaceOf(target);
  const change: StructuralChange = { added: [], removed: [], renamed: [], reshaped: [], retyped: [], kept: 0, keptChanged: 0, frameChanged: false };
  const kept: string[] = [];
  for (const [name, t] of b) {
    if (FRAME.test(name)) {
      const o = a.get(name);
      change.frameChanged = !o || !sameBits(readForDigest(base, name), readForDigest(target, name));
      continue;
    }
    const o = a.get(name);
    if (!o) change.added.push(name);
    else if (!sameShape(o.shape, t.shape)) change.reshaped.push({ name, base: o.shape, target: t.shape });
    else if (o.dtype !== t.dtype || o.patchable !== t.patchable || !sameGrid(base.grid?.(name), target.grid?.(name))) change.retyped.push(name);
    else if (t.patchable) {
      kept.push(name);
      if (!sameBits(readForDigest(base, name), readForDigest(target, name))) change.keptChanged++;
    }
  }
  for (const name of a.keys()) if (!b.has(name) && !FRAME.test(name)) change.removed.push(name);
  // Renamed: an added weight whose dtype, shape and bits are a removed weight's.
  const pool = new Map<string, string[]>();
  for (const name of change.removed) {
    const e = a.get(name);
    if (!e?.patchable) continue;
    const k = `${e.dtype}|${e.shape.join('x')}|${bitsKey(readForDigest(base, name))}`;
    pool.set(k, [...(pool.get(k) ?? []), name]);
  }
  const taken = new Set<string>();
  for (const name of change.added) {
    const e = b.get(name);
    if (!e?.patchable) continue;
    const values = readForDigest(target, name);
    const from = pool.get(`${e.dtype}|${e.shape.join('x')}|${bitsKey(values)}`)?.find((n) => !taken.has(n) && sameBits(readForDigest(base, n), values));
    if (from === undefined) continue;
    taken.add(from);
    change.renamed.push({ from, to: name });
  }
  const renamedTo = new Set(change.renamed.map((r) => r.to));
  change.added = change.added.filter((n) => !renamedTo.has(n)).sort();
  change.removed = change.removed.filter((n) => !taken.has(n)).sort();
  change.renamed.sort((x, y) => (x.to < y.to ? -1 : x.to > y.to ? 1 : 0));
  change.reshaped.sort((x, y) => (x.name < y.name ? -1 : 1));
  change.retyped.sort();
  change.kept = kept.length;
  return { change, kept: kept.sort() };
}

/**
 * The intermediate files: the target's, with every kept weight (see {@link compareStructure})
 * holding the base's values. A kept weight whose base values the target's encoding cannot store
 * keeps the target's values (it is then carried whole by the delta).
 */
function intermediateOf(format: RebuildFilesFormat, base: WeightStore, targetFiles: readonly ModelFile[], kept: readonly string[]): ModelFile[] {
  const inter = format.open(targetFiles.map((f) => ({ path: f.path, bytes: f.bytes.slice() })));
  for (const name of kept) {
    const from = readForDigest(base, name);
    const values = inter.values(name);
    if (sameBits(from, values)) continue;
    const own = values.slice();
    values.set(from);
    try {
      inter.commit?.([name]);
    } catch {
      values.set(own); // not storable in the target's encoding: the target's bytes stay
      inter.commit?.([name]);
    }
  }
  return inter.modelFiles();
}

/** A single-file format read as a format of files (one file, its path empty). */
function singleFile(format: RebuildFormat): RebuildFilesFormat {
  return {
    kind: format.kind,
    open(files) {
      const store = format.open(files[0].bytes);
      return Object.assign(store, { modelFiles: () => [{ path: files[0].path, bytes: store.modelBytes() }] });
    },
  };
}

/**
 * The file a structural payload from `baseBytes` to `targetBytes` rebuilds before its value
 * patches: the target's structure, every kept weight (`kept`) holding the base's values. A trainer
 * whose teacher has another structure than the base learns its diff on this file (training
 * `kept` only: the teacher's new tensors come whole), and {@link structuralDiff} with that diff
 * as `valuePayload` rebuilds the same file on the device.
 */
export function structuralIntermediate(format: RebuildFormat, baseBytes: Uint8Array, targetBytes: Uint8Array): { intermediate: Uint8Array; change: StructuralChange; kept: string[] } {
  const { files, change, kept } = structuralIntermediateFiles(singleFile(format), [{ path: '', bytes: baseBytes }], [{ path: '', bytes: targetBytes }]);
  return { intermediate: files[0].bytes, change, kept };
}

/**
 * {@link structuralIntermediate} for a model of several files (a TF.js model: the model JSON,
 * then its shards, as `format` orders them): the intermediate's files, which
 * {@link structuralDiffFiles} with the same files rebuilds on the device.
 */
export function structuralIntermediateFiles(format: RebuildFilesFormat, baseFiles: readonly ModelFile[], targetFiles: readonly ModelFile[]): { files: ModelFile[]; change: StructuralChange; kept: string[] } {
  const base = format.open(baseFiles);
  const { change, kept } = compareStructure(base, format.open(targetFiles));
  return { files: intermediateOf(format, base, targetFiles, kept), change, kept };
}

/**
 * The structural payload that rebuilds `targetBytes` from `baseBytes` (module doc). The payload
 * is checked before it is returned: the intermediate reopened and fingerprinted, the value
 * payload confirmed against the target (`exactDiff` does), the byte delta decoded back.
 * Deterministic: the same inputs give the same bytes.
 * @throws UsageError when the two files are the same model (an ordinary payload is enough)
 */
export function structuralDiff(hasher: Hasher, baseBytes: Uint8Array, targetBytes: Uint8Array, format: RebuildFormat, options: StructuralDiffOptions = {}): StructuralDiffResult {
  return buildStructural(hasher, [{ path: '', bytes: baseBytes }], [{ path: '', bytes: targetBytes }], singleFile(format), false, options);
}

/**
 * {@link structuralDiff} for a model of several files (a TF.js model: the model JSON, then its
 * shards in manifest order, as `format` orders them; `fk` = `format.kind`). The byte delta runs
 * over the base files one after the other and writes the intermediate's; the payload lists the
 * target's files (`fl`: each path and length, in order). The result's `intermediate` is the
 * intermediate files one after the other, `intermediateFiles` each of them.
 * @throws UsageError when the two models are the same, or a target path is not one a device accepts
 */
export function structuralDiffFiles(hasher: Hasher, baseFiles: readonly ModelFile[], targetFiles: readonly ModelFile[], format: RebuildFilesFormat, options: StructuralDiffOptions = {}): StructuralDiffResult {
  return buildStructural(hasher, baseFiles, targetFiles, format, true, options);
}

function buildStructural(hasher: Hasher, baseFiles: readonly ModelFile[], targetFiles: readonly ModelFile[], format: RebuildFilesFormat, listFiles: boolean, options: StructuralDiffOptions): StructuralDiffResult {
  const what = listFiles ? 'models' : 'files';
  const base = format.open(baseFiles);
  const target = format.open(targetFiles);
  const baseFingerprint = fingerprintStore(hasher, base).fingerprint;
  const targetFingerprint = fingerprintStore(hasher, target).fingerprint;
  if (baseFingerprint === targetFingerprint) throw new UsageError(`the two ${format.kind} ${what} are the same model (fingerprint ${baseFingerprint}): there is nothing to rebuild`, { fingerprint: baseFingerprint });
  const list = listFiles ? targetFiles.map((f) => ({ path: f.path, length: f.bytes.length })) : undefined;
  if (list) {
    try {
      checkModelFileList(list, `the target's files`);
    } catch (e) {
      throw new UsageError(`${(e as Error).message.split(';')[0]}: devices refuse such a payload; rename the target's files`, { files: list.map((f) => f.path) });
    }
  }
  const { change, kept } = compareStructure(base, target);
  const interFiles = intermediateOf(format, base, targetFiles, kept);
  const interStore = format.open(interFiles);
  const intermediateFingerprint = fingerprintStore(hasher, interStore).fingerprint;
  const { valuePayload, ...exactOptions } = options;
  const values = valuePayload ? valuePayload(interStore, target) : exactDiff(hasher, interStore, target, exactOptions).bytes;
  const inner = decodePayload(values).header;
  if (inner.baseFingerprint !== intermediateFingerprint || (!valuePayload && inner.targetFingerprint !== targetFingerprint)) {
    throw new UsageError(`the value payload goes from ${inner.baseFingerprint} to ${inner.targetFingerprint}, expected the intermediate ${intermediateFingerprint} to the target ${targetFingerprint}`);
  }
  // A lossy or learned value payload ends where its patches take the intermediate, not at the
  // target file: the structural payload names that model, once confirmed by applying it.
  if (inner.targetFingerprint !== targetFingerprint) confirmPayload(hasher, interStore, { bytes: values });
  const baseBytes = deltaBaseBytes(format.kind, baseFiles);
  const intermediate = interFiles.length === 1 ? interFiles[0].bytes : concatModelFiles(interFiles);
  const delta = encodeByteDelta(baseBytes, intermediate);
  const rebuilt = applyByteDelta(baseBytes, delta.bytes, intermediate.length);
  if (rebuilt.length !== intermediate.length || rebuilt.some((b, i) => b !== intermediate[i])) throw new Error('byte delta: the encoder wrote a delta that does not rebuild its target (a bug in src/diff/byte-delta.ts)');
  const header: StructuralHeader = {
    ...(inner as PayloadHeader),
    version: STRUCTURAL_VERSION,
    baseFingerprint,
    intermediateFingerprint,
    targetFingerprint: inner.targetFingerprint,
    fileKind: format.kind,
    ...(list ? { files: list } : {}),
  };
  const doc = wireHeader(header, intermediateFingerprint);
  doc.fk = format.kind;
  if (list) doc.fl = list.map((f) => [f.path, f.length]);
  doc.rb = delta.bytes;
  doc.pv = values;
  const bytes = packDocument(doc);
  return { bytes, header, change, intermediate, ...(listFiles ? { intermediateFiles: interFiles } : {}), rebuildBytes: delta.bytes.length, valueBytes: values.length, rebuild: delta.stats };
}
