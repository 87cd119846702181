/**
 * The `field` split of the keyword-spotting data (issue #64, item 1): unlabeled audio from where
 * devices run, in voices and conditions that neither any training split nor any evaluation split
 * holds. A teacher needs no labels, so these inputs can teach a distilled diff what the new version
 * does where the update's own data did not reach.
 *
 * What it holds (seeded; the same seed and package versions give the same bytes):
 * - the data's words, spoken by espeak-ng voices of **other languages** reading the English words
 *   (accented English: af, nl, de, sv, da, cy, it, pl, es, fi), with the data's *training* voice
 *   variants, light noise (as the other splits) or through far-field rooms;
 * - the same words from flite voices at a **changed mean pitch** (kal, kal16 and awb at 150-220 Hz;
 *   rms ignores the setting, slt is the evaluation voice and never used);
 * - `_unknown_`: the filler words in those voices, and real recordings of **other languages'**
 *   speakers (ktuberling and klettres: es, fi, ga, it, nds, nl, pt, ro, sr, sv, cs, he, hu, nb,
 *   pt_BR, tn), augmented as the real training rows are;
 * - `_silence_`: noise only, half of it through rooms with babble;
 * - far-field rows mix babble from the **training** babble languages only.
 *
 * Never an evaluation accent, voice variant, flite voice, speaker or babble language:
 * {@link fieldOverlaps} checks every row's source against the data's held-out lists and against
 * every source its evaluation splits use, and generation refuses to write a split that fails it.
 *
 * `y.npy` records what was said, for analysis only: the benchmark reads `x.npy` alone
 * (`--teacher-distill-inputs field`), as a team has field captures and no labels for them.
 *
 * Run: `node --import tsx examples/keyword-spotting/field.ts [--data DIR] [--out DIR] [--seed N] [--jobs N]`
 * (default out: the data folder's name + `-field`; quick data gives a quick field split).
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UsageError } from '../../src/core/errors.ts';
import { parseNpy, writeNpy } from '../../src/io/npy/npy.ts';
import { loadNpy } from '../../src/io/npy/files.ts';
import { KWS_LOGMEL, frameCount } from '../lib/audio/logmel.ts';
import { sha256, type KwsManifest } from './manifest.ts';
import { FULL, QUICK, RANGES, Sources, farAug, lightAug, realTrainAug, silenceRow, type PlanContext, type SourceInfo } from './plan.ts';
import { WorkerPool, runSplit } from './pool.ts';
import { Rng, decodeWithSox, type Assets, type Row } from './render.ts';
import { ensureTools, fliteVoices, packageFiles, toolVersions } from './tools.ts';
import { BABBLE_TRAIN_LANGS, UNKNOWN_WORDS } from './vocabulary.ts';

/** espeak-ng languages whose voices read the English words (accented English). */
export const FIELD_ESPEAK_LANGS = ['af', 'nl', 'de', 'sv', 'da', 'cy', 'it', 'pl', 'es', 'fi'] as const;
/** flite voices at a changed mean pitch (rms ignores int_f0_target_mean; slt is held out for evaluation). */
export const FIELD_FLITE_VOICES = ['kal', 'kal16', 'awb'] as const;
export const FIELD_FLITE_F0: readonly [number, number] = [150, 220];
/** Languages whose real speakers make `_unknown_` rows: ktuberling's and klettres' (none an evaluation babble language). */
export const FIELD_KTUBERLING_LANGS = ['es', 'fi', 'ga', 'it', 'nds', 'nl', 'pt', 'ro', 'sr', 'sv'] as const;
export const FIELD_KLETTRES_LANGS = ['cs', 'es', 'he', 'hu', 'it', 'nb', 'nds', 'nl', 'pt_BR', 'tn'] as const;

/** Rows of the full and the quick field split. */
export const FIELD_SIZES = {
  full: { perWord: 90, unknownSynth: 360, realClips: 360, silence: 200 },
  quick: { perWord: 2, unknownSynth: 3, realClips: 4, silence: 2 },
} as const;
/** Share of word rows per condition: espeak-ng light noise, flite at another pitch, espeak-ng far field (the rest). */
const CONDITIONS = { espeakLight: 0.45, flitePitch: 0.2 } as const;

/** The `manifest.json` of a field split. */
export interface FieldManifest {
  format: 'neural-diff/kws-field@1';
  generator: string;
  mode: 'full' | 'quick';
  seed: number;
  /** the data these inputs go with: its manifest's sha256 (the held-out lists checked against) */
  data: { manifest: string; mode: 'full' | 'quick'; seed: number };
  note: string;
  count: number;
  files: { x: string; y: string; source: string };
  shapes: { x: number[]; y: number[]; source: number[] };
  sha256: { x: string; y: string; source: string };
  perClass: Record<string, number>;
  perCondition: Record<string, number>;
  voices: { espeakLanguages: string[]; espeakVariants: string[]; fliteVoices: string[]; fliteF0: readonly [number, number]; realLanguages: { ktuberling: string[]; klettres: string[] }; babbleLanguages: string[] };
  sources: SourceInfo[];
  packages: Record<string, string>;
}

/** Real recordings of other languages' speakers (sorted; speaker `ktuberling-es`, `klettres-nl`, ...). */
function foreignClips(): { file: string; speaker: string }[] {
  const out: { file: string; speaker: string }[] = [];
  for (const f of packageFiles('ktuberling-data')) {
    const m = /\/ktuberling\/sounds\/([^/]+)\/[^/]+\.ogg$/.exec(f);
    if (m && (FIELD_KTUBERLING_LANGS as readonly string[]).includes(m[1])) out.push({ file: f, speaker: `ktuberling-${m[1]}` });
  }
  for (const f of packageFiles('klettres-data')) {
    const m = /\/klettres\/([^/]+)\/(alpha|syllab)\/[^/]+\.ogg$/.exec(f);
    if (m && (FIELD_KLETTRES_LANGS as readonly string[]).includes(m[1])) out.push({ file: f, speaker: `klettres-${m[1]}` });
  }
  return out.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
}

/** The words the data trains (its word classes with rows in a training split), in class order. */
function dataWords(data: KwsManifest): string[] {
  const trained = new Set(Object.values(data.splits).filter((s) => s.role === 'train').flatMap((s) => Object.keys(s.perClass)));
  return data.classes.filter((c) => c.kind === 'word' && trained.has(c.name)).map((c) => c.name);
}

/** Every row of the field split, and the condition of each (for the manifest's counts). */
export function planField(data: KwsManifest, seed: number, clips: { file: string; speaker: string }[]): { rows: Row[]; conditions: string[]; sources: Sources } {
  const quick = data.mode === 'quick';
  const size = quick ? FIELD_SIZES.quick : FIELD_SIZES.full;
  const classIndex = new Map(data.classes.map((c) => [c.name, c.index]));
  const variants = data.heldOut.espeakVariants.train;
  const sources = new Sources();
  const ctx: PlanContext = { seed, sizes: quick ? QUICK : FULL, classIndex, sources, trainVariants: variants, evalVariants: [], realClips: [] };
  const rows: Row[] = [];
  const conditions: string[] = [];
  const unknownWords = quick ? UNKNOWN_WORDS.slice(0, 3) : UNKNOWN_WORDS;
  const voiced = (rng: Rng, label: number, text: string, i: number): void => {
    const r = rng.next();
    if (r < CONDITIONS.espeakLight + CONDITIONS.flitePitch && r >= CONDITIONS.espeakLight) {
      const voice = rng.pick(FIELD_FLITE_VOICES);
      const f0 = Math.round(rng.uniform(FIELD_FLITE_F0[0], FIELD_FLITE_F0[1]));
      const stretch = Math.round(rng.uniform(RANGES.flite.durationStretch[0], RANGES.flite.durationStretch[1]) * 100) / 100;
      rows.push({ label, source: sources.id({ kind: 'flite', voice, f0 }), synth: { kind: 'flite', voice, stretch, text, f0 }, aug: lightAug(rng), seed: rng.int(0x7fffffff) });
      conditions.push('flite-pitch');
      return;
    }
    const far = r >= CONDITIONS.espeakLight + CONDITIONS.flitePitch;
    const accent = FIELD_ESPEAK_LANGS[i % FIELD_ESPEAK_LANGS.length];
    const variant = rng.pick(variants);
    const e = RANGES.espeak;
    const synth = { kind: 'espeak' as const, accent, variant, speed: Math.round(rng.uniform(e.speedWpm[0], e.speedWpm[1])), pitch: Math.round(rng.uniform(e.pitch[0], e.pitch[1])), text };
    rows.push({ label, source: sources.id({ kind: 'espeak-ng', accent, variant }), synth, aug: far ? farAug(rng) : lightAug(rng), seed: rng.int(0x7fffffff), babble: 'train' });
    conditions.push(far ? 'espeak-far' : 'espeak-light');
  };
  for (const w of dataWords(data)) {
    const rng = Rng.of(seed, 'field', 'word', w);
    for (let i = 0; i < size.perWord; i++) voiced(rng, classIndex.get(w)!, w, i);
  }
  const unknown = classIndex.get('_unknown_')!;
  const urng = Rng.of(seed, 'field', 'unknown');
  for (let i = 0; i < size.unknownSynth; i++) voiced(urng, unknown, unknownWords[i % unknownWords.length], i);
  const picked = Rng.of(seed, 'field', 'real-clips').shuffle([...clips]).slice(0, size.realClips).sort((a, b) => (a.file < b.file ? -1 : 1));
  for (const clip of picked) {
    const rng = Rng.of(seed, 'field', clip.file);
    rows.push({ label: unknown, source: sources.id({ kind: 'real', speaker: clip.speaker, file: clip.file }), synth: { kind: 'real', file: clip.file }, aug: realTrainAug(rng), seed: rng.int(0x7fffffff), babble: 'train' });
    conditions.push('real-foreign');
  }
  const srng = Rng.of(seed, 'field', 'silence');
  for (let i = 0; i < size.silence; i++) {
    rows.push(silenceRow(ctx, srng, i % 2 === 1, 'train'));
    conditions.push(i % 2 === 1 ? 'silence-far' : 'silence');
  }
  const order = Rng.of(seed, 'field', 'order').shuffle(rows.map((_, i) => i));
  return { rows: order.map((i) => rows[i]), conditions: order.map((i) => conditions[i]), sources };
}

/** The language of a real speaker (`ktuberling-es` -> `es`). */
const languageOf = (speaker: string) => speaker.replace(/^[a-z]+-/, '');

/**
 * Every way the field split meets the evaluation: an espeak-ng accent, voice variant, flite voice,
 * real speaker, recording or babble language of the data's held-out lists, or a source identity any
 * evaluation split's rows use (`evalSources`: the ids in their source.npy). Empty when they share none.
 */
export function fieldOverlaps(field: Pick<FieldManifest, 'sources' | 'voices'>, used: Iterable<number>, data: KwsManifest, evalSources: Iterable<number>): string[] {
  const held = data.heldOut;
  const babbleEval = new Set(held.babbleLanguages.eval);
  const out: string[] = [];
  const identity = (s: SourceInfo) => (s.kind === 'espeak-ng' ? `espeak-ng ${s.accent}+${s.variant}` : s.kind === 'flite' ? `flite ${s.voice}` : s.kind === 'real' ? `speaker ${s.speaker}` : 'noise');
  const evalIds = new Set<string>();
  const evalFiles = new Set<string>();
  for (const id of evalSources) {
    const s = data.sources[id];
    if (s.kind !== 'noise') evalIds.add(identity(s));
    if (s.file) evalFiles.add(s.file);
  }
  for (const l of field.voices.babbleLanguages) if (babbleEval.has(l)) out.push(`babble language ${l} is an evaluation babble language`);
  for (const id of new Set(used)) {
    const s = field.sources[id];
    if (!s) {
      out.push(`source ${id} is not in the field manifest`);
      continue;
    }
    if (s.kind === 'espeak-ng') {
      if (held.espeakAccents.eval.includes(s.accent!)) out.push(`espeak-ng accent ${s.accent} is held out for evaluation`);
      if (held.espeakVariants.eval.includes(s.variant!)) out.push(`espeak-ng variant ${JSON.stringify(s.variant)} is held out for evaluation`);
      if (babbleEval.has(s.accent!)) out.push(`espeak-ng voice ${s.accent} speaks an evaluation babble language`);
    } else if (s.kind === 'flite') {
      if (held.fliteVoices.eval.includes(s.voice!)) out.push(`flite voice ${s.voice} is held out for evaluation`);
    } else if (s.kind === 'real') {
      if (held.realSpeakers.eval.includes(s.speaker!)) out.push(`speaker ${s.speaker} is held out for evaluation`);
      if (babbleEval.has(languageOf(s.speaker!))) out.push(`speaker ${s.speaker} speaks an evaluation babble language`);
      if (s.file && evalFiles.has(s.file)) out.push(`recording ${s.file} is in an evaluation split`);
    }
    if (s.kind !== 'noise' && evalIds.has(identity(s))) out.push(`${identity(s)} speaks in an evaluation split`);
  }
  return out;
}

/** The source ids every evaluation split of the data uses. */
export function evalSourceIds(dataDir: string, data: KwsManifest): Int32Array[] {
  return Object.values(data.splits).filter((s) => s.role === 'eval').map((s) => loadNpy(join(dataDir, s.files.source)).data as Int32Array);
}

/** Options of {@link generateField}. */
export interface FieldOptions {
  /** the keyword data folder (manifest.json) the field split goes with */
  data: string;
  /** output folder (x.npy, y.npy, source.npy, manifest.json) */
  out: string;
  seed: number;
  jobs: number;
  inflight?: number;
  log?: (line: string) => void;
}

/** Generates the field split of the data in `options.data` under `options.out`; refuses to write one that meets the evaluation. */
export async function generateField(options: FieldOptions): Promise<FieldManifest> {
  const log = options.log ?? ((l: string) => console.log(l));
  const manifestPath = join(options.data, 'manifest.json');
  if (!existsSync(manifestPath)) throw new UsageError(`the field split goes with keyword data: expected ${manifestPath}, found none; generate the data first (examples/keyword-spotting/data.ts --out ${options.data})`);
  const dataBytes = readFileSync(manifestPath);
  const data = JSON.parse(dataBytes.toString('utf8')) as KwsManifest;
  ensureTools(log);
  const fl = fliteVoices();
  for (const v of FIELD_FLITE_VOICES) if (!fl.has(v)) throw new UsageError(`flite has no voice ${v} (found ${[...fl].join(', ')}); install Debian's flite package`);
  const t0 = performance.now();
  const { rows, conditions, sources } = planField(data, options.seed, foreignClips());
  const field = { sources: sources.list, voices: { espeakLanguages: [...FIELD_ESPEAK_LANGS], espeakVariants: [...data.heldOut.espeakVariants.train], fliteVoices: [...FIELD_FLITE_VOICES], fliteF0: FIELD_FLITE_F0, realLanguages: { ktuberling: [...FIELD_KTUBERLING_LANGS], klettres: [...FIELD_KLETTRES_LANGS] }, babbleLanguages: BABBLE_TRAIN_LANGS } };
  const overlaps = fieldOverlaps(field, rows.map((r) => r.source), data, evalSourceIds(options.data, data).flatMap((a) => [...a]));
  if (overlaps.length) throw new UsageError(`the field split would meet the evaluation: ${overlaps.join('; ')}; change the field's voices (examples/keyword-spotting/field.ts)`);
  // Real recordings and the training babble bank, decoded once (the same babble draw as data.ts).
  const size = data.mode === 'quick' ? QUICK : FULL;
  const babbleFiles: Record<string, string[]> = {};
  for (const f of packageFiles('ktuberling-data')) {
    const m = /\/ktuberling\/sounds\/([^/]+)\/[^/]+\.ogg$/.exec(f);
    if (m && BABBLE_TRAIN_LANGS.includes(m[1])) (babbleFiles[m[1]] ??= []).push(f);
  }
  const babble = BABBLE_TRAIN_LANGS.flatMap((l) => Rng.of(options.seed, 'babble', l).shuffle([...(babbleFiles[l] ?? []).sort()]).slice(0, size.babbleClipsPerLang));
  const real = [...new Set(rows.flatMap((r) => (r.synth.kind === 'real' ? [r.synth.file] : [])))];
  const assets: Assets = { real: new Map(), babble: { train: [], eval: [] } };
  for (const f of real) assets.real.set(f, await decodeWithSox(f));
  assets.babble.train = await Promise.all(babble.map((f) => decodeWithSox(f)));
  log(`field: ${rows.length} rows planned (${Object.entries(count(conditions)).map(([k, v]) => `${k} ${v}`).join(', ')}); ${real.length} recordings of other languages' speakers, ${babble.length} babble clips decoded`);
  const pool = new WorkerPool(options.jobs, assets, options.inflight ?? 2);
  let res;
  try {
    res = await runSplit({ name: 'field', update: 0, role: 'train', description: 'field', rows, generator: {} }, pool, log, data.mode === 'quick');
  } finally {
    pool.close();
  }
  const n = rows.length;
  const xShape = [n, frameCount(), KWS_LOGMEL.melBins, 1];
  mkdirSync(options.out, { recursive: true });
  rmSync(join(options.out, 'manifest.json'), { force: true });
  const xb = writeNpy(res.x, xShape);
  const yb = writeNpy(res.y, [n]);
  const sb = writeNpy(res.source, [n]);
  writeFileSync(join(options.out, 'x.npy'), xb);
  writeFileSync(join(options.out, 'y.npy'), yb);
  writeFileSync(join(options.out, 'source.npy'), sb);
  const manifest: FieldManifest = {
    format: 'neural-diff/kws-field@1',
    generator: 'examples/keyword-spotting/field.ts',
    mode: data.mode,
    seed: options.seed,
    data: { manifest: sha256(dataBytes), mode: data.mode, seed: data.seed },
    note: 'Unlabeled field captures for distillation: y.npy records what was said, for analysis only; the benchmark reads x.npy alone. No evaluation accent, voice variant, flite voice, speaker or babble language (checked at generation).',
    count: n,
    files: { x: 'x.npy', y: 'y.npy', source: 'source.npy' },
    shapes: { x: xShape, y: [n], source: [n] },
    sha256: { x: sha256(xb), y: sha256(yb), source: sha256(sb) },
    perClass: count(Array.from(res.y, (y) => data.classes[y].name)),
    perCondition: count(conditions),
    ...field,
    packages: toolVersions(),
  };
  writeFileSync(join(options.out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  log(`field: ${n} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s -> ${options.out}`);
  return manifest;
}

function count(keys: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of keys) out[k] = (out[k] ?? 0) + 1;
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/**
 * The field split's inputs, for distillation: `x.npy` alone (its labels are never read), checked to
 * go with the data in `dataDir` (the manifest digest it was made from) and to be the bytes its
 * manifest lists.
 */
export function fieldInputs(fieldDir: string, dataDir: string): { x: Float32Array; shape: number[] } {
  const at = join(fieldDir, 'manifest.json');
  if (!existsSync(at)) throw new UsageError(`--teacher-distill-inputs field: expected the field split's manifest at ${at}, found none; generate it with examples/keyword-spotting/field.ts --data ${dataDir} --out ${fieldDir}`);
  const m = JSON.parse(readFileSync(at, 'utf8')) as FieldManifest;
  const dataDigest = sha256(readFileSync(join(dataDir, 'manifest.json')));
  if (m.format !== 'neural-diff/kws-field@1' || m.data?.manifest !== dataDigest) {
    throw new UsageError(`the field split in ${fieldDir} was made for other data (format ${JSON.stringify(m.format)}, data manifest ${m.data?.manifest}) than ${dataDir} (manifest ${dataDigest}), so its held-out check does not hold here; generate it again with examples/keyword-spotting/field.ts --data ${dataDir} --out ${fieldDir}`);
  }
  const bytes = readFileSync(join(fieldDir, m.files.x));
  if (sha256(bytes) !== m.sha256.x) throw new UsageError(`${join(fieldDir, m.files.x)} is not the file its manifest lists (sha256 differs); generate the field split again`);
  const x = parseNpy(bytes);
  return { x: x.data as Float32Array, shape: x.shape };
}

/** The field folder of a data folder by default: `<data>-field` beside it. */
export const defaultFieldDir = (dataDir: string) => `${resolve(dataDir)}-field`;

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { data: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string', default: '1' }, jobs: { type: 'string' }, inflight: { type: 'string', default: '2' } }, strict: true });
  const data = resolve(values.data ?? fileURLToPath(new URL('./data', import.meta.url)));
  const seed = Number(values.seed);
  const jobs = values.jobs === undefined ? availableParallelism() : Number(values.jobs);
  const inflight = Number(values.inflight);
  const bad = !Number.isSafeInteger(seed) ? `--seed must be an integer, found ${values.seed}` : !(Number.isSafeInteger(jobs) && jobs >= 1) ? `--jobs must be a positive integer, found ${values.jobs}` : !(Number.isSafeInteger(inflight) && inflight >= 1) ? `--inflight must be a positive integer, found ${values.inflight}` : '';
  (bad ? Promise.reject(new UsageError(bad)) : generateField({ data, out: resolve(values.out ?? defaultFieldDir(data)), seed, jobs, inflight })).catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  });
}
