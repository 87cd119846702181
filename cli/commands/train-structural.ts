/**
 * `ndiff train --teacher` with a teacher whose structure differs from the base's (tensors added,
 * removed, renamed or reshaped, the graph changed), for single-file models (ONNX with inline data,
 * LiteRT): the trainer learns its diff on the file a structural payload rebuilds first (the
 * teacher's structure, every kept weight holding the base's values, the teacher's new tensors
 * whole), training the kept weights only; the learned payload is then carried inside a structural
 * payload (format v7) that devices apply with `neural-diff/rebuild`. `--budget` bounds the learned
 * part, as it bounds the value part of `ndiff diff`'s structural payloads.
 */
import { UsageError } from '../../src/core/errors.ts';
import { getHasher } from '../../src/core/hasher.ts';
import type { WeightStore } from '../../src/core/weight-store.ts';
import { formatBytes } from '../../src/diff/budget.ts';
import { compareInterfaces, describeDifference } from '../../src/diff/interface.ts';
import { structuralDiff, structuralIntermediate, type StructuralChange, type StructuralDiffResult } from '../../src/diff/structural.ts';
import { rebuildModelBytes, type RebuildFormat } from '../../src/apply/rebuild.ts';
import type { TrainableSpec } from '../../src/train/select.ts';
import { ONNX_REBUILD, TFLITE_REBUILD } from './diff-structural.ts';

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
  if (base.external || teacher.external) {
    throw new UsageError(`--teacher ${teacher.file} has another structure than the base (${reason.split(':')[0]}), which ships as a structural payload that rebuilds one file; the ${base.external ? 'base' : 'teacher'} keeps weights in external data files: save both with their weights inside (onnx.save_model(..., save_as_external_data=False))`);
  }
  const format = kind === 'onnx' ? ONNX_REBUILD : TFLITE_REBUILD;
  return { format, ...structuralIntermediate(format, base.bytes, teacher.bytes), reason };
}

/** `--trainable` narrowed to the kept weights (the teacher's new tensors come whole, untrained). */
export function keptTrainable(plan: StructuralTeacher, spec: TrainableSpec): RegExp {
  const names = spec instanceof RegExp ? plan.kept.filter((n) => spec.test(n)) : plan.kept;
  if (names.length === 0) {
    throw new UsageError(plan.kept.length === 0
      ? 'the teacher keeps none of the base\'s weights under the same name, shape and type, so there is nothing to learn a diff of: ship the teacher with `ndiff diff --budget all` (a structural payload)'
      : `--trainable ${(spec as RegExp).source} matches none of the ${plan.kept.length} weights the teacher keeps from the base (e.g. ${plan.kept.slice(0, 3).join(', ')})`);
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
export function structuralLines(plan: StructuralTeacher, built: StructuralDiffResult): string[] {
  const c = plan.change;
  const list = (xs: string[]) => (xs.length ? xs.slice(0, 4).join(', ') + (xs.length > 4 ? `, ... (${xs.length - 4} more)` : '') : 'none');
  return [
    `the teacher's structure differs from the base's (${plan.reason.split(':')[0]}): a structural payload (format v7), ${formatBytes(built.rebuildBytes)} to rebuild the file with the teacher's new tensors whole, then ${formatBytes(built.valueBytes)} of learned patches on the ${plan.kept.length} weights kept from the base; devices need neural-diff/rebuild`,
    `tensors added: ${list(c.added)}; removed: ${list(c.removed)}; renamed: ${list(c.renamed.map((r) => `${r.from} -> ${r.to}`))}; reshaped: ${list(c.reshaped.map((r) => r.name))}; graph ${c.frameChanged ? 'changed' : 'unchanged'}; accuracy "before" is the base's weights in the teacher's structure`,
  ];
}

/** The `structural` entry of `--metrics-out` and `--json`. */
export function structuralMetrics(plan: StructuralTeacher, built: StructuralDiffResult): Record<string, unknown> {
  const c = plan.change;
  return {
    formatVersion: 7, rebuildBytes: built.rebuildBytes, valueBytes: built.valueBytes, intermediateFingerprint: built.header.intermediateFingerprint,
    added: c.added, removed: c.removed, renamed: c.renamed, reshaped: c.reshaped.map((r) => ({ name: r.name, base: [...r.base], target: [...r.target] })), retyped: c.retyped,
    kept: plan.kept.length, graphChanged: c.frameChanged,
  };
}
