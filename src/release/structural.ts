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
import { applyPayload } from '../apply/apply.ts';
import { decodeStructuralPayload, isStructuralPayload, rebuildModelBytes, rebuildModelFiles, type FileModelStore, type RebuildFormat } from '../apply/rebuild.ts';
import { compareInterfaces, describeDifference } from '../diff/interface.ts';
import { decodeGgufPayload, isGgufPayloadDocument } from '../io/gguf/payload.ts';
import { structuralDiff, structuralDiffFiles } from '../diff/structural.ts';
import { readTfjsModelFiles, TFJS_REBUILD } from '../io/tfjs/folder-rebuild.ts';
import { locateTfjsModel } from '../io/tfjs/model-file.ts';
import type { OpenedState } from './package.ts';
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
  // A GGUF block payload (format v8) names its base and target as every payload does; its method is `blocks`.
  if (isGgufPayloadDocument(bytes)) return decodeGgufPayload(bytes).header as unknown as PayloadHeader;
  return isStructuralPayload(bytes) ? (await decodeStructuralPayload(bytes)).header : decodePayload(bytes).header;
}

/** A TF.js model's files as a structural payload lists them: its model JSON as `model.json`, then its shards. */
async function tfjsFiles(modelPath: string) {
  const at = await locateTfjsModel(modelPath);
  const files = await readTfjsModelFiles(at.dir, at.modelJsonFile);
  return [{ path: 'model.json', bytes: files[0].bytes }, ...files.slice(1)];
}

/**
 * Apply `bytes` to the release state `state` of a `kind` model as a device would: a value
 * payload in place, a structural one rebuilt from the state's files (only read). Throws unless
 * it reaches the target its header names.
 */
export async function applyToState(kind: ModelKind, state: Pick<OpenedState, 'store' | 'path'>, bytes: Uint8Array, hasher: Hasher): Promise<void> {
  if (!isStructuralPayload(bytes)) {
    await applyPayload(state.store, bytes, { hasher });
    return;
  }
  if (kind === 'safetensors') throw new UsageError('a structural payload (format v7) rebuilds a TF.js model, an .onnx or a .tflite file; none is made for a .safetensors file: devices holding another structure get the full file');
  const format = FORMATS[kind];
  if (format) await rebuildModelBytes((state.store as FileModelStore).modelBytes(), bytes, format, { hasher });
  else if (state.path) await rebuildModelFiles(await tfjsFiles(state.path), bytes, TFJS_REBUILD, { hasher });
  else throw new UsageError('a structural payload (format v7) for a TF.js model starts from a version as stored, not from a state a lossy payload reached');
}

/**
 * The exact structural payload from the state `base` to the version `target` when their
 * structures differ (undefined when they share one: an ordinary payload is made). A TF.js model
 * is rebuilt from a version as stored; from a state a lossy payload reached (whose files exist
 * only on the devices that took it) its job is skipped, and those devices get the full package.
 */
export async function structuralEdge(kind: ModelKind, hasher: Hasher, base: Pick<OpenedState, 'store' | 'path'>, target: Pick<OpenedState, 'store' | 'path'>, header: { modelId: string; sequence: number }): Promise<{ bytes: Uint8Array; reason: string } | { skip: string } | undefined> {
  const difference = describeDifference(compareInterfaces(base.store, target.store));
  if (!difference) return undefined;
  const reason = difference.split(':')[0];
  if (kind === 'safetensors') return { skip: `the new version's tensors differ from this state's (${reason}), and no structural payload is made for a .safetensors file: devices holding it get the full file` };
  const format = FORMATS[kind];
  if (format) return { bytes: structuralDiff(hasher, (base.store as FileModelStore).modelBytes(), (target.store as FileModelStore).modelBytes(), format, header).bytes, reason };
  if (!base.path || !target.path) return { skip: `the new version's structure differs from this state's (${reason}), and a TF.js model is rebuilt from a version's files, not from a state a lossy payload reached: devices holding it get the full package` };
  return { bytes: structuralDiffFiles(hasher, await tfjsFiles(base.path), await tfjsFiles(target.path), TFJS_REBUILD, header).bytes, reason };
}
