/**
 * Max pooling and its gradient on the native backend (src/engine/kernels/native/maxpool.c), alone and with
 * Relu's gradient in the same pass (the kernel compiled steps run in place of MaxPoolGrad then
 * Relu's gradient: src/engine/compiled/epilogue.ts): bit for bit the scalar twins' values
 * (max-pool-grad.ts's maxPoolGradJs, activation-grad.ts's reluGradJs, maxPoolJs below) on many geometries, at 1, 2
 * and 3 threads; the registered kernels against the wasm backend's; bad arguments refused with a
 * typed error before anything is written. Skipped, saying why, where the addon is not built.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { ModelFormatError } from '../src/core/errors.ts';
import { nativeAddonStatus, setNativeThreads } from '../src/engine/kernels/native/index.ts';
import { loadNativeAddon } from '../src/engine/kernels/native/loader.ts';
import { MAX_POOL_RELU_GRAD } from '../src/engine/kernels/native/kernels.ts';
import { maxPoolGradJs, type PoolGeometry } from '../src/engine/kernels/max-pool-grad.ts';
import { reluGradJs } from '../src/engine/kernels/activation-grad.ts';
import { randomValues } from './helpers/kernel-tests.ts';

const status = nativeAddonStatus();
const skip = status.available ? false : `the native addon is not built (${status.reason}): apt-get install libopenblas-dev, then npm run build:native`;

/** A geometry as tfjs computes it for `input` [B, H, W, C], a window, strides and padding. */
function geometryOf(input: [number, number, number, number], k: [number, number], s: [number, number], pad: 'same' | 'valid'): PoolGeometry {
  const info = tf.backend_util.computePool2DInfo(input, k, s, 1, pad);
  return {
    B: info.batchSize, H: info.inHeight, W: info.inWidth, C: info.inChannels, OH: info.outHeight, OW: info.outWidth,
    KH: info.filterHeight, KW: info.filterWidth, sh: info.strideHeight, sw: info.strideWidth, pt: info.padInfo.top, pl: info.padInfo.left,
  };
}

/** Scalar twin of maxpool.c's forward pass: each window's first value above the running maximum from -Infinity. */
function maxPoolJs(xs: Float32Array, out: Float32Array, g: PoolGeometry): void {
  const { B, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl } = g;
  let o = 0;
  for (let b = 0; b < B; b++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++, o += C) {
        for (let c = 0; c < C; c++) {
          let best = -Infinity;
          for (let ih = Math.max(0, oh * sh - pt); ih < Math.min(H, oh * sh - pt + KH); ih++) {
            for (let iw = Math.max(0, ow * sw - pl); iw < Math.min(W, ow * sw - pl + KW); iw++) {
              const v = xs[((b * H + ih) * W + iw) * C + c];
              if (v > best) best = v;
            }
          }
          out[o + c] = best;
        }
      }
    }
  }
}

const asArray = (g: PoolGeometry) => Int32Array.of(g.B, g.H, g.W, g.C, g.OH, g.OW, g.KH, g.KW, g.sh, g.sw, g.pt, g.pl);
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** Values with ties (a coarse grid), NaNs and -Infinity among them when asked. */
function values(n: number, seed: number, specials: boolean): Float32Array {
  const v = Float32Array.from(randomValues(n, seed), (x) => Math.round(x * 4) / 4);
  if (specials) for (let i = 0; i < n; i += 13) v[i] = i % 26 ? Number.NaN : -Infinity;
  return v;
}

const cases: [string, [number, number, number, number], [number, number], [number, number], 'same' | 'valid'][] = [
  ['the keyword model\'s pools (2 along time, 1 wide)', [64, 25, 1, 128], [2, 1], [2, 1], 'valid'],
  ['2x2 stride 2, odd sizes (a last row and column no window reads)', [3, 7, 9, 5], [2, 2], [2, 2], 'valid'],
  ['3x3 stride 1 same: overlapping windows, padding never wins', [2, 6, 5, 7], [3, 3], [1, 1], 'same'],
  ['3x3 stride 2 same', [5, 11, 10, 3], [3, 3], [2, 2], 'same'],
  ['one row', [4, 1, 17, 9], [1, 3], [1, 2], 'same'],
  ['one item, more threads than items', [1, 8, 8, 16], [2, 2], [2, 2], 'valid'],
  ['a 1x1 window', [2, 3, 4, 6], [1, 1], [1, 1], 'valid'],
  ['more channels than the stack holds (the heap path)', [3, 4, 4, 700], [2, 2], [2, 2], 'valid'],
  ['a large batch split over the threads', [40, 12, 12, 64], [2, 2], [2, 2], 'valid'],
];

describe('max pooling\'s gradient on the native threads: the scalar twins\' bits', { skip }, () => {
  after(async () => {
    setNativeThreads();
    await initBackend('wasm');
  });

  cases.forEach(([label, shape, k, s, pad], i) => {
    it(`${label}: the pool, its gradient alone and with Relu's, at 1, 2 and 3 threads`, async () => {
      await initBackend('native', { threads: 1 });
      const addon = loadNativeAddon();
      const g = geometryOf(shape, k, s, pad);
      const n = g.B * g.H * g.W * g.C;
      const x = values(n, 10 + i, true);
      const dy = Float32Array.from(randomValues(g.B * g.OH * g.OW * g.C, 20 + i));
      // Relu's input: signed values with zeros and -0 among them (no NaN: a NaN's payload is the CPU's to pick).
      const rx = Float32Array.from(randomValues(n, 30 + i), (v, j) => (j % 7 === 0 ? 0 : j % 11 === 0 ? -0 : v));
      const want = new Float32Array(n);
      maxPoolGradJs(x, dy, want, g);
      const wantRelu = new Float32Array(n);
      reluGradJs(want, rx, wantRelu);
      assert.ok(want.some((v) => v !== 0), 'some gradient reaches the input');
      const wantY = new Float32Array(g.B * g.OH * g.OW * g.C);
      maxPoolJs(x, wantY, g);
      for (const threads of [1, 2, 3]) {
        setNativeThreads(threads);
        const gotY = new Float32Array(wantY.length).fill(7);
        addon.maxPool(x, gotY, asArray(g));
        assert.deepEqual(bitsOf(gotY), bitsOf(wantY), `${label}, ${threads} thread(s): the pool`);
        const got = new Float32Array(n).fill(7);
        addon.maxPoolGrad(x, dy, got, asArray(g), null);
        assert.deepEqual(bitsOf(got), bitsOf(want), `${label}, ${threads} thread(s): the pool's gradient`);
        const gotRelu = new Float32Array(n).fill(7);
        addon.maxPoolGrad(x, dy, gotRelu, asArray(g), rx);
        assert.deepEqual(bitsOf(gotRelu), bitsOf(wantRelu), `${label}, ${threads} thread(s): with Relu's gradient`);
      }
    });
  });

  const registered: [string, [number, number, number, number], [number, number], [number, number], 'same' | 'valid'][] = [
    ['windows apart (the addon runs them)', [6, 10, 1, 24], [2, 1], [2, 1], 'valid'],
    ['overlapping windows (wasm\'s kernels run them)', [2, 9, 9, 8], [3, 3], [2, 2], 'same'],
  ];
  registered.forEach(([label, shape, k, s, pad], i) => {
    it(`the registered kernels, ${label}: MaxPool and MaxPoolGrad as the wasm backend computes them, the fused kernel as MaxPoolGrad then Relu's gradient`, async () => {
      const n = shape.reduce((a, d) => a * d, 1);
      const x = tf.tensor4d(values(n, 40 + i, false), shape);
      const outShape = tf.backend_util.computePool2DInfo(shape, k, s, 1, pad).outShape;
      const probe = tf.tensor4d(randomValues(outShape.reduce((a, d) => a * d, 1), 41 + i), outShape);
      const rx = tf.tensor4d(randomValues(n, 42 + i), shape);
      const run = (): [Float32Array, Float32Array | null, Float32Array] => {
        const dx = tf.grad((a: tf.Tensor) => tf.maxPool(a as tf.Tensor4D, k, s, pad).mul(probe).sum())(x);
        const y = tf.maxPool(x, k, s, pad);
        const attrs = { filterSize: k, strides: s, pad };
        const fused = tf.getKernel(MAX_POOL_RELU_GRAD, tf.getBackend()) ? (tf.engine().runKernel(MAX_POOL_RELU_GRAD, { dy: probe, input: x, output: y, x: rx }, attrs) as tf.Tensor) : null;
        const out: [Float32Array, Float32Array | null, Float32Array] = [dx.dataSync() as Float32Array, (fused?.dataSync() as Float32Array | undefined) ?? null, y.dataSync() as Float32Array];
        tf.dispose([dx, y, ...(fused ? [fused] : [])]);
        return out;
      };
      await initBackend('wasm');
      const [wasmDx, , wasmY] = run();
      const wasmRelu = new Float32Array(wasmDx.length);
      reluGradJs(wasmDx, rx.dataSync() as Float32Array, wasmRelu);
      for (const threads of [1, 2]) {
        await initBackend('native', { threads });
        const before = tf.memory().numTensors;
        const [dx, fused, y] = run();
        assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
        assert.deepEqual(bitsOf(y), bitsOf(wasmY), `MaxPool on ${threads} thread(s) (no NaN: XNNPACK's rule for them is its own)`);
        assert.deepEqual(bitsOf(dx), bitsOf(wasmDx), `MaxPoolGrad on ${threads} thread(s)`);
        assert.ok(fused !== null, 'the native backend registers the fused kernel');
        assert.deepEqual(bitsOf(fused), bitsOf(wasmRelu), `the fused kernel on ${threads} thread(s)`);
      }
      tf.dispose([x, probe, rx]);
    });
  });

  it('short views, a short geometry and overflowing sizes: refused with a typed error, the output untouched', async () => {
    await initBackend('native', { threads: 2 });
    const addon = loadNativeAddon();
    const g = geometryOf([2, 4, 4, 3], [2, 2], [2, 2], 'valid');
    const n = 2 * 4 * 4 * 3;
    const dx = new Float32Array(n).fill(5);
    assert.throws(() => addon.maxPoolGrad(new Float32Array(n), new Float32Array(2 * 2 * 2 * 3), dx, asArray(g), new Float32Array(n - 1)), ModelFormatError);
    assert.throws(() => addon.maxPoolGrad(new Float32Array(n), new Float32Array(5), dx, asArray(g), null), ModelFormatError);
    assert.throws(() => addon.maxPoolGrad(new Float32Array(n), new Float32Array(24), dx, asArray(g).subarray(0, 11), null), ModelFormatError);
    const huge = Int32Array.of(1 << 30, 1 << 30, 1 << 30, 1 << 30, 1, 1, 1, 1, 1, 1, 0, 0);
    assert.throws(() => addon.maxPoolGrad(new Float32Array(n), new Float32Array(24), dx, huge, null), ModelFormatError);
    assert.throws(() => addon.maxPoolGrad(new Float32Array(n), new Float32Array(24), dx, Int32Array.of(2, 4, 4, 3, 2, 2, 0, 2, 2, 2, 0, 0), null), ModelFormatError);
    assert.throws(() => addon.maxPool(new Float32Array(n), dx.subarray(0, 23), asArray(g)), ModelFormatError);
    assert.throws(() => addon.maxPool(new Float32Array(n - 1), dx, asArray(g)), ModelFormatError);
    assert.ok(dx.every((v) => v === 5), 'dx untouched');
  });

  it('more channels than the stack holds and no memory left for their running maxima: a typed error, dx untouched (it was left unwritten without a word)', { skip: existsSync('/usr/bin/prlimit') ? false : 'prlimit (util-linux) is not installed' }, () => {
    for (const threads of ['1', '2']) {
      const child = spawnSync(process.execPath, ['--jitless', '--conditions=neural-diff-source', '--import', 'tsx', 'test/helpers/native-memory-child.ts', 'maxPoolGrad', String(1 << 23), threads], { encoding: 'utf8' });
      assert.equal(child.status, 0, child.stderr);
      const out = JSON.parse(child.stdout) as { threw: string | null; message: string; dxUntouched: boolean };
      assert.equal(out.threw, 'ModelFormatError', `${threads} thread(s): ${child.stdout}`);
      assert.match(out.message, /out of memory for the running maxima of 8388608 channels/);
      assert.match(out.message, /The machine gave no more memory or threads: free memory/, 'not sent to check the model\'s shapes');
      assert.ok(out.dxUntouched, 'dx untouched');
    }
  });
});
