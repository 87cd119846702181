/**
 * What `train()` (src/train/front.ts) settles before it trains, for every kind of base alike:
 * the options with their defaults, the method taken when none is given (and why), the checks of
 * options that shape a teacher's stream, the options a graph program (ONNX, LiteRT, TF.js graph
 * model) trains with, and the lines that say what a run did. `ndiff train` passes its arguments
 * through {@link TrainOptions} unchanged.
 */
import type { AutoCandidate, AutoResult } from './auto.ts';
import type { TrainBackendName } from '../engine/backend.ts';
import { TRAIN_METHODS, type TrainMethod } from './methods.ts';
import type { OnnxOutputKind } from '../engine/onnx/layers-model.ts';
import type { ProgramDataset, TrainProgramOptions, TrainProgramResult } from './program/train-program.ts';
import type { ProgramInputValues } from '../engine/program/training-model.ts';
import { OUTPUT_KINDS, type Choice } from '../core/choices.ts';
import { UsageError } from '../core/errors.ts';
import type { ModelFile } from '../core/model-files.ts';
import type { LowBitCache } from '../lowbit-diff/cache.ts';
import { parseExpiry } from '../core/expiry.ts';

export { lossText } from './loss-text.ts';

/** The options of `train()` that take one of a few words: `ndiff train`'s choices. */
export const TRAIN_CHOICES: readonly Choice[] = [
  ['method', '--method', [...TRAIN_METHODS, 'auto']],
  ['autoSearch', '--auto-search', ['halving', 'exhaustive']],
  ['tune', '--tune', ['quick', 'thorough', 'off']],
  ['store', '--store', ['stored', 'float32']],
  ['backend', '--backend', ['auto', 'wasm', 'native', 'cpu', 'tensorflow']],
  ['step', '--step', ['compiled', 'eager']],
  ['codec', '--codec', ['auto', 'f32', 'f16', 'i8']],
  ['teacherLoss', '--teacher-loss', ['auto', 'kl', 'mse']],
  ['sparseStart', '--sparse-start', ['auto', 'zero', 'teacher']],
  ['outputKind', '--output-kind', OUTPUT_KINDS],
];

/** A training's options with every default settled: what each kind of base trains from (`ndiff train`'s arguments by the same names). */
export interface TrainSettings {
  /** A method, or `auto`: the candidate best on validation kept. */
  method: TrainMethod | 'auto';
  /** With `auto`: successive halving on validation (`halving`) or every candidate trained to its end (`exhaustive`). */
  autoSearch: 'halving' | 'exhaustive';
  /** lowbit's quantizations kept between trainings of the same change (library only: budget auto's search). */
  lowbitCache?: LowBitCache;
  /** The base's path, or `base` when it was given as bytes. */
  base: string;
  /** The base's bytes, when given so (an .onnx or .tflite file's). */
  baseBytes?: Uint8Array;
  /** The teacher's bytes, when given so. */
  teacherBytes?: Uint8Array;
  /** A TF.js base given as its files (the model JSON first, then its shards). */
  baseFiles?: ModelFile[];
  /** A TF.js teacher given as its files. */
  teacherFiles?: ModelFile[];
  train: string;
  eval?: string;
  val?: string;
  replay?: string;
  valFraction: number;
  tune: 'quick' | 'thorough' | 'off';
  trainable: string;
  allowWorse: boolean;
  distill: number;
  alsoConsider: string[];
  store: 'stored' | 'float32';
  budget: string;
  epochs: number;
  seed: number;
  out?: string;
  modelOut?: string;
  metricsOut?: string;
  backend: TrainBackendName;
  batchSize?: number;
  threads?: number;
  step?: 'compiled' | 'eager';
  prefixCacheMb?: number;
  lr?: number;
  codec: 'auto' | 'f32' | 'f16' | 'i8';
  loss?: string;
  modelId?: string;
  sequence: number;
  expires?: string;
  teacher?: string;
  teacherWeight: number;
  teacherLoss: 'auto' | 'kl' | 'mse';
  temperature: number;
  sparseStart: 'auto' | 'zero' | 'teacher';
  sparseShare?: number;
  /** With --teacher: folders or x.npy files of unlabeled inputs from where the model runs. */
  distillInputs?: string[];
  /** The share of the training stream drawn from --distill-inputs. */
  distillMix?: number;
  /** With --teacher: none, or augmentations in the order they apply. */
  augment?: string;
  /** Set when no method was given: the default taken and why (the runners may revise it, see {@link settleDefaultMethod}). */
  methodDefault?: MethodDefault;
}

/** The method `ndiff train` took without `--method`, and why (`methodDefault` in `--json` and `--metrics-out`). */
export interface MethodDefault {
  method: TrainMethod;
  why: string;
}

/**
 * The default without `--method`: toward a teacher, distilled lowbit, which the measured tables
 * put first at 1, 5 and 10% (docs/BENCHMARKS.md: the keyword teacher chains, Silero v5 -> v6);
 * with labels only, sparse, which the label tables measured. A runner revises a lowbit default
 * once it has read the teacher ({@link settleDefaultMethod}).
 */
export function defaultMethod(teacher: boolean): MethodDefault {
  return teacher
    ? { method: 'lowbit', why: 'toward a teacher, distilled lowbit measured closest in docs/BENCHMARKS.md (the keyword teacher chains, agreement on held-out voices: 81-96% at 1%, 96-99.5% at 5%, 98.6-99.6% at 10%; Silero v5 -> v6 at 10%: 99.1-99.5% of frames)' }
    : { method: 'sparse', why: 'with labels and no teacher, the learned sparse diff is what the label tables in docs/BENCHMARKS.md measured' };
}

/** A weight as a store lists it: what {@link settleDefaultMethod} compares. */
interface ListedWeight {
  name: string;
  shape: readonly number[];
  patchable?: boolean;
}

/**
 * The method a run takes, once the model it trains on (`trained`: the base, or the model a
 * structural payload rebuilds first) and the teacher's weights are read. A lowbit default stays
 * when the teacher holds every patchable weight of `trained` by name and shape (lowbit compresses
 * teacher − base); otherwise (a teacher in another format whose weights are named otherwise)
 * sparse, which needs only the same inputs and outputs, and the line says why. An explicit
 * `--method` is kept as it is. The progress line says what was chosen before any training.
 */
export function settleDefaultMethod<A extends TrainSettings>(a: A, trained: readonly ListedWeight[], teacher: readonly ListedWeight[] | undefined, progress: (line: string) => void): A {
  if (!a.methodDefault) return a;
  let chosen = a.methodDefault;
  if (chosen.method === 'lowbit' && teacher) {
    const have = new Map(teacher.map((w) => [w.name, w.shape] as const));
    const missing = trained.find((w) => {
      if (w.patchable === false) return false;
      const s = have.get(w.name);
      return !s || s.length !== w.shape.length || s.some((d, i) => d !== w.shape[i]);
    });
    if (missing) {
      chosen = { method: 'sparse', why: `lowbit, which measured closest toward a teacher, compresses teacher − base, but the teacher ${have.has(missing.name) ? `holds ${missing.name} in another shape` : `has no weight ${missing.name}`} (a teacher in another format names its weights otherwise); sparse needs only the same inputs and outputs` };
    }
  }
  progress(`method ${chosen.method} (the default: ${chosen.why}); pass --method to choose another, or --method auto to train each candidate and keep the best on validation`);
  return { ...a, method: chosen.method, methodDefault: chosen };
}

/**
 * `--distill-inputs` and `--augment` shape a teacher's training stream: they need a teacher (every
 * kind of base takes them; a graph program's stateful models are refused by its trainer).
 */
export function checkDistillStream(a: TrainSettings): void {
  const asked = [a.distillInputs?.length ? 'distillInputs (--distill-inputs)' : '', a.augment && a.augment !== 'none' ? 'augment (--augment)' : ''].filter(Boolean);
  if (!asked.length) return;
  const flags = asked.join(' and ');
  if (!a.teacher) throw new UsageError(`${flags} ${asked.length > 1 ? 'need' : 'needs'} teacher (--teacher): unlabeled and augmented inputs teach only through the teacher's outputs; pass teacher (--teacher) (the new version), or leave ${flags} out`);
}

/** What the teacher saw, for the metrics (`distillStream`): the wider inputs and their share, the augmentation asked and (auto) kept; nothing when neither was asked. */
export function distillStreamMetrics(a: TrainSettings, augmentation: unknown): { distillStream?: Record<string, unknown> } {
  if (!(a.distillInputs ?? []).length && (a.augment ?? 'none') === 'none') return {};
  return { distillStream: { distillInputs: a.distillInputs ?? [], distillMix: a.distillMix ?? 0.5, augment: a.augment ?? 'none', ...(augmentation ? { augmentation } : {}) } };
}

/** The options of `ndiff train` only graph programs (ONNX files, TF.js graph models) take. */
export interface ProgramSettings {
  teacher?: string;
  state: string[];
  bptt: number;
  output?: string;
  outputKind?: OnnxOutputKind;
}

/**
 * The options every graph-program train command (ONNX files, TF.js graph models) takes from its
 * arguments alike: method and budget, schedule, validation and evaluation data, the trained
 * output, the payload header. Each command adds what only it has (state, replay, teacher kinds).
 */
export function programTrainOptions(
  a: TrainSettings & ProgramSettings,
  p: { budgetBytes: number; val: ProgramDataset | undefined; evalData: ProgramDataset | undefined; distillInputs?: ProgramDataset[]; shared: Record<string, ProgramInputValues>; modelId: string; trainable: TrainProgramOptions['trainable']; progress: (line: string) => void; warn?: (line: string) => void },
) {
  return {
    method: a.method,
    autoSearch: a.autoSearch,
    onCandidate: (c: AutoCandidate) => p.progress(autoCandidateLine(c)),
    ...(p.warn ? { onWarning: p.warn } : {}),
    budgetBytes: p.budgetBytes,
    epochs: a.epochs,
    ...(a.batchSize !== undefined ? { batchSize: a.batchSize } : {}),
    ...(a.step ? { step: a.step } : {}),
    seed: a.seed,
    learningRate: a.lr,
    codec: a.codec,
    validation: p.val ?? a.valFraction,
    ...(p.evalData ? { eval: p.evalData } : {}),
    tune: a.tune,
    trainable: p.trainable,
    allowWorse: a.allowWorse,
    distill: a.distill,
    // With a teacher: where a sparse diff starts (ONNX and LiteRT files ignored --sparse-start before).
    ...(a.teacher ? { sparseStart: a.sparseStart } : {}),
    ...(a.lowbitCache ? { lowbitCache: a.lowbitCache } : {}),
    // The teacher's stream, as a layers model takes it: wider inputs drawn in, each batch augmented.
    ...(p.distillInputs?.length ? { distillInputs: p.distillInputs, distillMix: a.distillMix ?? 0.5 } : {}),
    ...(a.augment && a.augment !== 'none' ? { augment: a.augment } : {}),
    store: a.store,
    shared: p.shared,
    ...(a.output ? { output: a.output } : {}),
    ...(a.outputKind ? { outputKind: a.outputKind } : {}),
    header: { modelId: p.modelId, sequence: a.sequence, ...(a.expires ? { expiresAt: parseExpiry(a.expires) } : {}) },
  };
}

/** What a training sets out to do, for its first progress line: `a sparse diff within 1.2 KB`. */
export function trainingWhat(method: TrainMethod | 'auto', budget: string, autoSearch: 'halving' | 'exhaustive' = 'halving'): string {
  if (method === 'full') return 'a full fine-tune';
  return method === 'auto' ? `the best on validation of lowbit, sparse, lora, sparse-lora and topk-retrain diffs within ${budget} (${autoSearch === 'halving' ? 'by successive halving: the worse half dropped each round, the last one trained to its end' : 'each trained in turn'})` : `a ${method} diff within ${budget}`;
}

/** One `auto` candidate's outcome as a progress line. */
export function autoCandidateLine(c: AutoCandidate): string {
  const epochs = c.epochs !== undefined ? ` after ${c.epochs} epoch${c.epochs === 1 ? '' : 's'}` : '';
  const figure = c.scoreText === undefined ? 'no checkpoint yet' : `${c.bytes} bytes, validation ${c.scoreText}`;
  const what = c.refused ? `refused (${c.refused.split(': ')[0]})` : c.droppedAfterRound !== undefined ? `dropped after round ${c.droppedAfterRound} (${figure}${epochs})` : `${figure}${epochs}`;
  return `auto: ${c.method}: ${what}, ${c.seconds.toFixed(1)} s`;
}

/**
 * What `auto` chose, as progress lines: with halving, each round's figures first (every
 * candidate's validation score and epochs at its end) and the time against the exhaustive
 * search's estimate.
 */
export function autoChoiceLines(auto: AutoResult['auto']): string[] {
  const had = `${auto.candidates.filter((c) => !c.refused && c.droppedAfterRound === undefined).length} of ${auto.candidates.length} candidates`;
  if (auto.search !== 'halving' || !auto.rounds) return [`auto: chose ${auto.chosen} (${auto.candidates.filter((c) => !c.refused).length} of ${auto.candidates.length} candidates had a result)`];
  const lines = auto.rounds.map((r) => `auto: round ${r.round} (${r.epochs === null ? 'to the end' : `${r.epochs} epochs each`}): ${r.figures.map((f) => `${f.method} ${f.refused ? 'refused' : f.scoreText ?? 'no checkpoint'} (${f.epochs} ep${f.dropped ? ', dropped' : ''})`).join('; ')}`);
  const spent = auto.candidates.reduce((t, c) => t + c.seconds, 0);
  const estimate = auto.exhaustiveSecondsEstimate ?? NaN;
  lines.push(`auto: chose ${auto.chosen} by successive halving (${had} trained to the end) in ${spent.toFixed(1)} s; the exhaustive search (--auto-search exhaustive) would take about ${estimate.toFixed(1)} s (estimated), ${(estimate - spent).toFixed(1)} s saved`);
  return lines;
}

/** The method a run wrote (`auto: lowbit` when auto chose it), for its result line. */
export function writtenMethod(method: TrainMethod | 'auto', auto: AutoResult['auto'] | undefined): string {
  return auto ? `auto: ${auto.chosen}` : method;
}

/** A metrics file's method fields: the method written (auto's choice) and, with auto, every candidate. */
export function methodMetrics(method: TrainMethod | 'auto', auto: AutoResult['auto'] | undefined): { method: TrainMethod; auto?: AutoResult['auto'] } {
  return auto ? { method: auto.chosen, auto } : { method: method as TrainMethod };
}

/**
 * What a graph-program run printed after training (TF.js graph models, LiteRT files): closeness
 * to the teacher or accuracy on validation, and on `--eval` (`evalLabels`: it had labels),
 * measured with the weights a device gets.
 */
export function programResultLines(res: TrainProgramResult, evalLabels: boolean): string[] {
  const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(100 * x).toFixed(2)}%`);
  const lines: string[] = [];
  const tv = res.teacher?.validation;
  // Agreement only where the outputs are a classifier's (NaN otherwise: a map, a sigmoid's values).
  if (tv) lines.push(`validation, closeness to the teacher: ${Number.isNaN(tv.agreement) ? '' : `agreement ${pct(tv.baseAgreement)} -> ${pct(tv.agreement)}, `}mean |output - teacher| ${tv.baseMeanAbsDiff.toPrecision(3)} -> ${tv.meanAbsDiff.toPrecision(3)} on ${tv.examples} examples`);
  else if (res.validation) lines.push(`validation accuracy ${pct(res.validation.baseAccuracy)} -> ${pct(res.validation.accuracy)} on ${res.validation.examples} examples`);
  if (res.teacherEval) lines.push(teacherEvalLine(res.teacherEval, 'the weights a device gets'));
  if (evalLabels) lines.push(`eval accuracy ${pct(res.accuracyBefore)} -> ${pct(res.accuracyAfter)} (the weights a device gets)`);
  return lines;
}

/** Closeness to the teacher on `--eval` before and after, in the measure that fits the output (no agreement for plain values). */
export function teacherEvalLine(e: NonNullable<TrainProgramResult['teacherEval']>, how: string): string {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const mad = `mean |output - teacher| ${e.before.meanAbsDiff.toFixed(4)} -> ${e.after.meanAbsDiff.toFixed(4)}`;
  return Number.isNaN(e.after.agreement) ? `eval, ${mad} (${how})` : `eval agreement with the teacher ${pct(e.before.agreement)} -> ${pct(e.after.agreement)}; ${mad} (${how})`;
}

/**
 * The training score an epoch line shows: accuracy on the labels (` acc 91.2%`); with no labels,
 * the teacher's top class stands in for them, so the same figure is agreement with the teacher
 * and says so; nothing when there is no score (plain values: a mask, a regression).
 */
export function epochScore(trainAccuracy: number, labelled: boolean): string {
  if (Number.isNaN(trainAccuracy)) return '';
  return labelled ? ` acc ${(100 * trainAccuracy).toFixed(1)}%` : ` agreement with the teacher ${(100 * trainAccuracy).toFixed(1)}%`;
}


/**
 * The warning for a payload written although it measured worse than not updating on validation
 * (`allowWorse`): below the base's accuracy, or further from the teacher than the base (by top-1
 * agreement where the outputs have one, else by mean difference). Undefined when it is not worse.
 */
export function worseThanBaseWarning(res: {
  validation?: { baseAccuracy: number; accuracy: number };
  teacher?: { validation?: { baseAgreement: number; agreement: number; baseMeanAbsDiff: number; meanAbsDiff: number } };
}): string | undefined {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const tv = res.teacher?.validation;
  let measured: string | undefined;
  if (tv && !Number.isNaN(tv.agreement) && !Number.isNaN(tv.baseAgreement)) {
    if (tv.agreement < tv.baseAgreement) measured = `top-1 agreement with the teacher ${pct(tv.agreement)} where the unpatched base has ${pct(tv.baseAgreement)}`;
  } else if (tv) {
    if (tv.meanAbsDiff > tv.baseMeanAbsDiff) measured = `mean |output - teacher| ${tv.meanAbsDiff.toPrecision(3)} where the unpatched base has ${tv.baseMeanAbsDiff.toPrecision(3)}`;
  } else if (res.validation && res.validation.accuracy < res.validation.baseAccuracy) {
    measured = `accuracy ${pct(res.validation.accuracy)} where the unpatched base has ${pct(res.validation.baseAccuracy)}`;
  }
  return measured && `this payload is worse than not updating on validation (${measured}): devices that apply it get a worse model than the one they hold; it was written because --allow-worse (allowWorse) was given`;
}
