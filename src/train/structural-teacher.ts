/**
 * `ndiff train --teacher` with a teacher whose structure differs from the base's (tensors added,
 * removed, renamed or reshaped, the graph changed), for single-file models (ONNX with inline data,
 * LiteRT) and TF.js model folders (model.json and its shards, layers or graph models): the
 * trainer learns its diff on the model a structural payload rebuilds first (the teacher's
 * structure, every kept weight holding the base's values, the teacher's new tensors whole),
 * training the kept weights only; the learned payload is then carried inside a structural payload
 * (format v7) that devices apply with `neural-diff/rebuild` (`rebuildModelDir` for a folder).
 * `--budget` bounds the learned part, as it bounds the value part of `ndiff diff`'s structural
 * payloads; the rebuild comes on top.
 */
import { cp, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { canonicalJson } from '../core/canonical-json.ts';
import { UsageError } from '../core/errors.ts';
import { getHasher } from '../core/hasher.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { formatBytes } from '../diff/budget.ts';
import { compareInterfaces, describeDifference } from '../diff/interface.ts';
import { structuralDiff, structuralDiffFiles, structuralIntermediate, structuralIntermediateFiles, type StructuralChange, type StructuralDiffResult } from '../diff/structural.ts';
import { rebuildModelBytes, type RebuildFormat } from '../apply/rebuild.ts';
import { concatModelFiles, type ModelFile } from '../core/model-files.ts';
import { rebuildModelDir, TFJS_REBUILD } from '../io/tfjs/folder-rebuild.ts';
import { locateTfjsModel } from '../io/tfjs/model-file.ts';
import type { TrainableSpec } from './select.ts';
import { ONNX_REBUILD, portChange, portsOf, TFLITE_REBUILD } from '../diff/ports.ts';

/** What training toward a teacher of another structure starts from. */
export interface StructuralTeacher {
  format: RebuildFormat;
  /** The file the trainer learns its diff on (and the device rebuilds before the learned patches). */
  intermediate: Uint8Array;
  change: StructuralChange;
  /** The weights the intermediate takes from the base: the ones that train. */
  kept: string[];
  /** How the structures differ, in words. */
  reason: string;
}

/** Undefined when the teacher has the base's structure (an ordinary diff); else the plan. */
export function structuralTeacher(kind: 'onnx' | 'tflite', base: { bytes: Uint8Array; store: WeightStore; external?: boolean }, teacher: { bytes: Uint8Array; store: WeightStore; external?: boolean; file: string }): StructuralTeacher | undefined {
  const reason = describeDifference(compareInterfaces(base.store, teacher.store));
  if (!reason) return undefined;
  // The teacher's outputs are matched on the base's inputs: a teacher whose inputs or outputs
  // differ (an output map grown from 128x128 to 256x256) is no target for a diff of the base, and
  // a payload cannot change what the app feeds the model or reads from it.
  const change = portChange(portsOf(kind, base.bytes, 'base'), portsOf(kind, teacher.bytes, teacher.file), kind === 'onnx');
  if (change) {
    throw new UsageError(`--teacher ${teacher.file} has another ${change.kind} than the base (${change.text}): a diff is trained to match the teacher's outputs on the base's inputs, and the app that feeds the model does not change with a payload. Nothing was trained. To ship this interface change, build a structural payload with \`ndiff diff --base BASE --target ${teacher.file} --budget all\` and update the app with it; to train a diff, give a teacher with the base's inputs and outputs`, { kind: change.kind, index: change.index, change: change.text });
  }
  if (base.external || teacher.external) {
    throw new UsageError(`--teacher ${teacher.file} has another structure than the base (${reason.split(':')[0]}), which ships as a structural payload that rebuilds one file; the ${base.external ? 'base' : 'teacher'} keeps weights in external data files: save both with their weights inside (onnx.save_model(..., save_as_external_data=False))`);
  }
  const format = kind === 'onnx' ? ONNX_REBUILD : TFLITE_REBUILD;
  return { format, ...structuralIntermediate(format, base.bytes, teacher.bytes), reason };
}

/**
 * What training a TF.js model toward a teacher folder of another structure starts from: the
 * files the payload rebuilds first, in the order `rebuildModelDir` reads a folder (model.json,
 * then the shards in manifest order).
 */
export interface StructuralFolderTeacher {
  /** The teacher's files as the payload lists them: its model JSON as `model.json` (a device's model file keeps its own name), then its shards. */
  teacherFiles: ModelFile[];
  /** The model the trainer learns its diff on: the teacher's model.json and shards, every kept weight holding the base's values. */
  intermediateFiles: ModelFile[];
  change: StructuralChange;
  kept: string[];
  reason: string;
}

/** The keys of a TF.js model JSON that say who wrote it, not what the model is (and, in a layers model's topology, `keras_version` and `backend`). */
const PROVENANCE_KEYS = ['generatedBy', 'convertedBy', 'userDefinedMetadata'];

/**
 * Undefined when the teacher folder has the base's structure, its model JSON differing at most
 * in who wrote it ({@link PROVENANCE_KEYS}): an ordinary diff; else the plan.
 * `baseFiles` and `teacherFiles` as readTfjsModelFiles reads them (the model JSON first). The
 * caller checks first that the two take the same inputs and give the same outputs: an app feeds
 * the model, and a payload cannot change what the app sends it.
 */
export function structuralFolderTeacher(baseFiles: readonly ModelFile[], teacherFiles: readonly ModelFile[]): StructuralFolderTeacher | undefined {
  const listed = [{ path: 'model.json', bytes: teacherFiles[0].bytes }, ...teacherFiles.slice(1)];
  const base = TFJS_REBUILD.open(baseFiles);
  const reason = describeDifference(compareInterfaces(base, TFJS_REBUILD.open(listed)));
  if (!reason) return undefined;
  // A teacher that differs only in model.json's provenance (written by another converter or tfjs
  // version) has the base's structure: its diff is learned and shipped as an ordinary payload,
  // which a model loaded in a browser can take, as before.
  const asBase = JSON.parse(new TextDecoder().decode(teacherFiles[0].bytes)) as Record<string, unknown>;
  const baseJson = JSON.parse(new TextDecoder().decode(baseFiles[0].bytes)) as Record<string, unknown>;
  const provenance = (to: Record<string, unknown>, from: Record<string, unknown>, keys: readonly string[]) => {
    for (const key of keys) {
      if (key in from) to[key] = from[key];
      else delete to[key];
    }
  };
  provenance(asBase, baseJson, PROVENANCE_KEYS);
  // A layers model's topology records the Keras version and backend that saved it.
  const topology = (j: Record<string, unknown>) => (j.modelTopology && typeof j.modelTopology === 'object' ? (j.modelTopology as Record<string, unknown>) : undefined);
  const [tt, bt] = [topology(asBase), topology(baseJson)];
  if (tt && bt) provenance(tt, bt, ['keras_version', 'backend']);
  const sameButProvenance = [{ path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify(asBase)) }, ...teacherFiles.slice(1)];
  if (!describeDifference(compareInterfaces(base, TFJS_REBUILD.open(sameButProvenance)))) return undefined;
  const { files, change, kept } = structuralIntermediateFiles(TFJS_REBUILD, baseFiles, listed);
  return { teacherFiles: listed, intermediateFiles: files, change, kept, reason };
}

/** A model input or output as tfjs declares it (a graph model's `inputs` and `outputs`). */
interface Port {
  name: string;
  shape?: number[];
  dtype?: string;
}

/**
 * Whether a graph-model teacher takes the base's inputs and gives its outputs: the same inputs
 * and outputs as tfjs lists them (names, dtypes, declared per-example dimensions), and the same
 * `signature` in model.json (the converter's record of them, where the output widths are). A
 * teacher that does not is not rebuilt into: the trainer refuses it as it refuses any teacher of
 * another interface, naming what differs (the app that feeds the model does not change with a
 * payload).
 */
export function samePorts(base: { inputs: Port[]; outputs: Port[] }, teacher: { inputs: Port[]; outputs: Port[] }, baseJson: ModelFile, teacherJson: ModelFile): boolean {
  const free = (d: number | undefined) => d === undefined || d === null || d < 0;
  const listed = (['inputs', 'outputs'] as const).every((kind) => {
    const [a, b] = [base[kind], teacher[kind]];
    return a.length === b.length && a.every((p, i) => {
      const q = b.find((x) => x.name === p.name) ?? (kind === 'outputs' ? b[i] : undefined);
      const [s, t] = [p.shape ?? [], q?.shape ?? []];
      return q !== undefined && s.length === t.length && s.every((d, k) => k === 0 || free(d) || free(t[k]) || d === t[k]) && !(p.dtype && q.dtype && p.dtype !== q.dtype);
    });
  });
  const signature = (f: ModelFile) => canonicalJson((JSON.parse(new TextDecoder().decode(f.bytes)) as { signature?: unknown }).signature ?? null);
  return listed && signature(baseJson) === signature(teacherJson);
}

/** tfjs model artifacts of a TF.js model held as its files (model JSON, then its shards in manifest order), for `tf.io.fromMemory`. */
export function artifactsOf(files: readonly ModelFile[]): { modelTopology: object; weightSpecs: object[]; weightData: ArrayBuffer; format?: string; signature?: object; modelInitializer?: object } {
  const json = JSON.parse(new TextDecoder().decode(files[0].bytes)) as { modelTopology: object; weightsManifest: { weights: object[] }[]; format?: string; signature?: object; modelInitializer?: object };
  return {
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: concatModelFiles(files.slice(1)).slice().buffer,
    ...(json.format ? { format: json.format } : {}),
    ...(json.signature ? { signature: json.signature } : {}),
    ...(json.modelInitializer ? { modelInitializer: json.modelInitializer } : {}),
  };
}

/** The structural payload carrying the learned `values` (a payload from the intermediate files) for a TF.js folder. */
export async function wrapLearnedFolder(plan: StructuralFolderTeacher, baseFiles: readonly ModelFile[], values: Uint8Array): Promise<StructuralDiffResult> {
  const hasher = await getHasher();
  return structuralDiffFiles(hasher, baseFiles, plan.teacherFiles, TFJS_REBUILD, { valuePayload: () => values });
}

/** What the lines and metrics below read of a plan, for one file or a folder. */
type PlanSummary = Pick<StructuralTeacher, 'change' | 'kept' | 'reason'>;

/**
 * `--trainable` narrowed to the kept weights (the teacher's new tensors come whole, untrained).
 * `configTrainable`, for a TF.js layers model, holds the weights its config leaves trainable:
 * `--trainable config` (the default) then keeps frozen layers frozen.
 */
export function keptTrainable(plan: PlanSummary, spec: TrainableSpec, configTrainable?: ReadonlySet<string>): RegExp {
  const names = spec instanceof RegExp ? plan.kept.filter((n) => spec.test(n)) : spec === 'config' && configTrainable ? plan.kept.filter((n) => configTrainable.has(n)) : plan.kept;
  if (names.length === 0) {
    throw new UsageError(plan.kept.length === 0
      ? 'the teacher keeps none of the base\'s weights under the same name, shape and type, so there is nothing to learn a diff of: ship the teacher with `ndiff diff --budget all` (a structural payload)'
      : spec instanceof RegExp
        ? `--trainable ${spec.source} matches none of the ${plan.kept.length} weights the teacher keeps from the base (e.g. ${plan.kept.slice(0, 3).join(', ')})`
        : `the model's config freezes every one of the ${plan.kept.length} weights the teacher keeps from the base (e.g. ${plan.kept.slice(0, 3).join(', ')}): pass --trainable all to train them`);
  }
  return new RegExp(`^(?:${names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$`);
}

/** The structural payload carrying the learned `values` (a payload from the intermediate); the model it reaches, rebuilt as a device would. */
export async function wrapLearned(plan: StructuralTeacher, baseBytes: Uint8Array, teacherBytes: Uint8Array, values: Uint8Array): Promise<{ built: StructuralDiffResult; model: Uint8Array }> {
  const hasher = await getHasher();
  const built = structuralDiff(hasher, baseBytes, teacherBytes, plan.format, { valuePayload: () => values });
  const model = (await rebuildModelBytes(baseBytes, built.bytes, plan.format, { hasher })).bytes;
  return { built, model };
}

/** The lines `ndiff train` prints about the structure. */
export function structuralLines(plan: PlanSummary, built: StructuralDiffResult): string[] {
  const c = plan.change;
  const list = (xs: string[]) => (xs.length ? xs.slice(0, 4).join(', ') + (xs.length > 4 ? `, ... (${xs.length - 4} more)` : '') : 'none');
  return [
    `the teacher's structure differs from the base's (${plan.reason.split(':')[0]}): a structural payload (format v7), ${formatBytes(built.rebuildBytes)} to rebuild ${built.header.files ? `the model's ${built.header.files.length} files` : 'the file'} with the teacher's new tensors whole, then ${formatBytes(built.valueBytes)} of learned patches on the ${plan.kept.length} weights kept from the base; devices need neural-diff/rebuild`,
    `tensors added: ${list(c.added)}; removed: ${list(c.removed)}; renamed: ${list(c.renamed.map((r) => `${r.from} -> ${r.to}`))}; reshaped: ${list(c.reshaped.map((r) => r.name))}; graph ${c.frameChanged ? 'changed' : 'unchanged'}; accuracy "before" is the base's weights in the teacher's structure`,
  ];
}

/** The `structural` entry of `--metrics-out` and `--json`. */
export function structuralMetrics(plan: PlanSummary, built: StructuralDiffResult): Record<string, unknown> {
  const c = plan.change;
  return {
    formatVersion: 7, rebuildBytes: built.rebuildBytes, valueBytes: built.valueBytes, intermediateFingerprint: built.header.intermediateFingerprint,
    added: c.added, removed: c.removed, renamed: c.renamed, reshaped: c.reshaped.map((r) => ({ name: r.name, base: [...r.base], target: [...r.target] })), retyped: c.retyped,
    kept: plan.kept.length, graphChanged: c.frameChanged,
  };
}

/**
 * `--model-out` for a TF.js folder: the base's files copied into a folder of their own and rebuilt
 * there by `payload` as a device rebuilds them (rebuildModelDir: the shards under
 * content-addressed names, the model id recorded), so the next diff starts from a device's bytes.
 * Returns the model's fingerprint.
 */
export async function writeRebuiltFolder(base: string, baseFiles: readonly ModelFile[], outDir: string, payload: Uint8Array): Promise<string> {
  const baseDir = (await locateTfjsModel(base)).dir;
  await mkdir(outDir, { recursive: true });
  await writeFile(path.join(outDir, 'model.json'), baseFiles[0].bytes);
  for (const f of baseFiles.slice(1)) {
    await mkdir(path.dirname(path.join(outDir, f.path)), { recursive: true });
    await cp(path.resolve(baseDir, f.path), path.join(outDir, f.path));
  }
  return (await rebuildModelDir(outDir, payload, { hasher: await getHasher(), state: null })).header.targetFingerprint;
}
