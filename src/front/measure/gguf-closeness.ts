/**
 * The figures `ndiff measure` gives a GGUF model beside its target, from next-token probabilities
 * one position at a time (nothing holds a text's vocab x positions values): greedy agreement (the
 * share of positions whose most likely next token is the target's), the mean KL divergence
 * KL(target || model) over the next-token distributions, and perplexity on the text, exp(mean
 * negative log-likelihood of each next token). And the rule by which a patched model counts as no
 * closer to the target than the base it patched. Pure arithmetic over typed arrays.
 */
import { lessCloseThanBase } from '../../train/eval-noise.ts';

/**
 * llama.cpp returns probabilities in float32: a token whose softmax underflows reads as 0. Its
 * log-probability is taken as that of the smallest float32 (1.4e-45, ln = -103.3), so one such
 * token makes KL and perplexity large but finite.
 */
export const PROBABILITY_FLOOR = 1.401298464324817e-45;

const logOf = (p: number) => Math.log(p > PROBABILITY_FLOOR ? p : PROBABILITY_FLOOR);

/** The most likely token of `probs` (the lowest id among equals, so ties read the same every run). */
export function argmax(probs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < probs.length; i++) if (probs[i] > probs[best]) best = i;
  return best;
}

/** KL(p || q) in nats over one next-token distribution: sum of p_i (ln p_i - ln q_i) where p_i > 0. */
export function klDivergence(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let kl = 0;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i];
    if (pi > 0) kl += pi * (logOf(pi) - logOf(q[i]));
  }
  // Float32 rounding can leave a sum of identical distributions a hair below zero.
  return kl > 0 ? kl : 0;
}

/** Negative log-likelihood, in nats, of `token` under `probs`. */
export function negativeLogLikelihood(probs: ArrayLike<number>, token: number): number {
  return -logOf(probs[token]);
}

/** Greedy agreement and mean KL of one model against the target, summed a position at a time. */
export class ClosenessTally {
  positions = 0;
  agreements = 0;
  klSum = 0;
  klMax = 0;

  /** Add one position: the target's next-token probabilities and the model's. */
  add(target: ArrayLike<number>, model: ArrayLike<number>, targetArgmax = argmax(target)): void {
    this.positions++;
    if (argmax(model) === targetArgmax) this.agreements++;
    const kl = klDivergence(target, model);
    this.klSum += kl;
    if (kl > this.klMax) this.klMax = kl;
  }

  /** Share of positions whose most likely next token is the target's (NaN before any). */
  get agreement(): number {
    return this.agreements / this.positions;
  }

  /** Mean KL(target || model) in nats per position (NaN before any). */
  get meanKl(): number {
    return this.klSum / this.positions;
  }
}

/** A model's negative log-likelihood of the text's tokens, summed a position at a time. */
export class PerplexityTally {
  tokens = 0;
  nllSum = 0;

  /** Add the model's probabilities at one position and the token that came next in the text. */
  add(probs: ArrayLike<number>, next: number): void {
    this.tokens++;
    this.nllSum += negativeLogLikelihood(probs, next);
  }

  /** Mean negative log-likelihood per token, in nats. */
  get meanNll(): number {
    return this.nllSum / this.tokens;
  }

  /** exp(mean negative log-likelihood). */
  get perplexity(): number {
    return Math.exp(this.meanNll);
  }
}

/** A model's closeness to the target, as {@link notCloserThanBase} compares two. */
export interface GgufCloseness {
  agreement: number;
  meanKl: number;
}

/**
 * Whether `patched` is no closer to the target than `base` (the version it patched) over
 * `positions` positions: its mean KL from the target is not lower, or its greedy agreement is lower
 * than the base's beyond noise (`ndiff diff --eval`'s rule, eval-noise.ts, with KL as the measure
 * of the outputs: one standard error when KL came no closer, two when it did).
 */
export function notCloserThanBase(patched: GgufCloseness, base: GgufCloseness, positions: number): boolean {
  if (!(patched.meanKl < base.meanKl)) return true;
  return lessCloseThanBase({
    metric: 'top1',
    examples: positions,
    base: { agreement: base.agreement, meanAbsDiff: base.meanKl },
    patched: { agreement: patched.agreement, meanAbsDiff: patched.meanKl },
  });
}
