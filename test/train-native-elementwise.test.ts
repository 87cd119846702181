/**
 * The native backend's element-wise, row and reduction kernels (src/engine/kernels/native/
 * elementwise.c, broadcast.c, elementwise.ts; issue #63) on the addon's pool: the exact GELU and
 * its gradient, Relu's, Relu6's and ClipByValue's gradients, LayerNorm and its gradient, Softmax's
 * gradient, Sum and Mean over adjacent axes, Transpose, the binary ops with broadcasting and the
 * fused chains' programs give the wasm kernels' bits (their WebAssembly SIMD kernels, and so their
 * scalar twins) at 1, 2, 3 and 8 threads, on odd sizes, one element, more threads than rows, NaN
 * and infinities; Softmax gives its scalar twin's bits, the float64 reference's values within 1e-6
 * (relative), and tfjs' kernel's values and NaNs; the native backend runs them as its kernels,
 * and training on them gives the same payload compiled and eager, at 1 and 2 threads; bad
 * arguments are refused, typed, with nothing written.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { ModelFormatError } from '../src/core/errors.ts';
import { loadNativeAddon } from '../src/engine/kernels/native/loader.ts';
import { nativeAddonStatus, nativeElementwiseLimits, setNativeThreads } from '../src/engine/kernels/native/index.ts';
import { encodeProgram, softmaxJs, softmaxReference } from '../src/engine/kernels/native/elementwise.ts';
import { runElementwiseJs, type ElementwiseProgram, type InputKind, type OpName, OP } from '../src/engine/kernels/elementwise.ts';
import { channelSumJs } from '../src/engine/kernels/sum.ts';
import { SOFTMAX_GRAD, softmaxGradJs } from '../src/engine/kernels/softmax-grad.ts';
import { CLIP_GRAD, RELU6_GRAD, RELU_GRAD } from '../src/engine/kernels/activation-grad.ts';
import { trainKernelsUnavailable } from '../src/engine/kernels/train-kernels-simd.ts';
import { transposeGeometry, transposeReference } from '../src/engine/kernels/transpose.ts';
import { asWasm } from '../src/engine/kernels/util.ts';
import { randomValues } from './helpers/kernel-tests.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { attention, tokenSequences } from './helpers/onnx-models.ts';

const status = nativeAddonStatus();
const skip = status.available ? false : `the native addon is not built (${status.reason}): apt-get install libopenblas-dev, then npm run build:native`;

const THREADS = [1, 2, 3, 8];
/** [rows, width]: one value, widths that fill no vector, more threads than rows, sizes the parts split. */
const ROWS: [number, number][] = [[1, 1], [1, 5], [2, 3], [3, 4], [7, 17], [5, 64], [33, 129], [1024, 64], [4096, 32], [3, 20000]];

/** Values in [-4s, 4s) with zeros of both signs, NaN and infinities mixed in when `special`. */
function values(n: number, seed: number, special = false, scale = 1): Float32Array {
  const v = Float32Array.from(randomValues(n, seed), (x) => 4 * scale * x);
  if (special) {
    const odd = [0, -0, NaN, Infinity, -Infinity, 1e-30, -9, 5];
    for (let i = 3; i < n; i += 11) v[i] = odd[(i + seed) % odd.length];
  }
  return v;
}

/** The first element whose bits differ (every NaN alike), or -1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return i;
  return -1;
}

function assertSameBits(got: Float32Array, want: Float32Array, what: string): void {
  const i = firstDifference(got, want);
  assert.equal(i, -1, `${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
}

/** Outputs of a kernel on the wasm backend (its SIMD kernel), as plain arrays. */
function onWasm(name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown> = {}): Float32Array[] {
  const out = tf.engine().runKernel(name, inputs, attrs as never) as tf.Tensor | tf.Tensor[];
  const list = Array.isArray(out) ? out : [out];
  const values = list.map((t) => Float32Array.from(t.dataSync() as Float32Array));
  tf.dispose(list);
  return values;
}

/** `f` at each thread count of {@link THREADS}. */
async function eachThreads(f: (threads: number) => void): Promise<void> {
  for (const threads of THREADS) {
    setNativeThreads(threads);
    f(threads);
  }
}

describe('the native element-wise and row kernels: the wasm kernels\' bits at every thread count', { skip }, () => {
  before(async () => {
    await initBackend('native', { threads: 1 });
    await initBackend('wasm');
    assert.equal(trainKernelsUnavailable(asWasm(tf.backend())), null, 'the wasm SIMD kernels run here (the bits to match)');
  });
  after(() => setNativeThreads());

  it('GELU and its gradient', async () => {
    for (const [rows, width] of ROWS) {
      const n = rows * width;
      const x = values(n, n, true);
      const dy = values(n, n + 1, true);
      const tx = tf.tensor(x, [rows, width]);
      const tdy = tf.tensor(dy, [rows, width]);
      const [y] = onWasm('NeuralDiffGelu', { x: tx });
      const [dx] = onWasm('NeuralDiffGeluGrad', { dy: tdy, x: tx });
      tf.dispose([tx, tdy]);
      assert.ok(y.some((v) => v !== 0) && dx.some((v) => v !== 0), 'non-trivial outputs');
      await eachThreads((threads) => {
        const gy = new Float32Array(n);
        const gdx = new Float32Array(n);
        loadNativeAddon().geluForward(x, gy);
        loadNativeAddon().geluGrad(dy, x, gdx);
        assertSameBits(gy, y, `gelu [${rows}, ${width}], ${threads} threads`);
        assertSameBits(gdx, dx, `gelu gradient [${rows}, ${width}], ${threads} threads`);
      });
    }
  });

  it('Relu\'s, Relu6\'s and ClipByValue\'s gradients', async () => {
    for (const [rows, width] of ROWS) {
      const n = rows * width;
      const x = values(n, 4 * n, true, 2);
      x[0] = 6; // Relu6's bound, kept
      const dy = values(n, 4 * n + 1, true);
      const [tx, tdy] = [tf.tensor(x, [rows, width]), tf.tensor(dy, [rows, width])];
      const clip = { clipValueMin: -1.5, clipValueMax: 0.7 };
      const want = [onWasm(RELU_GRAD, { dy: tdy, x: tx })[0], onWasm(RELU6_GRAD, { dy: tdy, x: tx })[0], onWasm(CLIP_GRAD, { dy: tdy, x: tx }, clip)[0]];
      tf.dispose([tx, tdy]);
      await eachThreads((threads) => {
        ([0, 1, 2] as const).forEach((which) => {
          const dx = new Float32Array(n);
          loadNativeAddon().activationGrad(which, dy, x, dx, clip.clipValueMin, clip.clipValueMax);
          assertSameBits(dx, want[which], `${['relu', 'relu6', 'clip'][which]} gradient [${rows}, ${width}], ${threads} threads`);
        });
      });
    }
  });

  it('LayerNorm and its gradient', async () => {
    for (const [rows, width] of ROWS) {
      const n = rows * width;
      const x = values(n, 2 * n, rows === 7);
      const dy = values(n, 2 * n + 1);
      const tx = tf.tensor(x, [rows, width]);
      const [nrm, rstd] = onWasm('NeuralDiffLayerNorm', { x: tx }, { epsilon: 1e-5 });
      const [tdy, tn, tr] = [tf.tensor(dy, [rows, width]), tf.tensor(nrm, [rows, width]), tf.tensor(rstd, [rows])];
      const [dx] = onWasm('NeuralDiffLayerNormGrad', { dy: tdy, n: tn, rstd: tr });
      tf.dispose([tx, tdy, tn, tr]);
      await eachThreads((threads) => {
        const [gn, gr, gdx] = [new Float32Array(n), new Float32Array(rows), new Float32Array(n)];
        loadNativeAddon().layerNorm(x, gn, gr, width, 1e-5);
        loadNativeAddon().layerNormGrad(dy, nrm, rstd, gdx, width);
        assertSameBits(gn, nrm, `layer norm [${rows}, ${width}], ${threads} threads`);
        assertSameBits(gr, rstd, `layer norm's rstd [${rows}, ${width}], ${threads} threads`);
        assertSameBits(gdx, dx, `layer norm gradient [${rows}, ${width}], ${threads} threads`);
      });
    }
  });

  it('Softmax\'s gradient and the sum over leading axes (also their scalar twins\' bits)', async () => {
    for (const [rows, width] of ROWS) {
      const n = rows * width;
      const dy = values(n, 3 * n, rows === 7);
      const y = Float32Array.from(values(n, 3 * n + 1), (v) => Math.abs(v) / 4);
      const [tdy, ty] = [tf.tensor(dy, [rows, width]), tf.tensor(y, [rows, width])];
      const [dx] = onWasm('NeuralDiffSoftmaxGrad', { dy: tdy, y: ty });
      const [s] = onWasm('Sum', { x: tdy }, { axis: [0], keepDims: false });
      tf.dispose([tdy, ty]);
      const twin = new Float32Array(n);
      softmaxGradJs(dy, y, twin, width);
      assertSameBits(twin, dx, `the softmax gradient's twin [${rows}, ${width}]`);
      const sumTwin = new Float32Array(width);
      channelSumJs(dy, sumTwin);
      assertSameBits(sumTwin, s, `the sum's twin [${rows}, ${width}]`);
      await eachThreads((threads) => {
        const [gdx, gs] = [new Float32Array(n), new Float32Array(width)];
        loadNativeAddon().softmaxGrad(dy, y, gdx, width);
        loadNativeAddon().reduceSum(dy, gs, 1, false);
        assertSameBits(gdx, dx, `softmax gradient [${rows}, ${width}], ${threads} threads`);
        assertSameBits(gs, s, `sum over the rows [${rows}, ${width}], ${threads} threads`);
      });
    }
  });
});

describe('Sum and Mean over adjacent axes on the addon', { skip }, () => {
  const saved = { ...nativeElementwiseLimits };
  after(() => {
    Object.assign(nativeElementwiseLimits, saved);
    setNativeThreads();
  });

  it('the wasm kernels\' bits (tfjs\' order: the reduced axes moved last, added from the first) on every block of axes, keepDims both ways, at every thread count', async () => {
    const shapes = [[32, 32, 64], [3, 5, 7], [2, 3, 4, 5], [1, 9], [7, 1, 3], [4, 600]];
    const cases: { shape: number[]; axes: number[]; keepDims: boolean; mean: boolean; x: Float32Array }[] = [];
    for (const shape of shapes) {
      const x = values(shape.reduce((a, d) => a * d, 1), shape.length * 7 + shape[0], shape[0] === 3);
      for (let k = 0; k < shape.length; k++) {
        for (let m = k + 1; m <= shape.length; m++) {
          if (m - k === shape.length) continue;
          for (const keepDims of [false, true]) for (const mean of [false, true]) cases.push({ shape, axes: Array.from({ length: m - k }, (_, i) => k + i), keepDims, mean, x });
        }
      }
    }
    const run = () => cases.map((c) => tf.tidy(() => {
      const t = tf.tensor(c.x, c.shape);
      const y = c.mean ? tf.mean(t, c.axes, c.keepDims) : tf.sum(t, c.axes, c.keepDims);
      return { shape: y.shape, v: Float32Array.from(y.dataSync() as Float32Array) };
    }));
    await initBackend('wasm');
    const want = run();
    Object.assign(nativeElementwiseLimits, { sum: 0 });
    for (const threads of THREADS) {
      await initBackend('native', { threads });
      run().forEach((got, i) => {
        const c = cases[i];
        const what = `${c.mean ? 'mean' : 'sum'} of [${c.shape}] over [${c.axes}]${c.keepDims ? ', keepDims' : ''}, ${threads} threads`;
        assert.deepEqual(got.shape, want[i].shape, what);
        assertSameBits(got.v, want[i].v, what);
      });
    }
  });
});

describe('Sum and Mean of a tensor with no values', { skip }, () => {
  it('0 and NaN in each output value, the same on every call (wasm\'s kernels gave whatever lay in their output\'s memory)', async () => {
    await initBackend('native', { threads: 2 });
    for (const [shape, axis, keepDims, want] of [
      [[0], 0, false, []], [[0, 4], 0, false, [4]], [[4, 0], -1, true, [4, 1]], [[4, 0], null, false, []], [[2, 0, 3], [1], false, [2, 3]], [[2, 0, 3], [0, 2], true, [1, 0, 1]],
    ] as [number[], number | number[] | null, boolean, number[]][]) {
      for (const mean of [false, true]) {
        // Garbage first where the output will go: a freed tensor's memory is what wasm's kernel returned.
        tf.dispose(tf.fill([64], 7.5));
        const y = tf.tidy(() => (mean ? tf.mean : tf.sum)(tf.zeros(shape), axis ?? undefined, keepDims));
        const what = `${mean ? 'mean' : 'sum'} of [${shape}] over ${JSON.stringify(axis)}${keepDims ? ', keepDims' : ''}`;
        assert.deepEqual(y.shape, want, what);
        assert.ok((y.dataSync() as Float32Array).every((v) => (mean ? Number.isNaN(v) : Object.is(v, 0))), `${what}: ${Array.from(y.dataSync())}`);
        y.dispose();
      }
    }
  });
});

describe('binary ops with broadcasting on the addon', { skip }, () => {
  const saved = { ...nativeElementwiseLimits };
  after(() => {
    Object.assign(nativeElementwiseLimits, saved);
    setNativeThreads();
  });

  it('Add, Sub, Multiply, RealDiv, Maximum, Minimum, SquaredDifference: tfjs\' bits on every broadcast the transformer makes and odd ones, NaN and infinities, at every thread count', async () => {
    const pairs: [number[], number[]][] = [
      [[32, 32, 64], [32, 32, 64]], [[32, 32, 64], [32, 64]], [[32, 32, 64], [64]], [[32, 1, 64], [32, 32, 64]], [[32, 4, 32, 32], []], [[], [7, 9]],
      [[1], [1]], [[5], [1]], [[3, 9000], [9000]], [[20000], []], [[2, 1, 9001], [2, 3, 1]], [[3, 1, 5], [1, 4, 1]], [[2, 3, 4, 5], [3, 1, 5]], [[7, 1], [1, 13]], [[1, 1, 9], [9]], [[2, 1, 3, 1, 2], [3, 4, 1]],
    ];
    const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
      ['Add', tf.add], ['Sub', tf.sub], ['Multiply', tf.mul], ['RealDiv', tf.div], ['Maximum', tf.maximum], ['Minimum', tf.minimum], ['SquaredDifference', tf.squaredDifference],
    ];
    const inputs = pairs.map(([as, bs], i) => [values(as.reduce((x, d) => x * d, 1), 3 * i + 1, true), values(bs.reduce((x, d) => x * d, 1), 3 * i + 2, true)]);
    const run = () => pairs.flatMap(([as, bs], i) => ops.map(([, f]) => tf.tidy(() => {
      const y = f(tf.tensor(inputs[i][0], as), tf.tensor(inputs[i][1], bs));
      return { shape: y.shape, v: Float32Array.from(y.dataSync() as Float32Array) };
    })));
    await initBackend('wasm');
    const want = run();
    Object.assign(nativeElementwiseLimits, { binary: 0 });
    for (const threads of THREADS) {
      await initBackend('native', { threads });
      run().forEach((got, k) => {
        const [as, bs] = pairs[Math.floor(k / ops.length)];
        const what = `${ops[k % ops.length][0]} of [${as}] and [${bs}], ${threads} threads`;
        assert.deepEqual(got.shape, want[k].shape, what);
        assertSameBits(got.v, want[k].v, what);
      });
    }
  });

  it('a geometry past the views or with an innermost stride above 1: refused, nothing written', async () => {
    await initBackend('native', { threads: 2 });
    const addon = loadNativeAddon();
    const out = new Float32Array(6);
    assert.throws(() => addon.binary(0, new Float32Array(5), new Float32Array(6), out, Int32Array.of(1, 6, 1, 1)), ModelFormatError);
    assert.throws(() => addon.binary(0, new Float32Array(6), new Float32Array(6), new Float32Array(5), Int32Array.of(1, 6, 1, 1)), ModelFormatError);
    assert.throws(() => addon.binary(0, new Float32Array(12), new Float32Array(6), out, Int32Array.of(1, 6, 2, 1)), ModelFormatError);
    assert.throws(() => addon.binary(9, new Float32Array(6), new Float32Array(6), out, Int32Array.of(1, 6, 1, 1)), ModelFormatError);
    assert.deepEqual(out, new Float32Array(6));
  });
});

describe('Transpose on the addon', { skip }, () => {
  before(async () => {
    await initBackend('native', { threads: 1 });
  });
  after(() => setNativeThreads());

  /** [shape, perm]: the attention's permutes, size-1 axes, rank 2 to 6, one row, more threads than rows. */
  const CASES: [number[], number[]][] = [
    [[32, 32, 3, 4, 16], [2, 0, 3, 1, 4]], [[32, 4, 32, 16], [0, 2, 1, 3]], [[32, 4, 32, 16], [0, 1, 3, 2]], [[3, 32, 4, 32, 16], [1, 3, 0, 2, 4]],
    [[2, 3], [1, 0]], [[1, 7], [1, 0]], [[5, 1, 3], [2, 1, 0]], [[3, 5, 7, 2], [3, 1, 0, 2]], [[2, 3, 2, 3, 2, 3], [5, 0, 4, 1, 3, 2]], [[129, 65], [1, 0]], [[2, 2], [1, 0]],
  ];

  it('the scalar twin\'s elements (4-byte bits, NaN payloads kept) at every thread count; a bad geometry refused, nothing written', async () => {
    for (const [shape, perm] of CASES) {
      const n = shape.reduce((a, d) => a * d, 1);
      const x = Int32Array.from(randomValues(n, n), (v) => Math.floor(v * 2 ** 31));
      x[0] = 0x7fc00001; // a NaN payload, as float32
      const want = new Int32Array(n);
      transposeReference(x, want, shape, perm);
      const geo = transposeGeometry(shape, perm);
      if (geo === null) continue;
      const g = Int32Array.from([geo.dims.length, ...geo.dims, ...geo.strides]);
      await eachThreads((threads) => {
        const got = new Int32Array(n);
        loadNativeAddon().transpose32(x, got, g);
        assert.deepEqual(got, want, `[${shape}] by [${perm}], ${threads} threads`);
        const f = new Float32Array(n);
        loadNativeAddon().transpose32(new Float32Array(x.buffer), f, g);
        assert.deepEqual(new Int32Array(f.buffer), want, `[${shape}] by [${perm}] as float32, ${threads} threads`);
      });
    }
    const out = new Int32Array(6);
    assert.throws(() => loadNativeAddon().transpose32(new Int32Array(5), out, Int32Array.of(2, 3, 2, 1, 3)), ModelFormatError);
    assert.throws(() => loadNativeAddon().transpose32(new Int32Array(6), out, Int32Array.of(2, 3, 2, 1, 4)), ModelFormatError);
    assert.throws(() => loadNativeAddon().transpose32(new Int32Array(6), new Int32Array(5), Int32Array.of(2, 3, 2, 1, 3)), ModelFormatError);
    assert.throws(() => loadNativeAddon().transpose32(new Int32Array(6), out, Int32Array.of(1, 6, 1)), ModelFormatError);
    assert.deepEqual(out, new Int32Array(6));
  });

  it('a perm that is not a permutation of the axes (repeated, missing, out of range): a typed refusal on native and wasm, no tensor left (the native copy wrote a plain copy or a shape with holes)', async () => {
    const saved = nativeElementwiseLimits.transpose;
    nativeElementwiseLimits.transpose = 0;
    try {
      for (const backend of ['native', 'wasm'] as const) {
        await initBackend(backend, backend === 'native' ? { threads: 2 } : {});
        const x = tf.tensor(Array.from({ length: 24 }, (_, i) => i), [2, 3, 4]);
        const before = tf.memory().numTensors;
        // tf.transpose checks the length and the range, not repeats; a model's graph reaches the kernel directly.
        assert.throws(() => tf.transpose(x, [0, 0, 1]), ModelFormatError, `${backend}: [0, 0, 1]`);
        tf.tidy(() => assert.deepEqual(tf.transpose(x, [0, 2, 1]).shape, [2, 4, 3], `${backend}: [0, 2, 1] (its geometry now cached)`));
        // Strings spell the cached perm's key: refused whatever the cache holds.
        for (const perm of [[0, 3, 1], [1, 0], [0, 1, 2, 3], [-1, 0, 1], [0.5, 1, 2], ['0', '2', '1'], [0, '2,1']]) {
          assert.throws(() => tf.engine().runKernel('Transpose', { x }, { perm } as never), (e: unknown) => e instanceof ModelFormatError && /expected a permutation of the 3 axes of \[2, 3, 4\]/.test(e.message), `${backend}: ${JSON.stringify(perm)}`);
        }
        assert.equal(tf.memory().numTensors, before, `${backend}: no output left behind`);
        assert.deepEqual(Array.from(tf.transpose(x, [2, 0, 1]).dataSync()).slice(0, 6), [0, 4, 8, 12, 16, 20], `${backend}: a good perm still transposes`);
        x.dispose();
      }
    } finally {
      nativeElementwiseLimits.transpose = saved;
    }
  });

  it('SplitV through the engine: each part\'s elements (4-byte bits, NaN payloads kept) on every axis, uneven and empty parts, at every thread count', async () => {
    const saved = nativeElementwiseLimits.transpose;
    nativeElementwiseLimits.transpose = 0;
    /** [shape, sizes, axis]: the attention's split, the first and middle axes, one row, an empty part. */
    const CASES: [number[], number[], number][] = [
      [[32, 32, 192], [64, 64, 64], 2], [[3, 8, 4, 5], [1, 2], 0], [[3, 8, 4, 5], [3, 0, 5], 1], [[1, 7], [2, 5], 1], [[5, 3], [1, 1, 1], 1], [[2, 3, 2, 3, 2], [1, 2], 3], [[129, 65], [64, 1, 64], 0],
    ];
    try {
      for (const [shape, sizes, axis] of CASES) {
        const n = shape.reduce((a, d) => a * d, 1);
        const x = Int32Array.from(randomValues(n, n + 7), (v) => Math.floor(v * 2 ** 31));
        x[0] = 0x7fc00001; // a NaN payload, as float32
        // The reference: part p holds, for each index of the axes before `axis`, its run of sizes[p] * inner values.
        const inner = shape.slice(axis + 1).reduce((a, d) => a * d, 1);
        const row = shape[axis] * inner;
        let begin = 0;
        const want = sizes.map((sz) => {
          const part: number[] = [];
          for (let r = 0; r < n / row; r++) part.push(...x.subarray(r * row + begin * inner, r * row + (begin + sz) * inner));
          begin += sz;
          return Int32Array.from(part);
        });
        await eachThreads((threads) => {
          for (const dtype of ['int32', 'float32'] as const) {
            const t = dtype === 'int32' ? tf.tensor(x, shape, 'int32') : tf.tensor(new Float32Array(x.buffer), shape);
            const parts = tf.split(t, sizes, axis);
            parts.forEach((q, i) => {
              assert.deepEqual(q.shape, shape.map((d, j) => (j === axis ? sizes[i] : d)));
              const v = q.dataSync() as Int32Array | Float32Array;
              assert.deepEqual(new Int32Array(v.buffer, v.byteOffset, v.length), want[i], `[${shape}] split ${sizes} on axis ${axis}, part ${i}, ${dtype}, ${threads} threads`);
            });
            tf.dispose([t, ...parts]);
          }
        });
      }
    } finally {
      nativeElementwiseLimits.transpose = saved;
    }
  });
});

describe('SplitV sizes that add up but are not sizes', { skip }, () => {
  after(() => setNativeThreads());

  it('a negative size besides -1, a -1 inferred below 0, a fraction: a typed refusal on the addon, under its limit and on wasm, nothing allocated (parts of shape [2, 1.5, 4], reads outside x, outputs left behind)', async () => {
    const saved = nativeElementwiseLimits.transpose;
    try {
      for (const [backend, limit] of [['native', 0], ['native', saved], ['wasm', saved]] as const) {
        await initBackend(backend, backend === 'native' ? { threads: 2 } : {});
        nativeElementwiseLimits.transpose = limit;
        const what = `${backend}, limit ${limit}`;
        const x = tf.tensor(Array.from({ length: 24 }, (_, i) => i), [2, 3, 4]);
        const data = tf.engine().backend;
        const ids = data.numDataIds();
        for (const sizes of [[1.5, 1.5], [-2, 5], [4, -1]]) {
          assert.throws(() => tf.engine().runKernel('SplitV', { x }, { numOrSizeSplits: sizes, axis: 1 }), (e: unknown) => e instanceof ModelFormatError && /adding up to 3, the length of axis 1 of \[2, 3, 4\]/.test(e.message), `${what}: [${sizes}]`);
          assert.equal(data.numDataIds(), ids, `${what}: [${sizes}]: no output allocated`);
        }
        const sizes = [2, -1];
        const parts = tf.split(x, sizes, 1);
        assert.deepEqual(parts.map((p) => p.shape), [[2, 2, 4], [2, 1, 4]], `${what}: a -1 still takes the rest`);
        assert.deepEqual(Array.from(parts[1].dataSync()), [8, 9, 10, 11, 20, 21, 22, 23], what);
        assert.deepEqual(sizes, [2, -1], `${what}: the sizes given are left as they were`);
        tf.dispose([x, ...parts]);
      }
    } finally {
      nativeElementwiseLimits.transpose = saved;
    }
  });
});

describe('Concat on the addon', { skip }, () => {
  after(() => setNativeThreads());

  it('equal parts through the engine: the parts in order on every axis (4-byte bits, NaN payloads kept), at every thread count; unequal parts through wasm\'s kernel', async () => {
    await initBackend('native', { threads: 1 });
    const saved = nativeElementwiseLimits.transpose;
    nativeElementwiseLimits.transpose = 0;
    /** [a part's shape, parts, axis]: the attention's gradients, the first and middle axes, one row. */
    const CASES: [number[], number, number][] = [[[32, 32, 64], 3, 2], [[3, 8, 5], 2, 0], [[3, 8, 5], 4, 1], [[1, 7], 3, 1], [[5, 1], 2, 1], [[2, 3, 2, 3], 3, 2], [[129, 65], 2, 0]];
    try {
      for (const [shape, count, axis] of CASES) {
        const n = shape.reduce((a, d) => a * d, 1);
        const inner = shape.slice(axis).reduce((a, d) => a * d, 1);
        const parts = Array.from({ length: count }, (_, p) => {
          const v = Int32Array.from(randomValues(n, n + 31 * p), (x) => Math.floor(x * 2 ** 31));
          v[0] = 0x7fc00001 + p; // a NaN payload, as float32
          return v;
        });
        // The reference: for each index of the axes before `axis`, each part's run in order.
        const want: number[] = [];
        for (let r = 0; r < n / inner; r++) for (const v of parts) want.push(...v.subarray(r * inner, (r + 1) * inner));
        await eachThreads((threads) => {
          for (const dtype of ['int32', 'float32'] as const) {
            const ts = parts.map((v) => (dtype === 'int32' ? tf.tensor(v, shape, 'int32') : tf.tensor(new Float32Array(v.buffer), shape)));
            const out = tf.concat(ts, axis);
            const got = out.dataSync() as Int32Array | Float32Array;
            assert.deepEqual(out.shape, shape.map((d, i) => (i === axis ? d * count : d)));
            assert.deepEqual(new Int32Array(got.buffer, got.byteOffset, got.length), Int32Array.from(want), `[${shape}] x ${count} on axis ${axis}, ${dtype}, ${threads} threads`);
            tf.dispose([out, ...ts]);
          }
        });
      }
      // Parts of different sizes: wasm's kernel, the same values.
      const a = tf.tensor2d([1, 2, 3, 4], [2, 2]);
      const c = tf.tensor2d([5, 6], [2, 1]);
      assert.deepEqual(Array.from(tf.concat([a, c], 1).dataSync()), [1, 2, 5, 3, 4, 6]);
      tf.dispose([a, c]);
    } finally {
      nativeElementwiseLimits.transpose = saved;
    }
  });
});

/** Softmax inputs: attention-like scores, a masked row (-Inf), rows with NaN or +Inf, one huge spread. */
function softmaxInputs(rows: number, width: number, seed: number): Float32Array {
  const x = values(rows * width, seed, false, 2);
  if (rows >= 7) {
    for (let i = 0; i < width; i += 2) x[width + i] = -Infinity; // row 1: half masked
    x[2 * width + (width >> 1)] = NaN; // row 2
    x[3 * width] = Infinity; // row 3
    for (let i = 0; i < width; i++) x[4 * width + i] = i * 50 - 100; // row 4: differences beyond exp's range
  }
  return x;
}

describe('Softmax on the addon', { skip }, () => {
  before(async () => {
    await initBackend('wasm');
  });
  after(() => setNativeThreads());

  it('its scalar twin\'s bits at every thread count, within 3e-7 of the float64 reference, tfjs\' kernel\'s NaNs and values within 1e-6', async () => {
    let worst = 0;
    let worstTfjs = 0;
    for (const [rows, width] of ROWS) {
      const n = rows * width;
      const x = softmaxInputs(rows, width, 5 * n);
      const twin = new Float32Array(n);
      softmaxJs(x, twin, width);
      const ref = softmaxReference(x, width);
      const tx = tf.tensor(x, [rows, width]);
      const [stock] = onWasm('Softmax', { logits: tx }, { dim: 1 }); // tf.softmax passes the axis as rank - 1
      tx.dispose();
      for (let i = 0; i < n; i++) {
        assert.equal(Number.isNaN(twin[i]), Number.isNaN(stock[i]), `[${rows}, ${width}] element ${i}: ${twin[i]}, tfjs ${stock[i]}`);
        if (Number.isNaN(stock[i])) continue;
        worstTfjs = Math.max(worstTfjs, Math.abs(twin[i] - stock[i]));
        worst = Math.max(worst, Math.abs(twin[i] - ref[i]) / Math.max(ref[i], 1e-30) * (ref[i] > 1e-30 ? 1 : 0));
      }
      await eachThreads((threads) => {
        const y = new Float32Array(n);
        loadNativeAddon().softmax(x, y, width);
        assertSameBits(y, twin, `softmax [${rows}, ${width}], ${threads} threads`);
      });
    }
    console.log(`softmax: relative error against float64 ${worst.toExponential(2)}, largest difference from tfjs' kernel ${worstTfjs.toExponential(2)}`);
    assert.ok(worst <= 1e-6, `relative error against float64 ${worst.toExponential(2)}`);
    assert.ok(worstTfjs <= 1e-6, `largest difference from tfjs' kernel ${worstTfjs.toExponential(2)}`);
  });
});

/** A program of one op over inputs of the given kinds (a step's alpha and a clip's bounds as immediates). */
function oneOp(op: OpName, second: InputKind): ElementwiseProgram {
  const binary = ['add', 'sub', 'mul', 'div', 'max', 'min', 'sqdiff'].includes(op);
  const inputs: InputKind[] = binary ? ['full', second] : ['full'];
  const immediates = op === 'step' ? [0.25] : op === 'clip' ? [-1.5, 2] : [];
  const first = 1 + inputs.length;
  const b = binary ? 2 : immediates.length ? first : undefined;
  const c = op === 'clip' ? first + 1 : undefined;
  return { inputs, immediates, registers: 0, channels: 0, code: [{ op, dst: 0, a: 1, ...(b !== undefined ? { b } : {}), ...(c !== undefined ? { c } : {}) }] };
}

/** A chain with registers: out = relu6((x + bias) * s - x) / max(x, y), the bias per channel, s a scalar. */
const CHAIN: ElementwiseProgram = {
  inputs: ['full', 'channel', 'scalar', 'full'],
  immediates: [],
  registers: 4,
  channels: 0,
  code: [
    { op: 'add', dst: 5, a: 1, b: 2 },
    { op: 'mul', dst: 6, a: 5, b: 3 },
    { op: 'sub', dst: 7, a: 6, b: 1 },
    { op: 'max', dst: 8, a: 1, b: 4 },
    { op: 'div', dst: 0, a: 7, b: 8 },
  ],
};

describe('fused chains\' programs on the addon', { skip }, () => {
  before(async () => {
    await initBackend('native', { threads: 1 });
  });
  after(() => setNativeThreads());

  const run = (p: ElementwiseProgram, inputs: Float32Array[], out: Float32Array) => {
    const { code, kinds, immediates } = encodeProgram(p);
    loadNativeAddon().elementwise(code, kinds, inputs, immediates, p.registers, out, p.channels);
  };

  it('every op and a chain with registers, each input kind, at every thread count: the JavaScript twin\'s bits (so tfjs\' kernels\')', async () => {
    const shapes = [[1], [5], [3, 7], [2, 600], [1031], [64, 64], [32, 32, 128]];
    for (const shape of shapes) {
      const n = shape.reduce((a, d) => a * d, 1);
      const C = shape[shape.length - 1];
      const programs: [string, ElementwiseProgram][] = [['chain', { ...CHAIN, channels: C }]];
      for (const op of Object.keys(OP) as OpName[]) for (const kind of ['full', 'scalar', 'channel'] as InputKind[]) programs.push([`${op} ${kind}`, { ...oneOp(op, kind), channels: C }]);
      for (const [what, p] of programs) {
        const inputs = p.inputs.map((k, j) => values(k === 'full' ? n : k === 'scalar' ? 1 : C, n + j, true, 2));
        const want = new Float32Array(n);
        runElementwiseJs(p, inputs, want);
        await eachThreads((threads) => {
          const got = new Float32Array(n);
          run(p, inputs, got);
          assertSameBits(got, want, `${what} on [${shape}], ${threads} threads`);
        });
      }
    }
  });

  it('a malformed program or a short view: a typed refusal, nothing written', () => {
    const out = new Float32Array(10);
    const x = values(10, 1);
    const { code, kinds, immediates } = encodeProgram({ ...CHAIN, channels: 5 });
    const bad = code.slice();
    bad[5 * 4 + 1] = 5; // the last instruction must write the output
    const addon = loadNativeAddon();
    assert.throws(() => addon.elementwise(bad, kinds, [x, x.subarray(0, 5), x.subarray(0, 1), x], immediates, 4, out, 5), ModelFormatError);
    assert.throws(() => addon.elementwise(code, kinds, [x, x.subarray(0, 4), x.subarray(0, 1), x], immediates, 4, out, 5), ModelFormatError);
    assert.throws(() => addon.elementwise(code, kinds, [x, x.subarray(0, 5), x.subarray(0, 1)], immediates, 4, out, 5), ModelFormatError);
    assert.throws(() => addon.softmax(x, new Float32Array(9), 5), ModelFormatError);
    assert.throws(() => addon.layerNorm(x, new Float32Array(10), new Float32Array(10), 3, 1e-5), ModelFormatError);
    assert.throws(() => addon.reduceSum(x, new Float32Array(3), 1, false), ModelFormatError);
    assert.throws(() => addon.reduceSum(x, new Float32Array(5), 2, false), ModelFormatError);
    assert.deepEqual(out, new Float32Array(10));
  });
});

describe('the native backend runs them as its kernels', { skip }, () => {
  const saved = { ...nativeElementwiseLimits };
  after(() => Object.assign(nativeElementwiseLimits, saved));

  it('Softmax, its gradient, Sum and Transpose through the engine: the addon above the limits, the wasm kernel below, the same values', async () => {
    const f = () => {
      const x = tf.tensor(values(2 * 8 * 64, 9), [2, 8, 64]);
      return tf.tidy(() => {
        const g = tf.grads((a: tf.Tensor) => tf.sum(tf.mul(tf.softmax(a), tf.sum(a, [0, 1]))));
        return [tf.softmax(x), tf.sum(x, [0, 1]), tf.transpose(x, [1, 0, 2]), tf.transpose(tf.cast(tf.mul(x, 1000), 'int32'), [2, 0, 1]), ...g([x])];
      });
    };
    await initBackend('wasm');
    const wasm = f().map((t) => t.dataSync() as Float32Array);
    await initBackend('native', { threads: 2 });
    for (const limit of [0, 1e9]) {
      Object.assign(nativeElementwiseLimits, { gelu: limit, rows: limit, softmax: limit, sum: limit, chain: limit, transpose: limit, binary: limit, activationGrad: limit });
      const native = f().map((t) => t.dataSync() as Float32Array);
      native.forEach((v, i) => {
        for (let j = 0; j < v.length; j++) assert.ok(Math.abs(v[j] - wasm[i][j]) <= 1e-6, `output ${i} element ${j} (limit ${limit}): ${v[j]}, wasm ${wasm[i][j]}`);
      });
    }
  });
});

describe('the kernels the addon takes by default', { skip }, () => {
  after(() => setNativeThreads());

  it('at the transformer\'s sizes LayerNorm, Softmax, their gradients, the attention\'s Transpose and SplitV, Concat and a broadcast Multiply run on the addon; a small Softmax stays on wasm', async () => {
    await initBackend('native', { threads: 1 });
    const addon = loadNativeAddon() as unknown as Record<string, (...a: unknown[]) => unknown>;
    const names = ['layerNorm', 'layerNormGrad', 'softmax', 'softmaxGrad', 'transpose32', 'binary'];
    const calls: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
    const originals = names.map((n) => [n, addon[n]] as const);
    for (const [n, f] of originals) addon[n] = (...a: unknown[]) => (calls[n]++, f(...a));
    const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown> = {}) => tf.engine().runKernel(name, inputs, attrs as never) as tf.Tensor | tf.Tensor[];
    try {
      tf.tidy(() => {
        // Batch 32, 32 tokens, d 64, 4 heads: the attention's scores and its [batch, tokens, 3, heads, 16] projections.
        const scores = tf.tensor(values(32 * 4 * 32 * 32, 21, false, 2), [32, 4, 32, 32]);
        const y = run('Softmax', { logits: scores }, { dim: 3 }) as tf.Tensor;
        run(SOFTMAX_GRAD, { dy: scores, y });
        const x = tf.tensor(values(32 * 32 * 64, 22), [32, 32, 64]);
        const [n, rstd] = run('NeuralDiffLayerNorm', { x }, { epsilon: 1e-5 }) as tf.Tensor[];
        run('NeuralDiffLayerNormGrad', { dy: x, n, rstd });
        run('Multiply', { a: x, b: tf.tensor(values(64, 26), [64]) }); // by a channel vector
        run('Transpose', { x: tf.tensor(values(32 * 32 * 3 * 4 * 16, 23), [32, 32, 3, 4, 16]) }, { perm: [2, 0, 3, 1, 4] });
        // The projections split into queries, keys and values: one strided copy a part.
        const [q, k, v] = tf.split(tf.tensor(values(32 * 32 * 192, 25), [32, 32, 192]), 3, 2);
        // Their gradients back together: one block of the parts, one transpose32.
        tf.concat([q, k, v], 2);
      });
      assert.deepEqual(calls, { layerNorm: 1, layerNormGrad: 1, softmax: 1, softmaxGrad: 1, transpose32: 5, binary: 1 });
      tf.tidy(() => run('Softmax', { logits: tf.tensor(values(32 * 4, 24), [32, 4]) }, { dim: 1 }));
      assert.equal(calls.softmax, 1, 'the classifier\'s [32, 4] Softmax stays on wasm');
    } finally {
      for (const [n, f] of originals) addon[n] = f;
    }
  });
});

describe('training on them', { skip }, () => {
  const saved = { ...nativeElementwiseLimits };
  after(() => {
    Object.assign(nativeElementwiseLimits, saved);
    setNativeThreads();
  });

  it('the attention program (Softmax, its gradient, bias sums, transposes, fused chains on the addon): compiled and eager, 1 and 2 threads, the same payload bytes', async () => {
    Object.assign(nativeElementwiseLimits, { gelu: 0, rows: 0, softmax: 0, sum: 0, chain: 0, transpose: 0, binary: 0, activationGrad: 0 });
    const { data, labels } = tokenSequences(64, 2);
    const common = { method: 'full' as const, budgetBytes: 0, epochs: 2, tune: 'off' as const, seed: 4, batchSize: 16, learningRate: 1e-2, validation: 0, allowWorse: true, header: { modelId: 'attention', sequence: 1 } };
    const payload = async (threads: number, step: 'compiled' | 'eager') => {
      await initBackend('native', { threads });
      return Buffer.from((await trainOnnxDiff(attention(), { ...data, labels }, { ...common, threads, step })).bytes);
    };
    // Count the addon's calls (the kernels hold this very object).
    const addon = loadNativeAddon() as unknown as Record<string, (...a: unknown[]) => unknown>;
    const calls: Record<string, number> = {};
    const originals = new Map<string, (...a: unknown[]) => unknown>();
    for (const name of ['softmax', 'softmaxGrad', 'reduceSum', 'elementwise', 'transpose32', 'binary']) {
      const f = addon[name];
      originals.set(name, f);
      calls[name] = 0;
      addon[name] = (...a: unknown[]) => {
        calls[name]++;
        return f(...a);
      };
    }
    let first: Buffer;
    try {
      first = await payload(1, 'compiled');
    } finally {
      for (const [name, f] of originals) addon[name] = f;
    }
    for (const [name, count] of Object.entries(calls)) assert.ok(count > 0, `the step called the addon's ${name} (${JSON.stringify(calls)})`);
    assert.deepEqual(await payload(1, 'eager'), first, 'eager against compiled, one thread');
    assert.deepEqual(await payload(2, 'compiled'), first, 'compiled at two threads');
    assert.deepEqual(await payload(2, 'eager'), first, 'eager at two threads');
  });
});
