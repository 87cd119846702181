/**
 * The types diff's options and result name that come from measuring on inputs, written out here
 * so that the `neural-diff` entry's type declarations never reach the trainers' (which name tfjs,
 * an optional peer dependency a build server may not install). The closeness of a payload is one
 * type shared with the trainers (src/diff/closeness.ts).
 */
import type { PayloadCloseness } from '../diff/closeness.ts';

export type { ClosenessMetric, OutputKind } from '../diff/closeness.ts';

/** How close base + payload comes to the target on `eval` inputs, beside the unpatched base (the trainers call it {@link PayloadCloseness}). */
export type EvalCloseness = PayloadCloseness;

/** One candidate payload measured on `calibrate` inputs. */
export interface CalibrationScore {
  name: string;
  bytes: number;
  /** The loss of base + payload against the target on the inputs (lower is closer). */
  loss: number;
  /** Top-1 agreement of base + payload with the target, when the outputs are a classifier's. */
  agreement?: number;
  /** The same payload as an earlier candidate (not measured again). */
  sameAs?: string;
}

/** What `calibrate` chose, and every candidate's score. */
export interface CalibrationReport {
  inputs: string;
  examples: number;
  chosen: string;
  /** The unpatched base's loss on the same inputs: a chosen loss at or above it is no closer to the target than not updating. */
  baseLoss: number;
  /** The unpatched base's top-1 agreement with the target, when the outputs are a classifier's (the choice is then by agreement). */
  baseAgreement?: number;
  candidates: CalibrationScore[];
}
