/**
 * Build payloads on the build server: from patch specs with raw float32 deltas, quantize the
 * values, run the exact device arithmetic on a copy to learn the target digests, and pack.
 * Pure code (no tfjs, no node): the trainers and the post-hoc baselines all end here.
 */
import { BudgetError, NonFiniteValueError, UsageError } from '../core/errors.ts';
import { combineDigests, tensorDigest } from '../core/fingerprint.ts';
import { FORMAT_VERSION, matrixDims, shapeSize, type DiffMethod, type Payload, type PayloadHeader, type TensorPatch } from '../core/format.ts';
import { packPayload, wirePatch, type WirePatch } from '../core/encode.ts';
import type { Hasher } from '../core/hasher.ts';
import { applyTensorPatch } from '../core/patch-math.ts';
import { encodeValues, VALUE_CODECS, type ValueCodec } from '../core/values.ts';
import { readForDigest, type WeightStore } from '../core/weight-store.ts';

export const CREATED_BY = 'neural-diff 0.1.0';
const ZERO_DIGEST = '0000000000000000';

/** A patch before encoding: raw float32 deltas (values are quantized by `codec`). */
export type PatchSpec =
  | { kind: 'sparse'; name: string; positions: Uint32Array; values: Float32Array; codec: ValueCodec }
  | { kind: 'hash'; name: string; seed: number; signed: boolean; buckets: Float32Array; codec: ValueCodec }
  | { kind: 'dense'; name: string; values: Float32Array; codec: ValueCodec }
  /** Low-rank factors U [rows x rank] and V [rank x cols] (see `matrixDims`), coded together. */
  | { kind: 'lowrank'; name: string; rank: number; u: Float32Array; v: Float32Array; codec: ValueCodec };

const SPEC_KINDS = ['sparse', 'hash', 'dense', 'lowrank'] as const;

export interface HeaderOptions {
  method: DiffMethod;
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
 * Encode one spec's values into a patch (with placeholder digests) and its wire value bytes.
 * Returns null when the codec cannot hold the values (float16 overflow).
 */
export function encodeSpec(spec: PatchSpec, shape: readonly number[]): { patch: TensorPatch; valueBytes: Uint8Array } | null {
  const raw = spec.kind === 'hash' ? spec.buckets : spec.kind === 'lowrank' ? concat(spec.u, spec.v) : spec.values;
  for (let i = 0; i < raw.length; i++) {
    if (!Number.isFinite(raw[i])) throw new NonFiniteValueError(`tensor ${JSON.stringify(spec.name)}: delta value ${i} is ${raw[i]}; training diverged or the target model holds NaN/Infinity: fix the target before building a diff`, { tensor: spec.name, index: i });
  }
  const enc = encodeValues(raw, spec.codec);
  if (!enc) return null;
  const common = { name: spec.name, shape: [...shape], codec: spec.codec, baseDigest: ZERO_DIGEST, targetDigest: ZERO_DIGEST, ...(enc.scale !== undefined ? { scale: enc.scale } : {}) };
  let patch: TensorPatch;
  if (spec.kind === 'sparse') patch = { ...common, kind: 'sparse', positions: spec.positions, values: enc.decoded, positionCoding: 'gaps' };
  else if (spec.kind === 'hash') patch = { ...common, kind: 'hash', seed: spec.seed >>> 0, signed: spec.signed, buckets: enc.decoded };
  else if (spec.kind === 'lowrank') patch = { ...common, kind: 'lowrank', rank: spec.rank, u: enc.decoded.subarray(0, spec.u.length), v: enc.decoded.subarray(spec.u.length) };
  else patch = { ...common, kind: 'dense', values: enc.decoded };
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
    const e = encodeSpec(s, shapes.get(s.name) as readonly number[]);
    if (!e) return Infinity;
    wires.push(wirePatch(e.patch, e.valueBytes));
  }
  return packPayload(makeHeader(header, ZERO_DIGEST, ZERO_DIGEST), wires).length;
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
    if (!(VALUE_CODECS as readonly unknown[]).includes(spec.codec)) throw new UsageError(`${what}: expected codec ${VALUE_CODECS.join(', ')}, found ${JSON.stringify(spec.codec)}`, { tensor: spec.name });
    if (spec.kind === 'lowrank') {
      const { rows, cols } = matrixDims(shape);
      if (!(spec.rank >= 1) || spec.u.length !== rows * spec.rank || spec.v.length !== spec.rank * cols) throw new UsageError(`${what}: expected rank >= 1, U ${rows}x${spec.rank} and V ${spec.rank}x${cols}, found rank ${spec.rank}, ${spec.u.length} and ${spec.v.length} values`, { tensor: spec.name });
    }
    if (spec.kind === 'dense' && spec.values.length !== size) throw new UsageError(`${what}: expected ${size} dense values (the tensor's size), found ${spec.values.length}`, { tensor: spec.name });
    if (spec.kind === 'hash' && !(spec.buckets.length >= 1)) throw new UsageError(`${what}: expected at least one bucket, found none`, { tensor: spec.name });
    if (spec.kind === 'sparse') {
      if (spec.values.length !== spec.positions.length) throw new UsageError(`${what}: expected one value per position, found ${spec.positions.length} positions and ${spec.values.length} values`, { tensor: spec.name });
      for (let k = 0; k < spec.positions.length; k++) {
        if (spec.positions[k] >= size || (k > 0 && spec.positions[k] <= spec.positions[k - 1])) throw new UsageError(`${what}: positions must be strictly increasing and below ${size}; position ${k} is ${spec.positions[k]}${k > 0 ? ` after ${spec.positions[k - 1]}` : ''}`, { tensor: spec.name, index: k });
      }
    }
    const enc = encodeSpec(spec, shape);
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
    if (patch.kind === 'sparse') patch.positionCoding = wire.ic === 'm' ? 'bitmap' : 'gaps';
    wires.push(wire);
    patches.push(patch);
  }
  const h = makeHeader(header, combineDigests(hasher, digests), combineDigests(hasher, after));
  const bytes = packPayload(h, wires);
  if (header.budgetBytes && bytes.length > header.budgetBytes) {
    throw new BudgetError(`payload is ${bytes.length} bytes, over the budget of ${header.budgetBytes} bytes: raise the budget or keep fewer values`, { bytes: bytes.length, budget: header.budgetBytes });
  }
  return { bytes, payload: { header: h, patches }, targetValues };
}
