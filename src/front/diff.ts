/**
 * `diff`: what `ndiff diff` does, as a library call. Two versions of one model (TF.js folders or
 * model JSON files, `.onnx`, `.tflite` or `.safetensors` files) and a byte budget give a payload:
 * top-k of the change, low-bit deltas, every change exactly (`budget: 'all'`), chosen on inputs
 * (`calibrate`), measured on inputs (`eval`), or a structural payload when the structure differs.
 * The result holds the fields `ndiff diff --json` prints, the payload's bytes, and the warnings
 * the command prints on stderr.
 */
import { writeFile } from 'node:fs/promises';
import { BudgetError, ModelFormatError, ModelMismatchError, NoImprovementError, UsageError } from '../core/errors.ts';
import { lessCloseThanBase } from '../train/eval-noise.ts';
import { getHasher } from '../core/hasher.ts';
import { calibrationWarning, changeSize, defaultPostHocMethod, estimateFromWeights, type WeightEstimate } from '../diff/advice.ts';
import { formatBytes, parseBudget } from '../diff/budget.ts';
import { exactDiff, type ExactCodec } from '../diff/exact.ts';
import type { InputMoments } from '../lowbit-diff/gptq.ts';
import { compareInterfaces, describeDifference } from '../diff/interface.ts';
import { LowBitCache, lowbitDiff, lowbitVariants, type LowBitAllocation, type LowBitResult } from '../lowbit-diff/encoder.ts';
import { diffOnnxModels } from '../diff/onnx.ts';
import { topkDiff, type TopkResult } from '../topk-diff/encoder.ts';
import type { CalibrationReport, DiffPayload, EvalCloseness, ValueDiffReport } from './diff-types.ts';
import { chooseCalibrated, chooseCalibratedOnnx, chooseCalibratedTflite } from './measure/calibrate.ts';
import { diffSettings, isEveryChange, type DiffOptions, type DiffSettings } from './diff-options.ts';
import { budgetChoiceText, searchBudget, type BudgetSearchReport } from './budget-search.ts';
import { qualityTargetOf } from './quality-target.ts';
import { structuralFileDiff, structuralFolderDiff, type StructuralDiffReport } from './diff-structural.ts';
import { diffGguf } from './diff-gguf.ts';
import { checkOutputPath, isGgufPath, isModelFilePath, isOnnxPath, isSafetensorsPath, isTflitePath, modelKindText, openModel, resolveModelId, writeUpdatedModel, type OpenedModel } from './models.ts';
import { loadOnnxEval, measureOnInputs, measureOnnx, measureTflite, movesAwayText, type OnnxEval, type PayloadEvalSpec } from './measure/payload-eval.ts';

export type { DiffOptions } from './diff-options.ts';
export type { StructuralDiffReport } from './diff-structural.ts';
export type { CalibrationReport, CalibrationScore, ClosenessMetric, DiffPayload, EvalCloseness, GgufEvalRow, GgufPayloadEval, OutputKind, ValueDiffReport } from './diff-types.ts';
export type { BudgetSearchReport, BudgetTry } from './budget-search.ts';
export type { QualityTarget, QualityTargetOptions } from './quality-target.ts';

/** What {@link diff} returns: a value payload's report or a structural one's (`structural: true`), with the payload and the warnings. */
export type DiffResult = (ValueDiffReport & { structural?: undefined } & DiffPayload) | (StructuralDiffReport & DiffPayload);

/**
 * Make a payload from two versions of a model, as `ndiff diff` does: the same checks, the same
 * choices, the same bytes. Writes `out`, `modelOut` and `metricsOut` when given. Throws the typed
 * errors of src/core/errors.ts (UsageError for options that do not fit, BudgetError when the
 * budget cannot be met, ModelFormatError for unreadable models, DataError for bad inputs,
 * MissingDependencyError when `eval`/`calibrate` need tfjs and it is not installed).
 */
export async function diff(options: DiffOptions): Promise<DiffResult> {
  const s = diffSettings(options);
  // budget auto's target and grid: a missing or second target is refused before any file is read.
  const auto = qualityTargetOf(s);
  // GGUF models: the exact block payload (format v8), their own path (diff-gguf.ts).
  if (isGgufPath(s.base) || isGgufPath(s.target)) {
    if (!isGgufPath(s.base) || !isGgufPath(s.target)) throw new UsageError(`base (--base) ${s.base} and target (--target) ${s.target}: expected two .gguf models (two versions of one model in one format)`);
    if (s.out !== undefined) await checkOutputPath(s.out, 'out (--out)');
    if (s.metricsOut) await checkOutputPath(s.metricsOut, 'metricsOut (--metrics-out)');
    return await diffGguf(s);
  }
  if (s.threads !== undefined) throw new UsageError(`threads (--threads ${s.threads}) sets the threads coding a .gguf diff's chunks; ${s.base} is ${modelKindText(s.base)}, diffed on one thread: leave it out`, { threads: s.threads });
  if (modelKindText(s.base) !== modelKindText(s.target)) throw new UsageError(`base (--base) ${s.base} is ${modelKindText(s.base)} and target (--target) ${s.target} is ${modelKindText(s.target)}: expected two versions of one model in one format (two TF.js folders, or two .onnx, .tflite or .safetensors files)`);
  if (isTflitePath(s.base) && s.state.length) throw new UsageError('state (--state) is for ONNX models: a .tflite model carries no state between examples here');
  const modelId = await resolveModelId(s.base, s.modelId);
  if (s.out !== undefined) await checkOutputPath(s.out, 'out (--out)');
  if (s.metricsOut) await checkOutputPath(s.metricsOut, 'metricsOut (--metrics-out)');
  if ((!isOnnxPath(s.base) && !isTflitePath(s.base)) || (!s.eval && !s.calibrate)) {
    const given = [s.state.length ? 'state (--state)' : '', s.output ? 'output (--output)' : '', s.outputKind ? 'outputKind (--output-kind)' : ''].filter(Boolean);
    if (given.length) throw new UsageError(`${given.join(', ')} tell${given.length === 1 ? 's' : ''} eval (--eval) and calibrate (--calibrate) how to run an .onnx model${isOnnxPath(s.base) ? ': add eval (--eval) or calibrate (--calibrate) INPUTS, or leave them out' : isTflitePath(s.base) ? ' (and eval (--eval) and calibrate (--calibrate) a .tflite one): add eval (--eval) or calibrate (--calibrate) INPUTS, or leave them out' : `; these are ${isSafetensorsPath(s.base) ? '.safetensors files' : 'TF.js models'}: leave them out`}`);
  }
  if (s.modelOut) await checkOutputPath(s.modelOut, 'modelOut (--model-out)', isModelFilePath(s.base) || isSafetensorsPath(s.base) ? 'file' : 'folder');
  if (isSafetensorsPath(s.base) && (s.eval || s.calibrate)) throw new UsageError(`${s.eval ? 'eval (--eval)' : 'calibrate (--calibrate)'} runs the model, and a .safetensors file holds weights without the program that runs them: leave ${s.eval ? 'eval (--eval)' : 'calibrate (--calibrate)'} out (the payload is then made from the weights alone), or diff the model in a format that carries its program (a TF.js folder, .onnx or .tflite)`);
  if (s.method === 'auto' && !s.calibrate) throw new UsageError('method auto (--method auto) measures every candidate on inputs: add calibrate (--calibrate INPUTS) (x.npy of inputs from where the model runs, no labels needed), or choose method lowbit (--method lowbit) or topk');
  if (s.calibrate && s.method === 'topk') throw new UsageError('calibrate (--calibrate) chooses among lowbit\'s variants (method lowbit (--method lowbit)) or among methods (method auto (--method auto)); top-k alone has nothing to choose: add method lowbit (--method lowbit) or auto, or leave calibrate (--calibrate) out');
  // The eval data of an ONNX pair is read now: a folder that does not fit fails before any work.
  const onnxEval = s.eval && isOnnxPath(s.base) ? await loadOnnxEval(s as PayloadEvalSpec) : undefined;
  // A path where no model is: the message names the option it came from.
  const named = (what: string) => (e: unknown): never => {
    throw e instanceof ModelFormatError && e.details.path !== undefined ? new ModelFormatError(`${what}: ${e.message}`, e.details) : e;
  };
  const [opened, openedTarget] = await Promise.all([openModel(s.base).catch(named('base (--base)')), openModel(s.target).catch(named('target (--target)'))]);
  try {
    // Two models whose structure differs: a structural payload (format v7) instead of a refusal.
    const reason = describeDifference(compareInterfaces(opened.store, openedTarget.store));
    if (reason && opened.kind === 'safetensors') {
      throw new ModelMismatchError(`${s.base} and ${s.target} do not hold the same tensors (${reason}): a payload patches the values of the same tensors, and a structural payload (tensors added, removed or reshaped) is made for .onnx, .tflite and TF.js models only; ship the new .safetensors file whole, or diff two versions with the same tensor names, shapes and dtypes`, { base: s.base, target: s.target });
    }
    if (reason && auto) throw new UsageError(`budget auto (--budget auto) searches the budgets of a value payload, and ${s.base} and ${s.target} differ in structure (${reason.split(':')[0]}): give budget (--budget) a size (e.g. 5%) or all for the structural payload`);
    if (reason) {
      s.progress(`${s.base} and ${s.target} differ in structure (${reason.split(':')[0]}): a structural payload (format v7), the target rebuilt from the base's bytes`);
      // A structural payload keeps top-k by default: no table measured lowbit there.
      const c = { settings: { ...s, method: s.method ?? 'topk' }, modelId, reason };
      const made = opened.kind === 'onnx' || opened.kind === 'tflite' ? await structuralFileDiff(c, opened.kind) : await structuralFolderDiff(c);
      return { ...made.report, payload: made.payload, warnings: made.report.warning ? [made.report.warning] : [] };
    }
    return await diffOpened(s, auto, opened, openedTarget, modelId, onnxEval);
  } finally {
    await Promise.all([opened.close(), openedTarget.close()]);
  }
}

/** {@link diff} once both models are open and share their structure: one budget, or `auto`'s search. */
async function diffOpened(s: DiffSettings, auto: ReturnType<typeof qualityTargetOf>, opened: OpenedModel, openedTarget: OpenedModel, modelId: string, onnxEval?: OnnxEval): Promise<DiffResult> {
  if (!auto) return writeValueDiff(s, await makeValueDiff(s, opened, openedTarget, modelId, onnxEval));
  // Each candidate is the payload `budget: B` alone makes (the same settings, but nothing written
  // and the refusal decided by the search); the exact payload's size bounds the grid.
  // One lowbit cache for the whole search: each budget quantizes the same change the same way.
  const quiet: DiffSettings = { ...s, out: undefined, modelOut: undefined, metricsOut: undefined, lowbitCache: s.lowbitCache ?? new LowBitCache() };
  const exactSettings: DiffSettings = { ...quiet, budget: 'all', method: undefined, calibrate: undefined, lowbitCodesOnly: undefined };
  const exact = await makeValueDiff({ ...exactSettings, eval: undefined, progress: () => {} }, opened, openedTarget, modelId);
  const search = await searchBudget({
    target: auto.target, grid: auto.grid, modelBytes: opened.weightBytes, ceilingBytes: exact.res.bytes.length, allowWorse: !!s.allowWorse, progress: s.progress,
    candidates: () => [{ how: 'post hoc', make: async (budget) => {
      const made = await makeValueDiff({ ...quiet, budget }, opened, openedTarget, modelId, onnxEval);
      return { result: made, bytes: made.res.bytes.length, closeness: made.measured as EvalCloseness };
    } }],
  });
  const budgetSearch: BudgetSearchReport = { ...search.report, chosen: search.found?.budget ?? 'all', chosenHow: search.found ? search.found.how : 'exact', fallback: !search.found };
  const chosen = search.found ? { ...search.found.result, s: { ...s, budget: search.found.budget } } : await makeValueDiff({ ...exactSettings, out: s.out, modelOut: s.modelOut, metricsOut: s.metricsOut }, opened, openedTarget, modelId, onnxEval);
  s.progress(budgetChoiceText(budgetSearch));
  return writeValueDiff(chosen.s, chosen, budgetSearch);
}

/** A value payload made and measured, nothing written yet. */
type MadeValueDiff = Awaited<ReturnType<typeof makeValueDiff>>;

/** The payload of one budget, measured on `eval` when given; {@link writeValueDiff} refuses or writes it. */
async function makeValueDiff(s: DiffSettings, opened: OpenedModel, openedTarget: OpenedModel, modelId: string, onnxEval?: OnnxEval) {
  const progress = s.progress;
  const { store: base, weightBytes: total } = opened;
  const target = openedTarget.store;
  const everyChange = isEveryChange(s);
  const budgetBytes = everyChange ? 0 : parseBudget(s.budget, total);
  progress(`base ${s.base}: ${base.list().length} tensors, ${formatBytes(total)} as stored; budget ${everyChange ? 'all (every change)' : `${formatBytes(budgetBytes)} (${((100 * budgetBytes) / total).toFixed(2)}% of the model as stored)`}`);
  // No method: the one the measured tables put first (advice.ts), said so the user can choose.
  const defaulted = s.method ? undefined : defaultPostHocMethod({ everyChange, codec: s.codec, calibrate: !!s.calibrate });
  if (defaulted && !everyChange) progress(`method ${defaulted.method} (the default: ${defaulted.why}${defaulted.method === 'lowbit' && !s.calibrate ? '; top-k instead when it leaves less of the change out' : ''}); --method chooses`);
  const method = s.method ?? defaulted?.method;
  const hasher = await getHasher();
  const t0 = performance.now();
  const common = { modelId, sequence: s.sequence, ...(s.expiresAt !== undefined ? { expiresAt: s.expiresAt } : {}), store: s.store };
  if (method !== 'topk' && everyChange) throw new UsageError(`method ${method} (--method ${method}) carries changes within a byte budget: give budget (--budget) a size (e.g. 5%), or leave method (--method) out for budget all (--budget all), every change exactly`);
  if (method !== 'topk' && s.codec !== 'auto') throw new UsageError(`codec ${s.codec} (--codec ${s.codec}) chooses top-k's value codec; ${method === 'auto' ? 'auto tries top-k with every codec and lowbit chooses its bits per tensor' : 'lowbit chooses its bits per tensor'}: leave codec (--codec) out`);
  // .onnx and .tflite files keep their dtypes (diffOnnxModels); TF.js and safetensors weights may become float32.
  const fileModel = opened.kind === 'onnx' || opened.kind === 'tflite';
  const diffWith = (m: 'topk' | 'lowbit') => fileModel
    ? (h: Parameters<typeof diffOnnxModels>[0], b: Parameters<typeof diffOnnxModels>[1], t: Parameters<typeof diffOnnxModels>[2], o: Parameters<typeof diffOnnxModels>[3]) => diffOnnxModels(h, b, t, { ...o, method: m })
    : m === 'lowbit' ? lowbitDiff : topkDiff;
  // lowbitCodesOnly: every lowbit variant without low-rank factors or outliers (the variants that differ only by those collapse).
  const codesOnly = s.lowbitCodesOnly === true;
  // One cache for every variant: they quantize each tensor's change the same way (LowBitCache);
  // the caller's when it gives one (the budgets of a search).
  const cache = s.lowbitCache ?? new LowBitCache();
  // lowbit's options when it is built without a calibration: the cache, and codesOnly's limits.
  const lowbitOptions = { cache, ...(codesOnly ? { lowRank: false, outliers: false, newValues: false } : {}) };
  const variants = (importance?: () => ReadonlyMap<string, Float32Array>, inputs?: () => ReadonlyMap<string, InputMoments>) => lowbitVariants(importance, cache, inputs).filter((v) => !codesOnly || v.options().lowRank === false).map((v) => (codesOnly ? { ...v, options: () => ({ ...v.options(), outliers: false, newValues: false }) } : v));
  const exactCodecs = s.exactCodec === 'x' ? { codecs: ['x'] as ExactCodec[] } : s.exactCodec === 'xr' ? { codecs: ['x', 'xr'] as ExactCodec[] } : {};
  // calibrate: candidates measured on the inputs, the closest kept.
  const candidates = (importance?: () => ReadonlyMap<string, Float32Array>, reached?: ReadonlySet<string>, inputs?: () => ReadonlyMap<string, InputMoments>) => {
    const o = { budgetBytes, ...common };
    if (opened.kind === 'onnx' || opened.kind === 'tflite') {
      // Also on the tensors the calibration inputs reach alone, when that leaves some out (a branch
      // they never take, as Silero's 8 kHz model at 16 kHz).
      const changed = base.list().filter((t) => t.patchable !== false).map((t) => t.name);
      const only = reached && changed.some((n) => !reached.has(n)) ? reached : undefined;
      return [
        ...variants().map((v) => ({ name: v.name, build: () => diffOnnxModels(hasher, base, target, { ...o, method: 'lowbit', lowbit: v.options() }) })),
        ...(only ? variants().map((v) => ({ name: v.name.replace(/\)$/, `; the ${only.size} tensors the inputs reach)`), build: () => diffOnnxModels(hasher, base, target, { ...o, method: 'lowbit', lowbit: v.options(), only }) })) : []),
        ...(method === 'auto' ? [{ name: 'top-k', build: () => diffOnnxModels(hasher, base, target, o) }] : []),
      ];
    }
    return [
      ...variants(importance, inputs).map((v) => ({ name: v.name, build: () => lowbitDiff(hasher, base, target, { ...o, ...v.options() }) })),
      ...(method === 'auto' ? [{ name: 'top-k', build: () => topkDiff(hasher, base, target, { ...o, codec: 'auto' }) }] : []),
    ];
  };
  const spec = { ...(s as PayloadEvalSpec), calibrate: s.calibrate as string };
  const calibrated = !s.calibrate
    ? undefined
    : opened.kind === 'onnx'
      ? await chooseCalibratedOnnx<TopkResult>(spec, base, (reached) => candidates(undefined, reached), progress)
      : opened.kind === 'tflite'
        ? await chooseCalibratedTflite<TopkResult>(spec, base, (reached) => candidates(undefined, reached), progress)
        : await chooseCalibrated<TopkResult>({ base: s.base, target: s.target, calibrate: s.calibrate }, base, (importance, inputs) => candidates(importance, undefined, inputs), progress);
  const calibration = calibrated?.report;
  const build = (m: 'topk' | 'lowbit') => diffWith(m)(hasher, base, target, {
    ...(everyChange ? { mode: 'all' as const, ...(exactCodecs.codecs ? { exactCodecs: exactCodecs.codecs } : {}) } : {}),
    budgetBytes,
    codec: s.codec,
    modelId,
    sequence: s.sequence,
    ...(s.expiresAt !== undefined ? { expiresAt: s.expiresAt } : {}),
    onProgress: (line) => progress(`  ${line}`),
    store: s.store,
    ...(m === 'lowbit' ? (fileModel ? { lowbit: lowbitOptions } : lowbitOptions) : {}),
  });
  // The default without inputs: lowbit, unless top-k leaves less of the change out (a few large
  // changes, which top-k keeps whole; on the measured tables lowbit left less wherever it did
  // better), or lowbit cannot make the payload (a value the base file cannot hold, say).
  const buildDefault = () => {
    const tryBuild = (m: 'topk' | 'lowbit') => {
      try {
        return build(m);
      } catch (e) {
        if (!(e instanceof BudgetError)) throw e;
        progress(`  the default: ${m === 'topk' ? 'top-k' : 'lowbit'} cannot make this payload (${e.message.split(': ')[0]})`);
        return undefined;
      }
    };
    const low = tryBuild('lowbit');
    const topk = tryBuild('topk');
    if (!low || !topk) {
      if (low || topk) return (low ?? topk)!;
      return build('lowbit'); // neither can: lowbit's own error, as method lowbit gives it
    }
    const share = (r: { squaredError: number }) => `${(100 * r.squaredError / ((low as LowBitResult).changeSquared || 1)).toFixed(1)}%`;
    const topkBetter = topk.squaredError < low.squaredError;
    progress(`  the default: ${topkBetter ? `top-k leaves ${share(topk)} of the change's squared size out, lowbit ${share(low)}: top-k written` : `lowbit leaves ${share(low)} of the change's squared size out, top-k ${share(topk)}: lowbit written`}`);
    return topkBetter ? topk : low;
  };
  const res = calibrated ? calibrated.chosen : everyChange && !fileModel
    ? (() => {
      const e = exactDiff(hasher, base, target, { ...common, ...exactCodecs });
      return { ...e, kept: e.changed, changed: e.changed, squaredError: 0 };
    })()
    : defaulted?.method === 'lowbit' ? buildDefault() : build(method === 'lowbit' ? 'lowbit' : 'topk');
  if (everyChange) {
    const per = (c: string) => res.payload.patches.filter((p) => p.codec === c).length;
    const steps = per('i8');
    // Say only what the payload holds: "0 tensor(s) as codec xr" reads like a failure.
    const masks = [per('xs') ? `${per('xs')} tensor(s) as codec xs (their stored bits, range-coded)` : '', per('xr') ? `${per('xr')} tensor(s) as codec xr (range-coded)` : '', per('x') ? `${per('x')} tensor(s) as codec x` : ''].filter(Boolean).join(', ');
    progress(`  every changed weight, exactly: ${res.changed} values${steps ? `; ${steps} quantized tensor(s) in whole grid steps (codec i8)` : ''}${masks ? `; XOR masks of their bits for ${masks}` : ''}; format v${res.payload.header.version}`);
  }
  const ms = performance.now() - t0;
  const lowbit = 'allocation' in res ? (res as LowBitResult) : undefined;
  // Measured before anything is written: data the models cannot run on leaves no payload behind.
  const measured = onnxEval ? await measureOnnx(s as PayloadEvalSpec, onnxEval, res.bytes, progress)
    : s.eval && opened.kind === 'tflite' ? await measureTflite(s as PayloadEvalSpec, res.bytes, progress)
    : s.eval ? await measureOnInputs(s as PayloadEvalSpec, base, res.bytes, progress) : undefined;
  // Nothing measured on inputs: what the weights alone say (advice.ts), warned of, not refused.
  const estimate: WeightEstimate | undefined = !everyChange && !measured && !calibration ? estimateFromWeights(changeSize(base, target), res.squaredError, 'allocation' in res ? 'lowbit' : 'topk', defaulted?.method === 'lowbit') : undefined;
  const chosenScore = calibration?.candidates.find((c) => c.name === calibration?.chosen);
  const notCloser = calibration && chosenScore && Number.isFinite(chosenScore.loss)
    ? calibrationWarning({ loss: chosenScore.loss, agreement: calibration.baseAgreement === undefined ? undefined : chosenScore.agreement }, { loss: calibration.baseLoss, agreement: calibration.baseAgreement })
    : undefined;
  return { s, res, measured, estimate, calibration, notCloser, lowbit, defaulted, everyChange, ms, total, budgetBytes, targetBytes: openedTarget.weightBytes };
}

/** Refuse (a payload measured further from the target than not updating) or write the payload, its updated model and metrics; the result. */
async function writeValueDiff(s: DiffSettings, made: MadeValueDiff, budgetSearch?: BudgetSearchReport): Promise<DiffResult> {
  const { res, measured, estimate, calibration, notCloser, lowbit, defaulted, everyChange, ms, total, budgetBytes, targetBytes } = made;
  const progress = s.progress;
  // A payload measured further from the target than not updating is refused by the rule train
  // refuses a teacher diff by on its eval inputs (a classifier's agreement lower beyond noise):
  // nothing is written. A drop within noise is written with the warning.
  if (measured && lessCloseThanBase(measured) && !s.allowWorse) {
    const written = [s.out, s.modelOut, s.metricsOut].filter((f): f is string => f !== undefined);
    throw new NoImprovementError(
      `${movesAwayText(measured)}. Nothing was written${written.length ? ` (${written.join(', ')})` : ''}; pass allowWorse (--allow-worse) to write it anyway`,
      { metric: measured.metric, examples: measured.examples, base: measured.base, patched: measured.patched },
    );
  }
  const warning = measured?.movesAway ? movesAwayText(measured) : notCloser ?? estimate?.warning;
  // The calibration's own verdict stands beside eval's: the choice was made on those inputs.
  const warnings = [...(warning ? [warning] : []), ...(notCloser && warning !== notCloser ? [notCloser] : [])];
  if (s.out !== undefined) await writeFile(s.out, res.bytes);
  const modelOutFingerprint = s.modelOut ? await writeUpdatedModel(s.base, s.modelOut, res.bytes) : undefined;
  const smallerThanModel = res.bytes.length < targetBytes;
  const report: ValueDiffReport = {
    ...(s.out !== undefined ? { out: s.out } : {}), bytes: res.bytes.length, modelBytes: total, targetModelBytes: targetBytes, smallerThanModel, payloadToModelRatio: res.bytes.length / targetBytes, budgetBytes, kept: res.kept, changed: res.changed, codec: res.codec, seconds: ms / 1000,
    baseFingerprint: res.payload.header.baseFingerprint, targetFingerprint: res.payload.header.targetFingerprint,
    ...(lowbit ? { method: 'lowbit', allocation: lowbit.allocation, shareCarried: 1 - res.squaredError / (lowbit.changeSquared || 1), formatVersion: res.payload.header.version } : { method: everyChange ? 'exact' : res.payload.header.method }),
    ...(defaulted && !everyChange ? { methodDefault: { method: res.payload.header.method, why: res.payload.header.method === defaulted.method ? defaulted.why : 'top-k left less of the change out than lowbit (a few large changes), or lowbit could not make this payload' } } : {}),
    ...(calibration ? { calibration } : {}),
    ...(s.modelOut ? { modelOut: s.modelOut, modelOutFingerprint } : {}),
    ...(measured ? { eval: measured } : {}),
    ...(estimate ? { estimate } : {}),
    ...(warning ? { warning } : {}),
    ...(budgetSearch ? { budgetSearch } : {}),
  };
  if (s.metricsOut) {
    // The form `ndiff report` reads (its rows need accuracy: eval with labels).
    // budget auto: the budget it chose, so a report sets the payload among runs of that budget.
    const metrics = {
      kind: 'ndiff-diff-metrics', modelId: res.payload.header.modelId, sequence: res.payload.header.sequence, target: s.target, budgetRequested: s.budget, ...report,
      accuracyBefore: measured?.accuracyBefore ?? null, accuracyAfter: measured?.accuracyAfter ?? null, trainSeconds: ms / 1000,
    };
    await writeFile(s.metricsOut, JSON.stringify(metrics, null, 2) + '\n');
  }
  // Exact bits of freshly trained weights hardly compress: when nearly every weight changed, the
  // payload can weigh as much as the new model's weights, and shipping the model is as cheap.
  // No lossy budget is suggested: whether one is good enough can only be measured on data.
  if (!smallerThanModel) progress(`note: the payload (${formatBytes(res.bytes.length)}) is ${(res.bytes.length / targetBytes).toFixed(2)}x the new model's weights (${formatBytes(targetBytes)}), not smaller; ${res.changed} values changed: ship the new model instead`);
  return { ...report, payload: res.bytes, warnings };
}
