/** A shippable state of a training run, and the order in which checkpoints are preferred. */
import type { BuiltPayload } from '../diff/build.ts';

/** A shippable state of a run, evaluated on validation. */
export interface Checkpoint {
  built: BuiltPayload;
  /** Accuracy on the validation labels (NaN without labels or validation). */
  valAccuracy: number;
  /** Validation loss: cross-entropy, or the teacher term with a teacher. */
  valLoss: number;
  /**
   * What checkpoints are chosen by, higher is better: the validation accuracy, or with a teacher
   * the agreement with it (or minus the mean absolute output difference; see src/train/teacher.ts).
   */
  score: number;
  /** How `score` reads in progress lines (`91.20%`). */
  scoreText: string;
  collapsed: boolean;
  /**
   * Per validation example, what `score` averages: 1 where it is right, 0 where not (or its
   * closeness to the teacher); empty without validation. Competition pairs these.
   */
  perExample: ArrayLike<number>;
  /** With a teacher: top-1 agreement with it (NaN without class outputs) and mean absolute output difference on validation. */
  teacherCloseness?: { agreement: number; meanAbsDiff: number };
  label: string;
  learningRate: number;
  /** `full` and the fine-tune behind post-hoc methods: the fine-tuned weights (exactly the device's). */
  weights?: Map<string, Float32Array>;
}

/**
 * Whether checkpoint `a` is preferred to `b` (none yet: always): one that does not predict a
 * single class first, then the score (validation accuracy, or closeness to the teacher), then
 * validation loss, then fewer bytes.
 */
export function better(a: Checkpoint, b: Checkpoint | undefined): boolean {
  if (!b) return true;
  if (a.collapsed !== b.collapsed) return !a.collapsed;
  if (a.score !== b.score) return a.score > b.score || Number.isNaN(b.score);
  if (a.valLoss !== b.valLoss) return a.valLoss < b.valLoss;
  return a.built.bytes.length < b.built.bytes.length;
}
