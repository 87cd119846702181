/**
 * `neural-diff`: the build-server library without tfjs. The calls that do what the commands do
 * ({@link diff}, {@link apply}, {@link inspect}, {@link verify}, {@link update},
 * {@link checkUpdate}, {@link release}, {@link fingerprint}, {@link report}, {@link keygen},
 * {@link sign}), the model files and weight stores they read and write, the device
 * applier's entry points and typed errors, signing keys, release folders and reports. The
 * trainers, which need tfjs, are `neural-diff/train`; the device applier alone is
 * `neural-diff/apply`. Codecs, quantizers, payload builders and format details, for people who
 * build their own tools, are `neural-diff/kit`.
 *
 * ```ts
 * import { diff } from 'neural-diff';
 * const res = await diff({ base: 'models/v1', target: 'models/v2', budget: '5%', modelId: 'kws-en', out: 'v1-v2.ndiff' });
 * ```
 *
 * @module neural-diff
 */
// What the commands do.
export { diff, type DiffOptions, type DiffResult, type DiffPayload, type ValueDiffReport, type StructuralDiffReport, type CalibrationReport, type CalibrationScore, type ClosenessMetric, type EvalCloseness, type OutputKind, type BudgetSearchReport, type BudgetTry, type QualityTarget, type QualityTargetOptions, type GgufPayloadEval, type GgufEvalRow } from './front/diff.ts';
export { apply, DEFAULT_MAX_PAYLOAD_BYTES, type ApplyOptions, type ApplyReport, type PendingOutcome } from './front/apply.ts';
export { inspect, type InspectReport, type PayloadSummary, type PatchSummary, type GgufPayloadSummary } from './front/inspect.ts';
export type { GgufPayloadHeader, GgufPartDigests } from './io/gguf/payload.ts';
export { verify, type VerifyOptions, type VerifyReport } from './front/verify.ts';
export { update, checkUpdate, type UpdateOptions, type UpdateReport } from './front/update.ts';
export { release, type ReleaseAddOptions, type ReleaseAddResult, type ReleaseMeasurement, type ReleaseJobLine, type ReleaseDirOptions, type ReleaseJobOptions, type ReleaseJobResult, type ReleaseJobExport, type ReleasePublishOptions, type ReleasePublishResult, type ReleaseCancelOptions, type ReleaseCancelResult, type ReleaseRunOptions, type ReleaseRunResult, type ReleaseStatus, type ReleaseWorkerOptions, type ReleaseWorker } from './front/release.ts';
export { fingerprint, type FingerprintOptions, type FingerprintResult, type TensorDigest } from './front/fingerprint.ts';
export { report, type ReportFilesOptions, type ReportFilesResult } from './front/report.ts';
export { keygen, sign, type KeygenOptions, type KeygenResult, type SignOptions, type SignResult } from './front/keys.ts';
export { exitCodeOf } from './front/exit-codes.ts';
export type { Progress } from './front/progress.ts';
export type { PostHocMethod, WeightEstimate } from './diff/advice.ts';
export type { ByteDeltaStats } from './diff/byte-delta.ts';
export type { Port } from './front/ports.ts';
// The device applier's entry points and stores (as `neural-diff/apply` has them), and the typed errors every call throws.
export { applyPayload, applyVerifiedPayload, verifyPayload, checkPayloadFitsModel, type ApplyResult, type HealthCheck, type TwoPhaseWeightStore, type VerifiedPayload } from './apply/apply.ts';
export { openSignedPayload, parseTrustedKeys, type SignaturePolicy, type SignatureCheck, type PublicKeyInput } from './apply/signature.ts';
export { MemorySequenceStore, type SequenceStore, type SequenceRecord } from './apply/freshness.ts';
export { MemoryWeightStore, type WeightStore, type TensorEntry, type CommitInfo, type MemoryTensor } from './core/weight-store.ts';
export * from './core/errors.ts';
// Model files as weight stores, and the crash-safe applies to them.
export { openTfjsModelDir, fileSystemIO, readModelTensors, writeModelDir, TfjsDirWeightStore, openTfjsModel, locateTfjsModel, type TfjsModelLocation, type FileSystemIOOptions } from './io/tfjs/index.ts';
export { applyToModelDir, recoverModelDir, type ModelDirApplyOptions, type ModelDirApplyResult } from './io/tfjs/folder-update.ts';
export { recordModelDirDigests, readRecordedDigests } from './io/tfjs/recorded-digests.ts';
export { FileSequenceStore } from './io/durable/sequence-file.ts';
export { openSafetensorsFile, writeSafetensorsFile, SafetensorsFileStore, applyToSafetensorsFile, recoverSafetensorsFile } from './io/safetensors/files.ts';
export { SafetensorsWeightStore } from './io/safetensors/store.ts';
export { openOnnxFile, applyToOnnxFile, recoverOnnxFile, OnnxFileStore } from './io/onnx/files.ts';
export { OnnxWeightStore } from './io/onnx/store.ts';
// Training and evaluation data as .npy files.
export { loadXY, saveNpy, loadNpy } from './io/npy/files.ts';
// Signing keys.
export { generateKeyPair, signPayload, writeKeyPairFiles, readPrivateKeyFile, readPublicKeyFile, type GeneratedKeyPair } from './sign/node-keys.ts';
// Release folders and payload jobs.
export { addVersion, type AddVersionOptions, type AddVersionResult, type LossyJobPayload, type KeyframePolicy, type DriftCheck } from './release/add.ts';
export { publishRelease, signManifest, verdictKey, type PublishOptions, type PublishResult, type CheckedResult } from './release/publish.ts';
export { planJobs, runJob, readJobResult } from './release/jobs.ts';
export type { RunJobResult } from './release/jobs.ts';
export type { PlanJobStatus, QueueCancel } from './release/queue/status.ts';
export type { LearnedInputs, LearnedSpec, LearnedCloseness } from './release/learned.ts';
export { readRecord, RECORD_FILE, type ReleaseRecord, type ReleaseJob, type EdgePolicy, type JobResult } from './release/record.ts';
// Reports.
export { renderHtml, renderMarkdown, summarize } from './report/report.ts';
export { validateResults, REPORT_METHODS, type ResultRow, type ReportRow, type RowFields, type ReportMethod } from './report/results.ts';
export { reportRows } from './report/rows.ts';
// Types named in the signatures above, so callers can name them too.
export type { TargetCheck, RenderOptions, ReportOptions, ReportSummary, Recommendation, Measure, BudgetSummary, UpdateSummary, TeacherRef, BaseModel, Range } from './report/report.ts';
export type { IOHandler, IOModelArtifacts, IOSaveResult, IOTrainingConfig, IOWeightsManifestEntry } from './io/tfjs/io-types.ts';
export type { NpyArray, NpyData, NpyWritable } from './io/npy/npy.ts';
export type { XYData, LoadXYOptions } from './io/npy/files.ts';
export type { TfjsModelJson, TfjsDtype, TfjsModelFormat, TfjsWeightGroup, TfjsWeightEntry, TfjsQuantization, TfjsQuantizationDtype, PassthroughValues } from './io/tfjs/manifest.ts';
export type { ModelState } from './io/durable/sequence-file.ts';
export type { TfjsTensorEntry, PassthroughEntry, BeforeSwitchHook, BeforeWriteHook } from './io/tfjs/options.ts';
export type { OnnxOpenOptions, OpenedFile } from './io/onnx/files.ts';
export type { ModelJsonTemplate, TensorInput } from './io/tfjs/model-dir.ts';
export type { RecordVersion } from './release/record.ts';
export type { JsonDifference } from './diff/json-difference.ts';
export type { DiffMethod, Payload, PayloadHeader, TensorPatch } from './core/format.ts';
