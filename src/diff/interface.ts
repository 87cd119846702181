/**
 * The model interface both sides of a diff must share: the same tensor names, shapes and dtypes,
 * and the same read-only parts (a model's frame, its integer tensors). A payload changes weight
 * values only; when the target adds, removes, reshapes or retypes a tensor, or its graph changed,
 * no payload reaches it, and a device patched anyway would run neither version. Every diff path
 * (exact, top-k, the post-hoc baselines, ONNX, the trainers' post-hoc competitors) goes through
 * {@link checkSameInterface} before it builds anything.
 *
 * Pure code (no node, no tfjs).
 */
import { ModelMismatchError } from '../core/errors.ts';
import { isPatchable, readForDigest, type TensorEntry, type WeightStore } from '../core/weight-store.ts';
import { firstJsonDifference, type JsonDifference } from './json-difference.ts';

/** One tensor as the runtime sees it: name, shape, dtype; `patchable` false for read-only parts. */
export interface InterfaceTensor {
  name: string;
  shape: readonly number[];
  /** The dtype the runtime sees (ONNX: the tensor's dtype; TF.js: the manifest dtype, `float32` for every float tensor whatever its storage). */
  dtype: string;
  patchable: boolean;
  /** For a read-only tensor, why a payload may not patch it, when the store says. */
  readOnly?: string;
}

/** What differs between two models' interfaces (names sorted). */
export interface InterfaceDifference {
  /** Tensors only the target has. */
  added: string[];
  /** Tensors only the base has. */
  removed: string[];
  /** Same name, another shape: `name [a, b] -> [b, a]`. */
  reshaped: { name: string; base: readonly number[]; target: readonly number[] }[];
  /** Same name, another dtype. */
  retyped: { name: string; base: string; target: string }[];
  /** Read-only parts (a frame, an integer tensor) whose values differ. */
  readOnlyChanged: string[];
  /** For each read-only tensor in `readOnlyChanged` (frames aside): its dtype and why it is read-only. */
  readOnlyWhy: Map<string, string>;
  /** Weights (patchable tensors of the same name, shape and dtype) whose values differ, bit for bit. */
  weightsChanged: number;
  /** Weights compared. */
  weights: number;
  /** When a TF.js frame differs and both stores hand out its document: where model.json first differs. */
  frameDifference?: JsonDifference;
  /**
   * When the names, shapes or dtypes differ: the weights compared by content whatever their names
   * (see {@link WeightsByContent}), so a re-exported graph that renamed its weights is told apart
   * from an architecture change.
   */
  weightsByContent?: WeightsByContent;
}

/**
 * Weights (patchable tensors) of the two models paired by content: the same dtype, shape and
 * values bit for bit, whatever their names (a tensor keeps its own name's partner when it has one).
 */
export interface WeightsByContent {
  /** Weights of the base, and of the target. */
  baseWeights: number;
  targetWeights: number;
  /** Target weights that are a base weight, one for one. */
  matched: number;
  /** Of `matched`, those whose base partner has another name. */
  renamed: number;
  /** Every weight of each side is one of the other's (`matched` equals both counts): the weights did not change. */
  same: boolean;
}

/** Stores that hand out the JSON document their frame hashes (TF.js folders, live models given their model.json). */
interface HasFrameDocument {
  frameDocument(): Record<string, unknown> | undefined;
}

function frameDocumentOf(store: WeightStore): Record<string, unknown> | undefined {
  const f = (store as Partial<HasFrameDocument>).frameDocument;
  return typeof f === 'function' ? f.call(store) : undefined;
}

/** Stores that list read-only entries besides their weights (a TF.js folder's int32 tensors). */
interface ListsReadOnly {
  passthroughEntries(): { name: string; shape: readonly number[]; dtype: string }[];
}

function dtypeOf(e: TensorEntry): string {
  const d = (e as { dtype?: unknown }).dtype;
  return typeof d === 'string' ? d : 'float32';
}

/** Every tensor of a store's interface, weights and read-only parts, by name. */
export function interfaceOf(store: WeightStore): Map<string, InterfaceTensor> {
  const out = new Map<string, InterfaceTensor>();
  for (const e of store.list()) {
    const why = (e as { readOnly?: unknown }).readOnly;
    out.set(e.name, { name: e.name, shape: e.shape, dtype: dtypeOf(e), patchable: isPatchable(e), ...(typeof why === 'string' ? { readOnly: why } : {}) });
  }
  const ro = store as Partial<ListsReadOnly>;
  if (typeof ro.passthroughEntries === 'function') {
    for (const e of ro.passthroughEntries()) if (!out.has(e.name)) out.set(e.name, { name: e.name, shape: e.shape, dtype: e.dtype, patchable: false });
  }
  return out;
}

/** Whether two shapes are the same, axis for axis. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Whether two tensors hold the same float32 bits (so -0 differs from 0 and NaNs compare by payload). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * Compare two models' interfaces (and, when the names, shapes and dtypes agree, which read-only
 * parts and how many weights differ). Reads both stores, writes neither.
 */
export function compareInterfaces(base: WeightStore, target: WeightStore): InterfaceDifference {
  const a = interfaceOf(base);
  const b = interfaceOf(target);
  const diff: InterfaceDifference = { added: [], removed: [], reshaped: [], retyped: [], readOnlyChanged: [], readOnlyWhy: new Map(), weightsChanged: 0, weights: 0 };
  for (const [name, e] of a) {
    const o = b.get(name);
    if (!o) diff.removed.push(name);
    else if (!sameShape(e.shape, o.shape)) diff.reshaped.push({ name, base: e.shape, target: o.shape });
    else if (e.dtype !== o.dtype || e.patchable !== o.patchable) diff.retyped.push({ name, base: describeType(e), target: describeType(o) });
  }
  for (const name of b.keys()) if (!a.has(name)) diff.added.push(name);
  diff.added.sort();
  diff.removed.sort();
  const listed = new Set(base.list().map((e) => e.name));
  const targetListed = new Set(target.list().map((e) => e.name));
  for (const [name, e] of a) {
    const o = b.get(name);
    if (!o || !sameShape(e.shape, o.shape) || e.dtype !== o.dtype || e.patchable !== o.patchable) continue;
    if (e.patchable) {
      diff.weights++;
      if (!sameBits(readForDigest(base, name), readForDigest(target, name))) diff.weightsChanged++;
    } else if (listed.has(name) && targetListed.has(name) && !sameBits(readForDigest(base, name), readForDigest(target, name))) {
      // A read-only part the fingerprint covers (a frame, an ONNX integer tensor). A TF.js
      // folder's int32 entries are inside its frame, which is listed.
      diff.readOnlyChanged.push(name);
      diff.readOnlyWhy.set(name, `the ${e.dtype} tensor ${JSON.stringify(name)} differs between the two models, and is read-only${e.readOnly ? ` (${e.readOnly})` : ''}`);
    }
  }
  diff.readOnlyChanged.sort();
  // Names that do not line up may be a re-export that renamed the same weights: compare them by content.
  if (diff.added.length || diff.removed.length || diff.reshaped.length || diff.retyped.length) diff.weightsByContent = pairWeightsByContent(base, target, a, b);
  if (diff.readOnlyChanged.includes('tfjs:frame')) {
    const [x, y] = [frameDocumentOf(base), frameDocumentOf(target)];
    const where = x && y ? firstJsonDifference(x, y) : undefined;
    if (where) diff.frameDifference = where;
  }
  return diff;
}

/** A 64-bit hash of a tensor's bits, as two 32-bit multiplicative hashes (a bucket key; pairs are then compared bit for bit). */
function bitsKey(values: Float32Array): string {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  let h1 = 0x9e3779b9 ^ words.length;
  let h2 = 0x85ebca6b;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    h1 = Math.imul(h1 ^ w, 0x01000193);
    h2 = Math.imul(h2 + w, 0x5bd1e995) ^ (h2 >>> 15);
  }
  return `${(h1 >>> 0).toString(16)}:${(h2 >>> 0).toString(16)}`;
}

/**
 * Pair the two models' weights by content (see {@link WeightsByContent}). Each weight is read once
 * to hash it, and each candidate pair once more to compare it bit for bit.
 */
export function pairWeightsByContent(base: WeightStore, target: WeightStore, a = interfaceOf(base), b = interfaceOf(target)): WeightsByContent {
  const key = (store: WeightStore, e: InterfaceTensor) => `${e.dtype}|${e.shape.join('x')}|${bitsKey(readForDigest(store, e.name))}`;
  // Base weights by content key; a target weight takes the base weight of its own name first.
  const pool = new Map<string, string[]>();
  const baseWeights = [...a.values()].filter((e) => e.patchable);
  for (const e of baseWeights) {
    const k = key(base, e);
    const names = pool.get(k);
    if (names) names.push(e.name);
    else pool.set(k, [e.name]);
  }
  const targetWeights = [...b.values()].filter((e) => e.patchable);
  let matched = 0;
  let renamed = 0;
  for (const e of targetWeights) {
    const names = pool.get(key(target, e));
    if (!names) continue;
    const values = readForDigest(target, e.name);
    const order = names.includes(e.name) ? [e.name, ...names.filter((n) => n !== e.name)] : names;
    const partner = order.find((n) => sameBits(readForDigest(base, n), values));
    if (partner === undefined) continue;
    names.splice(names.indexOf(partner), 1);
    matched++;
    if (partner !== e.name) renamed++;
  }
  return { baseWeights: baseWeights.length, targetWeights: targetWeights.length, matched, renamed, same: matched === baseWeights.length && matched === targetWeights.length };
}

function describeType(e: InterfaceTensor): string {
  return e.patchable ? e.dtype : `${e.dtype} (read-only)`;
}

function listed<T>(items: readonly T[], show: (x: T) => string, max = 4): string {
  const shown = items.slice(0, max).map(show).join(', ');
  return items.length > max ? `${shown}, ... (${items.length - max} more)` : shown;
}

/** The sentence {@link checkSameInterface} throws, or undefined when the interfaces agree. */
export function describeDifference(d: InterfaceDifference): string | undefined {
  const parts: string[] = [];
  if (d.added.length) parts.push(`${d.added.length} tensor(s) added (${listed(d.added, (n) => JSON.stringify(n))})`);
  if (d.removed.length) parts.push(`${d.removed.length} removed (${listed(d.removed, (n) => JSON.stringify(n))})`);
  if (d.reshaped.length) parts.push(`${d.reshaped.length} reshaped (${listed(d.reshaped, (r) => `${JSON.stringify(r.name)} [${r.base.join(', ')}] -> [${r.target.join(', ')}]`)})`);
  if (d.retyped.length) parts.push(`${d.retyped.length} retyped (${listed(d.retyped, (r) => `${JSON.stringify(r.name)} ${r.base} -> ${r.target}`)})`);
  const byContent = d.weightsByContent;
  if (parts.length && byContent?.same) {
    // A re-exported graph: every weight is still there, bit for bit, some under other names.
    const kept = byContent.renamed ? `, ${byContent.renamed} of them under other names` : '';
    return `the graph changed; the weights did not (all ${byContent.targetWeights} weight tensors of the target are the base's, bit for bit in dtype, shape and values${kept}): ship the new model file. What differs is the graph: ${parts.join(', ')}, counting the renamed weights${d.readOnlyChanged.some(isFrameName) ? ', and the model\'s frame' : ''}`;
  }
  if (parts.length) {
    const partly = byContent && byContent.matched > 0 ? ` (${byContent.matched} of the target's ${byContent.targetWeights} weight tensors are the base's bit for bit${byContent.renamed ? `, ${byContent.renamed} of them under other names` : ''}; the rest changed or are new)` : '';
    return `the target's tensors are not the base's: ${parts.join(', ')}${partly}. A payload changes weight values only, so no payload reaches this target: ship the new model file`;
  }
  if (!d.readOnlyChanged.length) return undefined;
  const frames = d.readOnlyChanged.filter(isFrameName);
  const others = d.readOnlyChanged.filter((n) => !isFrameName(n));
  const what = [
    frames.length ? `the model's frame (graph or topology, attributes, metadata${frames.some((n) => n.startsWith('tfjs:')) ? ', integer tensors' : ''})` : '',
    others.length ? `${others.length} read-only tensor(s) (${listed(others, (n) => d.readOnlyWhy.get(n) ?? JSON.stringify(n), 2)})` : '',
  ].filter(Boolean).join(' and ');
  const weights = d.weightsChanged === 0
    ? `the graph changed; the weights did not (all ${d.weights} weight tensors are bit-identical): ship the new model file`
    : `${d.weightsChanged} of ${d.weights} weight tensors changed as well; a payload changes weight values only: ship the new model file`;
  const first = d.frameDifference ? ` (first difference in model.json: ${d.frameDifference.path}: ${d.frameDifference.base} -> ${d.frameDifference.target})` : '';
  return `the two models differ outside their weights, in ${what}${first}: ${weights}`;
}

/** True for the name of a model's frame tensor (`onnx:frame`, `tfjs:frame`). */
export function isFrameName(name: string): boolean {
  return name === 'onnx:frame' || name === 'tfjs:frame';
}

/**
 * Refuse a pair of models no payload can join: tensors added, removed, reshaped or retyped, or
 * read-only parts (the frame: graph, topology, integer tensors) that differ.
 * @throws ModelMismatchError whose `details` hold the {@link InterfaceDifference} (counts and names)
 */
export function checkSameInterface(base: WeightStore, target: WeightStore): InterfaceDifference {
  const d = compareInterfaces(base, target);
  const reason = describeDifference(d);
  if (reason) {
    throw new ModelMismatchError(reason, {
      added: d.added, removed: d.removed, reshaped: d.reshaped.map((r) => r.name), retyped: d.retyped.map((r) => r.name), readOnlyChanged: d.readOnlyChanged, ...(d.frameDifference ? { frameDifference: d.frameDifference } : {}),
      weightsChanged: d.weightsChanged, weights: d.weights, graphOnly: d.weightsByContent ? d.weightsByContent.same : d.weightsChanged === 0,
      ...(d.weightsByContent ? { weightsByContent: d.weightsByContent } : {}),
      ...(d.added[0] ?? d.removed[0] ?? d.reshaped[0]?.name ?? d.retyped[0]?.name ? { tensor: d.added[0] ?? d.removed[0] ?? d.reshaped[0]?.name ?? d.retyped[0]?.name } : {}),
    });
  }
  return d;
}
