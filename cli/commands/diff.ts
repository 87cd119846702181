import type { Argv } from 'yargs';
import { formatBytes } from '../../src/diff/budget.ts';
import type { PostHocMethod } from '../../src/diff/advice.ts';
import type { ProgramOutputKind } from '../../src/engine/program/training-model.ts';
import type { StructuralDiffReport, ValueDiffReport } from '../../src/front/diff.ts';
import { DIFF_CHOICES } from '../../src/front/diff-options.ts';
import { choicesOf } from '../../src/core/choices.ts';
import { budgetChoiceText, budgetTryText } from '../../src/front/budget-search.ts';
import type { CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';

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
  /** `--budget auto`: the quality target (exactly one) and the budgets tried. */
  minAgreement?: number;
  maxMeanAbsDiff?: number;
  maxAccuracyDrop?: number;
  budgetGrid?: string;
  threads?: number;
}

export function diffCommand(y: Argv): Argv<DiffArgs> {
  return y
    .usage('ndiff diff --base V1 --target V2 --budget B --out FILE [options]\n\nMake a payload from two versions of a model without training: low-bit deltas, top-k of the change, or every change (--budget all); a structural payload when the structure changed.')
    .option('base', { type: 'string', demandOption: true, describe: 'the model devices hold: TF.js folder or model JSON, .onnx, .tflite, .safetensors or .gguf' })
    .option('target', { type: 'string', demandOption: true, describe: 'the new model, of the same kind' })
    .option('budget', { type: 'string', demandOption: true, describe: 'payload bytes: 1% of the model (.gguf: of the file), 40KB, bytes, all, or auto' })
    .option('min-agreement', { type: 'number', describe: 'budget auto: least top-1 agreement with --target on --eval' })
    .option('max-mean-abs-diff', { type: 'number', describe: 'budget auto: most mean |output − target| on --eval' })
    .option('max-accuracy-drop', { type: 'number', describe: 'budget auto: most points below --target\'s accuracy on --eval' })
    .option('budget-grid', { type: 'string', describe: 'budget auto: budgets tried (default 0.5%,1%,2%,5%,10%,20%)' })
    .option('out', { type: 'string', demandOption: true, describe: 'payload file to write' })
    .option('model-id', { type: 'string', describe: 'id devices know the model by (default: the one the base recorded)' })
    .option('sequence', { type: 'number', default: 1, describe: 'update sequence number (devices refuse older)' })
    .option('expires', { type: 'string', describe: 'expiry: ISO date or a duration (30d, 12h)' })
    .option('model-out', { type: 'string', describe: 'also write base + payload: the next diff\'s --base' })
    .option('method', { choices: choicesOf(DIFF_CHOICES, 'method'), describe: 'how the change is carried (default: lowbit, or topk)' })
    .option('codec', { choices: choicesOf(DIFF_CHOICES, 'codec'), default: 'auto' as const, describe: 'topk value codec' })
    .option('calibrate', { type: 'string', describe: 'inputs that choose lowbit\'s variant or method (.gguf: a text)' })
    .option('lowbit-codes-only', { type: 'boolean', default: false, describe: 'lowbit as dense codes only, for older appliers' })
    .option('exact-codec', { choices: choicesOf(DIFF_CHOICES, 'exactCodec'), default: 'auto' as const, describe: 'codecs of --budget all' })
    .option('store', { choices: choicesOf(DIFF_CHOICES, 'store'), default: 'stored' as const, describe: 'quantized tensors stay on their grid' })
    .option('eval', { type: 'string', describe: 'inputs (.gguf: held-out text): measure base + payload against --target' })
    .option('metrics-out', { type: 'string', describe: 'write a metrics JSON for ndiff report' })
    .option('state', { type: 'string', array: true, default: [] as string[], describe: 'stateful .onnx: INPUT:OUTPUT pairs carried' })
    .option('output', { type: 'string', describe: '.onnx: the output compared (default: first non-state)' })
    .option('output-kind', { choices: choicesOf(DIFF_CHOICES, 'outputKind'), describe: '.onnx: how the output reads (default: from its shape and last op)' })
    .option('allow-worse', { type: 'boolean', default: false, describe: 'with --eval: write a payload measured worse than not updating' })
    .option('threads', { type: 'number', describe: '.gguf: threads coding the payload (default: every core, at most 8)' })
    // The options few runs need are hidden (--show-hidden lists them), with --version and one
    // example: the help fits a screen (40 lines at 100 columns).
    .showHidden('show-hidden', 'with --help: also list the options hidden here')
    .group(['base', 'target', 'budget', 'min-agreement', 'max-mean-abs-diff', 'max-accuracy-drop', 'budget-grid', 'out', 'model-id', 'sequence', 'expires', 'model-out', 'quiet', 'json', 'help', 'show-hidden'], 'Models and payload:')
    .group(['method', 'codec', 'calibrate', 'lowbit-codes-only', 'exact-codec', 'store', 'threads'], 'Method:')
    .group(['eval', 'allow-worse', 'metrics-out', 'state', 'output', 'output-kind'], 'Measuring (--eval, --calibrate):')
    .example('$0 diff --model-id kws-en --base v1/ --target v2/ --budget 5% --method lowbit --out v1-v2.ndiff', 'every weight\'s change at 1 to 8 bits within 5%')
    .hide('version').hide('min-agreement').hide('max-mean-abs-diff').hide('max-accuracy-drop').hide('budget-grid').hide('lowbit-codes-only').hide('exact-codec').hide('store').hide('state').hide('output-kind').hide('threads')
    .epilogue(seeDocs('diff')) as unknown as Argv<DiffArgs>;
}

/** The library's `diff` and the formatters of its report, loaded when `ndiff diff` runs (not by `ndiff --help` or another command). */
async function diffLibrary() {
  const [{ diff }, { describeWidths }, { ggufEvalText }, { closenessLines }] = await Promise.all([
    import('../../src/front/diff.ts'), import('../../src/lowbit-diff/encoder.ts'), import('../../src/front/diff-gguf-eval.ts'), import('../../src/front/measure/payload-eval.ts'),
  ]);
  return { diff, describeWidths, ggufEvalText, closenessLines };
}
type DiffLibrary = Awaited<ReturnType<typeof diffLibrary>>;

/** `ndiff diff`: one call of the library's `diff`, its result printed. */
export async function runDiff(a: DiffArgs, io: CliIO): Promise<number> {
  const lib = await diffLibrary();
  const res = await lib.diff({
    base: a.base, target: a.target, budget: a.budget, out: a.out, codec: a.codec, sequence: a.sequence, store: a.store, exactCodec: a.exactCodec, state: a.state,
    ...(a.method ? { method: a.method } : {}),
    ...(a.lowbitCodesOnly ? { lowbitCodesOnly: true } : {}),
    ...(a.calibrate !== undefined ? { calibrate: a.calibrate } : {}),
    ...(a.modelId !== undefined ? { modelId: a.modelId } : {}),
    ...(a.expires !== undefined ? { expires: a.expires } : {}),
    ...(a.modelOut !== undefined ? { modelOut: a.modelOut } : {}),
    ...(a.eval !== undefined ? { eval: a.eval } : {}),
    ...(a.output !== undefined ? { output: a.output } : {}),
    ...(a.outputKind !== undefined ? { outputKind: a.outputKind } : {}),
    ...(a.metricsOut !== undefined ? { metricsOut: a.metricsOut } : {}),
    ...(a.allowWorse ? { allowWorse: true } : {}),
    ...(a.minAgreement !== undefined ? { minAgreement: a.minAgreement } : {}),
    ...(a.maxMeanAbsDiff !== undefined ? { maxMeanAbsDiff: a.maxMeanAbsDiff } : {}),
    ...(a.maxAccuracyDrop !== undefined ? { maxAccuracyDrop: a.maxAccuracyDrop } : {}),
    ...(a.budgetGrid !== undefined ? { budgetGrid: a.budgetGrid } : {}),
    ...(a.threads !== undefined ? { threads: a.threads } : {}),
    onProgress: (line) => io.progress(line),
  });
  const { payload: _payload, ...doc } = res;
  const { warnings } = res;
  // The JSON document carries the warnings too: a pipeline reading it must not miss one.
  io.result?.(doc);
  if (res.structural) printStructural(a, io, res);
  else printValue(a, io, res, lib);
  for (const w of warnings) io.err(`warning: ${w}`);
  return 0;
}

/** The lines `ndiff diff` prints for a value payload. */
function printValue(a: DiffArgs, io: CliIO, r: ValueDiffReport & { payload: Uint8Array }, { describeWidths, ggufEvalText, closenessLines }: DiffLibrary): void {
  const carried = r.codec === 'gguf-blocks' && r.method === 'ongrid'
    ? `each ggml block v1's or v2's on the device's grid: ${r.kept} of ${r.changed} changed block bytes carried, share of the squared dequantized change carried ${(100 * (r.shareCarried ?? 0)).toFixed(1)}% (format v8, applied in place)`
    : r.codec === 'gguf-blocks'
    ? `every changed ggml block exactly (${r.changed} bytes changed; format v8, applied in place)`
    : r.allocation
    ? `every change of ${r.allocation.length} tensor(s) (${describeWidths(r.allocation)}; ${r.kept} of ${r.changed} changed values), share of the squared change carried ${(100 * (r.shareCarried ?? 0)).toFixed(1)}%`
    : `${r.kept} of ${r.changed} changed values kept, codec ${r.codec}`;
  const total = r.modelBytes;
  io.out(`wrote ${a.out}: ${r.bytes} bytes (${((100 * r.bytes) / total).toFixed(3)}% of the model as stored, ${r.bytes < total ? `${(total / r.bytes).toFixed(1)}x smaller` : `${(r.bytes / total).toFixed(2)}x its size`}), ${carried}, in ${r.seconds.toFixed(2)} s`);
  io.out(`base ${r.baseFingerprint} -> target ${r.targetFingerprint}`);
  if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${r.modelOutFingerprint}): diff the next version against it`);
  if (r.eval) for (const line of closenessLines(r.eval, '--target')) io.out(line);
  if (r.llamaEval) io.out(ggufEvalText(r.llamaEval));
  if (r.budgetSearch) {
    for (const t of r.budgetSearch.tried) io.out(`budget auto: ${budgetTryText(r.budgetSearch.target, t)}`);
    io.out(budgetChoiceText(r.budgetSearch));
  }
  if (r.estimate) io.out(`estimate from the weights (nothing measured on inputs): the payload leaves out ${(100 * r.estimate.leftOut).toFixed(1)}% of the change's squared size; the change is ${(100 * r.estimate.changeToBase).toFixed(1)}% of the changed weights' squared size`);
}

/** The lines `ndiff diff` prints for a structural payload. */
function printStructural(a: DiffArgs, io: CliIO, r: StructuralDiffReport): void {
  const list = (xs: string[]) => (xs.length ? xs.slice(0, 4).join(', ') + (xs.length > 4 ? `, ... (${xs.length - 4} more)` : '') : 'none');
  const what = r.targetFiles ? `model's ${r.targetFiles.length} files` : 'file';
  io.out(`wrote ${a.out}: ${r.bytes} bytes, a structural payload (format v7: the target ${what} rebuilt from the base's bytes, ${formatBytes(r.rebuildBytes)} of rebuild, then ${formatBytes(r.valueBytes)} of value patches; ${((100 * r.bytes) / r.targetFileBytes).toFixed(2)}% of the ${formatBytes(r.targetFileBytes)} target ${r.targetFiles ? 'files' : 'file'}), in ${r.seconds.toFixed(2)} s`);
  io.out(`tensors added: ${list(r.added)}; removed: ${list(r.removed)}; renamed: ${list(r.renamed.map((x) => `${x.from} -> ${x.to}`))}; reshaped: ${list(r.reshaped.map((x) => `${x.name} [${x.base.join(', ')}] -> [${x.target.join(', ')}]`))}${r.retyped.length ? `; retyped: ${list(r.retyped)}` : ''}; ${r.kept} kept (${r.keptChanged} changed); graph ${r.graphChanged ? 'changed' : 'unchanged'}`);
  io.out(`base ${r.baseFingerprint} -> intermediate ${r.intermediateFingerprint} -> target ${r.targetFingerprint}${r.exact ? '' : ` (within the budget: not ${a.target} itself, ${r.targetFileFingerprint}; --budget all reaches it exactly)`}; devices need neural-diff/rebuild (neural-diff/apply refuses format v7)`);
  if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${r.modelOutFingerprint}): diff the next version against it`);
}

