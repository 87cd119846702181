/**
 * {@link diff} for two models whose structure differs: a structural payload (format v7,
 * src/diff/structural.ts) instead of a refusal, for `.onnx` (inline or external data) and
 * `.tflite` files and TF.js models. The value part is exact with `budget: 'all'`, else built by
 * the chosen method within the budget (the rebuild delta comes on top). A change of the model's
 * inputs or outputs is written but warned about: the app that feeds the model must change with it.
 */
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError } from '../core/errors.ts';
import { getHasher, type Hasher } from '../core/hasher.ts';
import { fingerprintStore } from '../core/fingerprint.ts';
import type { ModelFile } from '../core/model-files.ts';
import { parseBudget } from '../diff/budget.ts';
import type { ExactCodec } from '../diff/exact.ts';
import { diffOnnxModels } from '../diff/onnx.ts';
import { structuralDiff, structuralDiffFiles, type StructuralChange, type StructuralDiffOptions, type StructuralDiffResult } from '../diff/structural.ts';
import { rebuildModelBytes, rebuildModelFiles } from '../apply/rebuild.ts';
import { ONNX_FILES_REBUILD, onnxFileOrder } from '../io/onnx/files-store.ts';
import { onnxExternalLocations } from '../io/onnx/store.ts';
import { locateTfjsModel } from '../io/tfjs/model-file.ts';
import { readTfjsModelFiles, rebuildModelDir, TFJS_REBUILD } from '../io/tfjs/folder-rebuild.ts';
import { isEveryChange, type DiffSettings } from './diff-options.ts';
import { interfaceWarning, ONNX_REBUILD, portsOf, TFLITE_REBUILD, tfjsPorts, type Port } from './ports.ts';

/** What {@link diff} returns for a structural payload: the fields `ndiff diff --json` prints, the payload, and the warnings. */
export interface StructuralDiffReport {
  out?: string;
  bytes: number;
  structural: true;
  formatVersion: 7;
  rebuildBytes: number;
  valueBytes: number;
  baseFileBytes: number;
  targetFileBytes: number;
  /** The target's files, for a model of several files. */
  targetFiles?: NonNullable<StructuralDiffResult['header']['files']>;
  smallerThanModel: boolean;
  payloadToModelRatio: number;
  seconds: number;
  baseFingerprint: string;
  intermediateFingerprint: string;
  targetFingerprint: string;
  /** The payload reaches the target itself (always with `budget: 'all'`). */
  exact: boolean;
  targetFileFingerprint: string;
  added: string[];
  removed: string[];
  renamed: StructuralChange['renamed'];
  reshaped: { name: string; base: number[]; target: number[] }[];
  retyped: string[];
  kept: number;
  keptChanged: number;
  graphChanged: boolean;
  interfaceChanged: boolean;
  inputs: { base: Port[]; target: Port[] };
  outputs: { base: Port[]; target: Port[] };
  rebuild: StructuralDiffResult['rebuild'];
  modelOut?: string;
  modelOutFingerprint?: string;
  warning?: string;
}

/** What the caller of the structural diff decided: the settings, the model id, and why no value payload reaches the target. */
interface StructuralCase {
  settings: DiffSettings;
  modelId: string;
  reason: string;
}

function checkStructural(s: DiffSettings, what: string, reason: string): boolean {
  if (s.eval || s.calibrate) throw new UsageError(`the two ${what} differ in structure (${reason.split(':')[0]}), so diff writes a structural payload (format v7); eval (--eval) and calibrate (--calibrate) do not measure those yet: leave them out`);
  const everyChange = isEveryChange(s);
  if (!everyChange && s.method !== 'topk' && s.method !== 'lowbit') throw new UsageError(`method ${s.method} (--method ${s.method}) measures candidates on inputs; a structural payload takes method topk (--method topk) or lowbit, or budget all (--budget all)`);
  return everyChange;
}

/** The structural payload for `.onnx` or `.tflite` files (`kind`), written to `out` when given. */
export async function structuralFileDiff(c: StructuralCase, kind: 'onnx' | 'tflite'): Promise<{ report: StructuralDiffReport; payload: Uint8Array }> {
  const s = c.settings;
  const everyChange = checkStructural(s, `${kind} files`, c.reason);
  const [baseBytes, targetBytes] = (await Promise.all([readFile(s.base), readFile(s.target)])).map((b) => new Uint8Array(b));
  // An ONNX model with external data files: the .onnx and its data files, rebuilt together.
  const external = kind === 'onnx' && (onnxExternalLocations(baseBytes, s.base).length > 0 || onnxExternalLocations(targetBytes, s.target).length > 0);
  const filesOf = async (file: string, bytes: Uint8Array): Promise<ModelFile[]> => [
    { path: path.basename(file), bytes },
    ...(await Promise.all(onnxFileOrder(bytes, file).map(async (loc) => ({ path: loc, bytes: new Uint8Array(await readFile(path.resolve(path.dirname(file), loc))) })))),
  ];
  const [baseFiles, targetFiles] = external ? await Promise.all([filesOf(s.base, baseBytes), filesOf(s.target, targetBytes)]) : [undefined, undefined];
  const format = kind === 'onnx' ? ONNX_REBUILD : TFLITE_REBUILD;
  const hasher = await getHasher();
  const t0 = performance.now();
  const options = structuralOptions(s, hasher, c.modelId, everyChange);
  const res = baseFiles && targetFiles ? structuralDiffFiles(hasher, baseFiles, targetFiles, ONNX_FILES_REBUILD, options) : structuralDiff(hasher, baseBytes, targetBytes, format, options);
  const ms = performance.now() - t0;
  const targetFileFingerprint = fingerprintStore(hasher, targetFiles ? ONNX_FILES_REBUILD.open(targetFiles) : format.open(targetBytes)).fingerprint;
  const [before, after] = [portsOf(kind, baseBytes, s.base, baseFiles), portsOf(kind, targetBytes, s.target, targetFiles)];
  if (s.out) await writeFile(s.out, res.bytes);
  let modelOutFingerprint: string | undefined;
  if (s.modelOut && baseFiles) {
    // The .onnx as modelOut, its data files beside it under the names it references.
    const rebuilt = await rebuildModelFiles(baseFiles, res.bytes, ONNX_FILES_REBUILD, { hasher });
    const files = rebuilt.files as ModelFile[];
    await writeFile(s.modelOut, files[0].bytes);
    for (const f of files.slice(1)) {
      const out = path.resolve(path.dirname(s.modelOut), f.path);
      await mkdir(path.dirname(out), { recursive: true });
      await writeFile(out, f.bytes);
    }
    modelOutFingerprint = rebuilt.header.targetFingerprint;
  } else if (s.modelOut) {
    const rebuilt = await rebuildModelBytes(baseBytes, res.bytes, format, { hasher });
    await writeFile(s.modelOut, rebuilt.bytes);
    modelOutFingerprint = rebuilt.header.targetFingerprint;
  }
  const size = (fs: readonly ModelFile[] | undefined, one: Uint8Array) => (fs ? fs.reduce((n, f) => n + f.bytes.length, 0) : one.length);
  return finish(c, res, size(baseFiles, baseBytes), size(targetFiles, targetBytes), ms, before, after, modelOutFingerprint, everyChange, targetFileFingerprint);
}

/**
 * The structural payload for two TF.js models (folders or model JSON files), over the model JSON
 * and its shards (`fk` = `tfjs`, the target's files listed in `fl`). `modelOut` gets what a
 * device holds after applying it (the base's files rebuilt by rebuildModelDir: the shards under
 * content-addressed names), so the next diff made against it starts from a device's bytes.
 */
export async function structuralFolderDiff(c: StructuralCase): Promise<{ report: StructuralDiffReport; payload: Uint8Array }> {
  const s = c.settings;
  const everyChange = checkStructural(s, 'TF.js models', c.reason);
  const [bw, tw] = await Promise.all([locateTfjsModel(s.base), locateTfjsModel(s.target)]);
  const [baseFiles, targetFiles] = await Promise.all([readTfjsModelFiles(bw.dir, bw.modelJsonFile), readTfjsModelFiles(tw.dir, tw.modelJsonFile)]);
  // A model JSON file of any name is listed as model.json: a device's model file keeps its own name.
  const targetListed = [{ path: 'model.json', bytes: targetFiles[0].bytes }, ...targetFiles.slice(1)];
  const hasher = await getHasher();
  const t0 = performance.now();
  const res = structuralDiffFiles(hasher, baseFiles, targetListed, TFJS_REBUILD, structuralOptions(s, hasher, c.modelId, everyChange));
  const ms = performance.now() - t0;
  const [before, after] = [tfjsPorts(baseFiles), tfjsPorts(targetFiles)];
  if (s.out) await writeFile(s.out, res.bytes);
  let modelOutFingerprint: string | undefined;
  if (s.modelOut) {
    // The base's files as a folder of its own, then rebuilt as a device rebuilds them.
    await mkdir(s.modelOut, { recursive: true });
    await writeFile(path.join(s.modelOut, 'model.json'), baseFiles[0].bytes);
    for (const f of baseFiles.slice(1)) {
      await mkdir(path.dirname(path.join(s.modelOut, f.path)), { recursive: true });
      await cp(path.resolve(bw.dir, f.path), path.join(s.modelOut, f.path));
    }
    const rebuilt = await rebuildModelDir(s.modelOut, res.bytes, { hasher, state: null });
    modelOutFingerprint = rebuilt.header.targetFingerprint;
  }
  const size = (fs: readonly ModelFile[]) => fs.reduce((n, f) => n + f.bytes.length, 0);
  return finish(c, res, size(baseFiles), size(targetFiles), ms, before, after, modelOutFingerprint, everyChange, fingerprintStore(hasher, TFJS_REBUILD.open(targetFiles)).fingerprint);
}

/**
 * The builder's options: the header, the exact codecs, and within a budget the value payload by
 * method topk or lowbit (the budget a share of the target's weights as stored; the rebuild comes on top).
 */
function structuralOptions(s: DiffSettings, hasher: Hasher, modelId: string, everyChange: boolean): StructuralDiffOptions {
  const header = { modelId, sequence: s.sequence, ...(s.expiresAt !== undefined ? { expiresAt: s.expiresAt } : {}) };
  const exactCodecs = s.exactCodec === 'x' ? { codecs: ['x'] as ExactCodec[] } : s.exactCodec === 'xr' ? { codecs: ['x', 'xr'] as ExactCodec[] } : {};
  if (everyChange) return { ...header, store: s.store, ...exactCodecs };
  return {
    ...header,
    store: s.store,
    ...exactCodecs,
    valuePayload: (inter, target) => {
      const total = inter.list().filter((t) => t.patchable !== false).reduce((n, t) => n + 4 * t.shape.reduce((x, d) => x * d, 1), 0);
      return diffOnnxModels(hasher, inter, target, { ...header, store: s.store, budgetBytes: parseBudget(s.budget, total), codec: s.codec, method: s.method === 'lowbit' ? 'lowbit' : 'topk', ...(s.lowbitCodesOnly ? { lowbit: { lowRank: false, outliers: false, newValues: false } } : {}) }).bytes;
    },
  };
}

/** The result document (and the metrics file when asked) for a structural payload. */
async function finish(c: StructuralCase, res: StructuralDiffResult, baseLength: number, targetLength: number, ms: number, before: { inputs: Port[]; outputs: Port[] }, after: { inputs: Port[]; outputs: Port[] }, modelOutFingerprint: string | undefined, everyChange: boolean, targetFileFingerprint: string): Promise<{ report: StructuralDiffReport; payload: Uint8Array }> {
  const s = c.settings;
  // Within a budget the value patches may stop short of the target model: the payload names
  // (and devices check) the model it truly reaches, which modelOut writes.
  const exact = res.header.targetFingerprint === targetFileFingerprint;
  // An interface change is written, with a warning: the app that feeds the model must change with it.
  const warning = interfaceWarning(before, after, 'the payload is written, but the app that feeds the model must change with it');
  const ch = res.change;
  const report: StructuralDiffReport = {
    ...(s.out !== undefined ? { out: s.out } : {}), bytes: res.bytes.length, structural: true, formatVersion: 7, rebuildBytes: res.rebuildBytes, valueBytes: res.valueBytes,
    baseFileBytes: baseLength, targetFileBytes: targetLength, ...(res.header.files ? { targetFiles: res.header.files } : {}), smallerThanModel: res.bytes.length < targetLength, payloadToModelRatio: res.bytes.length / targetLength, seconds: ms / 1000,
    baseFingerprint: res.header.baseFingerprint, intermediateFingerprint: res.header.intermediateFingerprint, targetFingerprint: res.header.targetFingerprint,
    exact, targetFileFingerprint,
    added: ch.added, removed: ch.removed, renamed: ch.renamed, reshaped: ch.reshaped.map((r) => ({ name: r.name, base: [...r.base], target: [...r.target] })), retyped: ch.retyped,
    kept: ch.kept, keptChanged: ch.keptChanged, graphChanged: ch.frameChanged, interfaceChanged: warning !== undefined,
    inputs: { base: before.inputs, target: after.inputs }, outputs: { base: before.outputs, target: after.outputs },
    rebuild: res.rebuild,
    ...(s.modelOut ? { modelOut: s.modelOut, modelOutFingerprint } : {}),
    ...(warning ? { warning } : {}),
  };
  if (s.metricsOut) await writeFile(s.metricsOut, JSON.stringify({ kind: 'ndiff-diff-metrics', method: everyChange ? 'exact' : res.header.method, modelId: c.modelId, sequence: s.sequence, target: s.target, budgetRequested: s.budget, ...report, accuracyBefore: null, accuracyAfter: null, trainSeconds: ms / 1000 }, null, 2) + '\n');
  return { report, payload: res.bytes };
}
