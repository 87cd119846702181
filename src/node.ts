/**
 * `neural-diff/node`: the device updater for Node and Electron (the app's main process), without
 * tfjs or the trainers: `updateModel` (fetch a release over HTTP and bring the model to its
 * newest version, docs/PUBLISHING.md), crash-safe, verified applies to TF.js model folders (or
 * model JSON files sharing a folder), ONNX, LiteRT and safetensors files, GGUF models patched in
 * place (`applyToGgufFile`), the sequence file, recorded digests, and everything
 * `neural-diff/apply` exports.
 *
 * ```ts
 * import { applyToModelDir } from 'neural-diff/node';
 * const result = await applyToModelDir('models/kws', payloadBytes, { trustedKeys: [releasePublicKey] });
 * ```
 *
 * @module neural-diff/node
 */
export * from './apply/index.ts';
export { applyToModelDir, recoverModelDir, confirmUpdate, rollbackUpdate, lockModelDir, readFolderModelId, recordFolderModelId, LOCK_FILE, JOURNAL_FILE, FOLDER_FILE, RETIRED_MODEL_JSON, type ModelDirApplyOptions, type ModelDirApplyResult, type RecoveryReport, type FolderOptions } from './io/tfjs/folder-update.ts';
export { readPayloadFile } from './io/durable/payload-file.ts';
export { nodeFileOps, readRegularFile, writeFileAtomically, type FileOps, type NewFile } from './io/durable/durable.ts';
export { recordModelDirDigests, readRecordedDigests, writeRecordedDigests, DIGESTS_FILE } from './io/tfjs/recorded-digests.ts';
export { FileSequenceStore, DEFAULT_STATE_FILE } from './io/durable/sequence-file.ts';
export { openTfjsModelDir, fileSystemIO, readModelTensors, writeModelDir, referencedFiles, listStaleFiles, locateModelFiles, TfjsDirWeightStore, MODEL_JSON, PREVIOUS_MODEL_JSON, type RecordedDigest, type OpenOptions, type WriteOptions, type ModelPlace, type FileSystemIOOptions } from './io/tfjs/index.ts';
export { modelFilesOf, FOLDER_MODEL_FILES, type ModelFiles } from './io/durable/control-files.ts';
export { openSafetensorsFile, writeSafetensorsFile, SafetensorsFileStore, applyToSafetensorsFile, recoverSafetensorsFile, openSafetensorsUpdateStore, SAFETENSORS_FILE, MAX_SAFETENSORS_FILE_BYTES, type SafetensorsUpdateStore } from './io/safetensors/files.ts';
export { SafetensorsWeightStore } from './io/safetensors/store.ts';
export { openOnnxFile, applyToOnnxFile, rebuildOnnxFile, recoverOnnxFile, OnnxFileStore, OnnxFileSequenceStore, ONNX_STATE_SUFFIX, ONNX_JOURNAL_SUFFIX, ONNX_DONE_SUFFIX, ONNX_PREVIOUS_SUFFIX, type OnnxApplyOptions, type OnnxApplyResult } from './io/onnx/files.ts';
export { OnnxWeightStore, ONNX_FRAME, onnxExternalLocations, type OnnxTensorEntry, type OnnxStoreOptions } from './io/onnx/store.ts';
export { openTfliteFile, applyToTfliteFile, rebuildTfliteFile, recoverTfliteFile, saveTfliteFileAs, TfliteFileStore, TFLITE_FILE } from './io/tflite/files.ts';
export { rebuildWeightsFile, type WeightsFileRebuildOptions, type WeightsFileRebuildResult } from './io/durable/weights-file-rebuild.ts';
export { rebuildModelDir, readTfjsModelFiles, TFJS_REBUILD, type ModelDirRebuildOptions, type ModelDirRebuildResult } from './io/tfjs/folder-rebuild.ts';
export { TfjsFilesStore, tfjsFileOrder } from './io/tfjs/files-store.ts';
export { OnnxFilesStore, onnxFileOrder, ONNX_FILES_REBUILD } from './io/onnx/files-store.ts';
export { TfliteWeightStore, TFLITE_FRAME, scanTfliteModel, type TfliteTensorEntry, type TfliteStoreOptions } from './io/tflite/store.ts';
export { WeightsFileStore, openWeightsFile, type WeightsFileFormat, type WeightsFileContents, type ExternalPatch, type ExternalSource } from './io/durable/weights-file.ts';
export { applyToWeightsFile, recoverWeightsFile } from './io/durable/weights-file-update.ts';
export type { PendingOptions, PendingHealthCheck, PendingSettlement } from './io/durable/pending-update.ts';
export { ONNX_FILE } from './io/onnx/files.ts';
export type { TfliteScan, TfliteScanOptions, TfliteTensorRecord, TfliteQuantization } from './io/tflite/schema.ts';
export { updateModel, nodeUpdater, defaultStateDir, type NodeUpdateOptions } from './io/updater/node-updater.ts';
export { tfjsFolderTarget, tfjsModelFileTarget, onnxFileTarget, tfliteFileTarget, safetensorsFileTarget, recoverFullInstall, INCOMING_SUFFIX, PREVIOUS_SUFFIX, RETIRED_SUFFIX, FIRST_INSTALL_SUFFIX } from './io/updater/targets.ts';
export { FileUpdaterState, FileDownloadStore } from './io/updater/state-files.ts';
export { Updater, type UpdaterOptions, type UpdateResult, type UpdateStep } from './updater/updater.ts';
export type { PendingUpdateOutcome, PendingCheck } from './updater/target.ts';
// GGUF models (llama.cpp's files) patched in place by a GGUF block payload (format v8), behind an undo journal.
export { applyToGgufFile, recoverGgufFile, ggufModelFiles, ggufUndoJournal, ggufStoredDigest, ggufFileDigests, type GgufFileDigests, type GgufApplyOptions, type GgufApplyResult } from './io/gguf/in-place.ts';
export type { GgufPayloadInput, GgufPayloadReader } from './io/gguf/payload-file.ts';
export { ggufFileTarget } from './io/updater/gguf-target.ts';
export { GGUF_UNDO_SUFFIX } from './io/gguf/undo-journal.ts';
export { decodeGgufPayload, ggufModelDigest, ggufPayloadMisfit, GGUF_PAYLOAD_VERSION, GGUF_CHUNK_BYTES, GGUF_MAX_CHUNK_BYTES, GGUF_MAX_PARTS, CHUNK_BYTE_DELTA, CHUNK_XOR_RANGE_CODED, type GgufPayload, type GgufPayloadHeader, type GgufChunk, type GgufRun, type GgufPartDigests } from './io/gguf/payload.ts';
// Types named in the signatures above, so callers can name them too.
export type { TfjsTensorEntry, PassthroughEntry, BeforeSwitchHook, BeforeWriteHook } from './io/tfjs/options.ts';
export type { ModelState } from './io/durable/sequence-file.ts';
export type { OnnxOpenOptions } from './io/onnx/files.ts';
