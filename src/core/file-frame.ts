/**
 * What model stores share about a file's structure: the frame (the file's bytes without its
 * weights' values, hashed into one read-only tensor of 8 values, so the fingerprint covers the
 * graph; TF.js's frame hashes other bytes into the same 8 values) and unique tensor names (a name met again gets ` #2`, ` #3`, ...).
 * Pure, no I/O: part of the device stores.
 */
import { Xxh64 } from './xxhash-pure.ts';

/**
 * The frame of `bytes`: xxh64 (seed 0) over every byte outside `ranges` (each a flat list of
 * [start, end) pairs in ascending order, the lists in ascending order of their first start;
 * overlaps allowed), as 8 float32 values 0-255, the most significant byte first.
 */
export function frameDigest(bytes: Uint8Array, ranges: readonly (readonly number[])[]): Float32Array {
  const h = new Xxh64(0n);
  let at = 0;
  for (const r of ranges) {
    for (let i = 0; i < r.length; i += 2) {
      if (r[i] > at) h.update(bytes.subarray(at, r[i]));
      at = Math.max(at, r[i + 1]);
    }
  }
  h.update(bytes.subarray(at));
  return frameValues(h.digest());
}

/** A frame tensor's 8 values from its 64-bit digest: the digest's bytes as float32 values 0-255, the most significant first. */
export function frameValues(digest: bigint): Float32Array {
  let d = digest;
  const out = new Float32Array(8);
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(d & 0xffn);
    d >>= 8n;
  }
  return out;
}

/**
 * A namer that hands out each name once: a name met again becomes `<name> #2`, then ` #3`, ...
 * (skipping any taken, `reserved` among them), in linear time in the number of names: a file
 * repeating one name 10^5 times never probes ` #2` .. ` #k` for each.
 */
export function uniqueNamer(reserved: readonly string[] = []): (name: string) => string {
  const names = new Set<string>(reserved);
  const nextSuffix = new Map<string, number>();
  return (name: string): string => {
    if (!names.has(name)) {
      names.add(name);
      return name;
    }
    let k = nextSuffix.get(name) ?? 2;
    while (names.has(`${name} #${k}`)) k++;
    nextSuffix.set(name, k + 1);
    const out = `${name} #${k}`;
    names.add(out);
    return out;
  };
}
