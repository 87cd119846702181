/**
 * Measuring a payload on inputs (`--eval`): base + payload against the target, beside the
 * unpatched base, for TF.js layers-models, .onnx and .tflite files. Shared by `ndiff diff` and `ndiff
 * release add`.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../core/errors.ts';
import type { WeightStore } from '../../core/weight-store.ts';
import { loadInputs } from '../../io/npy/files.ts';
import { fileSystemIO } from '../../io/tfjs/index.ts';
import { importWithTrainerPeers } from '../../train/peer.ts';
import type { PayloadCloseness } from '../../diff/closeness.ts';
import type { OnnxPayloadCloseness } from '../../train/onnx/payload-closeness.ts';
import type { ProgramDataset } from '../../engine/program/datasets.ts';
import type { ProgramInputValues, ProgramOutputKind, ProgramStatePair } from '../../engine/program/training-model.ts';
import { engineModule, tfjsModule, trainModule } from './lazy.ts';
import type { Progress } from '../progress.ts';
import { fedInputs, loadFolder, parseStatePairs, readOnnxModel, readTfliteModel, tfliteInputFiles } from '../../train/data-folders.ts';
import { isOnnxPath, isTflitePath, openModel } from '../models.ts';

/** What a measurement needs: the two models' paths, the inputs, and for .onnx files how to run them. */
export interface PayloadEvalSpec {
  base: string;
  target: string;
  eval: string;
  state: string[];
  output?: string;
  outputKind?: ProgramOutputKind;
  /** How progress lines name the two models (default: their paths). */
  labels?: { base: string; target: string };
}

/** Measure `payload` (from `spec.base` toward `spec.target`) on the inputs in `spec.eval`. */
export async function measurePayload(spec: PayloadEvalSpec, payload: Uint8Array, progress: Progress): Promise<PayloadCloseness | OnnxPayloadCloseness> {
  if (isOnnxPath(spec.base)) return measureOnnx(spec, await loadOnnxEval(spec), payload, progress);
  if (isTflitePath(spec.base)) return measureTflite(spec, payload, progress);
  const opened = await openModel(spec.base);
  try {
    return await measureOnInputs(spec, opened.store, payload, progress);
  } finally {
    await opened.close();
  }
}

/** The lines that report a measurement: closeness to the target (named as the user knows it), and accuracy with labels. */
export function closenessLines(measured: PayloadCloseness, target: string): string[] {
  const close = (c: { agreement: number; meanAbsDiff: number }) => `${Number.isNaN(c.agreement) ? '' : `${agreementWords(measured).name} ${(100 * c.agreement).toFixed(2)}%, `}mean |output − target| ${c.meanAbsDiff.toPrecision(3)}`;
  const lines = [`on ${measured.examples} --eval inputs, closeness to ${target}: unpatched base ${close(measured.base)}; base + payload ${close(measured.patched)}`];
  if (measured.accuracyAfter !== undefined) lines.push(`accuracy on --eval labels: base ${(100 * (measured.accuracyBefore as number)).toFixed(2)}% -> ${(100 * measured.accuracyAfter).toFixed(2)}%`);
  return lines;
}

/** What agreement counts: top-1 predictions, or for an ONNX output of one value its decisions (a probability at 0.5, a logit at 0). */
function agreementWords(m: PayloadCloseness): { name: string; of: string } {
  if (m.outputKind === 'probability') return { name: 'same decision (threshold 0.5)', of: 'decisions (threshold 0.5)' };
  if (m.outputKind === 'logit') return { name: 'same decision (logit threshold 0)', of: 'decisions (logit threshold 0)' };
  return { name: 'top-1 agreement', of: 'top-1 predictions' };
}

/**
 * The warning for a payload that takes the model further from the target than the base is.
 * `target` names the target as the user knows it (`--target`, `version 2`).
 */
export function movesAwayText(m: PayloadCloseness, target = '--target', advice = 'A larger --budget, or a diff trained toward the target (ndiff train --teacher TARGET --train INPUTS), gets closer'): string {
  const what = m.metric === 'top1'
    ? `agrees with ${target} on ${(100 * m.patched.agreement).toFixed(2)}% of ${agreementWords(m).of}, the unpatched base on ${(100 * m.base.agreement).toFixed(2)}%`
    : `is ${m.patched.meanAbsDiff.toPrecision(3)} from ${target}'s outputs on average, the unpatched base ${m.base.meanAbsDiff.toPrecision(3)}`;
  return `this payload takes the model further from ${target} than not updating at all: base + payload ${what}. ${advice}`;
}

/** Both TF.js folders as layers-models; a graph-model is a usage error naming `flag` and what to do. */
export async function loadLayersPair(tf: typeof import('@tensorflow/tfjs'), base: string, target: string, flag: string, advice: string): Promise<[import('@tensorflow/tfjs').LayersModel, import('@tensorflow/tfjs').LayersModel]> {
  const [a, b] = await Promise.all([base, target].map(async (dir) => {
    const json = JSON.parse(await readFile(`${dir}/model.json`, 'utf8')) as { format?: string };
    if (json.format === 'graph-model') throw new UsageError(`${dir} is a graph-model: ${flag} runs layers-models only for now; ${advice}`);
    return tf.loadLayersModel(fileSystemIO(dir));
  }));
  return [a, b];
}

/** `--eval`: load both folders as tfjs models and measure the payload against the target on the inputs. */
export async function measureOnInputs(a: PayloadEvalSpec, base: WeightStore, payload: Uint8Array, progress: Progress): Promise<PayloadCloseness> {
  const { tf, initBackend, payloadCloseness, silenceTfjsNodeBanner, checkInputs } = await importWithTrainerPeers(async () => ({
    tf: await tfjsModule(),
    ...(await trainModule<typeof import('../../train/data.ts')>('data')),
    ...(await engineModule<typeof import('../../engine/backend.ts')>('backend')),
    ...(await trainModule<typeof import('../../train/target-closeness.ts')>('target-closeness')),
    ...(await engineModule<typeof import('../../engine/quiet.ts')>('quiet')),
  }), '`ndiff diff --eval`');
  silenceTfjsNodeBanner();
  await initBackend('wasm');
  progress(`measuring on ${a.eval}: loading ${a.labels?.base ?? a.base} and ${a.labels?.target ?? a.target} as TF.js models`);
  const [model, target] = await loadLayersPair(tf, a.base, a.target, 'eval (--eval)', 'leave eval (--eval) out');
  const d = loadInputs(a.eval as string);
  try {
    checkInputs(d.xShape, model.inputs[0].shape, `eval (--eval) ${a.eval}`);
  } catch (e) {
    model.dispose();
    target.dispose();
    throw e;
  }
  const x = tf.tensor(d.x, d.xShape, 'float32');
  try {
    return await payloadCloseness(model, target, base, payload, { x, ...(d.y ? { y: d.y } : {}) });
  } finally {
    x.dispose();
    model.dispose();
    target.dispose();
  }
}

/** `--eval` for .onnx files: the base and target bytes and the data folder, read before any work. */
export interface OnnxEval {
  base: Awaited<ReturnType<typeof readOnnxModel>>;
  target: Awaited<ReturnType<typeof readOnnxModel>>;
  data: ProgramDataset;
  shared: Record<string, ProgramInputValues>;
  state: ProgramStatePair[];
}

/** Read both .onnx files and the --eval folder (one .npy per model input), so bad data fails before the diff is made. */
export async function loadOnnxEval(a: PayloadEvalSpec): Promise<OnnxEval> {
  const state = parseStatePairs(a.state);
  const base = await readOnnxModel(a.base, 'base (--base)');
  const target = await readOnnxModel(a.target, 'target (--target)');
  const { data, shared } = loadFolder(a.eval as string, fedInputs(base.bytes, a.base, state, base.external), 'eval (--eval)', state.length > 0);
  return { base, target, data, shared, state };
}

/** `--eval` on .onnx files: both models run by the ONNX executor on the folder's examples, the payload applied by the device applier. */
export async function measureOnnx(a: PayloadEvalSpec, e: OnnxEval, payload: Uint8Array, progress: Progress): Promise<OnnxPayloadCloseness> {
  const { initBackend, onnxPayloadCloseness, silenceTfjsNodeBanner } = await importWithTrainerPeers(async () => ({
    ...(await engineModule<typeof import('../../engine/backend.ts')>('backend')),
    ...(await trainModule<typeof import('../../train/onnx/payload-closeness.ts')>('onnx/payload-closeness')),
    ...(await engineModule<typeof import('../../engine/quiet.ts')>('quiet')),
  }), '`ndiff diff --eval`');
  silenceTfjsNodeBanner();
  await initBackend('wasm');
  const frames = Object.values(e.data.inputs)[0];
  const count = frames ? frames.values.length / Math.max(1, frames.shape.reduce((x, d) => x * d, 1)) : 0;
  const sequences = new Set(e.data.sequence).size;
  progress(`measuring on ${a.eval}: ${count} examples${e.state.length ? ` in ${sequences} sequence${sequences === 1 ? '' : 's'}, each from a zero state with ${e.state.map((s) => `${s.input} <- ${s.output}`).join(', ')} carried` : ''}, ${a.labels?.base ?? a.base} and ${a.labels?.target ?? a.target} run by the ONNX executor`);
  return onnxPayloadCloseness(e.base.bytes, e.target.bytes, payload, e.data, {
    shared: e.shared,
    ...(e.state.length ? { state: e.state } : {}),
    ...(a.output ? { output: a.output } : {}),
    ...(a.outputKind ? { outputKind: a.outputKind } : {}),
    program: { source: path.basename(a.base), external: e.base.external },
    targetProgram: { source: path.basename(a.target), external: e.target.external },
  });
}

/**
 * Both `.tflite` files of `ndiff diff` as programs of the trainer's LiteRT executor (the wasm
 * backend started; the target's weights frozen), and `folder`'s examples for them (one .npy per
 * model input, or x.npy for one). The caller owns both programs (and disposes them through what it
 * hands them to).
 */
export async function openTflitePair(a: Pick<PayloadEvalSpec, 'base' | 'target'>, folder: string, flag: '--eval' | '--calibrate') {
  const base = await readTfliteModel(a.base, 'base (--base)');
  const target = await readTfliteModel(a.target, 'target (--target)');
  const { data, shared } = loadFolder(folder, tfliteInputFiles(base, a.base), flag === '--eval' ? 'eval (--eval)' : 'calibrate (--calibrate)', false);
  const { initBackend, TfliteProgram, silenceTfjsNodeBanner } = await importWithTrainerPeers(async () => ({
    ...(await engineModule<typeof import('../../engine/backend.ts')>('backend')),
    ...(await engineModule<typeof import('../../engine/tflite/program.ts')>('tflite/program')),
    ...(await engineModule<typeof import('../../engine/quiet.ts')>('quiet')),
  }), `\`ndiff diff ${flag}\``);
  silenceTfjsNodeBanner();
  await initBackend('wasm');
  const program = new TfliteProgram(base, { source: path.basename(a.base) });
  try {
    return { base, data, shared, program, targetProgram: new TfliteProgram(target, { source: path.basename(a.target), trainable: () => false }) };
  } catch (e) {
    program.dispose();
    throw e;
  }
}

/**
 * `--eval` on .tflite files: both models run by the trainer's LiteRT executor (src/engine/tflite)
 * on the folder's examples (one .npy per model input, or x.npy for one), the payload applied by
 * the device applier.
 */
export async function measureTflite(a: PayloadEvalSpec, payload: Uint8Array, progress: Progress): Promise<OnnxPayloadCloseness> {
  if (a.state.length) throw new UsageError('state (--state) is for ONNX models: a .tflite model carries no state between examples here');
  const { programPayloadCloseness, TfliteWeightStore } = await importWithTrainerPeers(async () => ({
    ...(await trainModule<typeof import('../../train/program/payload-closeness.ts')>('program/payload-closeness')),
    ...(await import('../../io/tflite/store.ts')),
  }), '`ndiff diff --eval`');
  const { base, data, shared, program, targetProgram } = await openTflitePair(a, a.eval, '--eval');
  const first = Object.values(data.inputs)[0];
  const count = first ? first.values.length / Math.max(1, first.shape.reduce((x, d) => x * d, 1)) : 0;
  progress(`measuring on ${a.eval}: ${count} examples, ${a.labels?.base ?? a.base} and ${a.labels?.target ?? a.target} run by the LiteRT executor`);
  return programPayloadCloseness(program, targetProgram, new TfliteWeightStore(base.slice(), { source: a.base }), payload, data, {
    shared,
    ...(a.output ? { output: a.output } : {}),
    ...(a.outputKind ? { outputKind: a.outputKind } : {}),
  });
}
