/**
 * What a teacher diff's training stream is made of, from the trainer's options: the update's own
 * inputs with the wider distillation inputs drawn in (`distillInputs`, `distillMix`), and the
 * augmentations each step applies before the teacher and the model both score the batch
 * (`augment`). Both need a teacher: it gives the targets of inputs that have no labels, and of
 * inputs made anew at every step.
 */
import type * as tf from '@tensorflow/tfjs';
import { UsageError } from '../core/errors.ts';
import { augmenter, parseAugment, parseSequenceAugment, waveAugmenter, type Augmentation } from './augment.ts';
import type { LabelledData } from './data.ts';
import { DEFAULT_DISTILL_MIX, drawWiderInputs, mixDistillInputs } from './distill-inputs.ts';
import type { TrainDiffOptions } from './options.ts';
import { withLabels, type PreparedTeacher } from './teacher.ts';
import { augmentedKind } from './augment-auto.ts';

export { trainWithAugmentAuto } from './augment-auto.ts';

/** The training stream with `options.distillInputs` drawn in; `owned` when a new tensor was made (the caller disposes it). */
export function widerStream(train: LabelledData, options: TrainDiffOptions, teach: PreparedTeacher | undefined, progress: (m: string) => void): { data: LabelledData; owned: boolean } {
  const sources = options.distillInputs ?? [];
  if (sources.length === 0) {
    if (options.distillMix !== undefined) drawWiderInputs(0, [], options.distillMix, 0); // a bad share is still refused
    return { data: train, owned: false };
  }
  if (!teach) throw new UsageError('wider distillation inputs (--distill-inputs) have no labels: they teach only through a teacher\'s outputs; pass --teacher (the new version), or train on labelled data with --train and --replay');
  const share = options.distillMix ?? DEFAULT_DISTILL_MIX;
  const { data, draw } = mixDistillInputs(train, sources, share, options.seed ?? 0, (x) => {
    const y = withLabels({ x }, 'distillation inputs', teach).y;
    teach.rows.delete(x);
    return y;
  });
  const available = sources.reduce((n, s) => n + s.x.shape[0], 0);
  progress(`distillation inputs: ${draw.count} of ${available} drawn (${draw.picked.map((p) => p.length).join(' + ')} by source) beside ${train.y.length} of the update's, ${(100 * draw.share).toFixed(1)}% of the stream${draw.count < available || share === 0 ? '' : draw.share + 1e-9 < share ? ` (${(100 * share).toFixed(0)}% asked: every one is in)` : ''}`);
  return { data, owned: data !== train };
}

/** The augmentation each training step applies (undefined for none), checked against the model's input and the data. */
export function augmentOf(model: tf.LayersModel, options: TrainDiffOptions, teach: PreparedTeacher | undefined, labelled: boolean): Augmentation | undefined {
  const listed = options.augment === undefined ? [] : (typeof options.augment === 'string' ? [options.augment] : [...options.augment]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  if (listed.length === 0 || (listed.length === 1 && listed[0] === 'none')) return undefined;
  const kind = augmentedKind(model);
  // A stateful model's sequences are augmented whole, as waveforms: gain, noise and speed fit.
  const wave = kind.sequences ? parseSequenceAugment(listed, model.layers[0]?.name ?? 'this model') : [];
  const plain = kind.sequences ? [] : parseAugment(listed, kind.shape);
  const names: readonly string[] = kind.sequences ? wave : plain;
  if (names.length === 0) return undefined;
  if (!teach) throw new UsageError(`augmentation (--augment ${names.join(',')}) trains toward a teacher that scores each augmented input; pass --teacher (the new version), or --augment none`);
  if (model.inputs.length !== 1) throw new UsageError(`augmentation takes a model of one input; this one has ${model.inputs.length}: use --augment none`);
  if (labelled && names.includes('mixup')) throw new UsageError('mixup mixes inputs of different classes, so the labels (y.npy) no longer hold for the mixed input: drop the labels (the teacher gives every target) or leave mixup out of --augment');
  if (labelled && wave.includes('speed')) throw new UsageError('speed moves a sequence\'s audio in time, so the labels of its frames (y.npy) no longer fall on the frames they were given for: drop the labels (the teacher gives every target) or leave speed out of --augment');
  return kind.sequences ? waveAugmenter(wave) : augmenter(plain);
}
