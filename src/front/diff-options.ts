/**
 * The options of {@link diff} (src/front/diff.ts), what `ndiff diff` takes on its command line,
 * and their defaults. Kept apart so that the value diff and the structural diff both read them
 * without importing each other.
 */
import { checkChoices, OUTPUT_KINDS, type Choice } from '../core/choices.ts';
import { UsageError } from '../core/errors.ts';
import type { PostHocMethod } from '../diff/advice.ts';
import type { OutputKind } from './diff-types.ts';
import { parseExpiry } from '../core/expiry.ts';
import type { Progress } from './progress.ts';
import type { LowBitCache } from '../lowbit-diff/cache.ts';
import type { QualityTargetOptions } from './quality-target.ts';

/** What {@link diff} takes: two versions of one model by path, a budget, and how to make the payload. */
export interface DiffOptions extends QualityTargetOptions {
  /** The model the devices hold: a TF.js folder or model JSON file, an `.onnx` or `.tflite` file, or a `.safetensors` file. */
  base: string;
  /** The new model, in the same format. */
  target: string;
  /**
   * The byte budget of the whole payload: `1%` of the base model as stored, `40KB`, `40KiB`, a
   * number of bytes; `all`: every changed weight, exactly; or `auto`: the smallest budget of the
   * grid (`budgetGrid`) whose payload meets the quality target (`minAgreement`, `maxMeanAbsDiff`
   * or `maxAccuracyDrop`) on the `eval` inputs, the exact payload when none below its size does.
   */
  budget: string | number;
  /** Where to write the payload; without it the payload is only returned. */
  out?: string;
  /** topk, lowbit, or auto (both, chosen on `calibrate` inputs). Default: lowbit, or top-k when it leaves less of the change out; with `budget: 'all'` the exact diff. */
  method?: PostHocMethod;
  /** With lowbit: dense codes only, no low-rank factors or float16 outliers (for appliers that predate them). */
  lowbitCodesOnly?: boolean;
  /** With topk: the value codec (default `auto`: the one of f32, f16 and i8 with the smallest error). */
  codec?: 'auto' | 'f32' | 'f16' | 'i8' | 'l8' | 'l4';
  /** Inputs from where the model runs (no labels): the lowbit variant (or with `auto` the method) closest to the target on them is kept. Needs tfjs. */
  calibrate?: string;
  /** The id devices know this model by; required unless the base recorded one. */
  modelId?: string;
  /** Update sequence number (default 1). */
  sequence?: number;
  /** Expiry: a Date, an ISO date, or a duration from now (`30d`, `12h`). */
  expires?: string | Date;
  /** Also write the model devices hold after this update (base + payload), the base of the next diff in a chain. */
  modelOut?: string;
  /** stored (default): quantized tensors stay on their grid; float32: patched tensors become float32. */
  store?: 'stored' | 'float32';
  /** With `budget: 'all'`: which exact codecs (default `auto`; `xr` for appliers of formats 1-3, `x` for formats 1-2). */
  exactCodec?: 'auto' | 'x' | 'xr';
  /** Inputs from where the model runs: measure base + payload against the target beside the unpatched base. Needs tfjs. */
  eval?: string;
  /** With `eval`/`calibrate` on .onnx files, stateful models: `INPUT:OUTPUT` pairs carried from frame to frame. */
  state?: string[];
  /** With `eval`/`calibrate` on .onnx files: the output compared. */
  output?: string;
  /** With `eval`/`calibrate` on .onnx files: how the output reads. */
  outputKind?: OutputKind;
  /** Also write a metrics JSON of this payload (what `ndiff report` reads). */
  metricsOut?: string;
  /**
   * With `eval`: write a payload measured further from the target than not updating. Refused by
   * default (NoImprovementError, exit 10 in the command, nothing written), by the rule `train`
   * refuses a teacher diff by; a drop within noise is written with the warning.
   */
  allowWorse?: boolean;
  /**
   * With .gguf models: worker threads coding the payload's chunks (default: every core, at most 8;
   * 1 codes them on the calling thread). The payload's bytes are the same at any count.
   */
  threads?: number;
  /**
   * lowbit's quantizations kept between calls that diff the same pair (a `LowBitCache` of
   * `neural-diff/kit`, made once and passed to each): a call at another budget reuses every
   * tensor's codes and factors instead of making them again, as `budget: 'auto'` does between
   * the budgets it tries. The payload is the same bytes with or without it.
   */
  lowbitCache?: LowBitCache;
  /** Progress lines, as `ndiff diff` prints them on stderr. */
  onProgress?: Progress;
}

/** The options of {@link DiffOptions} that take one of a few words: `ndiff diff`'s choices. */
export const DIFF_CHOICES: readonly Choice[] = [
  ['method', '--method', ['topk', 'lowbit', 'auto']],
  ['codec', '--codec', ['auto', 'f32', 'f16', 'i8', 'l8', 'l4']],
  ['exactCodec', '--exact-codec', ['auto', 'x', 'xr']],
  ['store', '--store', ['stored', 'float32']],
  ['outputKind', '--output-kind', OUTPUT_KINDS],
];

/** {@link DiffOptions} with the defaults filled in. */
export interface DiffSettings extends Omit<DiffOptions, 'budget' | 'expires' | 'onProgress'> {
  budget: string;
  expiresAt?: number;
  sequence: number;
  codec: NonNullable<DiffOptions['codec']>;
  store: NonNullable<DiffOptions['store']>;
  exactCodec: NonNullable<DiffOptions['exactCodec']>;
  state: string[];
  progress: Progress;
}

/** The defaults filled in, and the values checked that need no file. */
export function diffSettings(o: DiffOptions): DiffSettings {
  const { expires, onProgress, budget, ...rest } = o;
  checkChoices(o, DIFF_CHOICES);
  if (typeof budget !== 'string' && typeof budget !== 'number') throw new UsageError(`budget: expected a size such as '1%', '40KB', a number of bytes, or 'all'; found ${typeof budget}`);
  let expiresAt: number | undefined;
  if (expires instanceof Date) {
    if (Number.isNaN(expires.getTime())) throw new UsageError('expires is an invalid Date: give a valid Date, an ISO date or a duration such as 30d');
    expiresAt = Math.floor(expires.getTime() / 1000);
  } else if (expires) expiresAt = parseExpiry(expires);
  return {
    ...rest,
    budget: String(budget),
    ...(expiresAt !== undefined ? { expiresAt } : {}),
    sequence: o.sequence ?? 1,
    codec: o.codec ?? 'auto',
    store: o.store ?? 'stored',
    exactCodec: o.exactCodec ?? 'auto',
    state: o.state ?? [],
    progress: onProgress ?? (() => {}),
  };
}

/** True for `budget: 'all'`: every change, exactly. */
export const isEveryChange = (s: DiffSettings) => s.budget.trim().toLowerCase() === 'all';
