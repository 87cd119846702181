/**
 * `npm run bench:vad-learned`: learned diffs of a real published update, Silero VAD v5 -> v6 (the
 * two .onnx files of `@ricky0123/vad-web`), beside the post-hoc top-k payloads of `bench:onnx`.
 *
 * v5 is trained toward v6 (the teacher: v5 learns v6's speech decisions, frame by frame, on
 * training audio made here) with the learned methods at budgets of 1/2/5/10% of the v6 file,
 * each payload applied to v5 and run with onnxruntime-web on the evaluation audio of
 * `bench:onnx` (same synthetic and real sets, fed as @ricky0123/vad-web feeds them: 512 new
 * samples behind the previous frame's last 64, the state carried), against v6 on the same audio.
 *
 * - Training audio: espeak-ng sentences and voices that the evaluation audio never uses, with
 *   silences, faint noise, speech buried in white noise, and noise-only stretches; and recorded
 *   speech, the Debian packages' recordings in languages other than English (the evaluation's real
 *   audio is their English ones). Cut into sequences of two utterances, each starting from a zero
 *   state (truncated backpropagation of `--bptt` frames from the carried state, see
 *   src/engine/program/training-model.ts). Validation: more of both kinds (other sentences, voices
 *   and languages), never the evaluation audio; it alone chooses checkpoints and the committed payloads.
 * - Defaults (5 epochs, learning rate 3e-4 with LoRA at 1e-3, teacher temperature 1) are what the
 *   pilot rows in docs/onnx-training.md found.
 * - Rows: method x budget, each trained in its own child process (two at a time: training time,
 *   frames/s and peak resident memory are that process's), then evaluated here.
 * - The best learned payload at 2%, 5% and 10% by validation agreement with v6 is written to
 *   bench/results/vad-v5-v6-2pct.ndiff, -5pct and -10pct.ndiff: by a full grid run, or by a run of a few
 *   rows that joins the committed record (`--record bench/results/vad-learned.json`: its rows and
 *   this run's, the best of them all on validation; the record rewritten with this run's rows in).
 *
 * Missing Debian packages (espeak-ng, sox, ktuberling-data, klettres-data, zstd, bsdiff) are
 * installed with apt-get when running as root, and the bench says so.
 *
 *   npm run bench:vad-learned                          # the full grid (about 70 min on 2 cores)
 *   npm run bench:vad-learned -- --quick               # a few utterances, two rows (used by a test)
 *   npm run bench:vad-learned -- --methods sparse,hash --budgets 2,10 --epochs 6 --json out.json
 *   npm run bench:vad-learned -- --methods auto --budgets 2     # ndiff train --method auto's choice (five trainings a row)
 *   npm run bench:vad-learned -- --lr 3e-4,lora=1e-3 --temperature 1 --sequences 40 --recorded 40
 *   npm run bench:vad-learned -- --work /tmp/vad    # keep frames and rows; a second run reuses finished rows
 *   npm run bench:vad-learned -- --write-frames /tmp/vad-frames
 *                                                   # only write the bench's audio as frames folders (train/,
 *                                                   # validation/, heldback/: the evaluation audio) for ndiff
 *                                                   # train and ndiff diff --eval, e.g. --budget auto (docs/onnx-training.md)
 *   npm run bench:vad-learned -- --methods lowbit --budgets 2,10 --record bench/results/vad-learned.json
 *                                                   # new rows beside the committed ones; payloads re-chosen among all
 *   npm run bench:vad-learned -- --methods lowbit --budgets 2,5 --augment gain,noise,speed --record bench/results/vad-learned.json
 *                                                   # each training sequence augmented whole (one draw a sequence,
 *                                                   # about once an epoch), v6 scoring the augmented audio; rows of
 *                                                   # their own beside the unaugmented ones
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-web';
import { applyPayload } from '../src/apply/index.ts';
import { getHasher } from '../src/core/hasher.ts';
import { seededRandom } from '../src/core/random.ts';
import { parseSequenceAugment } from '../src/train/augment.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { budgetModels, compare, ensurePackages, espeak, joinRecordings, packageOggs, real, stream, synthetic, vadProbabilities, type BudgetRow } from './onnx.ts';
import { frames, writeFramesFolder } from './vad-frames.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const VAD_DIR = path.join(root, 'node_modules/@ricky0123/vad-web/dist');
const RATE = 16000;
const FRAME = 512;
const CONTEXT = 64;

/** Sentences and voices of the training and validation audio: none is in bench:onnx's evaluation audio. */
const TRAIN_SENTENCES = [
  'Remind me to water the plants when I get home tonight.',
  'How many kilometres is it from here to the coast?',
  'The library opens at nine and closes early on Sundays.',
  'Could you read that number back to me slowly, please?',
  'A cold wind blew across the empty harbour all night.',
  'Add eggs, flour and two cups of milk to the shopping list.',
  'My flight was delayed by three hours because of fog.',
  'Switch the heating off in the bedroom and the hall.',
  'He painted the old fence green before the rain came.',
  'Three hundred and sixty five days make a common year.',
  'Whisper if you must, but tell me what really happened.',
  'Open the garage door and leave the porch light on.',
  'The children laughed as the kite climbed into the clouds.',
  'Send a message to Anna saying I will be ten minutes late.',
  'Turn the volume down, the baby has just fallen asleep.',
  'Oranges, lemons and limes were piled high on the stall.',
];
export const VAL_SENTENCES = [
  'Please check whether the back door is locked.',
  'The museum is closed for repairs until next spring.',
  'Call the dentist tomorrow and move my appointment.',
  'A small boat drifted slowly past the lighthouse.',
];
const TRAIN_VOICES = ['en-us+m1', 'en-gb-x-gbclan', 'en-us-nyc+f1', 'en-gb-x-gbcwmd+m5', 'en-gb-scotland+f5', 'en-029+f3', 'en-us+croak', 'en-gb+m6'];
export const VAL_VOICES = ['en-gb-x-rp+f1', 'en-us+m6'];
/**
 * Recorded speech of the training and validation audio: the recordings of ktuberling-data (words)
 * and klettres-data (letters, syllables) in languages other than English. The evaluation's real
 * audio is those packages' English recordings only, so no file (and no English recording) is in both.
 */
const TRAIN_RECORDED = { ktuberling: ['ca', 'da', 'de', 'lt', 'ru', 'sl', 'uk', 'wa'], klettres: ['cs', 'da', 'de', 'es', 'fr', 'hu', 'lt', 'nds', 'ru', 'uk'] };
export const VAL_RECORDED = { ktuberling: ['el', 'gl'], klettres: ['it', 'nl', 'pt_BR'] };

export interface LearnedRow {
  method: string;
  budget: string;
  /** The augmentation the row trained with (`--augment`: gain, noise, speed, pitch of whole sequences); none when absent. */
  augment?: string;
  budgetBytes: number;
  payloadBytes: number;
  /** Validation agreement with v6 (what chose the checkpoint and the committed payloads). */
  validation: { agreement: number; baseAgreement: number; frames: number };
  trainSeconds: number;
  framesPerSecond: number;
  peakRssMiB: number;
  learningRate: number;
  audio: BudgetRow['audio'];
  /** Quick mode: the trainer's outputs on the validation frames against onnxruntime-web on the patched file. */
  runtime?: { frames: number; maxAbsDiff: number; sameDecisions: number };
  /** `--methods auto`: the candidate shipped and each candidate's validation score, bytes and time. */
  auto?: { chosen: string; candidates: { method: string; bytes: number | null; score: number | null; seconds: number; refused?: string }[] };
  error?: string;
}

export interface VadLearnedResult {
  quick: boolean;
  trainFrames: number;
  validationFrames: number;
  trainSequences: number;
  /** Of those, sequences of recorded speech (other languages than the evaluation's). */
  recordedSequences: number;
  audio: Record<string, { seconds: number }>;
  v5: BudgetRow['audio'];
  learned: LearnedRow[];
  posthoc: BudgetRow[];
  committed: Record<string, string>;
  options: { epochs: number; bptt: number; batchSize: number; augment?: string; learningRate?: number; methodLearningRates?: Record<string, number>; temperature?: number; sparseStart?: 'zero' | 'teacher'; maskPenalty?: number };
  installed: string[];
  seconds: number;
}

// ---------------------------------------------------------------------------------------------
// audio -> frames

/** Training-style audio: utterances two at a time (one sequence each), noise-only stretches between some. */
export function trainingStreams(sentences: string[], voices: string[], count: number, seed: number): Float32Array[] {
  const r = seededRandom(seed);
  const out: Float32Array[] = [];
  for (let k = 0; k < count; k++) {
    const clips: Float32Array[] = [];
    for (let j = 0; j < 2; j++) {
      const i = 2 * k + j;
      clips.push(espeak(sentences[i % sentences.length], voices[(i * 3 + k) % voices.length], 120 + Math.floor(80 * r()), 25 + Math.floor(50 * r())));
    }
    const s = stream(clips, seed * 1000 + k);
    if (k % 3 === 1) {
      // A noise-only stretch (0.5-1.5 s of louder noise, brown or white) at the start.
      const n = Math.floor(RATE * (0.5 + r()));
      const noise = new Float32Array(n + s.length);
      const level = 0.01 + 0.05 * r();
      let brown = 0;
      for (let i = 0; i < n; i++) {
        const w = r() * 2 - 1;
        brown = 0.98 * brown + 0.02 * w;
        noise[i] = level * (k % 2 ? w : 8 * brown);
      }
      noise.set(s, n);
      out.push(noise);
    } else out.push(s);
  }
  return out;
}

/**
 * Recorded-speech sequences: the packages' recordings in `langs`, shuffled (seeded), joined three
 * at a time with 0.15 s between (as bench:onnx joins its real clips), two such utterances a sequence.
 */
export function recordedStreams(langs: { ktuberling: string[]; klettres: string[] }, count: number, seed: number): Float32Array[] {
  if (count <= 0) return [];
  const files = [
    ...langs.ktuberling.flatMap((l) => packageOggs('ktuberling-data', new RegExp(`/ktuberling/sounds/${l}/[^/]+\\.ogg$`))),
    ...langs.klettres.flatMap((l) => packageOggs('klettres-data', new RegExp(`/klettres/${l}/(alpha|syllab)/[^/]+\\.ogg$`))),
  ];
  if (files.length < 6) throw new Error(`recorded training audio: found ${files.length} recordings of ${[...langs.ktuberling, ...langs.klettres].join(', ')} in ktuberling-data and klettres-data; expected the packages installed (apt-get install ktuberling-data klettres-data)`);
  const r = seededRandom(seed);
  for (let i = files.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [files[i], files[j]] = [files[j], files[i]];
  }
  const out: Float32Array[] = [];
  for (let k = 0; k < count; k++) {
    const utterances = [0, 1].map((u) => joinRecordings([0, 1, 2].map((j) => files[(6 * k + 3 * u + j) % files.length])));
    out.push(stream(utterances, seed * 1000 + k));
  }
  return out;
}

/**
 * The bench's training and validation sequences (espeak-ng and recorded speech, seeded): what
 * every row trains and validates on, and what `bench/vad-frames.ts --set train|validation` writes
 * as frames folders for `ndiff train`. Counts as the bench's options (default 40 and 40 training,
 * 8 and 8 validation sequences; quick 3 and 1, 1 and 1).
 */
export function benchStreams(quick: boolean, counts: Pick<VadLearnedOptions, 'trainSequences' | 'recordedSequences' | 'valSequences' | 'valRecordedSequences'> = {}): { train: Float32Array[]; validation: Float32Array[]; recorded: Float32Array[] } {
  const recorded = recordedStreams(TRAIN_RECORDED, counts.recordedSequences ?? (quick ? 1 : 40), 303);
  const train = [...trainingStreams(TRAIN_SENTENCES, TRAIN_VOICES, counts.trainSequences ?? (quick ? 3 : 40), 101), ...recorded];
  const validation = [...trainingStreams(VAL_SENTENCES, VAL_VOICES, counts.valSequences ?? (quick ? 1 : 8), 202), ...recordedStreams(VAL_RECORDED, counts.valRecordedSequences ?? (quick ? 1 : 8), 404)];
  return { train, validation, recorded };
}

// ---------------------------------------------------------------------------------------------
// one row, in a child process

interface RowJob {
  dir: string;
  method: string;
  percent: number;
  epochs: number;
  bptt: number;
  batchSize: number;
  learningRate?: number;
  /** Temperature of the teacher term (trainer default 2). */
  temperature?: number;
  /** A sparse diff's start: zero, or the teacher's change (trainer default zero). */
  sparseStart?: 'zero' | 'teacher';
  /** Weight of the sparse mask's density penalty (trainer default 1e-4). */
  maskPenalty?: number;
  /** Also run the patched file with onnxruntime-web on the validation frames and compare with the trainer's own outputs. */
  checkRuntime?: boolean;
  /** Augmentations of the training sequences (`gain,noise,speed,pitch`), v6 scoring the augmented audio. */
  augment?: string;
}

/** A row's files in the work folder: method and budget, and its augmentation when it has one. */
function rowStem(r: { method: string; percent: number; augment?: string }): string {
  return `${r.method}-${r.percent}${r.augment ? `-${r.augment.replace(/,/g, '+')}` : ''}`;
}

/** What tells rows apart when runs are joined: method, budget and augmentation. */
const rowKey = (r: LearnedRow) => `${r.method} ${r.budget} ${r.augment ?? ''}`;

/** Train one row (child process): reads the frames from `dir`, writes the payload and a JSON. */
async function trainRow(job: RowJob): Promise<void> {
  const { initBackend } = await import('../src/engine/backend.ts');
  const { trainOnnxDiff } = await import('../src/train/onnx/train-onnx.ts');
  await initBackend('wasm');
  const v5 = new Uint8Array(await readFile(path.join(VAD_DIR, 'silero_vad_v5.onnx')));
  const v6 = new Uint8Array(await readFile(path.join(VAD_DIR, 'silero_vad_v6.onnx')));
  const load = async (name: string) => {
    const input = new Float32Array((await readFile(path.join(job.dir, `${name}.input.f32`))).buffer.slice(0));
    const sequence = new Int32Array((await readFile(path.join(job.dir, `${name}.sequence.i32`))).buffer.slice(0));
    return { inputs: { input: { values: input, shape: [CONTEXT + FRAME] } }, sequence };
  };
  const train = await load('train');
  const val = await load('val');
  const budgetBytes = Math.floor((job.percent / 100) * v6.length);
  // topk-retrain: the full fine-tune is v6 itself (same tensors): its change ranks the weights.
  const v6Store = new OnnxWeightStore(v6);
  const fullWeights = new Map(v6Store.weights().map((w) => [w.name, Float32Array.from(v6Store.values(w.name))]));
  const t0 = performance.now();
  let samples = 0;
  let sampleSeconds = 0;
  const res = await trainOnnxDiff(v5, train, {
    method: job.method as never,
    budgetBytes,
    epochs: job.epochs,
    batchSize: job.batchSize,
    tune: 'off',
    seed: 1,
    teacher: v6,
    validation: val,
    ...(job.checkRuntime ? { eval: val } : {}),
    shared: { sr: { values: Int32Array.of(RATE), shape: [] } },
    state: [{ input: 'state', output: 'stateN' }],
    bpttFrames: job.bptt,
    allowWorse: true,
    ...(job.learningRate ? { learningRate: job.learningRate } : {}),
    ...(job.temperature ? { temperature: job.temperature } : {}),
    ...(job.sparseStart && job.method === 'sparse' ? { sparseStart: job.sparseStart } : {}),
    ...(job.maskPenalty !== undefined && job.method === 'sparse' ? { sparse: { lambda: job.maskPenalty } } : {}),
    ...(job.augment ? { augment: job.augment } : {}),
    ...(job.method === 'topk-retrain' || job.method === 'auto' ? { fullWeights } : {}),
    header: { modelId: 'silero-vad', sequence: 1 },
    program: { source: 'silero_vad_v5.onnx' },
    onEpoch: (e) => {
      samples += e.samplesPerSecond * e.seconds;
      sampleSeconds += e.seconds;
    },
    onProgress: (m) => process.stderr.write(`[${job.method} ${job.percent}%] ${m}\n`),
  });
  await writeFile(path.join(job.dir, `${rowStem(job)}.ndiff`), res.bytes);
  let runtime: LearnedRow['runtime'];
  if (job.checkRuntime && res.evalOutputs) {
    // What the trainer measured on the validation frames against onnxruntime-web on the patched
    // file, each sequence from a zero state with the state carried, frame for frame.
    const { applyPayload: apply } = await import('../src/apply/index.ts');
    const patched = new OnnxWeightStore(v5.slice(), { source: 'v5' });
    await apply(patched, res.bytes);
    const session = await ort.InferenceSession.create(patched.modelBytes());
    const sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(RATE)]), []);
    let state: ort.Tensor = new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]);
    let maxAbsDiff = 0;
    let same = 0;
    const seq = val.sequence;
    for (let i = 0; i < seq.length; i++) {
      if (i === 0 || seq[i] !== seq[i - 1]) state = new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]);
      const r = await session.run({ input: new ort.Tensor('float32', val.inputs.input.values.slice(i * 576, (i + 1) * 576), [1, 576]), state, sr });
      state = r.stateN;
      const p = (r.output.data as Float32Array)[0];
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(p - res.evalOutputs[i]));
      if (p >= 0.5 === res.evalOutputs[i] >= 0.5) same++;
    }
    await session.release();
    runtime = { frames: seq.length, maxAbsDiff, sameDecisions: same / seq.length };
  }
  const out = {
    ...(runtime ? { runtime } : {}),
    payloadBytes: res.bytes.length,
    budgetBytes,
    validation: { agreement: res.teacher?.validation?.agreement ?? NaN, baseAgreement: res.teacher?.validation?.baseAgreement ?? NaN, frames: res.teacher?.validation?.examples ?? 0 },
    trainSeconds: (performance.now() - t0) / 1000,
    framesPerSecond: sampleSeconds ? samples / sampleSeconds : 0,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    learningRate: res.tuning.learningRate,
    // --methods auto: which candidate it shipped, and how each validated.
    ...(res.auto ? { auto: { chosen: res.auto.chosen, candidates: res.auto.candidates.map((c) => ({ method: c.method, bytes: c.bytes ?? null, score: c.score ?? null, seconds: Math.round(c.seconds), ...(c.refused ? { refused: c.refused } : {}) })) } } : {}),
  };
  await writeFile(path.join(job.dir, `${rowStem(job)}.json`), JSON.stringify(out));
}

function runChild(job: RowJob, log: (l: string) => void): Promise<void> {
  return new Promise((resolve) => {
    const args = ['--conditions=neural-diff-source', '--import', 'tsx', fileURLToPath(import.meta.url), '--row', JSON.stringify(job)];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: root });
    let tail = '';
    child.stderr.on('data', (b: Buffer) => {
      const text = b.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (/chosen|validation|epoch \d+:|hard mask|error/i.test(line) && line.trim()) log(`  ${line.trim()}`);
    });
    child.on('close', async (code) => {
      const why = tail.split('\n').filter((l) => /Error|error:/.test(l) && l.length < 2000).slice(-2).join(' | ');
      if (code !== 0) await writeFile(path.join(job.dir, `${rowStem(job)}.json`), JSON.stringify({ error: `exit ${code}: ${why}` }));
      resolve();
    });
  });
}

// ---------------------------------------------------------------------------------------------
// the bench

export interface VadLearnedOptions {
  quick?: boolean;
  methods?: string[];
  percents?: number[];
  epochs?: number;
  bptt?: number;
  batchSize?: number;
  /** The diff learning rate of every row (default 3e-4, with LoRA at 1e-3 unless this is given). */
  learningRate?: number;
  /** A learning rate for one method, over `learningRate` (e.g. `{ lora: 1e-3 }`). */
  methodLearningRates?: Record<string, number>;
  /** Compare each row's trainer outputs with onnxruntime-web on the patched file (default: quick runs). */
  checkRuntime?: boolean;
  /** Children training at once (default 2). */
  parallel?: number;
  /**
   * Write the committed payloads (default: a full grid, or a run joining a `record`). Without a
   * record they are the best of this run's rows; never from a partial run alone, whose best at a
   * budget need not be the best measured.
   */
  commit?: boolean;
  /**
   * The results of an earlier run on the same training and validation audio (e.g.
   * bench/results/vad-learned.json): this run's rows join its rows (a row of the same method and
   * budget replaced), and each committed payload is the best by validation of them all; the
   * committed file stays when an earlier row is still the best. Refused when the validation frames
   * differ (the agreements would not compare).
   */
  record?: VadLearnedResult;
  /** Training and validation sequences (two utterances each; default 40 and 8, quick 3 and 1). */
  trainSequences?: number;
  valSequences?: number;
  /** Training and validation sequences of recorded speech in languages the evaluation does not use (default 40 and 8, quick 1 and 1). */
  recordedSequences?: number;
  valRecordedSequences?: number;
  /** Temperature of the teacher term (default 1; the trainer's own default is 2). */
  temperature?: number;
  /** Sparse rows start from the teacher's change instead of zero. */
  sparseStart?: 'zero' | 'teacher';
  /**
   * Augment the training sequences (`gain`, `noise`, `speed`, `pitch`, comma-separated): each sequence's
   * waveform augmented whole, one draw a sequence, v6 scoring the augmented audio
   * (src/engine/program/training-model.ts). Recorded in each row; rows with and without keep apart.
   */
  augment?: string;
  /** Weight of the sparse mask's density penalty (the trainer's default, 1e-4, when unset). */
  maskPenalty?: number;
  /** A folder kept after the run: its frames and finished rows are reused when the bench runs again on it. */
  work?: string;
  log?: (line: string) => void;
}

export async function runVadLearnedBench(options: VadLearnedOptions = {}): Promise<VadLearnedResult> {
  const t0 = performance.now();
  const quick = options.quick === true;
  const log = options.log ?? ((l: string) => console.error(l));
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const installed = ensurePackages([{ pkg: 'espeak-ng', bin: 'espeak-ng' }, { pkg: 'sox', bin: 'sox' }, { pkg: 'ktuberling-data' }, { pkg: 'klettres-data' }], log);
  const methods = options.methods ?? (quick ? ['sparse', 'hash'] : ['sparse', 'hash', 'lora', 'topk-retrain']);
  const percents = options.percents ?? (quick ? [2] : [1, 2, 5, 10]);
  const epochs = options.epochs ?? (quick ? 1 : 5);
  const bptt = options.bptt ?? 2;
  // What the runs in docs/onnx-training.md found: the trainer's default diff learning rate (3e-3)
  // and temperature (2) over-fit this little audio at larger budgets; 3e-4 (LoRA's factors 1e-3) and 1 did not.
  const learningRate = options.learningRate ?? 3e-4;
  // Lowbit's scales and codes at 1e-2: the rate its Silero rows in docs/BENCHMARKS.md were trained at.
  const methodLearningRates = options.methodLearningRates ?? (options.learningRate === undefined ? { lora: 1e-3, lowbit: 1e-2 } : undefined);
  const temperature = options.temperature ?? 1;
  const batchSize = options.batchSize ?? 64;
  // Checked before any audio is made or any row trains: what a whole sequence takes (gain, noise, speed, pitch).
  const augment = parseSequenceAugment(options.augment ?? 'none', 'silero_vad_v5.onnx').join(',') || undefined;

  log('training and validation audio: espeak-ng sentences and voices, and recordings in languages, that the evaluation audio does not use ...');
  const { train: trainStreams, validation: valStreams, recorded } = benchStreams(quick, options);
  const train = frames(trainStreams);
  const val = frames(valStreams);
  if (options.record) comparable(options.record, val.sequence.length, quick);
  const dir = options.work ? path.resolve(options.work) : await mkdtemp(path.join(tmpdir(), 'nd-vad-learned-'));
  await mkdir(dir, { recursive: true });
  try {
    await writeFile(path.join(dir, 'train.input.f32'), new Uint8Array(train.input.buffer));
    await writeFile(path.join(dir, 'train.sequence.i32'), new Uint8Array(train.sequence.buffer));
    await writeFile(path.join(dir, 'val.input.f32'), new Uint8Array(val.input.buffer));
    await writeFile(path.join(dir, 'val.sequence.i32'), new Uint8Array(val.sequence.buffer));
    log(`${train.sequence.length} training frames in ${trainStreams.length} sequences (${recorded.length} of recorded speech), ${val.sequence.length} validation frames; rows: ${methods.join(', ')} at ${percents.join(', ')}%, ${epochs} epoch(s), truncated backpropagation over ${bptt} frame(s), batch ${batchSize}`);

    // Each method at every budget before the next method: a run cut short still has both ends of the range.
    const jobs: RowJob[] = methods.flatMap((method) => percents.map((percent) => ({ dir, method, percent, epochs, bptt, batchSize, learningRate: methodLearningRates?.[method] ?? learningRate, temperature, ...(options.sparseStart ? { sparseStart: options.sparseStart } : {}), ...(options.maskPenalty !== undefined ? { maskPenalty: options.maskPenalty } : {}), ...((options.checkRuntime ?? quick) ? { checkRuntime: true } : {}), ...(augment ? { augment } : {}) })));
    const done = new Set<RowJob>();
    for (const job of jobs) if (options.work && existsSync(path.join(dir, `${rowStem(job)}.json`))) done.add(job);
    if (done.size) log(`${done.size} row(s) already trained in ${dir}: reused`);
    const parallel = Math.max(1, options.parallel ?? 2);
    let next = 0;
    await Promise.all(Array.from({ length: parallel }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++];
        if (done.has(job)) continue;
        log(`training ${job.method} at ${job.percent}% ...`);
        await runChild(job, log);
      }
    }));

    // Evaluation: the audio of bench:onnx, v6 as the reference.
    log('evaluation audio (bench:onnx\'s synthetic and real sets) ...');
    const sets = { synthetic: synthetic(quick), real: real(quick) };
    const v5 = new Uint8Array(await readFile(path.join(VAD_DIR, 'silero_vad_v5.onnx')));
    const v6 = new Uint8Array(await readFile(path.join(VAD_DIR, 'silero_vad_v6.onnx')));
    const reference: Record<string, Float32Array> = {};
    const v5Audio: BudgetRow['audio'] = {};
    for (const [name, set] of Object.entries(sets)) {
      reference[name] = await vadProbabilities(v6, set.pcm);
      v5Audio[name] = compare(reference[name], await vadProbabilities(v5, set.pcm));
    }
    const hasher = await getHasher();
    const learned: LearnedRow[] = [];
    for (const job of jobs) {
      const meta = JSON.parse(await readFile(path.join(dir, `${rowStem(job)}.json`), 'utf8')) as Omit<LearnedRow, 'method' | 'budget' | 'audio'>;
      const row: LearnedRow = { method: job.method, budget: `${job.percent}%`, ...(job.augment ? { augment: job.augment } : {}), ...meta, audio: {} };
      if (!meta.error) {
        const payload = new Uint8Array(await readFile(path.join(dir, `${rowStem(job)}.ndiff`)));
        const patched = new OnnxWeightStore(v5.slice(), { source: 'v5' });
        await applyPayload(patched, payload, { hasher });
        const model = patched.modelBytes();
        for (const [name, set] of Object.entries(sets)) row.audio[name] = compare(reference[name], await vadProbabilities(model, set.pcm));
      }
      learned.push(row);
      log(`  ${row.method} ${row.budget}${row.augment ? ` (augment ${row.augment})` : ''}: ${row.error ?? `${row.payloadBytes} bytes, validation ${(100 * row.validation.agreement).toFixed(2)}% (v5 ${(100 * row.validation.baseAgreement).toFixed(2)}%), ${Object.entries(row.audio).map(([k, a]) => `${k} ${(100 * a.agreement).toFixed(2)}%`).join(', ')}${row.auto ? `; auto chose ${row.auto.chosen} (${row.auto.candidates.map((c) => `${c.method} ${c.score === null ? 'refused' : `${(100 * c.score).toFixed(2)}%`}`).join(', ')})` : ''}`}`);
    }
    log('post-hoc top-k rows at the same budgets ...');
    const posthocModels = await budgetModels(hasher, v5, v6, percents, 'silero-vad', log);
    const posthoc: BudgetRow[] = [];
    for (const m of posthocModels) {
      const row: BudgetRow = { budget: m.budget, budgetBytes: m.budgetBytes, payloadBytes: m.payloadBytes, codec: m.codec, keptValues: m.kept, audio: {} };
      for (const [name, set] of Object.entries(sets)) row.audio[name] = compare(reference[name], await vadProbabilities(m.model, set.pcm));
      posthoc.push(row);
    }

    // The committed payloads: the best learned row at 2%, 5% and 10% by validation agreement,
    // among this run's rows and the record's.
    const record = options.record;
    const earlier = (record?.learned ?? []).filter((r) => !learned.some((n) => rowKey(n) === rowKey(r)));
    const committed: Record<string, string> = { ...(record?.committed ?? {}) };
    const fullGrid = ['sparse', 'hash', 'lora', 'topk-retrain'].every((m) => methods.includes(m)) && [2, 10].every((p) => percents.includes(p));
    if (options.commit ?? (!quick && (fullGrid || record !== undefined))) {
      for (const pct of [2, 5, 10]) {
        const rows = [...earlier, ...learned].filter((r) => r.budget === `${pct}%` && !r.error);
        if (!rows.length) continue;
        const best = rows.reduce((a, b) => (b.validation.agreement > a.validation.agreement ? b : a));
        const dest = path.join(root, 'bench/results', `vad-v5-v6-${pct}pct.ndiff`);
        if (!learned.includes(best)) {
          log(`committed ${pct}% payload kept: ${best.method} of the earlier run validates best (${(100 * best.validation.agreement).toFixed(2)}%)`);
          continue;
        }
        await mkdir(path.dirname(dest), { recursive: true });
        await copyFile(path.join(dir, `${rowStem({ method: best.method, percent: pct, augment: best.augment })}.ndiff`), dest);
        committed[`${pct}%`] = `${best.method}${best.augment ? ` --augment ${best.augment}` : ''} (validation ${(100 * best.validation.agreement).toFixed(2)}%) -> ${path.relative(root, dest)}`;
        log(`committed ${pct}% payload: ${committed[`${pct}%`]}`);
      }
    }
    if (record) {
      // The joined record: the earlier rows in their order with this run's in place of the same
      // method and budget, then this run's new rows; post-hoc rows the same way by budget.
      const joined = record.learned.map((r) => learned.find((n) => rowKey(n) === rowKey(r)) ?? r);
      learned.splice(0, learned.length, ...joined, ...learned.filter((n) => !joined.includes(n)));
      const post = record.posthoc.map((r) => posthoc.find((n) => n.budget === r.budget) ?? r);
      posthoc.splice(0, posthoc.length, ...post, ...posthoc.filter((n) => !post.includes(n)));
    }
    return {
      quick,
      trainFrames: train.sequence.length,
      validationFrames: val.sequence.length,
      trainSequences: trainStreams.length,
      recordedSequences: recorded.length,
      audio: Object.fromEntries(Object.entries(sets).map(([k, s]) => [k, { seconds: s.pcm.length / RATE }])),
      v5: v5Audio,
      learned,
      posthoc,
      committed,
      options: { epochs, bptt, batchSize, ...(augment ? { augment } : {}), learningRate, ...(methodLearningRates ? { methodLearningRates } : {}), temperature, ...(options.sparseStart ? { sparseStart: options.sparseStart } : {}), ...(options.maskPenalty !== undefined ? { maskPenalty: options.maskPenalty } : {}) },
      installed,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    if (!options.work) await rm(dir, { recursive: true, force: true });
  }
}

/** Refuse to join a record made on other validation audio (or the other mode): its agreements would not compare. */
function comparable(record: VadLearnedResult, validationFrames: number, quick: boolean): void {
  if (record.quick !== quick || record.validationFrames !== validationFrames) {
    throw new Error(`the record was made on ${record.validationFrames} validation frames${record.quick ? ' (quick)' : ''}, this run has ${validationFrames}${quick ? ' (quick)' : ''}: its validation agreements do not compare with this run's. Join runs made with the same --sequences, --val-sequences, --recorded and --val-recorded, or leave out --record`);
  }
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

export function renderMarkdown(r: VadLearnedResult): string {
  const sets = Object.keys(r.v5);
  const lines: string[] = [];
  lines.push(`| payload | bytes | validation agreement | ${sets.map((s) => `${s}: same decision as v6 | ${s}: mean abs diff`).join(' | ')} | train s | frames/s | peak RSS MiB |`);
  lines.push(`|---|---:|---:|${sets.map(() => '---:|---:').join('|')}|---:|---:|---:|`);
  const audio = (a: BudgetRow['audio']) => sets.map((s) => (a[s] ? `${pct(a[s].agreement)} | ${a[s].meanAbsDiff.toFixed(4)}` : '- | -')).join(' | ');
  lines.push(`| v5 unchanged | 0 | ${r.learned.find((x) => !x.error) ? pct((r.learned.find((x) => !x.error) as LearnedRow).validation.baseAgreement) : '-'} | ${audio(r.v5)} | - | - | - |`);
  for (const row of r.learned) {
    if (row.error) lines.push(`| ${row.method} ${row.budget}${row.augment ? ` augment ${row.augment}` : ''} | failed: ${row.error.slice(0, 120)} |`);
    else lines.push(`| ${row.method} ${row.budget}${row.augment ? ` augment ${row.augment}` : ''} | ${row.payloadBytes.toLocaleString('en')} | ${pct(row.validation.agreement)} | ${audio(row.audio)} | ${row.trainSeconds.toFixed(0)} | ${row.framesPerSecond.toFixed(0)} | ${row.peakRssMiB.toFixed(0)} |`);
  }
  for (const row of r.posthoc) lines.push(`| post-hoc top-k ${row.budget} | ${row.payloadBytes.toLocaleString('en')} | - | ${audio(row.audio)} | - | - | - |`);
  lines.push('');
  lines.push(`Training: ${r.trainFrames} frames (${(r.trainFrames * FRAME / RATE).toFixed(0)} s) in ${r.trainSequences} sequences (${r.recordedSequences ?? 0} of recorded speech); validation ${r.validationFrames} frames; ${r.options.epochs} epoch(s), truncated backpropagation over ${r.options.bptt} frame(s), batch ${r.options.batchSize}${r.options.learningRate ? `, learning rate ${r.options.learningRate}` : ''}${r.options.methodLearningRates ? ` (${Object.entries(r.options.methodLearningRates).map(([m, lr]) => `${m} ${lr}`).join(', ')})` : ''}${r.options.temperature ? `, teacher temperature ${r.options.temperature}` : ''}${r.options.sparseStart ? `, sparse start ${r.options.sparseStart}` : ''}${r.options.maskPenalty !== undefined ? `, sparse mask penalty ${r.options.maskPenalty}` : ''}${r.options.augment ? `, training sequences augmented (${r.options.augment})` : ''}. Evaluation: ${Object.entries(r.audio).map(([k, a]) => `${k} ${a.seconds.toFixed(0)} s`).join(', ')}.`);
  if (Object.keys(r.committed).length) lines.push(`Committed: ${Object.entries(r.committed).map(([k, v]) => `${k}: ${v}`).join('; ')}.`);
  return lines.join('\n');
}

/** `--lr 3e-4` (every method) or `--lr 3e-4,lora=1e-3` (a method's own after the default). */
function learningRates(text: string | undefined): Pick<VadLearnedOptions, 'learningRate' | 'methodLearningRates'> {
  if (!text) return {};
  const out: Pick<VadLearnedOptions, 'learningRate' | 'methodLearningRates'> = {};
  for (const part of text.split(',').map((x) => x.trim()).filter(Boolean)) {
    const [method, value] = part.includes('=') ? part.split('=') : [undefined, part];
    const lr = Number(value);
    if (!(lr > 0)) throw new Error(`--lr: expected a positive learning rate, or METHOD=RATE, found "${part}"`);
    if (method) out.methodLearningRates = { ...out.methodLearningRates, [method]: lr };
    else out.learningRate = lr;
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const row = arg('--row');
  const framesDir = arg('--write-frames');
  if (framesDir) {
    // The bench's audio as frames folders for ndiff train and ndiff diff --eval: train/,
    // validation/ and heldback/ (the evaluation audio, synthetic then real).
    const quick = process.argv.includes('--quick');
    ensurePackages([{ pkg: 'espeak-ng', bin: 'espeak-ng' }, { pkg: 'sox', bin: 'sox' }, { pkg: 'ktuberling-data' }, { pkg: 'klettres-data' }], (l) => console.error(l));
    const { train, validation } = benchStreams(quick);
    const folders = { train, validation, heldback: [synthetic(quick).pcm, real(quick).pcm] };
    for (const [name, streams] of Object.entries(folders)) {
      const n = await writeFramesFolder(path.join(framesDir, name), streams);
      console.log(`wrote ${path.join(framesDir, name)}: ${n} frames in ${streams.length} sequences`);
    }
  } else if (row) {
    try {
      await trainRow(JSON.parse(row) as RowJob);
    } catch (e) {
      // The message alone: an uncaught error would print tfjs-backend-wasm's whole one-line source.
      process.stderr.write(`error: ${(e as Error).message}\n`);
      process.exit(1);
    }
  } else {
    const quick = process.argv.includes('--quick');
    const list = (s: string | undefined) => s?.split(',').map((x) => x.trim()).filter(Boolean);
    const res = await runVadLearnedBench({
      quick,
      ...(list(arg('--methods')) ? { methods: list(arg('--methods')) } : {}),
      ...(list(arg('--budgets')) ? { percents: (list(arg('--budgets')) as string[]).map(Number) } : {}),
      ...(arg('--epochs') ? { epochs: Number(arg('--epochs')) } : {}),
      ...(arg('--bptt') ? { bptt: Number(arg('--bptt')) } : {}),
      ...(arg('--batch-size') ? { batchSize: Number(arg('--batch-size')) } : {}),
      ...learningRates(arg('--lr')),
      ...(arg('--parallel') ? { parallel: Number(arg('--parallel')) } : {}),
      ...(process.argv.includes('--no-commit') ? { commit: false } : {}),
      ...(arg('--sequences') ? { trainSequences: Number(arg('--sequences')) } : {}),
      ...(arg('--val-sequences') ? { valSequences: Number(arg('--val-sequences')) } : {}),
      ...(arg('--recorded') ? { recordedSequences: Number(arg('--recorded')) } : {}),
      ...(arg('--val-recorded') ? { valRecordedSequences: Number(arg('--val-recorded')) } : {}),
      ...(arg('--temperature') ? { temperature: Number(arg('--temperature')) } : {}),
      ...(arg('--sparse-start') ? { sparseStart: arg('--sparse-start') as 'zero' | 'teacher' } : {}),
      ...(arg('--mask-penalty') ? { maskPenalty: Number(arg('--mask-penalty')) } : {}),
      ...(arg('--augment') ? { augment: arg('--augment') } : {}),
      ...(arg('--work') ? { work: arg('--work') } : {}),
      ...(arg('--record') ? { record: JSON.parse(await readFile(arg('--record') as string, 'utf8')) as VadLearnedResult } : {}),
    });
    console.log(renderMarkdown(res));
    console.log(`\n(${quick ? 'quick' : 'full'} run, ${res.seconds.toFixed(0)} s${res.installed.length ? `; installed ${res.installed.join(', ')}` : ''})`);
    // --record FILE: the joined results go back to FILE (and to --json when given too).
    for (const j of new Set([arg('--json'), arg('--record')].filter((x): x is string => x !== undefined))) {
      await mkdir(path.dirname(path.resolve(j)), { recursive: true });
      await writeFile(j, JSON.stringify(res, null, 2) + '\n');
    }
  }
}
