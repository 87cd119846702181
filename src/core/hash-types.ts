/**
 * The hashing interfaces shared by the hasher facade (hasher.ts) and the WebAssembly kernel that
 * implements them (region-kernel.ts), apart from both so neither imports the other.
 */
/** A streaming XXH64 state. */
export interface Hash64Stream {
  /** Append `input`; returns the same stream. */
  update(input: Uint8Array): Hash64Stream;
  /** XXH64 of everything appended so far (unsigned 64-bit). */
  digest(): bigint;
}

/** XXH32 and XXH64 (as specified by the xxHash project), bit for bit equal across kinds. */
export interface Hasher {
  /** Which implementation runs. */
  readonly kind: 'wasm' | 'pure';
  /** XXH32 of `input`, unsigned 32-bit; `seed` is taken modulo 2^32. */
  h32(input: Uint8Array, seed?: number): number;
  /** A streaming XXH64 state; `seed` is taken modulo 2^64. */
  create64(seed?: bigint): Hash64Stream;
  /** XXH64 of `input`, unsigned 64-bit; `seed` is taken modulo 2^64. */
  h64(input: Uint8Array, seed?: bigint): bigint;
}
