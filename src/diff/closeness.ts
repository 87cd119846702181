/**
 * How close a payload takes the base to a target model, measured on inputs: the one shape of that
 * measurement, whoever makes it. `diff()`'s `eval` (neural-diff, as `EvalCloseness`) and the
 * trainers' `payloadCloseness` / `programPayloadCloseness` (neural-diff/train) both return it.
 * Types only and free of tfjs, so the `neural-diff` entry's declarations name it without reaching
 * the trainers'. How an output reads (`OutputKind`) is the engine's word (src/engine/program/output-kind.ts).
 */
import type { OutputKind } from '../engine/program/output-kind.ts';

export type { OutputKind };

/** What decides "closer": top-1 agreement (classifier outputs) or mean absolute output difference. */
export type ClosenessMetric = 'top1' | 'mae';

/** The closeness of the base and of base + payload to the target, on some inputs. */
export interface PayloadCloseness {
  examples: number;
  /** What decides "closer": top-1 agreement (classifier outputs) or mean absolute output difference. */
  metric: ClosenessMetric;
  /** The unpatched base against the target (agreement NaN without class outputs). */
  base: { agreement: number; meanAbsDiff: number };
  /** Base + payload against the target. */
  patched: { agreement: number; meanAbsDiff: number };
  /** Base + payload is further from the target than the unpatched base (by `metric`). */
  movesAway: boolean;
  /** With labels: accuracy of the base and of base + payload. */
  accuracyBefore?: number;
  accuracyAfter?: number;
  /** With labels: accuracy of the target itself (what a report holds the payload against). */
  accuracyTarget?: number;
  /** Graph models (ONNX, LiteRT, TF.js graph programs): the output compared. */
  output?: string;
  /** Graph models: how that output reads. */
  outputKind?: OutputKind;
}
