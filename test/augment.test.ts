/**
 * The augmentations of teacher distillation (src/train/augment.ts): each keeps the batch's shape,
 * gives the same batch for the same seed, never changes its input, and does what it says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../src/core/random.ts';
import { UsageError } from '../src/core/errors.ts';
import { AUGMENTATIONS, augmenter, colour, crop, flip, flipImage, freqMask, gain, mixup, mixupDraw, noise, parseAugment, timeMask, timeShift, batchStd, type Augmentation } from '../src/train/augment.ts';

/** A batch of `shape` with distinct, non-zero values. */
function batch(shape: number[], seed = 7): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: shape.reduce((a, d) => a * d, 1) }, () => 1 + r() * 4);
}
const SPECTROGRAM = [5, 20, 8];
const IMAGE = [4, 6, 6, 3];

test('every augmentation keeps the shape, leaves its input alone and is the same for the same seed', () => {
  for (const name of AUGMENTATIONS) {
    const shape = ['crop', 'flip'].includes(name) ? IMAGE : SPECTROGRAM;
    const x = batch(shape);
    const copy = Float32Array.from(x);
    const f = augmenter([name]) as Augmentation;
    const a = f(x, shape, seededRandom(3));
    assert.equal(a.length, x.length, name);
    assert.deepEqual(x, copy, `${name} changed its input`);
    assert.deepEqual(f(x, shape, seededRandom(3)), a, `${name} differs for the same seed`);
    const others = [4, 5, 6].map((s) => f(x, shape, seededRandom(s)));
    assert.ok(others.some((o) => o.some((v, i) => v !== a[i])), `${name} ignores its seed`);
    assert.ok(a.some((v, i) => v !== x[i]) || others.some((o) => o.some((v, i) => v !== x[i])), `${name} changes nothing`);
  }
});

test('gain adds one offset per example, at most 0.2 standard deviations of the batch', () => {
  const x = batch(SPECTROGRAM);
  const out = gain(x, SPECTROGRAM, seededRandom(1));
  const size = 20 * 8;
  const bound = 0.2 * batchStd(x) + 1e-5;
  for (let e = 0; e < 5; e++) {
    const d = out[e * size] - x[e * size];
    assert.ok(Math.abs(d) <= bound, `offset ${d} beyond ${bound}`);
    for (let i = e * size; i < (e + 1) * size; i++) assert.ok(Math.abs(out[i] - x[i] - d) < 1e-5, 'the same offset over the example');
  }
});

test('time masking zeroes whole frames of one band, frequency masking whole bins of one band, and nothing else', () => {
  const x = batch(SPECTROGRAM);
  const [frames, bins] = [20, 8];
  for (const [f, axis] of [[timeMask, 0], [freqMask, 1]] as const) {
    let masked = 0;
    for (const seed of [1, 2, 3, 4]) {
      const out = f(x, SPECTROGRAM, seededRandom(seed));
      for (let e = 0; e < 5; e++) {
        const zero = new Set<number>();
        for (let t = 0; t < frames; t++) {
          for (let k = 0; k < bins; k++) {
            const i = e * frames * bins + t * bins + k;
            if (out[i] === 0) zero.add(axis === 0 ? t : k);
            else assert.equal(out[i], x[i], 'a value outside the band changed');
          }
        }
        const band = [...zero].sort((a, b) => a - b);
        const len = axis === 0 ? frames : bins;
        assert.ok(band.length <= Math.floor(len * 0.15), `band of ${band.length}`);
        if (band.length) assert.equal(band[band.length - 1] - band[0] + 1, band.length, 'one contiguous band');
        for (const p of band) {
          for (let q = 0; q < (axis === 0 ? bins : frames); q++) {
            const [t, k] = axis === 0 ? [p, q] : [q, p];
            assert.equal(out[e * frames * bins + t * bins + k], 0, 'the whole band is zero');
          }
        }
        masked += band.length;
      }
    }
    assert.ok(masked > 0, 'some band is masked');
  }
});

test('a time shift moves every frame by the same count, the frames shifted in at the example\'s lowest value', () => {
  const shape = [1, 20, 3];
  const x = batch(shape);
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const out = timeShift(x, shape, seededRandom(seed));
    const min = Math.min(...x);
    const k = [-2, -1, 0, 1, 2].find((s) => Array.from({ length: 20 }, (_, t) => t).every((t) => t - s < 0 || t - s >= 20 || [0, 1, 2].every((j) => out[t * 3 + j] === x[(t - s) * 3 + j])));
    assert.ok(k !== undefined, 'a shift of at most two frames (a tenth of 20)');
    for (let t = 0; t < 20; t++) if (t - k < 0 || t - k >= 20) assert.deepEqual([...out.subarray(t * 3, t * 3 + 3)], [min, min, min]);
  }
});

test('a flip twice is the identity; a flip mirrors each row; crop moves the image with zeros shifted in', () => {
  const [h, w, c] = [6, 6, 3];
  const x = batch([1, h, w, c]);
  const once = new Float32Array(x.length);
  flipImage(x, 0, h, w, c, once);
  const twice = new Float32Array(x.length);
  flipImage(once, 0, h, w, c, twice);
  assert.deepEqual(twice, x);
  assert.deepEqual([...once.subarray(0, c)], [...x.subarray((w - 1) * c, w * c)], 'the first pixel of a row is the last one');
  const flipped = flip(batch(IMAGE), IMAGE, seededRandom(2));
  assert.equal(flipped.length, x.length * 4);
  const cropped = crop(x, [1, h, w, c], seededRandom(9));
  // The same multiset of values, less those moved out, plus zeros: every non-zero came from x.
  const values = new Set(x);
  for (const v of cropped) assert.ok(v === 0 || values.has(v));
});

test('colour scales each image about its mean and moves it: a linear map of each example', () => {
  const x = batch(IMAGE);
  const out = colour(x, IMAGE, seededRandom(4));
  const size = 6 * 6 * 3;
  for (let e = 0; e < 4; e++) {
    const a = (out[e * size + 1] - out[e * size]) / (x[e * size + 1] - x[e * size]);
    assert.ok(a >= 0.8 - 1e-4 && a <= 1.2 + 1e-4, `contrast ${a}`);
    const b = out[e * size] - a * x[e * size];
    for (let i = e * size; i < (e + 1) * size; i++) assert.ok(Math.abs(out[i] - (a * x[i] + b)) < 1e-4);
  }
});

test('mixup is the convex combination of each example and its partner with the drawn weight', () => {
  const x = batch(SPECTROGRAM);
  const { weight, partner } = mixupDraw(5, seededRandom(8));
  const out = mixup(x, SPECTROGRAM, seededRandom(8));
  const size = 20 * 8;
  for (let e = 0; e < 5; e++) {
    assert.ok(weight[e] >= 0 && weight[e] < 1);
    for (let i = 0; i < size; i++) assert.ok(Math.abs(out[e * size + i] - (weight[e] * x[e * size + i] + (1 - weight[e]) * x[partner[e] * size + i])) < 1e-5);
  }
});

test('noise is small: about 0.05 standard deviations of the batch, centred', () => {
  const x = batch([50, 20, 8]);
  const out = noise(x, [50, 20, 8], seededRandom(5));
  let sum = 0;
  let sq = 0;
  for (let i = 0; i < x.length; i++) {
    sum += out[i] - x[i];
    sq += (out[i] - x[i]) ** 2;
  }
  const sd = Math.sqrt(sq / x.length);
  const want = 0.05 * batchStd(x);
  assert.ok(Math.abs(sd - want) < 0.1 * want, `noise sd ${sd}, expected ${want}`);
  assert.ok(Math.abs(sum / x.length) < 0.1 * want);
});

test('--augment reads none or a list, and refuses a name it does not know or one that does not fit the input', () => {
  assert.deepEqual(parseAugment('none', [20, 8]), []);
  assert.deepEqual(parseAugment('gain, time-mask,mixup', [20, 8, 1]), ['gain', 'time-mask', 'mixup']);
  assert.deepEqual(parseAugment(['crop', 'flip,colour'], [32, 32, 3]), ['crop', 'flip', 'colour']);
  assert.throws(() => parseAugment('rotate', [20, 8]), (e: unknown) => e instanceof UsageError && /unknown augmentation "rotate"/.test(e.message));
  assert.throws(() => parseAugment('crop', [64]), (e: unknown) => e instanceof UsageError && /crop needs an image/.test(e.message));
  assert.throws(() => parseAugment('time-mask', [64]), (e: unknown) => e instanceof UsageError && /spectrogram/.test(e.message));
  assert.deepEqual(parseAugment('mixup,noise', [64]), ['mixup', 'noise'], 'mixup and noise fit any input');
});
