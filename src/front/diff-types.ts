/**
 * The types diff's options and result name that come from measuring on inputs, written out here
 * so that the `neural-diff` entry's type declarations never reach the trainers' (which name tfjs,
 * an optional peer dependency a build server may not install). The trainers' own types are
 * structurally the same; src/front/measure/ returns them as these.
 */

/** How an ONNX or LiteRT model's output reads: `probability` (one value, decided at 0.5), `logit` (decided at 0), `probabilities` or `logits` (top-1), `values` (closeness only). */
export type OutputKind = 'probability' | 'logit' | 'probabilities' | 'logits' | 'values';

/** How close base + payload comes to the target on `eval` inputs, beside the unpatched base. */
export interface EvalCloseness {
  examples: number;
  /** What decides "closer": top-1 agreement (classifier outputs) or mean absolute output difference. */
  metric: 'top1' | 'mae';
  /** The unpatched base against the target (agreement NaN without class outputs). */
  base: { agreement: number; meanAbsDiff: number };
  /** Base + payload against the target. */
  patched: { agreement: number; meanAbsDiff: number };
  /** Base + payload is further from the target than the unpatched base (by `metric`). */
  movesAway: boolean;
  /** With labels: accuracy of the base, of base + payload, and of the target. */
  accuracyBefore?: number;
  accuracyAfter?: number;
  accuracyTarget?: number;
  /** ONNX and LiteRT models: the output compared, and how it reads. */
  output?: string;
  outputKind?: OutputKind;
}

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
