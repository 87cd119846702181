/**
 * The keyword-spotting update benchmark (issue #4): a base keyword model, then five successive
 * updates, each shipped as a diff against the model the device holds, for every method and
 * budget, side by side with full fine-tuning and `zstd --patch-from`.
 *
 *   npm run bench:kws                         full run (about two hours on 2 cores)
 *   npm run bench:kws -- --quick              a few words, one update, small budgets (~2 min)
 *   node --import tsx examples/keyword-spotting/bench.ts [--quick] [--data DIR] [--work DIR]
 *        [--out FILE] [--jobs N] [--threads N] [--backend auto|wasm|native] [--epochs N] [--base-epochs N] [--updates N] [--tune quick|thorough|off]
 *        [--methods sparse,hash --budgets 0.5,1]   (every listed method at every listed budget; --methods none: the full chain alone)
 *        [--seed-offset N]   (shift every training seed: how far a figure moves with the seed alone)
 *        [--val rows|voices|accents] (validation: 10% of the training rows, default; or whole held-out voices / accents)
 *        [--compete on|off]  (on, default: a method's larger budgets also consider its smaller budgets' payloads)
 *        [--save-states DIR] (each chain's device weights after every update, as DIR/u<N>-<method>-<budget>.json)
 *        [--collect] (no training: the results of a run stopped early, from the rows its jobs wrote after
 *         every update, the updates every job finished; the same flags as that run)
 *        [--start-update N --states DIR] (start at update N from the weights a --save-states run wrote after N-1)
 *        [--train-options JSON] (trainDiff options for every chain but full fine-tuning, e.g. '{"distill":0.5}')
 *        [--full-train-options JSON] (the same for the full fine-tuning chain, the reference)
 *        [--distill-on right|replay] (right, default: distillation keeps every training row the device gets right; replay: the replayed rows only)
 *        [--teacher-methods sparse,hash --teacher-budgets 1] (teacher chains, below; --teacher-methods none: no teacher chains;
 *         a method may name its own budgets: --teacher-methods lowbit:1/5/10,auto:5)
 *        [--teacher-options JSON] (trainDiff options for the teacher chains, default '{"temperature":1,"sparseStart":"teacher"}')
 *        [--teacher-distill-inputs none|seen|field|seen+field] (teacher chains also distil, unlabeled, on every earlier
 *         training split's inputs (seen) and/or the field split's (field.ts: voices and conditions no split holds))
 *        [--field DIR] (the field split, default <data>-field; generated with the data's seed when missing)
 *
 * The default plan: sparse and hash at 0.5, 1, 2, 5 and 10% of the model; lora and topk-retrain
 * (the alternatives users pick) at 1 and 10%; post-hoc top-k at 0.5 and 1%, low-rank and
 * drop-and-rescale at 1%; full fine-tuning. Every method is tuned on a validation split of its
 * update's training data (`--tune`, default quick) and keeps its best checkpoint, full
 * fine-tuning included, so the ceiling is honest.
 *
 * Teacher chains (issue #33: a team that trains v2 in its own pipeline): at each update the
 * teacher is that update's tuned full fine-tune (the full chain's model: the team's true
 * version), and the diff is trained from the model the teacher chain's device holds, on the
 * update's training inputs without their labels; rows carry `teacher: true` and `agreement`, the
 * share of held-out predictions equal to the teacher's. Defaults: sparse, hash and topk-retrain
 * at 0.5, 1 and 10%, and post-hoc top-k of the teacher (what `ndiff diff` ships) at the same
 * budgets. `lowbit` (issue #46: every change of the teacher at 1-8 bits, distilled) and `auto`
 * (the best candidate on validation shipped, as `ndiff train --method auto`: by successive
 * halving; `--teacher-options '{"autoSearch":"exhaustive",...}'` trains every candidate) run
 * when asked (`--teacher-methods lowbit:1/5/10,auto:5`); beside each lowbit row the Delta-CoMe and
 * BitDelta baselines are measured post hoc from the same weights (the row's `anchors`).
 * They run in the full chain's job, after it, so the teacher is at hand. A learned method whose result validates below
 * the model the device holds ships nothing, as `ndiff train` refuses it (the row says
 * `refused`); the post-hoc baselines stand for other tools and ship whatever they give.
 *
 * Data comes from data.ts (generated on first use; needs apt-get for espeak-ng, flite, sox,
 * ktuberling-data, klettres-data, and zstd for the byte-diff baseline — the script installs
 * what is missing). Each (method, budget) is its own chain: its device starts from the base and
 * applies its own diffs, and every diff is trained against that chain's current model; with
 * `--compete on` a learned method's budgets run smallest first in one job and each may ship a
 * smaller budget's payload of the same update (see `compete` below). Post-hoc methods fine-tune
 * fully from their own chain's model, then compress. Chains run in `--jobs` worker processes
 * (one tfjs thread each). Rows: see src/report/results.ts.
 */
import { fileURLToPath } from 'node:url';
import { fork, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { applyPayload } from '../../src/apply/index.ts';
import { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { initBackend } from '../../src/engine/backend.ts';
import { NATIVE_HOW_TO, nativeAddonStatus } from '../../src/engine/kernels/native/index.ts';
import { evaluate, pick as pickRows, stratifiedSplit, type LabelledData } from '../../src/train/data.ts';
import { modelToStore, setModelWeights } from '../../src/engine/model-weights.ts';
import { silenceTfjsNodeBanner } from '../../src/engine/quiet.ts';
import { trainDiff, type CompetingResult, type TrainMethod, type TuneMode } from '../../src/train/train-diff.ts';
import { NoImprovementError } from '../../src/core/errors.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { deltaCome, payloadFraming, storeDeltas } from '../../src/diff/delta-come.ts';
import { BITDELTA_CODE, LowBitCache, lowbitDiff } from '../../src/lowbit-diff/encoder.ts';
import { trainAuto, type AutoResult } from '../../src/train/auto.ts';
import type { ReportMethod, ResultRow } from '../../src/report/results.ts';
import type { KwsManifest } from './data.ts';
import { keywordModel } from './model.ts';
import { loadSplit, readWeights, replaySample, toLabelled, voiceSplit, writeWeights } from './splits.ts';
import { childExecArgv } from '../lib/child-exec-argv.ts';
import { defaultFieldDir, fieldInputs } from './field.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    data: { type: 'string' },
    work: { type: 'string' },
    out: { type: 'string' },
    jobs: { type: 'string', default: '2' },
    threads: { type: 'string', default: '1' },
    backend: { type: 'string', default: 'auto' },
    epochs: { type: 'string' },
    'base-epochs': { type: 'string' },
    updates: { type: 'string' },
    budgets: { type: 'string' },
    methods: { type: 'string' },
    tune: { type: 'string' },
    'replay-ratio': { type: 'string', default: '1' },
    'seed-offset': { type: 'string', default: '0' },
    val: { type: 'string', default: 'rows' },
    compete: { type: 'string', default: 'on' },
    'save-states': { type: 'string' },
    collect: { type: 'boolean', default: false },
    'start-update': { type: 'string' },
    states: { type: 'string' },
    'train-options': { type: 'string' },
    'full-train-options': { type: 'string' },
    'distill-on': { type: 'string', default: 'right' },
    'teacher-methods': { type: 'string' },
    'teacher-budgets': { type: 'string' },
    'teacher-options': { type: 'string' },
    'teacher-distill-inputs': { type: 'string', default: 'none' },
    field: { type: 'string' },
    worker: { type: 'string' },
  },
});
const quick = args.quick as boolean;
const dataDir = resolve(args.data ?? join(here, quick ? 'work/quick-data' : 'data'));
const workDir = resolve(args.work ?? join(here, quick ? 'work/quick' : 'work/full'));
const outFile = resolve(args.out ?? join(here, 'results', quick ? 'quick.json' : 'full.json'));
const epochs = Number(args.epochs ?? (quick ? 2 : 5));
const baseEpochs = Number(args['base-epochs'] ?? (quick ? 4 : 10));
// Quick mode checks the plumbing in npm test: no tuning unless asked.
const tune = (args.tune ?? (quick ? 'off' : 'quick')) as TuneMode;
/** Method -> budgets (% of the model). `--methods`/`--budgets` give every method every budget. */
const DEFAULT_PLAN: [TrainMethod, number[]][] = quick
  ? [['sparse', [0.5, 1]], ['hash', [0.5, 1]], ['lora', [1]], ['sparse-lora', [1]], ['topk-retrain', [1]], ['topk', [0.5, 1]], ['drop', [0.5, 1]], ['lowrank', [0.5, 1]]]
  : [['sparse', [0.5, 1, 2, 5, 10]], ['hash', [0.5, 1, 2, 5, 10]], ['lora', [1, 10]], ['sparse-lora', [0.5, 1, 10]], ['topk-retrain', [1, 10]], ['topk', [0.5, 1]], ['lowrank', [1]], ['drop', [1]]];
const plan: [TrainMethod, number[]][] = args.methods || args.budgets
  ? (args.methods ?? DEFAULT_PLAN.map(([m]) => m).join(',')).split(',').filter((m) => m && m !== 'none').map((m) => [m as TrainMethod, (args.budgets ?? (quick ? '0.5,1' : '0.5,1,2,5,10')).split(',').map(Number)])
  : DEFAULT_PLAN;
/**
 * A teacher chain's method: a trainDiff method, or `auto` (trainAuto: every candidate trained at
 * the budget, the best on validation shipped, as `ndiff train --method auto`).
 */
type ChainMethod = TrainMethod | 'auto';
/** Teacher chains: method -> budgets (% of the model); `--teacher-methods none` runs none; `lowbit:1/5/10` gives a method its own budgets. */
const TEACHER_METHODS = ['sparse', 'hash', 'lora', 'sparse-lora', 'topk-retrain', 'topk', 'lowbit', 'auto'];
const teacherPlan: [ChainMethod, number[]][] = (() => {
  const entries = (args['teacher-methods'] ?? (quick ? 'sparse,topk,lowbit' : 'sparse,hash,topk-retrain,topk')).split(',').filter((m) => m && m !== 'none');
  const shared = args['teacher-budgets'] ?? (quick ? '1' : '0.5,1,10');
  return entries.map((entry) => {
    const [m, own] = entry.split(':');
    if (!TEACHER_METHODS.includes(m)) throw new Error(`--teacher-methods: ${JSON.stringify(m)} is not one of ${TEACHER_METHODS.join(', ')} (or none)`);
    const budgets = (own ? own.split('/') : shared.split(',')).map(Number);
    for (const b of budgets) if (!(b > 0 && b <= 100)) throw new Error(`--teacher-${own ? 'methods' : 'budgets'}: expected percentages of the model in (0, 100]${own ? ' after the method (lowbit:1/5/10)' : ''}, found ${JSON.stringify(own ?? shared)}`);
    return [m as ChainMethod, budgets] as [ChainMethod, number[]];
  });
})();
/** The baselines that stand for other tools: they ship whatever they give. */
const POST_HOC = new Set<TrainMethod>(['topk', 'drop', 'lowrank']);
const replayRatio = Number(args['replay-ratio']);
/**
 * Training threads per job (trainDiff's `threads`). Default 1: the jobs already keep the cores
 * busy, one chain per core does more work per second than one step split across cores, and the
 * thread count is part of what fixes the payload bytes (docs/guides/training-speed.md).
 */
const threads = Number(args.threads);
if (!(Number.isInteger(threads) && threads >= 1)) throw new Error(`--threads must be a whole number from 1, found ${JSON.stringify(args.threads)}`);
/**
 * The backend the chains train on, as `ndiff train --backend`: auto (default) is native when its
 * addon is built (OpenBLAS and our kernels, on `--threads` threads), else wasm. The rows say which
 * ran (`backend`): the two round differently, so their bytes differ and their figures agree
 * within the seed's noise. The base model trains on wasm either way (once, then reused).
 */
if (!['auto', 'wasm', 'native'].includes(args.backend as string)) throw new Error(`--backend takes auto, wasm or native, found ${JSON.stringify(args.backend)}`);
const backend = (args.backend === 'auto' ? (nativeAddonStatus().available ? 'native' : 'wasm') : args.backend) as 'wasm' | 'native';
const addon = nativeAddonStatus();
if (backend === 'native' && !addon.available) throw new Error(`--backend native: the native addon does not load (${addon.reason}); ${NATIVE_HOW_TO}`);
/** Shifts every training seed (data splits, masks, initial factors): how much a figure moves with the seed alone. */
const seedOffset = Number(args['seed-offset']);
/**
 * How the validation split is drawn: `rows` (trainDiff's default: a seeded, stratified 10% of the
 * update's training rows, so validation speaks with the training voices), `voices` (whole
 * voices of the update's new split held out, see {@link voiceSplit}) or `accents` (the same, with
 * espeak-ng rows grouped by accent instead of voice variant, as the evaluation holds out accents).
 */
const valMode = args.val as string;
if (valMode !== 'rows' && valMode !== 'voices' && valMode !== 'accents') throw new Error(`--val must be rows, voices or accents, found ${JSON.stringify(valMode)}`);
/**
 * `on` (default): the budgets of one trained method run as one group, smallest first, and each
 * also considers the smaller budgets' payloads of the same update when its device holds the same
 * model (what `ndiff train --also-consider` does), so a larger budget ships more bytes only when
 * they are significantly better on validation. Every chain of an update then validates on the
 * same held-out rows. `off`: every budget ships what it trains alone.
 */
const compete = args.compete as string;
if (compete !== 'on' && compete !== 'off') throw new Error(`--compete must be on or off, found ${JSON.stringify(compete)}`);
/**
 * Research on one update without running the ones before it: `--save-states DIR` writes every
 * chain's device weights after each update; `--start-update N --states DIR` loads them as they
 * were after update N-1 and runs from update N (same flags otherwise, so the same chains).
 */
const saveStates = args['save-states'] ? resolve(args['save-states']) : undefined;
const startUpdate = Number(args['start-update'] ?? 1);
const statesDir = args.states ? resolve(args.states) : undefined;
if (!(Number.isInteger(startUpdate) && startUpdate >= 1)) throw new Error(`--start-update must be a whole number from 1, found ${JSON.stringify(args['start-update'])}`);
if (startUpdate > 1 && !statesDir) throw new Error(`--start-update ${startUpdate} needs --states DIR: the folder a run with --save-states DIR wrote (it must have run through update ${startUpdate - 1})`);
/** A flag's JSON object of trainDiff options. */
function trainOptionsOf(flag: 'train-options' | 'full-train-options' | 'teacher-options'): Record<string, unknown> {
  const text = args[flag];
  if (!text) return {};
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new Error(`--${flag} must be a JSON object of trainDiff options, e.g. '{"distill":0.5}'; found ${JSON.stringify(text)} (${(e as Error).message})`);
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new Error(`--${flag} must be a JSON object of trainDiff options, found ${JSON.stringify(text)}`);
  return o as Record<string, unknown>;
}
/**
 * Extra trainDiff options: a hyperparameter experiment without editing code. `--train-options`
 * for every chain but full fine-tuning (which stays the reference), `--full-train-options` for it.
 */
const trainOptions = trainOptionsOf('train-options');
const fullTrainOptions = trainOptionsOf('full-train-options');
/**
 * Options of the teacher chains. Default: temperature 1 and sparse diffs starting from the
 * teacher's change, the settings that reached the digits target (docs/guides/shipping-a-trained-model.md).
 */
const teacherOptions = args['teacher-options'] ? trainOptionsOf('teacher-options') : { temperature: 1, sparseStart: 'teacher' };
/**
 * Wider distillation inputs of the teacher chains (trainDiff's `distillInputs`, `ndiff train
 * --distill-inputs`): `none` (default); `seen`, the inputs of every training split before this
 * update's (the base's and each earlier update's, labels dropped): what a team holds of where its
 * model runs; `field`, the field split's inputs (`field.ts`: unlabeled captures in voices and
 * conditions no training or evaluation split holds; its labels are never read); `seen+field`, both
 * (two sources, drawn in proportion to their sizes). The share of the stream they take is
 * `distillMix` in --teacher-options (default 0.5).
 */
const teacherDistillInputs = args['teacher-distill-inputs'] as string;
if (!['none', 'seen', 'field', 'seen+field'].includes(teacherDistillInputs)) throw new Error(`--teacher-distill-inputs must be none, seen, field or seen+field, found ${JSON.stringify(teacherDistillInputs)}`);
const distilSeen = teacherDistillInputs.split('+').includes('seen');
const fieldDir = teacherDistillInputs.split('+').includes('field') ? resolve(args.field ?? defaultFieldDir(dataDir)) : undefined;
/**
 * `--distill-on replay` marks the replayed rows of each update's training data
 * (`LabelledData.replay`), so distillation keeps the device's outputs on those only and the
 * update's own rows learn from their labels alone; `right` (default) leaves them unmarked.
 */
const distillOn = args['distill-on'] as string;
if (distillOn !== 'right' && distillOn !== 'replay') throw new Error(`--distill-on must be right or replay, found ${JSON.stringify(distillOn)}`);
/** The last update this run trains (`--updates`, at most the data's). */
const lastUpdateOf = (manifest: KwsManifest) => Math.min(manifest.updates.length - 1, Number(args.updates ?? (quick ? 1 : 5)));
/** Where a chain's device weights after update `u` are kept (--save-states, --states). */
const stateFile = (dir: string, u: number, c: Chain) => join(dir, `u${u}-${c.method}${c.teacher ? '-teacher' : ''}-${c.budgetPct ?? 'full'}.json`);

/** The methods whose budgets compete (the post-hoc baselines ship what they give). */
const COMPETING = new Set<TrainMethod>(['sparse', 'hash', 'lora', 'sparse-lora', 'topk-retrain']);
const log = (l: string) => console.log(l);

interface Chain {
  method: ChainMethod;
  budgetPct: number | null;
  /** A teacher chain: trained toward the full chain's model of each update, without labels. */
  teacher?: boolean;
  /**
   * A replica of the full chain in a job that holds teacher chains but not the full chain itself:
   * it computes the teacher there (the same seed, data and code give the same model) and records no rows.
   */
  replica?: boolean;
}
/** A chain's name in logs and competition labels. */
const chainLabel = (c: Chain) => `${c.method}${c.teacher ? ' (teacher)' : ''}${c.budgetPct !== null ? ` ${c.budgetPct}%` : ''}`;
interface ChainRows {
  rows: ResultRow[];
  /** full chain only: zstd rows */
}

function ensureZstd(): void {
  if (spawnSync('zstd', ['--version']).status === 0) return;
  log('installing zstd with apt-get (for the byte-diff baseline)');
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', 'zstd'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0) throw new Error('could not install zstd with apt-get; install it (Debian package zstd) and run again');
}

/** Bytes of `zstd -19 --patch-from=old new`: the generic byte diff a user might use instead. */
function zstdPatchBytes(oldW: Float32Array, newW: Float32Array, tmp: string): number {
  mkdirSync(tmp, { recursive: true });
  const a = join(tmp, 'old.bin');
  const b = join(tmp, 'new.bin');
  const p = join(tmp, 'patch.zst');
  writeFileSync(a, new Uint8Array(oldW.buffer, oldW.byteOffset, oldW.byteLength));
  writeFileSync(b, new Uint8Array(newW.buffer, newW.byteOffset, newW.byteLength));
  const r = spawnSync('zstd', ['-q', '-f', '-19', '--long=27', `--patch-from=${a}`, b, '-o', p]);
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
  return readFileSync(p).length;
}

function flatten(store: MemoryWeightStore): Float32Array {
  const names = store.list().map((t) => t.name).sort();
  const n = names.reduce((a, k) => a + store.values(k).length, 0);
  const out = new Float32Array(n);
  let o = 0;
  for (const k of names) {
    out.set(store.values(k), o);
    o += store.values(k).length;
  }
  return out;
}

/** The share of predictions equal to the teacher's. */
function agreementOf(mine: Int32Array, teacher: Int32Array): number {
  let same = 0;
  for (let i = 0; i < mine.length; i++) if (mine[i] === teacher[i]) same++;
  return same / mine.length;
}

/** One baseline measured beside a lowbit teacher row (see {@link anchorsOf}). */
interface Anchor {
  bytes: number;
  agreement: number;
  accAll: number;
}

/**
 * The baselines of a lowbit teacher row (issue #46), each made post hoc from the weights the
 * device held to the teacher's (no data, no training) and measured on the same held-out rows:
 * Delta-CoMe at the bytes the row shipped (its codes framed as a payload frames values);
 * BitDelta's code (1 bit a changed value, a scale per tensor: its size is what it is) and post-hoc
 * lowbit at BitDelta's bytes; post-hoc lowbit at the row's budget (what `ndiff diff --method
 * lowbit` ships without data). They never ship: the chain goes on from the row's own payload.
 */
async function anchorsOf(model: tf.LayersModel, held: MemoryWeightStore, teacher: MemoryWeightStore, o: { shipped: number; budgetBytes: number; total: number; sequence: number; evalAll: LabelledData; teacherPredictions: Int32Array; tensorNames: ReadonlySet<string> }): Promise<Record<'deltaCome' | 'bitDelta' | 'lowbitAtBitDelta' | 'lowbitPostHoc', Anchor>> {
  const hasher = await getHasher();
  const measure = (bytes: number, values: (n: string) => Float32Array | undefined): Anchor => {
    setModelWeights(model, (n) => values(n) ?? (o.tensorNames.has(n) ? held.values(n) : undefined));
    const e = evaluate(model, o.evalAll);
    return { bytes, agreement: agreementOf(e.predictions, o.teacherPredictions), accAll: e.accuracy };
  };
  const applied = async (bytes: Uint8Array): Promise<Anchor> => {
    const d = held.clone();
    await applyPayload(d, bytes);
    return measure(bytes.length, (n) => (o.tensorNames.has(n) ? d.values(n) : undefined));
  };
  const header = { modelId: 'kws-en', sequence: o.sequence };
  const { deltas, shapes } = storeDeltas(held, teacher);
  const come = deltaCome(deltas, shapes, { budgetBytes: o.shipped, framing: payloadFraming(shapes, { ...header, method: 'lowrank', budgetBytes: o.total }) });
  const deltaComeAnchor = measure(come.bytes, (n) => {
    const d = come.deltas.get(n);
    return d ? Float32Array.from(held.values(n), (x, i) => x + d[i]) : undefined;
  });
  const bitdelta = lowbitDiff(hasher, held, teacher, { ...header, budgetBytes: 10 * o.total, ...BITDELTA_CODE });
  // The two post-hoc lowbit payloads encode the same changes: one cache of their quantizations.
  const cache = new LowBitCache();
  return {
    deltaCome: deltaComeAnchor,
    bitDelta: await applied(bitdelta.bytes),
    lowbitAtBitDelta: await applied(lowbitDiff(hasher, held, teacher, { ...header, budgetBytes: bitdelta.bytes.length, cache }).bytes),
    lowbitPostHoc: await applied(lowbitDiff(hasher, held, teacher, { ...header, budgetBytes: o.budgetBytes, cache }).bytes),
  };
}

/** Run chains (worker side): every update, in order, for each chain. */
async function runChains(chains: Chain[], manifest: KwsManifest, workerId: number): Promise<ResultRow[]> {
  await initBackend(backend, backend === 'native' ? { threads } : {});
  silenceTfjsNodeBanner();
  const model = keywordModel(manifest.numClasses, 0);
  // The teacher of the teacher chains: the full chain's model after each update (same job, run before them).
  const fullChain = chains.find((c) => c.method === 'full'); // the full chain or its replica
  const teacherModel = chains.some((c) => c.teacher) ? keywordModel(manifest.numClasses, 0) : undefined;
  if (teacherModel && !fullChain) throw new Error('teacher chains need the full chain or its replica in the same job (shard() adds one)');
  const baseStore = readWeights(join(workDir, 'base.json'));
  // With --start-update, the weights each chain held after the update before (checked to exist before the workers started).
  const devices = new Map<Chain, MemoryWeightStore>(chains.map((c) => [c, startUpdate > 1 ? readWeights(stateFile(statesDir as string, startUpdate - 1, c)) : baseStore.clone()]));
  const tensorNames = new Set(baseStore.list().map((t) => t.name));
  const total = baseStore.list().reduce((a, t) => a + 4 * t.shape.reduce((x, y) => x * y, 1), 0);
  const rows: ResultRow[] = [];
  const lastUpdate = lastUpdateOf(manifest);
  // The field split's inputs (x.npy only: its labels are never read), for every update's teacher chains.
  const field = fieldDir && chains.some((c) => c.teacher) ? fieldInputs(fieldDir, dataDir) : undefined;
  const fieldX = field ? tf.tensor(field.x, field.shape, 'float32') : undefined;
  for (let u = startUpdate; u <= lastUpdate; u++) {
    const up = manifest.updates[u];
    const fresh = loadSplit(dataDir, manifest, up.train);
    const replay = replaySample(dataDir, manifest, up.replay, Math.round(fresh.y.length * replayRatio), 1000 + u);
    const split = valMode !== 'rows' ? voiceSplit(manifest, fresh, replay, 2000 + u + 7 * seedOffset, valMode as 'voices' | 'accents') : undefined;
    if (valMode !== 'rows') log(split ? `[job ${workerId}] update ${u}: validation holds out ${split.held.join(', ')} (${split.validation.reduce((a, p) => a + p.y.length, 0)} rows)` : `[job ${workerId}] update ${u}: fewer than 3 voices to train on: validation is the default 10% of rows`);
    // The update's new rows first, then the replayed ones (marked with --distill-on replay).
    let train = toLabelled(split ? split.train : [fresh, ...replay], distillOn === 'replay');
    let validation = split ? toLabelled(split.validation) : undefined;
    if (!validation && compete === 'on') {
      // One validation split for every chain of this update, so competing payloads are judged on
      // rows none of them trained on (trainDiff's own split is seeded per run).
      const { rest, part } = stratifiedSplit(train.y, 0.1, 3000 + u + 7 * seedOffset);
      if (part.length === 0) throw new Error(`update ${u}: ${train.y.length} training rows leave none for validation`);
      const all = train;
      train = pickRows(all, rest);
      validation = pickRows(all, part);
      all.x.dispose();
    }
    /** This update's results so far, per method (teacher chains apart), for the larger budgets to compete with. */
    const shipped = new Map<string, CompetingResult[]>();
    /** The teacher's predictions on evalAll, once the full chain has run this update. */
    let teacherPredictions: Int32Array | undefined;
    let teacherAccAll: number | undefined;
    // Teacher chains train on the inputs alone: the team has v2 and unlabeled inputs.
    const unlabeled = (d: typeof train) => ({ x: d.x, ...(d.replay ? { replay: d.replay } : {}) });
    // The teacher chains' wider inputs: every training split before this update's, without labels.
    const wider = distilSeen && chains.some((c) => c.teacher) ? toLabelled(manifest.updates.slice(0, u).map((p) => loadSplit(dataDir, manifest, p.train))) : undefined;
    const distillInputs = [...(wider ? [{ x: wider.x }] : []), ...(fieldX ? [{ x: fieldX }] : [])];
    if (distillInputs.length) log(`[job ${workerId}] update ${u}: teacher chains distil on ${[wider ? `${wider.y.length} earlier training inputs (${manifest.updates.slice(0, u).map((p) => p.train).join(', ')})` : '', fieldX ? `${fieldX.shape[0]} field inputs (${fieldDir})` : ''].filter(Boolean).join(' and ')} beside ${train.y.length} of the update's, distillMix ${teacherOptions.distillMix ?? 0.5}`);
    const evalNew = toLabelled([loadSplit(dataDir, manifest, up.eval)]);
    const oldNames = up.evalAll.filter((e) => e !== up.eval);
    const evalOld = toLabelled(oldNames.map((n) => loadSplit(dataDir, manifest, n)));
    const evalAll = toLabelled(up.evalAll.map((n) => loadSplit(dataDir, manifest, n)));
    for (const chain of chains) {
      const device = devices.get(chain) as MemoryWeightStore;
      if (chain.teacher && !teacherPredictions) {
        const teacherWeights = devices.get(fullChain as Chain) as MemoryWeightStore;
        setModelWeights(teacherModel as tf.LayersModel, (n) => (tensorNames.has(n) ? teacherWeights.values(n) : undefined));
        const t = evaluate(teacherModel as tf.LayersModel, evalAll);
        teacherPredictions = t.predictions;
        teacherAccAll = t.accuracy;
      }
      setModelWeights(model, (n) => (tensorNames.has(n) ? device.values(n) : undefined));
      // What the device holds before this update, on the same evaluation (the report's base row).
      const before = evaluate(model, evalAll);
      const agreementBefore = chain.teacher ? agreementOf(before.predictions, teacherPredictions as Int32Array) : undefined;
      const competeKey = `${chain.method}${chain.teacher ? ':teacher' : ''}`;
      const budgetBytes = chain.budgetPct === null ? 0 : Math.floor((total * chain.budgetPct) / 100);
      const seedOf = 100 * u + (chain.budgetPct ?? 0) * 7 + chain.method.length + 1_000_003 * seedOffset;
      let res: Awaited<ReturnType<typeof trainDiff>> | undefined;
      let auto: AutoResult['auto'] | undefined;
      let refused: string | undefined;
      const competing = chain.method !== 'auto' && COMPETING.has(chain.method);
      try {
        const data = chain.teacher ? unlabeled(train) : train;
        const options = {
          budgetBytes,
          epochs,
          threads,
          seed: seedOf,
          base: device,
          tune,
          allowWorse: chain.method !== 'auto' && POST_HOC.has(chain.method),
          ...(validation ? { validation: chain.teacher ? unlabeled(validation) : validation } : {}),
          ...(compete === 'on' && competing ? { alsoConsider: shipped.get(competeKey) ?? [] } : {}),
          header: { modelId: 'kws-en', sequence: u },
          ...(chain.method === 'full' ? fullTrainOptions : chain.teacher ? { ...teacherOptions, teacher: teacherModel, ...(distillInputs.length ? { distillInputs } : {}) } : trainOptions),
        };
        if (chain.method === 'auto') {
          const r = await trainAuto(model, data, options, (c) => log(`[job ${workerId}] update ${u} ${chainLabel(chain)}: ${c.method}: ${c.refused ? `refused (${c.refused.split(': ')[0]})` : `${c.bytes} bytes, validation ${c.scoreText}`}, ${c.seconds.toFixed(0)} s`));
          res = r;
          auto = r.auto;
        } else res = await trainDiff(model, data, { ...options, method: chain.method });
      } catch (e) {
        if (!(e instanceof NoImprovementError)) throw e;
        // What ndiff train does: nothing ships, the device keeps the model it holds.
        refused = e.message;
        setModelWeights(model, (n) => (tensorNames.has(n) ? device.values(n) : undefined));
      }
      if (res && competing) shipped.set(competeKey, [...(shipped.get(competeKey) ?? []), { ...res, label: chainLabel(chain) }]);
      // What this budget alone would have given, when a smaller budget's payload won.
      let own: { from: string; accAll: number; bytes: number } | undefined;
      if (res?.selection?.own) {
        const o = res.selection.own;
        setModelWeights(model, (n) => o.targetValues.get(n) ?? (tensorNames.has(n) ? device.values(n) : undefined));
        own = { from: res.selection.considered.find((c) => c.chosen)?.label ?? '', accAll: evaluate(model, evalAll).accuracy, bytes: o.bytes.length };
        setModelWeights(model, (n) => res!.targetValues.get(n) ?? (tensorNames.has(n) ? device.values(n) : undefined));
      }
      // The device applies the payload in place (verifies base and target fingerprints).
      const held = chain.method === 'full' ? device.clone() : null;
      const heldForAnchors = chain.method === 'lowbit' && chain.teacher && res ? device.clone() : null;
      if (res) await applyPayload(device, res.bytes);
      const accAll = evaluate(model, evalAll).accuracy;
      const accOld = evaluate(model, evalOld).accuracy;
      const accNew = evaluate(model, evalNew).accuracy;
      const agreement = chain.teacher ? agreementOf(evaluate(model, evalAll).predictions, teacherPredictions as Int32Array) : undefined;
      const row: ResultRow = {
        update: u, name: up.id, method: chain.method as ReportMethod, budgetPct: chain.budgetPct,
        accBefore: before.accuracy,
        // A teacher row carries its teacher's held-out accuracy beside its own (read against the labels).
        ...(chain.teacher ? { teacher: true, agreement, agreementBefore, teacherAccAll } : {}),
        bytes: !res ? 0 : chain.method === 'full' ? total : res.bytes.length,
        accAll, accOld, accNew, driftFromFull: 0,
        trainSeconds: res ? Number(res.trainSeconds.toFixed(2)) : null,
        backend,
        epochs, trainExamples: train.y.length,
        ...(res ? { payloadBytes: res.bytes.length, learningRate: res.tuning.learningRate, tuningCost: Number(res.tuning.cost.toFixed(3)), valAccuracy: res.validation?.accuracy ?? null, baseValAccuracy: res.validation?.baseAccuracy ?? null } : {}),
        ...(refused ? { refused: true, refusal: refused } : {}),
        ...(own ? { shippedFrom: own.from, ownAccAll: own.accAll, ownBytes: own.bytes } : {}),
        ...(auto ? { chosen: auto.chosen, candidates: auto.candidates.map((c) => ({ method: c.method, bytes: c.bytes ?? null, score: c.score ?? null, seconds: Number(c.seconds.toFixed(1)), ...(c.refused ? { refused: c.refused } : {}) })) } : {}),
      };
      if (heldForAnchors && res) {
        const teacherWeights = devices.get(fullChain as Chain) as MemoryWeightStore;
        row.anchors = await anchorsOf(model, heldForAnchors, teacherWeights, { shipped: res.bytes.length, budgetBytes, total, sequence: u, evalAll, teacherPredictions: teacherPredictions as Int32Array, tensorNames });
      }
      if (!chain.replica) rows.push(row);
      const anchors = row.anchors as Awaited<ReturnType<typeof anchorsOf>> | undefined;
      const anchorText = anchors ? `; post hoc from the same weights: Delta-CoMe ${(100 * anchors.deltaCome.agreement).toFixed(2)}% at ${anchors.deltaCome.bytes} bytes, lowbit ${(100 * anchors.lowbitPostHoc.agreement).toFixed(2)}% at ${anchors.lowbitPostHoc.bytes}, BitDelta ${(100 * anchors.bitDelta.agreement).toFixed(2)}% at ${anchors.bitDelta.bytes} (lowbit there ${(100 * anchors.lowbitAtBitDelta.agreement).toFixed(2)}%)` : '';
      log(`[job ${workerId}] update ${u} (${up.id}) ${chainLabel(chain)}${chain.replica ? ' (replica: the teacher of this job, no row)' : ''}: ${refused ? 'REFUSED (nothing shipped), ' : ''}${row.bytes} bytes, acc all ${(100 * accAll).toFixed(2)}% old ${(100 * accOld).toFixed(2)}% new ${(100 * accNew).toFixed(2)}%${agreement !== undefined ? `, agrees with the teacher on ${(100 * agreement).toFixed(2)}%` : ''} (${row.trainSeconds ?? '-'} s${res ? `, ${Number.isNaN(res.tuning.learningRate) ? 'the post-hoc payload' : `lr ${res.tuning.learningRate}`}, ${res.tuning.cost.toFixed(2)}x` : ''})${own ? `; ships ${own.from}'s payload (its own ${own.bytes} bytes would give ${(100 * own.accAll).toFixed(2)}%)` : ''}${auto ? `; auto chose ${auto.chosen}` : ''}${anchorText}`);
      if (held && res && !chain.replica) {
        const zBytes = zstdPatchBytes(flatten(held), flatten(device), join(workDir, `zstd-${workerId}`));
        rows.push({ ...row, method: 'zstd', bytes: zBytes, trainSeconds: row.trainSeconds });
        log(`[job ${workerId}] update ${u} zstd --patch-from: ${zBytes} bytes`);
      }
    }
    for (const d of [train, evalNew, evalOld, evalAll]) d.x.dispose();
    validation?.x.dispose();
    wider?.x.dispose();
    if (saveStates) {
      mkdirSync(saveStates, { recursive: true });
      for (const c of chains) if (!c.replica) writeWeights(stateFile(saveStates, u, c), devices.get(c) as MemoryWeightStore);
    }
    // The rows so far, after every update: a run stopped early keeps its finished updates (the
    // same rows a run with --updates u writes; --collect gathers them).
    writeFileSync(join(workDir, `rows-${workerId}.partial.json`), JSON.stringify(rows));
  }
  fieldX?.dispose();
  return rows;
}

async function trainBase(manifest: KwsManifest): Promise<void> {
  const marker = join(workDir, 'base.json');
  const stamp = JSON.stringify({ data: manifest.splits[manifest.updates[0].train].sha256, baseEpochs, quick });
  if (existsSync(marker) && existsSync(join(workDir, 'base.stamp')) && readFileSync(join(workDir, 'base.stamp'), 'utf8') === stamp) {
    log(`base model: reusing ${marker}`);
    return;
  }
  await initBackend('wasm');
  silenceTfjsNodeBanner();
  const up = manifest.updates[0];
  const train = toLabelled([loadSplit(dataDir, manifest, up.train)]);
  const evalData = toLabelled([loadSplit(dataDir, manifest, up.eval)]);
  const model = keywordModel(manifest.numClasses, 0);
  log(`base model: ${model.countParams()} parameters, ${manifest.numClasses} output slots; training on ${train.y.length} utterances for ${baseEpochs} epochs`);
  const res = await trainDiff(model, train, {
    method: 'full', budgetBytes: 0, epochs: baseEpochs, seed: 1, eval: evalData, tune: 'off', learningRate: 1e-3, threads,
    onEpoch: (r) => log(`  base epoch ${r.epoch}/${r.epochs} loss ${r.loss.toFixed(4)} acc ${(100 * r.trainAccuracy).toFixed(1)}% (${r.samplesPerSecond.toFixed(0)} samples/s)`),
  });
  log(`base model: held-out accuracy ${(100 * (res.accuracyAfter ?? 0)).toFixed(2)}% (${res.trainSeconds.toFixed(0)} s)`);
  writeWeights(marker, modelToStore(model));
  writeFileSync(join(workDir, 'base.stamp'), stamp);
  writeFileSync(join(workDir, 'base-metrics.json'), JSON.stringify({ params: model.countParams(), accuracy: res.accuracyAfter, seconds: res.trainSeconds, epochs: baseEpochs }, null, 2));
  train.x.dispose();
  evalData.x.dispose();
}

function allChains(): Chain[] {
  const chains: Chain[] = [{ method: 'full', budgetPct: null }];
  for (const [m, bs] of plan) for (const b of bs) chains.push({ method: m, budgetPct: b });
  for (const [m, bs] of teacherPlan) for (const b of bs) chains.push({ method: m, budgetPct: b, teacher: true });
  return chains;
}

/**
 * Relative cost of a chain: topk-retrain fine-tunes and then retrains (from a teacher it only
 * retrains); sparse-lora adds a warm-up epoch to each run and, when tuned, two more splits;
 * post-hoc top-k of a teacher trains nothing; the others train once.
 */
function chainCost(c: Chain): number {
  // auto trains lowbit, sparse, lora, sparse-lora and topk-retrain; lowbit measures its post-hoc variants, then trains twice.
  if (c.method === 'auto') return 7;
  if (c.method === 'lowbit') return 2;
  if (c.teacher) return c.method === 'topk' ? 0.1 : c.method === 'sparse-lora' ? 2 : 1;
  return c.method === 'topk-retrain' || c.method === 'sparse-lora' ? 2 : 1;
}

/**
 * Deal chains to jobs, the costliest unit first, each to the least loaded job. With `--compete on`
 * a unit is all budgets of one competing method (teacher chains apart), smallest first (a budget
 * needs the smaller budgets' results of the same update); otherwise every chain is its own unit.
 * The full chain runs first in its job; a job with teacher chains and without it runs a replica
 * of it first (the teacher), so teacher chains spread over the jobs.
 */
function shard(chains: Chain[], jobs: number): Chain[][] {
  const units: Chain[][] = [];
  const groupOf = new Map<string, Chain[]>();
  for (const c of chains) {
    const key = `${c.method}${c.teacher ? ':teacher' : ''}`;
    // Budgets that compete (and teacher chains of one method, sharing a replica) run as one unit;
    // lowbit and auto run their budgets apart (no competition between them, and long).
    if (compete === 'on' && (COMPETING.has(c.method as TrainMethod) || (c.teacher && c.method !== 'lowbit' && c.method !== 'auto'))) {
      const g = groupOf.get(key);
      if (g) {
        g.push(c);
        continue;
      }
      groupOf.set(key, [c]);
      units.push(groupOf.get(key)!);
    } else units.push([c]);
  }
  for (const g of groupOf.values()) g.sort((a, b) => (a.budgetPct ?? 0) - (b.budgetPct ?? 0));
  const cost = (u: Chain[]) => u.reduce((a, c) => a + chainCost(c), 0);
  const out: Chain[][] = Array.from({ length: jobs }, () => []);
  const load = new Array<number>(jobs).fill(0);
  const fullJob = (j: number) => out[j].some((c) => c.method === 'full');
  const order = units.map((c, i) => ({ c, i })).sort((a, b) => cost(b.c) - cost(a.c) || a.i - b.i);
  for (const { c } of order) {
    // A teacher unit in a job without the full chain costs a replica of it too.
    const extra = (j: number) => (c.some((x) => x.teacher) && !fullJob(j) ? 1 : 0);
    const j = load.map((l, k) => l + extra(k)).reduce((best, l, k, all) => (l < all[best] ? k : best), 0);
    load[j] += cost(c) + extra(j);
    if (extra(j)) out[j].push({ method: 'full', budgetPct: null, replica: true });
    out[j].push(...c);
  }
  // The full chain (or its replica) first in its job: the teacher chains of each update need it.
  // A replica is dropped where the full chain itself landed later.
  return out.map((job) =>
    job.filter((c) => !(c.replica && job.some((x) => x.method === 'full' && !x.replica))).sort((a, b) => Number(b.method === 'full') - Number(a.method === 'full')),
  );
}

if (args.worker !== undefined) {
  // worker process: run its chains, write rows
  const id = Number(args.worker);
  const manifest = JSON.parse(readFileSync(join(dataDir, 'manifest.json'), 'utf8')) as KwsManifest;
  const mine = shard(allChains(), Number(args.jobs))[id];
  const rows = await runChains(mine, manifest, id);
  writeFileSync(join(workDir, `rows-${id}.json`), JSON.stringify(rows));
  process.exit(0);
}

const t0 = performance.now();
mkdirSync(workDir, { recursive: true });
if (!existsSync(join(dataDir, 'manifest.json'))) {
  log(`no data in ${dataDir}: generating it (${quick ? 'quick' : 'full'} mode)`);
  const { generate } = await import('./data.ts');
  await generate({ out: dataDir, quick, seed: 1, jobs: 2, inflight: 2 });
}
ensureZstd();
const manifest = JSON.parse(readFileSync(join(dataDir, 'manifest.json'), 'utf8')) as KwsManifest;
if (fieldDir && teacherPlan.length) {
  if (!existsSync(join(fieldDir, 'manifest.json'))) {
    log(`no field split in ${fieldDir}: generating it from ${dataDir} (seed ${manifest.seed})`);
    const { generateField } = await import('./field.ts');
    await generateField({ data: dataDir, out: fieldDir, seed: manifest.seed, jobs: Math.max(1, Number(args.jobs)), log });
  }
  fieldInputs(fieldDir, dataDir); // checked before the base model and the workers: it goes with this data
}
if (startUpdate > 1) {
  // Checked before the base model and the workers: every chain needs the weights it held after update N-1.
  const last = lastUpdateOf(manifest);
  if (startUpdate > last) {
    console.error(`--start-update ${startUpdate} is past the last update run (${last}): expected 2-${last}; raise --updates or lower --start-update`);
    process.exit(2);
  }
  const missing = allChains().map((c) => stateFile(statesDir as string, startUpdate - 1, c)).filter((f) => !existsSync(f));
  if (missing.length) {
    console.error(`--start-update ${startUpdate}: no ${missing.join(', ')}; run the same --methods/--budgets with --save-states ${statesDir} through update ${startUpdate - 1} first`);
    process.exit(2);
  }
}
await trainBase(manifest);
const jobs = Math.max(1, Number(args.jobs));
log(`chains: ${allChains().length} (${['full', ...plan.map(([m, bs]) => `${m} ${bs.join('/')}%`)].join('; ')}${teacherPlan.length ? `; from the teacher: ${teacherPlan.map(([m, bs]) => `${m} ${bs.join('/')}%`).join('; ')}` : ''}), ${jobs} job(s) x ${threads} training thread(s) on ${backend}, ${epochs} epochs per update, tuning ${tune}`);
const collect = args.collect as boolean;
if (!collect) for (let i = 0; i < jobs; i++) for (const f of [`rows-${i}.json`, `rows-${i}.partial.json`]) rmSync(join(workDir, f), { force: true });
const passArgs = process.argv.slice(2).filter((a, i, all) => a !== '--worker' && all[i - 1] !== '--worker');
if (!collect) await Promise.all(
  Array.from({ length: jobs }, (_, i) =>
    new Promise<void>((res, rej) => {
      const child = fork(fileURLToPath(import.meta.url), [...passArgs, '--worker', String(i), '--jobs', String(jobs), '--data', dataDir, '--work', workDir], { execArgv: childExecArgv() });
      child.on('exit', (code) => (code === 0 ? res() : rej(new Error(`job ${i} exited with ${code}`))));
    }),
  ),
);
let rows: ResultRow[] = [];
if (collect) {
  // A run stopped early: each job's rows after its last finished update; the updates all finished.
  const parts = Array.from({ length: jobs }, (_, i) => {
    const f = join(workDir, `rows-${i}.partial.json`);
    if (!existsSync(f)) throw new Error(`--collect: no ${f}: job ${i} of that run finished no update (or the flags differ from the run's)`);
    return JSON.parse(readFileSync(f, 'utf8')) as ResultRow[];
  });
  const done = Math.min(...parts.map((p) => Math.max(0, ...p.map((r) => r.update))));
  if (done < startUpdate) throw new Error('--collect: no update was finished by every job');
  rows = parts.flat().filter((r) => r.update <= done);
  log(`--collect: updates ${startUpdate}-${done} finished by every job (the rows --updates ${done} writes)`);
} else for (let i = 0; i < jobs; i++) rows.push(...(JSON.parse(readFileSync(join(workDir, `rows-${i}.json`), 'utf8')) as ResultRow[]));
for (const r of rows) {
  const full = rows.find((f) => f.update === r.update && f.method === 'full');
  r.driftFromFull = full ? Number((full.accAll - r.accAll).toFixed(6)) : 0;
}
const order = ['full', 'zstd', 'sparse', 'hash', 'lora', 'sparse-lora', 'topk-retrain', 'lowbit', 'auto', 'topk', 'drop', 'lowrank'];
rows.sort((a, b) => a.update - b.update || Number(!!a.teacher) - Number(!!b.teacher) || order.indexOf(a.method) - order.indexOf(b.method) || (a.budgetPct ?? 0) - (b.budgetPct ?? 0));
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify(rows, null, 1) + '\n');
log(`wrote ${outFile}: ${rows.length} rows in ${((performance.now() - t0) / 60000).toFixed(1)} min`);
