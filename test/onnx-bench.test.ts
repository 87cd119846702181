/**
 * `npm run bench:onnx -- --quick` in the suite: the real Silero VAD and wake-word updates, run
 * with onnxruntime-web on a few seconds of speech. Needs espeak-ng, sox, zstd, bsdiff and the
 * Debian recordings; installs them as root (as CI does), else skips with the reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchmarkSkip } from './helpers/benchmarks.ts';
import { ensurePackages, runOnnxBench } from '../bench/onnx.ts';

let skip: string | false = benchmarkSkip;
if (!skip) {
  try {
    ensurePackages([{ pkg: 'zstd', bin: 'zstd' }, { pkg: 'bsdiff', bin: 'bsdiff' }, { pkg: 'espeak-ng', bin: 'espeak-ng' }, { pkg: 'sox', bin: 'sox' }, { pkg: 'ktuberling-data' }, { pkg: 'klettres-data' }], () => {});
  } catch (e) {
    skip = (e as Error).message;
  }
}

test('bench:onnx --quick: every-change payloads rebuild the new models bit for bit, budgets give payloads within them, the shape change is refused', { skip, timeout: 300_000 }, async (t) => {
  const r = await runOnnxBench({ quick: true, log: () => {} });
  for (const p of [r.vad, r.wake]) {
    const all = p.rows[0];
    assert.equal(all.budget, 'every change');
    // Every change is shipped bit for bit (codecs x and xr), so the patched weights are the new model's.
    assert.equal(p.exactValues, p.totalValues, `${p.exactValues} of ${p.totalValues} exact`);
    assert.equal(p.maxAbsError, 0);
    for (const a of Object.values(all.audio)) {
      assert.ok(a.frames > 100, `${a.frames} frames`);
      assert.ok(a.agreement >= 0.99 && a.meanAbsDiff < 1e-4, JSON.stringify(a));
    }
    for (const row of p.rows.filter((x) => /%$/.test(x.budget))) assert.ok(row.payloadBytes <= (row.budgetBytes as number), `${row.budget}: ${row.payloadBytes} bytes`);
    assert.ok(typeof p.zstdBytes === 'number' && typeof p.bsdiffBytes === 'number');
    // Range-coded exact bits (codec xr, format v3): smaller than codec x alone and no larger than
    // zstd -19 --long --patch-from of the two files (issue #13's target; sizes are deterministic).
    assert.equal(p.exactCodec, 'xr');
    assert.ok(all.payloadBytes < p.xOnlyBytes, `xr ${all.payloadBytes} < x ${p.xOnlyBytes}`);
    assert.ok(all.payloadBytes <= p.zstdBytes, `${all.payloadBytes} <= zstd ${p.zstdBytes}`);
    t.diagnostic(`${p.pair}: every change ${all.payloadBytes} bytes, zstd --patch-from ${p.zstdBytes}, bsdiff ${p.bsdiffBytes}`);
  }
  // v6 says speech on some frames and not on others: the decisions compared are not all one kind.
  const s = r.vad.rows[0].audio.synthetic;
  assert.ok(s.speechFrames > 0.1 * s.frames && s.speechFrames < 0.9 * s.frames, JSON.stringify(s));
  assert.match(r.wakeShapeChange.diff, /^ND_MODEL_MISMATCH: .*\[32, 2304\].*\[32, 2400\]/);
  assert.match(r.wakeShapeChange.apply, /^ND_MODEL_MISMATCH: .*fetch the full model/);
});
