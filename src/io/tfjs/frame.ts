/**
 * The frame of a TF.js model: everything the runtime reads except the float weights' values
 * (the topology or graph, the format, the signature, metadata, every other top-level key of
 * model.json, and the non-float entries of the weights manifest with their bytes, such as a
 * graph's int32 constants), as one read-only tensor `tfjs:frame` in the model fingerprint, like
 * `onnx:frame` for ONNX (docs/FORMAT.md, section 14). Two folders with the same fingerprint then
 * differ at most in their float weights' values (and in how they are stored: shard names, groups,
 * quantization); a payload made for another graph is refused even when every weight agrees.
 *
 * Pure code (no node, no tfjs): a device computes the same frame.
 */
import { frameValues } from '../../core/file-frame.ts';
import { encodeUtf8 } from '../../core/utf8.ts';
import { Xxh64 } from '../../core/xxhash-pure.ts';
import { canonicalJson } from '../../core/canonical-json.ts';
import type { TfjsModelJson, TfjsWeightEntry } from './manifest.ts';

/** Name of the frame tensor. A manifest entry of this name is refused when a folder is opened. */
export const TFJS_FRAME = 'tfjs:frame';

/** Code-unit order (what `Array.prototype.sort` uses for strings), made explicit. */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The non-float entries of a manifest (int32, bool, string, complex64), sorted by name. */
export function frameEntries(modelJson: Pick<TfjsModelJson, 'weightsManifest'>): TfjsWeightEntry[] {
  return modelJson.weightsManifest.flatMap((g) => g.weights).filter((w) => w.dtype !== 'float32').sort((a, b) => byCodeUnits(a.name, b.name));
}

/**
 * The 8 values of `tfjs:frame`: the bytes, most significant first, of XXH64 (seed 0) over
 * UTF-8(canonicalJson(F)) followed by the stored bytes of each non-float entry in
 * `frameEntries` order, where F is model.json with `weightsManifest` replaced by the list of
 * those entries (each as the manifest gives it). `storedBytes(entry)` gives an entry's bytes.
 */
export function tfjsFrameValues(modelJson: TfjsModelJson, storedBytes: (entry: TfjsWeightEntry) => Uint8Array): Float32Array {
  const entries = frameEntries(modelJson);
  const doc = frameDocument(modelJson);
  const h = new Xxh64(0n);
  h.update(encodeUtf8(canonicalJson(doc)));
  for (const e of entries) h.update(storedBytes(e));
  return frameValues(h.digest());
}

/**
 * The JSON document the frame hashes: model.json with `weightsManifest` replaced by its non-float
 * entries (`frameEntries`). Stores hand it out so a refusal can say where two frames differ.
 */
export function frameDocument(modelJson: TfjsModelJson): Record<string, unknown> {
  return { ...(modelJson as unknown as Record<string, unknown>), weightsManifest: frameEntries(modelJson) };
}
