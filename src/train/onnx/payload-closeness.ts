/**
 * How close a payload takes an ONNX base to the target `.onnx` file on data (`ndiff diff --eval`
 * for `.onnx` pairs): both files run by the ONNX executor ({@link OnnxProgram}, the code the ONNX
 * trainer measures with, whose outputs are onnxruntime-web's), through
 * {@link programPayloadCloseness}.
 */
import { OnnxWeightStore } from '../../io/onnx/store.ts';
import { programCalibration, programPayloadCloseness, type ProgramClosenessOptions, type ProgramPayloadCloseness } from '../program/payload-closeness.ts';
import type { OnnxDataset } from './train-onnx.ts';
import { OnnxProgram, type OnnxProgramOptions } from '../../engine/onnx/executor.ts';

/** Options of {@link onnxPayloadCloseness}: {@link ProgramClosenessOptions}, with the programs' options. */
export interface OnnxClosenessOptions extends ProgramClosenessOptions {
  /** Options of the base's program (external data, a name for messages). */
  program?: OnnxProgramOptions;
  /** Options of the target's program. */
  targetProgram?: OnnxProgramOptions;
}

/** What {@link onnxPayloadCloseness} measured ({@link ProgramPayloadCloseness}). */
export type OnnxPayloadCloseness = ProgramPayloadCloseness;

/**
 * Measure `payload` (made for the ONNX model `base`) against the ONNX model `target` on `data`
 * (one array per model input; `sequence` for stateful models; `labels` for accuracy).
 * @throws as {@link programPayloadCloseness}; UnsupportedOperatorError for an operator the
 *   executor does not implement.
 */
export async function onnxPayloadCloseness(base: Uint8Array, target: Uint8Array, payload: Uint8Array, data: OnnxDataset, options: OnnxClosenessOptions = {}): Promise<OnnxPayloadCloseness> {
  const source = options.program?.source ?? 'base.onnx';
  const external = options.program?.external;
  const store = new OnnxWeightStore(base, { source, ...(external ? { external: new Map(external instanceof Map ? external : Object.entries(external)) } : {}) });
  const { program, targetProgram, rest } = programsOf(base, target, options);
  return programPayloadCloseness(program, targetProgram, store, payload, data, rest);
}

/** Both files' programs (the base's freed if the target's cannot be made), and the options left for the program functions. */
function programsOf(base: Uint8Array, target: Uint8Array, options: OnnxClosenessOptions): { program: OnnxProgram; targetProgram: OnnxProgram; rest: ProgramClosenessOptions } {
  const program = new OnnxProgram(base, { ...options.program, source: options.program?.source ?? 'base.onnx' });
  let targetProgram: OnnxProgram;
  try {
    targetProgram = new OnnxProgram(target, { source: 'target.onnx', ...options.targetProgram });
  } catch (e) {
    program.dispose();
    throw e;
  }
  const { program: _p, targetProgram: _t, ...rest } = options;
  return { program, targetProgram, rest };
}

/**
 * The {@link programCalibration} of two `.onnx` files on `data` (`ndiff diff --calibrate` for
 * `.onnx` pairs); `store` is the base's weight store the candidate payloads are made for.
 */
export function onnxCalibration(base: Uint8Array, target: Uint8Array, store: OnnxWeightStore, data: OnnxDataset, options: OnnxClosenessOptions = {}): ReturnType<typeof programCalibration> {
  const { program, targetProgram, rest } = programsOf(base, target, options);
  return programCalibration(program, targetProgram, store, data, rest);
}
