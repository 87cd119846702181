/**
 * `neural-diff/kit`: the lower-level parts the library's calls are made of, for people who build
 * their own tools: payload builders and encoders, post-hoc encoders (top-k, low-bit, exact,
 * random drop, low-rank), quantizers, ONNX pair diffs, interface checks, the frames the
 * fingerprints cover, the signed envelope, canonical JSON, budgets and `.npy` parsing. A
 * build-server pipeline does not need them: `diff()` in `neural-diff` picks the format, the method
 * and the calibration, and gives the bytes `ndiff diff` writes.
 *
 * ```ts
 * import { openTfjsModelDir } from 'neural-diff';
 * import { getHasher, topkDiff } from 'neural-diff/kit';
 * const base = await openTfjsModelDir('models/v1'), target = await openTfjsModelDir('models/v2');
 * const { bytes } = topkDiff(await getHasher(), base, target, { budgetBytes: 20_000, modelId: 'kws-en' });
 * ```
 *
 * The device side's lower-level names (`openPayload`, `fingerprintStore`, `tensorDigest`,
 * `parseEnvelope`, `ENVELOPE_MAGIC`, `FORMAT_VERSION`, `parsePublicKey`, `keyIdOf`, ...) are in
 * `neural-diff/apply`, which a tool can import beside this entry.
 *
 * Names here may change between minor versions while the package is below 1.0; the calls in
 * `neural-diff` are the stable surface.
 *
 * @module neural-diff/kit
 */
export { getHasher, type Hasher } from './core/hasher.ts';
export { applyDecodedPayload } from './apply/apply.ts';
export { decodePayload } from './core/format.ts';
export { sealEnvelope, envelopeSigningInput } from './apply/envelope.ts';
export { encodePayload, packPayload, type WirePatch } from './core/encode.ts';
export { buildPayload, payloadSize, baseDigests, type PatchSpec, type HeaderOptions, type BuiltPayload, type StoreAs } from './diff/build.ts';
export { modelDelta } from './diff/delta.ts';
export { topkDiff, topkFromDeltas, MagnitudeRanking, type TopkOptions, type TopkResult, type TopkCodec } from './topk-diff/encoder.ts';
export { BITDELTA_CODE, lowbitDiff, lowbitFromDeltas, lowbitVariants, LowBitCache, quantizeLowBit, quantizeSparseLowBit, quantizeFactors, quantizeWithOutliers, outlierOrder, describeAllocation, describeFactorWidths, describeWidths, LOWBIT_WIDTHS, type LowBitOptions, type LowBitResult, type LowBitAllocation, type ScaleLayout, type QuantizedDelta, type QuantizedFactors, type Outliers } from './lowbit-diff/encoder.ts';
export { roundAgainstInputs, inverseCholesky, outputError, type InputMoments, type QuantizedCodes } from './lowbit-diff/gptq.ts';
export { exactDiff, type ExactDiffOptions, type ExactDiffResult, type ExactCodec } from './diff/exact.ts';
export { dropDiff, type BaselineOptions, type BaselineResult } from './diff/baselines.ts';
export { lowRankDiff } from './lowrank-diff/encoder.ts';
export { checkSameInterface, compareInterfaces, type InterfaceDifference, type WeightsByContent } from './diff/interface.ts';
export { diffOnnxModels, checkOnnxPair, onnxDeltas, type OnnxDiffOptions } from './diff/onnx.ts';
export { parseBudget, formatBytes } from './diff/budget.ts';
export { TFJS_FRAME, tfjsFrameValues } from './io/tfjs/frame.ts';
export { ONNX_FRAME, scanOnnxModel, onnxExternalLocations, type OnnxTensorEntry } from './io/onnx/store.ts';
export { parseSafetensorsHeader } from './io/safetensors/store.ts';
export { canonicalJson, type CanonicalJsonOptions } from './core/canonical-json.ts';
export { parseNpy, writeNpy, type ParseNpyOptions } from './io/npy/npy.ts';
export { TRAIN_METHODS, type TrainMethod } from './train/methods.ts';
// A GGUF model's header, types and tensors, what `ndiff inspect model.gguf` prints (a new version of
// one layout ships as a GGUF block payload: `diff`, `apply`, `applyToGgufFile` of neural-diff/node).
export { inspectGguf, type GgufInspectReport, type GgufSummary, type GgufMetadataSummary, type GgufTensorSummary } from './front/gguf.ts';
// GGUF models run through llama.cpp (node-llama-cpp, installed apart) on held-out text beside a target: `ndiff measure`.
export { measureGguf, type GgufMeasureOptions, type GgufMeasureReport, type GgufModelMeasure, type GgufModelWithLora, type GgufTokenStats } from './front/measure/gguf-runtime.ts';
// The exit code table `ndiff` exits by (`exitCodeOf` of `neural-diff` maps an error onto it).
export { EXIT_CODES } from './front/exit-codes.ts';
