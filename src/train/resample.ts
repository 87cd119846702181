/**
 * Band-limited resampling of a waveform, for speed perturbation (src/train/augment.ts `speed`):
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
