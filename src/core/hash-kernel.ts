/**
 * The WebAssembly SIMD path of the hashed-patch kernel (the source is `hash-kernel.wat`, its bytes
 * `hash-kernel-wasm.ts`). Bit for bit the same as the pure-JS loops in patch-math.ts, which stay
 * the path wherever WebAssembly is missing (React Native's Hermes) or refuses the module (a page
 * whose CSP forbids compiling WebAssembly): {@link hashAddWasm} then returns false.
 *
 * The module (under 600 bytes) is compiled synchronously on first use, which browsers allow for
 * modules under 4 KB even on the main thread. Each tensor runs in chunks of 16384 weights copied
 * into the module's memory and back, so the memory holds 192 KiB plus the bucket array, never a
 * copy of the model. The module imports its memory: the glue makes one as large as the bucket
 * array needs and instantiates the module on it, keeping the instance while the memory is at
 * most 1 MiB and letting a larger one go after the call. It never grows a memory: growing
 * detaches the old buffer, and once any ArrayBuffer has been detached V8 runs every typed-array
 * loop of the process (the app's own included) 1.8-2.7x more slowly for the rest of its life.
 */
import { HASH_KERNEL_WASM } from './hash-kernel-wasm.ts';
import { fromHex } from './hex.ts';

/** Weights per call of the kernel, and the layout of its memory (see hash-kernel.wat). */
const CHUNK = 16384;
const EXC_POSITIONS = 0x10000;
const EXC_BITS = 0x20000;
const BUCKETS = 0x30000;
/** Largest bucket array the kernel takes (64 MiB in its memory); larger ones stay in JS. */
export const MAX_WASM_BUCKETS = 1 << 24;
/** A memory larger than this is let go after the call, so it is not held for the process's life. */
const KEEP_BYTES = 1 << 20;

/** Where exceptions go: each position and its old bits, in increasing position. */
export interface ExceptionSink {
  /** The first `count` entries of `positions` and `bits`. */
  pushMany(positions: Uint32Array, bits: Uint32Array, count: number): void;
}

type KernelFn = (n: number, p: number, base: number, sm: number, neg: number, nb: number, m: number, s: number, log: number) => number;

/** An instance and the memory it was made on. */
interface Kernel {
  m: WebAssembly.Memory;
  k: KernelFn;
}

let compiled: WebAssembly.Module | null | undefined;
/** The instance kept between calls (its memory at most {@link KEEP_BYTES}). */
let kept: Kernel | undefined;

/** An instance on a new memory of at least `bytes` (and 4 pages), or null without WebAssembly. */
function instantiate(bytes: number): Kernel | null {
  try {
    if (compiled === undefined) compiled = new WebAssembly.Module(fromHex(HASH_KERNEL_WASM));
    if (compiled === null) return null;
    const m = new WebAssembly.Memory({ initial: Math.max(4, Math.ceil(bytes / 0x10000)) });
    const k = (new WebAssembly.Instance(compiled, { e: { m } }).exports as { k: KernelFn }).k;
    return { m, k };
  } catch {
    compiled ??= null;
    return null;
  }
}

/**
 * The multiplier and shift that divide by `nb` (2 <= nb <= 2^30): for every
 * x < 2^31, floor(x / nb) = floor(x * m / 2^32) >>> s. With l = ceil(log2 nb),
 * m = ceil(2^(31+l) / nb) = (2^(31+l) + e) / nb with 0 <= e < nb, so x * m / 2^(31+l) exceeds
 * x / nb by x * e / (nb * 2^(31+l)) < 1 / nb, too little to reach the next integer; and m < 2^32.
 */
export function bucketMagic(nb: number): [m: number, s: number] {
  const l = 32 - Math.clz32(nb - 1);
  return [Number(((1n << BigInt(31 + l)) + BigInt(nb - 1)) / BigInt(nb)), l - 1];
}

/**
 * Add `sign(i) * b[bucket(i)]` to `w[i]` for i in [from, to) (subtract when `negate`), where `base` is
 * `(seed + P5 + 4) | 0`; logs into `log` the positions and old bits where subtracting again
 * would not give the old value back bit for bit. Returns false, having written nothing, when
 * the kernel cannot run here (no WebAssembly, or more than {@link MAX_WASM_BUCKETS} buckets).
 */
export function hashAddWasm(w: Float32Array, b: Float32Array, base: number, signed: boolean, negate: boolean, log: ExceptionSink | null, from = 0, to = w.length): boolean {
  const nb = b.length;
  if (nb < 1 || nb > MAX_WASM_BUCKETS) return false;
  // One bucket runs as two equal ones (the kernel divides by at least 2).
  const nk = nb > 1 ? nb : 2;
  const need = BUCKETS + nk * 4;
  const kernel = kept && kept.m.buffer.byteLength >= need ? kept : instantiate(need);
  if (!kernel) return false;
  if (kernel !== kept && kernel.m.buffer.byteLength <= KEEP_BYTES) kept = kernel;
  const buf = kernel.m.buffer;
  const bk = new Float32Array(buf, BUCKETS, nk);
  bk.set(b);
  if (nb < 2) bk[1] = b[0];
  const chunk = new Float32Array(buf, 0, CHUNK);
  const positions = new Uint32Array(buf, EXC_POSITIONS, CHUNK);
  const bits = new Uint32Array(buf, EXC_BITS, CHUNK);
  const [m, s] = bucketMagic(nk);
  const k = kernel.k;
  const sm = signed ? 1 : 0;
  const neg = negate ? 0x80000000 : 0;
  for (let at = from; at < to; at += CHUNK) {
    const len = Math.min(CHUNK, to - at);
    chunk.set(w.subarray(at, at + len));
    const logged = k(len, at, base, sm, neg, nk, m, s, log ? 1 : 0);
    if (logged) (log as ExceptionSink).pushMany(positions, bits, logged);
    w.set(chunk.subarray(0, len), at);
  }
  return true;
}
