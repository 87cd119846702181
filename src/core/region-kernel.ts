/**
 * The glue of the region kernels (the source is `region-kernel.wat`, its bytes
 * `region-kernel-wasm.ts`): XXH64 in WebAssembly, as the {@link Hasher} of runtimes that have it,
 * and the applier's fast path for sparse (gap-coded) and dense patches: a tensor is patched a
 * region of 8192 weights at a time, each region copied into the module once, hashed there as the
 * base, patched there (positions and values decoded on the way), hashed as the target and copied
 * back. Everything else (bitmaps, storage grids, hashed and low-rank patches, runtimes without
 * WebAssembly) runs in patch-math.ts, with any {@link Hasher}.
 *
 * The module (under 4 KB, no imports, no SIMD) is compiled synchronously on first use, which
 * browsers allow on the main thread for modules that small. Its memory is 256 KiB and never
 * grows: a patch's bytes go through it in windows. Where WebAssembly SIMD is there, a second
 * module on the same memory (`region-kernel-simd.wat`, about 1 KB) applies dense patches four
 * entries at a time; elsewhere the plain kernel does it all, to the same bits.
 */
import { REGION_KERNEL_WASM } from './region-kernel-wasm.ts';
import { REGION_SIMD_KERNEL_WASM } from './region-kernel-simd-wasm.ts';
import { fromHex } from './hex.ts';
import { LITTLE_ENDIAN_HOST } from './endian.ts';
import type { Hash64Stream, Hasher } from './hash-types.ts';
import { xxh32 } from './xxhash-pure.ts';
import type { ValueCodec } from './values.ts';

/** Memory layout (see region-kernel.wat). */
const STATE = 0x40;
const ACC = 0x80;
const TAIL = 0xc0;
const REGION_AT = 0x1000;
/** Weights per region. */
export const KERNEL_REGION = 8192;
const LOG_POSITIONS = 0x9000;
const LOG_BITS = 0x11000;
const GAPS_AT = 0x19000;
const GAPS_ROOM = 0x14000;
const VALUES_AT = 0x2d000;
const VALUES_ROOM = 0x10000;

interface Exports {
  m: WebAssembly.Memory;
  i(st: number, seed: bigint): void;
  x(p: number, end: number, st: number): void;
  f(st: number, p: number, n: number, total: bigint, seed: bigint): bigint;
  a(base: number, lim: number, codec: number, scale: number): void;
  d(base: number, lim: number, codec: number, scale: number): void;
}

interface Kernel {
  e: Exports;
  /** The SIMD path of {@link Exports.d} (region-kernel-simd.wat), where the runtime has SIMD. */
  D?: (base: number, lim: number, codec: number, scale: number) => void;
  u8: Uint8Array;
  i32: Int32Array;
  u32: Uint32Array;
  f32: Float32Array;
}

/** undefined: not made yet; null: no WebAssembly here, or it refused the module. */
let kernel: Kernel | null | undefined;

function instance(): Kernel | null {
  if (kernel === undefined) {
    try {
      const e = new WebAssembly.Instance(new WebAssembly.Module(fromHex(REGION_KERNEL_WASM))).exports as unknown as Exports;
      kernel = { e, u8: new Uint8Array(e.m.buffer), i32: new Int32Array(e.m.buffer), u32: new Uint32Array(e.m.buffer), f32: new Float32Array(e.m.buffer) };
    } catch {
      kernel = null;
    }
    if (kernel) {
      try {
        kernel.D = (new WebAssembly.Instance(new WebAssembly.Module(fromHex(REGION_SIMD_KERNEL_WASM)), { r: { m: kernel.e.m } }).exports as { D: Kernel['D'] }).D;
      } catch {
        /* no WebAssembly SIMD here: the plain kernel applies dense patches too */
      }
    }
  }
  return kernel;
}

/**
 * Whether dense patches take the SIMD path where the runtime has one (the default), or the plain
 * kernel (for tests and benchmarks that compare the two). Returns whether the SIMD path exists.
 */
export function useRegionSimd(on: boolean): boolean {
  const k = instance();
  if (!k) return false;
  simdOff = !on;
  return k.D !== undefined;
}
let simdOff = false;

/**
 * A streaming XXH64 whose stripes run in the module. Its state (accumulators, the bytes short of
 * a stripe, the length) lives here between calls, so any number of streams can be open.
 */
class KernelStream implements Hash64Stream {
  /** The accumulators, as 32-bit words (copied to and from the module by hand: no views made). */
  private readonly acc = new Int32Array(8);
  private readonly tail = new Uint8Array(32);
  private tailLength = 0;
  private total = 0;
  constructor(private readonly k: Kernel, private readonly seed: bigint) {
    k.e.i(ACC, seed);
    for (let j = 0; j < 8; j++) this.acc[j] = k.i32[(ACC >> 2) + j];
  }
  update(input: Uint8Array): this {
    const { u8 } = this.k;
    for (let at = 0; at < input.length;) {
      const n = Math.min(input.length - at, KERNEL_REGION * 4);
      u8.set(input.subarray(at, at + n), REGION_AT);
      this.updateRegion(n);
      at += n;
    }
    return this;
  }
  /** Hash the `n` bytes at the start of the module's region next. */
  updateRegion(n: number): void {
    const { e, u8, i32 } = this.k;
    const { acc, tail } = this;
    // The bytes short of a stripe go just before the region, so the stripes run on in place.
    const from = REGION_AT - this.tailLength;
    for (let j = 0; j < this.tailLength; j++) u8[from + j] = tail[j];
    const end = from + ((this.tailLength + n) & ~31);
    for (let j = 0; j < 8; j++) i32[(ACC >> 2) + j] = acc[j];
    e.x(from, end, ACC);
    for (let j = 0; j < 8; j++) acc[j] = i32[(ACC >> 2) + j];
    this.tailLength = REGION_AT + n - end;
    for (let j = 0; j < this.tailLength; j++) tail[j] = u8[end + j];
    this.total += n;
  }
  digest(): bigint {
    const { e, u8, i32 } = this.k;
    for (let j = 0; j < 8; j++) i32[(ACC >> 2) + j] = this.acc[j];
    u8.set(this.tail.subarray(0, this.tailLength), TAIL);
    return BigInt.asUintN(64, e.f(ACC, TAIL, this.tailLength, BigInt(this.total), this.seed));
  }
}

let hasherMade: Hasher | null | undefined;

/**
 * XXH64 on the region kernel (XXH32 is the pure one: nothing hashes long inputs with it), or
 * null where WebAssembly is missing or refuses the module.
 */
export function kernelHasher(): Hasher | null {
  if (hasherMade !== undefined) return hasherMade;
  const k = instance();
  if (!k) return (hasherMade = null);
  const create64 = (seed = 0n): KernelStream => new KernelStream(k, BigInt.asUintN(64, seed));
  hasherMade = {
    kind: 'wasm',
    h32: (input, seed = 0) => xxh32(input, seed),
    create64,
    h64: (input, seed = 0n) => create64(seed).update(input).digest(),
  };
  return hasherMade;
}

/** The patch {@link patchRegions} applies: its bytes as the payload holds them. */
export interface RegionPatch {
  /** Entries: a sparse patch's count, a dense patch's size. */
  count: number;
  /** Gap-coded positions (varints), or none for a dense patch (every position in turn). */
  gaps?: Uint8Array;
  values: Uint8Array;
  codec: ValueCodec;
  scale?: number;
}

/** Why {@link patchRegions} stopped early. */
export type RegionFault =
  /** A position or value that the payload check would have refused: its bytes changed since. */
  | { kind: 'changed' }
  /** A weight the patch made NaN or infinite (float32 overflow), at this tensor position. */
  | { kind: 'overflow'; position: number };

const CODECS: Partial<Record<ValueCodec, number>> = { f16: 0, f32: 1, i8: 2 };

/** Whether {@link patchRegions} can feed `stream` and decode `codec` (on this host). */
export function kernelTakes(stream: Hash64Stream, codec: ValueCodec): stream is KernelStream {
  return LITTLE_ENDIAN_HOST && stream instanceof KernelStream && CODECS[codec] !== undefined;
}

/**
 * A window of the module's memory on a patch's bytes: [at, end) hold `src` bytes not read yet;
 * `slide` moves them to the window's start and appends more, so at least `need` are there (or
 * every byte left).
 */
class Window {
  taken = 0;
  end: number;
  constructor(private readonly u8: Uint8Array, private readonly start: number, private readonly room: number, private readonly src: Uint8Array) {
    this.end = start;
  }
  slide(at: number, need: number): number {
    const have = this.end - at;
    if (have >= need || this.taken >= this.src.length) return at;
    this.u8.copyWithin(this.start, at, this.end);
    const add = Math.min(this.room - have, this.src.length - this.taken);
    this.u8.set(this.src.subarray(this.taken, this.taken + add), this.start + have);
    this.taken += add;
    this.end = this.start + have + add;
    return this.start;
  }
}

/**
 * Apply `patch` to the tensor `w` a region at a time, feeding each region to `base` (when
 * given) before it is patched and to `target` after: the whole tensor goes through both. Logs
 * (position, old bits) wherever subtracting the delta again would not give the old bits back,
 * as patch-math.ts does. Returns the entries applied and, when it stopped early, why (the
 * entries applied are written and logged, so they can be undone).
 *
 * Needs {@link kernelTakes} of both streams.
 */
export function patchRegions(
  w: Float32Array,
  patch: RegionPatch,
  log: { pushMany(positions: Uint32Array, bits: Uint32Array, count: number): void },
  base: KernelStream | undefined,
  target: KernelStream,
): { applied: number; fault?: RegionFault } {
  const { e, D, u8, u32, f32 } = instance() as Kernel;
  const state = new DataView(e.m.buffer, STATE, 0x40);
  const bytes = new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
  const n = w.length;
  const codec = CODECS[patch.codec] as number;
  const bpv = codec === 0 ? 2 : codec === 1 ? 4 : 1;
  const gaps = patch.gaps && new Window(u8, GAPS_AT, GAPS_ROOM, patch.gaps);
  const values = new Window(u8, VALUES_AT, VALUES_ROOM, patch.values);
  // The state of "a" (region-kernel.wat): nothing read, nothing applied.
  state.setInt32(0x00, GAPS_AT, true);
  state.setInt32(0x04, GAPS_AT, true);
  state.setInt32(0x08, VALUES_AT, true);
  state.setInt32(0x0c, patch.count, true);
  state.setBigInt64(0x10, -1n, true);
  state.setBigInt64(0x18, -1n, true);
  state.setUint32(0x20, n, true);
  const left = () => state.getInt32(0x0c, true);
  for (let a = 0; a < n; a += KERNEL_REGION) {
    const b = Math.min(n, a + KERNEL_REGION);
    u8.set(bytes.subarray(4 * a, 4 * b), REGION_AT);
    base?.updateRegion(4 * (b - a));
    // The next entry's position once decoded (-1: not yet), read as two halves: no BigInt. A
    // dense patch has an entry at every position.
    const hi = state.getInt32(0x1c, true);
    if (left() > 0 && (!gaps || hi < 0 || hi * 0x100000000 + state.getUint32(0x18, true) < b)) {
      // A region holds at most KERNEL_REGION entries (and the kernel reads the gap after them).
      if (gaps) {
        state.setInt32(0x00, gaps.slide(state.getInt32(0x00, true), 5 * (KERNEL_REGION + 1)), true);
        state.setInt32(0x04, gaps.end, true);
      }
      state.setInt32(0x08, values.slide(state.getInt32(0x08, true), bpv * KERNEL_REGION), true);
      if (gaps) e.a(a, b, codec, patch.scale ?? 0);
      else {
        if (D && !simdOff) {
          // Four at a time while four are left and none faults; "d" does the rest, one by one.
          D(a, b, codec, patch.scale ?? 0);
          log.pushMany(u32.subarray(LOG_POSITIONS >> 2), u32.subarray(LOG_BITS >> 2), state.getInt32(0x24, true));
        }
        e.d(a, b, codec, patch.scale ?? 0);
      }
      log.pushMany(u32.subarray(LOG_POSITIONS >> 2), u32.subarray(LOG_BITS >> 2), state.getInt32(0x24, true));
      w.set(f32.subarray(REGION_AT >> 2, (REGION_AT >> 2) + (b - a)), a);
      const err = state.getInt32(0x28, true);
      if (err !== 0) {
        const fault: RegionFault = err === 3 ? { kind: 'overflow', position: Number(state.getBigInt64(0x10, true)) } : { kind: 'changed' };
        return { applied: patch.count - left(), fault };
      }
    }
    target.updateRegion(4 * (b - a));
  }
  // Every entry applied and every gap byte used; else the bytes changed since the check.
  const complete = left() === 0 && (!gaps || (gaps.taken === patch.gaps!.length && state.getInt32(0x00, true) === gaps.end));
  return complete ? { applied: patch.count } : { applied: patch.count - left(), fault: { kind: 'changed' } };
}

export type { KernelStream };
