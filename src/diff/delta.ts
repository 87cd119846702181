/**
 * A model's change as the post-hoc encoders take it: `target - base` per weight, and the squared
 * error a payload leaves against it on the device.
 */
import { isPatchable, type WeightStore } from '../core/weight-store.ts';
import type { BuiltPayload } from './build.ts';
import { checkSameInterface } from './interface.ts';

/**
 * `target - base` for every weight (float32 arithmetic, as the applier adds it back), after
 * checking that the two models share their interface (`checkSameInterface`: names, shapes,
 * dtypes, frame). Read-only parts are not diffed.
 * @throws ModelMismatchError naming what was added, removed, reshaped or retyped
 */
export function modelDelta(base: WeightStore, target: WeightStore): Map<string, Float32Array> {
  checkSameInterface(base, target);
  const out = new Map<string, Float32Array>();
  for (const t of base.list()) {
    if (!isPatchable(t)) continue;
    const a = base.read?.(t.name) ?? base.values(t.name);
    const b = target.read?.(t.name) ?? target.values(t.name);
    const d = new Float32Array(a.length);
    for (let i = 0; i < a.length; i++) d[i] = b[i] - a[i];
    out.set(t.name, d);
  }
  return out;
}

/** Sum of squared differences between base + delta and what the payload leaves on the device. */
export function squaredError(deltas: ReadonlyMap<string, Float32Array>, base: WeightStore, built: BuiltPayload): number {
  let err = 0;
  for (const [name, d] of deltas) {
    const w0 = base.values(name);
    const w1 = built.targetValues.get(name);
    for (let i = 0; i < d.length; i++) {
      const target = w0[i] + d[i];
      const got = w1 ? w1[i] : w0[i];
      err += (target - got) ** 2;
    }
  }
  return err;
}
