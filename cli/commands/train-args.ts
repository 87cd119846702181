/**
 * The arguments `ndiff train` parses (train.ts defines the options). The command passes them to
 * `train()` (src/train/front.ts), which holds every decision about formats and methods.
 */
import type { TrainBackendName } from '../../src/train/backend.ts';
import type { TrainMethod } from '../../src/train/methods.ts';
import type { OnnxOutputKind } from '../../src/train/onnx/layers-model.ts';

/** What `ndiff train` parses (train.ts defines the options). */
export interface TrainArgs {
  /** A method, or `auto`: every candidate trained, the best on validation kept. */
  method: TrainMethod | 'auto';
  base: string;
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
  out: string;
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
}

/** The options of `ndiff train` only graph programs (ONNX files, TF.js graph models) take. */
export interface OnnxTrainArgs {
  teacher?: string;
  state: string[];
  bptt: number;
  output?: string;
  outputKind?: OnnxOutputKind;
}

