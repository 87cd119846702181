/**
 * One hashing facade over two implementations with identical results: XXH64 in WebAssembly
 * (region-kernel.ts: fast, and it hashes tensor regions the applier patches in its memory) and
 * the pure TypeScript port in `xxhash-pure.ts` (for Hermes and other runtimes without
 * WebAssembly). Both are checked against the published vectors and against xxhash-wasm in the
 * tests.
 */
import { xxh32, Xxh64 } from './xxhash-pure.ts';
import { kernelHasher } from './region-kernel.ts';

export type { Hash64Stream, Hasher } from './hash-types.ts';
import type { Hasher } from './hash-types.ts';

const pureHasher: Hasher = {
  kind: 'pure',
  h32: (input, seed = 0) => xxh32(input, seed),
  create64: (seed = 0n) => new Xxh64(seed),
  h64: (input, seed = 0n) => new Xxh64(seed).update(input).digest(),
};

const cache: { wasm?: Promise<Hasher>; pure?: Promise<Hasher> } = {};

/**
 * The hasher for this runtime: XXH64 in WebAssembly (region-kernel.ts) when WebAssembly exists
 * and `prefer` is not `'pure'`, otherwise the pure TypeScript one. If the module cannot be
 * compiled here (a page whose CSP forbids it), the result is the pure hasher (check `kind`).
 * The promise is cached per kind.
 */
export function getHasher(options: { prefer?: 'wasm' | 'pure' } = {}): Promise<Hasher> {
  if (options.prefer !== 'pure' && typeof WebAssembly === 'object') {
    return (cache.wasm ??= Promise.resolve(kernelHasher() ?? pureHasher));
  }
  return (cache.pure ??= Promise.resolve(pureHasher));
}

const TWO64 = 1n << 64n;

function check64(h: bigint): void {
  if (h < 0n || h >= TWO64) throw new RangeError(`expected an unsigned 64-bit hash, got ${h}`);
}

/** `h` as 16 lowercase hex digits, zero-padded. Throws RangeError outside [0, 2^64). */
export function hex64(h: bigint): string {
  check64(h);
  return h.toString(16).padStart(16, '0');
}

/** `h` as 8 bytes, little-endian. Throws RangeError outside [0, 2^64). */
export function bytes64LE(h: bigint): Uint8Array {
  check64(h);
  const lo = Number(h & 0xffffffffn);
  const hi = Number(h >> 32n);
  const out = new Uint8Array(8);
  for (let i = 0; i < 4; i++) {
    out[i] = lo >>> (8 * i);
    out[i + 4] = hi >>> (8 * i);
  }
  return out;
}

/** The inverse of {@link bytes64LE}: 8 little-endian bytes to an unsigned 64-bit BigInt. */
export function fromBytes64LE(b: Uint8Array): bigint {
  if (b.length !== 8) throw new RangeError(`expected 8 bytes, got ${b.length}`);
  const lo = (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  const hi = (b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24)) >>> 0;
  return (BigInt(hi) << 32n) | BigInt(lo);
}
