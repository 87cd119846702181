/**
 * `neural-diff`: the build-server library without tfjs (payload building, post-hoc diffs, model
 * files, signing, release folders, reports). The trainers, which need tfjs, are `neural-diff/train`; the device
 * applier is `neural-diff/apply` (src/apply), which this re-exports too.
 *
 * @module neural-diff
 */
export * from './apply/index.ts';
export { diff, type DiffOptions, type DiffResult, type DiffPayload, type ValueDiffReport, type StructuralDiffReport, type CalibrationReport, type CalibrationScore, type EvalCloseness, type OutputKind } from './front/diff.ts';
export { apply, DEFAULT_MAX_PAYLOAD_BYTES, type ApplyOptions, type ApplyReport, type PendingOutcome } from './front/apply.ts';
export { inspect, type InspectReport, type PayloadSummary, type PatchSummary } from './front/inspect.ts';
export { verify, type VerifyOptions, type VerifyReport } from './front/verify.ts';
export { update, checkUpdate, type UpdateOptions, type UpdateReport } from './front/update.ts';
export type { Progress } from './front/progress.ts';
export type { PostHocMethod, WeightEstimate } from './diff/advice.ts';
export type { ByteDeltaStats } from './diff/byte-delta.ts';
export type { Port } from './front/ports.ts';
export { applyDecodedPayload } from './apply/apply.ts';
export { decodePayload } from './core/format.ts';
export { sealEnvelope, envelopeSigningInput } from './apply/envelope.ts';
export { encodePayload, packPayload } from './core/encode.ts';
export { buildPayload, payloadSize, baseDigests, type PatchSpec, type HeaderOptions, type BuiltPayload } from './diff/build.ts';
export { topkDiff, topkFromDeltas, modelDelta, MagnitudeRanking, type TopkOptions, type TopkResult, type TopkCodec } from './diff/topk.ts';
export { BITDELTA_CODE, lowbitDiff, lowbitFromDeltas, lowbitVariants, LowBitCache, quantizeLowBit, quantizeSparseLowBit, quantizeFactors, quantizeWithOutliers, outlierOrder, describeAllocation, describeFactorWidths, describeWidths, LOWBIT_WIDTHS, type LowBitOptions, type LowBitResult, type LowBitAllocation, type ScaleLayout, type QuantizedDelta, type QuantizedFactors, type Outliers } from './diff/lowbit.ts';
export { roundAgainstInputs, inverseCholesky, outputError, type InputMoments, type QuantizedCodes } from './diff/gptq.ts';
export { exactDiff, type ExactDiffOptions, type ExactDiffResult, type ExactCodec } from './diff/exact.ts';
export { checkSameInterface, compareInterfaces, type InterfaceDifference, type WeightsByContent } from './diff/interface.ts';
export { dropDiff, lowRankDiff, type BaselineOptions, type BaselineResult } from './diff/baselines.ts';
export { parseBudget, formatBytes } from './diff/budget.ts';
export { openTfjsModelDir, fileSystemIO, readModelTensors, writeModelDir, TfjsDirWeightStore, openTfjsModel, locateTfjsModel, type TfjsModelLocation, type FileSystemIOOptions } from './io/tfjs/index.ts';
export { TFJS_FRAME, tfjsFrameValues } from './io/tfjs/frame.ts';
export { canonicalJson, type CanonicalJsonOptions } from './core/canonical-json.ts';
export { applyToModelDir, recoverModelDir, type ModelDirApplyOptions, type ModelDirApplyResult } from './io/tfjs/folder-update.ts';
export { recordModelDirDigests, readRecordedDigests } from './io/tfjs/recorded-digests.ts';
export { FileSequenceStore } from './io/durable/sequence-file.ts';
export { generateKeyPair, signPayload, writeKeyPairFiles, readPrivateKeyFile, readPublicKeyFile, type GeneratedKeyPair } from './sign/node-keys.ts';
export { openSafetensorsFile, writeSafetensorsFile, SafetensorsFileStore } from './io/safetensors/files.ts';
export { SafetensorsWeightStore, parseSafetensorsHeader } from './io/safetensors/store.ts';
export { openOnnxFile, applyToOnnxFile, recoverOnnxFile, OnnxFileStore } from './io/onnx/files.ts';
export { OnnxWeightStore, ONNX_FRAME, scanOnnxModel, onnxExternalLocations, type OnnxTensorEntry } from './io/onnx/store.ts';
export { diffOnnxModels, checkOnnxPair, onnxDeltas, type OnnxDiffOptions } from './diff/onnx.ts';
export { loadXY, saveNpy, loadNpy } from './io/npy/files.ts';
export { TRAIN_METHODS, type TrainMethod } from './train/methods.ts';
export { parseNpy, writeNpy } from './io/npy/npy.ts';
export { renderHtml, renderMarkdown, summarize } from './report/report.ts';
export { validateResults, REPORT_METHODS, type ResultRow, type ReportRow, type RowFields, type ReportMethod } from './report/results.ts';
export { reportRows } from './report/rows.ts';
export { addVersion, type AddVersionOptions, type AddVersionResult, type LossyJobPayload, type KeyframePolicy, type DriftCheck } from './release/add.ts';
export { publishRelease, signManifest, type PublishOptions, type PublishResult } from './release/publish.ts';
export { planJobs, runJob, readJobResult } from './release/jobs.ts';
export type { RunJobResult } from './release/jobs.ts';
export { readRecord, RECORD_FILE, type ReleaseRecord, type ReleaseJob, type EdgePolicy, type JobResult } from './release/record.ts';
// Types named in the signatures above, so callers can name them too.
export type { StoreAs } from './diff/build.ts';
export type { TargetCheck, RenderOptions, ReportOptions, ReportSummary, Recommendation, Measure, BudgetSummary, UpdateSummary, TeacherRef, BaseModel, Range } from './report/report.ts';
export type { IOHandler, IOModelArtifacts, IOSaveResult, IOTrainingConfig, IOWeightsManifestEntry } from './io/tfjs/io-types.ts';
export type { NpyArray, NpyData, ParseNpyOptions, NpyWritable } from './io/npy/npy.ts';
export type { XYData, LoadXYOptions } from './io/npy/files.ts';
export type { TfjsModelJson, TfjsDtype, TfjsModelFormat, TfjsWeightGroup, TfjsWeightEntry, TfjsQuantization, TfjsQuantizationDtype, PassthroughValues } from './io/tfjs/manifest.ts';
export type { ModelState } from './io/durable/sequence-file.ts';
export type { TfjsTensorEntry, PassthroughEntry, BeforeSwitchHook, BeforeWriteHook } from './io/tfjs/options.ts';
export type { OnnxOpenOptions, OpenedFile } from './io/onnx/files.ts';
export type { WirePatch } from './core/encode.ts';
export type { ModelJsonTemplate, TensorInput } from './io/tfjs/model-dir.ts';
export type { RecordVersion } from './release/record.ts';
export type { JsonDifference } from './diff/json-difference.ts';
