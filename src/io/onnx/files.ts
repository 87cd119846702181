/**
 * ONNX model files on disk (Node and Electron): open a `.onnx` file and its external data files
 * as a {@link WeightStore}, and apply a payload to them crash-safely (the journal, kept previous
 * version, recovery and checks of `src/io/durable/weights-file.ts` and `weights-file-update.ts`,
 * shared with `.tflite` files). The format itself is in the pure `store.ts` and `proto.ts`.
 */
import type { WeightStore } from '../../core/weight-store.ts';
import { openWeightsFile, readWeightsFileBytes, WeightsFileStore, type WeightsFileFormat, type WeightsFileOpenOptions } from '../durable/weights-file.ts';
import { applyToWeightsFile, recoverWeightsFile, saveWeightsFileAs, type WeightsFileApplyOptions, type WeightsFileApplyResult } from '../durable/weights-file-update.ts';
import type { PendingOptions } from '../durable/pending-update.ts';
import type { RecoveryReport } from '../durable/lock.ts';
import { rebuildWeightsFile, type WeightsFileRebuildOptions, type WeightsFileRebuildResult } from '../durable/weights-file-rebuild.ts';
import { OnnxWeightStore, onnxExternalLocations } from './store.ts';
import { ONNX_FILES_REBUILD } from './files-store.ts';

export { type WeightsFileOpenOptions as OnnxOpenOptions, type OpenedFile } from '../durable/weights-file.ts';
export {
  JOURNAL_SUFFIX as ONNX_JOURNAL_SUFFIX, DONE_SUFFIX as ONNX_DONE_SUFFIX, PREVIOUS_SUFFIX as ONNX_PREVIOUS_SUFFIX, STATE_SUFFIX as ONNX_STATE_SUFFIX,
  WeightsFileSequenceStore as OnnxFileSequenceStore, weightsFileSequenceStore as onnxSequenceStore,
  type WeightsFileApplyOptions as OnnxApplyOptions, type WeightsFileApplyResult as OnnxApplyResult,
} from '../durable/weights-file-update.ts';

/** The largest `.onnx` file read: protobuf messages stop at 2 GiB, so larger weights go in external data files. */
export const MAX_ONNX_MODEL_BYTES = 2 ** 31 - 1;

/** ONNX as a {@link WeightsFileFormat}. */
export const ONNX_FILE: WeightsFileFormat<OnnxWeightStore> = {
  what: 'an ONNX model (.onnx)',
  extension: /\.onnx$/i,
  journal: 'neural-diff-onnx-update',
  maxBytes: MAX_ONNX_MODEL_BYTES,
  tooBig: (file, size) => `${file} is ${size} bytes: an ONNX model file holds at most 2 GiB (protobuf's limit); keep large weights in external data files (onnx.save_model(..., save_as_external_data=True))`,
  externalLocations: (bytes, source) => onnxExternalLocations(bytes, source),
  contents: (bytes, external, source) => new OnnxWeightStore(bytes, { external, source }),
  files: ONNX_FILES_REBUILD,
};

/** An ONNX model on disk (see `WeightsFileStore`). */
export type OnnxFileStore = WeightsFileStore<OnnxWeightStore>;
/** The class of {@link OnnxFileStore} (for `instanceof`). */
export const OnnxFileStore = WeightsFileStore;

/**
 * Open an ONNX model file (and the external data files it names, relative to its folder) as a
 * {@link WeightStore}: `openWeightsFile` with {@link ONNX_FILE}, which says what is refused.
 */
export function openOnnxFile(file: string, options: WeightsFileOpenOptions = {}): Promise<OnnxFileStore> {
  return openWeightsFile(file, ONNX_FILE, options);
}

/** An ONNX model file's bytes and its external data files', read whole through {@link openOnnxFile}'s checks. */
export function readOnnxFileBytes(file: string): Promise<{ bytes: Uint8Array; external: Map<string, Uint8Array> }> {
  return readWeightsFileBytes(file, ONNX_FILE);
}

/** Bring an ONNX model back to a confirmed version after an interrupted update (see `recoverWeightsFile`). */
export function recoverOnnxFile(file: string, options: PendingOptions = {}): Promise<RecoveryReport> {
  return recoverWeightsFile(file, ONNX_FILE, options);
}

/** Verify a payload and apply it to the ONNX model `file`, crash-safely (see `applyToWeightsFile`). */
export function applyToOnnxFile(file: string, payloadBytes: Uint8Array, options: WeightsFileApplyOptions = {}): Promise<WeightsFileApplyResult> {
  return applyToWeightsFile(file, payloadBytes, ONNX_FILE, options);
}

/** Write the model `disk` holds, patched, as a new model at `outFile` with its external files beside it (see `saveWeightsFileAs`). */
export function saveOnnxFileAs(disk: OnnxFileStore, changed: readonly string[], outFile: string): Promise<void> {
  return saveWeightsFileAs(disk, changed, outFile, ONNX_FILE);
}

/** Rebuild the ONNX model `file` with a structural payload (format v7), crash-safely (see `rebuildWeightsFile`). */
export function rebuildOnnxFile(file: string, payloadBytes: Uint8Array, options: WeightsFileRebuildOptions = {}): Promise<WeightsFileRebuildResult> {
  return rebuildWeightsFile(file, payloadBytes, ONNX_FILE, 'onnx', options);
}
