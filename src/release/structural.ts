/**
 * Structural payloads (format v7) in a release: when a new version of a single-file model (ONNX
 * with inline data, LiteRT) has another structure than a job's base (tensors added, removed,
 * renamed or reshaped, the graph changed), the job's payload rebuilds the file instead of
 * patching values (always exact: a device ends at the version, byte for byte). Jobs, publish and
 * the job files read and check such payloads as they do value payloads: their header, and that
 * they take the job's base where they say, rebuilt as a device would.
 */
import { UsageError } from '../core/errors.ts';
import { decodePayload, type PayloadHeader } from '../core/format.ts';
import type { Hasher } from '../core/hasher.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { applyPayload } from '../apply/apply.ts';
import { decodeStructuralPayload, isStructuralPayload, rebuildModelBytes, type FileModelStore, type RebuildFormat } from '../apply/rebuild.ts';
import { compareInterfaces, describeDifference } from '../diff/interface.ts';
import { structuralDiff } from '../diff/structural.ts';
import { OnnxWeightStore } from '../io/onnx/store.ts';
import { TfliteWeightStore } from '../io/tflite/store.ts';
import type { ReleaseRecord } from './record.ts';

type ModelKind = ReleaseRecord['modelKind'];

const FORMATS: Partial<Record<ModelKind, RebuildFormat>> = {
  onnx: { kind: 'onnx', open: (b) => new OnnxWeightStore(b) },
  tflite: { kind: 'tflite', open: (b) => new TfliteWeightStore(b) },
};

/** The header of an unsigned payload of any version (1-7). */
export async function payloadHeaderOf(bytes: Uint8Array): Promise<PayloadHeader> {
  return isStructuralPayload(bytes) ? (await decodeStructuralPayload(bytes)).header : decodePayload(bytes).header;
}

/**
 * Apply `bytes` to the release state `store` of a `kind` model as a device would: a value
 * payload in place, a structural one rebuilt from the state's file bytes (the store only read).
 * Throws unless it reaches the target its header names.
 */
export async function applyToState(kind: ModelKind, store: WeightStore, bytes: Uint8Array, hasher: Hasher): Promise<void> {
  if (!isStructuralPayload(bytes)) {
    await applyPayload(store, bytes, { hasher });
    return;
  }
  const format = FORMATS[kind];
  if (!format) throw new UsageError(`a structural payload (format v7) is for .onnx and .tflite models; this release holds ${kind} models`);
  await rebuildModelBytes((store as FileModelStore).modelBytes(), bytes, format, { hasher });
}

/**
 * The exact structural payload from the state `base` to the version `target` when their
 * structures differ (undefined when they share one: an ordinary payload is made). TF.js folders
 * are not rebuilt by a release yet: their job is skipped (devices there get the full package).
 */
export function structuralEdge(kind: ModelKind, hasher: Hasher, base: WeightStore, target: WeightStore, header: { modelId: string; sequence: number }): { bytes: Uint8Array; reason: string } | { skip: string } | undefined {
  const reason = describeDifference(compareInterfaces(base, target));
  if (!reason) return undefined;
  const format = FORMATS[kind];
  if (!format) return { skip: `the new version's structure differs from this base's (${reason.split(':')[0]}), which a release rebuilds for .onnx and .tflite models only: devices holding it get the full package` };
  const bytes = structuralDiff(hasher, (base as FileModelStore).modelBytes(), (target as FileModelStore).modelBytes(), format, header).bytes;
  return { bytes, reason: reason.split(':')[0] };
}
