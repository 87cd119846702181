/**
 * The types diff's options and result name that come from measuring on inputs, written out here
 * so that the `neural-diff` entry's type declarations never reach the trainers' (which name tfjs,
 * an optional peer dependency a build server may not install). The closeness of a payload is one
 * type shared with the trainers (src/diff/closeness.ts). The value report and the payload are here
 * too, so that the GGUF path (diff-gguf.ts) names them without importing diff.ts, which calls it.
 */
import type { WeightEstimate } from '../diff/advice.ts';
import type { PayloadCloseness } from '../diff/closeness.ts';
import type { LowBitAllocation } from '../lowbit-diff/encoder.ts';
import type { BudgetSearchReport } from './budget-search.ts';

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

/** What `diff` (src/front/diff.ts) returns for a value payload (the two models share their structure). */
export interface ValueDiffReport {
  out?: string;
  bytes: number;
  /** The base's weights as stored, what `1%` budgets are a share of. */
  modelBytes: number;
  targetModelBytes: number;
  /** The verdict a user acts on: is the payload smaller than shipping the new model's weights? */
  smallerThanModel: boolean;
  payloadToModelRatio: number;
  budgetBytes: number;
  kept: number;
  changed: number;
  codec: string;
  seconds: number;
  baseFingerprint: string;
  targetFingerprint: string;
  /** `lowbit`, `topk`, or `exact` for `budget: 'all'`. */
  method: string;
  /** With lowbit: each tensor's bits and scales. */
  allocation?: LowBitAllocation[];
  /** With lowbit: the share of the change's squared size the payload carries. */
  shareCarried?: number;
  formatVersion?: number;
  /** No method given: the one chosen and why. */
  methodDefault?: { method: string; why: string };
  calibration?: CalibrationReport;
  modelOut?: string;
  modelOutFingerprint?: string;
  eval?: EvalCloseness;
  /** GGUF models with `eval`: the payload measured through llama.cpp on the held-out text. */
  llamaEval?: GgufPayloadEval;
  estimate?: WeightEstimate;
  warning?: string;
  /** `budget: 'auto'`: every budget tried, its figure and time, and the one chosen. */
  budgetSearch?: BudgetSearchReport;
}

/** The payload, and the warnings `ndiff diff` prints on stderr (none refuses the payload). */
export interface DiffPayload {
  payload: Uint8Array;
  warnings: string[];
}

/** One model's figures beside v2 on the held-out text. */
export interface GgufEvalRow {
  /** Share of positions whose most likely next token is v2's. */
  agreement: number;
  /** Mean KL(v2 || model) over the next-token distributions, nats per position. */
  meanKl: number;
  perplexity: number;
}

/** What `--eval` measured of a GGUF payload (`ndiff diff --json`'s `llamaEval`). */
export interface GgufPayloadEval {
  kind: 'gguf-llama';
  /** The held-out text. */
  eval: string;
  /** Positions compared (each predicts a token of the text). */
  positions: number;
  /** The base (v1) unpatched, and base + payload, each beside the target. */
  base: GgufEvalRow;
  patched: GgufEvalRow;
  /** The target's own perplexity on the text. */
  targetPerplexity: number;
  /** Base + payload is no closer to the target than the base (mean KL not lower, or agreement lower beyond noise). */
  movesAway: boolean;
  runtime: { package: 'node-llama-cpp'; version: string };
}
