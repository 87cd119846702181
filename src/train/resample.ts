/**
 * Band-limited resampling of a waveform, for speed perturbation (src/train/augment.ts `speed`),
 * and a pitch shift that keeps the timing (`pitch`: resampling, then {@link timeStretch}):
 * the signal read `factor` times faster, so every frequency moves up by the factor and the
 * duration shrinks by it (speed and pitch change together, as speech recipes' 0.9/1.0/1.1 speed
 * perturbation does; Ko et al., Interspeech 2015).
 *
 * Each output sample is a windowed-sinc interpolation of the input at `i * factor`: a Blackman
 * window over 32 zero crossings of the low-pass kernel, its cutoff at 0.9 of the Nyquist
 * frequency of the slower of the two rates (so a speed-up, which folds the top of the band past
 * Nyquist, first filters it out instead of aliasing it back down). The kernel is read from one
 * table, linearly interpolated, so no trigonometry runs per tap; the output is the same for the
 * same input on every run. Plain TypeScript over typed arrays: no tfjs.
 */

/** Zero crossings of the kernel on each side (its length in units of the cutoff's period). */
const ZEROS = 32;
/** Table entries per zero crossing. */
const STEPS = 512;
/** Cutoff as a share of the Nyquist frequency of the slower rate (the rest is the transition band). */
const ROLLOFF = 0.9;

let table: Float32Array | undefined;

/** sinc(u) · Blackman(u / ZEROS) for u = k / STEPS, k = 0 .. ZEROS · STEPS (one side; the kernel is even). */
function kernelTable(): Float32Array {
  if (table) return table;
  const t = new Float32Array(ZEROS * STEPS + 2);
  t[0] = 1;
  for (let k = 1; k <= ZEROS * STEPS; k++) {
    const u = k / STEPS;
    const w = 0.42 + 0.5 * Math.cos((Math.PI * u) / ZEROS) + 0.08 * Math.cos((2 * Math.PI * u) / ZEROS);
    t[k] = (Math.sin(Math.PI * u) / (Math.PI * u)) * w;
  }
  table = t;
  return t;
}

/**
 * `x` read at `factor` times its speed, into `length` samples (default: x's length, so a speed-up
 * ends in silence and a slow-down is cut where the output is full): `out[i] = x(i · factor)`,
 * band-limited. A factor of 1 copies `x`.
 * @throws RangeError for a factor that is not a finite number above 0.
 */
export function resample(x: Float32Array, factor: number, length = x.length): Float32Array {
  if (!(factor > 0) || !Number.isFinite(factor)) throw new RangeError(`resample: expected a speed factor above 0, found ${factor}`);
  const out = new Float32Array(length);
  if (factor === 1) {
    out.set(x.subarray(0, Math.min(length, x.length)));
    return out;
  }
  const t = kernelTable();
  // Cutoff in cycles per input sample, relative to the input's Nyquist frequency.
  const cut = ROLLOFF * Math.min(1, 1 / factor);
  const reach = ZEROS / cut;
  const scale = cut * STEPS;
  const n = x.length;
  for (let i = 0; i < length; i++) {
    const at = i * factor;
    const from = Math.max(0, Math.ceil(at - reach));
    const to = Math.min(n - 1, Math.floor(at + reach));
    let sum = 0;
    for (let j = from; j <= to; j++) {
      const p = Math.abs(at - j) * scale;
      const k = Math.floor(p);
      const f = p - k;
      sum += x[j] * (t[k] + f * (t[k + 1] - t[k]));
    }
    out[i] = cut * sum;
  }
  return out;
}

/** WSOLA's window (samples; 32 ms at 16 kHz), its hop in the output (half: Hann windows at half overlap sum to 1), and how far each window may move to join the last (a quarter window). */
const WINDOW = 512;
const HOP = WINDOW / 2;
const SEEK = WINDOW / 4;

let hann: Float32Array | undefined;
function hannWindow(): Float32Array {
  hann ??= Float32Array.from({ length: WINDOW }, (_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / WINDOW));
  return hann;
}

/**
 * `x` played over `length` samples at the same pitch (WSOLA, Verhelst and Roelands 1993, as sox's
 * `tempo` effect does it): windows of 512 samples overlap-added every 256, each taken from where
 * the input has reached in time, moved by up to 128 samples to where it best continues the window
 * before (the largest cross-correlation), so periods join without a click or a phase jump.
 */
export function timeStretch(x: Float32Array, length: number): Float32Array {
  const out = new Float32Array(length);
  if (x.length === 0 || length === 0) return out;
  const w = hannWindow();
  // Input samples the input advances per output hop.
  const advance = (HOP * x.length) / length;
  const at = (i: number) => (i >= 0 && i < x.length ? x[i] : 0);
  let previous = -HOP; // where the last window was taken from
  for (let k = 0; k * HOP - HOP < length; k++) {
    const nominal = Math.round(k * advance) - HOP;
    let from = nominal;
    if (k > 0) {
      // The natural continuation of the previous window, and the shift that best matches it.
      const follow = previous + HOP;
      let best = -Infinity;
      for (let d = -SEEK; d <= SEEK; d++) {
        let c = 0;
        for (let i = 0; i < WINDOW; i += 2) c += at(follow + i) * at(nominal + d + i) * w[i];
        if (c > best) [best, from] = [c, nominal + d];
      }
    }
    const to = k * HOP - HOP;
    for (let i = 0; i < WINDOW; i++) {
      const o = to + i;
      if (o >= 0 && o < length) out[o] += w[i] * at(from + i);
    }
    previous = from;
  }
  return out;
}

/**
 * `x` with every frequency moved by `factor` and its timing kept (a pitch shift, as sox's `pitch`:
 * band-limited resampling to the new pitch, then {@link timeStretch} back to the length of `x`).
 * A factor of 1 copies `x`.
 * @throws RangeError for a factor that is not a finite number above 0.
 */
export function pitchShift(x: Float32Array, factor: number): Float32Array {
  if (factor === 1) return Float32Array.from(x);
  return timeStretch(resample(x, factor, Math.ceil(x.length / factor)), x.length);
}
