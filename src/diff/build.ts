/**
 * Build payloads on the build server: from patch specs with raw float32 deltas, quantize the
 * values, run the exact device arithmetic on a copy to learn the target digests, and pack.
 * Pure code (no tfjs, no node): the trainers and the post-hoc baselines all end here.
 */
import { BudgetError, NonFiniteValueError, UsageError } from '../core/errors.ts';
import { combineDigests, tensorDigest } from '../core/fingerprint.ts';
import { FORMAT_VERSION, matrixDims, shapeSize, type DiffMethod, type Payload, type PayloadHeader, type TensorPatch } from '../core/format.ts';
import { lowBitCodes, lowBitFactorCodes, packPayload, wirePatch, type WirePatch } from '../core/encode.ts';
import type { Hasher } from '../core/hasher.ts';
import { applyTensorPatch } from '../core/patch-math.ts';
import { encodeValues, encodeXorMasks, exactBits, VALUE_CODECS, type ValueCodec } from '../core/values.ts';
import { encodeXrMasks } from '../core/xr.ts';
import { decodeLowBit, decodeLowBitFactors, isLowBitWidth, lowBitFactorProblem, lowBitProblem, lowBitScales, type LowBit, type LowBitFactors } from '../core/lowbit.ts';
import { gridBytesPerValue, gridCode, isIntegerGrid, snapValue, type StorageGrid } from '../core/grid.ts';
import { readForDigest, type WeightStore } from '../core/weight-store.ts';

export const CREATED_BY = 'neural-diff 0.1.0';
const ZERO_DIGEST = '0000000000000000';

/**
 * A patch before encoding: raw float32 deltas (values are quantized by `codec`). With `grid`
 * (the tensor's storage grid, e.g. from `store.grid(name)`), the device rounds what the patch
 * writes onto it (format v2), so a quantized tensor stays quantized; `buildPayload` fills it in
 * from the base store unless `grid` is given, or is `null` for float32 results.
 */
export type PatchSpec = (
  /**
   * With codec `x` (exact bits, format v2), `xr` (the same, range-coded, format v3) or `xs`
   * (exact stored bits of a tensor on a 1- or 2-byte grid, format v4), `values` are the new
   * weights, not deltas.
   */
  | { kind: 'sparse'; name: string; positions: Uint32Array; values: Float32Array; codec: ValueCodec | 'x' | 'xr' | 'xs' }
  | { kind: 'hash'; name: string; seed: number; signed: boolean; buckets: Float32Array; codec: ValueCodec }
  | { kind: 'dense'; name: string; values: Float32Array; codec: ValueCodec | 'x' | 'xr' | 'xs' }
  /**
   * Format v6, codec `l`: every value at `lowbit.bits` bits with its scales; `values` are what
   * the codes decode to (src/diff/lowbit-quantize.ts `quantizeLowBit` makes both). With `replace` (kind
   * `n`, later within v6) they are the tensor's new values, not a delta.
   */
  | { kind: 'dense'; name: string; values: Float32Array; codec: 'l'; lowbit: LowBit; replace?: boolean }
  /**
   * Codec `l` on a sparse patch (later within v6): value k at `lowbit.bits` bits with the scale
   * of its position's group (a scale per output channel, as a dense patch's); `values` are what
   * the codes decode to (`quantizeSparseLowBit` makes both).
   */
  | { kind: 'sparse'; name: string; positions: Uint32Array; values: Float32Array; codec: 'l'; lowbit: LowBit }
  /** Low-rank factors U [rows x rank] and V [rank x cols] (see `matrixDims`), coded together. */
  | { kind: 'lowrank'; name: string; rank: number; u: Float32Array; v: Float32Array; codec: ValueCodec }
  /**
   * Codec `l` on low-rank factors (v6): each direction at its own width, a scale per factor
   * vector; `u` and `v` are what the codes decode to (src/lowbit-diff/encoder.ts `quantizeFactors`).
   */
  | { kind: 'lowrank'; name: string; rank: number; u: Float32Array; v: Float32Array; codec: 'l'; lowbitFactors: LowBitFactors }
  /**
   * Format v5: low-rank factors (coded by `codec`) and sparse values at sorted positions
   * (coded by `sparseCodec`), applied together (docs/FORMAT.md §5.2).
   */
  | { kind: 'composite'; name: string; rank: number; u: Float32Array; v: Float32Array; positions: Uint32Array; values: Float32Array; codec: ValueCodec; sparseCodec: ValueCodec; dense?: undefined }
  /**
   * Codec `l` (v6): dense codes (`dense`, what they decode to, with `lowbit` as a dense spec's)
   * and sparse values at sorted positions, the largest changes at higher precision.
   */
  | { kind: 'composite'; name: string; dense: Float32Array; lowbit: LowBit; positions: Uint32Array; values: Float32Array; codec: 'l'; sparseCodec: ValueCodec; rank?: undefined }
  /** The same with its factors in codec `l`, as a low-rank spec's. */
  | { kind: 'composite'; name: string; rank: number; u: Float32Array; v: Float32Array; positions: Uint32Array; values: Float32Array; codec: 'l'; lowbitFactors: LowBitFactors; sparseCodec: ValueCodec; dense?: undefined }
) & { grid?: StorageGrid | null };

const SPEC_KINDS = ['sparse', 'hash', 'dense', 'lowrank', 'composite'] as const;

export interface HeaderOptions {
  method: DiffMethod;
  /**
   * The storage grid each patch carries, by tensor name (from `storageGrids`); tensors
   * not in it get float32 results. Not part of the header: it sizes and builds the patches.
   * Undefined: {@link buildPayload} takes the base store's grids, and {@link payloadSize} none.
   */
  grids?: ReadonlyMap<string, StorageGrid>;
  modelId?: string;
  sequence?: number;
  budgetBytes?: number;
  createdAt?: string;
  expiresAt?: number;
  meta?: Record<string, string | number>;
}

export interface BuiltPayload {
  bytes: Uint8Array;
  payload: Payload;
  /** The patched tensors' values after applying (exactly what the device will hold). */
  targetValues: Map<string, Float32Array>;
}

/**
 * A codec-l spec's widths, before anything is sized by them: each an integer from 1 to 8
 * (FORMAT.md §4.4), not "8" or true, which would pass JavaScript's comparisons and be encoded
 * with string arithmetic.
 */
function checkLowBitWidths(spec: PatchSpec): void {
  const { lowbit, lowbitFactors } = spec as { lowbit?: LowBit; lowbitFactors?: LowBitFactors };
  const widths: readonly unknown[] | undefined = lowbitFactors ? (Array.isArray(lowbitFactors.widths) ? lowbitFactors.widths : [lowbitFactors.widths]) : lowbit ? [lowbit.bits] : undefined;
  const wrong = widths?.find((b) => !isLowBitWidth(b));
  if (widths && (wrong !== undefined || widths.length === 0)) {
    throw new UsageError(`tensor ${JSON.stringify(spec.name)}: codec l: bit widths must be integers from 1 to 8, found ${JSON.stringify(widths)}; make the values with quantizeLowBit or quantizeFactors`, { tensor: spec.name, widths });
  }
}

/**
 * Encode one spec's values into a patch (with placeholder digests) and its wire value bytes.
 * Returns null when the codec cannot hold the values (float16 overflow).
 */
export function encodeSpec(spec: PatchSpec, shape: readonly number[], grid: StorageGrid | undefined = spec.grid ?? undefined, baseValues?: Float32Array): { patch: TensorPatch; valueBytes: Uint8Array } | null {
  const raw = spec.kind === 'hash' ? spec.buckets : spec.kind === 'composite' && spec.dense ? spec.dense : spec.kind === 'lowrank' || spec.kind === 'composite' ? concat(spec.u, spec.v) : spec.values;
  for (const arr of spec.kind === 'composite' ? [raw, spec.values] : [raw]) {
    for (let i = 0; i < arr.length; i++) {
      if (!Number.isFinite(arr[i])) throw new NonFiniteValueError(`tensor ${JSON.stringify(spec.name)}: delta value ${i} is ${arr[i]}; training diverged or the target model holds NaN/Infinity: fix the target before building a diff`, { tensor: spec.name, index: i });
    }
  }
  checkLowBitWidths(spec);
  if (spec.kind === 'composite' && spec.dense) {
    // Dense codes and a sparse part: the codes must decode to `dense` exactly, as a dense spec's.
    const codes = lowBitCodes(spec.dense, spec.lowbit);
    const problem = lowBitProblem(codes, spec.dense.length, spec.lowbit);
    const decoded = problem ? null : decodeLowBit(codes, spec.lowbit, lowBitScales(spec.lowbit), 0, new Float32Array(spec.dense.length));
    if (!(decoded && decoded.every((v, i) => Object.is(v, spec.dense[i])))) throw new UsageError(`tensor ${JSON.stringify(spec.name)}: codec l: ${problem ?? 'the dense values are not what their codes decode to'}; make the values and layout with quantizeLowBit`, { tensor: spec.name });
    const sparse = encodeValues(spec.values, spec.sparseCodec);
    if (!sparse) return null;
    const keepGrid = grid && grid.dtype !== 'float32' ? { grid } : {};
    return {
      patch: {
        kind: 'composite', name: spec.name, shape: [...shape], codec: 'l', lowbit: spec.lowbit, rank: 0, u: new Float32Array(0), v: new Float32Array(0), dense: decoded, baseDigest: ZERO_DIGEST, targetDigest: ZERO_DIGEST,
        positions: spec.positions, values: sparse.decoded, positionCoding: 'gaps', sparseCodec: spec.sparseCodec, ...(sparse.scale !== undefined ? { sparseScale: sparse.scale } : {}), ...keepGrid,
      },
      valueBytes: codes,
    };
  }
  if ((spec.kind === 'lowrank' || spec.kind === 'composite') && spec.codec === 'l') {
    const f = spec.lowbitFactors;
    const { rows, cols } = matrixDims(shape);
    const codes = lowBitFactorCodes(spec.u, spec.v, shape, f);
    const problem = lowBitFactorProblem(codes, rows, cols, spec.rank, f);
    const decoded = problem ? null : decodeLowBitFactors(codes, f, rows, cols);
    const same = decoded && decoded.u.every((x, i) => Object.is(x, spec.u[i])) && decoded.v.every((x, i) => Object.is(x, spec.v[i]));
    if (!same) throw new UsageError(`tensor ${JSON.stringify(spec.name)}: codec l factors: ${problem ?? 'the factors are not what their codes decode to'}; make them with quantizeFactors`, { tensor: spec.name });
    const keepGrid = grid && grid.dtype !== 'float32' ? { grid } : {};
    const common = { name: spec.name, shape: [...shape], codec: 'l' as const, lowbitFactors: f, rank: spec.rank, baseDigest: ZERO_DIGEST, targetDigest: ZERO_DIGEST, u: spec.u, v: spec.v, ...keepGrid };
    if (spec.kind === 'lowrank') return { patch: { kind: 'lowrank', ...common }, valueBytes: codes };
    const sparse = encodeValues(spec.values, spec.sparseCodec);
    if (!sparse) return null;
    return {
      patch: { kind: 'composite', ...common, positions: spec.positions, values: sparse.decoded, positionCoding: 'gaps', sparseCodec: spec.sparseCodec, ...(sparse.scale !== undefined ? { sparseScale: sparse.scale } : {}) },
      valueBytes: codes,
    };
  }
  if ((spec.kind === 'dense' || spec.kind === 'sparse') && spec.codec === 'l') {
    // The values must be what their codes decode to: a device adds exactly those.
    const positions = spec.kind === 'sparse' ? spec.positions : undefined;
    const codes = lowBitCodes(spec.values, spec.lowbit, positions);
    const problem = lowBitProblem(codes, spec.values.length, spec.lowbit, shapeSize(shape));
    const decoded = problem ? null : decodeLowBit(codes, spec.lowbit, lowBitScales(spec.lowbit), 0, new Float32Array(spec.values.length), positions);
    const same = decoded && decoded.every((v, i) => Object.is(v, spec.values[i]));
    if (!same) throw new UsageError(`tensor ${JSON.stringify(spec.name)}: codec l: ${problem ?? 'the values are not what their codes decode to'}; make the values and layout with ${positions ? 'quantizeSparseLowBit' : 'quantizeLowBit'}`, { tensor: spec.name });
    const keepGrid = grid && grid.dtype !== 'float32' ? { grid } : {};
    const common = { name: spec.name, shape: [...shape], codec: 'l' as const, lowbit: spec.lowbit, baseDigest: ZERO_DIGEST, targetDigest: ZERO_DIGEST, values: decoded as Float32Array, ...keepGrid };
    if (positions) return { patch: { kind: 'sparse', ...common, positions, positionCoding: 'gaps' }, valueBytes: codes };
    return { patch: { kind: 'dense', ...common, ...(spec.kind === 'dense' && spec.replace ? { replace: true as const } : {}) }, valueBytes: codes };
  }
  if ((spec.kind === 'sparse' || spec.kind === 'dense') && exactBits(spec.codec)) {
    // Exact bits: each value is the XOR of the new and the old float32 bits.
    if (!baseValues) throw new UsageError(`tensor ${JSON.stringify(spec.name)}: codec ${spec.codec} needs the base values to XOR against (buildPayload passes them; payloadSize cannot size it)`);
    const masks = new Uint32Array(spec.values.length);
    const at = (k: number) => (spec.kind === 'sparse' ? spec.positions[k] : k);
    let low = 3;
    if (spec.codec === 'xs') {
      // Exact stored bits: the XOR of the new and the old stored codes on the tensor's grid.
      low = grid ? gridBytesPerValue(grid) - 1 : 3;
      if (!grid || low > 1) throw new UsageError(`tensor ${JSON.stringify(spec.name)}: codec xs carries the stored bits of a tensor stored in 1 or 2 bytes a value (a uint8, uint16, int8, float16 or bfloat16 grid), found ${grid ? grid.dtype : 'no grid'}: use codec x or xr`, { tensor: spec.name });
      for (let k = 0; k < masks.length; k++) {
        const v = spec.values[k];
        if (!Object.is(snapValue(v, grid), v)) throw new UsageError(`tensor ${JSON.stringify(spec.name)}: codec xs: new value ${v} (entry ${k}) is not on the tensor's ${grid.dtype} grid: use codec x or xr`, { tensor: spec.name, index: k });
        masks[k] = gridCode(v, grid) ^ gridCode(baseValues[at(k)], grid);
      }
    } else {
      const oldBits = new Uint32Array(baseValues.buffer, baseValues.byteOffset, baseValues.length);
      const newBits = new Uint32Array(spec.values.buffer, spec.values.byteOffset, spec.values.length);
      for (let k = 0; k < masks.length; k++) masks[k] = newBits[k] ^ oldBits[at(k)];
    }
    const bits = new Float32Array(masks.buffer);
    const xGrid = grid && grid.dtype !== 'float32' ? { grid } : {};
    const common = { name: spec.name, shape: [...shape], codec: spec.codec, baseDigest: ZERO_DIGEST, targetDigest: ZERO_DIGEST, ...xGrid };
    const patch: TensorPatch = spec.kind === 'sparse' ? { ...common, kind: 'sparse', positions: spec.positions, values: bits, positionCoding: 'gaps' } : { ...common, kind: 'dense', values: bits };
    return { patch, valueBytes: spec.codec === 'x' ? encodeXorMasks(masks) : encodeXrMasks(masks, low) };
  }
  // On an integer grid (uint8/uint16, ONNX qint8/quint8) the natural int8 scale is the grid's
  // step: a delta of k steps is carried as k exactly (the device rounds the sum onto the grid).
  const affine = grid && isIntegerGrid(grid) && spec.kind !== 'lowrank' && spec.kind !== 'composite' ? grid : undefined;
  // (Exact bits returned above: the codec is an additive one here.)
  const enc = encodeValues(raw, spec.codec as ValueCodec, affine ? Math.fround(affine.scale) : undefined);
  if (!enc) return null;
  const keepGrid = grid && grid.dtype !== 'float32' ? { grid } : {};
  const common = { name: spec.name, shape: [...shape], codec: spec.codec, baseDigest: ZERO_DIGEST, targetDigest: ZERO_DIGEST, ...(enc.scale !== undefined ? { scale: enc.scale } : {}), ...keepGrid };
  let patch: TensorPatch;
  if (spec.kind === 'sparse') patch = { ...common, kind: 'sparse', positions: spec.positions, values: enc.decoded, positionCoding: 'gaps' };
  else if (spec.kind === 'hash') patch = { ...common, kind: 'hash', seed: spec.seed >>> 0, signed: spec.signed, buckets: enc.decoded };
  else if (spec.kind === 'lowrank') patch = { ...common, kind: 'lowrank', rank: spec.rank, u: enc.decoded.subarray(0, spec.u.length), v: enc.decoded.subarray(spec.u.length) };
  else if (spec.kind === 'composite') {
    const sparse = encodeValues(spec.values, spec.sparseCodec);
    if (!sparse) return null;
    patch = {
      ...common, kind: 'composite', rank: spec.rank, u: enc.decoded.subarray(0, spec.u.length), v: enc.decoded.subarray(spec.u.length),
      positions: spec.positions, values: sparse.decoded, positionCoding: 'gaps', sparseCodec: spec.sparseCodec, ...(sparse.scale !== undefined ? { sparseScale: sparse.scale } : {}),
    };
  } else patch = { ...common, kind: 'dense', values: enc.decoded };
  return { patch, valueBytes: enc.bytes };
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function makeHeader(o: HeaderOptions, base: string, target: string): PayloadHeader {
  const h: PayloadHeader = {
    version: FORMAT_VERSION,
    method: o.method,
    modelId: o.modelId ?? 'model',
    baseFingerprint: base,
    targetFingerprint: target,
    sequence: o.sequence ?? 1,
    budgetBytes: o.budgetBytes ?? 0,
    createdBy: CREATED_BY,
  };
  if (o.createdAt !== undefined) h.createdAt = o.createdAt;
  if (o.expiresAt !== undefined) h.expiresAt = o.expiresAt;
  if (o.meta !== undefined) h.meta = o.meta;
  return h;
}

/**
 * Exact size in bytes of the payload the specs would make (digests do not change the size).
 * Returns Infinity when a codec cannot hold the values.
 */
export function payloadSize(specs: PatchSpec[], shapes: ReadonlyMap<string, readonly number[]>, header: HeaderOptions): number {
  const wires: WirePatch[] = [];
  for (const s of specs) {
    const e = encodeSpec(s, shapes.get(s.name) as readonly number[], s.grid === null ? undefined : s.grid ?? header.grids?.get(s.name));
    if (!e) return Infinity;
    wires.push(wirePatch(e.patch, e.valueBytes));
  }
  return packPayload(makeHeader(header, ZERO_DIGEST, ZERO_DIGEST), wires).length;
}

/**
 * How the payload stores each patched tensor: `'stored'` (default) keeps every tensor the base
 * stores in another dtype (uint8/uint16 or ONNX int8/uint8 quantized, float16, bfloat16) on its grid, so the
 * device keeps the model's size; `'float32'` leaves results unrounded (the device then writes
 * patched tensors as float32).
 */
export type StoreAs = 'stored' | 'float32';

/** The grids payloads against `base` carry with `storeAs` (see {@link HeaderOptions.grids}). */
export function storageGrids(base: WeightStore, storeAs: StoreAs = 'stored'): Map<string, StorageGrid> {
  const out = new Map<string, StorageGrid>();
  if (storeAs === 'float32' || !base.grid) return out;
  for (const t of base.list()) {
    const g = base.grid(t.name);
    if (g && g.dtype !== 'float32') out.set(t.name, g);
  }
  return out;
}

/** Bytes of the model as its store keeps it (grid dtype per tensor; float32 where unknown): what budgets are a percentage of. */
export function storedModelBytes(store: WeightStore): number {
  let n = 0;
  for (const t of store.list()) if (t.patchable !== false) n += gridBytesPerValue(store.grid?.(t.name)) * shapeSize(t.shape);
  return n;
}

/** Per-tensor digests of a store, cached by the caller across many builds of the same base. */
export function baseDigests(hasher: Hasher, base: WeightStore): Map<string, string> {
  const d = new Map<string, string>();
  // Read-only: a store may list tensors it never patches (an ONNX model's frame and integer tensors).
  for (const t of base.list()) d.set(t.name, tensorDigest(hasher, t.name, t.shape, readForDigest(base, t.name)));
  return d;
}

/**
 * Build the payload that takes `base` to base + specs. `base` is not modified. When
 * `header.budgetBytes` is set and the payload is larger, throws {@link BudgetError}.
 */
export function buildPayload(hasher: Hasher, base: WeightStore, specs: PatchSpec[], header: HeaderOptions, digests = baseDigests(hasher, base)): BuiltPayload {
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const sorted = [...specs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const after = new Map(digests);
  const patches: TensorPatch[] = [];
  const wires: WirePatch[] = [];
  const targetValues = new Map<string, Float32Array>();
  for (const spec of sorted) {
    const shape = shapes.get(spec.name);
    const what = `patch for tensor ${JSON.stringify(spec.name)}`;
    if (!shape) throw new UsageError(`${what}: the base model has no such tensor: check the name against the base's tensor list`, { tensor: spec.name });
    const size = shapeSize(shape);
    if (!(SPEC_KINDS as readonly unknown[]).includes(spec.kind)) throw new UsageError(`${what}: expected kind ${SPEC_KINDS.join(', ')}, found ${JSON.stringify(spec.kind)}`, { tensor: spec.name });
    const xorOk = (exactBits(spec.codec) && (spec.kind === 'sparse' || spec.kind === 'dense')) || (spec.codec === 'l' && (spec.kind as string) !== 'hash');
    if (!xorOk && !(VALUE_CODECS as readonly unknown[]).includes(spec.codec)) throw new UsageError(`${what}: expected codec ${VALUE_CODECS.join(', ')} (or x, xr, xs for sparse and dense patches, l for every kind but hashed), found ${JSON.stringify(spec.codec)}`, { tensor: spec.name });
    if (spec.kind === 'composite' && spec.dense) {
      if (spec.dense.length !== size) throw new UsageError(`${what}: expected ${size} dense values (the tensor's size), found ${spec.dense.length}`, { tensor: spec.name });
    } else if (spec.kind === 'lowrank' || spec.kind === 'composite') {
      const { rows, cols } = matrixDims(shape);
      if (!(spec.rank >= 1) || spec.u.length !== rows * spec.rank || spec.v.length !== spec.rank * cols) throw new UsageError(`${what}: expected rank >= 1, U ${rows}x${spec.rank} and V ${spec.rank}x${cols}, found rank ${spec.rank}, ${spec.u.length} and ${spec.v.length} values`, { tensor: spec.name });
    }
    if (spec.kind === 'dense' && spec.values.length !== size) throw new UsageError(`${what}: expected ${size} dense values (the tensor's size), found ${spec.values.length}`, { tensor: spec.name });
    if (spec.kind === 'hash' && !(spec.buckets.length >= 1)) throw new UsageError(`${what}: expected at least one bucket, found none`, { tensor: spec.name });
    if (spec.kind === 'composite' && !(VALUE_CODECS as readonly unknown[]).includes(spec.sparseCodec)) throw new UsageError(`${what}: expected a sparse codec ${VALUE_CODECS.join(', ')}, found ${JSON.stringify(spec.sparseCodec)}`, { tensor: spec.name });
    if (spec.kind === 'sparse' || spec.kind === 'composite') {
      if (spec.values.length !== spec.positions.length) throw new UsageError(`${what}: expected one value per position, found ${spec.positions.length} positions and ${spec.values.length} values`, { tensor: spec.name });
      for (let k = 0; k < spec.positions.length; k++) {
        if (spec.positions[k] >= size || (k > 0 && spec.positions[k] <= spec.positions[k - 1])) throw new UsageError(`${what}: positions must be strictly increasing and below ${size}; position ${k} is ${spec.positions[k]}${k > 0 ? ` after ${spec.positions[k - 1]}` : ''}`, { tensor: spec.name, index: k });
      }
    }
    // The base's storage grid unless the spec says otherwise (null: a float32 result).
    const grid = spec.grid === null ? undefined : spec.grid ?? (header.grids ? header.grids.get(spec.name) : base.grid?.(spec.name));
    const enc = encodeSpec(spec, shape, grid, exactBits(spec.codec) ? readForDigest(base, spec.name) : undefined);
    if (!enc) throw new BudgetError(`tensor ${spec.name}: values do not fit codec ${spec.codec} (float16 overflow); use f32 or i8`);
    const w = base.values(spec.name).slice();
    applyTensorPatch(w, enc.patch, false);
    for (let i = 0; i < w.length; i++) {
      if (!Number.isFinite(w[i])) throw new NonFiniteValueError(`tensor ${spec.name}: base + delta overflows float32 at position ${i}; the delta is too large`, { tensor: spec.name, index: i });
    }
    const targetDigest = tensorDigest(hasher, spec.name, shape, w);
    after.set(spec.name, targetDigest);
    targetValues.set(spec.name, w);
    const patch: TensorPatch = { ...enc.patch, baseDigest: digests.get(spec.name) as string, targetDigest };
    const wire = wirePatch(patch, enc.valueBytes);
    if (patch.kind === 'sparse' || patch.kind === 'composite') patch.positionCoding = wire.ic === 'm' ? 'bitmap' : 'gaps';
    wires.push(wire);
    patches.push(patch);
  }
  const h = makeHeader(header, combineDigests(hasher, digests), combineDigests(hasher, after));
  // The oldest version that holds the payload, so older devices take it: v6 for codec l, v5 for a composite
  // patch, v4 for exact stored bits (codec xs), v3 for range-coded exact bits (codec xr), v2 for
  // a grid or exact bits (codec x), else v1.
  h.version = patches.some((p) => p.codec === 'l') ? 6 : patches.some((p) => p.kind === 'composite') ? 5 : patches.some((p) => p.codec === 'xs') ? 4 : patches.some((p) => p.codec === 'xr') ? 3 : patches.some((p) => p.grid || p.codec === 'x') ? 2 : 1;
  const bytes = packPayload(h, wires);
  if (header.budgetBytes && bytes.length > header.budgetBytes) {
    throw new BudgetError(`payload is ${bytes.length} bytes, over the budget of ${header.budgetBytes} bytes: raise the budget or keep fewer values`, { bytes: bytes.length, budget: header.budgetBytes });
  }
  return { bytes, payload: { header: h, patches }, targetValues };
}

/** Options without the builder-only `store` key (what goes into {@link HeaderOptions}). */
export function withoutStore<T extends { store?: StoreAs }>(options: T): Omit<T, 'store'> {
  const { store: _store, ...rest } = options;
  return rest;
}
