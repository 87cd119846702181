/**
 * `release`: what `ndiff release` does, as library calls. A release folder keeps one model's full
 * versions, the payloads into the newest from the last K, and the signed manifest devices read;
 * {@link release} holds one call per subcommand (`add`, `job`, `publish`, `run`, `status`,
 * `show`, `cancel`). Each takes paths (keys as paths or `KeyObject`s), checks its options as the
 * command does (a `UsageError` naming the option and the command's flag, the folder untouched),
 * reports progress through `onProgress`, and returns the fields `ndiff release ... --json`
 * prints with the warnings the command prints on stderr.
 */
import type { KeyObject } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkChoices, OUTPUT_KINDS } from '../core/choices.ts';
import { UsageError } from '../core/errors.ts';
import { addVersion, type DriftCheck, type LossyJobPayload } from '../release/add.ts';
import { sha256Of } from '../release/blobs.ts';
import { ggufMethodRefused, isGgufModelPath, layOutGgufJobModels } from '../release/gguf.ts';
import { ggufModelFiles } from '../io/gguf/in-place.ts';
import { exportJob } from '../release/jobs.ts';
import { LEARNED_METHODS, type LearnedMethod } from '../release/learned.ts';
import { materializeVersion } from '../release/package.ts';
import { newestVersion, readRecord, type ReleaseJob } from '../release/record.ts';
import type { PayloadCloseness } from '../train/target-closeness.ts';
import { ggufCloseness, ggufEvalText, measureGgufPayload } from './diff-gguf-eval.ts';
import type { EvalCloseness, OutputKind } from './diff-types.ts';
import { measurePayload, movesAwayText } from './measure/payload-eval.ts';
import { isSafetensorsPath, openModel } from './models.ts';
import { DEFAULT_KEYFRAME_BELOW, orderedGrid, qualityTargetOf, type QualityTarget, type QualityTargetOptions } from './quality-target.ts';
import { interfaceWarning, modelPortsAt } from './ports.ts';
import { NO_PROGRESS, type Progress } from './progress.ts';
import { budgetOf, expiryOf, jobLines, lossyText, readExisting, privateKeyOf, type ReleaseJobLine } from './release-common.ts';
import { releaseCancel, releaseJob, releasePublish, releaseShow } from './release-jobs.ts';
import { releaseRun, releaseStatus, releaseWorker } from './release-queue.ts';

export type { ReleaseJobLine, ReleaseDirOptions } from './release-common.ts';
export type { ReleaseJobOptions, ReleaseJobResult, ReleaseJobExport, ReleasePublishOptions, ReleasePublishResult, ReleaseCancelOptions, ReleaseCancelResult } from './release-jobs.ts';
export type { ReleaseRunOptions, ReleaseRunResult, ReleaseStatus, ReleaseWorkerOptions, ReleaseWorker } from './release-queue.ts';

/** Before an exact payload, `add` with `eval` tries top-k payloads of these multiples of the budget. */
const KEYFRAME_LARGER = [2, 4];


/** What {@link release}.add takes (`ndiff release add`). */
export interface ReleaseAddOptions extends Pick<QualityTargetOptions, 'minAgreement' | 'budgetGrid'> {
  /** The release folder (created by the first add; serve it from any static host). */
  release: string;
  /** The new version: a TF.js folder, an `.onnx`, `.tflite` or `.safetensors` file. */
  model: string;
  /** The id devices know the model by: needed by the first add, kept in `release.json`. */
  modelId?: string;
  /** The Ed25519 private key (a `.private.pem` path from `ndiff keygen`, or a KeyObject): needed unless `plan`. */
  key?: string | KeyObject;
  /** Payloads from the last K versions (default 3; the record keeps it once set). */
  history?: number;
  /**
   * `exact` (default): every change; `topk`: the largest changes within `budget` (for a `.gguf`
   * model the on-grid payload: the changed blocks that count most, each the base's or the
   * version's, measured through llama.cpp on an `eval` text); a method of
   * `ndiff train` (`sparse`, `lowbit`, `auto`...): a payload learned toward the new version (or
   * `teacher`) within `budget`, trained by each job (with `plan`, `train` and `eval`).
   */
  method?: 'exact' | 'topk' | LearnedMethod;
  /**
   * With `topk`: the bytes of each payload (`1%`, `40KB`, a number of bytes), or `auto`: the
   * smallest budget of `budgetGrid` whose devices agree with the version on at least
   * `minAgreement` of the `eval` inputs, each payload sized so (none: the exact payload).
   */
  budget?: string | number;
  /** The manifest's expiry: a Date, an ISO date or a duration from now (`30d`, `12h`; default 30d). */
  expires?: string | Date;
  /** Record the version and its jobs only; run nothing (then `job` per job and `publish`). */
  plan?: boolean;
  /**
   * With `topk`: inputs (x.npy, or a folder) each lossy payload is measured on before anything is
   * signed. With a learned method: the inputs each job's payload is measured on, by its worker and
   * again by the run before signing. Needs tfjs.
   */
  eval?: string;
  /** With a learned method: the training data (as `ndiff train --train` takes it), stored in the folder and named in each job. */
  train?: string;
  /** With a learned method: the model the payloads learn toward (default: the new version itself). */
  teacher?: string;
  /** With a learned method: epochs of each job's training (default 10). */
  epochs?: number;
  /** With a learned method: the training seed (default 0; the same seed and options give the same bytes). */
  seed?: number;
  /** With a learned method: the learning-rate search (default quick). */
  tune?: 'quick' | 'thorough' | 'off';
  /** With a learned method: each job's training threads (default 1: the bytes are the same on any worker). */
  threads?: number;
  /** With `eval` on .onnx files, stateful models: `INPUT:OUTPUT` pairs carried from frame to frame. */
  state?: string[];
  /** With `eval` on .onnx files: the output compared. */
  output?: string;
  /** With `eval` on .onnx files: how the output reads. */
  outputKind?: OutputKind;
  /** With `eval`: the least top-1 agreement (0-1) with the version before a chain gets a larger or exact payload (default 0.98; with budget `auto`, `minAgreement` is the threshold). */
  keyframeBelow?: number;
  /** Progress lines, as `ndiff release add` prints them on stderr. */
  onProgress?: Progress;
  /** With `eval`: each lossy payload's closeness to its version, as it is measured (before the add signs or refuses). */
  onMeasured?: (measured: ReleaseMeasurement) => void;
}

/** One lossy payload measured by `add` with `eval`. */
export interface ReleaseMeasurement {
  job: ReleaseJob;
  closeness: EvalCloseness;
  /** The keyframe threshold the add measures against. */
  keyframeBelow: number;
  /** With budget `auto`: the quality target and the budgets tried in order. */
  budgetAuto?: { target: QualityTarget; grid: string[] };
}

/** What {@link release}.add returns: the fields `ndiff release add --json` prints, and the warnings. */
export interface ReleaseAddResult {
  modelId: string;
  version: number;
  fingerprint: string;
  /** With `plan`: the jobs to run, each with the command that runs it. */
  jobs?: ReleaseJobLine[];
  /** Without `plan`: the bytes of the version's full package. */
  packageBytes?: number;
  /** Without `plan`: the manifest's release number. */
  release?: number;
  /** Without `plan`: payloads signed into the manifest. */
  added?: number;
  /** Without `plan`: jobs whose payload was not kept (no smaller than the package). */
  skipped?: { id: string; why: string }[];
  /** With `eval`: the keyframe threshold, and each lossy payload's drift. */
  keyframeBelow?: number;
  drift?: DriftCheck[];
  /** With budget `auto`: the quality target and the budgets tried in order (smallest first). */
  budgetAuto?: { target: QualityTarget; grid: string[] };
  /** The version's inputs or outputs differ from the newest one's. */
  interfaceChanged?: true;
  warning?: string;
  /** What `ndiff release add` prints on stderr as warnings (none refuses the add). */
  warnings: string[];
}




/** The option checks of `add` that need no file; budget auto's target and grid when it is asked for. */
function checkAdd(o: ReleaseAddOptions): ReturnType<typeof qualityTargetOf> {
  checkChoices(o, [['outputKind', '--output-kind', OUTPUT_KINDS]]);
  const method = o.method ?? 'exact';
  const given = budgetOf(o.budget) !== undefined;
  const learned = (LEARNED_METHODS as readonly string[]).includes(method);
  if (method !== 'exact' && method !== 'topk' && !learned) throw new UsageError(`method (--method) ${JSON.stringify(method)}: expected exact, topk or a learned method (${LEARNED_METHODS.join(', ')})`, { expected: ['exact', 'topk', ...LEARNED_METHODS], found: method });
  const auto = qualityTargetOf({ ...o, ...(o.budget !== undefined ? { budget: o.budget } : {}) });
  if (auto) checkAutoAdd(o, method, auto.target);
  if (learned) {
    checkLearnedAdd(o, given);
    return auto;
  }
  const learnedOnly = (['train', 'teacher', 'epochs', 'seed', 'tune', 'threads'] as const).filter((k) => o[k] !== undefined);
  if (learnedOnly.length) throw new UsageError(`${learnedOnly.join(', ')} (--${learnedOnly[0]}) plan learned payloads: set method (--method) to a learned one (sparse, lowbit, auto...), or leave them out`, { found: learnedOnly });
  if (method === 'topk' && !given) throw new UsageError('method topk (--method topk) needs budget (--budget), e.g. 2%: the byte budget of each payload');
  if (method === 'exact' && given) throw new UsageError('budget (--budget) applies to method topk (--method topk); exact payloads carry every change (add method topk (--method topk) to cap them)');
  if (!o.plan && !o.key) throw new UsageError('key (--key) is needed to publish (the Ed25519 private key from ndiff keygen); with plan (--plan) the key is needed only by publish (`ndiff release publish`)');
  if (o.eval !== undefined && o.plan) throw new UsageError('eval (--eval) measures the payloads add makes before it signs them; with plan (--plan) add makes none: measure a job\'s payload with diff and eval (ndiff diff --eval), or add without plan (--plan)');
  if (o.eval !== undefined && isSafetensorsPath(o.model)) throw new UsageError(`eval (--eval) runs the model, and model (--model) ${o.model} is a .safetensors file, which holds weights without the program that runs them: leave eval (--eval) out, or release the model in a format that carries its program (a TF.js folder, .onnx or .tflite)`, { model: o.model });
  if (o.eval !== undefined && method !== 'topk') throw new UsageError('eval (--eval) measures lossy payloads (method topk (--method topk) and budget (--budget B)); exact payloads reach the version bit for bit, so there is nothing to measure: leave eval (--eval) out');
  if (o.eval === undefined && (o.state?.length || o.output || o.outputKind)) throw new UsageError('state (--state), output (--output) and outputKind (--output-kind) tell eval (--eval) how to run an .onnx model: add eval (--eval INPUTS), or leave them out');
  if (o.keyframeBelow !== undefined && o.eval === undefined) throw new UsageError('keyframeBelow (--keyframe-below) is the least agreement with the version a lossy chain may drift to, measured on the eval inputs: add eval (--eval INPUTS), or leave keyframeBelow (--keyframe-below) out');
  const threshold = o.keyframeBelow ?? DEFAULT_KEYFRAME_BELOW;
  if (!(threshold >= 0 && threshold <= 1)) throw new UsageError(`keyframeBelow (--keyframe-below) ${o.keyframeBelow}: expected an agreement from 0 to 1 (0.98 for 98%)`, { expected: '0 to 1', found: o.keyframeBelow });
  return auto;
}

/** The checks of budget `auto` in a release: top-k payloads, measured at add time by their agreement. */
function checkAutoAdd(o: ReleaseAddOptions & { maxMeanAbsDiff?: number; maxAccuracyDrop?: number }, method: string, target: QualityTarget): void {
  if (method !== 'topk') throw new UsageError(`budget auto (--budget auto) in a release sizes top-k payloads (--method topk) by the agreement their devices keep; method ${method} (--method ${method}) ${method === 'exact' ? 'carries every change, whatever the budget' : 'plans its payloads for a job queue: plan a budget (--budget 5%), and size it with ndiff train --budget auto on one edge first'}`, { expected: 'topk', found: method });
  if (target.option !== 'minAgreement') throw new UsageError(`budget auto (--budget auto) in a release measures each payload by the top-1 agreement its devices keep with the version (the keyframe rule's measure): give minAgreement (--min-agreement 0.99); ${target.option === 'maxMeanAbsDiff' ? 'maxMeanAbsDiff (--max-mean-abs-diff)' : 'maxAccuracyDrop (--max-accuracy-drop)'} is taken by ndiff diff and ndiff train`, { expected: 'minAgreement', found: target.option });
  if (o.plan) throw new UsageError('budget auto (--budget auto) measures each payload on the eval inputs (--eval) when add makes it, and with plan (--plan) add makes none: add without plan (--plan), or plan a budget (--budget 5%)');
  if (o.keyframeBelow !== undefined) throw new UsageError('with budget auto (--budget auto), minAgreement (--min-agreement) is the keyframe threshold too: leave keyframeBelow (--keyframe-below) out');
}

/** The option checks of `add` with a learned method: planned only, with a budget, training data and eval inputs. */
function checkLearnedAdd(o: ReleaseAddOptions, budgetGiven: boolean): void {
  const m = o.method as string;
  if (!o.plan) throw new UsageError(`method ${m} (--method ${m}) learns each payload in a job: add with plan (--plan), then run the plan on a job queue (ndiff release run) or each job (ndiff release job)`);
  if (!budgetGiven) throw new UsageError(`method ${m} (--method ${m}) needs budget (--budget), e.g. 5%: the byte budget each payload is trained within`);
  if (o.train === undefined) throw new UsageError(`method ${m} (--method ${m}) needs train (--train DATA): the inputs the payloads learn on (x.npy, or a folder; labels optional toward the version)`);
  if (o.eval === undefined) throw new UsageError(`method ${m} (--method ${m}) needs eval (--eval INPUTS): the inputs each payload is measured on, by its worker and again before it is signed`);
  if (isSafetensorsPath(o.model)) throw new UsageError(`method ${m} (--method ${m}) trains the model, and model (--model) ${o.model} is a .safetensors file, which holds weights without the program that runs them: release it as a TF.js folder, .onnx or .tflite file, or use method exact or topk`, { model: o.model });
  if (o.state?.length || o.output || o.outputKind || o.keyframeBelow !== undefined) throw new UsageError('state (--state), output (--output), outputKind (--output-kind) and keyframeBelow (--keyframe-below) are not taken by a learned plan: leave them out');
}

/**
 * Add a version to a release folder, as `ndiff release add` does: store its full package, make
 * its payloads from the last K versions (exact, or top-k within a budget, measured on `eval`
 * inputs with keyframes when a lossy chain drifts), and sign the manifest; with `plan`, record
 * the version and its jobs only. A refused add leaves the folder as it was.
 */
async function releaseAdd(o: ReleaseAddOptions): Promise<ReleaseAddResult> {
  const method = o.method ?? 'exact';
  const gguf = isGgufModelPath(o.model);
  if (gguf && method !== 'exact' && method !== 'topk') throw ggufMethodRefused(method);
  if (gguf && (o.state?.length || o.output || o.outputKind)) throw new UsageError('state (--state), output (--output) and outputKind (--output-kind) tell eval (--eval) how to run an .onnx model; a GGUF model is measured through llama.cpp on a text (--eval TEXT): leave them out', { model: o.model });
  const auto = checkAdd(o);
  const progress = o.onProgress ?? NO_PROGRESS;
  const grid = auto ? await gridOfModel(o.model, auto.grid) : undefined;
  const budget = grid ? grid[0] : budgetOf(o.budget);
  const threshold = auto ? auto.target.value : o.keyframeBelow ?? DEFAULT_KEYFRAME_BELOW;
  const expiresAt = o.plan ? undefined : expiryOf(o.expires);
  if (o.eval !== undefined) await stat(o.eval).catch(() => { throw new UsageError(`eval (--eval) ${o.eval} does not exist: expected the inputs (x.npy, or a folder holding it; for .onnx files one .npy per model input)`, { eval: o.eval }); });
  const warnings: string[] = [];
  const key = o.key ? await privateKeyOf(o.key, warnings) : undefined;
  const warning = await interfaceChangeOfAdd(o.release, o.model);
  if (warning) warnings.push(warning);
  if ((LEARNED_METHODS as readonly string[]).includes(method)) return planLearned(o, method as LearnedMethod, budget as string, warnings, warning);
  const dir = o.eval !== undefined ? await mkdtemp(path.join(tmpdir(), 'ndiff-release-eval-')) : undefined;
  const measured = new Map<string, PayloadCloseness>();
  const measure = async (l: LossyJobPayload) => {
    const sha = sha256Of(l.bytes);
    let m = measured.get(sha);
    if (!m) {
      if (gguf) m = await measureGgufJobPayload(o.release, l, o.eval as string, progress);
      else {
        const models = await exportJob(o.release, l.record, l.job, path.join(dir as string, `${l.job.id}-${measured.size}`));
        m = await measurePayload({ base: models.base, target: models.target, labels: { base: `${l.job.id}'s base (${l.job.via ? `the state a lossy chain reached from version ${l.job.fromVersion}` : `version ${l.job.fromVersion}`})`, target: `version ${l.job.toVersion}` }, eval: o.eval as string, state: o.state ?? [], ...(o.output ? { output: o.output } : {}), ...(o.outputKind ? { outputKind: o.outputKind } : {}) }, l.bytes, progress);
      }
      measured.set(sha, m);
    }
    return m;
  };
  const res = await addVersion(o.release, o.model, {
    ...(dir ? { keyframes: { threshold, ...(grid ? { budgets: grid.slice(1) } : { larger: KEYFRAME_LARGER }), agreement: async (l) => {
      const m = await measure(l);
      if (Number.isNaN(m.patched.agreement) && grid) throw new UsageError(`budget auto (--budget auto) with minAgreement (--min-agreement) compares the classes the model predicts, and ${l.job.id}'s model has no classes to agree on (a value output): size its payloads with ndiff diff --budget auto --max-mean-abs-diff X, then release with that budget`, { job: l.job.id });
      return Number.isNaN(m.patched.agreement) ? undefined : m.patched.agreement;
    } } } : {}),
    beforePublish: async (lossy) => {
      for (const l of lossy) warnings.push(`${lossyText(l.job, l.result)}${o.eval ? '' : `. Measure it on ${gguf ? 'a held-out text through llama.cpp' : 'inputs'} before devices get it: add with eval (--eval ${gguf ? 'TEXT' : 'INPUTS'}) (a payload that takes the model further from the version than not updating is then refused; a chain that drifts below keyframeBelow (--keyframe-below) gets an exact payload)`}`);
      if (o.eval !== undefined) await measureLossy(o.release, lossy, measure, (job, closeness) => o.onMeasured?.({ job, closeness, keyframeBelow: threshold, ...(auto && grid ? { budgetAuto: { target: auto.target, grid } } : {}) }), progress);
    },
    ...(o.modelId !== undefined ? { modelId: o.modelId } : {}),
    ...(o.history !== undefined ? { history: o.history } : {}),
    policy: { method: method as 'exact' | 'topk', ...(budget ? { budget } : {}) },
    planOnly: o.plan === true,
    ...(key ? { key, expiresAt } : {}),
    onProgress: progress,
  }).finally(() => dir && rm(dir, { recursive: true, force: true }));
  const changed = warning ? { interfaceChanged: true as const, warning } : {};
  if (o.plan) return { modelId: res.modelId, version: res.version, fingerprint: res.fingerprint, jobs: jobLines(o.release, await readExisting(o.release)), ...changed, warnings };
  const pub = res.published;
  return {
    modelId: res.modelId, version: res.version, fingerprint: res.fingerprint, packageBytes: res.packageBytes,
    ...(pub ? { release: pub.release, added: pub.added, skipped: pub.skipped } : {}),
    ...(res.drift ? { keyframeBelow: threshold, drift: res.drift } : {}),
    ...(auto && grid ? { budgetAuto: { target: auto.target, grid } } : {}),
    ...changed,
    warnings,
  };
}

/** A GGUF job's payload measured through llama.cpp on `evalText`, as ndiff diff --eval TEXT measures one: greedy agreement with the version on the text's next tokens, from the base its devices hold. */
async function measureGgufJobPayload(releaseDir: string, l: LossyJobPayload, evalText: string, progress: Progress): Promise<PayloadCloseness> {
  const models = await layOutGgufJobModels(releaseDir, l.record, l.job);
  try {
    const e = await measureGgufPayload({ base: models.base, target: models.target, eval: evalText }, l.bytes);
    progress(`${l.job.id}: ${ggufEvalText(e).replace(/base \+ payload/, `${l.job.via ? 'the state' : `version ${l.job.fromVersion}`} + payload`)}`);
    return ggufCloseness(e);
  } finally {
    await models.dispose();
  }
}

/** Budget auto's grid in ascending order of bytes against the new version's weights as stored (percentages and byte counts mixed). */
async function gridOfModel(model: string, grid: readonly string[]): Promise<string[]> {
  if (isGgufModelPath(model)) {
    // A GGUF budget's percentage is of the file (every part), as ndiff diff's.
    let bytes = 0;
    for (const part of ggufModelFiles(model)) bytes += (await stat(part)).size;
    return orderedGrid(grid, bytes).map((e) => e.budget);
  }
  const opened = await openModel(model, { lazy: true });
  try {
    return orderedGrid(grid, opened.weightBytes).map((e) => e.budget);
  } finally {
    await opened.close();
  }
}

/** `add --plan` with a learned method: the version and its learned jobs recorded, their inputs stored as blobs. */
async function planLearned(o: ReleaseAddOptions, method: LearnedMethod, budget: string, warnings: string[], warning: string | undefined): Promise<ReleaseAddResult> {
  const res = await addVersion(o.release, o.model, {
    ...(o.modelId !== undefined ? { modelId: o.modelId } : {}),
    ...(o.history !== undefined ? { history: o.history } : {}),
    policy: { method: 'learned', budget },
    learned: { method, train: o.train as string, eval: o.eval as string, ...(o.teacher !== undefined ? { teacher: o.teacher } : {}), epochs: o.epochs ?? 10, seed: o.seed ?? 0, tune: o.tune ?? 'quick', threads: o.threads ?? 1 },
    planOnly: true,
    onProgress: o.onProgress ?? NO_PROGRESS,
  });
  return { modelId: res.modelId, version: res.version, fingerprint: res.fingerprint, jobs: jobLines(o.release, await readExisting(o.release)), ...(warning ? { interfaceChanged: true as const, warning } : {}), warnings };
}

/**
 * The warning for a version whose inputs or outputs differ from the newest one in the release
 * (as `diff` warns for a structural payload): devices get it through payloads and the package
 * alike, and the app feeding the model must change with it. Undefined for a first version or the
 * same interface.
 */
async function interfaceChangeOfAdd(releaseDir: string, modelPath: string): Promise<string | undefined> {
  // A GGUF model's inputs and outputs are tokens (nothing to compare here), and copying the newest
  // version out of the blobs would read a file of gigabytes whole.
  if (isGgufModelPath(modelPath)) return undefined;
  const record = await readRecord(releaseDir).catch(() => undefined);
  const newest = record ? newestVersion(record) : undefined;
  if (!record || !newest) return undefined;
  const stored = await materializeVersion(releaseDir, record, newest.version);
  try {
    const [before, after] = await Promise.all([modelPortsAt(stored.path), modelPortsAt(modelPath)]);
    return before && after ? interfaceWarning(before, after, `devices updated to this version (by payload or package) need an app that feeds the model the new way; ship that app with it or first`) : undefined;
  } finally {
    await stored.dispose();
  }
}


/**
 * `add` with `eval`: each lossy payload measured on the inputs against its version (base and
 * version written from the release's blobs to a temporary folder), before anything is signed. A
 * payload that takes the model further from the version than not updating refuses the add.
 */
async function measureLossy(releaseDir: string, lossy: LossyJobPayload[], measure: (l: LossyJobPayload) => Promise<PayloadCloseness>, onMeasured: (job: ReleaseJob, m: PayloadCloseness) => void, progress: Progress): Promise<void> {
  if (!lossy.length) {
    progress('eval (--eval): every payload is exact (it reaches the version bit for bit): nothing to measure');
    return;
  }
  const worse: string[] = [];
  for (const l of lossy) {
    const m = await measure(l);
    onMeasured(l.job, m);
    if (m.movesAway) worse.push(`${l.job.id}: ${movesAwayText(m, `version ${l.job.toVersion}`, '')}`.trim().replace(/\.$/, ''));
  }
  if (worse.length) {
    throw new UsageError(`nothing was published and ${releaseDir} is as it was: ${worse.join('; ')}. A larger budget (--budget), method exact (--method exact), or a payload learned toward the version (add with plan (--plan), then ndiff release job --export, ndiff train --teacher, ndiff release job --payload) gets closer`);
  }
}

/**
 * The calls of `ndiff release`, one per subcommand: `add` (a version), `job` (one planned job,
 * or its models exported for training, or a trained payload taken back), `publish` (sign the
 * jobs' payloads into a new manifest, or re-sign with a fresh expiry), `run` and `status` (the
 * plan on a BullMQ queue), `worker` (run plans' jobs from the queue on this machine, as `ndiff
 * worker`), `show` (the record) and `cancel` (drop the pending version).
 *
 * ```ts
 * import { release } from 'neural-diff';
 * await release.add({ release: 'site/kws', model: 'models/v2', modelId: 'kws', key: 'release.private.pem' });
 * ```
 */
export const release = {
  add: releaseAdd,
  job: releaseJob,
  publish: releasePublish,
  run: releaseRun,
  status: releaseStatus,
  worker: releaseWorker,
  show: releaseShow,
  cancel: releaseCancel,
};
