/**
 * Band-limited resampling of mono PCM in plain TypeScript (no node imports): Kaiser-windowed
 * sinc interpolation at an arbitrary rate ratio, from one shared kernel table. Used to bring
 * synthesizer output (e.g. espeak-ng at 22050 Hz) to 16 kHz, and, with a rate scaled by a speed
 * factor, for speed perturbation (tempo and pitch change together, as in Kaldi's augmentation).
 *
 * @module
 */

/** Zero crossings of the sinc kept on each side of the centre. */
const ZERO_CROSSINGS = 16;
/** Kernel table resolution: entries per unit of the (cutoff-scaled) sinc argument. */
const TABLE_RES = 512;
/** Kaiser window beta (about 80 dB stop-band attenuation). */
const KAISER_BETA = 8.6;
/** Passband edge as a fraction of the lower Nyquist frequency. */
const ROLLOFF = 0.94;

function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 50; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < 1e-12 * sum) break;
  }
  return sum;
}

let table: Float64Array | undefined;

/** h(u) = sinc(u) * kaiser(u / ZERO_CROSSINGS) sampled at u = i / TABLE_RES, i = 0..Z*RES. */
function kernelTable(): Float64Array {
  if (table) return table;
  const n = ZERO_CROSSINGS * TABLE_RES + 2;
  const t = new Float64Array(n);
  const i0b = besselI0(KAISER_BETA);
  for (let i = 0; i < n; i++) {
    const u = i / TABLE_RES;
    const r = u / ZERO_CROSSINGS;
    const win = r >= 1 ? 0 : besselI0(KAISER_BETA * Math.sqrt(1 - r * r)) / i0b;
    const sinc = u === 0 ? 1 : Math.sin(Math.PI * u) / (Math.PI * u);
    t[i] = sinc * win;
  }
  table = t;
  return t;
}

/** Number of quantized fractional phases of the polyphase tables (time error <= 1/2048 sample). */
const PHASES = 1024;

interface Polyphase {
  /** taps per phase (2 * half) */
  taps: number;
  /** taps on each side of the centre */
  half: number;
  /** (PHASES + 1) * taps coefficients; phase q holds the weights for fractional delay q / PHASES */
  coeffs: Float32Array;
}

const polyCache = new Map<number, Polyphase>();

function polyphaseFor(scale: number): Polyphase {
  const cached = polyCache.get(scale);
  if (cached) return cached;
  const tab = kernelTable();
  const tabLimit = ZERO_CROSSINGS * TABLE_RES;
  const half = Math.ceil(ZERO_CROSSINGS / scale);
  const taps = 2 * half;
  const coeffs = new Float32Array((PHASES + 1) * taps);
  for (let q = 0; q <= PHASES; q++) {
    const frac = q / PHASES;
    for (let i = 0; i < taps; i++) {
      const d = i - half + 1 - frac; // tap position relative to the output instant
      const pos = Math.abs(d) * scale * TABLE_RES;
      if (pos >= tabLimit) continue;
      const t = pos | 0;
      const f = pos - t;
      coeffs[q * taps + i] = scale * (tab[t] + f * (tab[t + 1] - tab[t]));
    }
  }
  const poly = { taps, half, coeffs };
  if (polyCache.size >= 64) polyCache.delete(polyCache.keys().next().value as number);
  polyCache.set(scale, poly);
  return poly;
}

/**
 * Resamples `input` from `inRate` to `outRate` Hz with a low-pass at 94% of the lower Nyquist
 * frequency (Kaiser-windowed sinc, 16 zero crossings, polyphase tables with 1024 fractional
 * phases). Deterministic; output length is `round(input.length * outRate / inRate)`.
 *
 * Speed perturbation by a factor `s` (> 1 faster and higher): `resample(x, inRate * s, outRate)`.
 *
 * @param input - mono samples.
 * @param inRate - input sample rate, Hz (> 0).
 * @param outRate - output sample rate, Hz (> 0).
 */
export function resample(input: Float32Array, inRate: number, outRate: number): Float32Array {
  if (!(inRate > 0) || !(outRate > 0)) throw new RangeError(`sample rates must be > 0, found ${inRate} -> ${outRate}`);
  const n = input.length;
  const outLen = Math.round((n * outRate) / inRate);
  const out = new Float32Array(outLen);
  if (n === 0) return out;
  const step = inRate / outRate; // input samples per output sample
  // cutoff in cycles per input sample; the kernel argument is u = 2 * fc * distance
  const scale = Math.min(1, outRate / inRate) * ROLLOFF;
  const { taps, half, coeffs } = polyphaseFor(scale);
  for (let k = 0; k < outLen; k++) {
    const p = k * step;
    let base = Math.floor(p);
    let q = Math.round((p - base) * PHASES);
    if (q === PHASES) {
      q = 0;
      base += 1;
    }
    const j0 = base - half + 1;
    const c0 = q * taps;
    let acc = 0;
    if (j0 >= 0 && j0 + taps <= n) {
      for (let i = 0; i < taps; i++) acc += input[j0 + i] * coeffs[c0 + i];
    } else {
      const lo = Math.max(0, -j0);
      const hi = Math.min(taps, n - j0);
      for (let i = lo; i < hi; i++) acc += input[j0 + i] * coeffs[c0 + i];
    }
    out[k] = acc;
  }
  return out;
}
