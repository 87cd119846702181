import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ComplexFFT,
  KWS_LOGMEL,
  LogMel,
  RealFFT,
  centerOnEnergy,
  frameCount,
  hzToMel,
  melFilterbank,
  melToHz,
  logMelSpectrogram,
} from '../examples/lib/audio/logmel.ts';
import { resample } from '../examples/lib/audio/resample.ts';

/** Seeded uniform noise in [-1, 1). */
function noise(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function naiveDft(re: ArrayLike<number>, im: ArrayLike<number>): { re: Float64Array; im: Float64Array } {
  const n = re.length;
  const or = new Float64Array(n);
  const oi = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    let sr = 0;
    let si = 0;
    for (let t = 0; t < n; t++) {
      const a = (-2 * Math.PI * k * t) / n;
      sr += re[t] * Math.cos(a) - im[t] * Math.sin(a);
      si += re[t] * Math.sin(a) + im[t] * Math.cos(a);
    }
    or[k] = sr;
    oi[k] = si;
  }
  return { re: or, im: oi };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, n = a.length): number {
  let m = 0;
  for (let i = 0; i < n; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function tone(hz: number, seconds = 1, amp = 0.5, rate = 16000): Float32Array {
  const out = new Float32Array(Math.round(seconds * rate));
  for (let i = 0; i < out.length; i++) out[i] = amp * Math.sin((2 * Math.PI * hz * i) / rate);
  return out;
}

describe('FFT', () => {
  it('complex FFT matches a naive DFT on random input, and inverts', () => {
    for (const n of [2, 8, 64, 256]) {
      const re = noise(n, n);
      const im = noise(n, n + 1);
      const want = naiveDft(re, im);
      const r = Float64Array.from(re);
      const i = Float64Array.from(im);
      const fft = new ComplexFFT(n);
      fft.transform(r, i);
      assert.ok(maxAbsDiff(r, want.re) < 1e-9 * n, `re n=${n}`);
      assert.ok(maxAbsDiff(i, want.im) < 1e-9 * n, `im n=${n}`);
      fft.transform(r, i, true);
      assert.ok(maxAbsDiff(r, re) < 1e-12 && maxAbsDiff(i, im) < 1e-12, `inverse n=${n}`);
    }
  });

  it('real FFT matches a naive DFT on random input (bins 0..n/2)', () => {
    for (const n of [4, 16, 512]) {
      const x = noise(n, 7 * n);
      const want = naiveDft(x, new Float64Array(n));
      const re = new Float64Array(n / 2 + 1);
      const im = new Float64Array(n / 2 + 1);
      new RealFFT(n).forward(x, re, im);
      assert.ok(maxAbsDiff(re, want.re, n / 2 + 1) < 1e-9 * n, `re n=${n}`);
      assert.ok(maxAbsDiff(im, want.im, n / 2 + 1) < 1e-9 * n, `im n=${n}`);
    }
  });

  it('real FFT zero-pads short input', () => {
    const x = noise(400, 3);
    const padded = new Float64Array(512);
    padded.set(x);
    const want = naiveDft(padded, new Float64Array(512));
    const re = new Float64Array(257);
    const im = new Float64Array(257);
    new RealFFT(512).forward(x, re, im);
    assert.ok(maxAbsDiff(re, want.re, 257) < 1e-8);
  });

  it('refuses sizes that are not powers of two', () => {
    assert.throws(() => new ComplexFFT(12), /power of two/);
    assert.throws(() => new RealFFT(2), /power of two >= 2|must be >= 4/);
  });
});

describe('mel filterbank', () => {
  it('uses the HTK mel formula', () => {
    assert.ok(Math.abs(hzToMel(1000) - 999.9855) < 1e-3);
    assert.ok(Math.abs(melToHz(hzToMel(3210)) - 3210) < 1e-9);
  });

  it('has 40 non-empty triangles with increasing centres between 20 and 7600 Hz', () => {
    const fb = melFilterbank();
    assert.equal(fb.weights.length, 40);
    for (let m = 0; m < 40; m++) {
      assert.ok(fb.weights[m].length > 0);
      assert.ok(Math.max(...fb.weights[m]) <= 1);
      if (m > 0) assert.ok(fb.centerHz[m] > fb.centerHz[m - 1]);
    }
    assert.ok(fb.centerHz[0] > 20 && fb.centerHz[39] < 7600);
    assert.ok(fb.start[0] * (16000 / 512) > 20 - 16000 / 512);
  });
});

describe('log-mel spectrogram', () => {
  const lm = new LogMel();

  it('yields 49 frames x 40 mel bins for 1 s at 16 kHz, any input length', () => {
    assert.equal(frameCount(), 49);
    assert.equal(lm.frames, 49);
    assert.equal(lm.melBins, 40);
    assert.equal(lm.size, 1960);
    for (const len of [0, 1000, 16000, 40000]) {
      const out = lm.compute(tone(440, len / 16000));
      assert.equal(out.length, 1960);
      assert.ok(out.every(Number.isFinite));
    }
    assert.equal(logMelSpectrogram(tone(300)).length, 49 * 40);
  });

  it('writes into a batch buffer at an offset', () => {
    const batch = new Float32Array(3 * 1960).fill(99);
    lm.compute(tone(1000), batch, 1960);
    assert.ok(batch.subarray(0, 1960).every((v) => v === 99));
    assert.ok(batch.subarray(1960, 3920).every((v) => v !== 99));
    assert.ok(batch.subarray(3920).every((v) => v === 99));
    assert.throws(() => lm.compute(tone(1000), batch, 2 * 1960 + 1), RangeError);
    assert.throws(() => lm.compute(tone(1000, 0.5), undefined, 0, 'none'), /exactly 16000 samples/);
  });

  it('puts a pure tone in the mel bin whose centre is nearest', () => {
    const fb = melFilterbank();
    for (const hz of [250, 1000, 3000, 6000]) {
      const out = lm.compute(tone(hz));
      const want = fb.centerHz.reduce((best, c, m) => (Math.abs(c - hz) < Math.abs(fb.centerHz[best] - hz) ? m : best), 0);
      for (const f of [0, 24, 48]) {
        const row = out.subarray(f * 40, f * 40 + 40);
        const peak = row.indexOf(Math.max(...row));
        assert.ok(Math.abs(peak - want) <= 1, `${hz} Hz: peak in bin ${peak}, expected ${want} (frame ${f})`);
      }
      // far bins are much weaker (more than 8 nats = ~35 dB below the peak)
      const row = out.subarray(24 * 40, 25 * 40);
      const peakVal = Math.max(...row);
      for (let m = 0; m < 40; m++) if (Math.abs(m - want) > 6) assert.ok(row[m] < peakVal - 8, `${hz} Hz bin ${m}`);
    }
  });

  it('gives a constant floor of ln(1e-6) for digital silence', () => {
    const out = lm.compute(new Float32Array(16000));
    const floor = Math.log(KWS_LOGMEL.logOffset);
    for (const v of out) assert.ok(Math.abs(v - floor) < 1e-6);
  });

  it('scales with level: +6 dB amplitude is +ln(4) in power', () => {
    const a = lm.compute(tone(1000, 1, 0.1));
    const b = lm.compute(tone(1000, 1, 0.2));
    const m = 24 * 40 + Array.from(a.subarray(24 * 40, 25 * 40)).indexOf(Math.max(...a.subarray(24 * 40, 25 * 40)));
    assert.ok(Math.abs(b[m] - a[m] - Math.log(4)) < 1e-3);
  });

  it('computes fast enough for data generation (>= 300 clips per CPU-second)', () => {
    // CPU time, not wall time: the test machine may be shared (measured ~1100 clips/s per core)
    const cpuMs = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    };
    const clip = Float32Array.from(noise(16000, 9));
    for (let i = 0; i < 20; i++) lm.compute(clip);
    const t0 = cpuMs();
    const w0 = performance.now();
    let n = 0;
    while (performance.now() - w0 < 400) {
      lm.compute(clip);
      n++;
    }
    const rate = n / Math.max(1e-3, (cpuMs() - t0) / 1000);
    assert.ok(rate >= 300, `${rate.toFixed(0)} clips per CPU-second`);
  });
});

describe('centerOnEnergy', () => {
  it('centres a short burst and never cuts it', () => {
    const x = new Float32Array(8000);
    for (let i = 1000; i < 3000; i++) x[i] = Math.sin(i);
    const c = centerOnEnergy(x, 16000);
    assert.equal(c.length, 16000);
    let first = -1;
    let last = -1;
    for (let i = 0; i < c.length; i++) if (c[i] !== 0) (first < 0 && (first = i), (last = i));
    const mid = (first + last) / 2;
    assert.ok(Math.abs(mid - 8000) < 200, `centre at ${mid}`);
    assert.equal(last - first, 1999); // all 2000 samples of the burst are kept
  });

  it('centres speech at the start of a long clip by padding, without cutting it', () => {
    const x = new Float32Array(40000);
    for (let i = 0; i < 6000; i++) x[i] = 0.5 * Math.sin(i / 3);
    const c = centerOnEnergy(x, 16000);
    let nz = 0;
    for (const v of c) if (v !== 0) nz++;
    assert.ok(nz >= 5990, `kept ${nz} of 6000 active samples`);
    assert.equal(c[0], 0);
  });

  it('ignores a steady noise floor when finding the centre', () => {
    const x = Float32Array.from(noise(48000, 5), (v) => 0.01 * v);
    for (let i = 36000; i < 40000; i++) x[i] += Math.sin(i / 5);
    const c = centerOnEnergy(x, 16000);
    // the loud part (4000 samples) should sit around the middle of the output
    let e = 0;
    for (let i = 6000; i < 10000; i++) e += c[i] * c[i];
    assert.ok(e > 1500, `energy in the middle ${e}`);
  });
});

describe('resample', () => {
  it('keeps a 1 kHz tone when going from 22050 to 16000 Hz', () => {
    const x = tone(1000, 1, 0.5, 22050);
    const y = resample(x, 22050, 16000);
    assert.equal(y.length, 16000);
    const want = tone(1000, 1, 0.5, 16000);
    assert.ok(maxAbsDiff(y.subarray(500, 15500), want.subarray(500, 15500)) < 1e-3);
  });

  it('removes content above the new Nyquist frequency', () => {
    const x = tone(10000, 1, 0.5, 22050);
    const y = resample(x, 22050, 16000);
    let e = 0;
    for (let i = 500; i < 15500; i++) e += y[i] * y[i];
    assert.ok(Math.sqrt(e / 15000) < 1e-3);
  });

  it('speeds up by resampling from a scaled rate', () => {
    const y = resample(tone(500, 1, 0.5, 16000), 16000 * 1.25, 16000);
    assert.equal(y.length, 12800);
    // 500 Hz played 1.25x faster is 625 Hz
    const want = tone(625, 0.8, 0.5, 16000);
    assert.ok(maxAbsDiff(y.subarray(500, 12000), want.subarray(500, 12000)) < 2e-3);
  });
});
