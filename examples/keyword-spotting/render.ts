/**
 * Rendering one planned row of the keyword-spotting data: run the synthesizer (or take a decoded
 * recording), resample to 16 kHz with speed perturbation, centre on the energy, apply the row's
 * augmentation (time shift, synthetic room, microphone band limits, gain, noise) and compute
 * the log-mel features. Everything random is drawn from the row's own seed, so a row renders to
 * the same bytes in any process and in any order.
 *
 * Used by the worker processes of `data.ts` (see `worker.ts`).
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ComplexFFT, KWS_LOGMEL, LogMel, centerOnEnergy, energyWindowStart } from '../lib/audio/logmel.ts';
import { resample } from '../lib/audio/resample.ts';

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** 32-bit FNV-1a of a string, then a murmur finalizer. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** mulberry32: small, fast, seedable. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  static of(...parts: (string | number)[]): Rng {
    return new Rng(hash32(parts.join('/')));
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** uniform on a grid: lo, lo+step, ..., hi */
  grid(lo: number, hi: number, step: number): number {
    const n = Math.round((hi - lo) / step);
    return Math.round((lo + step * Math.floor(this.next() * (n + 1))) * 1e6) / 1e6;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  gauss(): number {
    const u = Math.max(this.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}


// =============================================================================================
// Audio I/O

/**
 * Decodes a RIFF WAV (16-bit PCM or 32-bit float, any channel count, mixed to mono). Streamed
 * WAVs whose data size is a placeholder (espeak-ng --stdout) are read to the end.
 */
export function parseWav(buf: Buffer, what: string): { pcm: Float32Array; rate: number } {
  if (buf.length < 12 || buf.toString('latin1', 0, 4) !== 'RIFF' || buf.toString('latin1', 8, 12) !== 'WAVE') {
    throw new Error(`${what}: not a WAV stream (${buf.length} bytes)`);
  }
  let off = 12;
  let fmt: { format: number; channels: number; rate: number; bits: number } | undefined;
  while (off + 8 <= buf.length) {
    const id = buf.toString('latin1', off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ') {
      fmt = { format: buf.readUInt16LE(body), channels: buf.readUInt16LE(body + 2), rate: buf.readUInt32LE(body + 4), bits: buf.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      if (!fmt) throw new Error(`${what}: WAV data before fmt chunk`);
      // streamed WAVs (espeak-ng --stdout) carry a placeholder size: read to the end
      const end = size === 0 || body + size > buf.length ? buf.length : body + size;
      const { channels, bits, format } = fmt;
      const frames = Math.floor((end - body) / ((bits / 8) * channels));
      const pcm = new Float32Array(frames);
      for (let i = 0; i < frames; i++) {
        let s = 0;
        for (let c = 0; c < channels; c++) {
          const p = body + (i * channels + c) * (bits / 8);
          if (format === 1 && bits === 16) s += buf.readInt16LE(p) / 32768;
          else if (format === 3 && bits === 32) s += buf.readFloatLE(p);
          else throw new Error(`${what}: unsupported WAV encoding format=${format} bits=${bits}`);
        }
        pcm[i] = s / channels;
      }
      return { pcm, rate: fmt.rate };
    }
    off = body + size + (size & 1);
  }
  throw new Error(`${what}: WAV without data chunk`);
}

/** Runs a command and resolves with its stdout; rejects with its stderr on a non-zero exit. */
export function runCapture(cmd: string, args: string[]): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => err.push(c));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code === 0) resolvePromise(Buffer.concat(out));
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${Buffer.concat(err).toString().trim()}`));
    });
  });
}

/** Decodes any audio file sox reads (ogg here) to 16 kHz mono float32. */
export async function decodeWithSox(file: string): Promise<Float32Array> {
  const raw = await runCapture('sox', [file, '-t', 'f32', '-e', 'floating-point', '-r', '16000', '-c', '1', '-']);
  const copy = new Uint8Array(raw.length - (raw.length % 4));
  copy.set(raw.subarray(0, copy.length));
  return new Float32Array(copy.buffer);
}

// =============================================================================================
// Signal processing helpers

/** Additive noise types: synthetic colours, or babble from foreign-language recordings. */
export type NoiseKind = 'white' | 'pink' | 'brown' | 'babble';

function coloredNoise(kind: Exclude<NoiseKind, 'babble'>, n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  let b0 = 0, b1 = 0, b2 = 0, b3 = 0, b4 = 0, b5 = 0, b6 = 0, last = 0;
  for (let i = 0; i < n; i++) {
    const w = rng.gauss();
    if (kind === 'white') out[i] = w;
    else if (kind === 'pink') {
      // Paul Kellet's refined pink filter
      b0 = 0.99886 * b0 + w * 0.0555179;
      b1 = 0.99332 * b1 + w * 0.0750759;
      b2 = 0.969 * b2 + w * 0.153852;
      b3 = 0.8665 * b3 + w * 0.3104856;
      b4 = 0.55 * b4 + w * 0.5329522;
      b5 = -0.7616 * b5 - w * 0.016898;
      out[i] = b0 + b1 + b2 + b3 + b4 + b5 + b6 + w * 0.5362;
      b6 = w * 0.115926;
    } else {
      last = 0.995 * last + 0.1 * w;
      out[i] = last;
    }
  }
  return normalizeRms(out);
}

function rms(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s / Math.max(1, x.length));
}

function normalizeRms(x: Float32Array): Float32Array {
  const r = rms(x);
  if (r > 0) for (let i = 0; i < x.length; i++) x[i] /= r;
  return x;
}

/** RMS over the active part of a clip (10 ms frames within 30 dB of the loudest). */
function activeRms(x: Float32Array): number {
  const F = 160;
  const frames = Math.floor(x.length / F);
  const e = new Float64Array(frames);
  let max = 0;
  for (let f = 0; f < frames; f++) {
    let s = 0;
    for (let i = f * F; i < (f + 1) * F; i++) s += x[i] * x[i];
    e[f] = s / F;
    if (e[f] > max) max = e[f];
  }
  let sum = 0;
  let count = 0;
  for (let f = 0; f < frames; f++) {
    if (e[f] >= max * 1e-3) {
      sum += e[f];
      count++;
    }
  }
  return count ? Math.sqrt(sum / count) : 0;
}

/** RMS of the quietest 10% of 10 ms frames: the recording's background level. */
function noiseFloorRms(x: Float32Array): number {
  const F = 160;
  const frames = Math.floor(x.length / F);
  if (frames === 0) return 0;
  const e = new Float64Array(frames);
  for (let f = 0; f < frames; f++) {
    let s = 0;
    for (let i = f * F; i < (f + 1) * F; i++) s += x[i] * x[i];
    e[f] = s / F;
  }
  e.sort();
  const k = Math.max(1, Math.floor(frames / 10));
  let s = 0;
  for (let i = 0; i < k; i++) s += e[i];
  return Math.sqrt(s / k);
}

/** Babble: 3-6 overlapping foreign-language recordings at random offsets, unit RMS. */
function babbleNoise(bank: Float32Array[], n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  const talkers = 3 + rng.int(4);
  for (let t = 0; t < talkers; t++) {
    const clip = bank[rng.int(bank.length)];
    if (clip.length === 0) continue;
    const g = rng.uniform(0.5, 1) / Math.max(1e-6, rms(clip));
    let p = rng.int(clip.length);
    for (let i = 0; i < n; i++) {
      out[i] += g * clip[p];
      if (++p >= clip.length) p = 0;
    }
  }
  return normalizeRms(out);
}

/** RBJ biquad (in place). */
function biquad(x: Float32Array, type: 'lowpass' | 'highpass', fc: number, fs: number): void {
  const w0 = (2 * Math.PI * fc) / fs;
  const alpha = Math.sin(w0) / (2 * Math.SQRT1_2);
  const cw = Math.cos(w0);
  let b0: number, b1: number, b2: number;
  if (type === 'lowpass') {
    b0 = (1 - cw) / 2;
    b1 = 1 - cw;
    b2 = (1 - cw) / 2;
  } else {
    b0 = (1 + cw) / 2;
    b1 = -(1 + cw);
    b2 = (1 + cw) / 2;
  }
  const a0 = 1 + alpha;
  const a1 = -2 * cw;
  const a2 = 1 - alpha;
  let x1 = 0, x2 = 0, y1 = 0, y2 = 0;
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i];
    const y0 = (b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2) / a0;
    x2 = x1;
    x1 = x0;
    y2 = y1;
    y1 = y0;
    x[i] = y0;
  }
}

/** Far-field room and microphone parameters of one row. */
export interface FarField {
  /** reverberation time, s */
  rt60: number;
  /** direct-to-reverberant ratio, dB */
  drrDb: number;
  /** microphone high-pass, Hz */
  highpassHz: number;
  /** microphone low-pass, Hz */
  lowpassHz: number;
}

const fftCache = new Map<number, ComplexFFT>();

/** Synthetic room impulse response: direct path, early reflections, exponentially decaying tail. */
function roomImpulse(ff: FarField, rng: Rng, fs: number): Float32Array {
  const len = Math.max(64, Math.round(Math.min(ff.rt60, 0.6) * fs));
  const h = new Float32Array(len);
  const tail = new Float32Array(len);
  const start = Math.round(0.004 * fs);
  for (let i = start; i < len; i++) tail[i] = rng.gauss() * Math.exp((-6.9 * (i - start)) / (ff.rt60 * fs));
  const reflections = 6 + rng.int(6);
  for (let r = 0; r < reflections; r++) {
    const i = Math.round(rng.uniform(0.002, 0.03) * fs);
    if (i < len) tail[i] += (rng.chance(0.5) ? -1 : 1) * rng.uniform(0.2, 0.6);
  }
  let e = 0;
  for (let i = 0; i < len; i++) e += tail[i] * tail[i];
  const g = Math.sqrt(10 ** (-ff.drrDb / 10) / Math.max(e, 1e-12));
  for (let i = 0; i < len; i++) h[i] = g * tail[i];
  h[0] += 1;
  return h;
}

/** Linear convolution via one packed complex FFT; returns the first x.length samples. */
function convolve(x: Float32Array, h: Float32Array): Float32Array {
  let N = 1;
  while (N < x.length + h.length) N <<= 1;
  let fft = fftCache.get(N);
  if (!fft) fftCache.set(N, (fft = new ComplexFFT(N)));
  const re = new Float64Array(N);
  const im = new Float64Array(N);
  re.set(x);
  for (let i = 0; i < h.length; i++) im[i] = h[i];
  fft.transform(re, im);
  // unpack X (from re) and H (from im), multiply
  const yr = new Float64Array(N);
  const yi = new Float64Array(N);
  for (let k = 0; k < N; k++) {
    const j = (N - k) & (N - 1);
    const xr = 0.5 * (re[k] + re[j]);
    const xi = 0.5 * (im[k] - im[j]);
    const hr = 0.5 * (im[k] + im[j]);
    const hi = -0.5 * (re[k] - re[j]);
    yr[k] = xr * hr - xi * hi;
    yi[k] = xr * hi + xi * hr;
  }
  fft.transform(yr, yi, true);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = yr[i];
  return out;
}

// =============================================================================================
// Plan: every row of every split, decided up front from the seed

/** Where a row's audio comes from: a synthesizer call, a decoded recording, or noise only. */
export type Synth =
  | { kind: 'espeak'; accent: string; variant: string; speed: number; pitch: number; text: string }
  | { kind: 'flite'; voice: string; stretch: number; text: string; /** mean pitch, Hz (flite's int_f0_target_mean); the voice's own when absent */ f0?: number }
  | { kind: 'real'; file: string }
  | { kind: 'noise'; noise: Exclude<NoiseKind, 'babble'> | 'babble' | 'zero'; levelDb: number };

/** Augmentation of one row, applied after the clip is centred on its energy. */
export interface Aug {
  /** speed perturbation factor (resampling; > 1 is faster and higher) */
  speed: number;
  /** time shift, ms */
  shiftMs: number;
  /** gain, dB */
  gainDb: number;
  far: FarField | null;
  noise: { kind: NoiseKind; snrDb: number } | null;
}

/** One planned row: its label, its source (index into the manifest's sources), how to make it. */
export interface Row {
  /** class index */
  label: number;
  /** index into `manifest.sources` */
  source: number;
  synth: Synth;
  aug: Aug;
  /** seed of the noise / room generators of this row */
  seed: number;
  /** which babble bank a babble noise draws from */
  babble?: 'train' | 'eval';
}

// =============================================================================================
// Execution

/** Audio decoded once in the parent and sent to every worker. */
export interface Assets {
  /** real recordings by file path, 16 kHz mono */
  real: Map<string, Float32Array>;
  /** foreign-language recordings that babble noise is mixed from */
  babble: { train: Float32Array[]; eval: Float32Array[] };
}

let fliteCounter = 0;

/** Produces the raw audio of a row (any sample rate; noise rows return nothing here). */
export async function synthesize(row: Row, assets: Assets): Promise<{ pcm: Float32Array; rate: number }> {
  const s = row.synth;
  if (s.kind === 'espeak') {
    const voice = s.variant ? `${s.accent}+${s.variant}` : s.accent;
    const buf = await runCapture('espeak-ng', ['-v', voice, '-s', String(s.speed), '-p', String(s.pitch), '--stdout', s.text]);
    return parseWav(buf, `espeak-ng -v ${voice} "${s.text}"`);
  }
  if (s.kind === 'flite') {
    // flite cannot write to a socket (Node's child stdout), so it writes a temporary file
    const tmp = join(tmpdir(), `kws-flite-${process.pid}-${++fliteCounter}.wav`);
    try {
      const pitch = s.f0 === undefined ? [] : ['--setf', `int_f0_target_mean=${s.f0}`];
      await runCapture('flite', ['-voice', s.voice, '--setf', `duration_stretch=${s.stretch}`, ...pitch, '-t', s.text, '-o', tmp]);
      return parseWav(readFileSync(tmp), `flite -voice ${s.voice} "${s.text}"`);
    } finally {
      rmSync(tmp, { force: true });
    }
  }
  if (s.kind === 'real') {
    const pcm = assets.real.get(s.file);
    if (!pcm) throw new Error(`recording ${s.file} was not decoded`);
    return { pcm, rate: 16000 };
  }
  return { pcm: new Float32Array(0), rate: 16000 };
}

const CLIP = KWS_LOGMEL.clipSamples;
const FS = KWS_LOGMEL.sampleRate;

/** Turns one row into its 1 s, 16 kHz waveform (centred, augmented). Pure given the row. */
export function render(row: Row, audio: { pcm: Float32Array; rate: number }, assets: Assets): Float32Array {
  const rng = new Rng(row.seed);
  const s = row.synth;
  if (s.kind === 'noise') {
    const out =
      s.noise === 'zero'
        ? new Float32Array(CLIP)
        : s.noise === 'babble'
          ? babbleNoise(assets.babble[row.babble ?? 'train'], CLIP, rng)
          : coloredNoise(s.noise, CLIP, rng);
    const g = s.noise === 'zero' ? 0 : 10 ** (s.levelDb / 20);
    for (let i = 0; i < CLIP; i++) out[i] = out[i] * g + (rng.next() - 0.5) * 2 ** -15;
    return out;
  }
  const a = row.aug;
  // resample to 16 kHz with speed perturbation folded in
  let pcm = audio.rate * a.speed === FS ? audio.pcm : resample(audio.pcm, audio.rate * a.speed, FS);
  if (s.kind === 'real') {
    // recordings carry background noise: pad with noise at their floor level, not digital zero
    const start = energyWindowStart(pcm, CLIP, FS);
    const centred = centerOnEnergy(pcm, CLIP, FS);
    const floor = noiseFloorRms(pcm);
    for (let i = 0; i < CLIP; i++) {
      const j = start + i;
      if (j < 0 || j >= pcm.length) centred[i] = floor * rng.gauss();
    }
    pcm = centred;
  } else {
    pcm = centerOnEnergy(pcm, CLIP, FS);
  }
  if (a.shiftMs !== 0) {
    const shift = Math.round((a.shiftMs / 1000) * FS);
    const shifted = new Float32Array(CLIP);
    for (let i = 0; i < CLIP; i++) {
      const j = i - shift;
      if (j >= 0 && j < CLIP) shifted[i] = pcm[j];
    }
    pcm = shifted;
  }
  if (a.far) {
    pcm = convolve(pcm, roomImpulse(a.far, rng, FS));
    biquad(pcm, 'highpass', a.far.highpassHz, FS);
    if (a.far.lowpassHz < FS / 2 - 100) biquad(pcm, 'lowpass', a.far.lowpassHz, FS);
  }
  const g = 10 ** (a.gainDb / 20);
  for (let i = 0; i < CLIP; i++) pcm[i] *= g;
  if (a.noise) {
    const n =
      a.noise.kind === 'babble' ? babbleNoise(assets.babble[row.babble ?? 'train'], CLIP, rng) : coloredNoise(a.noise.kind, CLIP, rng);
    const level = activeRms(pcm) * 10 ** (-a.noise.snrDb / 20);
    for (let i = 0; i < CLIP; i++) pcm[i] += level * n[i];
  }
  for (let i = 0; i < CLIP; i++) {
    // the microphone's ADC clips
    if (pcm[i] > 1) pcm[i] = 1;
    else if (pcm[i] < -1) pcm[i] = -1;
  }
  return pcm;
}


/**
 * Renders rows into log-mel features: synthesis processes run concurrently, the DSP in this
 * thread. One instance per process.
 */
export class RowRenderer {
  private readonly lm = new LogMel();
  constructor(private readonly assets: Assets) {}

  /** Values per row (49 * 40). */
  get size(): number {
    return this.lm.size;
  }

  /** Renders one row into `out` at `offset`. */
  async renderInto(row: Row, out: Float32Array, offset: number): Promise<void> {
    const audio = await synthesize(row, this.assets);
    const pcm = render(row, audio, this.assets);
    this.lm.compute(pcm, out, offset, 'none');
  }
}
