/**
 * Post-hoc lowbit against post-hoc top-k on a full fine-tune trained here (test/helpers/finetune.ts:
 * an MLP of 13.2k weights; v1 knows 6 of 8 classes, v2 is v1 trained on all 8). Prints accuracy
 * on 1,000 held-out examples of base + payload at 1, 2, 5 and 10% of the model, each payload
 * applied by the device applier; then BitDelta's post-hoc code (the sign of every delta and one
 * scale per tensor, the mean |delta|, before its distillation) beside lowbit at the same bytes,
 * and Delta-CoMe (src/diff/delta-come.ts: SVD of each matrix's delta, 8/3/2 bits by singular value,
 * its deltas applied as its own storage would give them back) at the same budgets; and top-k's
 * values as 4-bit codes, or 8-bit codes with a scale per output channel. About 3 minutes
 * (the allocations measured on calibration outputs take most of it; `--quick` leaves them out).
 *
 *   npm run bench:lowbit [-- --quick]
 */
import { fineTunePair } from '../test/helpers/finetune.ts';
import { BITDELTA_CODE, describeAllocation, lowbitDiff } from '../src/lowbit-diff/encoder.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { deltaCome, payloadFraming, storeDeltas } from '../src/diff/delta-come.ts';
import { storedModelBytes } from '../src/diff/build.ts';
import { changeSize } from '../src/diff/advice.ts';
import { getHasher } from '../src/core/hasher.ts';
import { applyPayload } from '../src/apply/apply.ts';

const quick = process.argv.includes('--quick');
const { v1, v2, accuracy, distortion, modelDistortion } = await fineTunePair();
const total = storedModelBytes(v1);
const hasher = await getHasher();
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const size = changeSize(v1, v2);
console.log(`model ${total} bytes; v1 ${pct(accuracy(v1))}, v2 ${pct(accuracy(v2))}; the change's squared size is ${size.changeSquared / size.baseSquared < 0.1 ? (size.changeSquared / size.baseSquared).toFixed(3) : (size.changeSquared / size.baseSquared).toFixed(2)} of the changed weights' (a fine-tune; ndiff diff calls 0.5 and above retrained)`);
// "left out": the share of the change's squared size a payload does not carry, what `ndiff diff`
// estimates from when nothing is measured (src/diff/advice.ts holds its thresholds to these rows).
const leftOut = (r: { squaredError: number; changeSquared?: number }) => pct(r.squaredError / (r.changeSquared || 1));
console.log('| budget | top-k bytes | top-k accuracy | top-k left out | lowbit bytes | lowbit accuracy | lowbit left out | lowbit widths |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---|');
for (const share of [0.01, 0.02, 0.05, 0.1]) {
  const budgetBytes = Math.floor(total * share);
  const topk = topkDiff(hasher, v1, v2, { budgetBytes });
  const low = lowbitDiff(hasher, v1, v2, { budgetBytes });
  const [a, b] = [v1.clone(), v1.clone()];
  await applyPayload(a, topk.bytes);
  await applyPayload(b, low.bytes);
  console.log(`| ${share * 100}% (${budgetBytes} B) | ${topk.bytes.length} | ${pct(accuracy(a))} | ${leftOut(topk)} | ${low.bytes.length} | ${pct(accuracy(b))} | ${leftOut(low)} | ${low.allocation.map(describeAllocation).join(', ')} |`);
}

// Top-k's values as codec-l codes: 4 bits, or 8 with a scale per output channel where that pays
// (`ndiff diff --codec l4` / `l8`), beside the codec top-k picks by default (f32, f16 or int8).
console.log('\n| budget | top-k (default codec) | top-k, 4-bit codes | top-k, 8-bit codes a channel |');
console.log('|---:|---:|---:|---:|');
for (const share of [0.01, 0.02, 0.05, 0.1]) {
  const budgetBytes = Math.floor(total * share);
  const cells: string[] = [];
  for (const codec of ['auto', 'l4', 'l8'] as const) {
    const res = topkDiff(hasher, v1, v2, { budgetBytes, codec });
    const m = v1.clone();
    await applyPayload(m, res.bytes);
    cells.push(`${pct(accuracy(m))} (${res.kept} values${codec === 'auto' ? `, ${res.codec}` : ''})`);
  }
  console.log(`| ${share * 100}% (${budgetBytes} B) | ${cells.join(' | ')} |`);
}

// BitDelta's code: 1 bit for every changed weight, one scale per tensor (its post-hoc start; the
// paper then distills the scales on data). Its size is fixed: lowbit gets the same bytes.
const huge = 10 * total;
const bitdelta = lowbitDiff(hasher, v1, v2, { budgetBytes: huge, ...BITDELTA_CODE });
const same = lowbitDiff(hasher, v1, v2, { budgetBytes: bitdelta.bytes.length });
const [c, d] = [v1.clone(), v1.clone()];
await applyPayload(c, bitdelta.bytes);
await applyPayload(d, same.bytes);
console.log(`BitDelta (post hoc, 1 bit, a scale per tensor): ${bitdelta.bytes.length} B (${pct(bitdelta.bytes.length / total)} of the model), ${pct(accuracy(c))}; lowbit at the same bytes: ${same.bytes.length} B, ${pct(accuracy(d))} (${same.allocation.map(describeAllocation).join(', ')})`);

// The same, the bits allocated by each tensor's measured effect on the outputs (400 calibration
// examples, apart from the test set) instead of the weights' squared error.
for (const budgetBytes of quick ? [] : [bitdelta.bytes.length, Math.floor(total * 0.05)]) {
  const cal = lowbitDiff(hasher, v1, v2, { budgetBytes, measure: distortion });
  const e = v1.clone();
  await applyPayload(e, cal.bytes);
  console.log(`lowbit, allocated on calibration outputs, ${budgetBytes} B budget: ${cal.bytes.length} B, ${pct(accuracy(e))} (${cal.allocation.map(describeAllocation).join(', ')})`);
}

// Bought jointly: each upgrade measured on the calibration outputs with every other tensor at its
// current choice.
for (const budgetBytes of quick ? [] : [bitdelta.bytes.length, Math.floor(total * 0.02), Math.floor(total * 0.05), Math.floor(total * 0.1)]) {
  const t0 = performance.now();
  const cal = lowbitDiff(hasher, v1, v2, { budgetBytes, measureModel: modelDistortion });
  const e = v1.clone();
  await applyPayload(e, cal.bytes);
  console.log(`lowbit, weight-space then improved on calibration outputs, ${budgetBytes} B budget: ${cal.bytes.length} B, ${pct(accuracy(e))} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${cal.allocation.map(describeAllocation).join(', ')})`);
}

// Delta-CoMe at the same budgets: its codes in its own storage, framed as a payload frames values
// (our header once, each tensor's name, shape and digests), so both columns count whole updates.
const { deltas, shapes } = storeDeltas(v1, v2);
const framing = payloadFraming(shapes, { method: 'lowrank', modelId: 'mlp', sequence: 1, budgetBytes: total });
console.log('| budget | Delta-CoMe bytes | Delta-CoMe accuracy | lowbit bytes | lowbit accuracy | Delta-CoMe directions |');
console.log('|---:|---:|---:|---:|---:|---|');
for (const [label, budgetBytes] of [[`BitDelta's bytes`, bitdelta.bytes.length], ['2%', Math.floor(total * 0.02)], ['5%', Math.floor(total * 0.05)], ['10%', Math.floor(total * 0.1)]] as const) {
  const come = deltaCome(deltas, shapes, { budgetBytes, framing });
  const e = v1.clone();
  for (const [name, d] of come.deltas) {
    const w = e.values(name);
    for (let i = 0; i < w.length; i++) w[i] += d[i];
  }
  const low = lowbitDiff(hasher, v1, v2, { budgetBytes });
  const f = v1.clone();
  await applyPayload(f, low.bytes);
  console.log(`| ${label} (${budgetBytes} B) | ${come.bytes} | ${pct(accuracy(e))} | ${low.bytes.length} | ${pct(accuracy(f))} | ${come.allocation.join('; ')} |`);
}
