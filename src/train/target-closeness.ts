/**
 * How close a payload takes the base to a target model on data: the outputs of base + payload
 * (the weights a device gets, applied by the device applier) against the target's, beside the
 * unpatched base's. This is what `ndiff diff --eval` reports for a post-hoc diff: a payload that
 * takes devices further from the new version than not updating at all is worse than no update.
 */
import * as tf from '@tensorflow/tfjs';
import type { WeightStore } from '../core/weight-store.ts';
import type { PayloadCloseness } from '../diff/closeness.ts';
import { competingPayload } from './compete.ts';
import type { InputData } from './data.ts';
import { setModelWeights } from '../engine/model-weights.ts';
import { closeness, closenessScore, defaultTeacherLoss, metricFor, outputLayout, outputRows, withLabelledClasses, type TeacherMetric } from './teacher.ts';
import { ForwardPlans, forwardSwitch } from '../engine/compiled/forward.ts';

export type { PayloadCloseness } from '../diff/closeness.ts';

/**
 * Measure `payload` (made for `baseStore`, the weights `model` is built from) against `target`
 * on `inputs`. The model is left holding the base's weights. Throws a UsageError when the target
 * does not share the base's inputs and outputs, and the applier's error when the payload does not
 * apply to the base.
 */
export async function payloadCloseness(model: tf.LayersModel, target: tf.LayersModel, baseStore: WeightStore, payload: Uint8Array, inputs: InputData, batchSize = 256): Promise<PayloadCloseness> {
  const measured = outputLayout(model, target);
  const labelled = inputs.y !== undefined;
  const loss = defaultTeacherLoss(measured.segments);
  // Judged as a teacher diff is: agreement for classifiers (labels say an output is one), closeness otherwise.
  const layout = { ...measured, segments: withLabelledClasses(measured.segments, labelled) };
  const metric: TeacherMetric = metricFor(layout.segments);
  const measure = { ...layout, loss, temperature: 1 };
  const { targetValues } = await competingPayload(baseStore, payload, 'the payload');
  const restore = () => setModelWeights(model, (n) => (baseStore.list().some((t) => t.name === n) ? baseStore.values(n) : undefined));
  restore();
  const targetRows = outputRows(target, inputs.x, layout.width, batchSize);
  // The model's two passes (base, then patched) over the same batches: a compiled forward plan
  // replays from the second full batch on when there are two or more (one batch would only pay
  // for the capture).
  const forward = forwardSwitch.compiled && inputs.x.shape[0] >= 2 * batchSize ? new ForwardPlans('closeness', () => {}) : undefined;
  let before, after;
  try {
    before = closeness(outputRows(model, inputs.x, layout.width, batchSize, forward), targetRows, measure, metric);
    setModelWeights(model, targetValues);
    after = closeness(outputRows(model, inputs.x, layout.width, batchSize, forward), targetRows, measure, metric);
  } finally {
    forward?.dispose();
    restore();
  }
  const accuracy = (predictions: Int32Array) => {
    const y = inputs.y as Int32Array;
    let right = 0;
    for (let i = 0; i < y.length; i++) if (predictions[i] === y[i]) right++;
    return right / Math.max(1, y.length);
  };
  return {
    examples: inputs.x.shape[0],
    metric,
    base: { agreement: before.agreement, meanAbsDiff: before.meanAbsDiff },
    patched: { agreement: after.agreement, meanAbsDiff: after.meanAbsDiff },
    movesAway: closenessScore(after, metric) < closenessScore(before, metric),
    ...(labelled ? { accuracyBefore: accuracy(before.predictions), accuracyAfter: accuracy(after.predictions), accuracyTarget: accuracy(closeness(targetRows, targetRows, measure, metric).predictions) } : {}),
  };
}
