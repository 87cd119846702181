/**
 * `neural-diff/train`: the trainers (learned sparse and hashed diffs, full fine-tuning and the
 * baselines), the tfjs backend set-up, and live tf models as weight stores. Needs the optional
 * peer dependencies `@tensorflow/tfjs` and `@tensorflow/tfjs-backend-wasm`; without them, importing
 * this entry fails with a {@link MissingDependencyError} that names the install command.
 *
 * ```ts
 * import { train } from 'neural-diff/train';
 * const res = await train({ base: 'models/v1', teacher: 'models/v2', train: 'unlabeled/', modelId: 'kws-en', out: 'v1-v2.ndiff' });
 * ```
 *
 * {@link train} does what `ndiff train` does, for every kind of base; the trainers below it
 * (`trainDiff`, `trainOnnxDiff`, ...) are for people who build their own tools.
 */
import type * as Api from './api.ts';
import { importWithTrainerPeers } from './peer.ts';

// The implementation is imported dynamically so that a missing tfjs surfaces as a clear error
// instead of Node's "Cannot find package" at link time.
const api: typeof Api = await importWithTrainerPeers(() => import('./api.ts'), 'neural-diff/train');

export const train = api.train;
export const baseKind = api.baseKind;
export type { TrainOptions, TrainResult, TrainProgress, ModelInput, BaseKind, MethodDefault } from './api.ts';
export const trainDiff = api.trainDiff;
export const competingPayload = api.competingPayload;
export const payloadCloseness = api.payloadCloseness;
export const programPayloadCloseness = api.programPayloadCloseness;
export const onnxPayloadCloseness = api.onnxPayloadCloseness;
export const programCalibration = api.programCalibration;
export const onnxCalibration = api.onnxCalibration;
export const calibrationMeasure = api.calibrationMeasure;
export const chooseOnCalibration = api.chooseOnCalibration;
export const outputImportance = api.outputImportance;
export const inputMoments = api.inputMoments;
export const trainAuto = api.trainAuto;
export const AUTO_CANDIDATES = api.AUTO_CANDIDATES;
export const AUTO_SEARCHES = api.AUTO_SEARCHES;
export type { CalibrationMeasure, CalibrationCloseness, CalibrationCandidate, CandidateScore, ImportanceOptions, InputMomentsOptions, AutoCandidate, AutoResult, AutoSearch, HalvingFigure, HalvingRound } from './api.ts';
export const TRAIN_METHODS = api.TRAIN_METHODS;
export const initBackend = api.initBackend;
export const evaluate = api.evaluate;
export const fromDataset = api.fromDataset;
export const modelToStore = api.modelToStore;
export const setModelWeights = api.setModelWeights;
export const namedVariables = api.namedVariables;
export const SparseMask = api.SparseMask;
export type SparseMask = Api.SparseMask;
export const DEFAULT_SPARSE_MASK = api.DEFAULT_SPARSE_MASK;
export const HashedBuckets = api.HashedBuckets;
export type HashedBuckets = Api.HashedBuckets;
export const tfModelStore = api.tfModelStore;
export const TfModelWeightStore = api.TfModelWeightStore;
export const OnnxProgram = api.OnnxProgram;
export type OnnxProgram = Api.OnnxProgram;
export const unsupportedNodes = api.unsupportedNodes;
export const supportedOperators = api.supportedOperators;
export const decodeOnnxModel = api.decodeOnnxModel;
export const decodeOnnxTensor = api.decodeOnnxTensor;
export type TfModelWeightStore = Api.TfModelWeightStore;
export type { PayloadCloseness, TeacherLoss, TeacherMetric, InputData } from './api.ts';
export const trainOnnxDiff = api.trainOnnxDiff;
export const trainTfliteDiff = api.trainTfliteDiff;
export const TfliteProgram = api.TfliteProgram;
export type TfliteProgram = Api.TfliteProgram;
export const TFLITE_TRAINABLE_OPS = api.TFLITE_TRAINABLE_OPS;
export const readTfliteGraph = api.readTfliteGraph;
export type { TfliteProgramOptions, TrainTfliteOptions, TfliteGraph, TfliteGraphTensor, TfliteGraphOperator, TfliteOptions } from './api.ts';
export const OnnxTrainingModel = api.OnnxTrainingModel;
export type OnnxTrainingModel = Api.OnnxTrainingModel;
export type { OnnxLayer, OnnxLayerWeight, OnnxExamples, OnnxInputValues, OnnxOutputKind, OnnxStatePair, OnnxTrainingModelOptions, OnnxDataset, TrainOnnxOptions, TrainOnnxResult, TeacherAgreement } from './api.ts';
export type { TrainMethod, TrainDiffOptions, TrainDiffResult, CompetingResult, TrainBackendName, InitBackendOptions, LabelledData, NamedVariable, SparseMaskOptions, TfModelStoreOptions, EpochReport, OnnxProgramOptions, OnnxVariable, UnsupportedNode, TrainableSpec, TuneMode, TuningCandidate, Evaluation, OnnxModel, OnnxGraph, OnnxNode, OnnxAttribute, OnnxTensor, OnnxElement, OnnxValueInfo, ExternalFiles } from './api.ts';
export const ProgramTrainingModel = api.ProgramTrainingModel;
export type ProgramTrainingModel = Api.ProgramTrainingModel;
export const trainProgramDiff = api.trainProgramDiff;
export const checkTeacherInterface = api.checkTeacherInterface;
export const TfjsGraphProgram = api.TfjsGraphProgram;
export type TfjsGraphProgram = Api.TfjsGraphProgram;
export const GraphModelTeacher = api.GraphModelTeacher;
export type GraphModelTeacher = Api.GraphModelTeacher;
export const GraphTeacherWeight = api.GraphTeacherWeight;
export type GraphTeacherWeight = Api.GraphTeacherWeight;
export const LayersModelProgram = api.LayersModelProgram;
export type LayersModelProgram = Api.LayersModelProgram;
export const trainTfjsGraphDiff = api.trainTfjsGraphDiff;
export type { ProgramLayer, ProgramLayerWeight, ProgramExamples, ProgramInputValues, ProgramOutputKind, ProgramStatePair, ProgramTrainingModelOptions, ProgramDataset, TrainProgramOptions, TrainProgramResult, TrainableProgram, ProgramVariable, ProgramTensorInfo, TfjsGraphProgramOptions, TfjsGraphInput, TrainTfjsGraphOptions, ProgramClosenessOptions, ProgramPayloadCloseness, OnnxClosenessOptions, OnnxPayloadCloseness } from './api.ts';
export { TRAINER_INSTALL } from './peer.ts';
