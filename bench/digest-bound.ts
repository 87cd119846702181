/**
 * What the whole in-memory apply cannot go below, measured for bench/apply.ts: the parts of
 * `applyPayload` that stay when the patch kernel costs nothing, and whether another standard
 * digest would be faster in WebAssembly than the payload format's XXH64.
 *
 * - **copies**: the applier's region kernel works on WebAssembly memory, and the weights are the
 *   caller's arrays, so every 8192-weight region of a patched tensor is copied into the module
 *   and back (`Uint8Array.set`, as region-kernel.ts does).
 * - **XXH64 in the module**: the region kernel's own stripe loop (export "x" of
 *   src/core/region-kernel.wat, the committed bytes), over a 32 KiB region already in the
 *   module's memory: one digest pass of the apply, without the copy. The apply makes two (base
 *   and target).
 * - **XXH3's accumulate loop**: the inner loop of XXH3 (xxHash's faster 64-bit digest) written
 *   in WebAssembly SIMD as the reference SSE2 code does it (one 32x32->64 multiply per 8 bytes,
 *   `i64x2.extmul_low_i32x4_u`), over the same region. Only the loop: no scrambling every 1 KiB,
 *   no finishing, and a fixed 128-byte secret, so it is a lower bound on what XXH3 would cost.
 *   It answers one question: would changing the format's digest make the apply faster? It is
 *   assembled here with wabt (a dev dependency); nothing in the applier uses it.
 */
import wabt from 'wabt';
import { fromHex } from '../src/core/hex.ts';
import { REGION_KERNEL_WASM } from '../src/core/region-kernel-wasm.ts';

const REGION_BYTES = 32 * 1024;
const REGION_AT = 0x1000;
const ACC = 0x80;

const XXH3_ACCUMULATE_WAT = `(module (memory (export "m") 4)
  ;; acc[i] += swap(data)[i] + lo32(data ^ secret)[i] * hi32(data ^ secret)[i], four 128-bit
  ;; accumulators (XXH3's eight 64-bit lanes), one 64-byte stripe per step; the secret advances
  ;; 8 bytes a stripe and wraps within 128 bytes.
  (func (export "a") (param $p i32) (param $end i32) (param $sec i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $s i32)
    (local $dv v128) (local $dk v128)
    (local.set $s (local.get $sec))
    (loop $stripe
${[0, 1, 2, 3].map((k) => `      (local.set $dv (v128.load offset=${k * 16} (local.get $p)))
      (local.set $dk (v128.xor (local.get $dv) (v128.load offset=${k * 16} (local.get $s))))
      (local.set $a${k} (i64x2.add
        (i64x2.add (local.get $a${k}) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $dv) (local.get $dv)))
        (i64x2.extmul_low_i32x4_u
          (i8x16.shuffle 0 1 2 3 8 9 10 11 0 1 2 3 8 9 10 11 (local.get $dk) (local.get $dk))
          (i8x16.shuffle 4 5 6 7 12 13 14 15 4 5 6 7 12 13 14 15 (local.get $dk) (local.get $dk)))))`).join('\n')}
      (local.set $s (i32.add (local.get $sec) (i32.and (i32.add (i32.sub (local.get $s) (local.get $sec)) (i32.const 8)) (i32.const 0x7f))))
      (br_if $stripe (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 64))) (local.get $end))))
    (v128.store (i32.const 0) (i64x2.add (i64x2.add (local.get $a0) (local.get $a1)) (i64x2.add (local.get $a2) (local.get $a3))))))`;

interface Loops {
  /** One XXH64 pass over `bytes` with the region kernel's stripe loop, data already in the module. */
  xxh64(bytes: number): void;
  /** XXH3's accumulate loop over `bytes`, data already in its module; undefined without SIMD. */
  xxh3?: (bytes: number) => void;
  /** Copy every 32 KiB region of `arrays` into a module's memory and back. */
  copies(arrays: readonly Float32Array[]): void;
}

/** The loops, on modules of their own (the applier's kernel instance is left alone). */
export async function digestLoops(): Promise<Loops> {
  const region = new WebAssembly.Instance(new WebAssembly.Module(fromHex(REGION_KERNEL_WASM))).exports as unknown as {
    m: WebAssembly.Memory;
    i(st: number, seed: bigint): void;
    x(p: number, end: number, st: number): void;
  };
  const regionBytes = new Uint8Array(region.m.buffer);
  for (let i = 0; i < REGION_BYTES; i++) regionBytes[REGION_AT + i] = (i * 2654435761) >>> 24;
  region.i(ACC, 0n);
  const loops: Loops = {
    xxh64(bytes) {
      for (let done = 0; done < bytes; done += REGION_BYTES) region.x(REGION_AT, REGION_AT + REGION_BYTES, ACC);
    },
    copies(arrays) {
      for (const w of arrays) {
        const bytes = new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
        for (let at = 0; at < bytes.length; at += REGION_BYTES) {
          const piece = bytes.subarray(at, at + REGION_BYTES);
          regionBytes.set(piece, REGION_AT);
          piece.set(regionBytes.subarray(REGION_AT, REGION_AT + piece.length));
        }
      }
    },
  };
  try {
    const w = await wabt();
    const mod = w.parseWat('xxh3-accumulate.wat', XXH3_ACCUMULATE_WAT, { simd: true });
    let binary: Uint8Array;
    try {
      mod.validate();
      binary = new Uint8Array(mod.toBinary({ log: false, write_debug_names: false }).buffer);
    } finally {
      mod.destroy();
    }
    const xxh3 = new WebAssembly.Instance(new WebAssembly.Module(binary as Uint8Array<ArrayBuffer>)).exports as unknown as { m: WebAssembly.Memory; a(p: number, end: number, sec: number): void };
    const mem = new Uint8Array(xxh3.m.buffer);
    for (let i = 0; i < REGION_BYTES + 0x1000; i++) mem[i] = (i * 2654435761) >>> 24;
    loops.xxh3 = (bytes) => {
      for (let done = 0; done < bytes; done += REGION_BYTES) xxh3.a(REGION_AT, REGION_AT + REGION_BYTES, 0x200);
    };
  } catch {
    /* no WebAssembly SIMD here: the row is left out */
  }
  return loops;
}
