/**
 * The model JSON files of the payload vectors: `{ fingerprint, tensors: { name: { shape, digest,
 * values } } }`, values the hex of the little-endian float32 bytes (exact, including -0 and the
 * last bit). Written by generate.ts, read by the tests that apply the vectors.
 */
import { fingerprintStore } from '../../../src/core/fingerprint.ts';
import type { Hasher } from '../../../src/core/hasher.ts';
import { MemoryWeightStore } from '../../../src/core/weight-store.ts';

export interface ModelJson {
  fingerprint: string;
  tensors: Record<string, { shape: number[]; digest: string; values: string }>;
}

export function hexOf(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
export function fromHex(h: string): Uint8Array {
  if (h.length % 2 !== 0 || !/^[0-9a-f]*$/.test(h)) throw new RangeError(`bad hex string of length ${h.length}`);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}
/** float32 values to the hex of their little-endian bytes. */
export function f32Hex(v: Float32Array): string {
  const b = new Uint8Array(v.length * 4);
  const dv = new DataView(b.buffer);
  v.forEach((x, i) => dv.setFloat32(4 * i, x, true));
  return hexOf(b);
}
/** The inverse of {@link f32Hex}. */
export function hexF32(h: string): Float32Array {
  const b = fromHex(h);
  if (b.length % 4 !== 0) throw new RangeError('float32 hex must be a multiple of 8 digits');
  const dv = new DataView(b.buffer);
  return Float32Array.from({ length: b.length / 4 }, (_, i) => dv.getFloat32(4 * i, true));
}

export function modelJson(hasher: Hasher, store: MemoryWeightStore): ModelJson {
  const { fingerprint, digests } = fingerprintStore(hasher, store);
  const tensors: ModelJson['tensors'] = {};
  for (const t of store.list()) tensors[t.name] = { shape: [...t.shape], digest: digests.get(t.name) as string, values: f32Hex(store.values(t.name)) };
  return { fingerprint, tensors };
}

export function storeOf(m: ModelJson): MemoryWeightStore {
  return new MemoryWeightStore(Object.entries(m.tensors).map(([name, t]) => [name, { shape: t.shape, data: hexF32(t.values) }] as [string, { shape: number[]; data: Float32Array }]));
}
