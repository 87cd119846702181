import type { Argv } from 'yargs';
import { formatBytes } from '../../src/diff/budget.ts';
import { describeWidths } from '../../src/diff/lowbit.ts';
import type { PostHocMethod } from '../../src/diff/advice.ts';
import type { ProgramOutputKind } from '../../src/train/program/training-model.ts';
import { diff, type StructuralDiffReport, type ValueDiffReport } from '../../src/front/diff.ts';
import { MAX_CALIBRATION_EXAMPLES } from '../../src/front/measure/calibrate.ts';
import { closenessLines } from '../../src/front/measure/payload-eval.ts';
import type { CliIO } from '../common.ts';

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
  metricsOut?: string;
  state: string[];
  output?: string;
  outputKind?: ProgramOutputKind;
}

export function diffCommand(y: Argv): Argv<DiffArgs> {
  return y
    .option('base', { type: 'string', demandOption: true, describe: 'the model the devices hold: a TF.js folder (model.json + shards), a TF.js model JSON file with its shards beside it (<name>.json + <name>.bin, as @vladmandic/human ships them), an ONNX file (.onnx) or a LiteRT file (.tflite); a bare weights manifest (face-api\'s *-weights_manifest.json) is refused, saying what to pass' })
    .option('target', { type: 'string', demandOption: true, describe: 'the new model, of the same kind and architecture' })
    .option('budget', { type: 'string', demandOption: true, describe: 'byte budget for the whole payload: `1%` of the base model as stored (the bytes of its weight files), `40KB`, `40KiB`, or bytes; or `all`: every changed weight, exactly (the device ends bit for bit at --target; format v4 when a tensor stored in 1 or 2 bytes is smaller as its stored bits, codec xs, else v3 when one is smaller range-coded, codec xr, else v2), whatever the size' })
    .option('out', { type: 'string', demandOption: true, describe: 'payload file to write' })
    .option('method', { choices: ['topk', 'lowbit', 'auto'] as const, describe: 'with a byte budget (default: lowbit, or top-k when it leaves less of the change out, as for a few large changes; with --calibrate, lowbit chosen on the inputs; topk with --codec or --budget all: the methods measured best post hoc in docs/BENCHMARKS.md): topk keeps the largest changes (positions and values); lowbit carries every changed tensor, each at 1 to 8 bits with a scale per output channel, row or tensor (its largest changes apart at float16 when that pays), or as low-rank factors with a width per singular direction, chosen to leave the least error within the budget (format v6 when codes are used: the applier on the device must read version 6, and for its low-rank factors and outliers one of this release: see --lowbit-codes-only). A fine-tune that moves every weight a little is carried far better by lowbit; a few large changes by topk. auto: both, and every lowbit variant, measured on --calibrate inputs; the closest to --target is written' })
    .option('calibrate', { type: 'string', describe: `with --method lowbit or auto: inputs from where the model runs, no labels needed, as --eval takes them (TF.js layers-models: x.npy, or a folder holding it, the first ${MAX_CALIBRATION_EXAMPLES}; .onnx files: a folder with one .npy per model input, --state and sequence.npy for stateful models, run by the ONNX executor; .tflite files: the same folder, or x.npy for one input, run by the LiteRT executor). Each candidate payload (lowbit with errors relative to each layer or plain, with and without low-rank factors, and for TF.js models weighed by every weight's Fisher information on these inputs, or with each dense and convolution kernel's codes rounded against its layer's inputs (GPTQ's update); with auto, top-k too) is measured by how close base + payload comes to --target's outputs on them (KL divergence for classifiers, else mean squared difference), and the closest is written; each is reported with its bytes and loss` })
    .option('lowbit-codes-only', { type: 'boolean', default: false, describe: 'with --method lowbit or auto: carry every tensor as dense codes of its change only, without the low-rank factors (a width per singular direction), the float16 outliers (the largest changes apart from the codes) and the codes of a retrained tensor\'s new values lowbit otherwise offers, for devices whose applier predates those (they came later within format v6: such a device refuses the payload before writing anything and falls back to the full model; FORMAT.md §8)' })
    .option('codec', { choices: ['auto', 'f32', 'f16', 'i8', 'l8', 'l4'] as const, default: 'auto' as const, describe: 'with --method topk: the value codec; `auto` keeps the one of f32, f16 and i8 (one scale a tensor) with the smallest error; l8 / l4: 8- or 4-bit codes with a scale per output channel (codec l, format v6: for appliers that read it; an older applier refuses the payload and the device keeps its model)' })
    .option('model-id', { type: 'string', describe: 'the id devices know this model by, written in the payload (devices refuse a payload for another id); keep one id along a chain of updates. Required unless the base folder recorded one (.ndiff-folder.json, written by ndiff apply and --model-out); never taken from the folder name' })
    .option('sequence', { type: 'number', default: 1, describe: 'update sequence number; devices refuse anything at or below the one they hold' })
    .option('expires', { type: 'string', describe: 'expiry: ISO date, or a duration from now like `30d`, `12h`' })
    .option('model-out', { type: 'string', describe: 'also write the model devices hold after this update (base + payload): the --base of the next diff in a chain (a folder, or a .onnx / .tflite file for those models)' })
    .option('store', { choices: ['stored', 'float32'] as const, default: 'stored' as const, describe: 'stored: tensors the base keeps quantized (uint8/uint16/float16, ONNX int8/uint8) stay on their grid (the changes are rounded to it); float32: patched tensors become float32 on the device (an .onnx file keeps its dtypes, so there a payload leaving a value its dtype cannot hold is refused)' })
    .option('exact-codec', { choices: ['auto', 'x', 'xr'] as const, default: 'auto' as const, describe: 'with --budget all: auto: per tensor the smallest of codec x, codec xr (range-coded, format v3) and, for tensors stored in 1 or 2 bytes (float16, bfloat16, uint8/uint16), codec xs (their stored bits, format v4); xr: codecs x and xr only (format v3), for devices whose applier reads formats 1 to 3 (older than codec xs); x: codec x only (format v2), for appliers that read formats 1 and 2 only' })
    .option('eval', { type: 'string', describe: 'inputs from where the model runs: report how close base + payload comes to --target on them, beside the unpatched base, and warn when the payload takes the model further from --target than not updating (needs @tensorflow/tfjs). TF.js layers-model folders: x.npy, or a folder holding it. .onnx files: a folder with one .npy per model input, named after it (input.npy; a 0-d array such as sr.npy is fed to every example), run by the ONNX executor whose outputs are onnxruntime\'s; stateful models need --state and sequence.npy. .tflite files: one .npy per model input (x.npy for one input), run by the LiteRT executor. y.npy beside the inputs adds accuracy' })
    .option('state', { type: 'string', array: true, default: [] as string[], describe: 'with --eval on .onnx files, stateful models: INPUT:OUTPUT pairs carried from frame to frame (Silero VAD: --state state:stateN); the --eval folder then needs sequence.npy, and each sequence runs from a zero state with the state carried, as a streaming runtime runs it' })
    .option('output', { type: 'string', describe: 'with --eval on .onnx files: the output compared (default: the first that is not a state)' })
    .option('output-kind', { choices: ['probability', 'logit', 'probabilities', 'logits', 'values'] as const, describe: 'with --eval on .onnx files: how the output reads (default: probability of class 1 for one value per example, decided at 0.5; else probabilities after a Softmax, plain values (closeness only) after a Sigmoid or for a map, logits otherwise)' })
    .option('metrics-out', { type: 'string', describe: 'write a metrics JSON of this payload (bytes, and with --eval its closeness to --target and accuracy); `ndiff report` reads it (accuracy when --eval had labels, else the closeness to --target)' })
    .example('$0 diff --model-id kws-en --base v1/ --target v2/ --budget 1% --out v1-v2.ndiff', 'keep the largest changes that fit in 1% of the model')
    .example('$0 diff --model-id kws-en --base v1/ --target v2/ --budget 5% --method lowbit --out v1-v2.ndiff', 'a fine-tuned v2: every weight\'s change at 1 to 8 bits within 5% of the model')
    .example('$0 diff --model-id kws-en --base v1/ --target v2/ --budget 5% --method auto --calibrate inputs/ --out v1-v2.ndiff', 'the method and its variant chosen on unlabeled inputs: whichever takes v1 closest to v2 on them')
    .example('$0 diff --model-id kws-en --base v1/ --target v2/ --budget 5% --eval field-inputs/ --out v1-v2.ndiff', 'measure the payload against v2 on real inputs: is base + payload closer to v2 than v1 is?')
    .example('$0 diff --model-id silero-vad --base vad-v5.onnx --target vad-v6.onnx --budget 5% --out v5-v6.ndiff', 'the same for two versions of an ONNX model (same graph, new weights)')
    .example('$0 diff --model-id selfie --base selfie-v1.tflite --target selfie-v2.tflite --budget all --out v1-v2.ndiff', 'every change of a LiteRT model, exactly (float16 weights stay float16)')
    .example('$0 diff --model-id silero-vad --base vad-v5.onnx --target vad-v6.onnx --budget 10% --eval frames/ --state state:stateN --out v5-v6.ndiff', 'measure it frame by frame, the state carried (frames/: input.npy [n, 576], sr.npy 16000, sequence.npy): how often base + payload makes v6\'s speech decision, beside v5') as unknown as Argv<DiffArgs>;
}

/** `ndiff diff`: one call of the library's {@link diff}, its result printed. */
export async function runDiff(a: DiffArgs, io: CliIO): Promise<number> {
  const res = await diff({
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
    onProgress: (line) => io.progress(line),
  });
  const { payload: _payload, warnings, ...doc } = res;
  io.result?.(doc);
  if (res.structural) printStructural(a, io, res);
  else printValue(a, io, res);
  for (const w of warnings) io.err(`warning: ${w}`);
  return 0;
}

/** The lines `ndiff diff` prints for a value payload. */
function printValue(a: DiffArgs, io: CliIO, r: ValueDiffReport & { payload: Uint8Array }): void {
  const carried = r.allocation
    ? `every change of ${r.allocation.length} tensor(s) (${describeWidths(r.allocation)}; ${r.kept} of ${r.changed} changed values), share of the squared change carried ${(100 * (r.shareCarried ?? 0)).toFixed(1)}%`
    : `${r.kept} of ${r.changed} changed values kept, codec ${r.codec}`;
  const total = r.modelBytes;
  io.out(`wrote ${a.out}: ${r.bytes} bytes (${((100 * r.bytes) / total).toFixed(3)}% of the model as stored, ${r.bytes < total ? `${(total / r.bytes).toFixed(1)}x smaller` : `${(r.bytes / total).toFixed(2)}x its size`}), ${carried}, in ${r.seconds.toFixed(2)} s`);
  io.out(`base ${r.baseFingerprint} -> target ${r.targetFingerprint}`);
  if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${r.modelOutFingerprint}): diff the next version against it`);
  if (r.eval) for (const line of closenessLines(r.eval, '--target')) io.out(line);
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

