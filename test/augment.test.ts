/**
 * The augmentations of teacher distillation (src/train/augment.ts): each keeps the batch's shape,
 * gives the same batch for the same seed, never changes its input, and does what it says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../src/core/random.ts';
import { UsageError } from '../src/core/errors.ts';
import { AUGMENTATIONS, augmenter, colour, crop, flip, flipImage, freqMask, gain, mixup, mixupDraw, noise, parseAugment, parseSequenceAugment, pitch, speed, timeMask, timeShift, batchStd, waveAugmenter, waveGain, waveNoise, type Augmentation } from '../src/train/augment.ts';
import { pitchShift, resample } from '../src/train/resample.ts';
import { cutFrames, frameOverlap, sequenceWave } from '../src/engine/program/sequence-waveform.ts';

/** A batch of `shape` with distinct, non-zero values. */
function batch(shape: number[], seed = 7): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: shape.reduce((a, d) => a * d, 1) }, () => 1 + r() * 4);
}
const SPECTROGRAM = [5, 20, 8];
const IMAGE = [4, 6, 6, 3];
const WAVEFORM = [3, 400];

test('every augmentation keeps the shape, leaves its input alone and is the same for the same seed', () => {
  for (const name of AUGMENTATIONS) {
    const shape = ['crop', 'flip'].includes(name) ? IMAGE : ['speed', 'pitch'].includes(name) ? WAVEFORM : SPECTROGRAM;
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

// ---------------------------------------------------------------------------------------------
// Waveforms: speed perturbation, and a stateful model's sequences augmented whole

const RATE = 16000;
const sine = (hz: number, n: number, amplitude = 0.5) => Float32Array.from({ length: n }, (_, i) => amplitude * Math.sin((2 * Math.PI * hz * i) / RATE + 0.3));

/** Frequency of a sine from its upward zero crossings in samples [from, to), to a fraction of a sample. */
function frequency(x: Float32Array, from: number, to: number): number {
  const ups: number[] = [];
  for (let i = from; i + 1 < to; i++) if (x[i] < 0 && x[i + 1] >= 0) ups.push(i + x[i] / (x[i] - x[i + 1]));
  return ((ups.length - 1) * RATE) / (ups[ups.length - 1] - ups[0]);
}

const rms = (x: Float32Array, from = 0, to = x.length) => Math.sqrt(x.subarray(from, to).reduce((a, v) => a + v * v, 0) / (to - from));

test('resample: a sine\'s frequency moves by the factor, the length is kept (a speed-up ends in silence), a factor of 1 copies', () => {
  const x = sine(440, 8000);
  assert.ok(Math.abs(frequency(x, 500, 7000) - 440) < 0.5, 'the measure itself');
  for (const factor of [0.9, 0.95, 1.1]) {
    const y = resample(x, factor);
    assert.equal(y.length, x.length);
    // Away from both ends (the kernel's reach, and where a speed-up runs out of input).
    const f = frequency(y, 500, Math.min(7000, Math.floor(8000 / factor) - 500));
    assert.ok(Math.abs(f / 440 - factor) < 1e-3, `factor ${factor}: ${f.toFixed(2)} Hz, expected ${(440 * factor).toFixed(2)}`);
    // The amplitude is kept in the pass band.
    assert.ok(Math.abs(rms(y, 500, 6000) - 0.5 / Math.SQRT2) < 0.005, `factor ${factor}: rms ${rms(y, 500, 6000)}`);
  }
  const fast = resample(x, 1.1);
  assert.ok(rms(fast, Math.ceil(8000 / 1.1) + 100) < 1e-3, 'past the input\'s end: silence');
  assert.deepEqual(resample(x, 1), x, 'factor 1: the input itself');
  assert.throws(() => resample(x, 0), RangeError);
});

test('resample is band-limited: a speed-up does not fold what lies above the new Nyquist frequency back down (linear interpolation would)', () => {
  // 7.5 kHz read 1.1 times faster is 8.25 kHz: above the 8 kHz Nyquist frequency of 16 kHz audio.
  const x = sine(7500, 8000);
  const y = resample(x, 1.1);
  const linear = Float32Array.from({ length: 8000 }, (_, i) => {
    const at = i * 1.1;
    const k = Math.floor(at);
    return k + 1 < 8000 ? x[k] + (at - k) * (x[k + 1] - x[k]) : 0;
  });
  const kept = rms(y, 500, 6500) / rms(x, 500, 6500);
  assert.ok(rms(linear, 500, 6500) / rms(x, 500, 6500) > 0.5, 'linear interpolation aliases (the check can fail)');
  assert.ok(kept < 0.01, `${(100 * kept).toFixed(2)}% of the amplitude folded back (expected under 1%, -40 dB)`);
});

test('speed: one factor in [0.9, 1.1] per example, the same for the same seed, another for another seed', () => {
  const x = new Float32Array(2 * 8000);
  x.set(sine(440, 8000));
  x.set(sine(300, 8000), 8000);
  const a = speed(x, [2, 8000], seededRandom(5));
  assert.deepEqual(speed(x, [2, 8000], seededRandom(5)), a);
  assert.notDeepEqual(speed(x, [2, 8000], seededRandom(6)), a);
  const factors = [440, 300].map((hz, e) => frequency(a.subarray(e * 8000, (e + 1) * 8000), 500, 6500) / hz);
  for (const f of factors) assert.ok(f >= 0.9 - 1e-3 && f <= 1.1 + 1e-3 && Math.abs(f - 1) > 1e-4, `factor ${f}`);
  assert.notEqual(factors[0].toFixed(4), factors[1].toFixed(4), 'one draw per example');
  assert.deepEqual(parseAugment('speed', [16000]), ['speed']);
  assert.deepEqual(parseAugment('speed', [16000, 1]), ['speed']);
  assert.throws(() => parseAugment('speed', [98, 40]), (e: unknown) => e instanceof UsageError && /speed needs a waveform, \[samples\] or \[samples, 1\]; this model's input is \[98, 40\]/.test(e.message));
});

test('waveform sequences: one gain in ±6 dB and one noise level (10-40 dB below the sequence) per sequence; only gain, noise, speed and pitch are taken', () => {
  const x = new Float32Array(2 * 4000);
  x.set(sine(440, 4000));
  x.set(sine(200, 4000, 0.1), 4000);
  const g = waveGain(x, [2, 4000], seededRandom(2));
  for (let e = 0; e < 2; e++) {
    const ratio = g[e * 4000 + 10] / x[e * 4000 + 10];
    assert.ok(Math.abs(ratio) >= 10 ** (-6 / 20) - 1e-6 && Math.abs(ratio) <= 10 ** (6 / 20) + 1e-6, `gain ${ratio}`);
    for (let i = e * 4000; i < (e + 1) * 4000; i++) assert.ok(Math.abs(g[i] - ratio * x[i]) < 1e-6, 'the same gain over the whole sequence');
  }
  const n = waveNoise(x, [2, 4000], seededRandom(3));
  for (let e = 0; e < 2; e++) {
    const residue = Float32Array.from({ length: 4000 }, (_, i) => n[e * 4000 + i] - x[e * 4000 + i]);
    const snr = 20 * Math.log10(rms(x, e * 4000, (e + 1) * 4000) / rms(residue));
    assert.ok(snr > 9 && snr < 41, `SNR ${snr.toFixed(1)} dB`);
  }
  assert.deepEqual(waveNoise(new Float32Array(100), [1, 100], seededRandom(1)), new Float32Array(100), 'silence stays silent');
  const all = waveAugmenter(['gain', 'noise', 'speed']) as Augmentation;
  assert.deepEqual(all(x, [2, 4000], seededRandom(9)), all(x, [2, 4000], seededRandom(9)));
  assert.equal(waveAugmenter([]), undefined);
  assert.deepEqual(parseSequenceAugment('speed,gain,gain', 'vad.onnx'), ['speed', 'gain']);
  assert.deepEqual(parseSequenceAugment('none', 'vad.onnx'), []);
  assert.throws(() => parseSequenceAugment('gain,time-shift', 'vad.onnx'), (e: unknown) => e instanceof UsageError && /^vad.onnx carries state from frame to frame, so its sequences are augmented whole, as waveforms: gain, noise, speed, pitch fit \(one draw per sequence\); found "time-shift": leave it out of --augment$/.test(e.message));
});

test('a sequence\'s frames as one waveform and back: the overlap vad-web feeds (64 of 576) found, the frames cut again exactly', () => {
  const r = seededRandom(4);
  const wave = sine(300, 512 * 6 + 64).map((v) => v + 0.1 * (r() - 0.5));
  const width = 576;
  // Frames as bench/vad-frames.ts cuts them: 64 samples of context (zeros before the first), 512 new.
  const values = new Float32Array(7 * width);
  values.fill(9, 0, width); // another sequence's frame before this one
  for (let t = 0; t < 6; t++) for (let i = 0; i < width; i++) values[(t + 1) * width + i] = t * 512 + i - 64 >= 0 ? wave[t * 512 + i - 64] : 0;
  assert.equal(frameOverlap(values, width, 1, 7), 64);
  const rebuilt = sequenceWave(values, width, 1, 7, 64);
  assert.deepEqual(rebuilt, wave.subarray(0, 512 * 6));
  const out = new Float32Array(7 * width);
  cutFrames(rebuilt, width, 64, values.subarray(width, 2 * width), out, 1);
  assert.deepEqual(out.subarray(width), values.subarray(width), 'the same frames');
  // Augmented, every frame's context is the augmented end of the frame before it.
  cutFrames(rebuilt.map((v) => 2 * v), width, 64, values.subarray(width, 2 * width), out, 1);
  for (let t = 2; t < 7; t++) assert.deepEqual(out.subarray(t * width, t * width + 64), out.subarray(t * width - 64, t * width));
  assert.deepEqual(out.subarray(width, width + 64), new Float32Array(64), 'the first frame\'s context is kept');
  // Frames that do not overlap: the waveform is their concatenation.
  const plain = Float32Array.from({ length: 12 }, (_, i) => i);
  assert.equal(frameOverlap(plain, 3, 0, 4), 0);
  assert.deepEqual(sequenceWave(plain, 3, 0, 4, 0), plain);
});

test('pitchShift: every frequency moves by the factor, the timing and the level stay; pitch draws up to 2 semitones per example', () => {
  for (const factor of [0.9, 1.12]) {
    for (const hz of [150, 440]) {
      const x = sine(hz, 16000);
      const y = pitchShift(x, factor);
      assert.equal(y.length, x.length);
      const f = frequency(y, 1000, 15000);
      assert.ok(Math.abs(f / hz - factor) < 1e-3, `${hz} Hz x ${factor}: ${f.toFixed(2)} Hz`);
      // The windows join in phase: no dip or swell of the level.
      assert.ok(Math.abs(rms(y, 1000, 15000) / rms(x, 1000, 15000) - 1) < 0.01);
    }
    // A tone burst (0.5 s to 0.75 s) starts and ends where it did, within a window's reach (8 ms).
    const burst = new Float32Array(16000);
    burst.set(sine(300, 4000), 8000);
    const y = pitchShift(burst, factor);
    const on = y.findIndex((v) => Math.abs(v) > 0.1);
    let off = y.length - 1;
    while (Math.abs(y[off]) <= 0.1) off--;
    assert.ok(Math.abs(on - 8000) < 128 && Math.abs(off - 11995) < 128, `factor ${factor}: the burst at ${on}-${off}, was 8000-11995`);
    const sped = resample(burst, factor);
    assert.ok(Math.abs(sped.findIndex((v) => Math.abs(v) > 0.1) - 8000 / factor) < 10, 'speed moves it (the check can fail)');
  }
  const x = sine(440, 4000);
  assert.deepEqual(pitchShift(x, 1), x);
  const two = new Float32Array(8000);
  two.set(x);
  two.set(sine(300, 4000), 4000);
  const a = pitch(two, [2, 4000], seededRandom(5));
  assert.deepEqual(pitch(two, [2, 4000], seededRandom(5)), a);
  assert.notDeepEqual(pitch(two, [2, 4000], seededRandom(6)), a);
  for (const [e, hz] of [[0, 440], [1, 300]]) {
    const f = frequency(a.subarray(e * 4000, (e + 1) * 4000), 600, 3400) / hz;
    assert.ok(f >= 2 ** (-2 / 12) - 2e-3 && f <= 2 ** (2 / 12) + 2e-3, `factor ${f}`);
  }
});
