/**
 * `augment: 'auto'`: the augmentations that fit the input's kind, each kept only where it brings
 * the patched model closer to the teacher on validation (the held-out split of the distillation
 * stream, the same seeded split for every run). One run without augmentation, one with each
 * candidate alone, and, when two or more helped, one with them together, kept only if it beats
 * the best single one: 2 + candidates runs at most, the closest written.
 */
import type * as tf from '@tensorflow/tfjs';
import { UsageError } from '../core/errors.ts';
import { SEQUENCE_AUGMENTATIONS, type AugmentationName } from './augment.ts';
import type { InputData, LabelledData } from './data.ts';
import { modelToStore, setModelWeights } from '../engine/model-weights.ts';
import type { TrainDiffOptions, TrainDiffResult } from './options.ts';
import type { AugmentedInputs } from './loop.ts';

/**
 * The shape of one example of the input augmentations change: a layers model's input, or for a
 * graph program (whose `x` holds example ids) its one float input ({@link AugmentedInputs});
 * `sequences` for a stateful model, whose sequences are augmented whole, as waveforms.
 * @throws UsageError where a graph program cannot be augmented (several float inputs).
 */
export function augmentedExample(model: tf.LayersModel): number[] {
  return augmentedKind(model).shape;
}

/** {@link augmentedExample}'s shape, and whether the model's sequences are augmented whole (stateful). */
export function augmentedKind(model: tf.LayersModel): { shape: number[]; sequences: boolean } {
  const own = model as unknown as Partial<AugmentedInputs>;
  if (own.augmentedInput) {
    const a = own.augmentedInput();
    return { shape: a.shape, sequences: a.sequences === true };
  }
  return { shape: model.inputs[0].shape.slice(1).map((d) => d ?? 1), sequences: false };
}

/** The candidates for an example's shape: audio features, images or any input; a stateful model's sequences: gain, noise, and speed without labels. */
export function augmentCandidates(example: readonly number[], labelled: boolean, sequences = false): AugmentationName[] {
  // Speed moves a sequence's audio off the frames its labels were given for.
  if (sequences) return SEQUENCE_AUGMENTATIONS.filter((name) => !labelled || name !== 'speed');
  const any: AugmentationName[] = labelled ? ['noise'] : ['noise', 'mixup'];
  // [h, w, 3 or 4]: an image; 2-D, or 3-D with one channel: audio features or a spectrogram.
  if (example.length === 3 && (example[2] === 3 || example[2] === 4) && example[0] > 1 && example[1] > 1) return ['crop', 'flip', 'colour', ...any];
  if ((example.length === 2 || (example.length === 3 && example[2] === 1)) && example[0] > 1 && example[1] > 1) return ['time-shift', 'gain', 'time-mask', 'freq-mask', 'freq-warp', 'time-stretch', ...any];
  return any;
}

/** Closeness to the teacher on validation (higher is closer): agreement, or minus the mean absolute difference. */
function validationScore(r: TrainDiffResult): number {
  const v = r.teacher?.validation;
  if (!v) throw new UsageError('--augment auto chooses on validation: pass --val DATA or a --val-fraction above 0');
  return r.teacher?.metric === 'top1' ? v.agreement : -v.meanAbsDiff;
}

/**
 * Train with each candidate augmentation and keep what validates closer to the teacher; the model
 * is left holding the chosen run's weights.
 */
export async function trainWithAugmentAuto(
  model: tf.LayersModel,
  data: LabelledData | InputData,
  options: TrainDiffOptions,
  train: (model: tf.LayersModel, data: LabelledData | InputData, options: TrainDiffOptions) => Promise<TrainDiffResult>,
): Promise<TrainDiffResult & { augmentation: { kept: AugmentationName[]; tried: { augment: string; score: number }[] } }> {
  if (!options.teacher) throw new UsageError('--augment auto trains toward a teacher that scores each augmented input; pass --teacher (the new version), or --augment none');
  const progress = options.onProgress ?? (() => {});
  const base = options.base ?? modelToStore(model);
  const kind = augmentedKind(model);
  const candidates = augmentCandidates(kind.shape, data.y !== undefined, kind.sequences);
  const tried: { augment: string; score: number }[] = [];
  let best: { result: TrainDiffResult; names: AugmentationName[]; score: number; weights: ReturnType<typeof modelToStore> } | undefined;
  const run = async (names: AugmentationName[]) => {
    setModelWeights(model, (n) => base.values(n));
    const result = await train(model, data, { ...options, base, augment: names.length ? names : 'none' });
    const score = validationScore(result);
    tried.push({ augment: names.join(',') || 'none', score });
    progress(`augment auto: ${names.join(',') || 'none'} validates at ${score.toFixed(4)}`);
    if (!best || score > best.score) best = { result, names, score, weights: modelToStore(model) };
    return score;
  };
  progress(`augment auto: trying ${candidates.join(', ')} one at a time against none, on validation`);
  const plain = await run([]);
  const helped: AugmentationName[] = [];
  for (const name of candidates) if ((await run([name])) > plain) helped.push(name);
  if (helped.length > 1) await run(helped);
  const chosen = best as NonNullable<typeof best>;
  setModelWeights(model, (n) => chosen.weights.values(n));
  progress(`augment auto: kept ${chosen.names.join(',') || 'none'}`);
  return { ...chosen.result, augmentation: { kept: chosen.names, tried } };
}
