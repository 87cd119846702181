/** A shippable state of a training run, and the order in which checkpoints are preferred. */
import type { BuiltPayload } from '../diff/build.ts';

/** A shippable state of a run, evaluated on validation. */
export interface Checkpoint {
  built: BuiltPayload;
  valAccuracy: number;
  valLoss: number;
  collapsed: boolean;
  /** 1 per validation example it gets right (empty without validation). */
  correct: Uint8Array;
  label: string;
  learningRate: number;
  /** `full` and the fine-tune behind post-hoc methods: the fine-tuned weights (exactly the device's). */
  weights?: Map<string, Float32Array>;
}

/**
 * Whether checkpoint `a` is preferred to `b` (none yet: always): one that does not predict a
 * single class first, then validation accuracy, then validation loss, then fewer bytes.
 */
export function better(a: Checkpoint, b: Checkpoint | undefined): boolean {
  if (!b) return true;
  if (a.collapsed !== b.collapsed) return !a.collapsed;
  if (a.valAccuracy !== b.valAccuracy) return a.valAccuracy > b.valAccuracy || Number.isNaN(b.valAccuracy);
  if (a.valLoss !== b.valLoss) return a.valLoss < b.valLoss;
  return a.built.bytes.length < b.built.bytes.length;
}
