/** Model and payload files for the CLI. */
import { openTfjsModel } from '../src/io/tfjs/index.ts';
import { isOnnxPath, isTflitePath, isModelFilePath } from '../src/io/model-paths.ts';
import type { OnnxTensorEntry } from '../src/io/onnx/store.ts';
import type { WeightStore } from '../src/core/weight-store.ts';
import { storedModelBytes } from '../src/diff/build.ts';
import { openModelAt } from '../src/release/package.ts';

// Paths, model ids, outputs and the updated model are the library's (src/io/model-paths.ts): the
// commands and the library calls behind them read them alike.
export { isOnnxPath, isTflitePath, isModelFilePath, readPayloadFile, parseExpiry, writeUpdatedModel, resolveModelId, checkOutputPath } from '../src/io/model-paths.ts';

/** What kind of model a path names, for messages: `.onnx file`, `.tflite file`, `TF.js folder`. */
export function modelKindText(p: string): string {
  return isOnnxPath(p) ? 'an .onnx file' : isTflitePath(p) ? 'a .tflite file' : 'a TF.js folder';
}

/** A model the CLI opened: a TF.js folder, an ONNX file or a LiteRT file. */
export interface OpenedModel {
  kind: 'folder' | 'onnx' | 'tflite';
  store: WeightStore;
  /** Bytes of the patchable weights as stored (storedModelBytes), what `1%` budgets are a percentage of. */
  weightBytes: number;
  /** Close the files the store holds open (an ONNX model's external data files). */
  close(): Promise<void>;
}

/**
 * Open a model by its path: a `.onnx` file (and its external data), a `.tflite` file or a TF.js model folder.
 * `lazy` reads a folder's shards when first used.
 */
export async function openModel(p: string, options: { lazy?: boolean } = {}): Promise<OpenedModel> {
  // A single-file model: its weights as stored (float32 4 bytes, halves 2, int8/uint8 1), what a payload may change.
  if (isModelFilePath(p)) return { kind: isOnnxPath(p) ? 'onnx' : 'tflite', ...(await openModelAt(p)) };
  // A folder (its model.json), or a model JSON file with its shards beside it (read-only).
  const store = await openTfjsModel(p, options.lazy ? { lazy: true } : {});
  return { kind: 'folder', store, weightBytes: storedModelBytes(store), close: async () => {} };
}

/** The dtype column of `fingerprint --tensors` (ONNX tensors carry one). */
export function dtypeOf(entry: { name: string }): string {
  return (entry as Partial<OnnxTensorEntry>).dtype ?? 'float32';
}

