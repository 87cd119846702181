/**
 * `--calibrate INPUTS` of `ndiff diff`: the payload chosen among candidates by how close each
 * takes the base to the target on inputs from where the model runs (no labels needed), for TF.js
 * layers-models, `.onnx` and `.tflite` files. The candidates are built by the caller; this loads both models
 * and the inputs, measures, and reports.
 */
import type { WeightStore } from '../../core/weight-store.ts';
import type { BuiltPayload } from '../../diff/build.ts';
import { loadInputs } from '../../io/npy/files.ts';
import type { CandidateScore, CalibrationCandidate, CalibrationMeasure } from '../../train/calibrate.ts';
import { importWithTrainerPeers } from '../../train/peer.ts';
import { engineModule, tfjsModule, trainModule } from './lazy.ts';
import type { Progress } from '../progress.ts';
import type { CalibrationReport } from '../diff-types.ts';

export type { CalibrationReport } from '../diff-types.ts';
import path from 'node:path';
import type { OnnxWeightStore } from '../../io/onnx/store.ts';
import type { InputMoments } from '../../lowbit-diff/gptq.ts';
import { loadLayersPair, loadOnnxEval, openTflitePair, type PayloadEvalSpec } from './payload-eval.ts';

/** Examples of --calibrate used at most (the first ones): each candidate runs the model on all of them. */
export const MAX_CALIBRATION_EXAMPLES = 4096;
/** Examples the Fisher importance is estimated on (one backward pass each). */
const IMPORTANCE_EXAMPLES = 256;

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** Measure the candidates (each reported as it is), keep the closest, and say which. */
function choose<R extends BuiltPayload>(
  chooseOnCalibration: typeof import('../../train/calibrate.ts').chooseOnCalibration,
  candidates: CalibrationCandidate<R>[],
  measure: CalibrationMeasure,
  inputs: { inputs: string; examples: number },
  progress: Progress,
): { chosen: R; report: CalibrationReport } {
  const { chosen, name, scores } = chooseOnCalibration(candidates, measure, (s) => {
    progress(`  ${s.name}: ${Number.isFinite(s.loss) ? `${s.bytes} bytes, ${s.agreement === undefined ? '' : `top-1 agreement ${pct(s.agreement)}, `}loss ${s.loss.toPrecision(4)}${s.sameAs ? ` (the same payload as ${s.sameAs})` : ''}` : 'does not fit the budget'}`);
  });
  const base = measure.baseCloseness;
  const agreeing = measure.classifier === true && base !== undefined && !Number.isNaN(base.agreement);
  progress(`  chose ${name} by ${agreeing ? 'top-1 agreement with --target' : 'the loss'} (unpatched base: ${agreeing ? `top-1 agreement ${pct(base.agreement)}, ` : ''}loss ${measure.baseError.toPrecision(4)})`);
  return {
    chosen,
    report: { ...inputs, chosen: name, baseLoss: measure.baseError, ...(agreeing ? { baseAgreement: base.agreement } : {}), candidates: scores },
  };
}

/**
 * Load `base` and `target` (TF.js layers-model folders) and the inputs, make the candidates
 * (`candidates` gets the Fisher importance of the target's outputs on the inputs and each
 * layer's input moments, for the lowbit variants that use them), and keep the one closest to the target.
 */
export async function chooseCalibrated<R extends BuiltPayload>(
  paths: { base: string; target: string; calibrate: string },
  baseStore: WeightStore,
  candidates: (importance: () => ReadonlyMap<string, Float32Array>, inputs: () => ReadonlyMap<string, InputMoments>) => CalibrationCandidate<R>[],
  progress: Progress,
): Promise<{ chosen: R; report: CalibrationReport }> {
  const { tf, initBackend, calibrationMeasure, chooseOnCalibration, outputImportance, inputMoments, silenceTfjsNodeBanner, checkInputs } = await importWithTrainerPeers(async () => ({
    tf: await tfjsModule(),
    ...(await trainModule<typeof import('../../train/data.ts')>('data')),
    ...(await engineModule<typeof import('../../engine/backend.ts')>('backend')),
    ...(await trainModule<typeof import('../../train/calibrate.ts')>('calibrate')),
    ...(await engineModule<typeof import('../../engine/quiet.ts')>('quiet')),
  }), '`ndiff diff --calibrate`');
  silenceTfjsNodeBanner();
  await initBackend('wasm');
  const [model, target] = await loadLayersPair(tf, paths.base, paths.target, 'calibrate (--calibrate)', 'leave calibrate (--calibrate) out (lowbit then chooses without data)');
  const d = loadInputs(paths.calibrate);
  try {
    checkInputs(d.xShape, model.inputs[0].shape, `calibrate (--calibrate) ${paths.calibrate}`);
  } catch (e) {
    model.dispose();
    target.dispose();
    throw e;
  }
  const all = d.xShape[0];
  const n = Math.min(all, MAX_CALIBRATION_EXAMPLES);
  const x = tf.tidy(() => tf.slice(tf.tensor(d.x, d.xShape, 'float32'), [0], [n]));
  let measure: ReturnType<typeof calibrationMeasure> | undefined;
  try {
    progress(`calibrating on ${n} inputs from ${paths.calibrate}${n < all ? ` (the first ${n} of ${all})` : ''}: each candidate payload measured by how close base + payload comes to --target's outputs`);
    measure = calibrationMeasure(model, target, baseStore, x);
    let importance: ReadonlyMap<string, Float32Array> | undefined;
    const lazyImportance = () => {
      if (!importance) {
        progress(`  the importance of every weight to --target's outputs (Fisher information) on ${Math.min(n, IMPORTANCE_EXAMPLES)} inputs`);
        importance = outputImportance(target, x, { examples: IMPORTANCE_EXAMPLES });
      }
      return importance;
    };
    let moments: ReadonlyMap<string, InputMoments> | undefined;
    const lazyMoments = () => {
      if (!moments) {
        moments = inputMoments(target, x, { examples: IMPORTANCE_EXAMPLES });
        progress(`  the second moment of each dense and convolution layer's inputs on ${Math.min(n, IMPORTANCE_EXAMPLES)} inputs (${moments.size} layers), to round their codes against`);
      }
      return moments;
    };
    return choose(chooseOnCalibration, candidates(lazyImportance, lazyMoments), measure, { inputs: paths.calibrate, examples: n }, progress);
  } finally {
    measure?.dispose?.();
    x.dispose();
    model.dispose();
    target.dispose();
  }
}

/**
 * `--calibrate` for two `.onnx` files: the folder as `--eval` takes it (one .npy per model input,
 * `sequence.npy` and `--state` for stateful models), both files run by the ONNX executor; the
 * candidate closest to the target on it is kept. (No Fisher importance: the ONNX programs run
 * frozen here, without gradients.)
 */
export async function chooseCalibratedOnnx<R extends BuiltPayload>(
  spec: PayloadEvalSpec & { calibrate: string },
  baseStore: WeightStore,
  candidates: (reached?: ReadonlySet<string>) => CalibrationCandidate<R>[],
  progress: Progress,
): Promise<{ chosen: R; report: CalibrationReport }> {
  const { initBackend, onnxCalibration, chooseOnCalibration, silenceTfjsNodeBanner } = await importWithTrainerPeers(async () => ({
    ...(await engineModule<typeof import('../../engine/backend.ts')>('backend')),
    ...(await trainModule<typeof import('../../train/onnx/payload-closeness.ts')>('onnx/payload-closeness')),
    ...(await trainModule<typeof import('../../train/calibrate.ts')>('calibrate')),
    ...(await engineModule<typeof import('../../engine/quiet.ts')>('quiet')),
  }), '`ndiff diff --calibrate`');
  silenceTfjsNodeBanner();
  await initBackend('wasm');
  const e = await loadOnnxEval({ ...spec, eval: spec.calibrate });
  const session = onnxCalibration(e.base.bytes, e.target.bytes, baseStore as OnnxWeightStore, e.data, {
    shared: e.shared,
    ...(e.state.length ? { state: e.state } : {}),
    ...(spec.output ? { output: spec.output } : {}),
    ...(spec.outputKind ? { outputKind: spec.outputKind } : {}),
    program: { source: path.basename(spec.base), external: e.base.external },
    targetProgram: { source: path.basename(spec.target), external: e.target.external },
  });
  try {
    progress(`calibrating on ${session.examples} examples from ${spec.calibrate}${e.state.length ? ', each sequence from a zero state with the state carried' : ''}: each candidate payload measured by how close base + payload comes to --target's outputs (ONNX executor)`);
    if (session.reached) progress(`  the inputs reach ${session.reached.size} of the model's weights: lowbit is also tried on those alone`);
    return choose(chooseOnCalibration, candidates(session.reached), session.measure, { inputs: spec.calibrate, examples: session.examples }, progress);
  } finally {
    session.dispose();
  }
}

/**
 * `--calibrate` for two `.tflite` files: the folder as `--eval` takes it (one .npy per model input,
 * or x.npy for one), both files run by the trainer's LiteRT executor; the candidate closest to the
 * target on it is kept. `baseStore` is the base's weight store the candidates are made for;
 * `candidates` gets the weights the inputs reach (when the graph can say).
 */
export async function chooseCalibratedTflite<R extends BuiltPayload>(
  spec: PayloadEvalSpec & { calibrate: string },
  baseStore: WeightStore,
  candidates: (reached?: ReadonlySet<string>) => CalibrationCandidate<R>[],
  progress: Progress,
): Promise<{ chosen: R; report: CalibrationReport }> {
  const { programCalibration, chooseOnCalibration } = await importWithTrainerPeers(async () => ({
    ...(await trainModule<typeof import('../../train/program/payload-closeness.ts')>('program/payload-closeness')),
    ...(await trainModule<typeof import('../../train/calibrate.ts')>('calibrate')),
  }), '`ndiff diff --calibrate`');
  const { data, shared, program, targetProgram } = await openTflitePair(spec, spec.calibrate, '--calibrate');
  const session = programCalibration(program, targetProgram, baseStore, data, {
    shared,
    ...(spec.output ? { output: spec.output } : {}),
    ...(spec.outputKind ? { outputKind: spec.outputKind } : {}),
  });
  try {
    progress(`calibrating on ${session.examples} examples from ${spec.calibrate}: each candidate payload measured by how close base + payload comes to --target's outputs (LiteRT executor)`);
    if (session.reached) progress(`  the inputs reach ${session.reached.size} of the model's weights: lowbit is also tried on those alone`);
    return choose(chooseOnCalibration, candidates(session.reached), session.measure, { inputs: spec.calibrate, examples: session.examples }, progress);
  } finally {
    session.dispose();
  }
}
