/** Opening a model by its path for the library calls: a TF.js folder or model JSON file, an ONNX, LiteRT or safetensors file. Paths, model ids and the updated model are src/io/model-paths.ts, re-exported here. */
import { openTfjsModel } from '../io/tfjs/index.ts';
import type { OnnxTensorEntry } from '../io/onnx/store.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { storedModelBytes } from '../diff/build.ts';
import { openModelAt } from '../release/package.ts';
import { UsageError } from '../core/errors.ts';
import { isGgufPath, isModelFilePath, isOnnxPath, isSafetensorsPath, isTflitePath, readPayloadFile } from '../io/model-paths.ts';

export { isGgufPath, isOnnxPath, isTflitePath, isModelFilePath, isSafetensorsPath, readPayloadFile, parseExpiry, writeUpdatedModel, resolveModelId, checkOutputPath } from '../io/model-paths.ts';

/** What kind of model a path names, for messages: `.onnx file`, `.tflite file`, `.safetensors file`, `TF.js folder`. */
export function modelKindText(p: string): string {
  return isOnnxPath(p) ? 'an .onnx file' : isTflitePath(p) ? 'a .tflite file' : isSafetensorsPath(p) ? 'a .safetensors file' : 'a TF.js folder';
}

/**
 * A library call's payload argument: a file's path (read, refused over `maxPayloadBytes` before
 * it is read) or its bytes. `call` shows the right form in the message (`inspect('v1-v2.ndiff')`).
 * @throws UsageError for anything else (an options object given to `inspect`, an ArrayBuffer, ...).
 */
export async function payloadArgument(payload: unknown, call: string, maxPayloadBytes?: number): Promise<Uint8Array> {
  if (typeof payload === 'string') return readPayloadFile(payload, maxPayloadBytes);
  if (payload instanceof Uint8Array) return payload;
  const found = payload === null ? 'null' : payload instanceof ArrayBuffer ? 'an ArrayBuffer' : Array.isArray(payload) ? 'an array' : typeof payload === 'object' ? 'an object' : `${typeof payload} ${String(payload)}`;
  throw new UsageError(`payload: expected a payload file's path or its bytes (a Uint8Array), found ${found}: pass one, as in ${call}${payload instanceof ArrayBuffer ? ' (wrap an ArrayBuffer: new Uint8Array(buffer))' : ''}`, { expected: 'a path or a Uint8Array', found });
}

/** An opened model: a TF.js folder, an ONNX, LiteRT or safetensors file. */
export interface OpenedModel {
  kind: 'folder' | 'onnx' | 'tflite' | 'safetensors';
  store: WeightStore;
  /** Bytes of the patchable weights as stored (storedModelBytes), what `1%` budgets are a percentage of. */
  weightBytes: number;
  /** Close the files the store holds open (an ONNX model's external data files). */
  close(): Promise<void>;
}

/**
 * Open a model by its path: a `.onnx` file (and its external data), a `.tflite` file or a TF.js model folder.
 * `lazy` reads a folder's shards when first used. A `.gguf` model is refused (UsageError): `diff` and
 * `apply` take it by their own path (GGUF block payloads), the other commands not.
 */
export async function openModel(p: string, options: { lazy?: boolean } = {}): Promise<OpenedModel> {
  if (isGgufPath(p)) throw new UsageError(`${p} is a GGUF model: GGUF models are inspected and fingerprinted (ndiff inspect, ndiff fingerprint), diffed exactly (ndiff diff --budget all) and patched in place (ndiff apply); this command does not take them`, { model: p, expected: 'a TF.js folder, an .onnx, .tflite or .safetensors file', found: 'a .gguf file' });
  // A single-file model: its weights as stored (float32 4 bytes, halves 2, int8/uint8 1), what a payload may change.
  // A safetensors file: read whole into memory; F32, F16 and BF16 tensors are its weights.
  if (isModelFilePath(p)) return { kind: isOnnxPath(p) ? 'onnx' : isTflitePath(p) ? 'tflite' : 'safetensors', ...(await openModelAt(p)) };
  // A folder (its model.json), or a model JSON file with its shards beside it (read-only).
  const store = await openTfjsModel(p, options.lazy ? { lazy: true } : {});
  return { kind: 'folder', store, weightBytes: storedModelBytes(store), close: async () => {} };
}

/** The dtype column of `fingerprint --tensors` (ONNX tensors carry one). */
export function dtypeOf(entry: { name: string }): string {
  return (entry as Partial<OnnxTensorEntry>).dtype ?? 'float32';
}
