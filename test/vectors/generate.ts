/**
 * Regenerates test/vectors/xxhash.json and test/vectors/bucket.json from xxhash-wasm (the
 * reference implementation here), never from the pure TypeScript code under test:
 *
 *   node --import tsx test/vectors/generate.ts
 *
 * The bucket formulas below are the pinned definitions of docs/FORMAT-hashing.md, written out
 * independently of src/core/bucket.ts.
 */
import { writeFileSync } from 'node:fs';
import xxhash from 'xxhash-wasm';

const api = await xxhash();
const dir = new URL('./', import.meta.url);
const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const hex32 = (h: number): string => h.toString(16).padStart(8, '0');
const hex64 = (h: bigint): string => h.toString(16).padStart(16, '0');

/** Deterministic input bytes (an LCG's high byte), different for every length. */
function input(len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (len * 2654435761) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const seeds32 = [0, 1, 2 ** 31, 2 ** 32 - 1];
const seeds64 = [0n, 1n, 2n ** 31n, 0x0123456789abcdefn, 0xfedcba9876543210n];
const lengths = [...Array.from({ length: 41 }, (_, i) => i), 63, 64, 65, 100, 1000];

const xxhashVectors = {
  description:
    'XXH32 and XXH64 (xxHash spec) computed by xxhash-wasm; regenerate with `node --import tsx test/vectors/generate.ts`. Hashes are lowercase hex of the unsigned value; seeds are decimal strings.',
  cases: lengths.map((len) => {
    const bytes = input(len);
    return {
      input: hex(bytes),
      xxh32: Object.fromEntries(seeds32.map((s) => [String(s), hex32(api.h32Raw(bytes, s))])),
      xxh64: Object.fromEntries(seeds64.map((s) => [s.toString(), hex64(api.h64Raw(bytes, s))])),
    };
  }),
};

const utf8 = new TextEncoder();
const le32 = (p: number): Uint8Array => new Uint8Array([p & 255, (p >>> 8) & 255, (p >>> 16) & 255, p >>> 24]);
const tensorSeed = (name: string, globalSeed: number): number => api.h32Raw(utf8.encode(name), globalSeed >>> 0);

const names = ['dense/kernel', 'conv2d_1/bias', '', 'héllo/重み', 'emoji 🙂 layer'];
const globalSeeds = [0, 42, 2 ** 32 - 1];
const bucketConfigs: { seed: number; buckets: number; signed: boolean }[] = [
  { seed: 0, buckets: 64, signed: true },
  { seed: tensorSeed('dense/kernel', 42), buckets: 1000, signed: true },
  { seed: tensorSeed('héllo/重み', 7), buckets: 7, signed: false },
  { seed: 2 ** 32 - 1, buckets: 2 ** 31, signed: true },
];
const largePositions = [1000, 65535, 65536, 2 ** 20, 123456789, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1];

const bucketVectors = {
  description:
    'tensorSeed = xxh32(UTF-8(name), globalSeed); hash = xxh32(u32le(position), seed); bucket = (hash >>> 1) % buckets; sign = hash & 1 ? -1 : 1 (always 1 when signed is false). Computed with xxhash-wasm by test/vectors/generate.ts.',
  tensorSeeds: names.flatMap((name) =>
    globalSeeds.map((globalSeed) => ({ name, globalSeed, seed: tensorSeed(name, globalSeed) })),
  ),
  positions: bucketConfigs.map(({ seed, buckets, signed }) => ({
    seed,
    buckets,
    signed,
    columns: ['position', 'hash', 'bucket', 'sign'],
    rows: [...Array.from({ length: 32 }, (_, i) => i), ...largePositions].map((position) => {
      const hash = api.h32Raw(le32(position), seed);
      return [position, hash, (hash >>> 1) % buckets, signed && hash & 1 ? -1 : 1];
    }),
  })),
};

/** Indented JSON with arrays of numbers or strings kept on one line. */
const format = (v: unknown): string =>
  JSON.stringify(v, null, 1).replace(/\[\s+((?:-?\d+|"[^"]*")(?:,\s+(?:-?\d+|"[^"]*"))*)\s+\]/g, (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`) + '\n';
writeFileSync(new URL('xxhash.json', dir), format(xxhashVectors));
writeFileSync(new URL('bucket.json', dir), format(bucketVectors));
console.log(`wrote ${xxhashVectors.cases.length} xxhash cases and ${bucketVectors.positions.length} bucket tables`);
