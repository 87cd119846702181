/**
 * Augmentations for teacher distillation: pure functions over one batch of inputs as a flat
 * float32 array with its shape `[n, ...example]`, seeded by the project's RNG (src/core/random.ts)
 * so the same seed gives the same stream, and the same payload.
 *
 * The teacher scores the augmented input the student trains on, every step (never a cached row:
 * the loop in loop.ts computes the teacher's outputs on each augmented batch). Distillation holds
 * best when teacher and student see the same augmented input (Beyer et al., "Knowledge
 * distillation: a good teacher is patient and consistent", arXiv 2106.05237).
 *
 * Kinds, from an example's shape: audio features and spectrograms are 2-D or more, axis 0 time and
 * axis 1 frequency (`[frames, bins]` or `[frames, bins, 1]`); images are `[height, width,
 * channels]`; waveforms (for `speed` and `pitch`) are `[samples]` or `[samples, 1]`; mixup and noise take any
 * input. A stateful model's sequences are augmented whole, as waveforms ({@link waveAugmenter}). Amounts are relative to the batch's own spread
 * (its standard deviation), so they need no knowledge of how the inputs were scaled.
 * Imports nothing but the core (no tfjs): the functions are testable on plain arrays.
 */
import { UsageError } from '../core/errors.ts';
import type { Augmentation } from '../engine/program/augmentation.ts';
import { pitchShift, resample } from './resample.ts';

export type { Augmentation };

/** Augmentations by name, as `--augment` lists them. */
export const AUGMENTATIONS = ['time-shift', 'gain', 'noise', 'time-mask', 'freq-mask', 'freq-warp', 'time-stretch', 'speed', 'pitch', 'crop', 'flip', 'colour', 'mixup'] as const;
export type AugmentationName = (typeof AUGMENTATIONS)[number];

/** Largest time shift, as a share of the frames. */
const SHIFT_SHARE = 0.1;
/** Largest gain: an offset (log-domain features: a gain is an added constant) of this many standard deviations. */
const GAIN_STDS = 0.2;
/** Noise: Gaussian, this many standard deviations of the batch. */
const NOISE_STDS = 0.05;
/** Widest time or frequency mask, as a share of the axis (SpecAugment masks a few frames or bins). */
const MASK_SHARE = 0.15;
/** Frequency warp (VTLP): a factor drawn uniformly in [1 − w, 1 + w] (Jaitly and Hinton draw 0.9-1.1). */
const WARP_SPREAD = 0.1;
/** Frequency warp: the boundary, as a share of the top bin's position, above which the warp bends so the top bin stays. */
const WARP_BOUNDARY = 0.8;
/** Time stretch: a speaking rate drawn uniformly in [1 − s, 1 + s]. */
const STRETCH_SPREAD = 0.15;
/** Crop: pad by this share of the height and width and cut back at a random offset. */
const CROP_SHARE = 0.125;
/** Colour: contrast in [1 − c, 1 + c] about the example's mean, brightness ± this many standard deviations. */
const CONTRAST = 0.2;
const BRIGHTNESS_STDS = 0.1;
/** Speed perturbation: a factor drawn uniformly in [1 − s, 1 + s] (speech recipes use 0.9, 1.0 and 1.1). */
const SPEED_SPREAD = 0.1;
/** Pitch shift: up to this many semitones up or down, drawn uniformly, the timing kept. */
const PITCH_SEMITONES = 2;
/** A waveform sequence's gain: ± this many decibels, drawn uniformly. */
const WAVE_GAIN_DB = 6;
/** A waveform sequence's noise: white, at a signal-to-noise ratio drawn uniformly in this range (dB). */
const WAVE_SNR_DB = [10, 40] as const;

const perExample = (shape: readonly number[]) => shape.slice(1).reduce((a, d) => a * d, 1);

/**
 * Standard deviation of the batch's finite values (1 when flat or none is finite, so amounts stay
 * defined): silence in log-domain features can be -Infinity, which would make the spread NaN and
 * every amount taken from it meaningless.
 */
export function batchStd(x: Float32Array): number {
  let mean = 0;
  let n = 0;
  for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i])) {
    mean += x[i];
    n++;
  }
  mean /= Math.max(1, n);
  let v = 0;
  for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i])) v += (x[i] - mean) ** 2;
  const s = Math.sqrt(v / Math.max(1, n));
  return s > 0 ? s : 1;
}

/** The lowest value of `x[at .. at + size)` that is not NaN (-Infinity for silence stays): what time-shift and time-stretch pad with. */
function lowestOf(x: Float32Array, at: number, size: number): number {
  let floor = Infinity;
  for (let i = at; i < at + size; i++) if (x[i] < floor) floor = x[i];
  return floor === Infinity && !x.subarray(at, at + size).includes(Infinity) ? Number.NaN : floor;
}

/** A standard normal draw (Box-Muller). */
export function gaussian(random: () => number): number {
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** An integer in [-max, max]. */
const offset = (random: () => number, max: number) => Math.floor(random() * (2 * max + 1)) - max;

/**
 * Shift each example along time (axis 0) by up to a tenth of its frames; frames shifted in are
 * the example's lowest value (silence in log-domain features).
 */
export const timeShift: Augmentation = (x, shape, random) => {
  const n = shape[0];
  const size = perExample(shape);
  const frames = shape[1];
  const frame = size / frames;
  const max = Math.max(1, Math.floor(frames * SHIFT_SHARE));
  const out = new Float32Array(x.length);
  for (let e = 0; e < n; e++) {
    const at = e * size;
    const k = offset(random, max);
    const floor = lowestOf(x, at, size);
    for (let t = 0; t < frames; t++) {
      const from = t - k;
      for (let j = 0; j < frame; j++) out[at + t * frame + j] = from >= 0 && from < frames ? x[at + from * frame + j] : floor;
    }
  }
  return out;
};

/** Add one drawn offset to every value of an example (a gain, for log-domain features), up to 0.2 standard deviations. */
export const gain: Augmentation = (x, shape, random) => {
  const size = perExample(shape);
  const amount = GAIN_STDS * batchStd(x);
  const out = new Float32Array(x.length);
  for (let e = 0; e < shape[0]; e++) {
    const d = (2 * random() - 1) * amount;
    for (let i = e * size; i < (e + 1) * size; i++) out[i] = x[i] + d;
  }
  return out;
};

/** Add Gaussian noise of 0.05 standard deviations of the batch to every value. */
export const noise: Augmentation = (x, _shape, random) => {
  const sigma = NOISE_STDS * batchStd(x);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] + sigma * gaussian(random);
  return out;
};

/** Zero a band of up to 15% of an axis's positions, drawn per example (SpecAugment's masking). */
function maskAlong(axis: 1 | 2): Augmentation {
  return (x, shape, random) => {
    const size = perExample(shape);
    const len = shape[axis];
    const inner = shape.slice(axis + 1).reduce((a, d) => a * d, 1);
    const outer = size / (len * inner);
    const out = Float32Array.from(x);
    for (let e = 0; e < shape[0]; e++) {
      const width = Math.floor(random() * (Math.floor(len * MASK_SHARE) + 1));
      const start = Math.floor(random() * (len - width + 1));
      for (let o = 0; o < outer; o++) {
        for (let p = start; p < start + width; p++) out.fill(0, e * size + (o * len + p) * inner, e * size + (o * len + p + 1) * inner);
      }
    }
    return out;
  };
}
/** Zero a run of frames (axis 0 of an example). */
export const timeMask = maskAlong(1);
/** Zero a band of frequency bins (axis 1 of an example). */
export const freqMask = maskAlong(2);

/** A factor drawn uniformly in [1 − spread, 1 + spread] (exactly 1 for a draw of 1/2). */
const factor = (random: () => number, spread: number) => 1 + (2 * random() - 1) * spread;

/** `row[p]` read at a fractional position by linear interpolation, `p` in [0, len − 1]; elements `stride` apart. */
function lerpAt(x: Float32Array, at: number, stride: number, len: number, p: number): number {
  const i = Math.min(len - 1, Math.max(0, Math.floor(p)));
  const j = Math.min(len - 1, i + 1);
  const f = p - i;
  return f <= 0 ? x[at + i * stride] : (1 - f) * x[at + i * stride] + f * x[at + j * stride];
}

/**
 * Where the frequency warp with factor `alpha` reads output bin `k` of `bins` (a fractional bin
 * position): with F = bins − 1 the top bin's position and b = 0.8·F·min(alpha, 1)/alpha,
 * s(k) = alpha·k for k ≤ b, and above b the straight line from (b, alpha·b) to (F, F). Piecewise
 * linear, increasing, s(0) = 0 and s(F) = F, so every bin reads inside the range and the top band
 * stays; alpha = 1 is the identity.
 */
export function warpPosition(k: number, bins: number, alpha: number): number {
  const top = bins - 1;
  const b = (WARP_BOUNDARY * top * Math.min(alpha, 1)) / alpha;
  if (k <= b) return alpha * k;
  return alpha * b + ((top - alpha * b) * (k - b)) / (top - b);
}

/**
 * Warp each example's frequency axis (axis 1 of `[frames, bins]` or `[frames, bins, channels]`) by
 * its factor `alphas[e]`: bin k of every frame (and channel) becomes the input read at
 * {@link warpPosition}(k) by linear interpolation between the two nearest bins.
 */
export function warpBins(x: Float32Array, shape: readonly number[], alphas: readonly number[]): Float32Array {
  const size = perExample(shape);
  const bins = shape[2];
  const inner = shape.slice(3).reduce((a, d) => a * d, 1);
  const frames = size / (bins * inner);
  const out = new Float32Array(x.length);
  const from = new Float64Array(bins);
  for (let e = 0; e < shape[0]; e++) {
    for (let k = 0; k < bins; k++) from[k] = warpPosition(k, bins, alphas[e]);
    for (let t = 0; t < frames; t++) {
      for (let c = 0; c < inner; c++) {
        const at = e * size + t * bins * inner + c;
        for (let k = 0; k < bins; k++) out[at + k * inner] = lerpAt(x, at, inner, bins, from[k]);
      }
    }
  }
  return out;
}

/**
 * Vocal tract length perturbation (VTLP, after Jaitly and Hinton, "Vocal Tract Length Perturbation
 * improves speech recognition", 2013): speakers differ mostly by a scaling of the frequency axis,
 * so each example's bins are warped by one factor alpha drawn in [0.9, 1.1], piecewise linear with
 * a bend at 80% of the axis so the highest bins stay inside it ({@link warpPosition}). The warp is
 * applied to the bins as they are (mel bins for log-mel features, not the linear spectrum VTLP warps
 * before its filterbank): the same idea on the model's input, without the audio.
 */
export const freqWarp: Augmentation = (x, shape, random) => warpBins(x, shape, Array.from({ length: shape[0] }, () => factor(random, WARP_SPREAD)));

/**
 * Stretch each example's time axis (axis 0 of `[frames, bins]` or `[frames, bins, channels]`) about
 * its centre frame c = (frames − 1)/2 by its speaking rate `rates[e]`: frame t becomes the input
 * read at c + (t − c)·rate by linear interpolation between the two nearest frames. A rate above 1
 * speaks faster (the word takes fewer frames): positions read beyond either end give the example's
 * lowest value (silence in log-domain features, as {@link timeShift} shifts in); below 1 the ends
 * are cut. The frame count is kept.
 */
export function stretchFrames(x: Float32Array, shape: readonly number[], rates: readonly number[]): Float32Array {
  const size = perExample(shape);
  const frames = shape[1];
  const frame = size / frames;
  const centre = (frames - 1) / 2;
  const out = new Float32Array(x.length);
  for (let e = 0; e < shape[0]; e++) {
    const at = e * size;
    const floor = lowestOf(x, at, size);
    for (let t = 0; t < frames; t++) {
      const p = centre + (t - centre) * rates[e];
      // A rounding hair beyond an end still reads the end frame.
      const inside = p >= -1e-6 && p <= frames - 1 + 1e-6;
      for (let j = 0; j < frame; j++) out[at + t * frame + j] = inside ? lerpAt(x, at + j, frame, frames, Math.min(frames - 1, Math.max(0, p))) : floor;
    }
  }
  return out;
}

/** Speaking-rate perturbation on the frames: each example stretched about its centre by a rate drawn in [0.85, 1.15] ({@link stretchFrames}). */
export const timeStretch: Augmentation = (x, shape, random) => stretchFrames(x, shape, Array.from({ length: shape[0] }, () => factor(random, STRETCH_SPREAD)));

/**
 * Speed perturbation of waveforms (`[n, samples]` or `[n, samples, 1]`): each example read at a
 * speed drawn in [0.9, 1.1], band-limited (src/train/resample.ts), its length kept (a speed-up
 * ends in silence, a slow-down is cut). Speed and pitch change together ({@link pitch} keeps the timing).
 */
export const speed: Augmentation = (x, shape, random) => {
  const size = perExample(shape);
  const out = new Float32Array(x.length);
  for (let e = 0; e < shape[0]; e++) {
    const factor = 1 + (2 * random() - 1) * SPEED_SPREAD;
    out.set(resample(x.subarray(e * size, (e + 1) * size), factor), e * size);
  }
  return out;
};

/**
 * Pitch shift of waveforms (`[n, samples]` or `[n, samples, 1]`): each example's frequencies moved
 * by up to 2 semitones, drawn, with its timing kept (src/train/resample.ts `pitchShift`: resampled,
 * then time-stretched back by WSOLA, as sox's `pitch` does).
 */
export const pitch: Augmentation = (x, shape, random) => {
  const size = perExample(shape);
  const out = new Float32Array(x.length);
  for (let e = 0; e < shape[0]; e++) {
    const factor = 2 ** (((2 * random() - 1) * PITCH_SEMITONES) / 12);
    out.set(pitchShift(x.subarray(e * size, (e + 1) * size), factor), e * size);
  }
  return out;
};

/** Move an image by (dy, dx) pixels, zeros shifted in: a crop of the image padded by |dy|, |dx|. */
export function translateImage(x: Float32Array, at: number, h: number, w: number, c: number, dy: number, dx: number, out: Float32Array): void {
  for (let r = 0; r < h; r++) {
    for (let q = 0; q < w; q++) {
      const sr = r - dy;
      const sq = q - dx;
      const inside = sr >= 0 && sr < h && sq >= 0 && sq < w;
      for (let k = 0; k < c; k++) out[at + (r * w + q) * c + k] = inside ? x[at + (sr * w + sq) * c + k] : 0;
    }
  }
}

/** A random crop with padding: each image padded by an eighth of its size (a pixel at least; zeros) and cut back at a random offset. */
export const crop: Augmentation = (x, shape, random) => {
  const [n, h, w, c] = shape;
  const out = new Float32Array(x.length);
  for (let e = 0; e < n; e++) translateImage(x, e * h * w * c, h, w, c, offset(random, Math.max(1, Math.floor(h * CROP_SHARE))), offset(random, Math.max(1, Math.floor(w * CROP_SHARE))), out);
  return out;
};

/** Mirror one image left to right, in place in `out` (its own inverse). */
export function flipImage(x: Float32Array, at: number, h: number, w: number, c: number, out: Float32Array): void {
  for (let r = 0; r < h; r++) {
    for (let q = 0; q < w; q++) {
      for (let k = 0; k < c; k++) out[at + (r * w + q) * c + k] = x[at + (r * w + (w - 1 - q)) * c + k];
    }
  }
}

/** Mirror each image left to right with probability 1/2. */
export const flip: Augmentation = (x, shape, random) => {
  const [n, h, w, c] = shape;
  const out = Float32Array.from(x);
  for (let e = 0; e < n; e++) if (random() < 0.5) flipImage(x, e * h * w * c, h, w, c, out);
  return out;
};

/** Brightness and contrast: each image scaled about its mean by [0.8, 1.2] and moved by ± 0.1 standard deviations. */
export const colour: Augmentation = (x, shape, random) => {
  const size = perExample(shape);
  const step = BRIGHTNESS_STDS * batchStd(x);
  const out = new Float32Array(x.length);
  for (let e = 0; e < shape[0]; e++) {
    const at = e * size;
    // The mean of the finite values: one infinite pixel would make it infinite and every other pixel NaN.
    let mean = 0;
    let finite = 0;
    for (let i = 0; i < size; i++) if (Number.isFinite(x[at + i])) {
      mean += x[at + i];
      finite++;
    }
    mean /= Math.max(1, finite);
    const contrast = 1 + (2 * random() - 1) * CONTRAST;
    const brightness = (2 * random() - 1) * step;
    for (let i = 0; i < size; i++) out[at + i] = (x[at + i] - mean) * contrast + mean + brightness;
  }
  return out;
};

/** Mixup's draw for a batch: each example's weight λ in [0, 1] (a draw just under 1 rounds to 1 in float32) and the partner it mixes with. */
export function mixupDraw(n: number, random: () => number): { weight: Float32Array; partner: Int32Array } {
  const weight = new Float32Array(n);
  const partner = new Int32Array(n);
  for (let e = 0; e < n; e++) {
    weight[e] = random();
    partner[e] = Math.floor(random() * n);
  }
  return { weight, partner };
}

/**
 * Mixup between examples of the batch: example e becomes λ·x_e + (1 − λ)·x_partner. λ is uniform:
 * the teacher scores the mixed input, so no label needs mixing, and the whole segment between two
 * inputs teaches (function matching, arXiv 2106.05237).
 */
export const mixup: Augmentation = (x, shape, random) => {
  const size = perExample(shape);
  const { weight, partner } = mixupDraw(shape[0], random);
  const out = new Float32Array(x.length);
  for (let e = 0; e < shape[0]; e++) {
    const l = weight[e];
    const p = partner[e] * size;
    // A weight of 0 is the partner as it is, a weight of 1 the example (0 times an infinity would
    // be NaN); a draw just under 1 is 1 once stored as float32.
    if (l === 0) out.set(x.subarray(p, p + size), e * size);
    else if (l === 1) out.set(x.subarray(e * size, (e + 1) * size), e * size);
    else for (let i = 0; i < size; i++) out[e * size + i] = l * x[e * size + i] + (1 - l) * x[p + i];
  }
  return out;
};

const BY_NAME: Record<AugmentationName, Augmentation> = { 'time-shift': timeShift, gain, noise, 'time-mask': timeMask, 'freq-mask': freqMask, 'freq-warp': freqWarp, 'time-stretch': timeStretch, speed, pitch, crop, flip, colour, mixup };

/** What an augmentation needs of an example's shape, or undefined when it takes any. */
function needs(name: AugmentationName): { kind: string; fits: (example: readonly number[]) => boolean } | undefined {
  if (['time-shift', 'time-mask', 'freq-mask', 'freq-warp', 'time-stretch'].includes(name)) return { kind: 'audio features or a spectrogram, [frames, bins] or [frames, bins, channels]', fits: (s) => s.length >= 2 && s[0] > 1 && s[1] > 1 };
  if (['crop', 'flip'].includes(name)) return { kind: 'an image, [height, width, channels]', fits: (s) => s.length === 3 && s[0] > 1 && s[1] > 1 };
  if (name === 'speed' || name === 'pitch') return { kind: 'a waveform, [samples] or [samples, 1]', fits: (s) => s[0] > 1 && (s.length === 1 || (s.length === 2 && s[1] === 1)) };
  return undefined;
}

/**
 * The augmentations `--augment` asks for (`none`, or a comma-separated list in the order they
 * apply), checked against an example's shape; an empty list for `none`.
 * @throws UsageError for an unknown name, or one that does not fit the input (a crop of a vector).
 */
export function parseAugment(spec: string | readonly string[], example: readonly number[]): AugmentationName[] {
  const names = (typeof spec === 'string' ? spec.split(',') : spec.flatMap((s) => s.split(','))).map((s) => s.trim()).filter(Boolean);
  if (names.length === 0 || (names.length === 1 && names[0] === 'none')) return [];
  const out: AugmentationName[] = [];
  for (const name of names) {
    if (!(AUGMENTATIONS as readonly string[]).includes(name)) throw new UsageError(`unknown augmentation ${JSON.stringify(name)}: expected none, auto (with a teacher: chosen on validation) or a comma-separated list of ${AUGMENTATIONS.join(', ')}`, { augmentation: name });
    const need = needs(name as AugmentationName);
    if (need && !need.fits(example)) throw new UsageError(`augmentation ${name} needs ${need.kind}; this model's input is [${example.join(', ')}] per example: leave ${name} out (mixup and noise fit any input)`, { augmentation: name });
    if (!out.includes(name as AugmentationName)) out.push(name as AugmentationName);
  }
  return out;
}

/** The listed augmentations applied in order, one batch at a time; undefined when none is listed. */
export function augmenter(names: readonly AugmentationName[]): Augmentation | undefined {
  if (names.length === 0) return undefined;
  return (x, shape, random) => names.reduce((batch, name) => BY_NAME[name](batch, shape, random), x);
}

// ---------------------------------------------------------------------------------------------
// Whole sequences of a stateful model, as waveforms

/** What a stateful model's sequences take: one draw per sequence, applied to its whole waveform. */
export const SEQUENCE_AUGMENTATIONS = ['gain', 'noise', 'speed', 'pitch'] as const;
export type SequenceAugmentationName = (typeof SEQUENCE_AUGMENTATIONS)[number];

/** Scale each waveform by one gain drawn in ± 6 dB. */
export const waveGain: Augmentation = (x, shape, random) => {
  const size = perExample(shape);
  const out = new Float32Array(x.length);
  for (let e = 0; e < shape[0]; e++) {
    const g = 10 ** (((2 * random() - 1) * WAVE_GAIN_DB) / 20);
    for (let i = e * size; i < (e + 1) * size; i++) out[i] = x[i] * g;
  }
  return out;
};

/** Add white noise to each waveform at one signal-to-noise ratio drawn in [10, 40] dB of its own RMS (silence stays silent). */
export const waveNoise: Augmentation = (x, shape, random) => {
  const size = perExample(shape);
  const out = new Float32Array(x.length);
  for (let e = 0; e < shape[0]; e++) {
    let power = 0;
    for (let i = e * size; i < (e + 1) * size; i++) power += x[i] * x[i];
    const rms = Math.sqrt(power / Math.max(1, size));
    const snr = WAVE_SNR_DB[0] + random() * (WAVE_SNR_DB[1] - WAVE_SNR_DB[0]);
    const sigma = rms * 10 ** (-snr / 20);
    for (let i = e * size; i < (e + 1) * size; i++) out[i] = x[i] + sigma * gaussian(random);
  }
  return out;
};

const WAVE_BY_NAME: Record<SequenceAugmentationName, Augmentation> = { gain: waveGain, noise: waveNoise, speed, pitch };

/**
 * The augmentations `--augment` asks of a stateful model (`none`, or a comma-separated list of
 * gain, noise, speed and pitch in the order they apply); an empty list for `none`.
 * @throws UsageError for any other name, saying what fits.
 */
export function parseSequenceAugment(spec: string | readonly string[], source: string): SequenceAugmentationName[] {
  const names = (typeof spec === 'string' ? spec.split(',') : spec.flatMap((s) => s.split(','))).map((s) => s.trim()).filter(Boolean);
  if (names.length === 0 || (names.length === 1 && names[0] === 'none')) return [];
  const out: SequenceAugmentationName[] = [];
  for (const name of names) {
    if (!(SEQUENCE_AUGMENTATIONS as readonly string[]).includes(name)) {
      throw new UsageError(`${source} carries state from frame to frame, so its sequences are augmented whole, as waveforms: ${SEQUENCE_AUGMENTATIONS.join(', ')} fit (one draw per sequence); found ${JSON.stringify(name)}: leave it out of --augment`, { augmentation: name, fits: [...SEQUENCE_AUGMENTATIONS] });
    }
    if (!out.includes(name as SequenceAugmentationName)) out.push(name as SequenceAugmentationName);
  }
  return out;
}

/**
 * Waveform augmentations applied in order to each example of a batch `[n, samples]` (a stateful
 * model gives one sequence's whole waveform at a time): gain scales, noise is white at a drawn
 * ratio, speed resamples, pitch shifts at the same timing; undefined when none is listed.
 */
export function waveAugmenter(names: readonly SequenceAugmentationName[]): Augmentation | undefined {
  if (names.length === 0) return undefined;
  return (x, shape, random) => names.reduce((batch, name) => WAVE_BY_NAME[name](batch, shape, random), x);
}
