/**
 * Voice-like augmentations of spectrograms (src/train/augment.ts): `freq-warp` (VTLP, a warp of the
 * frequency axis) and `time-stretch` (a speaking rate on the frames).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../src/core/random.ts';
import { UsageError } from '../src/core/errors.ts';
import { augmenter, freqWarp, parseAugment, stretchFrames, timeStretch, warpBins, warpPosition } from '../src/train/augment.ts';

function batch(shape: number[], seed = 7): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: shape.reduce((a, d) => a * d, 1) }, () => 1 + r() * 4);
}
const at = (shape: number[], ...i: number[]) => i.reduce((a, v, d) => a * shape[d] + v, 0);

test('freq-warp and time-stretch keep the shape, leave the input alone, follow the seed, for [frames, bins] and [frames, bins, channels]', () => {
  for (const shape of [[4, 12, 10], [4, 12, 10, 2]]) {
    const x = batch(shape);
    const copy = Float32Array.from(x);
    for (const f of [freqWarp, timeStretch, augmenter(['freq-warp', 'time-stretch'])!]) {
      const a = f(x, shape, seededRandom(3));
      assert.equal(a.length, x.length);
      assert.deepEqual(x, copy);
      assert.deepEqual(f(x, shape, seededRandom(3)), a, 'the same seed, the same batch');
      assert.ok(f(x, shape, seededRandom(4)).some((v, i) => v !== a[i]), 'another seed, another batch');
      assert.ok(a.some((v, i) => v !== x[i]), 'it changes the batch');
      assert.ok(a.every(Number.isFinite));
    }
  }
});

test('a factor of 1 is the identity: a draw of 1/2 gives alpha 1 and rate 1', () => {
  for (const shape of [[3, 9, 7], [3, 9, 7, 2]]) {
    const x = batch(shape);
    assert.deepEqual(warpBins(x, shape, [1, 1, 1]), x);
    assert.deepEqual(stretchFrames(x, shape, [1, 1, 1]), x);
    assert.deepEqual(freqWarp(x, shape, () => 0.5), x);
    assert.deepEqual(timeStretch(x, shape, () => 0.5), x);
  }
});

test('the warp is piecewise linear and increasing, keeps bin 0 and the top bin, reads inside the axis, and bends at 80% of it', () => {
  const bins = 41;
  for (const alpha of [0.9, 0.95, 1.05, 1.1]) {
    assert.equal(warpPosition(0, bins, alpha), 0);
    assert.ok(Math.abs(warpPosition(bins - 1, bins, alpha) - (bins - 1)) < 1e-9, `top bin at alpha ${alpha}`);
    for (let k = 1; k < bins; k++) {
      const s = warpPosition(k, bins, alpha);
      assert.ok(s > warpPosition(k - 1, bins, alpha), 'increasing');
      assert.ok(s >= 0 && s <= bins - 1, 'inside the axis');
    }
    // Below the bend the axis scales by alpha.
    const bend = (0.8 * (bins - 1) * Math.min(alpha, 1)) / alpha;
    for (let k = 0; k <= bend; k++) assert.ok(Math.abs(warpPosition(k, bins, alpha) - alpha * k) < 1e-9);
  }
  assert.equal(warpPosition(10, bins, 1.1), 11);
  assert.ok(Math.abs(warpPosition(10, bins, 0.9) - 9) < 1e-9);
});

test('warping a ramp along the bins gives the warp itself: increasing, the ends kept, every frame and channel alike', () => {
  const shape = [2, 3, 20, 2];
  const x = new Float32Array(2 * 3 * 20 * 2);
  for (let e = 0; e < 2; e++) for (let t = 0; t < 3; t++) for (let k = 0; k < 20; k++) for (let c = 0; c < 2; c++) x[at(shape, e, t, k, c)] = k * (c + 1);
  const out = warpBins(x, shape, [1.1, 0.9]);
  for (let e = 0; e < 2; e++) {
    const alpha = [1.1, 0.9][e];
    for (let t = 0; t < 3; t++) {
      for (let c = 0; c < 2; c++) {
        for (let k = 0; k < 20; k++) {
          assert.ok(Math.abs(out[at(shape, e, t, k, c)] - warpPosition(k, 20, alpha) * (c + 1)) < 1e-4);
          if (k > 0) assert.ok(out[at(shape, e, t, k, c)] > out[at(shape, e, t, k - 1, c)], 'a ramp stays increasing');
        }
        assert.equal(out[at(shape, e, t, 0, c)], 0);
        assert.ok(Math.abs(out[at(shape, e, t, 19, c)] - 19 * (c + 1)) < 1e-4, 'the top bin stays');
      }
    }
  }
  // alpha above 1 reads higher bins (the spectrum moves down), below 1 lower ones.
  assert.ok(out[at(shape, 0, 0, 10, 0)] > 10 && out[at(shape, 1, 0, 10, 0)] < 10);
});

test('a time stretch about the centre frame: a ramp along time stays a ramp, faster speech pads both ends with the example\'s lowest value', () => {
  const frames = 21;
  const shape = [2, frames, 3];
  const x = new Float32Array(2 * frames * 3);
  for (let e = 0; e < 2; e++) for (let t = 0; t < frames; t++) for (let k = 0; k < 3; k++) x[at(shape, e, t, k)] = 5 + t + k;
  const out = stretchFrames(x, shape, [1.15, 0.85]);
  const centre = (frames - 1) / 2;
  for (let k = 0; k < 3; k++) {
    // Both examples keep the centre frame.
    assert.ok(Math.abs(out[at(shape, 0, centre, k)] - x[at(shape, 0, centre, k)]) < 1e-5);
    assert.ok(Math.abs(out[at(shape, 1, centre, k)] - x[at(shape, 1, centre, k)]) < 1e-5);
    for (let t = 0; t < frames; t++) {
      const fast = centre + (t - centre) * 1.15;
      const want = fast < 0 || fast > frames - 1 ? 5 : 5 + fast + k;
      assert.ok(Math.abs(out[at(shape, 0, t, k)] - want) < 1e-4, `rate 1.15, frame ${t}`);
      assert.ok(Math.abs(out[at(shape, 1, t, k)] - (5 + centre + (t - centre) * 0.85 + k)) < 1e-4, `rate 0.85, frame ${t}`);
    }
  }
  assert.equal(out[at(shape, 0, 0, 1)], 5, 'the first frame is padding at rate 1.15');
  assert.equal(out[at(shape, 0, frames - 1, 1)], 5, 'so is the last');
});

test('the drawn factors stay in range: alpha in [0.9, 1.1], rate in [0.85, 1.15]', () => {
  const bins = 30;
  const shape = [1, 2, bins];
  const ramp = Float32Array.from({ length: 2 * bins }, (_, i) => i % bins);
  for (const r of [0, 1e-9, 0.25, 0.999999]) {
    const w = freqWarp(ramp, shape, () => r);
    const alpha = w[1];
    assert.ok(alpha >= 0.9 - 1e-6 && alpha <= 1.1 + 1e-6, `alpha ${alpha}`);
  }
  const frames = 41;
  const timeRamp = Float32Array.from({ length: frames }, (_, t) => 100 + t);
  for (const r of [0, 0.999999]) {
    const s = timeStretch(timeRamp, [1, frames, 1], () => r);
    const rate = s[21] - s[20];
    assert.ok(Math.abs(rate - (r < 0.5 ? 0.85 : 1.15)) < 1e-4, `rate ${rate}`);
  }
});

test('--augment takes freq-warp and time-stretch for spectrograms and refuses them for other inputs by the same typed error', () => {
  assert.deepEqual(parseAugment('freq-warp,time-stretch,mixup', [98, 40, 1]), ['freq-warp', 'time-stretch', 'mixup']);
  assert.deepEqual(parseAugment(['time-stretch'], [98, 40]), ['time-stretch']);
  for (const name of ['freq-warp', 'time-stretch']) {
    for (const example of [[64], [16000, 1]]) {
      assert.throws(
        () => parseAugment(name, example),
        (e: unknown) => e instanceof UsageError && e.message === `augmentation ${name} needs audio features or a spectrogram, [frames, bins] or [frames, bins, channels]; this model's input is [${example.join(', ')}] per example: leave ${name} out (mixup and noise fit any input)`,
      );
    }
  }
});

test('silence at -Infinity (log-mel of zeros) and a stray NaN: no augmentation makes a NaN from finite or -Infinity values, amounts follow the finite values, a NaN stays where it was', async () => {
  const { batchStd, gain, noise, timeShift, mixup, mixupDraw } = await import('../src/train/augment.ts');
  const shape = [3, 10, 6];
  const x = batch(shape, 5);
  // A silent frame in every example, and a silent bin here and there.
  for (let e = 0; e < 3; e++) for (let b = 0; b < 6; b++) x[at(shape, e, 2 + e, b)] = -Infinity;
  x[at(shape, 1, 7, 3)] = -Infinity;
  const finite = x.filter(Number.isFinite);
  const mean = finite.reduce((a, v) => a + v, 0) / finite.length;
  const std = Math.sqrt(finite.reduce((a, v) => a + (v - mean) ** 2, 0) / finite.length);
  assert.ok(Math.abs(batchStd(x) - std) <= 1e-9 * std, `the spread of the finite values (${std}), found ${batchStd(x)}`);
  // Noise of 0.05 of that spread on the finite values; -Infinity stays -Infinity.
  const n = noise(x, shape, seededRandom(2));
  let sq = 0;
  x.forEach((v, i) => {
    if (v === -Infinity) assert.equal(n[i], -Infinity);
    else sq += (n[i] - v) ** 2;
  });
  const sigma = Math.sqrt(sq / finite.length);
  assert.ok(sigma > 0.04 * std && sigma < 0.06 * std, `noise of ${sigma}, 0.05 of the finite values' ${std}`);
  // Every augmentation of spectrograms, and mixup with a draw of exactly 0: no NaN.
  for (const [name, f] of [['gain', gain], ['noise', noise], ['time-shift', timeShift], ['freq-warp', freqWarp], ['time-stretch', timeStretch]] as const) {
    for (let seed = 1; seed <= 5; seed++) assert.ok(!f(x, shape, seededRandom(seed)).some(Number.isNaN), `${name}, seed ${seed}`);
  }
  assert.ok(!stretchFrames(x, shape, [1.15, 0.85, 1.1]).some(Number.isNaN));
  assert.ok(!warpBins(x, shape, [1.1, 0.9, 0.93]).some(Number.isNaN));
  assert.ok(!mixup(x, shape, () => 0).some(Number.isNaN), 'a weight of 0 takes the partner as it is (no 0 x -Infinity)');
  // A draw just under 1 is 1 once stored as float32: the example as it is (its partner's -Infinity times 0 was NaN).
  const nearOne = 1 - 2 ** -30;
  assert.equal(mixupDraw(1, () => nearOne).weight[0], 1, 'the float32 weight rounds to 1');
  assert.deepEqual(mixup(x, shape, () => nearOne), x, 'a weight of 1 takes the example as it is');
  // Frames stretched in beyond the ends are the example's lowest value: -Infinity here.
  const s = stretchFrames(x, shape, [1.15, 1.15, 1.15]);
  assert.equal(s[at(shape, 0, 0, 0)], -Infinity);
  // A NaN in one example: frames shifted or stretched in are its lowest number, not NaN.
  const y = batch(shape, 9);
  y[at(shape, 0, 5, 2)] = Number.NaN;
  const lowest = Math.min(...y.subarray(0, 60).filter((v) => !Number.isNaN(v)));
  const t = stretchFrames(y, shape, [1.15, 1, 1]);
  assert.equal(t[at(shape, 0, 0, 0)], lowest, 'the lowest number of the example');
  assert.ok(t.filter(Number.isNaN).length <= 2, `the NaN reaches the frames read next to it only, found ${t.filter(Number.isNaN).length}`);
  const u = timeShift(y, shape, () => 0);
  assert.ok(u.filter(Number.isNaN).length <= 1, 'time-shift moves the NaN, no more');
});

test('colour on an image holding -Infinity: the mean is its finite values\', so the other pixels stay numbers and the -Infinity stays', async () => {
  const { colour } = await import('../src/train/augment.ts');
  const shape = [2, 4, 4, 3];
  const x = batch(shape, 6);
  x[at(shape, 0, 1, 2, 0)] = -Infinity;
  const y = colour(x, shape, seededRandom(8));
  assert.equal(y[at(shape, 0, 1, 2, 0)], -Infinity);
  assert.ok(y.every((v, i) => i === at(shape, 0, 1, 2, 0) || Number.isFinite(v)), 'every other value finite');
});
