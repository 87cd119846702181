/**
 * Budget competition: smaller payloads of the same update compete with a run's own result, and
 * a larger one is kept only when it is significantly better on validation (see
 * `TrainDiffOptions.alsoConsider`).
 */
import { decodePayload } from '../core/format.ts';
import { MemoryWeightStore, readForDigest, type MemoryTensor, type WeightStore } from '../core/weight-store.ts';
import { applyPayload } from '../apply/apply.ts';
import { better, type Checkpoint } from './checkpoint.ts';
import type { CompetingResult, TrainDiffResult } from './options.ts';

/**
 * Whether a model right on `a` (1 per validation example it gets right) is right on
 * significantly more examples than one right on `b`: by more than one standard error of the
 * paired difference. With n_a the examples only `a` gets right and n_b those only `b` gets
 * right, that is n_a - n_b > sqrt(n_a + n_b) (McNemar's statistic above 1; the one-standard-error
 * rule of model selection, applied to paired outcomes). Equal arrays are never significantly better.
 *
 * Per-example scores that are not 0/1 (closeness to a teacher) are compared the same way: with
 * d_i = a_i - b_i, sum(d) > sqrt(sum(d²)), which for 0/1 outcomes is exactly the rule above.
 */
export function significantlyBetter(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) throw new RangeError(`compared over ${a.length} and ${b.length} examples: both must be judged on the same validation data`);
  let sum = 0;
  let squares = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    sum += d;
    squares += d * d;
  }
  return sum > Math.sqrt(squares);
}

/**
 * A payload file as a competitor of a training on `base` (`ndiff train --also-consider`): applied
 * to a copy of the base by the device applier, so its target values are exactly a device's.
 * Throws the applier's typed error when it does not apply to `base` (another base, corrupt).
 */
export async function competingPayload(base: WeightStore, bytes: Uint8Array, label: string): Promise<CompetingResult> {
  const payload = decodePayload(bytes);
  const touched = new Set(payload.patches.map((p) => p.name));
  // Read-only parts (a model's frame) are copied by value: the copy has the base's fingerprint.
  const copy = new MemoryWeightStore(base.list().map((t) => [t.name, t.patchable === false
    ? { shape: [...t.shape], data: readForDigest(base, t.name).slice(), patchable: false }
    : { shape: [...t.shape], data: touched.has(t.name) ? base.values(t.name).slice() : base.values(t.name) }] as [string, MemoryTensor]));
  // The copy keeps the base's storage grids, so a payload on another grid is refused as on a device.
  if (base.grid) (copy as WeightStore).grid = (name: string) => base.grid?.(name);
  await applyPayload(copy, bytes);
  return { bytes, payload, targetValues: new Map([...touched].map((n) => [n, copy.values(n)])), label };
}

/**
 * Choose among a run's own checkpoint and competing payloads (see
 * `TrainDiffOptions.alsoConsider`). `checkpointOf` evaluates a competitor on validation. Returns
 * the chosen checkpoint and what competed (undefined when nothing did).
 */
export function compete(
  own: Checkpoint,
  others: readonly CompetingResult[],
  budgetBytes: number,
  checkpointOf: (c: CompetingResult, label: string) => Checkpoint,
  progress: (m: string) => void,
): { chosen: Checkpoint; selection?: TrainDiffResult['selection'] } {
  const competing: Checkpoint[] = [own];
  for (const other of others) {
    const label = other.label ?? `the ${other.method} result at ${other.budgetBytes} bytes`;
    if (other.payload.header.baseFingerprint !== own.built.payload.header.baseFingerprint) {
      progress(`${label} is for another base: passed over`);
      continue;
    }
    if (other.bytes.length > Math.max(budgetBytes, own.built.bytes.length)) {
      progress(`${label} is larger than this budget (${other.bytes.length} bytes): passed over`);
      continue;
    }
    competing.push(checkpointOf(other, label));
  }
  if (competing.length < 2) return { chosen: own };
  // From the fewest bytes up, each larger payload must beat the one kept so far.
  const bySize = competing.map((c, i) => ({ c, i })).sort((a, b) => a.c.built.bytes.length - b.c.built.bytes.length || a.i - b.i).map(({ c }) => c);
  let kept = bySize[0];
  for (const c of bySize.slice(1)) {
    const sameSize = c.built.bytes.length === kept.built.bytes.length;
    const oneClassDiffers = kept.collapsed !== c.collapsed;
    const takes = oneClassDiffers ? !c.collapsed : sameSize ? better(c, kept) : significantlyBetter(c.perExample, kept.perExample);
    const verdict = oneClassDiffers
      ? takes ? 'kept (the other predicts one class)' : 'predicts one class, passed over'
      : sameSize ? (takes ? 'better, kept' : 'not better, the first stays') : takes ? 'significantly better, kept' : 'not significantly better, the smaller stays';
    progress(`${c.label} (${c.built.bytes.length} bytes, validation ${c.scoreText}) vs ${kept.label} (${kept.built.bytes.length} bytes, ${kept.scoreText}): ${verdict}`);
    if (takes) kept = c;
  }
  // With a teacher the score is closeness to it, not the accuracy: say it beside the accuracy.
  const teacherScored = competing.some((c) => c.score !== c.valAccuracy);
  return {
    chosen: kept,
    selection: {
      considered: competing.map((c) => ({ label: c.label, bytes: c.built.bytes.length, valAccuracy: c.valAccuracy, ...(teacherScored ? { score: c.score } : {}), chosen: c === kept })),
      ...(kept !== own ? { own: { bytes: own.built.bytes, payload: own.built.payload, targetValues: own.built.targetValues, valAccuracy: own.valAccuracy } } : {}),
    },
  };
}

export function pct(x: number): string {
  return `${(100 * x).toFixed(2)}%`;
}
