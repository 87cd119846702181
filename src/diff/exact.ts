/**
 * Exact diffs: every weight that changed between two versions of a model, carried as the XOR
 * of its new and old float32 bits, so the device ends at the target bit for bit, whatever the
 * two values are (an additive float32 delta cannot reach every target: 1 + d never gives
 * 1e-10). Two codings of the masks, per tensor whichever is smaller: codec `x` (format v2)
 * drops the bytes a mask's high end shares with zero, so a weight whose sign and exponent did
 * not change costs about 3 bytes; codec `xr` (format v3) keeps the low 3 bytes of every mask
 * and range-codes the high byte (sign and exponent), which is what is left to compress in a
 * retrained weight (its low mantissa bits are noise). A tensor stored in 1 or 2 bytes a value
 * (float16, bfloat16, uint8/uint16 quantization, ONNX int8/uint8) whose base and target are on
 * its grid takes codec `xs` (format v4) when smaller: the XOR of the stored codes, as wide as the
 * stored value, its low byte raw and its high byte range-coded, so an exact float16 patch costs
 * at most about the changed values' stored size plus positions. A tensor with most weights
 * changed goes dense (no positions at all), a few changes sparse, whichever is smaller.
 *
 * An ONNX int8/uint8 weight (a qint8/quint8 storage grid) whose base and target are on the same
 * grid moves in whole grid steps instead: i8 values of the grid's scale, a byte each, when every
 * change is within 127 steps; the device's rounding onto the grid lands exactly on the target
 * (checked here: where it would not, the XOR masks are used).
 */
import type { Hasher } from '../core/hasher.ts';
import { gridBytesPerValue, gridCode, gridLevel, onGrid, type LinearQuantGrid, type StorageGrid } from '../core/grid.ts';
import { encodeXorMasks } from '../core/values.ts';
import { encodeXrMasks } from '../core/xr.ts';
import { UsageError } from '../core/errors.ts';
import { readForDigest, type WeightStore } from '../core/weight-store.ts';
import { encodePositions } from '../core/encode.ts';
import { shapeSize } from '../core/format.ts';
import { buildPayload, storageGrids, storedModelBytes, type BuiltPayload, type HeaderOptions, type PatchSpec, type StoreAs } from './build.ts';
import { checkSameInterface, sameBits } from './interface.ts';
import { confirmPayload } from './confirm.ts';
import { isPatchable } from '../core/weight-store.ts';

export interface ExactDiffOptions extends Omit<HeaderOptions, 'method' | 'grids'> {
  /** The tensors to diff (default: every tensor of the base). */
  names?: readonly string[];
  /** `'stored'` keeps quantized tensors' grids where the target's values are on them. */
  store?: StoreAs;
  /**
   * The codecs a tensor may take (default all three, the smallest wins): `['x']` keeps the
   * payload to format v2, for devices whose applier predates codec `xr` (format v3); `['x',
   * 'xr']` to format v3, for appliers that predate codec `xs` (format v4).
   */
  codecs?: readonly ExactCodec[];
}

/** The exact-bits codecs: `x` (format v2), `xr` (range-coded, format v3) and `xs` (stored width, format v4). */
export type ExactCodec = 'x' | 'xr' | 'xs';

export interface ExactDiffResult extends BuiltPayload {
  /** Weights whose bits changed (every one is in the payload). */
  changed: number;
  /** Tensors patched as XOR masks, per codec (whole grid steps not counted). */
  codecs: Record<ExactCodec, number>;
  /** `xs` when any patch uses it (the payload is format v4), else `xr` when any does (v3), else `x`. */
  codec: ExactCodec;
  /** Bytes of the target's weights as stored (`storedModelBytes`): what shipping the new model costs. */
  targetModelBytes: number;
  /** False when the payload is as large as the target's weights or larger: ship the new model instead. */
  smallerThanModel: boolean;
}

/** Bits of a Float32Array, as a view. */
function bits(v: Float32Array): Uint32Array {
  return new Uint32Array(v.buffer, v.byteOffset, v.length);
}

/**
 * The payload that takes `base` exactly to `target`, every changed bit included, whatever its
 * size. The two models must share their interface (tensor names, shapes, dtypes, frame:
 * {@link checkSameInterface}), and the payload is applied to a copy of the base before it is
 * returned, to confirm it ends at the target's fingerprint (`confirmPayload`). The two
 * stores are read, never written.
 * @throws ModelMismatchError when the interfaces differ; TargetMismatchError when the payload would not reach the target
 */
export function exactDiff(hasher: Hasher, base: WeightStore, target: WeightStore, options: ExactDiffOptions = {}): ExactDiffResult {
  checkSameInterface(base, target);
  const { steps, ...first } = exactDiffWith(hasher, base, target, options, true);
  // Whole grid steps land on the target by construction; should one not, use the XOR masks.
  const res = steps.every((name) => sameBits(first.targetValues.get(name) as Float32Array, readForDigest(target, name)))
    ? first
    : (({ steps: _none, ...masks }) => masks)(exactDiffWith(hasher, base, target, options, false));
  confirmPayload(hasher, base, res, target);
  const targetModelBytes = storedModelBytes(target);
  return { ...res, targetModelBytes, smallerThanModel: res.bytes.length < targetModelBytes };
}

function exactDiffWith(hasher: Hasher, base: WeightStore, target: WeightStore, options: ExactDiffOptions, useSteps: boolean): Omit<ExactDiffResult, 'targetModelBytes' | 'smallerThanModel'> & { steps: string[] } {
  const names = options.names ?? base.list().filter(isPatchable).map((t) => t.name);
  const steps: string[] = [];
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const baseGrids = storageGrids(base, options.store);
  const grids = new Map<string, StorageGrid>();
  const specs: PatchSpec[] = [];
  const allowed = options.codecs ?? ['x', 'xr', 'xs'];
  if (!allowed.length || allowed.some((c) => c !== 'x' && c !== 'xr' && c !== 'xs') || allowed.every((c) => c === 'xs')) throw new UsageError(`exact diff: codecs must be a list of "x", "xr" and "xs" with "x" or "xr" among them (xs only fits tensors stored in 1 or 2 bytes), found ${JSON.stringify(allowed)}`);
  const codecs: Record<ExactCodec, number> = { x: 0, xr: 0, xs: 0 };
  let changed = 0;
  for (const name of names) {
    const a = readForDigest(base, name);
    const b = readForDigest(target, name);
    const ab = bits(a);
    const bb = bits(b);
    const positions: number[] = [];
    for (let i = 0; i < ab.length; i++) if (ab[i] !== bb[i]) positions.push(i);
    if (!positions.length) continue;
    changed += positions.length;
    const size = shapeSize(shapes.get(name) as readonly number[]);
    // A quantized tensor keeps its grid when the target's values are on it (then rounding
    // changes nothing); otherwise the exact float32 values are the result.
    const grid = baseGrids.get(name);
    if (grid && onGrid(b, grid)) grids.set(name, grid);
    const pos = Uint32Array.from(positions);
    if (useSteps && grids.has(name) && (grid?.dtype === 'qint8' || grid?.dtype === 'quint8')) {
      const g = grid as LinearQuantGrid;
      const k = Int32Array.from(positions, (i) => gridLevel(b[i], g) - gridLevel(a[i], g));
      if (k.every((x) => x >= -127 && x <= 127)) {
        // i8 whole steps: sparse (positions + a byte each) or dense (a byte per weight).
        const sparse = encodePositions(pos, size).bytes.length + k.length <= size;
        const values = Float32Array.from(k, (x) => x * g.scale);
        if (sparse) specs.push({ kind: 'sparse', name, positions: pos, values, codec: 'i8' });
        else {
          const all = new Float32Array(size);
          positions.forEach((i, j) => (all[i] = values[j]));
          specs.push({ kind: 'dense', name, values: all, codec: 'i8' });
        }
        steps.push(name);
        continue;
      }
    }
    // Sparse: positions plus the changed masks; dense: every mask (a zero costs one byte).
    const masks = Uint32Array.from(positions, (i) => ab[i] ^ bb[i]);
    const all = new Uint32Array(size);
    for (let i = 0; i < size; i++) all[i] = ab[i] ^ bb[i];
    // The smallest of sparse and dense, each with every codec allowed (ties: x, then sparse).
    const positionBytes = encodePositions(pos, size).bytes.length;
    let best = { bytes: Infinity, codec: 'x' as ExactCodec, dense: false };
    for (const codec of (['x', 'xr'] as const).filter((c) => allowed.includes(c))) {
      const encode = codec === 'x' ? encodeXorMasks : encodeXrMasks;
      const sparse = positionBytes + encode(masks).length;
      const dense = encode(all).length;
      const bytes = Math.min(sparse, dense);
      if (bytes < best.bytes) best = { bytes, codec, dense: dense < sparse };
    }
    // Exact stored bits: base and target both on a grid of 1 or 2 bytes a value.
    const g = grids.get(name);
    if (g && allowed.includes('xs') && gridBytesPerValue(g) <= 2 && onGrid(a, g)) {
      const low = gridBytesPerValue(g) - 1;
      const stored = Uint32Array.from(positions, (i) => gridCode(a[i], g) ^ gridCode(b[i], g));
      const storedAll = new Uint32Array(size);
      stored.forEach((m, j) => (storedAll[positions[j]] = m));
      const sparse = positionBytes + encodeXrMasks(stored, low).length;
      const dense = encodeXrMasks(storedAll, low).length;
      const bytes = Math.min(sparse, dense);
      if (bytes < best.bytes) best = { bytes, codec: 'xs', dense: dense < sparse };
    }
    codecs[best.codec]++;
    const values = Float32Array.from(b); // the new weights; buildPayload XORs them with the base
    if (best.dense) specs.push({ kind: 'dense', name, values, codec: best.codec });
    else specs.push({ kind: 'sparse', name, positions: pos, values: Float32Array.from(positions, (i) => b[i]), codec: best.codec });
  }
  const { names: _names, store: _store, codecs: _codecs, ...header } = options;
  // The header names the family (top-k with k = every change); the metadata says exact.
  const built = buildPayload(hasher, base, specs, { ...header, method: 'topk', budgetBytes: 0, grids, meta: { ...(header.meta ?? {}), method: 'exact' } });
  return { ...built, changed, steps, codecs, codec: codecs.xs ? 'xs' : codecs.xr ? 'xr' : 'x' };
}
