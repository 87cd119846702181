/**
 * An ONNX program as the trainers' model: {@link ProgramTrainingModel} (src/engine/program/) over
 * an {@link OnnxProgram}, under the names the ONNX path has always used. Everything it does
 * (examples by id, output reading, stateful sequence models) is the program adapter's.
 */
import {
  ProgramLayer,
  ProgramLayerWeight,
  ProgramTrainingModel,
  type ProgramExamples,
  type ProgramInputValues,
  type ProgramOutputKind,
  type ProgramStatePair,
  type ProgramTrainingModelOptions,
} from '../program/training-model.ts';
import type { OnnxProgram } from './executor.ts';

/** How the chosen output of an ONNX model reads ({@link ProgramOutputKind}). */
export type OnnxOutputKind = ProgramOutputKind;
/** One input's values for every example ({@link ProgramInputValues}). */
export type OnnxInputValues = ProgramInputValues;
/** The examples an ONNX program trains and is evaluated on ({@link ProgramExamples}). */
export type OnnxExamples = ProgramExamples;
/** A state input and the output that carries it to the next frame ({@link ProgramStatePair}). */
export type OnnxStatePair = ProgramStatePair;
/** Options of {@link OnnxTrainingModel} ({@link ProgramTrainingModelOptions}). */
export type OnnxTrainingModelOptions = ProgramTrainingModelOptions;
/** A weight of the pseudo-layer ({@link ProgramLayerWeight}). */
export const OnnxLayerWeight = ProgramLayerWeight;
/** A weight of the pseudo-layer ({@link ProgramLayerWeight}). */
export type OnnxLayerWeight = ProgramLayerWeight;
/** The one layer the trainers see ({@link ProgramLayer}). */
export const OnnxLayer = ProgramLayer;
/** The one layer the trainers see ({@link ProgramLayer}). */
export type OnnxLayer = ProgramLayer;

/** An {@link OnnxProgram} as the trainers' model; see {@link ProgramTrainingModel}. */
export class OnnxTrainingModel extends ProgramTrainingModel {
  declare readonly program: OnnxProgram;
  /**
   * @throws UsageError when the output, a state or an input is not the model's, or a state's
   *   shape is not known apart from its batch axis; DataError when the examples do not fit.
   */
  constructor(program: OnnxProgram, examples: OnnxExamples, options: OnnxTrainingModelOptions = {}) {
    super(program, examples, options);
  }
}
