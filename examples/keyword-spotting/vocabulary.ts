/**
 * The words and voices of the keyword-spotting benchmark data (see `data.ts`): the vocabulary of
 * every update, the fixed class index space, and which espeak-ng accents, flite voices and real
 * speakers are trained on or held out.
 *
 * @module
 */

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
export const EXCLUDED_VARIANTS = new Set(['fast']);
/** Share of espeak-ng voice variants held out for evaluation. */
export const EVAL_VARIANT_SHARE = 0.2;
/** flite voices trained on (kal is the 8 kHz twin of kal16; awb_time only speaks times). */
export const FLITE_TRAIN_VOICES = ['kal16', 'awb', 'rms'] as const;
/** flite voice held out for evaluation. */
export const FLITE_EVAL_VOICES = ['slt'] as const;
/** Real speakers trained on: ktuberling's English speaker and klettres' `en` speaker. */
export const REAL_TRAIN_SPEAKERS = ['ktuberling-en', 'klettres-en'] as const;
/** Real speaker held out for evaluation: klettres' `en_GB` speaker (who recorded every update-4 word). */
export const REAL_EVAL_SPEAKERS = ['klettres-en_GB'] as const;
/** ktuberling languages whose recordings make the babble noise of training / evaluation rows. */
export const BABBLE_TRAIN_LANGS = ['de', 'fr', 'ru', 'da', 'ca', 'nn'];
export const BABBLE_EVAL_LANGS = ['el', 'sl', 'gl', 'uk', 'lt', 'wa'];
/** klettres "syllables" that are not words. */
export const NOT_WORDS = new Set(['th', 'ch']);
