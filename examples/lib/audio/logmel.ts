/**
 * Log-mel spectrogram features for keyword spotting, in plain TypeScript (no node imports, no
 * tfjs), so the trainer, a browser demo and a device compute bit-compatible features.
 *
 * Defaults ({@link KWS_LOGMEL}): 16 kHz mono PCM, exactly 1 s (16000 samples, centred on the
 * speech energy by {@link centerOnEnergy}), 25 ms periodic Hann window (400 samples), 20 ms hop
 * (320 samples) giving 49 frames, 512-point real FFT, power spectrum, 40 triangular HTK-mel
 * filters (peak 1, not area-normalised) from 20 to 7600 Hz, then `ln(mel + 1e-6)`. The output is
 * row-major `[frames, melBins]` = `[49, 40]` (add a channel axis for a CNN: `[49, 40, 1]`).
 * Amplitudes are taken as they come (full scale = ±1); digital silence gives `ln(1e-6)` ≈ -13.8.
 *
 * @module
 */

/** Parameters of the log-mel front end. */
export interface LogMelConfig {
  /** Sample rate of the PCM input, Hz. */
  sampleRate: number;
  /** Samples per clip after centring (1 s at 16 kHz = 16000). */
  clipSamples: number;
  /** Analysis window length in samples (25 ms = 400). */
  windowSamples: number;
  /** Hop between frames in samples (20 ms = 320). */
  hopSamples: number;
  /** FFT size, a power of two >= windowSamples (512). */
  fftSize: number;
  /** Number of mel filters (40). */
  melBins: number;
  /** Lowest filter edge, Hz (20). */
  fMin: number;
  /** Highest filter edge, Hz (7600). */
  fMax: number;
  /** Added before the natural log (1e-6). */
  logOffset: number;
}

/** The keyword-spotting front end: 1 s at 16 kHz -> 49 frames x 40 log-mel bins. */
export const KWS_LOGMEL: Readonly<LogMelConfig> = Object.freeze({
  sampleRate: 16000,
  clipSamples: 16000,
  windowSamples: 400,
  hopSamples: 320,
  fftSize: 512,
  melBins: 40,
  fMin: 20,
  fMax: 7600,
  logOffset: 1e-6,
});

/** Number of frames a clip of `config.clipSamples` samples yields (49 for {@link KWS_LOGMEL}). */
export function frameCount(config: LogMelConfig = KWS_LOGMEL): number {
  return 1 + Math.floor((config.clipSamples - config.windowSamples) / config.hopSamples);
}

/** HTK mel scale: `2595 * log10(1 + hz / 700)`. */
export function hzToMel(hz: number): number {
  return 2595 * Math.log10(1 + hz / 700);
}

/** Inverse of {@link hzToMel}. */
export function melToHz(mel: number): number {
  return 700 * (10 ** (mel / 2595) - 1);
}

function assertPowerOfTwo(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 2 || (n & (n - 1)) !== 0) {
    throw new RangeError(`${what} must be a power of two >= 2, found ${n}`);
  }
}

/**
 * In-place iterative radix-2 complex FFT of a fixed size, with the bit-reversal permutation and
 * twiddle factors computed once.
 */
export class ComplexFFT {
  /** Transform size. */
  readonly n: number;
  private readonly rev: Uint32Array;
  private readonly cos: Float64Array;
  private readonly sin: Float64Array;

  /** @param n - transform size, a power of two. */
  constructor(n: number) {
    assertPowerOfTwo(n, 'FFT size');
    this.n = n;
    const bits = Math.log2(n);
    this.rev = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      let r = 0;
      for (let b = 0, v = i; b < bits; b++, v >>= 1) r = (r << 1) | (v & 1);
      this.rev[i] = r;
    }
    this.cos = new Float64Array(n / 2);
    this.sin = new Float64Array(n / 2);
    for (let k = 0; k < n / 2; k++) {
      this.cos[k] = Math.cos((2 * Math.PI * k) / n);
      this.sin[k] = -Math.sin((2 * Math.PI * k) / n);
    }
  }

  /**
   * Transforms `re`/`im` in place: `X[k] = sum_t x[t] e^{-2 pi i k t / n}` (forward), or the
   * inverse including the `1/n` factor.
   */
  transform(re: Float64Array, im: Float64Array, inverse = false): void {
    const n = this.n;
    if (re.length < n || im.length < n) throw new RangeError(`FFT buffers must hold ${n} values`);
    const rev = this.rev;
    for (let i = 0; i < n; i++) {
      const j = rev[i];
      if (j > i) {
        let t = re[i];
        re[i] = re[j];
        re[j] = t;
        t = im[i];
        im[i] = im[j];
        im[j] = t;
      }
    }
    const cos = this.cos;
    const sin = this.sin;
    const sign = inverse ? -1 : 1;
    for (let size = 2; size <= n; size <<= 1) {
      const half = size >> 1;
      const step = n / size;
      for (let start = 0; start < n; start += size) {
        for (let k = 0, tw = 0; k < half; k++, tw += step) {
          const wr = cos[tw];
          const wi = sign * sin[tw];
          const a = start + k;
          const b = a + half;
          const xr = re[b] * wr - im[b] * wi;
          const xi = re[b] * wi + im[b] * wr;
          re[b] = re[a] - xr;
          im[b] = im[a] - xi;
          re[a] += xr;
          im[a] += xi;
        }
      }
    }
    if (inverse) {
      const s = 1 / n;
      for (let i = 0; i < n; i++) {
        re[i] *= s;
        im[i] *= s;
      }
    }
  }
}

/**
 * Real-input FFT of size `n` computed with one complex FFT of size `n/2` (even/odd packing),
 * returning bins `0..n/2`.
 */
export class RealFFT {
  /** Transform size (number of real input samples). */
  readonly n: number;
  private readonly half: ComplexFFT;
  private readonly zr: Float64Array;
  private readonly zi: Float64Array;
  private readonly wr: Float64Array;
  private readonly wi: Float64Array;

  /** @param n - transform size, a power of two >= 4. */
  constructor(n: number) {
    assertPowerOfTwo(n, 'real FFT size');
    if (n < 4) throw new RangeError(`real FFT size must be >= 4, found ${n}`);
    this.n = n;
    const m = n / 2;
    this.half = new ComplexFFT(m);
    this.zr = new Float64Array(m);
    this.zi = new Float64Array(m);
    this.wr = new Float64Array(m + 1);
    this.wi = new Float64Array(m + 1);
    for (let k = 0; k <= m; k++) {
      this.wr[k] = Math.cos((2 * Math.PI * k) / n);
      this.wi[k] = -Math.sin((2 * Math.PI * k) / n);
    }
  }

  /**
   * Forward transform of `input[0..n)` (missing samples count as zero). Writes the `n/2 + 1`
   * non-redundant bins to `outRe`/`outIm`.
   */
  forward(input: ArrayLike<number>, outRe: Float64Array, outIm: Float64Array): void {
    const n = this.n;
    const m = n >> 1;
    const zr = this.zr;
    const zi = this.zi;
    const len = Math.min(input.length, n);
    for (let k = 0; k < m; k++) {
      const a = 2 * k;
      zr[k] = a < len ? input[a] : 0;
      zi[k] = a + 1 < len ? input[a + 1] : 0;
    }
    this.half.transform(zr, zi);
    const wr = this.wr;
    const wi = this.wi;
    for (let k = 0; k <= m; k++) {
      const k1 = k === m ? 0 : k;
      const k2 = k === 0 ? 0 : m - k;
      // E = (Z[k] + conj(Z[m-k])) / 2 ; O = (Z[k] - conj(Z[m-k])) / (2i)
      const ar = zr[k1];
      const ai = zi[k1];
      const br = zr[k2];
      const bi = -zi[k2];
      const er = 0.5 * (ar + br);
      const ei = 0.5 * (ai + bi);
      const dr = ar - br;
      const di = ai - bi;
      const or = 0.5 * di;
      const oi = -0.5 * dr;
      outRe[k] = er + wr[k] * or - wi[k] * oi;
      outIm[k] = ei + wr[k] * oi + wi[k] * or;
    }
  }
}

/** Periodic Hann window `0.5 - 0.5 cos(2 pi t / n)`, the usual choice for STFT analysis. */
export function hannWindow(n: number): Float64Array {
  const w = new Float64Array(n);
  for (let t = 0; t < n; t++) w[t] = 0.5 - 0.5 * Math.cos((2 * Math.PI * t) / n);
  return w;
}

/** A triangular mel filterbank over FFT bins, stored sparsely. */
export interface MelFilterbank {
  /** First FFT bin of each filter. */
  start: Int32Array;
  /** Weights of each filter, starting at `start[m]`. */
  weights: Float64Array[];
  /** Centre frequency of each filter, Hz. */
  centerHz: Float64Array;
}

/**
 * HTK-style triangular filters (peak 1) with edges equally spaced on the mel scale between
 * `fMin` and `fMax`, evaluated at the FFT bin frequencies `k * sampleRate / fftSize`.
 */
export function melFilterbank(config: LogMelConfig = KWS_LOGMEL): MelFilterbank {
  const { melBins, fMin, fMax, fftSize, sampleRate } = config;
  if (!(fMin >= 0 && fMax > fMin && fMax <= sampleRate / 2)) {
    throw new RangeError(`mel range must satisfy 0 <= fMin < fMax <= sampleRate/2, found ${fMin}..${fMax} at ${sampleRate} Hz`);
  }
  const lo = hzToMel(fMin);
  const hi = hzToMel(fMax);
  const edges = new Float64Array(melBins + 2);
  for (let i = 0; i < melBins + 2; i++) edges[i] = melToHz(lo + ((hi - lo) * i) / (melBins + 1));
  const bins = fftSize / 2 + 1;
  const binHz = sampleRate / fftSize;
  const start = new Int32Array(melBins);
  const weights: Float64Array[] = [];
  const centerHz = new Float64Array(melBins);
  for (let m = 0; m < melBins; m++) {
    const l = edges[m];
    const c = edges[m + 1];
    const r = edges[m + 2];
    centerHz[m] = c;
    const w: number[] = [];
    let first = -1;
    for (let k = 0; k < bins; k++) {
      const f = k * binHz;
      let v = 0;
      if (f > l && f < r) v = f <= c ? (f - l) / (c - l) : (r - f) / (r - c);
      if (v > 0) {
        if (first < 0) first = k;
        // keep interior zeros (none occur for a triangle) so indices stay contiguous
        while (first + w.length < k) w.push(0);
        w.push(v);
      }
    }
    if (first < 0) {
      throw new RangeError(
        `mel filter ${m} (${l.toFixed(1)}-${r.toFixed(1)} Hz) covers no FFT bin: use a larger fftSize or fewer melBins`,
      );
    }
    start[m] = first;
    weights.push(Float64Array.from(w));
  }
  return { start, weights, centerHz };
}

/**
 * Returns exactly `length` samples of `pcm` placed so that the centroid of its speech energy
 * sits in the middle, zero-padded where the window reaches past the clip. The active part
 * (10 ms frames above 1% of the loudest frame, noise floor removed) is never cut when it is
 * shorter than `length`: the window slides just enough to keep it whole.
 *
 * Energy is measured in 10 ms frames; the 10th-percentile frame energy is subtracted first as
 * the noise floor, so steady background noise in a long recording does not pull the centre.
 *
 * @param pcm - mono samples.
 * @param length - output length (16000 for 1 s at 16 kHz).
 * @param sampleRate - used only to size the 10 ms energy frames. Default 16000.
 */
export function centerOnEnergy(pcm: Float32Array, length: number, sampleRate = 16000): Float32Array {
  const out = new Float32Array(length);
  const n = pcm.length;
  if (n === 0) return out;
  const start = energyWindowStart(pcm, length, sampleRate);
  const from = Math.max(0, start);
  const to = Math.min(n, start + length);
  if (to > from) out.set(pcm.subarray(from, to), from - start);
  return out;
}

/**
 * Where {@link centerOnEnergy} starts its window: output sample `i` is input sample
 * `start + i` (zero where that falls outside the clip). May be negative or run past the end.
 */
export function energyWindowStart(pcm: Float32Array, length: number, sampleRate = 16000): number {
  const n = pcm.length;
  if (n === 0) return 0;
  const frame = Math.max(1, Math.round(sampleRate / 100));
  const frames = Math.ceil(n / frame);
  const energy = new Float64Array(frames);
  for (let f = 0; f < frames; f++) {
    let e = 0;
    const end = Math.min(n, (f + 1) * frame);
    for (let i = f * frame; i < end; i++) e += pcm[i] * pcm[i];
    energy[f] = e;
  }
  const sorted = Float64Array.from(energy).sort();
  const floor = sorted[Math.floor(0.1 * (frames - 1))];
  let sw = 0;
  let swt = 0;
  let max = 0;
  for (let f = 0; f < frames; f++) {
    const w = energy[f] - floor;
    if (w > 0) {
      sw += w;
      swt += w * Math.min(n, f * frame + frame / 2);
      if (w > max) max = w;
    }
  }
  let start: number;
  if (sw > 0) {
    let first = 0;
    let last = frames - 1;
    while (energy[first] - floor < 0.01 * max) first++;
    while (energy[last] - floor < 0.01 * max) last--;
    const a0 = first * frame;
    const a1 = Math.min(n, (last + 1) * frame);
    start = Math.round(swt / sw - length / 2);
    if (a1 - a0 <= length) {
      // keep the whole active part inside the window
      if (start > a0) start = a0;
      if (start < a1 - length) start = a1 - length;
    }
  } else {
    start = Math.round(n / 2 - length / 2);
  }
  return start;
}

/**
 * Computes log-mel spectrograms with precomputed window, FFT tables and filterbank. One instance
 * is not re-entrant across threads but may be reused for any number of clips.
 */
export class LogMel {
  /** The configuration in use. */
  readonly config: Readonly<LogMelConfig>;
  /** Frames per clip (49 by default). */
  readonly frames: number;
  /** Mel bins per frame (40 by default). */
  readonly melBins: number;
  private readonly window: Float64Array;
  private readonly fft: RealFFT;
  private readonly bank: MelFilterbank;
  private readonly frameBuf: Float64Array;
  private readonly re: Float64Array;
  private readonly im: Float64Array;
  private readonly power: Float64Array;

  /** @param config - front-end parameters; default {@link KWS_LOGMEL}. */
  constructor(config: Partial<LogMelConfig> = {}) {
    const c = { ...KWS_LOGMEL, ...config };
    assertPowerOfTwo(c.fftSize, 'fftSize');
    if (c.windowSamples > c.fftSize) throw new RangeError(`windowSamples ${c.windowSamples} exceeds fftSize ${c.fftSize}`);
    if (c.clipSamples < c.windowSamples) throw new RangeError(`clipSamples ${c.clipSamples} is shorter than one window`);
    this.config = Object.freeze(c);
    this.frames = frameCount(c);
    this.melBins = c.melBins;
    this.window = hannWindow(c.windowSamples);
    this.fft = new RealFFT(c.fftSize);
    this.bank = melFilterbank(c);
    this.frameBuf = new Float64Array(c.fftSize);
    this.re = new Float64Array(c.fftSize / 2 + 1);
    this.im = new Float64Array(c.fftSize / 2 + 1);
    this.power = new Float64Array(c.fftSize / 2 + 1);
  }

  /** Number of values per clip: `frames * melBins` (1960 by default). */
  get size(): number {
    return this.frames * this.melBins;
  }

  /**
   * Features of one clip, row-major `[frames, melBins]`.
   *
   * @param pcm - mono samples at `config.sampleRate`. By default the clip is first brought to
   *   exactly `clipSamples` with {@link centerOnEnergy}; with `align: 'none'` it must already
   *   hold exactly `clipSamples` samples.
   * @param out - optional destination (e.g. a row of a big batch array).
   * @param offset - where in `out` to write.
   */
  compute(
    pcm: Float32Array,
    out: Float32Array = new Float32Array(this.size),
    offset = 0,
    align: 'energy' | 'none' = 'energy',
  ): Float32Array {
    const c = this.config;
    let clip = pcm;
    if (align === 'energy') {
      if (pcm.length !== c.clipSamples) clip = centerOnEnergy(pcm, c.clipSamples, c.sampleRate);
    } else if (pcm.length !== c.clipSamples) {
      throw new RangeError(`expected exactly ${c.clipSamples} samples with align 'none', found ${pcm.length}`);
    }
    if (offset < 0 || offset + this.size > out.length) {
      throw new RangeError(`output holds ${out.length} values, cannot write ${this.size} at offset ${offset}`);
    }
    const win = this.window;
    const W = c.windowSamples;
    const buf = this.frameBuf;
    const re = this.re;
    const im = this.im;
    const power = this.power;
    const bins = power.length;
    const { start, weights } = this.bank;
    const eps = c.logOffset;
    for (let f = 0; f < this.frames; f++) {
      const s0 = f * c.hopSamples;
      for (let t = 0; t < W; t++) buf[t] = clip[s0 + t] * win[t];
      // buf[W..fftSize) stays zero
      this.fft.forward(buf, re, im);
      for (let k = 0; k < bins; k++) power[k] = re[k] * re[k] + im[k] * im[k];
      const row = offset + f * this.melBins;
      for (let m = 0; m < this.melBins; m++) {
        const w = weights[m];
        const s = start[m];
        let acc = 0;
        for (let j = 0; j < w.length; j++) acc += w[j] * power[s + j];
        out[row + m] = Math.log(acc + eps);
      }
    }
    return out;
  }
}

let defaultExtractor: LogMel | undefined;

/**
 * One-call log-mel of a clip with the {@link KWS_LOGMEL} front end (energy-centred to 1 s).
 *
 * @returns `Float32Array` of `49 * 40` values, row-major `[frame, mel]`.
 */
export function logMelSpectrogram(pcm: Float32Array): Float32Array {
  defaultExtractor ??= new LogMel();
  return defaultExtractor.compute(pcm);
}
