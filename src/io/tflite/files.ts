/**
 * LiteRT model files on disk (Node and Electron): open a `.tflite` file as a {@link WeightStore}
 * and apply a payload to it crash-safely, with the journal, kept previous version, recovery,
 * recorded model id, replay state and health check `.onnx` files have
 * (`src/io/durable/weights-file.ts`, `weights-file-update.ts`). The format itself is in the pure `store.ts` and `schema.ts`.
 */
import type { WeightStore } from '../../core/weight-store.ts';
import { openWeightsFile, WeightsFileStore, type WeightsFileFormat, type WeightsFileOpenOptions } from '../durable/weights-file.ts';
import { applyToWeightsFile, recoverWeightsFile, saveWeightsFileAs, type WeightsFileApplyOptions, type WeightsFileApplyResult } from '../durable/weights-file-update.ts';
import type { PendingOptions } from '../durable/pending-update.ts';
import type { RecoveryReport } from '../durable/lock.ts';
import { rebuildWeightsFile, type WeightsFileRebuildOptions, type WeightsFileRebuildResult } from '../durable/weights-file-rebuild.ts';
import { MAX_TFLITE_MODEL_BYTES, TfliteWeightStore } from './store.ts';

/** LiteRT as a {@link WeightsFileFormat}: one file, no external data. */
export const TFLITE_FILE: WeightsFileFormat<TfliteWeightStore> = {
  what: 'a LiteRT model (.tflite)',
  extension: /\.tflite$/i,
  journal: 'neural-diff-tflite-update',
  maxBytes: MAX_TFLITE_MODEL_BYTES,
  tooBig: (file, size) => `${file} is ${size} bytes: a .tflite file is read whole, at most 2 GiB - 1 bytes; ship such a model as a full download`,
  externalLocations: () => [],
  contents: (bytes, _external, source) => new TfliteWeightStore(bytes, { source }),
};

/** A LiteRT model on disk (see `WeightsFileStore`). */
export type TfliteFileStore = WeightsFileStore<TfliteWeightStore>;
/** The class of {@link TfliteFileStore} (for `instanceof`). */
export const TfliteFileStore = WeightsFileStore;

/** Open a `.tflite` file as a {@link WeightStore}: regular files only, checked before a byte is read (see `openWeightsFile`). */
export function openTfliteFile(file: string, options: WeightsFileOpenOptions = {}): Promise<TfliteFileStore> {
  return openWeightsFile(file, TFLITE_FILE, options);
}

/** Bring a `.tflite` file back to a confirmed version after an interrupted update (see `recoverWeightsFile`). */
export function recoverTfliteFile(file: string, options: PendingOptions = {}): Promise<RecoveryReport> {
  return recoverWeightsFile(file, TFLITE_FILE, options);
}

/** Verify a payload and apply it to the `.tflite` file `file`, crash-safely (see `applyToWeightsFile`). */
export function applyToTfliteFile(file: string, payloadBytes: Uint8Array, options: WeightsFileApplyOptions = {}): Promise<WeightsFileApplyResult> {
  return applyToWeightsFile(file, payloadBytes, TFLITE_FILE, options);
}

/** Write the model `disk` holds, patched, as a new `.tflite` file at `outFile` (see `saveWeightsFileAs`). */
export function saveTfliteFileAs(disk: TfliteFileStore, changed: readonly string[], outFile: string): Promise<void> {
  return saveWeightsFileAs(disk, changed, outFile, TFLITE_FILE);
}

/** Rebuild the `.tflite` file `file` with a structural payload (format v7), crash-safely (see `rebuildWeightsFile`). */
export function rebuildTfliteFile(file: string, payloadBytes: Uint8Array, options: WeightsFileRebuildOptions = {}): Promise<WeightsFileRebuildResult> {
  return rebuildWeightsFile(file, payloadBytes, TFLITE_FILE, 'tflite', options);
}
