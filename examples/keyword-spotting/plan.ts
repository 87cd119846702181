/**
 * The plan of the keyword-spotting data (see `data.ts`): the real recordings found in the Debian
 * packages, the sizes of the full and quick runs, the augmentation ranges, and every split's rows
 * (what each utterance says, in which voice, with which augmentation and seed), drawn from seeded
 * generators so the same seed plans the same rows.
 *
 * @module
 */
import { Rng, type Aug, type Row } from './render.ts';
import { packageFiles } from './tools.ts';
import {
  BABBLE_EVAL_LANGS,
  BABBLE_TRAIN_LANGS,
  BASE_WORDS,
  ESPEAK_EVAL_ACCENTS,
  ESPEAK_TRAIN_ACCENTS,
  FLITE_EVAL_VOICES,
  FLITE_TRAIN_VOICES,
  NOT_WORDS,
  REAL_EVAL_SPEAKERS,
  REAL_TRAIN_SPEAKERS,
  UNKNOWN_WORDS,
  UPDATE1_WORDS,
  UPDATE2_WORDS,
  classTable,
} from './vocabulary.ts';

// =============================================================================================
// Real recordings

/** One real recording of one word. */
export interface RealClip {
  file: string;
  speaker: string;
  word: string;
  /** 'word' for the one-word recordings, 'letter' for spoken letter names */
  kind: 'word' | 'letter';
}

export function findRealClips(): { clips: RealClip[]; babble: Record<string, string[]> } {
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
  /** flite's mean pitch, Hz, when changed from the voice's own (the field split) */
  f0?: number;
  speaker?: string;
  file?: string;
}

export class Sources {
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
export interface SplitSpec {
  name: string;
  update: number;
  role: 'train' | 'eval';
  description: string;
  rows: Row[];
  generator: Record<string, unknown>;
}

/** Sizes of the full and the quick run. */
export interface Sizes {
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

export const FULL: Sizes = {
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

export const QUICK: Sizes = {
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
export const RANGES = {
  espeak: { speedWpm: [120, 220], pitch: [20, 80] },
  flite: { durationStretch: [0.8, 1.3] },
  light: { speed: [0.9, 1.1], shiftMs: [-100, 100], gainDb: [-10, 2], noiseProbability: 0.8, noiseKinds: ['white', 'pink', 'brown'], snrDb: [15, 40] },
  silence: { levelDbfs: [-70, -20], zeroProbability: 0.1, kinds: ['white', 'pink', 'brown'] },
  realTrain: { speed: [0.85, 1.15], shiftMs: [-150, 150], gainDb: [-12, 6], noiseProbability: 0.9, noiseKinds: ['white', 'pink', 'brown', 'babble'], snrDb: [5, 35], farProbability: 0.3, rt60: [0.2, 0.5], drrDb: [3, 10] },
  realEval: { firstVariantClean: true, speed: [0.95, 1.05], shiftMs: [-80, 80], gainDb: [-6, 6], noiseKinds: ['white', 'pink'], snrDb: [25, 40] },
  farField: { speed: [0.9, 1.1], shiftMs: [-100, 100], gainDb: [-20, -6], rt60: [0.25, 0.9], drrDb: [-3, 8], highpassHz: [100, 400], lowpassHz: [3400, 7000], noiseKinds: ['babble', 'pink', 'brown'], snrDb: [0, 15], silenceLevelDbfs: [-60, -25] },
} as const;

export function lightAug(rng: Rng): Aug {
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

export function realTrainAug(rng: Rng): Aug {
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

export function farAug(rng: Rng): Aug {
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

export interface PlanContext {
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

export function silenceRow(ctx: PlanContext, rng: Rng, far: boolean, bank: 'train' | 'eval'): Row {
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
export function planSplits(ctx: PlanContext): SplitSpec[] {
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
