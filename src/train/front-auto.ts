/**
 * `train({ budget: 'auto' })` (`ndiff train --budget auto`): the smallest budget of the grid whose
 * payload meets the quality target on the `eval` inputs (src/front/quality-target.ts), by the
 * search `diff()` runs (src/front/budget-search.ts). At each budget, toward a teacher, the post-hoc
 * payload first (the teacher's change carried without training, as `ndiff diff --target TEACHER
 * --budget B` makes it): when it meets the target nothing is trained at that budget; else a
 * training at that budget (below: what it reuses), measured against the teacher as `ndiff diff
 * --eval` measures. With
 * labels and no teacher the target is accuracy, held against a full fine-tune's (trained first: it
 * is also what is written when no budget below its size meets the target). Each budget trains from
 * the base. What a trained budget learned is reused by the larger ones (`budgetTune: 'once'`, the
 * default): the learning rate its tuning chose, so each later budget trains once at that rate
 * (`tune: 'off'`) instead of tuning again, its payload the one `--budget B --lr RATE --tune off`
 * trains (a tuning costs 2.5 to 5 runs: docs/cli/train.md). `'each'` tunes at every budget, as
 * `--budget B` alone does. A trained choice is the search's own run, written as is (trained again
 * with the same settings only to write modelOut or metricsOut too).
 */
import { UsageError } from '../core/errors.ts';
import type { PayloadCloseness } from '../diff/closeness.ts';
import { budgetChoiceText, budgetTryText, searchBudget, type BudgetCandidate, type BudgetSearchReport } from '../front/budget-search.ts';
import { diff, type DiffOptions, type ValueDiffReport } from '../front/diff.ts';
import { LowBitCache } from '../lowbit-diff/cache.ts';
import { closenessLines, measurePayload } from '../front/measure/payload-eval.ts';
import { checkOutputPath, isModelFilePath, openModel, resolveModelId } from '../front/models.ts';
import type { OutputKind } from '../diff/closeness.ts';
import type { QualityTarget, QualityTargetOptions } from '../front/quality-target.ts';
import { writeOut, wroteLine, type TrainProgress } from './front-sources.ts';
import type { TrainMethod } from './methods.ts';

/** What the search reads of train()'s options (front.ts's TrainOptions; named here so the two files do not import each other). */
export interface AutoTrainOptions extends QualityTargetOptions {
  base: unknown;
  teacher?: unknown;
  eval?: string;
  budget?: string | number;
  method?: TrainMethod | 'auto';
  tune?: 'quick' | 'thorough' | 'off';
  lr?: number;
  /** Budget auto: tune the learning rate at the first budget trained and reuse it at the larger ones (`once`, default), or at every budget (`each`). */
  budgetTune?: 'once' | 'each';
  modelId?: string;
  sequence?: number;
  expires?: string;
  store?: 'stored' | 'float32';
  state?: string[];
  output?: string;
  outputKind?: OutputKind;
  out?: string;
  modelOut?: string;
  metricsOut?: string;
  allowWorse?: boolean;
  seed?: number;
  onProgress?: (event: TrainProgress) => void;
  lowbitCache?: LowBitCache;
}

/** What the search reads of train()'s result (front.ts's TrainResult). */
export interface AutoTrainResult {
  payload: Uint8Array;
  bytes: number;
  accuracyBefore: number | null;
  accuracyAfter: number | null;
  lines: string[];
  /** The learning rate the run trained at (NaN when it kept a candidate that was not trained, e.g. lowbit's post-hoc codes). */
  tuning?: { learningRate: number };
}

/** What a trained budget's run was given beyond the budget: the rate an earlier budget's tuning chose. */
type Reused = { lr: number; tunedAt: string };

/** The options that train once at a reused rate (none when nothing is reused). */
const trainedAt = (r: Reused | undefined) => (r ? { lr: r.lr, tune: 'off' as const } : {});

/** A candidate's outcome: a training's result (with what it reused), or a post-hoc diff's. */
type Made<R> = { kind: 'trained'; result: R; reused?: Reused } | { kind: 'post hoc'; result: ValueDiffReport };

/**
 * Search the grid, then write what was chosen as the same call with `budget: B` alone writes it
 * (with modelOut or metricsOut, that run is made once more with the files to write: the same seed
 * and data give the same bytes; else the search's own run's payload is written).
 */
export async function trainBudgetAuto<O extends AutoTrainOptions, R extends AutoTrainResult>(options: O, auto: { target: QualityTarget; grid: string[] }, run: (o: O) => Promise<R>): Promise<R> {
  // The post-hoc payloads of every budget, and the trained lowbit runs' post-hoc starts, quantize
  // the same change: one lowbit cache for them all (the bytes are the same without it).
  const lowbitCache = options.lowbitCache ?? new LowBitCache();
  // The runs the search makes are plain trainings: no target of their own.
  const plain: O = { ...options, minAgreement: undefined, maxMeanAbsDiff: undefined, maxAccuracyDrop: undefined, budgetGrid: undefined, budgetTune: undefined, lowbitCache };
  const { base, teacher } = options;
  if (typeof base !== 'string' || (teacher !== undefined && typeof teacher !== 'string')) throw new UsageError('budget auto (--budget auto) measures each payload against the models on disk: give base (and teacher) as paths');
  if (!teacher && auto.target.option !== 'maxAccuracyDrop') throw new UsageError(`${auto.target.option === 'minAgreement' ? 'minAgreement (--min-agreement)' : 'maxMeanAbsDiff (--max-mean-abs-diff)'} measures closeness to the new version, and this training has no teacher (teacher (--teacher V2)): add the teacher, or with labels state the target as maxAccuracyDrop (--max-accuracy-drop N), accuracy held against a full fine-tune's`);
  // The files are written after the search: checked writable before it.
  if (options.out !== undefined) await checkOutputPath(options.out, 'out (--out)');
  if (options.metricsOut !== undefined) await checkOutputPath(options.metricsOut, 'metricsOut (--metrics-out)');
  if (options.modelOut !== undefined) await checkOutputPath(options.modelOut, 'modelOut (--model-out)', isModelFilePath(base) ? 'file' : 'folder');
  const progress = (text: string) => options.onProgress?.({ kind: 'message', text });
  const quiet: O = { ...plain, out: undefined, modelOut: undefined, metricsOut: undefined };
  const opened = await openModel(base);
  const modelBytes = opened.weightBytes;
  await opened.close();

  // No teacher: the full fine-tune is the reference accuracy and the last resort.
  let fullAccuracy: number | undefined;
  let ceilingBytes: number | undefined;
  if (!teacher) {
    progress('budget auto: a full fine-tune first, the accuracy the target is held against');
    const full = await run({ ...quiet, method: 'full', budget: undefined });
    if (full.accuracyAfter === null) throw new UsageError('maxAccuracyDrop (--max-accuracy-drop) compares accuracy on labelled inputs, and the eval (--eval) data has no labels: add y.npy beside x.npy');
    fullAccuracy = full.accuracyAfter;
    ceilingBytes = full.bytes;
  }
  const diffOptions = (budget: string): DiffOptions => ({
    base, target: teacher as string, budget, eval: options.eval as string, allowWorse: true, onProgress: progress, lowbitCache,
    ...(options.modelId !== undefined ? { modelId: options.modelId } : {}),
    ...(options.sequence !== undefined ? { sequence: options.sequence } : {}),
    ...(options.expires !== undefined ? { expires: options.expires } : {}),
    ...(options.store !== undefined ? { store: options.store } : {}),
    ...(options.state?.length ? { state: options.state } : {}),
    ...(options.output !== undefined ? { output: options.output } : {}),
    ...(options.outputKind !== undefined ? { outputKind: options.outputKind } : {}),
  });
  // Toward a teacher: the exact payload bounds the grid (and is the last resort). A teacher of
  // another structure gives a structural payload, which --eval does not measure yet: refused.
  if (teacher) {
    // Made without eval inputs: without the options saying how to run them (state, output).
    const { state: _s, output: _o, outputKind: _k, ...unmeasured } = diffOptions('all');
    const exact = await diff({ ...unmeasured, eval: undefined, allowWorse: undefined, onProgress: () => {} });
    if (exact.structural) throw new UsageError(`budget auto (--budget auto) measures each payload on eval (--eval), and the teacher ${teacher} differs from the base in structure: its payloads are structural, which eval does not measure yet; give budget (--budget) a size`);
    ceilingBytes = exact.bytes;
  }
  const measureSpec = { base, target: teacher as string, eval: options.eval as string, state: options.state ?? [], ...(options.output ? { output: options.output } : {}), ...(options.outputKind ? { outputKind: options.outputKind } : {}) };
  // The learning rate the first trained budget's tuning chose, reused by the larger budgets
  // (budgetTune 'once'); not with method auto, whose rate belongs to the method it chose.
  const reuse = (options.budgetTune ?? 'once') === 'once' && (options.tune ?? 'quick') !== 'off' && options.method !== 'auto';
  let tuned: Reused | undefined;
  const candidates = (): BudgetCandidate<Made<R>>[] => [
    ...(teacher ? [{ how: 'post hoc', make: async (budget: string) => {
      const r = await diff(diffOptions(budget));
      if (r.structural || !r.eval) throw new UsageError('unexpected structural payload toward a teacher of the base\'s structure');
      return { result: { kind: 'post hoc' as const, result: r }, bytes: r.bytes, closeness: r.eval };
    } }] : []),
    { how: 'trained', make: async (budget: string) => {
      // A result refused (NoImprovementError: below the base) is no candidate at this budget (searchBudget).
      const reused = tuned;
      const r = await run({ ...quiet, budget, ...trainedAt(reused) });
      const lr = r.tuning?.learningRate;
      if (reuse && !tuned && lr !== undefined && Number.isFinite(lr)) tuned = { lr, tunedAt: budget };
      const closeness: PayloadCloseness = teacher ? await measurePayload(measureSpec, r.payload, progress) : accuracyOnly(r, fullAccuracy as number);
      return { result: { kind: 'trained' as const, result: r, ...(reused ? { reused } : {}) }, bytes: r.bytes, closeness, ...(reused ? { detail: `learning rate ${reused.lr} as tuned at ${reused.tunedAt}` } : {}) };
    } },
  ];
  const search = await searchBudget<Made<R>>({ target: auto.target, grid: auto.grid, modelBytes, ...(ceilingBytes !== undefined ? { ceilingBytes } : {}), allowWorse: !!options.allowWorse, candidates, progress });
  const found = search.found;
  const fallback = teacher ? 'exact' : 'full';
  const budgetSearch: BudgetSearchReport = { ...search.report, chosen: found ? found.budget : fallback === 'exact' ? 'all' : 'full', chosenHow: found ? found.how : fallback, fallback: !found };
  const choice = budgetChoiceText(budgetSearch, fallback === 'full' ? 'the full fine-tune (--method full)' : 'the exact payload (ndiff diff --budget all)');
  progress(choice);
  const searchLines = [...budgetSearch.tried.map((t) => `budget auto: ${budgetTryText(auto.target, t)}`), choice];
  const how = found ? found.how : fallback;
  if (found && how === 'trained' && options.modelOut === undefined && options.metricsOut === undefined) {
    // The search's own training at the chosen budget is what --budget B alone writes (same seed
    // and data): its payload written as is, not trained a second time. (With modelOut or
    // metricsOut the run below writes those files too.)
    const r = (found.result as { kind: 'trained'; result: R }).result;
    await writeOut(options.out, r.payload);
    const unwritten = wroteLine(undefined, r.bytes);
    const lines = r.lines.map((l) => (options.out !== undefined && l.startsWith(unwritten) ? wroteLine(options.out, r.bytes) + l.slice(unwritten.length) : l));
    return { ...r, budgetSearch, lines: [...searchLines, ...lines] };
  }
  if (how === 'trained' || how === 'full') {
    const reused = found?.result.kind === 'trained' ? found.result.reused : undefined;
    const r = await run({ ...plain, ...(how === 'full' ? { method: 'full' as const, budget: undefined } : { budget: (found as { budget: string }).budget, ...trainedAt(reused) }) });
    return { ...r, budgetSearch, lines: [...searchLines, ...r.lines] };
  }
  // Post hoc (or the exact payload): written as ndiff diff writes it, its metrics for ndiff report.
  const r = await diff({ ...diffOptions(found ? found.budget : 'all'), allowWorse: !!options.allowWorse, ...(options.out !== undefined ? { out: options.out } : {}), ...(options.modelOut !== undefined ? { modelOut: options.modelOut } : {}), ...(options.metricsOut !== undefined ? { metricsOut: options.metricsOut } : {}) });
  if (r.structural) throw new UsageError('unexpected structural payload toward a teacher of the base\'s structure');
  const lines = [...searchLines, `${options.out !== undefined ? `wrote ${options.out}` : 'payload'}: ${r.bytes} bytes, ${r.method} (post hoc: the teacher's change carried without training)`, ...(r.eval ? closenessLines(r.eval, 'the teacher') : [])];
  const { payload, warnings, ...doc } = r;
  for (const text of warnings) options.onProgress?.({ kind: 'warning', text });
  return { ...doc, kind: 'ndiff-train-metrics', postHoc: true, method: r.method, modelId: await resolveModelId(base, options.modelId), sequence: options.sequence ?? 1, budgetRequested: found ? found.budget : 'all', accuracyBefore: r.eval?.accuracyBefore ?? null, accuracyAfter: r.eval?.accuracyAfter ?? null, trainSeconds: 0, seed: options.seed ?? 0, backend: 'none', budgetSearch, payload, lines, warnings } as unknown as R;
}

/** Without a teacher: the eval accuracy of the run against the full fine-tune's, the one figure the target reads. */
function accuracyOnly(r: AutoTrainResult, fullAccuracy: number): PayloadCloseness {
  return { examples: 0, metric: 'top1', base: { agreement: NaN, meanAbsDiff: NaN }, patched: { agreement: NaN, meanAbsDiff: NaN }, movesAway: false, accuracyBefore: r.accuracyBefore ?? undefined, accuracyAfter: r.accuracyAfter ?? undefined, accuracyTarget: fullAccuracy };
}
