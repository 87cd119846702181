/**
 * Fingerprints: what identifies a model version.
 *
 * - The **tensor digest** is xxh64 (seed 0) over the tensor's canonical record:
 *   u32le(UTF-8 byte length of name) ‖ name ‖ u32le(rank) ‖ u32le(dim)… ‖ float32 values, little-endian.
 * - The **model fingerprint** is xxh64 (seed 0) over the 8-byte big-endian digests of all float
 *   tensors, in ascending order of their names' UTF-8 bytes.
 *
 * Keeping per-tensor digests lets the applier say which tensor differs, and recompute only the
 * patched tensors' digests after an apply. xxhash detects corruption and mix-ups, not attacks:
 * signatures are for those.
 */
import { hex64, type Hash64Stream, type Hasher } from './hasher.ts';
import { encodeUtf8 } from './utf8.ts';
import { readForDigest, type WeightStore } from './weight-store.ts';
import { LITTLE_ENDIAN_HOST } from './endian.ts';

/** The digest of one tensor, fed its values a range at a time, in order (see {@link tensorDigest}). */
export interface TensorDigestStream {
  /** The XXH64 stream underneath (the record's head is in it already). */
  readonly stream: Hash64Stream;
  /** Hash `values[from, to)` next. */
  update(values: Float32Array, from: number, to: number): void;
  /** The digest (16 hex chars) of everything fed so far. */
  digest(): string;
}

/** A {@link TensorDigestStream} for a tensor named `name` of `shape`. */
export function tensorDigestStream(hasher: Hasher, name: string, shape: readonly number[]): TensorDigestStream {
  const nameBytes = encodeUtf8(name);
  const head = new Uint8Array(8 + nameBytes.length + 4 * shape.length);
  const dv = new DataView(head.buffer);
  dv.setUint32(0, nameBytes.length, true);
  head.set(nameBytes, 4);
  dv.setUint32(4 + nameBytes.length, shape.length, true);
  shape.forEach((d, i) => dv.setUint32(8 + nameBytes.length + 4 * i, d, true));
  const stream = hasher.create64(0n);
  stream.update(head);
  return {
    stream,
    update(values, from, to) {
      if (to <= from) return;
      if (LITTLE_ENDIAN_HOST) {
        stream.update(new Uint8Array(values.buffer, values.byteOffset + 4 * from, 4 * (to - from)));
        return;
      }
      const swapped = new Uint8Array(4 * (to - from));
      const sv = new DataView(swapped.buffer);
      for (let i = from; i < to; i++) sv.setFloat32(4 * (i - from), values[i], true);
      stream.update(swapped);
    },
    digest: () => hex64(stream.digest()),
  };
}

/** The xxh64 digest (16 hex chars) of one tensor's canonical record. */
export function tensorDigest(hasher: Hasher, name: string, shape: readonly number[], values: Float32Array): string {
  const stream = tensorDigestStream(hasher, name, shape);
  // A range at a time: a big-endian host swaps one range, not the tensor.
  for (let at = 0; at < values.length; at += CHUNK_VALUES) stream.update(values, at, Math.min(values.length, at + CHUNK_VALUES));
  return stream.digest();
}

/** Values per update of {@link tensorDigest} (1 MiB). */
const CHUNK_VALUES = 1 << 18;

function compareUtf8(a: string, b: string): number {
  const x = encodeUtf8(a);
  const y = encodeUtf8(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** Combine per-tensor digests (name -> 16 hex chars) into the model fingerprint. */
export function combineDigests(hasher: Hasher, digests: ReadonlyMap<string, string>): string {
  const names = [...digests.keys()].sort(compareUtf8);
  const buf = new Uint8Array(8 * names.length);
  names.forEach((n, i) => {
    const hex = digests.get(n) as string;
    for (let j = 0; j < 8; j++) buf[8 * i + j] = parseInt(hex.slice(2 * j, 2 * j + 2), 16);
  });
  return hex64(hasher.h64(buf, 0n));
}

/**
 * Digest of every tensor in a store, and the model fingerprint. A digest the store vouches for
 * ({@link WeightStore.digest}) is used as is; the others are hashed.
 */
export function fingerprintStore(hasher: Hasher, store: WeightStore): { fingerprint: string; digests: Map<string, string> } {
  const digests = new Map<string, string>();
  for (const t of store.list()) digests.set(t.name, store.digest?.(t.name) ?? tensorDigest(hasher, t.name, t.shape, readForDigest(store, t.name)));
  return { fingerprint: combineDigests(hasher, digests), digests };
}
