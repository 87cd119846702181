/**
 * What `ndiff diff` does when the user did not say, and what it can tell without data: the
 * post-hoc method its measured tables put first, and, when nothing was measured on inputs, an
 * estimate from the weights alone of whether the payload is likely worse than not updating.
 *
 * The figures behind each choice are in docs/BENCHMARKS.md ("Shipping a trained v2: low-bit
 * deltas") and docs/guides/choosing-a-budget.md; the thresholds below sit between the measured
 * cases (a fine-tuned MLP from `bench:lowbit`, the digits of `npm run demo` fully fine-tuned,
 * Silero VAD v5 -> v6 from `bench:vad-lowbit`).
 */
import type { WeightStore } from '../core/weight-store.ts';
import { isPatchable } from '../core/weight-store.ts';

/** The post-hoc methods `ndiff diff` builds within a budget. */
export type PostHocMethod = 'topk' | 'lowbit' | 'auto';

/** The method a post-hoc diff takes when none is given, and why. */
export interface DefaultMethod {
  method: 'topk' | 'lowbit';
  /** The reason, in words, with the figures it rests on. */
  why: string;
}

/**
 * The default post-hoc method: lowbit, which measured above top-k in every post-hoc table
 * (a fine-tuned MLP at 2-10% of the model: 92.7-94.2% where top-k kept 70.5-77.0% and v1 has
 * 70.7%; Silero v5 -> v6 at 2-10%: 53-90% of frames as v6 where top-k kept 29-66%), and with
 * calibration inputs its variant chosen on them (Silero at 10%: 97.9% / 98.9%, the only post-hoc
 * row above v5). Top-k stays for every change exactly (`--budget all`) and when a top-k value
 * codec is asked for.
 */
export function defaultPostHocMethod(o: { everyChange: boolean; codec?: string; calibrate: boolean }): DefaultMethod {
  if (o.everyChange) return { method: 'topk', why: 'every change, exactly (--budget all)' };
  if (o.codec && o.codec !== 'auto') return { method: 'topk', why: `--codec ${o.codec} is a value codec of top-k` };
  return o.calibrate
    ? { method: 'lowbit', why: 'its variant chosen on the --calibrate inputs: the best post-hoc row measured (docs/BENCHMARKS.md: Silero v5 -> v6 at 10%, 97.9% / 98.9% of frames as v6, top-k 29% / 66%)' }
    : { method: 'lowbit', why: 'measured above top-k post hoc on every model in docs/BENCHMARKS.md (a fine-tuned MLP at 5%: 94.2% where top-k keeps v1\'s 70.6%); the payload needs an applier that reads format v6' };
}

/** The size of a change against the weights it changes. */
export interface ChangeSize {
  /** Sum of squared changes (target - base) over the patchable tensors. */
  changeSquared: number;
  /** Sum of squared base weights over the tensors that changed. */
  baseSquared: number;
}

/** Squared size of `target - base` and of the base weights it touches (tensors with no change left out of both). */
export function changeSize(base: WeightStore, target: WeightStore): ChangeSize {
  let changeSquared = 0;
  let baseSquared = 0;
  for (const t of base.list()) {
    if (!isPatchable(t)) continue;
    const a = base.read?.(t.name) ?? base.values(t.name);
    const b = target.read?.(t.name) ?? target.values(t.name);
    let d2 = 0;
    let w2 = 0;
    for (let i = 0; i < a.length; i++) {
      const d = b[i] - a[i];
      d2 += d * d;
      w2 += a[i] * a[i];
    }
    if (d2 > 0) {
      changeSquared += d2;
      baseSquared += w2;
    }
  }
  return { changeSquared, baseSquared };
}

/**
 * A change whose squared size is at least this share of the base weights' it touches is a
 * retrained model, not a fine-tune. Measured: a fine-tuned MLP 0.056; Silero v5 -> v6 1.59.
 */
export const RETRAINED_CHANGE_SHARE = 0.5;
/**
 * The shares of the change's squared size a payload may leave out before the estimate warns, per
 * method: top-k keeps the largest changes, so what it leaves out is the many small ones a fine-tune
 * is made of, and it does worse than lowbit at the same share. Measured (docs/benchmarks/trained-v2.md):
 * - top-k, likely no better than not updating at 45% or more left out (the digits of `npm run demo`:
 *   46.8-68.4% left out kept v1's 66.8%; the MLP of `bench:lowbit`: 61% and more kept its 70.7%),
 *   where 18-32% left out gained 5-6 points (digits 72.1%, MLP 77.0%) and the README quick start's
 *   classifier with 42.9% left out gained 25 (100% from v1's 75%); far from the target at 18%
 *   (digits 72.1% of v2's 93.6%, MLP 77.0% at 32% of its 94.2%), close at 0.8% (93.3%).
 * - lowbit, no better at 95-97% left out (MLP at 1%, digits at 0.5%), where 52.5% left out reached
 *   88.8% from v1's 66.8% (digits at 1%); far at 27-53% (digits 88.8-91.9%, MLP 92.7% at 33%),
 *   close at 8-9% (digits 93.2%, MLP 94.2%).
 */
export const LEFT_OUT_THRESHOLDS: Readonly<Record<'topk' | 'lowbit', { noBetter: number; far: number }>> = {
  topk: { noBetter: 0.45, far: 0.1 },
  lowbit: { noBetter: 0.75, far: 0.2 },
};

/** What the measured cases behind each warning say, per method (the thresholds' sources above). */
const MEASURED = {
  topk: {
    noBetter: "top-k kept v1's accuracy with 47-68% left out on the digits of `npm run demo`, and with 61% and more on a fine-tuned MLP",
    far: "top-k reached 72.1% of v2's 93.6% with 18% left out on the digits, 77.0% of v2's 94.2% with 32% on the MLP",
  },
  lowbit: {
    noBetter: "lowbit kept v1's accuracy with 95-97% left out on the digits of `npm run demo` and a fine-tuned MLP",
    far: "lowbit reached 88.8-91.9% of v2's 93.6% with 27-53% left out on the digits, 92.7% of v2's 94.2% with 33% on the MLP",
  },
} as const;

/** What the weights alone say of a post-hoc payload. */
export interface WeightEstimate {
  /** The change's squared size over the base weights' it touches. */
  changeToBase: number;
  /** The share of the change's squared size the payload leaves out (0: carried exactly). */
  leftOut: number;
  /**
   * `retrained`: a retrained model, where every post-hoc payload without inputs measured worse
   * than not updating; `no-better`: likely no better than not updating; `far`: far from the
   * target; `close`: nothing to warn of.
   */
  verdict: 'retrained' | 'no-better' | 'far' | 'close';
  /** The warning, when the verdict is not `close`. */
  warning?: string;
}

const pct = (x: number) => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;

/**
 * Estimate from the weights alone how a post-hoc payload does, when nothing was measured on
 * inputs: `squaredError` is the squared difference the payload leaves between base + payload and
 * the target. The estimate is coarse (two measured pairs stand behind its thresholds): the warning
 * says so and names what measures it. `lowbitTried`: top-k was written because lowbit left more
 * of the change out (the default's comparison), so the remedy does not send the user to lowbit.
 */
export function estimateFromWeights(size: ChangeSize, squaredError: number, method: 'topk' | 'lowbit', lowbitTried = false): WeightEstimate {
  const changeToBase = size.baseSquared > 0 ? size.changeSquared / size.baseSquared : size.changeSquared > 0 ? Infinity : 0;
  const leftOut = size.changeSquared > 0 ? Math.min(1, Math.max(0, squaredError / size.changeSquared)) : 0;
  const measure = 'add --eval INPUTS (inputs from where the model runs, no labels needed) to measure it';
  const remedy = method === 'topk' && !lowbitTried ? 'Try --method lowbit or a larger budget' : 'Try a larger budget or training (ndiff train --method lowbit --teacher TARGET)';
  if (changeToBase >= RETRAINED_CHANGE_SHARE) {
    return {
      changeToBase, leftOut, verdict: 'retrained',
      warning: `the change is as large as the weights it changes (its squared size ${pct(changeToBase)} of theirs): a retrained model, not a fine-tune. This payload leaves out ${pct(leftOut)} of it; on such a model every post-hoc payload made without inputs measured worse than not updating (Silero VAD v5 -> v6 at 2-10%: 29-90% of frames decided as v6, v5 itself 94-96%, even with 0.8% left out). Add --calibrate INPUTS (lowbit chosen on them: 97.9-98.9% at 10%) or train the diff (ndiff train --method lowbit --teacher TARGET: 99.1-99.5% at 10%), and ${measure}`,
    };
  }
  const limits = LEFT_OUT_THRESHOLDS[method];
  if (leftOut >= limits.noBetter) {
    return {
      changeToBase, leftOut, verdict: 'no-better',
      warning: `this payload leaves out ${pct(leftOut)} of the change (by squared size): likely no better than not updating (${MEASURED[method].noBetter}). ${remedy}, and ${measure}`,
    };
  }
  if (leftOut >= limits.far) {
    return {
      changeToBase, leftOut, verdict: 'far',
      warning: `this payload leaves out ${pct(leftOut)} of the change (by squared size): likely far from the target (${MEASURED[method].far}). ${remedy}, and ${measure}`,
    };
  }
  return { changeToBase, leftOut, verdict: 'close' };
}

/**
 * With `--calibrate` (and no `--eval`), the calibration inputs are all that was measured: a chosen
 * payload whose loss against the target on them is no lower than the unpatched base's takes the
 * model no closer to the target than not updating. The warning, or undefined when it is closer.
 */
export function calibrationWarning(
  chosen: { loss: number; agreement?: number },
  base: { loss: number; agreement?: number },
): string | undefined {
  // A classifier's candidates are chosen by top-1 agreement (a loss need not follow it), so judged by it too.
  if (chosen.agreement !== undefined && base.agreement !== undefined) {
    if (chosen.agreement > base.agreement) return undefined;
    return `on the --calibrate inputs base + payload agrees with --target no more than the unpatched base (top-1 agreement ${(100 * chosen.agreement).toFixed(2)}%, base ${(100 * base.agreement).toFixed(2)}%): not updating is as close. Try a larger budget or train the diff (ndiff train --method lowbit --teacher TARGET), and add --eval INPUTS to measure it`;
  }
  if (!(chosen.loss >= base.loss)) return undefined;
  return `on the --calibrate inputs base + payload is no closer to --target than the unpatched base (loss ${chosen.loss.toPrecision(4)}, base ${base.loss.toPrecision(4)}): not updating is as close. Try a larger budget or train the diff (ndiff train --method lowbit --teacher TARGET), and add --eval INPUTS to measure it`;
}
