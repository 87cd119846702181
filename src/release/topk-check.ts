/**
 * Publish's check of a post-hoc top-k payload in one pass, without building it again: the payload
 * is decoded once, and one walk over each tensor's change (`target - base`, float32 as the
 * encoder computes it) confirms that the kept positions are the largest changes (ties broken as
 * the encoder's `MagnitudeRanking` in src/topk-diff/encoder.ts breaks them: tensor name, then
 * position), that each kept value is the change within its codec's error, that the payload fits the budget, and that applied to
 * the base it reaches the target its header names. Nothing here runs the encoder.
 *
 * What it does not ask: that the payload keeps as many positions as the budget allows, or uses
 * the codec with the least squared error (the encoder's choice). A payload keeping fewer of the
 * largest changes, or another of f32, f16 and i8, passes: its weights are still the version's
 * largest changes, each within its codec's error.
 */
import { NeuralDiffError } from '../core/errors.ts';
import { combineDigests, tensorDigest } from '../core/fingerprint.ts';
import { decodePayload, type Payload, type SparsePatch } from '../core/format.ts';
import type { Hasher } from '../core/hasher.ts';
import { applyTensorPatch } from '../core/patch-math.ts';
import { isPatchable, readForDigest, type WeightStore } from '../core/weight-store.ts';
import { VALUE_CODECS, type ValueCodec } from '../core/values.ts';
import { storageGrids } from '../diff/build.ts';
import { checkSameInterface } from '../diff/interface.ts';

/** A top-k payload the one-pass check refuses: `details` names what was expected and what was found. */
export class TopkCheckError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_PAYLOAD_FORMAT', message, details);
  }
}

/** What the job asked of its payload. */
export interface TopkExpectation {
  /** The byte budget the job's policy gives (`parseBudget` of its budget over the base's weight bytes). */
  budgetBytes: number;
  /** The budget as the job's policy names it (`2%`), for the refusal's words (default: "its budget"). */
  budgetName?: string;
  /** The codecs the job's encoder may pick (default f32, f16, i8; an ONNX model with float16 weights: f32 only). */
  codecs?: readonly ValueCodec[];
}

/** What the check found: the payload's decoded form and the fingerprint it reaches. */
export interface TopkCheckResult {
  payload: Payload;
  /** Positions kept, over all tensors. */
  kept: number;
  /** Changed weights (non-zero change), over all tensors. */
  changed: number;
  reachedFingerprint: string;
  /** The patched tensors' values after applying, as a device holds them. */
  targetValues: Map<string, Float32Array>;
}

/** One entry in the encoder's ranking: its magnitude, its tensor's index among the sorted names, its position. */
interface Ranked {
  mag: number;
  tensor: number;
  position: number;
}

/** Whether `a` ranks before `b` in the encoder's ranking (larger first; ties: tensor name, then position). */
function ranksBefore(a: Ranked, b: Ranked): boolean {
  if (a.mag !== b.mag) return a.mag > b.mag;
  return a.tensor !== b.tensor ? a.tensor < b.tensor : a.position < b.position;
}

/** The most a decoded value may differ from the change it carries, by codec (f32: none; f16: half an ulp; i8: half a step). */
function codecError(codec: string, change: number, scale: number | undefined): number {
  if (codec === 'f32') return 0;
  if (codec === 'f16') return Math.max(Math.abs(change) * 2 ** -11, 2 ** -25);
  // i8: |change - q·scale| <= scale / 2, and fround(q·scale) adds at most an ulp of the value.
  const s = scale ?? 0;
  return s / 2 + (Math.abs(change) + s) * 2 ** -23;
}

/**
 * Check `bytes` as the post-hoc top-k payload from `base` to `target` within `expect.budgetBytes`,
 * in one pass (see the file's comment). `base` and `target` are only read.
 * @throws TopkCheckError naming the first rule the payload breaks, with what was expected and found
 */
export function checkTopkPayload(hasher: Hasher, base: WeightStore, target: WeightStore, bytes: Uint8Array, expect: TopkExpectation): TopkCheckResult {
  const refuse = (why: string, details: Record<string, unknown>) => new TopkCheckError(`is not the top-k payload of ${expect.budgetName ? `budget ${expect.budgetName}` : 'its budget'}: ${why}`, details);
  if (bytes.length > expect.budgetBytes) throw refuse(`it is ${bytes.length} bytes, over the job's budget of ${expect.budgetBytes} bytes`, { expected: expect.budgetBytes, found: bytes.length });
  // The same tensors, shapes and dtypes, as the encoder's modelDelta asks (else a structural payload is the job's).
  checkSameInterface(base, target);
  const payload = decodePayload(bytes);
  const { header } = payload;
  if (header.method !== 'topk') throw refuse(`its header names method ${JSON.stringify(header.method)}`, { expected: 'topk', found: header.method });
  if (header.budgetBytes !== expect.budgetBytes) throw refuse(`its header names budget ${header.budgetBytes} bytes, the job's policy gives ${expect.budgetBytes}`, { expected: expect.budgetBytes, found: header.budgetBytes ?? null });
  const codecs = expect.codecs ?? VALUE_CODECS;
  const entries = new Map(base.list().map((t) => [t.name, t] as const));
  const grids = storageGrids(base);
  const patches = new Map<string, SparsePatch>();
  let codec: string | undefined;
  for (const p of payload.patches) {
    const entry = entries.get(p.name);
    if (!entry || !isPatchable(entry)) throw refuse(`it patches ${JSON.stringify(p.name)}, which is not a weight of the base the encoder diffs`, { tensor: p.name });
    if (p.kind !== 'sparse') throw refuse(`tensor ${JSON.stringify(p.name)} has a ${p.kind} patch, the encoder writes sparse patches only`, { tensor: p.name, expected: 'sparse', found: p.kind });
    if (!(codecs as readonly string[]).includes(p.codec)) throw refuse(`tensor ${JSON.stringify(p.name)} is in codec ${p.codec}, the job's encoder writes ${codecs.join(', ')}`, { tensor: p.name, expected: codecs, found: p.codec });
    if (codec !== undefined && p.codec !== codec) throw refuse(`tensor ${JSON.stringify(p.name)} is in codec ${p.codec}, another tensor in ${codec}: the encoder writes one codec for the whole payload`, { tensor: p.name, expected: codec, found: p.codec });
    codec = p.codec;
    const want = grids.get(p.name);
    if (JSON.stringify(p.grid ?? null) !== JSON.stringify(want ?? null)) throw refuse(`tensor ${JSON.stringify(p.name)} names storage grid ${JSON.stringify(p.grid ?? null)}, the base stores it on ${JSON.stringify(want ?? null)}`, { tensor: p.name, expected: want ?? null, found: p.grid ?? null });
    patches.set(p.name, p);
  }
  // The encoder's ranking walks the weights by sorted tensor name, then position (MagnitudeRanking).
  const names = base.list().filter(isPatchable).map((t) => t.name).sort();
  let smallestKept: Ranked | undefined;
  let largestDropped: Ranked | undefined;
  let kept = 0;
  let changed = 0;
  const after = new Map<string, string>();
  const targetValues = new Map<string, Float32Array>();
  for (const t of base.list()) after.set(t.name, tensorDigest(hasher, t.name, t.shape, readForDigest(base, t.name)));
  const baseFingerprint = combineDigests(hasher, after);
  if (baseFingerprint !== header.baseFingerprint) throw refuse(`its header names base ${header.baseFingerprint}, the job's base is ${baseFingerprint}`, { expected: baseFingerprint, found: header.baseFingerprint });
  for (const p of patches.values()) {
    if (p.baseDigest !== after.get(p.name)) throw refuse(`tensor ${JSON.stringify(p.name)} names base digest ${p.baseDigest}, the base's is ${after.get(p.name)}`, { tensor: p.name, expected: after.get(p.name), found: p.baseDigest });
  }
  names.forEach((name, ti) => {
    const a = base.read?.(name) ?? base.values(name);
    const b = target.read?.(name) ?? target.values(name);
    const p = patches.get(name);
    const positions = p?.positions ?? new Uint32Array(0);
    const values = p?.values ?? new Float32Array(0);
    let j = 0;
    let next = positions.length ? positions[0] : -1;
    for (let i = 0; i < a.length; i++) {
      const d = Math.fround(b[i] - a[i]);
      if (d !== d) throw refuse(`the change of ${JSON.stringify(name)} at ${i} is NaN: the version holds NaN, no top-k payload ranks it`, { tensor: name, position: i });
      if (d !== 0) changed++;
      const mag = Math.abs(d);
      if (i === next) {
        if (d === 0) throw refuse(`it keeps ${JSON.stringify(name)} at ${i}, where the weight does not change: the encoder keeps changed weights only`, { tensor: name, position: i, expected: 'a changed weight', found: 0 });
        const v = values[j];
        const err = Math.abs(v - d);
        const allowed = codecError(p!.codec, d, p!.scale);
        if (!(err <= allowed)) throw refuse(`it carries ${v} for ${JSON.stringify(name)} at ${i}, where the change is ${d}: off by ${err}, codec ${p!.codec} allows ${allowed}`, { tensor: name, position: i, expected: d, found: v, allowed });
        // Ties: a later entry ranks after an earlier one of the same magnitude, so it becomes the smallest kept.
        if (!smallestKept || mag <= smallestKept.mag) smallestKept = { mag, tensor: ti, position: i };
        kept++;
        next = ++j < positions.length ? positions[j] : -1;
      } else if (d !== 0 && (!largestDropped || mag > largestDropped.mag)) {
        largestDropped = { mag, tensor: ti, position: i };
      }
    }
    if (p) {
      const w = readForDigest(base, name).slice();
      applyTensorPatch(w, p, false);
      const digest = tensorDigest(hasher, name, p.shape, w);
      if (digest !== p.targetDigest) throw refuse(`tensor ${JSON.stringify(name)} reaches digest ${digest} applied to the base, its patch names ${p.targetDigest}`, { tensor: name, expected: p.targetDigest, found: digest });
      after.set(name, digest);
      targetValues.set(name, w);
    }
  });
  if (smallestKept && largestDropped && !ranksBefore(smallestKept, largestDropped)) {
    const at = (r: Ranked) => `${JSON.stringify(names[r.tensor])} at ${r.position} (|change| ${r.mag})`;
    throw refuse(`it keeps ${at(smallestKept)} but drops ${at(largestDropped)}, which ranks before it (larger, or as large and earlier by tensor name and position)`, {
      expected: { tensor: names[largestDropped.tensor], position: largestDropped.position, magnitude: largestDropped.mag },
      found: { tensor: names[smallestKept.tensor], position: smallestKept.position, magnitude: smallestKept.mag },
    });
  }
  const reachedFingerprint = combineDigests(hasher, after);
  if (reachedFingerprint !== header.targetFingerprint) throw refuse(`applied to the base it reaches ${reachedFingerprint}, not the target ${header.targetFingerprint} its header names`, { expected: header.targetFingerprint, found: reachedFingerprint });
  return { payload, kept, changed, reachedFingerprint, targetValues };
}
