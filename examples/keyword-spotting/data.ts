/**
 * Keyword-spotting benchmark data (issue #4, item 1).
 *
 * Generates the features a keyword CNN is trained and evaluated on through a base model and five
 * successive updates, each shipped to the device as a diff against the model it holds:
 *
 * | step | update           | what changes                                                        |
 * |------|------------------|---------------------------------------------------------------------|
 * | 0    | base             | 24 command words + `_silence_` + `_unknown_`, espeak-ng voices      |
 * | 1    | new-words-1      | 4 new words (car, dog, key, hot)                                    |
 * | 2    | new-words-2      | 4 new words (ball, ear, sky, jet)                                   |
 * | 3    | flite-voices     | same words, another synthesizer (flite): a domain shift             |
 * | 4    | real-voices      | real recordings (ktuberling / klettres), split by speaker           |
 * | 5    | far-field        | reverberant rooms, cheap microphones, babble and colored noise      |
 *
 * The class index space is fixed up front (every word any update uses, plus spare slots) and
 * written with everything else to `manifest.json`. Each split is `x.npy` (float32
 * `[n, 49, 40, 1]` log-mel, see `examples/lib/audio/logmel.ts`), `y.npy` (int32 class index) and
 * `source.npy` (int32 index into `manifest.sources`: which voice / speaker made the row).
 *
 * Run: `node --import tsx examples/keyword-spotting/data.ts [--quick] [--out DIR] [--seed N] [--jobs N] [--inflight N]`
 *
 * Missing Debian packages (espeak-ng, flite, sox, ktuberling-data, klettres-data) are installed
 * with apt-get at run time; the sound data is GPL-2+ and never committed.
 *
 * @module
 */
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UsageError } from '../../src/core/errors.ts';
import { KWS_LOGMEL, frameCount } from '../lib/audio/logmel.ts';
import { writeNpy } from '../../src/io/npy/npy.ts';
import { Rng, decodeWithSox, type Assets, type Aug, type NoiseKind, type Row } from './render.ts';
import type { CpuSeconds, FromWorker, ToWorker } from './worker.ts';

// =============================================================================================
// Vocabulary and the fixed class index space

/** Words of the base model (update 0). */
export const BASE_WORDS = [
  'yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop', 'go', 'start', 'back',
  'next', 'play', 'zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine',
] as const;
/**
 * Words added by update 1. Both klettres-data English speakers recorded all four (and
 * ktuberling's speaker recorded car), so update 4 can close their synthetic-to-real gap.
 */
export const UPDATE1_WORDS = ['car', 'dog', 'key', 'hot'] as const;
/**
 * Words added by update 2: ball and ear are in ktuberling-data's English set (and klettres
 * en_GB's), sky and jet in both klettres English sets.
 */
export const UPDATE2_WORDS = ['ball', 'ear', 'sky', 'jet'] as const;
/** Output slots reserved for later updates (no data). */
export const SPARE_SLOTS = 4;
/** Filler words the synthetic `_unknown_` class is made of (disjoint from every class word). */
export const UNKNOWN_WORDS = [
  'bed', 'bird', 'cat', 'happy', 'house', 'tree', 'wow', 'follow', 'forward', 'learn', 'visual',
  'apple', 'river', 'window', 'table', 'green', 'orange', 'music', 'paper', 'water', 'money',
  'chair', 'yellow', 'purple', 'monkey', 'pencil', 'hello', 'sheila', 'marvin', 'garden',
] as const;

/** Kind of a class slot. */
export type ClassKind = 'silence' | 'unknown' | 'word' | 'spare';

/** One slot of the class index space. */
export interface ClassInfo {
  index: number;
  name: string;
  kind: ClassKind;
  /** Update step that first trains this class (0 = base), or null for a spare slot. */
  introducedIn: number | null;
}

/** The fixed class index space: `_silence_`, `_unknown_`, base words, update words, spares. */
export function classTable(): ClassInfo[] {
  const out: ClassInfo[] = [];
  const add = (name: string, kind: ClassKind, introducedIn: number | null) =>
    out.push({ index: out.length, name, kind, introducedIn });
  add('_silence_', 'silence', 0);
  add('_unknown_', 'unknown', 0);
  for (const w of BASE_WORDS) add(w, 'word', 0);
  for (const w of UPDATE1_WORDS) add(w, 'word', 1);
  for (const w of UPDATE2_WORDS) add(w, 'word', 2);
  for (let i = 0; i < SPARE_SLOTS; i++) add(`_spare_${i}`, 'spare', null);
  return out;
}

// =============================================================================================
// Voices

/** espeak-ng English accents trained on. */
export const ESPEAK_TRAIN_ACCENTS = ['en-gb', 'en-us', 'en-gb-x-rp', 'en-gb-x-gbclan', 'en-gb-x-gbcwmd', 'en-us-nyc'] as const;
/** espeak-ng English accents held out for evaluation (never trained on). */
export const ESPEAK_EVAL_ACCENTS = ['en-029', 'en-gb-scotland'] as const;
/** espeak-ng variants never used (a test voice that only speeds speech up). */
const EXCLUDED_VARIANTS = new Set(['fast']);
/** Share of espeak-ng voice variants held out for evaluation. */
const EVAL_VARIANT_SHARE = 0.2;
/** flite voices trained on (kal is the 8 kHz twin of kal16; awb_time only speaks times). */
export const FLITE_TRAIN_VOICES = ['kal16', 'awb', 'rms'] as const;
/** flite voice held out for evaluation. */
export const FLITE_EVAL_VOICES = ['slt'] as const;
/** Real speakers trained on: ktuberling's English speaker and klettres' `en` speaker. */
export const REAL_TRAIN_SPEAKERS = ['ktuberling-en', 'klettres-en'] as const;
/** Real speaker held out for evaluation: klettres' `en_GB` speaker (who recorded every update-4 word). */
export const REAL_EVAL_SPEAKERS = ['klettres-en_GB'] as const;
/** ktuberling languages whose recordings make the babble noise of training / evaluation rows. */
const BABBLE_TRAIN_LANGS = ['de', 'fr', 'ru', 'da', 'ca', 'nn'];
const BABBLE_EVAL_LANGS = ['el', 'sl', 'gl', 'uk', 'lt', 'wa'];
/** klettres "syllables" that are not words. */
const NOT_WORDS = new Set(['th', 'ch']);

// =============================================================================================
// Tools: check, install, versions

/** A Debian package the generator needs, and how to tell it is usable. */
interface Requirement {
  pkg: string;
  /** executable that must run, if the package ships one */
  bin?: string;
}

const REQUIREMENTS: Requirement[] = [
  { pkg: 'espeak-ng', bin: 'espeak-ng' },
  { pkg: 'flite', bin: 'flite' },
  { pkg: 'sox', bin: 'sox' },
  { pkg: 'ktuberling-data' },
  { pkg: 'klettres-data' },
];

function run(cmd: string, args: string[]): { ok: boolean; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { ok: r.status === 0 && !r.error, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error ? String(r.error) : '') };
}

function packageInstalled(req: Requirement): boolean {
  const q = run('dpkg-query', ['-W', '-f=${Status}', req.pkg]);
  const dpkgOk = q.ok && q.stdout.includes('install ok installed');
  if (req.bin) {
    const b = run('sh', ['-c', `command -v ${req.bin}`]);
    return b.ok && b.stdout.trim() !== '' && (dpkgOk || !run('sh', ['-c', 'command -v dpkg-query']).ok);
  }
  return dpkgOk;
}

/** Thrown when a required package is missing and cannot be installed. */
export class ToolsUnavailableError extends UsageError {
  /** Packages that are still missing. */
  readonly missing: string[];
  constructor(missing: string[], why: string) {
    super(
      `keyword-spotting data needs the Debian packages ${missing.join(', ')}, which are missing and could not be installed (${why}); install them with: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing.join(' ')}`,
      { missing },
    );
    this.missing = missing;
  }
}

/**
 * Makes sure espeak-ng, flite, sox, ktuberling-data and klettres-data are installed, installing
 * the missing ones with apt-get (as root; `apt-get update` first). Says what it does on `log`.
 *
 * @returns the packages that were installed by this call.
 * @throws ToolsUnavailableError when a package is missing and cannot be installed.
 */
export function ensureTools(log: (line: string) => void = console.log, packages: readonly string[] = REQUIREMENTS.map((r) => r.pkg)): string[] {
  const wanted = REQUIREMENTS.filter((r) => packages.includes(r.pkg));
  const missing = wanted.filter((r) => !packageInstalled(r)).map((r) => r.pkg);
  if (missing.length === 0) return [];
  if (!run('sh', ['-c', 'command -v apt-get']).ok) throw new ToolsUnavailableError(missing, 'apt-get is not available');
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new ToolsUnavailableError(missing, 'installing needs root');
  }
  log(`installing ${missing.join(', ')} with apt-get (Debian packages; the sound data is GPL-2+ and stays out of git) ...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // wait for a dpkg lock held by another apt run instead of failing at once
  const lock = ['-o', 'DPkg::Lock::Timeout=120'];
  const upd = spawnSync('apt-get', [...lock, 'update', '-qq'], { encoding: 'utf8', env });
  if (upd.status !== 0) log(`apt-get update failed (${(upd.stderr || '').trim().split('\n').pop()}); trying the install anyway`);
  const inst = spawnSync('apt-get', [...lock, 'install', '-y', '-q', '--no-install-recommends', ...missing], { encoding: 'utf8', env });
  const still = wanted.filter((r) => !packageInstalled(r)).map((r) => r.pkg);
  if (inst.status !== 0 || still.length > 0) {
    const tail = `${inst.stderr ?? ''}${inst.stdout ?? ''}`.trim().split('\n').slice(-2).join(' | ');
    throw new ToolsUnavailableError(still.length ? still : missing, `apt-get install exited with ${inst.status}: ${tail}`);
  }
  log(`installed ${missing.join(', ')}`);
  return missing;
}

function toolVersions(): Record<string, string> {
  const v: Record<string, string> = {};
  for (const r of REQUIREMENTS) {
    const q = run('dpkg-query', ['-W', '-f=${Version}', r.pkg]);
    v[r.pkg] = q.ok ? q.stdout.trim() : 'unknown';
  }
  return v;
}

/** espeak-ng voice variants (file names under `voices/!v`), sorted. */
function espeakVariants(): string[] {
  const r = run('espeak-ng', ['--voices=variant']);
  if (!r.ok) throw new UsageError(`espeak-ng --voices=variant failed: ${r.stderr.trim()}; reinstall espeak-ng`);
  const out = new Set<string>();
  for (const line of r.stdout.split('\n')) {
    const m = /\s!v\/(\S+)/.exec(line);
    if (m && !EXCLUDED_VARIANTS.has(m[1])) out.add(m[1]);
  }
  return [...out].sort();
}

function espeakAccents(): Set<string> {
  const r = run('espeak-ng', ['--voices=en']);
  const out = new Set<string>();
  for (const line of r.stdout.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 5 && cols[4].startsWith('gmw/')) out.add(cols[1]);
  }
  return out;
}

function fliteVoices(): Set<string> {
  const r = run('flite', ['-lv']);
  return new Set((r.stdout + r.stderr).replace(/^.*?:/s, '').trim().split(/\s+/));
}

function packageFiles(pkg: string): string[] {
  const r = run('dpkg', ['-L', pkg]);
  if (!r.ok) throw new UsageError(`dpkg -L ${pkg} failed: ${r.stderr.trim()}; reinstall ${pkg}`);
  return r.stdout.split('\n').filter((l) => l.endsWith('.ogg'));
}

// =============================================================================================
// Real recordings

/** One real recording of one word. */
interface RealClip {
  file: string;
  speaker: string;
  word: string;
  /** 'word' for the one-word recordings, 'letter' for spoken letter names */
  kind: 'word' | 'letter';
}

function findRealClips(): { clips: RealClip[]; babble: Record<string, string[]> } {
  const clips: RealClip[] = [];
  const babble: Record<string, string[]> = {};
  for (const f of packageFiles('ktuberling-data')) {
    const m = /\/ktuberling\/sounds\/([^/]+)\/([^/]+)\.ogg$/.exec(f);
    if (!m) continue;
    const [, lang, name] = m;
    if (lang === 'en') {
      const word = name.replace(/^(egypt|moon|pizzeria|tv)_/, '');
      clips.push({ file: f, speaker: 'ktuberling-en', word: word.toLowerCase(), kind: 'word' });
    } else {
      (babble[lang] ??= []).push(f);
    }
  }
  for (const f of packageFiles('klettres-data')) {
    const m = /\/klettres\/(en|en_GB)\/(alpha|syllab)\/([^/]+)\.ogg$/.exec(f);
    if (!m) continue;
    const [, lang, kind, name] = m;
    const word = name.toLowerCase();
    if (kind === 'syllab' && NOT_WORDS.has(word)) continue;
    clips.push({ file: f, speaker: `klettres-${lang}`, word, kind: kind === 'alpha' ? 'letter' : 'word' });
  }
  clips.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  for (const l of Object.keys(babble)) babble[l].sort();
  return { clips, babble };
}

/** A voice / speaker / noise source, referenced by `source.npy`. */
export interface SourceInfo {
  id: number;
  kind: 'espeak-ng' | 'flite' | 'real' | 'noise';
  accent?: string;
  variant?: string;
  voice?: string;
  speaker?: string;
  file?: string;
}

class Sources {
  readonly list: SourceInfo[] = [];
  private readonly ids = new Map<string, number>();
  id(info: Omit<SourceInfo, 'id'>): number {
    const key = JSON.stringify(info);
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.list.length;
      this.ids.set(key, id);
      this.list.push({ id, ...info });
    }
    return id;
  }
}

/** How one split is made. */
interface SplitSpec {
  name: string;
  update: number;
  role: 'train' | 'eval';
  description: string;
  rows: Row[];
  generator: Record<string, unknown>;
}

/** Sizes of the full and the quick run. */
interface Sizes {
  baseWords: readonly string[];
  u1Words: readonly string[];
  u2Words: readonly string[];
  unknownWords: readonly string[];
  trainAccents: readonly string[];
  evalAccents: readonly string[];
  /** how many variants of each accent group to use (null = all) */
  trainVariants: number | null;
  evalVariants: number | null;
  fliteTrain: readonly string[];
  fliteEval: readonly string[];
  perWordTrain: number;
  perWordEval: number;
  silenceTrain: number;
  silenceEval: number;
  flitePerVoiceTrain: number;
  flitePerVoiceEval: number;
  realWordAugTrain: number;
  realUnknownAugTrain: number;
  realWordVariantsEval: number;
  realUnknownVariantsEval: number;
  /** cap on real unknown clips per split (null = all) */
  realUnknownClips: number | null;
  farPerClassTrain: number;
  farPerClassEval: number;
  babbleClipsPerLang: number;
}

const FULL: Sizes = {
  baseWords: BASE_WORDS,
  u1Words: UPDATE1_WORDS,
  u2Words: UPDATE2_WORDS,
  unknownWords: UNKNOWN_WORDS,
  trainAccents: ESPEAK_TRAIN_ACCENTS,
  evalAccents: ESPEAK_EVAL_ACCENTS,
  trainVariants: null,
  evalVariants: null,
  fliteTrain: FLITE_TRAIN_VOICES,
  fliteEval: FLITE_EVAL_VOICES,
  perWordTrain: 400,
  perWordEval: 80,
  silenceTrain: 300,
  silenceEval: 60,
  flitePerVoiceTrain: 24,
  flitePerVoiceEval: 40,
  realWordAugTrain: 48,
  realUnknownAugTrain: 4,
  realWordVariantsEval: 8,
  realUnknownVariantsEval: 2,
  realUnknownClips: null,
  farPerClassTrain: 100,
  farPerClassEval: 40,
  babbleClipsPerLang: 12,
};

const QUICK: Sizes = {
  baseWords: ['yes', 'no', 'up'],
  u1Words: ['car'],
  u2Words: ['ball'],
  unknownWords: ['bird', 'house', 'tree'],
  trainAccents: ['en-us', 'en-gb'],
  evalAccents: ['en-029'],
  trainVariants: 4,
  evalVariants: 2,
  fliteTrain: ['kal16'],
  fliteEval: ['slt'],
  perWordTrain: 6,
  perWordEval: 3,
  silenceTrain: 4,
  silenceEval: 2,
  flitePerVoiceTrain: 2,
  flitePerVoiceEval: 2,
  realWordAugTrain: 3,
  realUnknownAugTrain: 1,
  realWordVariantsEval: 2,
  realUnknownVariantsEval: 1,
  realUnknownClips: 6,
  farPerClassTrain: 3,
  farPerClassEval: 2,
  babbleClipsPerLang: 1,
};

/** Synthesis and augmentation ranges, recorded in the manifest. */
const RANGES = {
  espeak: { speedWpm: [120, 220], pitch: [20, 80] },
  flite: { durationStretch: [0.8, 1.3] },
  light: { speed: [0.9, 1.1], shiftMs: [-100, 100], gainDb: [-10, 2], noiseProbability: 0.8, noiseKinds: ['white', 'pink', 'brown'], snrDb: [15, 40] },
  silence: { levelDbfs: [-70, -20], zeroProbability: 0.1, kinds: ['white', 'pink', 'brown'] },
  realTrain: { speed: [0.85, 1.15], shiftMs: [-150, 150], gainDb: [-12, 6], noiseProbability: 0.9, noiseKinds: ['white', 'pink', 'brown', 'babble'], snrDb: [5, 35], farProbability: 0.3, rt60: [0.2, 0.5], drrDb: [3, 10] },
  realEval: { firstVariantClean: true, speed: [0.95, 1.05], shiftMs: [-80, 80], gainDb: [-6, 6], noiseKinds: ['white', 'pink'], snrDb: [25, 40] },
  farField: { speed: [0.9, 1.1], shiftMs: [-100, 100], gainDb: [-20, -6], rt60: [0.25, 0.9], drrDb: [-3, 8], highpassHz: [100, 400], lowpassHz: [3400, 7000], noiseKinds: ['babble', 'pink', 'brown'], snrDb: [0, 15], silenceLevelDbfs: [-60, -25] },
} as const;

function lightAug(rng: Rng): Aug {
  const r = RANGES.light;
  return {
    speed: rng.grid(r.speed[0], r.speed[1], 0.01),
    shiftMs: Math.round(rng.uniform(r.shiftMs[0], r.shiftMs[1])),
    gainDb: rng.uniform(r.gainDb[0], r.gainDb[1]),
    far: null,
    noise: rng.chance(r.noiseProbability) ? { kind: rng.pick(r.noiseKinds), snrDb: rng.uniform(r.snrDb[0], r.snrDb[1]) } : null,
  };
}

const NO_AUG: Aug = { speed: 1, shiftMs: 0, gainDb: 0, far: null, noise: null };

function realTrainAug(rng: Rng): Aug {
  const r = RANGES.realTrain;
  return {
    speed: rng.grid(r.speed[0], r.speed[1], 0.01),
    shiftMs: Math.round(rng.uniform(r.shiftMs[0], r.shiftMs[1])),
    gainDb: rng.uniform(r.gainDb[0], r.gainDb[1]),
    far: rng.chance(r.farProbability)
      ? { rt60: rng.uniform(r.rt60[0], r.rt60[1]), drrDb: rng.uniform(r.drrDb[0], r.drrDb[1]), highpassHz: 80, lowpassHz: 7600 }
      : null,
    noise: rng.chance(r.noiseProbability) ? { kind: rng.pick(r.noiseKinds), snrDb: rng.uniform(r.snrDb[0], r.snrDb[1]) } : null,
  };
}

function realEvalAug(rng: Rng, variant: number): Aug {
  if (variant === 0) return NO_AUG;
  const r = RANGES.realEval;
  return {
    speed: rng.grid(r.speed[0], r.speed[1], 0.01),
    shiftMs: Math.round(rng.uniform(r.shiftMs[0], r.shiftMs[1])),
    gainDb: rng.uniform(r.gainDb[0], r.gainDb[1]),
    far: null,
    noise: { kind: rng.pick(r.noiseKinds), snrDb: rng.uniform(r.snrDb[0], r.snrDb[1]) },
  };
}

function farAug(rng: Rng): Aug {
  const r = RANGES.farField;
  return {
    speed: rng.grid(r.speed[0], r.speed[1], 0.01),
    shiftMs: Math.round(rng.uniform(r.shiftMs[0], r.shiftMs[1])),
    gainDb: rng.uniform(r.gainDb[0], r.gainDb[1]),
    far: {
      rt60: rng.uniform(r.rt60[0], r.rt60[1]),
      drrDb: rng.uniform(r.drrDb[0], r.drrDb[1]),
      highpassHz: Math.round(rng.uniform(r.highpassHz[0], r.highpassHz[1])),
      lowpassHz: Math.round(rng.uniform(r.lowpassHz[0], r.lowpassHz[1])),
    },
    noise: { kind: rng.pick(r.noiseKinds), snrDb: rng.uniform(r.snrDb[0], r.snrDb[1]) },
  };
}

interface PlanContext {
  seed: number;
  sizes: Sizes;
  classIndex: Map<string, number>;
  sources: Sources;
  trainVariants: string[];
  evalVariants: string[];
  realClips: RealClip[];
}

function espeakRow(ctx: PlanContext, rng: Rng, label: number, text: string, accents: readonly string[], variants: readonly string[], i: number, aug: Aug): Row {
  const accent = accents[i % accents.length];
  const variant = rng.pick(variants);
  const r = RANGES.espeak;
  return {
    label,
    source: ctx.sources.id({ kind: 'espeak-ng', accent, variant }),
    synth: {
      kind: 'espeak',
      accent,
      variant,
      speed: Math.round(rng.uniform(r.speedWpm[0], r.speedWpm[1])),
      pitch: Math.round(rng.uniform(r.pitch[0], r.pitch[1])),
      text,
    },
    aug,
    seed: rng.int(0x7fffffff),
  };
}

function silenceRow(ctx: PlanContext, rng: Rng, far: boolean, bank: 'train' | 'eval'): Row {
  const label = ctx.classIndex.get('_silence_')!;
  if (far) {
    const r = RANGES.farField;
    return {
      label,
      source: ctx.sources.id({ kind: 'noise' }),
      synth: { kind: 'noise', noise: rng.pick(r.noiseKinds), levelDb: rng.uniform(r.silenceLevelDbfs[0], r.silenceLevelDbfs[1]) },
      aug: NO_AUG,
      seed: rng.int(0x7fffffff),
      babble: bank,
    };
  }
  const r = RANGES.silence;
  const zero = rng.chance(r.zeroProbability);
  return {
    label,
    source: ctx.sources.id({ kind: 'noise' }),
    synth: { kind: 'noise', noise: zero ? 'zero' : rng.pick(r.kinds), levelDb: rng.uniform(r.levelDbfs[0], r.levelDbfs[1]) },
    aug: NO_AUG,
    seed: rng.int(0x7fffffff),
  };
}

/** espeak-ng rows for `words` (+ optionally unknown and silence) over the given voices. */
function espeakSplit(
  ctx: PlanContext,
  name: string,
  words: readonly string[],
  opts: { eval: boolean; perWord: number; unknown: boolean; silence: number; far: boolean },
): Row[] {
  const { sizes } = ctx;
  const accents = opts.eval ? sizes.evalAccents : sizes.trainAccents;
  const variants = opts.eval ? ctx.evalVariants : ctx.trainVariants;
  const bank = opts.eval ? 'eval' : 'train';
  const rows: Row[] = [];
  const augFor = (rng: Rng) => (opts.far ? farAug(rng) : lightAug(rng));
  words.forEach((w, wi) => {
    const rng = Rng.of(ctx.seed, name, 'word', w);
    for (let i = 0; i < opts.perWord; i++) {
      rows.push({ ...espeakRow(ctx, rng, ctx.classIndex.get(w)!, w, accents, variants, i + wi, augFor(rng)), babble: bank });
    }
  });
  if (opts.unknown) {
    const rng = Rng.of(ctx.seed, name, 'unknown');
    for (let i = 0; i < opts.perWord; i++) {
      const w = sizes.unknownWords[i % sizes.unknownWords.length];
      rows.push({ ...espeakRow(ctx, rng, ctx.classIndex.get('_unknown_')!, w, accents, variants, i, augFor(rng)), babble: bank });
    }
  }
  const rng = Rng.of(ctx.seed, name, 'silence');
  for (let i = 0; i < opts.silence; i++) rows.push(silenceRow(ctx, rng, opts.far, bank));
  return rows;
}

function fliteSplit(ctx: PlanContext, name: string, words: readonly string[], voices: readonly string[], perVoice: number): Row[] {
  const rows: Row[] = [];
  const unknown = ctx.classIndex.get('_unknown_')!;
  const items: { label: number; text: (i: number) => string; key: string }[] = [
    ...words.map((w) => ({ label: ctx.classIndex.get(w)!, text: () => w, key: w })),
    { label: unknown, text: (i: number) => ctx.sizes.unknownWords[i % ctx.sizes.unknownWords.length], key: '_unknown_' },
  ];
  for (const it of items) {
    const rng = Rng.of(ctx.seed, name, it.key);
    for (const voice of voices) {
      for (let i = 0; i < perVoice; i++) {
        const r = RANGES.flite;
        rows.push({
          label: it.label,
          source: ctx.sources.id({ kind: 'flite', voice }),
          synth: { kind: 'flite', voice, stretch: Math.round(rng.uniform(r.durationStretch[0], r.durationStretch[1]) * 100) / 100, text: it.text(i) },
          aug: lightAug(rng),
          seed: rng.int(0x7fffffff),
        });
      }
    }
  }
  return rows;
}

function realSplit(ctx: PlanContext, name: string, vocabulary: readonly string[], speakers: readonly string[], evalSplit: boolean): Row[] {
  const { sizes } = ctx;
  const rows: Row[] = [];
  const vocab = new Set(vocabulary);
  const mine = ctx.realClips.filter((c) => speakers.includes(c.speaker));
  const words = mine.filter((c) => c.kind === 'word' && vocab.has(c.word));
  // every other recording of these speakers is an unknown word (never a class word of any update)
  const allClassWords = new Set(classTable().map((c) => c.name));
  let unknowns = mine.filter((c) => !allClassWords.has(c.word) || c.kind === 'letter');
  if (sizes.realUnknownClips !== null) {
    unknowns = Rng.of(ctx.seed, name, 'unknown-clips').shuffle([...unknowns]).slice(0, sizes.realUnknownClips);
    unknowns.sort((a, b) => (a.file < b.file ? -1 : 1));
  }
  const unknownLabel = ctx.classIndex.get('_unknown_')!;
  for (const clip of words) {
    const rng = Rng.of(ctx.seed, name, clip.file);
    const n = evalSplit ? sizes.realWordVariantsEval : sizes.realWordAugTrain;
    for (let v = 0; v < n; v++) {
      rows.push({
        label: ctx.classIndex.get(clip.word)!,
        source: ctx.sources.id({ kind: 'real', speaker: clip.speaker, file: clip.file }),
        synth: { kind: 'real', file: clip.file },
        aug: evalSplit ? realEvalAug(rng, v) : realTrainAug(rng),
        seed: rng.int(0x7fffffff),
        babble: evalSplit ? 'eval' : 'train',
      });
    }
  }
  for (const clip of unknowns) {
    const rng = Rng.of(ctx.seed, name, clip.file);
    const n = evalSplit ? sizes.realUnknownVariantsEval : sizes.realUnknownAugTrain;
    for (let v = 0; v < n; v++) {
      rows.push({
        label: unknownLabel,
        source: ctx.sources.id({ kind: 'real', speaker: clip.speaker, file: clip.file }),
        synth: { kind: 'real', file: clip.file },
        aug: evalSplit ? realEvalAug(rng, v) : realTrainAug(rng),
        seed: rng.int(0x7fffffff),
        babble: evalSplit ? 'eval' : 'train',
      });
    }
  }
  return rows;
}

/** Every split of the benchmark, in update order. */
function planSplits(ctx: PlanContext): SplitSpec[] {
  const s = ctx.sizes;
  const allWords = [...s.baseWords, ...s.u1Words, ...s.u2Words];
  const espeakGen = (eval_: boolean, far = false) => ({
    synthesizer: 'espeak-ng',
    accents: [...(eval_ ? s.evalAccents : s.trainAccents)],
    variants: eval_ ? 'heldOut.espeakVariants.eval' : 'heldOut.espeakVariants.train',
    augmentation: far ? 'farField' : 'light',
  });
  const splits: SplitSpec[] = [
    {
      name: 'base-train', update: 0, role: 'train', generator: espeakGen(false),
      description: 'base vocabulary, silence and unknown words; espeak-ng training accents and variants, light noise and tempo augmentation',
      rows: espeakSplit(ctx, 'base-train', s.baseWords, { eval: false, perWord: s.perWordTrain, unknown: true, silence: s.silenceTrain, far: false }),
    },
    {
      name: 'base-eval', update: 0, role: 'eval', generator: espeakGen(true),
      description: 'base vocabulary, silence and unknown words; held-out espeak-ng accents and variants',
      rows: espeakSplit(ctx, 'base-eval', s.baseWords, { eval: true, perWord: s.perWordEval, unknown: true, silence: s.silenceEval, far: false }),
    },
    {
      name: 'u1-words-train', update: 1, role: 'train', generator: espeakGen(false),
      description: 'the 4 words of update 1 only (mix in replay from earlier train splits); espeak-ng training voices',
      rows: espeakSplit(ctx, 'u1-words-train', s.u1Words, { eval: false, perWord: s.perWordTrain, unknown: false, silence: 0, far: false }),
    },
    {
      name: 'u1-words-eval', update: 1, role: 'eval', generator: espeakGen(true),
      description: 'the 4 words of update 1; held-out espeak-ng voices',
      rows: espeakSplit(ctx, 'u1-words-eval', s.u1Words, { eval: true, perWord: s.perWordEval, unknown: false, silence: 0, far: false }),
    },
    {
      name: 'u2-words-train', update: 2, role: 'train', generator: espeakGen(false),
      description: 'the 4 words of update 2 only (mix in replay); espeak-ng training voices',
      rows: espeakSplit(ctx, 'u2-words-train', s.u2Words, { eval: false, perWord: s.perWordTrain, unknown: false, silence: 0, far: false }),
    },
    {
      name: 'u2-words-eval', update: 2, role: 'eval', generator: espeakGen(true),
      description: 'the 4 words of update 2; held-out espeak-ng voices',
      rows: espeakSplit(ctx, 'u2-words-eval', s.u2Words, { eval: true, perWord: s.perWordEval, unknown: false, silence: 0, far: false }),
    },
    {
      name: 'u3-flite-train', update: 3, role: 'train',
      generator: { synthesizer: 'flite', voices: [...s.fliteTrain], augmentation: 'light' },
      description: 'all words so far and unknown words spoken by flite training voices (another synthesizer: domain shift)',
      rows: fliteSplit(ctx, 'u3-flite-train', allWords, s.fliteTrain, s.flitePerVoiceTrain),
    },
    {
      name: 'u3-flite-eval', update: 3, role: 'eval',
      generator: { synthesizer: 'flite', voices: [...s.fliteEval], augmentation: 'light' },
      description: 'all words so far and unknown words spoken by the held-out flite voice',
      rows: fliteSplit(ctx, 'u3-flite-eval', allWords, s.fliteEval, s.flitePerVoiceEval),
    },
    {
      name: 'u4-real-train', update: 4, role: 'train',
      generator: { recordings: 'real', speakers: [...REAL_TRAIN_SPEAKERS], augmentation: 'realTrain' },
      description: 'real recordings of class words by the training speakers (ktuberling en, klettres en), heavily augmented, plus their other recordings as unknown words',
      rows: realSplit(ctx, 'u4-real-train', allWords, REAL_TRAIN_SPEAKERS, false),
    },
    {
      name: 'u4-real-eval', update: 4, role: 'eval',
      generator: { recordings: 'real', speakers: [...REAL_EVAL_SPEAKERS], augmentation: 'realEval' },
      description: 'real recordings by the held-out speaker (klettres en_GB): each clip once clean and in a few mildly perturbed copies; other recordings as unknown words',
      rows: realSplit(ctx, 'u4-real-eval', allWords, REAL_EVAL_SPEAKERS, true),
    },
    {
      name: 'u5-far-train', update: 5, role: 'train', generator: { ...espeakGen(false, true), babbleLanguages: BABBLE_TRAIN_LANGS },
      description: 'all words so far, unknown and silence through synthetic rooms (RT60 0.25-0.9 s), cheap microphones and babble / colored noise at 0-15 dB SNR; espeak-ng training voices',
      rows: espeakSplit(ctx, 'u5-far-train', allWords, { eval: false, perWord: s.farPerClassTrain, unknown: true, silence: s.farPerClassTrain, far: true }),
    },
    {
      name: 'u5-far-eval', update: 5, role: 'eval', generator: { ...espeakGen(true, true), babbleLanguages: BABBLE_EVAL_LANGS },
      description: 'far-field conditions with held-out espeak-ng voices and babble from held-out languages',
      rows: espeakSplit(ctx, 'u5-far-eval', allWords, { eval: true, perWord: s.farPerClassEval, unknown: true, silence: s.farPerClassEval, far: true }),
    },
  ];
  for (const sp of splits) Rng.of(ctx.seed, sp.name, 'order').shuffle(sp.rows);
  return splits;
}

/** Rows per message to a worker. */
const BATCH = 24;

/**
 * Worker processes (see `worker.ts`) that render rows. Started once, before the big feature
 * arrays exist, so starting them is cheap; they start the synthesizers themselves.
 */
class WorkerPool {
  private readonly workers: ChildProcess[] = [];

  constructor(count: number, assets: Assets, inflight: number) {
    const entry = fileURLToPath(new URL('./worker.ts', import.meta.url));
    const execArgv = process.execArgv.some((a) => a.includes('tsx')) ? process.execArgv : [...process.execArgv, '--import', 'tsx'];
    for (let i = 0; i < count; i++) {
      const w = fork(entry, [], { execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      w.send({ type: 'init', assets, inflight } satisfies ToWorker);
      this.workers.push(w);
    }
  }

  /** Renders `rows` and returns their features, row i at offset i * size. */
  run(rows: Row[], size: number, onProgress: (done: number) => void): Promise<Float32Array> {
    const x = new Float32Array(rows.length * size);
    return new Promise((resolvePromise, reject) => {
      let nextStart = 0;
      let done = 0;
      let finished = false;
      const cleanups: (() => void)[] = [];
      const finish = (err?: Error) => {
        if (finished) return;
        finished = true;
        for (const c of cleanups) c();
        if (err) reject(err);
        else resolvePromise(x);
      };
      const feed = (w: ChildProcess) => {
        if (nextStart >= rows.length) return;
        const start = nextStart;
        nextStart = Math.min(rows.length, start + BATCH);
        w.send({ type: 'batch', id: start, rows: rows.slice(start, nextStart) } satisfies ToWorker);
      };
      if (rows.length === 0) return finish();
      for (const w of this.workers) {
        const onMessage = (msg: FromWorker) => {
          if (msg.type === 'stats') return;
          if (msg.type === 'error') return finish(new Error(`worker ${w.pid}: ${msg.message}`));
          x.set(msg.x, msg.id * size);
          done += msg.x.length / size;
          onProgress(done);
          if (done === rows.length) return finish();
          feed(w);
        };
        const onExit = (code: number | null) => finish(new Error(`worker ${w.pid} exited (code ${code}) before finishing`));
        w.on('message', onMessage);
        w.on('exit', onExit);
        cleanups.push(() => {
          w.off('message', onMessage);
          w.off('exit', onExit);
        });
        // two batches in flight per worker so it never waits for the next one
        feed(w);
        feed(w);
      }
    });
  }

  /** CPU seconds used so far by the workers and their synthesizer processes. */
  async cpu(): Promise<CpuSeconds> {
    const all = await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<CpuSeconds>((resolvePromise) => {
            const on = (msg: FromWorker) => {
              if (msg.type !== 'stats') return;
              w.off('message', on);
              resolvePromise(msg.cpu);
            };
            w.on('message', on);
            w.send({ type: 'stats' } satisfies ToWorker);
          }),
      ),
    );
    return all.reduce((a, b) => ({ self: a.self + b.self, children: a.children + b.children }), { self: 0, children: 0 });
  }

  /** Lets the workers exit. */
  close(): void {
    for (const w of this.workers) if (w.connected) w.disconnect();
  }
}

interface SplitResult {
  x: Float32Array;
  y: Int32Array;
  source: Int32Array;
  seconds: number;
}

async function runSplit(spec: SplitSpec, pool: WorkerPool, log: (l: string) => void, quiet: boolean): Promise<SplitResult> {
  const n = spec.rows.length;
  const size = frameCount() * KWS_LOGMEL.melBins;
  const t0 = performance.now();
  let lastReport = t0;
  const x = await pool.run(spec.rows, size, (done) => {
    const now = performance.now();
    if (!quiet && now - lastReport > 5000 && done < n) {
      lastReport = now;
      log(`  ${spec.name.padEnd(15)} ${String(done).padStart(6)}/${n}  ${(done / ((now - t0) / 1000)).toFixed(0)} utt/s`);
    }
  });
  const y = Int32Array.from(spec.rows, (r) => r.label);
  const source = Int32Array.from(spec.rows, (r) => r.source);
  return { x, y, source, seconds: (performance.now() - t0) / 1000 };
}

// =============================================================================================
// Manifest

/** Where a split's files are and what they hold. */
export interface SplitManifest {
  update: number;
  role: 'train' | 'eval';
  description: string;
  count: number;
  files: { x: string; y: string; source: string };
  shapes: { x: number[]; y: number[]; source: number[] };
  sha256: { x: string; y: string; source: string };
  /** rows per class name (classes with no rows are left out) */
  perClass: Record<string, number>;
  generator: Record<string, unknown>;
}

/** One step of the update chain. */
export interface UpdateManifest {
  step: number;
  id: string;
  title: string;
  /** classes this update starts training (names) */
  newClasses: string[];
  /** indices of the classes the model must know after this update (all earlier ones too) */
  activeClasses: number[];
  /** the split with this update's new data */
  train: string;
  /** earlier train splits to mix in (replay) so older classes and conditions are not forgotten */
  replay: string[];
  /** this update's own eval split */
  eval: string;
  /** every eval split the model after this update should be measured on (forgetting included) */
  evalAll: string[];
}

/** The `manifest.json` written next to the splits. */
export interface KwsManifest {
  format: 'neural-diff/kws-data@1';
  generator: string;
  mode: 'full' | 'quick';
  seed: number;
  feature: Record<string, unknown>;
  numClasses: number;
  classes: ClassInfo[];
  updates: UpdateManifest[];
  splits: Record<string, SplitManifest>;
  heldOut: Record<string, { train: string[]; eval: string[] }>;
  sources: SourceInfo[];
  generation: Record<string, unknown>;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function buildUpdates(classes: ClassInfo[], splitNames: string[]): UpdateManifest[] {
  const titles = [
    ['base', 'base model: 24 command words, silence, unknown (espeak-ng)'],
    ['new-words-1', 'add 4 words: car, dog, key, hot'],
    ['new-words-2', 'add 4 words: ball, ear, sky, jet'],
    ['flite-voices', 'adapt to another synthesizer (flite voices)'],
    ['real-voices', 'adapt to real recorded voices (ktuberling / klettres speakers)'],
    ['far-field', 'adapt to reverberant rooms, cheap microphones and babble noise'],
  ];
  const prefix = ['base', 'u1-words', 'u2-words', 'u3-flite', 'u4-real', 'u5-far'];
  const out: UpdateManifest[] = [];
  for (let step = 0; step < titles.length; step++) {
    const train = `${prefix[step]}-train`;
    const evalName = `${prefix[step]}-eval`;
    if (!splitNames.includes(train) || !splitNames.includes(evalName)) throw new Error(`missing split for update ${step}`);
    out.push({
      step,
      id: titles[step][0],
      title: titles[step][1],
      newClasses: classes.filter((c) => c.introducedIn === step).map((c) => c.name),
      activeClasses: classes.filter((c) => c.introducedIn !== null && c.introducedIn <= step).map((c) => c.index),
      train,
      replay: prefix.slice(0, step).map((p) => `${p}-train`),
      eval: evalName,
      evalAll: prefix.slice(0, step + 1).map((p) => `${p}-eval`),
    });
  }
  return out;
}

// =============================================================================================
// Main

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** output folder (default `examples/keyword-spotting/data`) */
  out: string;
  /** a few words and voices, finishes in seconds */
  quick: boolean;
  /** seed of every random choice */
  seed: number;
  /** worker processes (each renders rows and starts its own synthesizers); default: CPU count */
  jobs: number;
  /** synthesizer processes each worker keeps running at once (default 2) */
  inflight: number;
  log?: (line: string) => void;
}

/** What {@link generate} did (timing; not part of the deterministic manifest). */
export interface GenerateReport {
  manifest: KwsManifest;
  manifestPath: string;
  utterances: number;
  seconds: number;
  /** wall-clock rate while generating (depends on what else runs on the machine) */
  utterancesPerSecond: number;
  /** CPU time per utterance over all processes (load-independent) */
  cpuMsPerUtterance: number;
  perSplit: Record<string, { count: number; seconds: number }>;
}

/**
 * Generates every split and `manifest.json` under `options.out`. Deterministic for a given seed,
 * mode and installed package versions.
 */
export async function generate(options: GenerateOptions): Promise<GenerateReport> {
  const log = options.log ?? ((l: string) => console.log(l));
  const t0 = performance.now();
  const installed = ensureTools(log);
  if (installed.length === 0) log('tools: espeak-ng, flite, sox, ktuberling-data, klettres-data are installed');
  const sizes = options.quick ? QUICK : FULL;

  // voices
  const accentsAvailable = espeakAccents();
  for (const a of [...ESPEAK_TRAIN_ACCENTS, ...ESPEAK_EVAL_ACCENTS]) {
    if (!accentsAvailable.has(a)) throw new UsageError(`espeak-ng has no voice ${a} (found ${[...accentsAvailable].join(', ')}); install the Debian espeak-ng-data package`);
  }
  const fl = fliteVoices();
  for (const v of [...FLITE_TRAIN_VOICES, ...FLITE_EVAL_VOICES]) {
    if (!fl.has(v)) throw new UsageError(`flite has no voice ${v} (found ${[...fl].join(', ')}); install Debian's flite package`);
  }
  const variants = espeakVariants();
  const shuffled = Rng.of(options.seed, 'variants').shuffle(['', ...variants]);
  const nEval = Math.max(1, Math.round(shuffled.length * EVAL_VARIANT_SHARE));
  const evalVariantsAll = shuffled.slice(0, nEval).sort();
  const trainVariantsAll = shuffled.slice(nEval).sort();
  const trainVariants = sizes.trainVariants === null ? trainVariantsAll : trainVariantsAll.slice(0, sizes.trainVariants);
  const evalVariants = sizes.evalVariants === null ? evalVariantsAll : evalVariantsAll.slice(0, sizes.evalVariants);

  // real recordings
  const { clips: allClips, babble: babbleFiles } = findRealClips();
  const classes = classTable();
  const classIndex = new Map(classes.map((c) => [c.name, c.index]));
  const ctx: PlanContext = { seed: options.seed, sizes, classIndex, sources: new Sources(), trainVariants, evalVariants, realClips: allClips };
  const splits = planSplits(ctx);
  const total = splits.reduce((a, s) => a + s.rows.length, 0);
  log(`plan: ${splits.length} splits, ${total} utterances, ${classes.length} class slots (${options.quick ? 'quick' : 'full'} mode, seed ${options.seed}, ${options.jobs} worker processes x ${options.inflight} synthesizers)`);

  // decode the recordings the plan uses, and the babble banks
  const assets: Assets = { real: new Map(), babble: { train: [], eval: [] } };
  const needed = new Set<string>();
  for (const sp of splits) for (const r of sp.rows) if (r.synth.kind === 'real') needed.add(r.synth.file);
  const babblePick = (langs: string[]) =>
    langs.flatMap((l) => Rng.of(options.seed, 'babble', l).shuffle([...(babbleFiles[l] ?? [])]).slice(0, sizes.babbleClipsPerLang));
  const babbleTrainFiles = babblePick(BABBLE_TRAIN_LANGS);
  const babbleEvalFiles = babblePick(BABBLE_EVAL_LANGS);
  const toDecode = [...needed, ...babbleTrainFiles, ...babbleEvalFiles];
  const decoded = new Map<string, Float32Array>();
  const td = performance.now();
  let di = 0;
  await Promise.all(
    Array.from({ length: Math.max(2, options.jobs * options.inflight) }, async () => {
      for (;;) {
        const i = di++;
        if (i >= toDecode.length) return;
        decoded.set(toDecode[i], await decodeWithSox(toDecode[i]));
      }
    }),
  );
  for (const f of needed) assets.real.set(f, decoded.get(f)!);
  assets.babble.train = babbleTrainFiles.map((f) => decoded.get(f)!);
  assets.babble.eval = babbleEvalFiles.map((f) => decoded.get(f)!);
  if (assets.babble.train.length === 0 || assets.babble.eval.length === 0) throw new UsageError('no ktuberling recordings found for babble noise; reinstall ktuberling-data');
  log(`decoded ${toDecode.length} real recordings with sox in ${((performance.now() - td) / 1000).toFixed(1)} s`);

  // run
  const pool = new WorkerPool(options.jobs, assets, options.inflight);
  const mainCpu0 = process.cpuUsage();
  try {
    return await runAll();
  } finally {
    pool.close();
  }

  async function runAll(): Promise<GenerateReport> {
    mkdirSync(options.out, { recursive: true });
    rmSync(join(options.out, 'manifest.json'), { force: true });
    const perSplit: GenerateReport['perSplit'] = {};
    const splitManifests: Record<string, SplitManifest> = {};
    const tg = performance.now();
    let doneTotal = 0;
    for (const spec of splits) {
      const res = await runSplit(spec, pool, log, options.quick);
      const n = spec.rows.length;
      const frames = frameCount();
      const xShape = [n, frames, KWS_LOGMEL.melBins, 1];
      const dir = join(options.out, spec.name);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const xb = writeNpy(res.x, xShape);
      const yb = writeNpy(res.y, [n]);
      const sb = writeNpy(res.source, [n]);
      writeFileSync(join(dir, 'x.npy'), xb);
      writeFileSync(join(dir, 'y.npy'), yb);
      writeFileSync(join(dir, 'source.npy'), sb);
      const perClass: Record<string, number> = {};
      for (const c of classes) {
        let k = 0;
        for (let i = 0; i < n; i++) if (res.y[i] === c.index) k++;
        if (k) perClass[c.name] = k;
      }
      splitManifests[spec.name] = {
        update: spec.update,
        role: spec.role,
        description: spec.description,
        count: n,
        files: { x: `${spec.name}/x.npy`, y: `${spec.name}/y.npy`, source: `${spec.name}/source.npy` },
        shapes: { x: xShape, y: [n], source: [n] },
        sha256: { x: sha256(xb), y: sha256(yb), source: sha256(sb) },
        perClass,
        generator: spec.generator,
      };
      perSplit[spec.name] = { count: n, seconds: res.seconds };
      doneTotal += n;
      const elapsed = (performance.now() - tg) / 1000;
      log(
        `${spec.name.padEnd(15)} ${String(n).padStart(6)} rows in ${res.seconds.toFixed(1)} s (${(n / res.seconds).toFixed(0)} utt/s); total ${doneTotal}/${total}, ${(doneTotal / elapsed).toFixed(0)} utt/s`,
      );
    }

    const manifest: KwsManifest = {
      format: 'neural-diff/kws-data@1',
      generator: 'examples/keyword-spotting/data.ts',
      mode: options.quick ? 'quick' : 'full',
      seed: options.seed,
      feature: {
        ...KWS_LOGMEL,
        frames: frameCount(),
        shape: [frameCount(), KWS_LOGMEL.melBins, 1],
        window: 'periodic Hann',
        melScale: 'htk',
        spectrum: 'power',
        log: 'natural',
        logFloor: Math.log(KWS_LOGMEL.logOffset),
        alignment: 'clip cropped / zero-padded to 1 s around the energy centroid (examples/lib/audio/logmel.ts centerOnEnergy), then augmented',
        layout: 'x: float32 [n, frames, melBins, 1], row-major; y: int32 [n] class index; source: int32 [n] index into sources',
        code: 'examples/lib/audio/logmel.ts',
      },
      numClasses: classes.length,
      classes,
      updates: buildUpdates(classes, splits.map((s) => s.name)),
      splits: splitManifests,
      heldOut: {
        espeakAccents: { train: [...sizes.trainAccents], eval: [...sizes.evalAccents] },
        espeakVariants: { train: trainVariants, eval: evalVariants },
        fliteVoices: { train: [...sizes.fliteTrain], eval: [...sizes.fliteEval] },
        realSpeakers: { train: [...REAL_TRAIN_SPEAKERS], eval: [...REAL_EVAL_SPEAKERS] },
        babbleLanguages: { train: BABBLE_TRAIN_LANGS, eval: BABBLE_EVAL_LANGS },
      },
      sources: ctx.sources.list,
      generation: {
        note: "Deterministic for a given seed, mode and package versions; '' as an espeak-ng variant means the accent's default voice.",
        sizes,
        ranges: RANGES,
        unknownWords: [...sizes.unknownWords],
        realRecordings: {
          note: 'class words recorded by a training speaker are train rows; by the held-out speaker, eval rows. Every other recording (other words, letter names) is _unknown_.',
          wordsByTrainSpeakers: [...new Set(allClips.filter((c) => (REAL_TRAIN_SPEAKERS as readonly string[]).includes(c.speaker) && classIndex.has(c.word)).map((c) => `${c.word}@${c.speaker}`))],
          wordsByEvalSpeakers: [...new Set(allClips.filter((c) => (REAL_EVAL_SPEAKERS as readonly string[]).includes(c.speaker) && classIndex.has(c.word)).map((c) => `${c.word}@${c.speaker}`))],
        },
        packages: toolVersions(),
      },
    };
    const manifestPath = join(options.out, 'manifest.json');
    writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
    const seconds = (performance.now() - t0) / 1000;
    const genSeconds = (performance.now() - tg) / 1000;
    const workerCpu = await pool.cpu();
    const mainCpu = process.cpuUsage(mainCpu0);
    const cpuSeconds = workerCpu.self + workerCpu.children + (mainCpu.user + mainCpu.system) / 1e6;
    const cpuMsPerUtterance = (1000 * cpuSeconds) / Math.max(1, total);
    const report: GenerateReport = {
      manifest,
      manifestPath,
      utterances: total,
      seconds,
      utterancesPerSecond: total / genSeconds,
      cpuMsPerUtterance,
      perSplit,
    };
    const cores = availableParallelism();
    writeFileSync(
      join(options.out, 'run.json'),
      `${JSON.stringify(
        {
          utterances: total,
          seconds,
          generationSeconds: genSeconds,
          utterancesPerSecond: report.utterancesPerSecond,
          cpuSeconds: { workers: workerCpu.self, synthesizers: workerCpu.children, main: (mainCpu.user + mainCpu.system) / 1e6 },
          cpuMsPerUtterance,
          idleMachineEstimate: `${((cores * 1000) / cpuMsPerUtterance).toFixed(0)} utt/s on ${cores} idle cores`,
          jobs: options.jobs,
          inflight: options.inflight,
          perSplit,
        },
        null,
        2,
      )}\n`,
    );
    log(
      `done: ${total} utterances in ${seconds.toFixed(1)} s (${report.utterancesPerSecond.toFixed(0)} utt/s while generating; ${cpuMsPerUtterance.toFixed(1)} CPU-ms per utterance, i.e. ~${((cores * 1000) / cpuMsPerUtterance).toFixed(0)} utt/s on ${cores} idle cores); manifest ${manifestPath}`,
    );
    return report;
  }
}

const DEFAULT_OUT = fileURLToPath(new URL('./data', import.meta.url));

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      seed: { type: 'string', default: '1' },
      jobs: { type: 'string' },
      inflight: { type: 'string', default: '2' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      [
        'usage: node --import tsx examples/keyword-spotting/data.ts [--quick] [--out DIR] [--seed N] [--jobs N] [--inflight N]',
        '  --quick       a few words and voices (about 150 utterances, seconds)',
        '  --out DIR     output folder (default examples/keyword-spotting/data)',
        '  --seed N      seed of every random choice (default 1)',
        '  --jobs N      worker processes (default: number of CPUs)',
        '  --inflight N  synthesizer processes per worker (default 2)',
      ].join('\n'),
    );
    return;
  }
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new UsageError(`--seed must be an integer, found ${values.seed}`);
  const jobs = values.jobs === undefined ? availableParallelism() : Number(values.jobs);
  if (!Number.isSafeInteger(jobs) || jobs < 1) throw new UsageError(`--jobs must be a positive integer, found ${values.jobs}`);
  const inflight = Number(values.inflight);
  if (!Number.isSafeInteger(inflight) || inflight < 1) throw new UsageError(`--inflight must be a positive integer, found ${values.inflight}`);
  const out = resolve(values.out ?? DEFAULT_OUT);
  await generate({ out, quick: values.quick ?? false, seed, jobs, inflight });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = e instanceof ToolsUnavailableError ? 3 : 1;
  });
}
