/**
 * `neural-diff/train` (documented from its implementation, src/train/api.ts): the trainers with
 * their static tfjs imports. Load it through `neural-diff/train`
 * (src/train/index.ts), which says how to install tfjs when it is missing.
 *
 * @module neural-diff/train
 */
export { train, baseKind, type TrainOptions, type TrainResult, type TrainProgress, type ModelInput, type BaseKind, type MethodDefault } from './front.ts';
export { trainDiff, competingPayload, TRAIN_METHODS, type TrainMethod, type TrainDiffOptions, type TrainDiffResult, type CompetingResult } from './train-diff.ts';
export { payloadCloseness, type PayloadCloseness } from './target-closeness.ts';
export { calibrationMeasure, chooseOnCalibration, outputImportance, inputMoments, type CalibrationMeasure, type CalibrationCloseness, type CalibrationCandidate, type CandidateScore, type ImportanceOptions, type InputMomentsOptions } from './calibrate.ts';
export { trainAuto, AUTO_CANDIDATES, AUTO_SEARCHES, type AutoCandidate, type AutoResult, type AutoSearch, type HalvingFigure, type HalvingRound } from './auto.ts';
export type { TeacherLoss, TeacherMetric } from './teacher.ts';
export type { InputData } from './data.ts';
export { initBackend, type TrainBackendName, type InitBackendOptions } from '../engine/backend.ts';
export { evaluate, fromDataset, type LabelledData } from './data.ts';
export { modelToStore, setModelWeights, namedVariables, type NamedVariable } from '../engine/model-weights.ts';
export { SparseMask, DEFAULT_SPARSE_MASK, type SparseMaskOptions } from '../sparse-diff/index.ts';
export { HashedBuckets } from '../hash-diff/index.ts';
export { tfModelStore, TfModelWeightStore, type TfModelStoreOptions } from '../io/tfjs/live-model-store.ts';
export type { EpochReport } from './loop.ts';
export type { Parameterization } from '../method/contract.ts';
export { OnnxProgram, unsupportedNodes, supportedOperators, type OnnxProgramOptions, type OnnxVariable, type UnsupportedNode } from '../engine/onnx/executor.ts';
export { decodeOnnxModel, decodeOnnxTensor } from '../engine/onnx/model.ts';
// Types named in the signatures above, so callers can name them too.
export type { TrainableSpec } from './select.ts';
export type { TuneMode, TuningCandidate } from './train-diff.ts';
export type { Evaluation } from './data.ts';
export type { Augmentation } from './augment.ts';
export type { OnnxModel, OnnxGraph, OnnxNode, OnnxAttribute, OnnxTensor, OnnxElement, OnnxValueInfo, ExternalFiles } from '../engine/onnx/model.ts';
export { OnnxTrainingModel, type OnnxLayer, type OnnxLayerWeight, type OnnxExamples, type OnnxInputValues, type OnnxOutputKind, type OnnxStatePair, type OnnxTrainingModelOptions } from '../engine/onnx/layers-model.ts';
export { trainOnnxDiff, type OnnxDataset, type TrainOnnxOptions, type TrainOnnxResult, type TeacherAgreement } from './onnx/train-onnx.ts';
export { TfliteProgram, TFLITE_TRAINABLE_OPS, type TfliteProgramOptions } from '../engine/tflite/program.ts';
export { trainTfliteDiff, type TrainTfliteOptions } from './tflite/train-tflite.ts';
export { readTfliteGraph, type TfliteGraph, type TfliteGraphTensor, type TfliteGraphOperator, type TfliteOptions } from '../io/tflite/graph.ts';
export { ProgramTrainingModel, type ProgramLayer, type ProgramLayerWeight, type ProgramExamples, type ProgramInputValues, type ProgramOutputKind, type ProgramStatePair, type ProgramTrainingModelOptions } from '../engine/program/training-model.ts';
export { trainProgramDiff, checkTeacherInterface, type ProgramDataset, type TrainProgramOptions, type TrainProgramResult } from './program/train-program.ts';
export type { TrainableProgram, ProgramVariable, ProgramTensorInfo } from '../engine/program/program.ts';
export { programPayloadCloseness, programCalibration, type ProgramClosenessOptions, type ProgramPayloadCloseness } from './program/payload-closeness.ts';
export { onnxPayloadCloseness, onnxCalibration, type OnnxClosenessOptions, type OnnxPayloadCloseness } from './onnx/payload-closeness.ts';
export { TfjsGraphProgram, type TfjsGraphProgramOptions, type TfjsGraphInput } from '../engine/tfjs-graph/graph-program.ts';
export { GraphModelTeacher, GraphTeacherWeight } from './tfjs-graph/graph-teacher.ts';
export { LayersModelProgram } from '../engine/tfjs-graph/layers-program.ts';
export { trainTfjsGraphDiff, type TrainTfjsGraphOptions } from './tfjs-graph/train-graph.ts';
