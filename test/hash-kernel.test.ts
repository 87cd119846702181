/**
 * The WebAssembly SIMD hashed kernel (src/core/hash-kernel.wat): its committed bytes are the
 * .wat assembled, it runs here, and it writes the same bits and logs the same undo exceptions as
 * the pure-JS loops (which Hermes runs) on tensors of every awkward kind: odd lengths, lengths
 * across chunk and log-block boundaries, bucket counts 1 to 2^20 (powers of two or not), signed
 * or not, NaN / signed-zero / subnormal / huge weights, deltas that dwarf the weights. Undo
 * through either kernel gives the original bits back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { applyTensorPatch, undoTensorPatch, useHashKernel, type UndoRecord } from '../src/core/patch-math.ts';
import { bucketMagic, hashAddWasm } from '../src/core/hash-kernel.ts';
import type { HashPatch } from '../src/core/format.ts';
import { assembleHashKernel, hashKernelSource, TS_FILE } from '../scripts/build-hash-kernel.ts';
import { rng } from './helpers/models.ts';
import { bucketOf, positionHash, signOf } from '../src/core/bucket.ts';

const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** Equal arrays of bits (fast on long arrays; names the first difference). */
function sameBits(got: Uint32Array | Float32Array, want: Uint32Array | Float32Array, what: string): void {
  const g = got instanceof Float32Array ? bitsOf(got) : got;
  const e = want instanceof Float32Array ? bitsOf(want) : want;
  assert.equal(g.length, e.length, `${what}: length`);
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== e[i]) assert.fail(`${what}: at ${i}, 0x${g[i].toString(16)} instead of 0x${e[i].toString(16)}`);
  }
}

/** An undo record's exception blocks: same sizes, positions and old bits. */
function sameUndo(got: UndoRecord, want: UndoRecord, what: string): number {
  assert.ok(got.kind === 'inverse' && want.kind === 'inverse');
  assert.deepEqual(got.exceptions.map((b) => b.positions.length), want.exceptions.map((b) => b.positions.length), `${what}: log blocks`);
  got.exceptions.forEach((b, k) => {
    sameBits(b.positions, want.exceptions[k].positions, `${what}: logged positions, block ${k}`);
    sameBits(b.bits, want.exceptions[k].bits, `${what}: logged bits, block ${k}`);
  });
  return want.exceptions.reduce((n, b) => n + b.positions.length, 0);
}

test('the committed kernel bytes are hash-kernel.wat assembled (npm run build:hash-kernel)', async () => {
  const bytes = await assembleHashKernel();
  assert.equal(readFileSync(TS_FILE, 'utf8'), hashKernelSource(bytes), 'src/core/hash-kernel-wasm.ts is stale: run npm run build:hash-kernel');
  assert.ok(bytes.length < 4096, `${bytes.length} bytes: browsers compile modules under 4 KB synchronously`);
  const mod = new WebAssembly.Module(bytes);
  // Its memory comes from the glue, made as large as the buckets need (never grown).
  assert.deepEqual(WebAssembly.Module.imports(mod), [{ module: 'e', name: 'm', kind: 'memory' }]);
  assert.deepEqual(WebAssembly.Module.exports(mod).map((e) => e.name).sort(), ['k']);
});

test('large bucket arrays never grow a WebAssembly memory (a grow detaches a buffer, which slows every typed-array loop of the app)', () => {
  const grow = WebAssembly.Memory.prototype.grow;
  let grows = 0;
  WebAssembly.Memory.prototype.grow = function (this: WebAssembly.Memory, delta: number) {
    grows++;
    return grow.call(this, delta);
  };
  try {
    const r = rng(7);
    // 16 Ki, 100 Ki and 1 Mi buckets: past the 4 pages the module starts with, past the 1 MiB
    // kept between calls, then a small one again.
    for (const nb of [16384, 100_003, 1 << 20, 4096]) {
      const w0 = weights(40_000, r);
      const patch: HashPatch = { ...common, shape: [w0.length], seed: 1234, signed: true, buckets: buckets(nb, r, 0.01) };
      const wasm = run('wasm', w0, patch);
      const js = run('js', w0, patch);
      sameBits(wasm.w, js.w, `weights, ${nb} buckets`);
      sameBits(wasm.undone, w0, `undone, ${nb} buckets`);
    }
  } finally {
    WebAssembly.Memory.prototype.grow = grow;
  }
  assert.equal(grows, 0);
});

test('the kernel runs where WebAssembly exists', () => {
  const w = new Float32Array(5);
  assert.equal(hashAddWasm(w, Float32Array.of(1), 0, false, false, null), true);
  assert.deepEqual(Array.from(w), [1, 1, 1, 1, 1]);
  assert.equal(hashAddWasm(w, new Float32Array((1 << 24) + 1), 0, false, false, null), false, 'too many buckets: left to JS');
});

test('the bucket multiplier divides exactly for every bucket count up to 2^30 (extreme dividends)', () => {
  const r = rng(41);
  const counts = [2, 3, 5, 7, 17, 4096, 4097, 100003, 65521, 2 ** 30, 2 ** 30 - 1, 2 ** 29 + 1, 2 ** 24 - 3];
  for (let k = 1; k <= 30; k++) counts.push(2 ** k, 2 ** k + 1, 2 ** k - 1);
  for (let k = 0; k < 400; k++) counts.push(2 + Math.floor(r() * (2 ** 30 - 1)), 2 + Math.floor(r() * 5000));
  const top = 2 ** 31 - 1;
  for (const nb of counts) {
    if (nb < 2 || nb > 2 ** 30) continue;
    const [m, s] = bucketMagic(nb);
    assert.ok(Number.isInteger(m) && m > 0 && m < 2 ** 32 && s >= 0 && s < 32, `nb ${nb}: m ${m} s ${s}`);
    const last = Math.floor(top / nb);
    const xs = [0, 1, nb - 1, nb, nb + 1, top, top - 1, last * nb, last * nb - 1, (last - 1) * nb - 1];
    for (let j = 0; j < 20; j++) xs.push(Math.floor(r() * 2 ** 31), Math.floor(r() * last) * nb - 1);
    for (const x of xs) {
      if (x < 0 || x > top) continue;
      // What the kernel computes: the high word of the unsigned 64-bit product, shifted.
      const q = Number((BigInt(x) * BigInt(m)) >> 32n) >>> s;
      assert.equal(q, Math.floor(x / nb), `nb ${nb} x ${x}`);
    }
  }
});

/** Weights from a mix of the awkward and the ordinary. */
function weights(n: number, r: () => number): Float32Array {
  const special = [0, 0x80000000, 0x7fc00000, 0x7fc00001, 0xffc12345, 0x7f800001, 0x7f800000, 0xff800000, 1, 0x80000001, 0x007fffff, 0x00800000, 0x3f800000, 0x7f7fffff, 0xff7fffff, 0x33800000];
  const w = new Float32Array(n);
  const b = bitsOf(w);
  for (let i = 0; i < n; i++) {
    const pick = r();
    if (pick < 0.15) b[i] = special[Math.floor(r() * special.length)];
    else if (pick < 0.25) b[i] = Math.floor(r() * 2 ** 32);
    else w[i] = (r() - 0.5) * 0.2;
  }
  return w;
}

/** Bucket values: ordinary small deltas, with zeros of both signs, subnormals and huge ones. */
function buckets(nb: number, r: () => number, scale: number): Float32Array {
  const b = new Float32Array(nb);
  for (let i = 0; i < nb; i++) {
    const pick = r();
    if (pick < 0.03) b[i] = r() < 0.5 ? 0 : -0;
    else if (pick < 0.05) b[i] = (r() - 0.5) * 1e-42;
    else if (pick < 0.07) b[i] = (r() - 0.5) * 3e38;
    else b[i] = (r() - 0.5) * scale;
  }
  return b;
}

const common = { baseDigest: '0000000000000000', targetDigest: '0000000000000000', codec: 'f32' as const, kind: 'hash' as const, name: 't' };

function run(kind: 'wasm' | 'js', w0: Float32Array, patch: HashPatch): { w: Float32Array; undo: UndoRecord; plain: Float32Array; undone: Float32Array } {
  const was = useHashKernel(kind);
  try {
    const w = w0.slice();
    const undo = applyTensorPatch(w, patch, true) as UndoRecord;
    const plain = w0.slice();
    applyTensorPatch(plain, patch, false);
    const undone = w.slice();
    undoTensorPatch(undone, undo);
    return { w, undo, plain, undone };
  } finally {
    useHashKernel(was);
  }
}

test('the wasm kernel writes the same bits and logs the same exceptions as the JS kernel', () => {
  const r = rng(7);
  const lengths = [1, 2, 3, 4, 5, 7, 63, 4097, 16383, 16384, 16385, 40001];
  const counts = [1, 2, 3, 17, 4096, 100003, (1 << 20) + 7];
  let cases = 0;
  let logged = 0;
  for (const nb of counts) {
    const values = [buckets(nb, r, 0.002), buckets(nb, r, 1)];
    for (const n of lengths) {
      if (nb > 4096 && n < 4000) continue;
      for (const signed of [false, true]) {
        for (const scale of [0, 1]) {
          const w0 = weights(n, r);
          const seed = Math.floor(r() * 2 ** 32);
          const patch: HashPatch = { ...common, shape: [n], seed, signed, buckets: values[scale] };
          const js = run('js', w0, patch);
          const wasm = run('wasm', w0, patch);
          const what = `n ${n} nb ${nb} signed ${signed} deltas ${scale ? "large" : "small"}`;
          sameBits(wasm.w, js.w, `weights, ${what}`);
          sameBits(wasm.plain, js.w, `weights without undo log, ${what}`);
          sameBits(js.plain, js.w, `JS weights without undo log, ${what}`);
          logged += sameUndo(wasm.undo, js.undo, what);
          sameBits(wasm.undone, w0, `undo through wasm, ${what}`);
          sameBits(js.undone, w0, `undo through JS, ${what}`);
          cases++;
        }
      }
    }
  }
  assert.ok(cases > 100 && logged > 10000, `${cases} cases, ${logged} exceptions`);
});

test('a tensor whose every addition rounds logs every position, across chunks and log blocks', () => {
  const n = 40003;
  const w0 = Float32Array.from({ length: n }, (_, i) => 1 + i * 1e-6);
  const patch: HashPatch = { ...common, shape: [n], seed: 99, signed: true, buckets: Float32Array.of(1e30, -3e29, 7e31) };
  const js = run('js', w0, patch);
  const wasm = run('wasm', w0, patch);
  assert.equal(sameUndo(wasm.undo, js.undo, 'all rounded'), n);
  assert.ok(wasm.undo.kind === 'inverse' && wasm.undo.exceptions.length > 1, 'more than one log block');
  sameBits(wasm.w, js.w, 'weights');
  sameBits(wasm.undone, w0, 'undo through wasm');
});

test('bucket counts above 2^30, up to 2^32 - 1: the JS loops pick bucket (h >>> 1) mod nb, logged, plain and undone', () => {
  // No one sends 2^30 bucket values, but the format allows them: a stand-in for the buckets
  // records which bucket each position reads (and gives it a delta that says which).
  const counts = [2 ** 30 + 1, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 3, 3_000_000_019, 2 ** 32 - 2, 2 ** 32 - 1];
  const n = 5000;
  for (const nb of counts) {
    for (const signed of [false, true]) {
      const seed = (nb * 7) >>> 0;
      const read: number[] = [];
      const fake = new Proxy({ length: nb } as unknown as Float32Array, {
        get: (t, k) => (typeof k === 'string' && /^\d+$/.test(k) ? (read.push(Number(k)), 2 ** -10) : Reflect.get(t, k)),
      });
      const patch: HashPatch = { ...common, shape: [n], seed, signed, buckets: fake };
      const was = useHashKernel('js');
      try {
        const w = new Float32Array(n).fill(1);
        const undo = applyTensorPatch(w, patch, true) as UndoRecord;
        for (let i = 0; i < n; i++) {
          const h = positionHash(i, seed);
          assert.equal(read[i], bucketOf(h, nb), `nb ${nb}, position ${i}: bucket`);
          assert.equal(w[i], 1 + (signed ? signOf(h) : 1) * 2 ** -10, `nb ${nb}, position ${i}: value`);
        }
        read.length = 0;
        const plain = new Float32Array(n).fill(1);
        applyTensorPatch(plain, patch, false);
        sameBits(plain, w, `nb ${nb}: without undo log`);
        assert.deepEqual(read.slice(0, 50), Array.from({ length: 50 }, (_, i) => bucketOf(positionHash(i, seed), nb)));
        undoTensorPatch(w, undo);
        sameBits(w, new Float32Array(n).fill(1), `nb ${nb}: undone`);
      } finally {
        useHashKernel(was);
      }
    }
  }
});
