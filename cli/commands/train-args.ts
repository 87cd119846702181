/**
 * The arguments `ndiff train` parses (train.ts defines the options). The command passes them to
 * `train()` (src/train/front.ts), which holds every decision about formats and methods; the
 * arguments are its settings by the same names (src/train/front-settings.ts), from paths only.
 */
import type { ProgramSettings, TrainSettings } from '../../src/train/front-settings.ts';

/** What `ndiff train` parses (train.ts defines the options): `train()`'s settings, models as paths. */
export type TrainArgs = Omit<TrainSettings, 'baseBytes' | 'teacherBytes' | 'baseFiles' | 'teacherFiles' | 'methodDefault' | 'out'> & { out: string } & BudgetAutoArgs;

/** `--budget auto`'s quality target (exactly one) and grid, as `train()` takes them. */
export interface BudgetAutoArgs {
  minAgreement?: number;
  maxMeanAbsDiff?: number;
  maxAccuracyDrop?: number;
  budgetGrid?: string;
  budgetTune?: 'once' | 'each';
}

/** The options of `ndiff train` only graph programs (ONNX files, TF.js graph models) take. */
export type OnnxTrainArgs = ProgramSettings;
