/**
 * Whether the base model does the task at all (the gate of the distillation term that keeps its
 * outputs): agreement with the labels beyond chance.
 */

/**
 * How much better than chance the base does the task, for the distillation gate: below this
 * Cohen's kappa (0.2: "slight" agreement at most, Landis & Koch 1977) it has nothing to keep.
 */
export const DISTILL_MIN_KAPPA = 0.2;

/**
 * Cohen's kappa of `predicted` against `labels` over the examples whose label the model predicts
 * for at least one example (a class it never answers, e.g. one new in this update, is left out;
 * choosing the classes by what it predicts, not by where it is right, keeps a random model at 0
 * however many classes there are): 1 for perfect agreement, 0 for chance (the agreement expected
 * from how often each label occurs and how often each is predicted), below 0 for worse. Unlike
 * accuracy against the most common label's share it works for two classes and unbalanced labels.
 */
export function agreementBeyondChance(labels: Int32Array, predicted: Int32Array): { kappa: number; examples: number } {
  const known = new Set<number>();
  for (const c of predicted) known.add(c);
  const trueCount = new Map<number, number>();
  const predCount = new Map<number, number>();
  let n = 0;
  let agree = 0;
  for (let i = 0; i < labels.length; i++) {
    if (!known.has(labels[i])) continue;
    n++;
    if (predicted[i] === labels[i]) agree++;
    trueCount.set(labels[i], (trueCount.get(labels[i]) ?? 0) + 1);
    predCount.set(predicted[i], (predCount.get(predicted[i]) ?? 0) + 1);
  }
  if (n === 0) return { kappa: 0, examples: 0 };
  let chance = 0;
  for (const [c, k] of trueCount) chance += (k / n) * ((predCount.get(c) ?? 0) / n);
  const observed = agree / n;
  // One class that the model always predicts: no evidence beyond chance. (So a base whose
  // replayed data holds a single old class never distills; and one stray answer of a class new in
  // the update counts all of that class's examples against the base. Bases trained with a softmax
  // do not answer classes they never saw, so neither happens in the benchmarks.)
  return { kappa: chance >= 1 ? 0 : (observed - chance) / (1 - chance), examples: n };
}

/** Share of the most frequent label. */
export function majority(y: Int32Array): number {
  const counts = new Map<number, number>();
  for (const v of y) counts.set(v, (counts.get(v) ?? 0) + 1);
  return Math.max(0, ...counts.values()) / Math.max(1, y.length);
}
