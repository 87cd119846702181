/**
 * `neural-diff`: the build-server library (trainers, payload building, model files, reports).
 * The device applier is `neural-diff/apply` (src/apply), which this re-exports too.
 */
export * from './apply/index.ts';
export { applyDecodedPayload } from './apply/apply.ts';
export { decodePayload } from './core/format.ts';
export { sealEnvelope, envelopeSigningInput } from './apply/envelope.ts';
export { encodePayload, packPayload } from './core/encode.ts';
export { buildPayload, payloadSize, baseDigests, type PatchSpec, type HeaderOptions, type BuiltPayload } from './diff/build.ts';
export { topkDiff, topkFromDeltas, modelDelta, MagnitudeRanking, type TopkOptions, type TopkResult } from './diff/topk.ts';
export { dropDiff, lowRankDiff, type BaselineOptions, type BaselineResult } from './diff/baselines.ts';
export { parseBudget, formatBytes } from './diff/budget.ts';
export { trainDiff, TRAIN_METHODS, type TrainMethod, type TrainDiffOptions, type TrainDiffResult } from './train/train-diff.ts';
export { initBackend, type TrainBackendName } from './train/backend.ts';
export { evaluate, fromDataset, type LabelledData } from './train/data.ts';
export { modelToStore, setModelWeights, namedVariables } from './train/model-weights.ts';
export { SparseMask, DEFAULT_SPARSE_MASK, type SparseMaskOptions } from './sparse-diff/trainer.ts';
export { HashedBuckets } from './hash-diff/trainer.ts';
export { openTfjsModelDir, fileSystemIO, readModelTensors, writeModelDir, TfjsDirWeightStore } from './io/tfjs-artifacts.ts';
export { applyToModelDir, recoverModelDir, type ModelDirApplyOptions, type ModelDirApplyResult } from './io/model-dir-update.ts';
export { recordModelDirDigests, readRecordedDigests } from './io/recorded-digests.ts';
export { FileSequenceStore } from './io/sequence-file.ts';
export { generateKeyPair, signPayload, writeKeyPairFiles, readPrivateKeyFile, readPublicKeyFile, type GeneratedKeyPair } from './sign/node-keys.ts';
export { tfModelStore, TfModelWeightStore } from './io/tf-model-store.ts';
export { openSafetensorsFile, writeSafetensorsFile, SafetensorsFileStore } from './io/safetensors-files.ts';
export { SafetensorsWeightStore, parseSafetensorsHeader } from './io/safetensors.ts';
export { openOnnxFile, applyToOnnxFile, recoverOnnxFile, OnnxFileStore } from './io/onnx-files.ts';
export { OnnxWeightStore, ONNX_FRAME, scanOnnxModel, onnxExternalLocations, type OnnxTensorEntry } from './io/onnx.ts';
export { diffOnnxModels, checkOnnxPair, onnxDeltas, type OnnxDiffOptions } from './diff/onnx.ts';
export { loadXY, saveNpy, loadNpy } from './io/npy-files.ts';
export { parseNpy, writeNpy } from './io/npy.ts';
export { renderHtml, renderMarkdown, checkTargets } from './report/report.ts';
export { validateResults, type ResultRow } from './report/results.ts';
