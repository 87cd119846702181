/**
 * What the whole in-memory apply cannot go below, measured for bench/apply.ts: the parts of
 * `applyPayload` that stay when the patch kernel costs nothing, and whether XXH3 (xxHash's
 * faster 64-bit digest) would be faster in WebAssembly than the payload format's XXH64.
 *
 * - **copies**: the applier's region kernel works on WebAssembly memory, and the weights are the
 *   caller's arrays, so every 8192-weight region of a patched tensor is copied into the module
 *   and back (`Uint8Array.set`, as region-kernel.ts does).
 * - **XXH64 in the module**: the region kernel's own stripe loop (export "x" of
 *   src/core/region-kernel.wat, the committed bytes), over a 32 KiB region already in the
 *   module's memory: one digest pass of the apply, without the copy. The apply makes two (base
 *   and target).
 * - **XXH3's long-input loop**: XXH3's accumulate step (per 8-byte lane i of a 64-byte stripe,
 *   acc[i ^ 1] += data[i] and acc[i] += lo32(data[i] ^ secret[i]) * hi32(data[i] ^ secret[i]))
 *   and its scramble after every 1 KiB block, in WebAssembly SIMD: the low and high halves of two
 *   vectors at a time are gathered by two shuffles and multiplied with `extmul_low`/`extmul_high`,
 *   and the swapped data term, being a plain sum, is added once per block. Checked against a
 *   BigInt reference before it is timed. Its secret is not XXH3's, and there is no set-up or
 *   finishing (a few dozen operations per digest): it measures the cost per byte of XXH3 on
 *   long inputs, which is what the apply's digests are.
 *
 * The XXH3 module is assembled from its text by wabt in a child process. wabt grows its own
 * WebAssembly memory as it loads, which detaches an ArrayBuffer; from then on V8 runs every
 * typed-array loop of the process 1.8-2.7x slower (its array-buffer-detach protector is
 * invalidated), the benchmark's floors included. Nothing else in bench/apply.ts detaches one
 * before the in-memory rows.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fromHex } from '../src/core/hex.ts';
import { REGION_KERNEL_WASM } from '../src/core/region-kernel-wasm.ts';

const REGION_BYTES = 32 * 1024;
const REGION_AT = 0x1000;
const ACC = 0x80;
/** XXH3 module layout: accumulators at 0x100 (64 bytes), the 192-byte secret at 0x200. */
const XXH3_ACC = 0x100;
const XXH3_SECRET = 0x200;

const SWAP = '8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7';
const LOW_HALVES = '0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27';
const HIGH_HALVES = '4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31';

/** x(p, end): whole 1 KiB blocks [p, end) into the eight accumulators at XXH3_ACC. */
function xxh3LongLoopWat(): string {
  const stripe: string[] = [];
  for (let k = 0; k < 4; k++) {
    stripe.push(`(local.set $d${k} (v128.load offset=${k * 16} (local.get $p)))`);
    stripe.push(`(local.set $k${k} (v128.xor (local.get $d${k}) (v128.load offset=${XXH3_SECRET + k * 16} (local.get $s))))`);
    stripe.push(`(local.set $t${k} (i64x2.add (local.get $t${k}) (local.get $d${k})))`);
  }
  for (const [x, y] of [[0, 1], [2, 3]]) {
    stripe.push(`(local.set $lo (i8x16.shuffle ${LOW_HALVES} (local.get $k${x}) (local.get $k${y})))`);
    stripe.push(`(local.set $hi (i8x16.shuffle ${HIGH_HALVES} (local.get $k${x}) (local.get $k${y})))`);
    stripe.push(`(local.set $a${x} (i64x2.add (local.get $a${x}) (i64x2.extmul_low_i32x4_u (local.get $lo) (local.get $hi))))`);
    stripe.push(`(local.set $a${y} (i64x2.add (local.get $a${y}) (i64x2.extmul_high_i32x4_u (local.get $lo) (local.get $hi))))`);
  }
  const block: string[] = [];
  for (let k = 0; k < 4; k++) {
    // the data term: acc[i ^ 1] += data[i], summed over the block, then swapped once
    block.push(`(local.set $a${k} (i64x2.add (local.get $a${k}) (i8x16.shuffle ${SWAP} (local.get $t${k}) (local.get $t${k}))))`);
    block.push(`(local.set $t${k} (v128.const i64x2 0 0))`);
    // scramble: acc = ((acc ^ (acc >> 47)) ^ secret[128 + 8i]) * PRIME32_1
    block.push(`(local.set $a${k} (i64x2.mul (v128.xor (v128.xor (local.get $a${k}) (i64x2.shr_u (local.get $a${k}) (i32.const 47))) (v128.load offset=${XXH3_SECRET + 128 + k * 16} (i32.const 0))) (v128.const i64x2 0x9E3779B1 0x9E3779B1)))`);
  }
  const locals = ['a', 't', 'd', 'k'].flatMap((v) => [0, 1, 2, 3].map((k) => `(local $${v}${k} v128)`)).join(' ');
  return `(module (memory (export "m") 4)
  (func (export "x") (param $p i32) (param $end i32)
    ${locals} (local $lo v128) (local $hi v128) (local $s i32)
    ${[0, 1, 2, 3].map((k) => `(local.set $a${k} (v128.load offset=${XXH3_ACC + 16 * k} (i32.const 0)))`).join('\n    ')}
    (loop $block
      (local.set $s (i32.const 0))
      (loop $stripe
        ${stripe.join('\n        ')}
        (local.set $p (i32.add (local.get $p) (i32.const 64)))
        (br_if $stripe (i32.lt_u (local.tee $s (i32.add (local.get $s) (i32.const 8))) (i32.const 128))))
      ${block.join('\n      ')}
      (br_if $block (i32.lt_u (local.get $p) (local.get $end))))
    ${[0, 1, 2, 3].map((k) => `(v128.store offset=${XXH3_ACC + 16 * k} (i32.const 0) (local.get $a${k}))`).join('\n    ')}))`;
}

/** The accumulators after XXH3's long loop over `blocks` 1 KiB blocks at `at`, in BigInt. */
function xxh3LongLoopReference(mem: Uint8Array, at: number, blocks: number, start: bigint[]): bigint[] {
  const view = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  const u64 = (o: number) => view.getBigUint64(o, true);
  const mask = (1n << 64n) - 1n;
  const acc = start.slice();
  for (let b = 0; b < blocks; b++) {
    for (let s = 0; s < 16; s++) {
      for (let i = 0; i < 8; i++) {
        const data = u64(at + 1024 * b + 64 * s + 8 * i);
        const key = data ^ u64(XXH3_SECRET + 8 * s + 8 * i);
        acc[i ^ 1] = (acc[i ^ 1] + data) & mask;
        acc[i] = (acc[i] + (key & 0xffffffffn) * (key >> 32n)) & mask;
      }
    }
    for (let i = 0; i < 8; i++) {
      const a = acc[i] ^ (acc[i] >> 47n) ^ u64(XXH3_SECRET + 128 + 8 * i);
      acc[i] = (a * 0x9e3779b1n) & mask;
    }
  }
  return acc;
}

/** A module's bytes from its text, assembled by wabt in a child process (see the module doc). */
function assembleInChild(wat: string): Uint8Array<ArrayBuffer> {
  const wabtPath = createRequire(import.meta.url).resolve('wabt');
  const script = `require(${JSON.stringify(wabtPath)})().then((w) => {
    const m = w.parseWat('xxh3.wat', require('node:fs').readFileSync(0, 'utf8'), { simd: true });
    m.validate();
    process.stdout.write(Buffer.from(m.toBinary({ log: false, write_debug_names: false }).buffer).toString('hex'));
  });`;
  return fromHex(execFileSync(process.execPath, ['-e', script], { input: wat, encoding: 'utf8' }));
}

interface Loops {
  /** One XXH64 pass over `bytes` with the region kernel's stripe loop, data already in the module. */
  xxh64(bytes: number): void;
  /** XXH3's long-input loop over `bytes`, data already in its module; undefined without SIMD. */
  xxh3?: (bytes: number) => void;
  /** Copy every 32 KiB region of `arrays` into a module's memory and back. */
  copies(arrays: readonly Float32Array[]): void;
}

/** The loops, on modules of their own (the applier's kernel instance is left alone). */
export function digestLoops(): Loops {
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
  let binary: Uint8Array<ArrayBuffer>;
  try {
    binary = assembleInChild(xxh3LongLoopWat());
  } catch (e) {
    console.error(`bench:apply: the XXH3 row is left out (assembling its module failed: ${(e as Error).message.split('\n')[0]})`);
    return loops;
  }
  let xxh3: { m: WebAssembly.Memory; x(p: number, end: number): void };
  try {
    xxh3 = new WebAssembly.Instance(new WebAssembly.Module(binary)).exports as unknown as typeof xxh3;
  } catch {
    return loops; // no WebAssembly SIMD here: the row is left out
  }
  const mem = new Uint8Array(xxh3.m.buffer);
  for (let i = 0; i < REGION_AT + REGION_BYTES; i++) mem[i] = ((i * 2654435761) >>> 24) ^ (i * 7);
  const view = new DataView(xxh3.m.buffer);
  const start = [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n].map((x) => x * 0x123456789abcdefn);
  start.forEach((a, i) => view.setBigUint64(XXH3_ACC + 8 * i, a, true));
  xxh3.x(REGION_AT, REGION_AT + REGION_BYTES);
  const want = xxh3LongLoopReference(mem, REGION_AT, REGION_BYTES / 1024, start);
  const got = want.map((_, i) => view.getBigUint64(XXH3_ACC + 8 * i, true));
  if (got.some((g, i) => g !== want[i])) throw new Error('bench:apply: the XXH3 loop disagrees with its BigInt reference');
  loops.xxh3 = (bytes) => {
    for (let done = 0; done < bytes; done += REGION_BYTES) xxh3.x(REGION_AT, REGION_AT + REGION_BYTES);
  };
  return loops;
}
