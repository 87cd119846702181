/**
 * Diffs of ONNX models on the build server: the checks and deltas that make a payload between
 * two versions of a `.onnx` file, over the pure {@link OnnxWeightStore}. A payload changes
 * weight values only (float weights, and the integers of INT8/UINT8 weights quantized by
 * `DequantizeLinear`, on their grid), so the two versions must agree on everything else (the
 * frame: graph, attributes, metadata, every other tensor, the quantization parameters) and on
 * the shapes.
 */
import { BudgetError, ModelMismatchError } from '../core/errors.ts';
import type { Hasher } from '../core/hasher.ts';
import { describeGrid, snapValue } from '../core/grid.ts';
import type { WeightStore } from '../core/weight-store.ts';
import type { OnnxTensorEntry } from '../io/onnx/store.ts';
import { checkSameInterface } from './interface.ts';
import type { BuiltPayload } from './build.ts';
import { topkFromDeltas, type TopkOptions, type TopkResult } from '../topk-diff/encoder.ts';
import { exactDiff, type ExactCodec } from './exact.ts';
import { lowbitFromDeltas, type LowBitOptions } from '../lowbit-diff/encoder.ts';

function entries(store: WeightStore): OnnxTensorEntry[] {
  return store.list() as OnnxTensorEntry[];
}

/**
 * Check that `target` differs from `base` in weight values only: same tensors, same shapes and
 * dtypes, the same quantization of every INT8/UINT8 weight, the same frame and read-only tensors.
 * @throws ModelMismatchError naming the first difference.
 */
export function checkOnnxPair(base: WeightStore, target: WeightStore): void {
  const t = new Map(entries(target).map((e) => [e.name, e] as const));
  // A quantized weight's grid first: its scale and zero point are in the frame too, but this says which.
  for (const e of entries(base)) {
    const o = t.get(e.name);
    const [a, b] = [e.quantization, o?.quantization];
    if (o && (a || b) && describeGrid(a) !== describeGrid(b)) {
      const what = !a || !b
        ? `${JSON.stringify(e.name)} is ${a ? 'a quantized weight' : 'read-only'} in the base and ${b ? 'a quantized weight' : 'read-only'} in the target (${e.readOnly ?? o.readOnly})`
        : a.scale !== b.scale ? `${JSON.stringify(e.name)} changed (scale ${a.scale} → ${b.scale}${a.zeroPoint !== b.zeroPoint ? `, zero point ${a.zeroPoint} → ${b.zeroPoint}` : ''})` : `${JSON.stringify(e.name)} changed (zero point ${a.zeroPoint} → ${b.zeroPoint})`;
      throw new ModelMismatchError(`the quantization parameters of ${what}: a payload cannot move a grid; fetch the full model`, { tensor: e.name, base: a, target: b });
    }
  }
  // Names, shapes, dtypes, the frame and the read-only tensors: the check every diff path shares.
  checkSameInterface(base, target);
}

/** `target - base` for every weight (float32 arithmetic, as the applier adds it back; quantized weights dequantized). */
export function onnxDeltas(base: WeightStore, target: WeightStore): Map<string, Float32Array> {
  checkOnnxPair(base, target);
  const out = new Map<string, Float32Array>();
  for (const e of entries(base)) {
    if (!e.patchable) continue;
    const a = base.read?.(e.name) ?? base.values(e.name);
    const b = target.read?.(e.name) ?? target.values(e.name);
    const d = new Float32Array(a.length);
    for (let i = 0; i < a.length; i++) d[i] = b[i] - a[i];
    out.set(e.name, d);
  }
  return out;
}

/**
 * Throw if a FLOAT16/BFLOAT16 weight, or a quantized INT8/UINT8 one, would hold a value off its
 * grid after the payload (a payload without the grid: `store: 'float32'`), or a value the file cannot
 * hold at its byte offsets (an `int32_data` varint too short for the new integer, a value off a
 * per-channel grid of a `.tflite` weight): devices refuse it.
 */
export function checkStoredGrids(base: WeightStore, built: Pick<BuiltPayload, 'targetValues'>): void {
  for (const e of entries(base)) {
    const v = built.targetValues.get(e.name);
    if (!v) continue;
    const grid = base.grid?.(e.name);
    for (let i = 0; grid && grid.dtype !== 'float32' && i < v.length; i++) {
      if (!Object.is(snapValue(v[i], grid), v[i])) {
        throw new BudgetError(
          e.quantization
            ? `tensor ${JSON.stringify(e.name)} is ${e.dtype} quantized as ${describeGrid(grid)}, and this payload would leave position ${i} at ${v[i]}, off that grid: devices refuse such a payload. Keep the grids (--store stored, the default)`
            : `tensor ${JSON.stringify(e.name)} is ${e.dtype}, and this payload would leave position ${i} at ${v[i]}, which ${e.dtype} cannot hold: devices refuse such a payload. Use --codec f32 (float32 deltas between two ${e.dtype} models land exactly on ${e.dtype} values)`,
          { tensor: e.name },
        );
      }
    }
    if (grid?.dtype === 'float32') continue; // any float32 value is written as it is
    // The file itself: an int32_data varint the new integer outgrows, or a weight quantized per
    // channel (no grid the payload can carry: LiteRT), cannot take every value.
    const problem = (base as { writeProblem?(name: string, values: Float32Array): string | null }).writeProblem?.(e.name, v);
    const perChannel = (e as { perChannel?: unknown }).perChannel !== undefined;
    if (problem) {
      throw new BudgetError(
        `this payload would leave values the base file cannot hold at its byte offsets, so devices would refuse it: ${problem.replace(/; nothing was written\./, '.')}${perChannel ? '. A lossy payload cannot yet keep a weight quantized per channel on its channels\' grids: use --budget all (every change, exactly)' : ''}`,
        { tensor: e.name },
      );
    }
  }
}

/** Options of {@link diffOnnxModels}. */
export interface OnnxDiffOptions extends TopkOptions {
  /**
   * `topk` (default): the largest changes that fit `budgetBytes`. `all`: every changed value,
   * exactly (codec x or xr: the XOR of new and old bits; see exact.ts), whatever its size.
   */
  mode?: 'topk' | 'all';
  /** With a budget: `topk` (default) keeps the largest changes; `lowbit` every change at 1 to 8 bits (src/lowbit-diff). */
  method?: 'topk' | 'lowbit';
  /** With `method: 'lowbit'`: how lowbit chooses (src/lowbit-diff's options; e.g. BitDelta's code is `BITDELTA_CODE`). */
  lowbit?: Pick<LowBitOptions, 'widths' | 'layouts' | 'lowRank' | 'outliers' | 'newValues' | 'cover' | 'proxy' | 'importance' | 'cache'>;
  /** With `method: 'lowbit'`: carry only these tensors' changes (e.g. the ones calibration inputs reach); the others stay at the base. */
  only?: ReadonlySet<string>;
  /** With `mode: 'all'`: the exact codecs a tensor may take (see `ExactDiffOptions.codecs`). */
  exactCodecs?: readonly ExactCodec[];
}

/**
 * A payload from `base` to `target`, two versions of an ONNX model with the same graph
 * ({@link checkOnnxPair}): post-hoc top-k within the budget, or every change.
 *
 * With FLOAT16/BFLOAT16 weights, `codec: 'auto'` keeps to f32 (whose deltas between two half
 * models land exactly on half values); an explicit f16/i8 codec that would leave a half weight
 * off its grid is refused with a {@link BudgetError}. Quantized INT8/UINT8 weights are diffed on
 * their dequantized values and rounded onto the base's grid (the payload carries it; i8 values
 * are whole grid steps); their quantization must be the same in both models
 * ({@link checkOnnxPair}). `mode: 'all'` ends at the target bit for bit.
 */
export function diffOnnxModels(hasher: Hasher, base: WeightStore, target: WeightStore, options: OnnxDiffOptions): TopkResult {
  checkOnnxPair(base, target);
  const halves = entries(base).some((e) => e.patchable && (e.dtype === 'FLOAT16' || e.dtype === 'BFLOAT16'));
  const gridded = entries(base).some((e) => e.patchable && e.dtype !== 'FLOAT');
  let res: TopkResult;
  if (options.mode === 'all') {
    // Every change, exactly: the XOR of new and old bits (codec x or xr), which reaches any
    // target, or whole grid steps (i8) for int8/uint8 weights on an unchanged grid.
    const { mode: _mode, budgetBytes: _budget, codec: _codec, onProgress: _p, exactCodecs, ...header } = options;
    const built = exactDiff(hasher, base, target, { ...header, ...(exactCodecs ? { codecs: exactCodecs } : {}), names: entries(base).filter((e) => e.patchable).map((e) => e.name) });
    res = { ...built, kept: built.changed, changed: built.changed, codec: built.payload.patches.every((p) => p.codec === 'i8') && built.payload.patches.length ? 'i8' : built.codec, squaredError: 0 };
  } else if (options.method === 'lowbit') {
    const { method: _m, codec: _c, lowbit, only, ...rest } = options;
    const deltas = onnxDeltas(base, target);
    res = lowbitFromDeltas(hasher, base, only ? new Map([...deltas].filter(([name]) => only.has(name))) : deltas, { ...rest, ...(lowbit ?? {}) });
  } else {
    res = topkFromDeltas(hasher, base, onnxDeltas(base, target), { ...options, codec: halves && (options.codec ?? 'auto') === 'auto' ? 'f32' : options.codec }, 'topk');
  }
  if (gridded) checkStoredGrids(base, res);
  // (exactDiff and topkFromDeltas confirmed the bytes on a copy of the base already.)
  return res;
}
