import type { Argv } from 'yargs';
import { writeFile } from 'node:fs/promises';
import { getHasher } from '../../src/core/hasher.ts';
import { parseBudget, formatBytes } from '../../src/diff/budget.ts';
import { topkDiff, type TopkResult } from '../../src/diff/topk.ts';
import type { InputMoments } from '../../src/diff/gptq.ts';
import { describeWidths, LowBitCache, lowbitDiff, lowbitVariants, type LowBitResult } from '../../src/diff/lowbit.ts';
import { diffOnnxModels } from '../../src/diff/onnx.ts';
import { exactDiff, type ExactCodec } from '../../src/diff/exact.ts';
import { BudgetError, NoImprovementError, UsageError } from '../../src/core/errors.ts';
import { compareInterfaces, describeDifference } from '../../src/diff/interface.ts';
import { calibrationWarning, changeSize, defaultPostHocMethod, estimateFromWeights, type PostHocMethod, type WeightEstimate } from '../../src/diff/advice.ts';
import { runStructuralDiff, runStructuralFolderDiff } from './diff-structural.ts';
import { lessCloseThanBase } from '../../src/train/eval-noise.ts';
import type { ProgramOutputKind } from '../../src/train/program/training-model.ts';
import type { CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { chooseCalibrated, chooseCalibratedOnnx, chooseCalibratedTflite, type CalibrationReport } from '../calibrate.ts';
import { closenessLines, loadOnnxEval, measureOnInputs, measureOnnx, measureTflite, movesAwayText, type OnnxEval, type PayloadEvalSpec } from '../payload-eval.ts';
import { checkOutputPath, resolveModelId, isOnnxPath, isModelFilePath, isTflitePath, modelKindText, openModel, parseExpiry, type OpenedModel, writeUpdatedModel } from '../models.ts';

export interface DiffArgs {
  base: string;
  target: string;
  budget: string;
  out: string;
  codec: 'auto' | 'f32' | 'f16' | 'i8' | 'l8' | 'l4';
  /** Absent: the default ({@link defaultPostHocMethod}, said in the progress and in `--json`). */
  method?: PostHocMethod;
  /** With lowbit: dense codes only, no low-rank factors or float16 outliers (for appliers that predate them). */
  lowbitCodesOnly?: boolean;
  calibrate?: string;
  modelId?: string;
  sequence: number;
  expires?: string;
  modelOut?: string;
  store: 'stored' | 'float32';
  exactCodec: 'auto' | 'x' | 'xr';
  eval?: string;
  /** With --eval: write a payload that takes the model further from the target than not updating (refused by default). */
  allowWorse?: boolean;
  metricsOut?: string;
  state: string[];
  output?: string;
  outputKind?: ProgramOutputKind;
}

export function diffCommand(y: Argv): Argv<DiffArgs> {
  return y
    .usage('ndiff diff --base V1 --target V2 --budget B --out FILE [options]\n\nMake a payload from two versions of a model without training: low-bit deltas, top-k of the change, or every change (--budget all); a structural payload when the structure changed.')
    .option('base', { type: 'string', demandOption: true, describe: 'the model devices hold: TF.js folder or model JSON, .onnx or .tflite' })
    .option('target', { type: 'string', demandOption: true, describe: 'the new model, of the same kind' })
    .option('budget', { type: 'string', demandOption: true, describe: 'payload bytes: 1% (of the model as stored), 40KB, 40KiB, bytes, or all' })
    .option('out', { type: 'string', demandOption: true, describe: 'payload file to write' })
    .option('model-id', { type: 'string', describe: 'id devices know the model by (default: the one the base recorded)' })
    .option('sequence', { type: 'number', default: 1, describe: 'update sequence number (devices refuse older)' })
    .option('expires', { type: 'string', describe: 'expiry: ISO date or a duration (30d, 12h)' })
    .option('model-out', { type: 'string', describe: 'also write base + payload: the next diff\'s --base' })
    .option('method', { choices: ['topk', 'lowbit', 'auto'] as const, describe: 'how the change is carried (default: lowbit, or topk)' })
    .option('codec', { choices: ['auto', 'f32', 'f16', 'i8', 'l8', 'l4'] as const, default: 'auto' as const, describe: 'topk value codec' })
    .option('calibrate', { type: 'string', describe: 'inputs that choose lowbit\'s variant (or the method)' })
    .option('lowbit-codes-only', { type: 'boolean', default: false, describe: 'lowbit as dense codes only, for older appliers' })
    .option('exact-codec', { choices: ['auto', 'x', 'xr'] as const, default: 'auto' as const, describe: 'codecs of --budget all' })
    .option('store', { choices: ['stored', 'float32'] as const, default: 'stored' as const, describe: 'quantized tensors stay on their grid' })
    .option('eval', { type: 'string', describe: 'inputs: measure base + payload against --target' })
    .option('metrics-out', { type: 'string', describe: 'write a metrics JSON for ndiff report' })
    .option('state', { type: 'string', array: true, default: [] as string[], describe: 'stateful .onnx: INPUT:OUTPUT pairs carried' })
    .option('output', { type: 'string', describe: '.onnx: the output compared (default: first non-state)' })
    .option('output-kind', { choices: ['probability', 'logit', 'probabilities', 'logits', 'values'] as const, describe: '.onnx: how the output reads (default: from its shape and last op)' })
    .option('allow-worse', { type: 'boolean', default: false, describe: 'with --eval: write a payload measured worse than not updating' })
    .group(['base', 'target', 'budget', 'out', 'model-id', 'sequence', 'expires', 'model-out'], 'Models and payload:')
    .group(['method', 'codec', 'calibrate', 'lowbit-codes-only', 'exact-codec', 'store'], 'Method:')
    .group(['eval', 'allow-worse', 'metrics-out', 'state', 'output', 'output-kind'], 'Measuring (--eval, --calibrate):')
    .example('$0 diff --model-id kws-en --base v1/ --target v2/ --budget 5% --method lowbit --out v1-v2.ndiff', 'every weight\'s change at 1 to 8 bits within 5%')
    .example('$0 diff --model-id selfie --base selfie-v1.tflite --target selfie-v2.tflite --budget all --out v1-v2.ndiff', 'every change of a LiteRT model, exactly')
    .epilogue(seeDocs('diff')) as unknown as Argv<DiffArgs>;
}

/** Post-hoc diff: magnitude top-k of (target - base) under the byte budget. */
export async function runDiff(a: DiffArgs, io: CliIO): Promise<number> {
  if (modelKindText(a.base) !== modelKindText(a.target)) throw new UsageError(`--base ${a.base} is ${modelKindText(a.base)} and --target ${a.target} is ${modelKindText(a.target)}: expected two versions of one model in one format (two TF.js folders, two .onnx files or two .tflite files)`);
  if (isTflitePath(a.base) && a.state.length) throw new UsageError('--state is for ONNX models: a .tflite model carries no state between examples here');
  const modelId = await resolveModelId(a.base, a.modelId);
  await checkOutputPath(a.out, '--out');
  if (a.metricsOut) await checkOutputPath(a.metricsOut, '--metrics-out');
  if ((!isOnnxPath(a.base) && !isTflitePath(a.base)) || (!a.eval && !a.calibrate)) {
    const given = [a.state.length ? '--state' : '', a.output ? '--output' : '', a.outputKind ? '--output-kind' : ''].filter(Boolean);
    if (given.length) throw new UsageError(`${given.join(', ')} tell${given.length === 1 ? 's' : ''} --eval and --calibrate how to run an .onnx model${isOnnxPath(a.base) ? ': add --eval or --calibrate INPUTS, or leave them out' : isTflitePath(a.base) ? ' (and --eval and --calibrate a .tflite one): add --eval or --calibrate INPUTS, or leave them out' : '; these are TF.js models: leave them out'}`);
  }
  if (a.modelOut) await checkOutputPath(a.modelOut, '--model-out', isModelFilePath(a.base) ? 'file' : 'folder');
  if (a.method === 'auto' && !a.calibrate) throw new UsageError('--method auto measures every candidate on inputs: add --calibrate INPUTS (x.npy of inputs from where the model runs, no labels needed), or choose --method lowbit or topk');
  if (a.calibrate && a.method === 'topk') throw new UsageError('--calibrate chooses among lowbit\'s variants (--method lowbit) or among methods (--method auto); top-k alone has nothing to choose: add --method lowbit or auto, or leave --calibrate out');
  // The --eval data of an ONNX pair is read now: a folder that does not fit fails before any work.
  const onnxEval = a.eval && isOnnxPath(a.base) ? await loadOnnxEval(a as PayloadEvalSpec) : undefined;
  const [opened, openedTarget] = await Promise.all([openModel(a.base), openModel(a.target)]);
  try {
    // Two models whose structure differs: a structural payload (format v7) instead of a refusal.
    if (opened.kind === 'onnx' || opened.kind === 'tflite') {
      const reason = describeDifference(compareInterfaces(opened.store, openedTarget.store));
      // A structural payload keeps top-k by default: no table measured lowbit there.
      if (reason) return await runStructuralDiff({ ...a, method: a.method ?? 'topk' }, io, opened.kind, modelId, reason);
    } else {
      // Two TF.js models: the same, over the model JSON and its shards.
      const reason = describeDifference(compareInterfaces(opened.store, openedTarget.store));
      if (reason) return await runStructuralFolderDiff({ ...a, method: a.method ?? 'topk' }, io, modelId, reason);
    }
    return await diffOpened(a, io, opened, openedTarget, modelId, onnxEval);
  } finally {
    await Promise.all([opened.close(), openedTarget.close()]);
  }
}

/** {@link runDiff} once both models are open. */
async function diffOpened(a: DiffArgs, io: CliIO, opened: OpenedModel, openedTarget: OpenedModel, modelId: string, onnxEval?: OnnxEval): Promise<number> {
  const { store: base, weightBytes: total } = opened;
  const target = openedTarget.store;
  const everyChange = a.budget.trim().toLowerCase() === 'all';
  const budgetBytes = everyChange ? 0 : parseBudget(a.budget, total);
  io.progress(`base ${a.base}: ${base.list().length} tensors, ${formatBytes(total)} as stored; budget ${everyChange ? 'all (every change)' : `${formatBytes(budgetBytes)} (${((100 * budgetBytes) / total).toFixed(2)}% of the model as stored)`}`);
  // No --method: the one the measured tables put first (advice.ts), said so the user can choose.
  const defaulted = a.method ? undefined : defaultPostHocMethod({ everyChange, codec: a.codec, calibrate: !!a.calibrate });
  if (defaulted && !everyChange) io.progress(`method ${defaulted.method} (the default: ${defaulted.why}${defaulted.method === 'lowbit' && !a.calibrate ? '; top-k instead when it leaves less of the change out' : ''}); --method chooses`);
  a = { ...a, method: a.method ?? defaulted?.method };
  const hasher = await getHasher();
  const t0 = performance.now();
  const common = { modelId, sequence: a.sequence, ...(a.expires ? { expiresAt: parseExpiry(a.expires) } : {}), store: a.store };
  if (a.method !== 'topk' && everyChange) throw new UsageError(`--method ${a.method} carries changes within a byte budget: give --budget a size (e.g. 5%), or leave --method out for --budget all (every change, exactly)`);
  if (a.method !== 'topk' && a.codec !== 'auto') throw new UsageError(`--codec ${a.codec} chooses top-k's value codec; ${a.method === 'auto' ? 'auto tries top-k with every codec and lowbit chooses its bits per tensor' : 'lowbit chooses its bits per tensor'}: leave --codec out`);
  const diffWith = (method: 'topk' | 'lowbit') => opened.kind !== 'folder'
    ? (h: Parameters<typeof diffOnnxModels>[0], b: Parameters<typeof diffOnnxModels>[1], t: Parameters<typeof diffOnnxModels>[2], o: Parameters<typeof diffOnnxModels>[3]) => diffOnnxModels(h, b, t, { ...o, method })
    : method === 'lowbit' ? lowbitDiff : topkDiff;
  // --lowbit-codes-only: every lowbit variant without low-rank factors or outliers (the variants that differ only by those collapse).
  const codesOnly = a.lowbitCodesOnly === true;
  // One cache for every variant: they quantize each tensor's change the same way (LowBitCache).
  const cache = new LowBitCache();
  const variants = (importance?: () => ReadonlyMap<string, Float32Array>, inputs?: () => ReadonlyMap<string, InputMoments>) => lowbitVariants(importance, cache, inputs).filter((v) => !codesOnly || v.options().lowRank === false).map((v) => (codesOnly ? { ...v, options: () => ({ ...v.options(), outliers: false, newValues: false }) } : v));
  const exactCodecs = a.exactCodec === 'x' ? { codecs: ['x'] as ExactCodec[] } : a.exactCodec === 'xr' ? { codecs: ['x', 'xr'] as ExactCodec[] } : {};
  // --calibrate: candidates measured on the inputs, the closest kept.
  let calibration: CalibrationReport | undefined;
  const candidates = (importance?: () => ReadonlyMap<string, Float32Array>, reached?: ReadonlySet<string>, inputs?: () => ReadonlyMap<string, InputMoments>) => {
    const options = { budgetBytes, ...common };
    if (opened.kind === 'onnx' || opened.kind === 'tflite') {
      // Also on the tensors the calibration inputs reach alone, when that leaves some out (a branch
      // they never take, as Silero's 8 kHz model at 16 kHz).
      const changed = base.list().filter((t) => t.patchable !== false).map((t) => t.name);
      const only = reached && changed.some((n) => !reached.has(n)) ? reached : undefined;
      return [
        ...variants().map((v) => ({ name: v.name, build: () => diffOnnxModels(hasher, base, target, { ...options, method: 'lowbit', lowbit: v.options() }) })),
        ...(only ? variants().map((v) => ({ name: v.name.replace(/\)$/, `; the ${only.size} tensors the inputs reach)`), build: () => diffOnnxModels(hasher, base, target, { ...options, method: 'lowbit', lowbit: v.options(), only }) })) : []),
        ...(a.method === 'auto' ? [{ name: 'top-k', build: () => diffOnnxModels(hasher, base, target, options) }] : []),
      ];
    }
    return [
      ...variants(importance, inputs).map((v) => ({ name: v.name, build: () => lowbitDiff(hasher, base, target, { ...options, ...v.options() }) })),
      ...(a.method === 'auto' ? [{ name: 'top-k', build: () => topkDiff(hasher, base, target, { ...options, codec: 'auto' }) }] : []),
    ];
  };
  const calibrated = !a.calibrate
    ? undefined
    : opened.kind === 'onnx'
      ? await chooseCalibratedOnnx<TopkResult>({ ...(a as PayloadEvalSpec), calibrate: a.calibrate }, base, (reached) => candidates(undefined, reached), io)
      : opened.kind === 'tflite'
        ? await chooseCalibratedTflite<TopkResult>({ ...(a as PayloadEvalSpec), calibrate: a.calibrate }, base, (reached) => candidates(undefined, reached), io)
        : await chooseCalibrated<TopkResult>({ base: a.base, target: a.target, calibrate: a.calibrate }, base, (importance, inputs) => candidates(importance, undefined, inputs), io);
  if (calibrated) calibration = calibrated.report;
  const build = (method: 'topk' | 'lowbit') => diffWith(method)(hasher, base, target, {
    ...(everyChange ? { mode: 'all' as const, ...(exactCodecs.codecs ? { exactCodecs: exactCodecs.codecs } : {}) } : {}),
    budgetBytes,
    codec: a.codec,
    modelId,
    sequence: a.sequence,
    ...(a.expires ? { expiresAt: parseExpiry(a.expires) } : {}),
    onProgress: (m) => io.progress(`  ${m}`),
    store: a.store,
    ...(codesOnly && method === 'lowbit' ? (opened.kind === 'folder' ? { lowRank: false, outliers: false, newValues: false } : { lowbit: { lowRank: false, outliers: false, newValues: false } }) : {}),
  });
  // The default without inputs: lowbit, unless top-k leaves less of the change out (a few large
  // changes, which top-k keeps whole; on the measured tables lowbit left less wherever it did
  // better), or lowbit cannot make the payload (a value the base file cannot hold, say).
  const buildDefault = () => {
    const tryBuild = (method: 'topk' | 'lowbit') => {
      try {
        return build(method);
      } catch (e) {
        if (!(e instanceof BudgetError)) throw e;
        io.progress(`  the default: ${method === 'topk' ? 'top-k' : 'lowbit'} cannot make this payload (${e.message.split(': ')[0]})`);
        return undefined;
      }
    };
    const low = tryBuild('lowbit');
    const topk = tryBuild('topk');
    if (!low || !topk) {
      if (low || topk) return (low ?? topk)!;
      return build('lowbit'); // neither can: lowbit's own error, as --method lowbit gives it
    }
    const share = (r: { squaredError: number }) => `${(100 * r.squaredError / ((low as LowBitResult).changeSquared || 1)).toFixed(1)}%`;
    const topkBetter = topk.squaredError < low.squaredError;
    io.progress(`  the default: ${topkBetter ? `top-k leaves ${share(topk)} of the change's squared size out, lowbit ${share(low)}: top-k written` : `lowbit leaves ${share(low)} of the change's squared size out, top-k ${share(topk)}: lowbit written`}`);
    return topkBetter ? topk : low;
  };
  const res = calibrated ? calibrated.chosen : everyChange && opened.kind === 'folder'
    ? (() => {
      const e = exactDiff(hasher, base, target, { ...common, ...exactCodecs });
      return { ...e, kept: e.changed, changed: e.changed, squaredError: 0 };
    })()
    : defaulted?.method === 'lowbit' ? buildDefault() : build(a.method === 'lowbit' ? 'lowbit' : 'topk');
  if (everyChange) {
    const per = (c: string) => res.payload.patches.filter((p) => p.codec === c).length;
    const steps = per('i8');
    // Say only what the payload holds: "0 tensor(s) as codec xr" reads like a failure.
    const masks = [per('xs') ? `${per('xs')} tensor(s) as codec xs (their stored bits, range-coded)` : '', per('xr') ? `${per('xr')} tensor(s) as codec xr (range-coded)` : '', per('x') ? `${per('x')} tensor(s) as codec x` : ''].filter(Boolean).join(', ');
    io.progress(`  every changed weight, exactly: ${res.changed} values${steps ? `; ${steps} quantized tensor(s) in whole grid steps (codec i8)` : ''}${masks ? `; XOR masks of their bits for ${masks}` : ''}; format v${res.payload.header.version}`);
  }
  const ms = performance.now() - t0;
  const lowbit = 'allocation' in res ? (res as LowBitResult) : undefined;
  // Measured before anything is written: data the models cannot run on leaves no payload behind.
  const measured = onnxEval ? await measureOnnx(a as PayloadEvalSpec, onnxEval, res.bytes, io)
    : a.eval && opened.kind === 'tflite' ? await measureTflite(a as PayloadEvalSpec, res.bytes, io)
    : a.eval ? await measureOnInputs(a as PayloadEvalSpec, base, res.bytes, io) : undefined;
  // Nothing measured on inputs: what the weights alone say (advice.ts), warned of, not refused.
  const estimate: WeightEstimate | undefined = !everyChange && !measured && !calibration ? estimateFromWeights(changeSize(base, target), res.squaredError, 'allocation' in res ? 'lowbit' : 'topk') : undefined;
  const chosenScore = calibration?.candidates.find((c) => c.name === calibration?.chosen);
  const notCloser = calibration && chosenScore && Number.isFinite(chosenScore.loss)
    ? calibrationWarning({ loss: chosenScore.loss, agreement: calibration.baseAgreement === undefined ? undefined : chosenScore.agreement }, { loss: calibration.baseLoss, agreement: calibration.baseAgreement })
    : undefined;
  // A payload measured further from the target than not updating is refused by the rule ndiff
  // train refuses a teacher diff by on --eval (exit 10; a classifier's agreement lower beyond
  // noise): nothing is written. A drop within noise is written with the warning.
  if (measured && lessCloseThanBase(measured) && !a.allowWorse) {
    throw new NoImprovementError(
      `${movesAwayText(measured)}. Nothing was written (${a.out}${a.modelOut ? `, ${a.modelOut}` : ''}${a.metricsOut ? `, ${a.metricsOut}` : ''}); pass --allow-worse to write it anyway`,
      { metric: measured.metric, examples: measured.examples, base: measured.base, patched: measured.patched },
    );
  }
  const warning = measured?.movesAway ? movesAwayText(measured) : notCloser ?? estimate?.warning;
  await writeFile(a.out, res.bytes);
  const modelOutFingerprint = a.modelOut ? await writeUpdatedModel(a.base, a.modelOut, res.bytes) : undefined;
  // The verdict a user acts on: is the payload smaller than shipping the new model's weights?
  const targetBytes = openedTarget.weightBytes;
  const smallerThanModel = res.bytes.length < targetBytes;
  const doc = {
    out: a.out, bytes: res.bytes.length, modelBytes: total, targetModelBytes: targetBytes, smallerThanModel, payloadToModelRatio: res.bytes.length / targetBytes, budgetBytes, kept: res.kept, changed: res.changed, codec: res.codec, seconds: ms / 1000,
    baseFingerprint: res.payload.header.baseFingerprint, targetFingerprint: res.payload.header.targetFingerprint,
    ...(lowbit ? { method: 'lowbit', allocation: lowbit.allocation, formatVersion: res.payload.header.version } : { method: everyChange ? 'exact' : res.payload.header.method }),
    ...(defaulted && !everyChange ? { methodDefault: { method: res.payload.header.method, why: res.payload.header.method === defaulted.method ? defaulted.why : 'top-k left less of the change out than lowbit (a few large changes), or lowbit could not make this payload' } } : {}),
    ...(calibration ? { calibration } : {}),
    ...(a.modelOut ? { modelOut: a.modelOut, modelOutFingerprint } : {}),
    ...(measured ? { eval: measured } : {}),
    ...(estimate ? { estimate } : {}),
    ...(warning ? { warning } : {}),
  };
  io.result?.(doc);
  if (a.metricsOut) {
    // The form `ndiff report` reads (its rows need accuracy: --eval with labels).
    const metrics = {
      kind: 'ndiff-diff-metrics', modelId: res.payload.header.modelId, sequence: res.payload.header.sequence, target: a.target, budgetRequested: a.budget, ...doc,
      accuracyBefore: measured?.accuracyBefore ?? null, accuracyAfter: measured?.accuracyAfter ?? null, trainSeconds: ms / 1000,
    };
    await writeFile(a.metricsOut, JSON.stringify(metrics, null, 2) + '\n');
  }
  const carried = lowbit
    ? `every change of ${lowbit.allocation.length} tensor(s) (${describeWidths(lowbit.allocation)}; ${res.kept} of ${res.changed} changed values), share of the squared change carried ${(100 * (1 - res.squaredError / (lowbit.changeSquared || 1))).toFixed(1)}%`
    : `${res.kept} of ${res.changed} changed values kept, codec ${res.codec}`;
  io.out(`wrote ${a.out}: ${res.bytes.length} bytes (${((100 * res.bytes.length) / total).toFixed(3)}% of the model as stored, ${res.bytes.length < total ? `${(total / res.bytes.length).toFixed(1)}x smaller` : `${(res.bytes.length / total).toFixed(2)}x its size`}), ${carried}, in ${(ms / 1000).toFixed(2)} s`);
  io.out(`base ${res.payload.header.baseFingerprint} -> target ${res.payload.header.targetFingerprint}`);
  if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${modelOutFingerprint}): diff the next version against it`);
  if (measured) {
    for (const line of closenessLines(measured, '--target')) io.out(line);
    if (measured.movesAway) io.err(`warning: ${movesAwayText(measured)}`);
  }
  // The calibration's own verdict stands beside --eval's: the choice was made on those inputs.
  if (notCloser) io.err(`warning: ${notCloser}`);
  if (estimate) io.out(`estimate from the weights (nothing measured on inputs): the payload leaves out ${(100 * estimate.leftOut).toFixed(1)}% of the change's squared size; the change is ${(100 * estimate.changeToBase).toFixed(1)}% of the changed weights' squared size`);
  if (!measured && !notCloser && warning) io.err(`warning: ${warning}`);
  // Exact bits of freshly trained weights hardly compress: when nearly every weight changed, the
  // payload can weigh as much as the new model's weights, and shipping the model is as cheap.
  // No lossy budget is suggested: whether one is good enough can only be measured on data.
  if (!smallerThanModel) {
    io.progress(`note: the payload (${formatBytes(res.bytes.length)}) is ${(res.bytes.length / targetBytes).toFixed(2)}x the new model's weights (${formatBytes(targetBytes)}), not smaller; ${res.changed} values changed: ship the new model instead`);
  }
  return 0;
}
