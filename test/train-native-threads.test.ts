/**
 * The native backend's intra-op threads (src/engine/kernels/native/pool.c, blas.c): every threaded
 * kernel (GEMMs, batched products, convolution forward and both gradients, the bias/activation
 * epilogue, sums cut into blocks and added in order) gives the same bits at 1, 2 and 3 threads (blocks cut from the shapes alone) and
 * matches the cpu backend (its scalar twin) within 1e-5 on many shapes: odd sizes, one row, one
 * item, more threads than blocks, products big enough to be cut. A training run gives the same
 * payload bytes at 1 and 2 threads, and the addon still refuses hostile arguments with the pool
 * running. Skipped, saying why, when the addon is not built (`npm run build:native`).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { after, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { ModelFormatError, UsageError } from '../src/core/errors.ts';
import { NATIVE, nativeAddonStatus, nativeBlasInfo, setNativeThreads } from '../src/engine/kernels/native/index.ts';
import { startTrainingThreads, stopTrainingThreads } from '../src/train/parallel/threads.ts';
import type { TrainingPool } from '../src/train/parallel/pool.ts';
import { loadNativeAddon } from '../src/engine/kernels/native/loader.ts';
import { modelToStore } from '../src/engine/model-weights.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { mnistSplits } from '../examples/lib/mnist-task.ts';
import { adamStepJs, scalarsOf } from '../src/engine/kernels/adam.ts';
import { rand, randomValues, relError } from './helpers/kernel-tests.ts';

const status = nativeAddonStatus();
const skip = status.available ? false : `the native addon is not built (${status.reason}): apt-get install libopenblas-dev, then npm run build:native`;
if (skip) console.log(`train-native-threads: skipping: ${skip}`);

/** The outputs of `f` on the native backend at `threads` threads. */
async function nativeAt(threads: number, f: () => tf.Tensor[]): Promise<Float32Array[]> {
  await initBackend('native', { threads });
  assert.equal(nativeBlasInfo().threads, threads);
  assert.equal(nativeBlasInfo().blasThreads, 1, 'OpenBLAS stays on one thread beside the pool');
  const ts = tf.tidy(f);
  const out = ts.map((t) => Float32Array.from(t.dataSync()));
  tf.dispose(ts);
  return out;
}

/** `f` at 1, 2 and 3 threads: bit for bit the same, and within `tol` of the cpu backend. */
async function sameBitsAndCpu(label: string, f: () => tf.Tensor[], tol = 1e-5): Promise<void> {
  const one = await nativeAt(1, f);
  for (const threads of [2, 3]) {
    const many = await nativeAt(threads, f);
    one.forEach((v, i) => assert.ok(Buffer.from(many[i].buffer).equals(Buffer.from(v.buffer)), `${label}: output ${i} at ${threads} threads differs from 1 thread`));
  }
  assert.deepEqual(await nativeAt(2, f), await nativeAt(2, f), `${label}: two runs at 2 threads`);
  await initBackend('cpu');
  const ts = tf.tidy(f);
  const ref = ts.map((t) => Float32Array.from(t.dataSync()));
  tf.dispose(ts);
  ref.forEach((expected, i) => {
    const err = relError(one[i], expected, true);
    assert.ok(err <= tol, `${label}: output ${i} differs from the cpu backend by ${err.toExponential(2)} (relative)`);
  });
}

/** Forward and both gradients of sum(conv(x, w) * probe), with a bias and relu fused when asked. */
function convCase(xShape: number[], wShape: number[], strides: number, pad: 'same' | 'valid', seed: number, fused = false) {
  return () => {
    const x = rand(xShape, seed) as tf.Tensor4D;
    const w = rand(wShape, seed + 1) as tf.Tensor4D;
    const bias = rand([wShape[3]], seed + 3) as tf.Tensor1D;
    const conv = (a: tf.Tensor4D, b: tf.Tensor4D) => (fused ? tf.fused.conv2d({ x: a, filter: b, strides, pad, bias, activation: 'relu' }) : tf.conv2d(a, b, strides, pad));
    const y = conv(x, w);
    const probe = rand(y.shape, seed + 2);
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => conv(a as tf.Tensor4D, b as tf.Tensor4D).mul(probe).sum())([x, w]);
    return [y, ...grads];
  };
}

describe('the native kernels on several threads: the same bits as on one, and the cpu backend\'s values', { skip }, () => {
  after(async () => {
    setNativeThreads();
    await initBackend('wasm');
  });

  const convs: [string, number[], number[], number, 'same' | 'valid'][] = [
    ['3x3 same, a batch cut into blocks', [8, 16, 16, 16], [3, 3, 16, 32], 1, 'same'],
    ['3x3 stride 2 valid, odd sizes', [5, 17, 13, 7], [3, 3, 7, 33], 2, 'valid'],
    ['one item (blocks of rows in the forward pass, one block of items in the input gradient)', [1, 40, 40, 8], [3, 3, 8, 64], 1, 'same'],
    ['one output position', [3, 3, 3, 64], [3, 3, 64, 48], 1, 'valid'],
    ['1x1 (the input is the column matrix)', [4, 24, 24, 32], [1, 1, 32, 64], 1, 'same'],
    ['5x5 on a small batch (more threads than blocks)', [2, 20, 20, 12], [5, 5, 12, 20], 1, 'same'],
    ['two large images (no more blocks of the filter gradient\'s sum than items)', [2, 64, 64, 8], [3, 3, 8, 16], 1, 'same'],
    ['tiny: one block', [1, 5, 5, 1], [3, 3, 1, 1], 1, 'valid'],
  ];
  convs.forEach(([label, xs, ws, s, pad], i) => {
    it(`conv2d, ${label}: forward, input and filter gradients`, async () => {
      await sameBitsAndCpu(label, convCase(xs, ws, s, pad, 100 + 10 * i));
    });
  });

  it('fused conv2d with a bias and relu (the epilogue on the threads)', async () => {
    await sameBitsAndCpu('fused conv', convCase([16, 18, 18, 16], [3, 3, 16, 32], 1, 'same', 300, true));
  });

  const products: [string, number[], number[], boolean, boolean][] = [
    ['512x384 by 384x640 (once ~5% of its entries changed between 1 and 2 OpenBLAS threads)', [512, 384], [384, 640], false, false],
    ['tall and thin', [3000, 64], [64, 9], false, false],
    ['wide: cut into columns', [9, 200], [200, 3000], false, false],
    ['both transposed, odd sizes', [301, 257], [129, 301], true, true],
    ['one row', [1, 4096], [4096, 700], false, false],
    ['three rows of a large product (more threads than rows in a block)', [3, 2048], [1024, 2048], false, true],
    ['a weight gradient: short rows and columns, a long sum (cut along the sum, partials added in order)', [4096, 64], [4096, 96], true, false],
    ['many small items (attention-like)', [128, 32, 16], [128, 16, 32], false, false],
    ['items broadcast against one matrix', [64, 50, 40], [40, 30], false, false],
    ['two large items', [2, 300, 200], [2, 200, 300], false, false],
  ];
  products.forEach(([label, as, bs, ta, tb], i) => {
    it(`matMul, ${label}`, async () => {
      await sameBitsAndCpu(label, () => [tf.matMul(rand(as, 500 + 10 * i), rand(bs, 501 + 10 * i), ta, tb)]);
    });
  });

  it('a dense layer\'s fused product with a bias and relu6, and its gradients', async () => {
    await sameBitsAndCpu('fused matMul', () => {
      const x = rand([256, 300], 700);
      const w = rand([300, 400], 701);
      const b = rand([400], 702);
      const f = (a: tf.Tensor, c: tf.Tensor) => tf.fused.matMul({ a: a as tf.Tensor2D, b: c as tf.Tensor2D, bias: b, activation: 'relu6' });
      return [f(x, w), ...tf.grads((a: tf.Tensor, c: tf.Tensor) => f(a, c).sum())([x, w])];
    });
  });
});

describe('the forward convolution\'s epilogue on each block\'s rows', { skip }, () => {
  after(() => setNativeThreads());
  // [label, geometry B, H, W, CI, OH, OW, CO, KH, KW, sh, sw, dh, dw, pt, pl, column budget]
  const cases: [string, number[], number][] = [
    ['the keyword model\'s conv2 (blocks of rows)', [64, 1, 25, 96, 1, 25, 128, 1, 3, 1, 1, 1, 1, 0, 1], 1 << 22],
    ['chunks of 7 rows (a small column budget)', [3, 5, 6, 4, 5, 6, 9, 3, 3, 1, 1, 1, 1, 1, 1], 7 * 36],
    ['1x1: the input is the column matrix', [4, 6, 6, 8, 6, 6, 5, 1, 1, 1, 1, 1, 1, 0, 0], 1 << 22],
    ['no taps: zeros, then the epilogue', [2, 3, 3, 0, 3, 3, 4, 1, 1, 1, 1, 1, 1, 0, 0], 1 << 22],
  ];
  cases.forEach(([label, geometry, budget], i) => {
    it(`${label}: the bits of the product then biasActivation, at 1, 2 and 3 threads, for relu, relu6 and linear`, async () => {
      await initBackend('native', { threads: 1 });
      const addon = loadNativeAddon();
      const [B, H, W, CI, OH, OW, CO, KH, KW] = geometry;
      const g = Int32Array.from(geometry);
      const x = Float32Array.from(randomValues(B * H * W * CI, 900 + i));
      const w = Float32Array.from(randomValues(KH * KW * CI * CO, 910 + i));
      const bias = Float32Array.from(randomValues(CO, 920 + i));
      for (const act of [1, 2, 0] as const) {
        for (const b of [bias, null]) {
          const want = new Float32Array(B * OH * OW * CO);
          addon.conv2dForward(x, w, want, g, budget);
          addon.biasActivation(want, b, act);
          for (const threads of [1, 2, 3]) {
            setNativeThreads(threads);
            const got = new Float32Array(want.length).fill(3);
            addon.conv2dForward(x, w, got, g, budget, b, act);
            assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), `${label}, activation ${act}, ${b ? 'a bias' : 'no bias'}, ${threads} thread(s)`);
          }
          setNativeThreads(1);
        }
      }
      assert.throws(() => addon.conv2dForward(x, w, new Float32Array(B * OH * OW * CO), g, budget, bias.subarray(0, CO - 1), 1), ModelFormatError);
      assert.throws(() => addon.conv2dForward(x, w, new Float32Array(B * OH * OW * CO), g, budget, bias, 3 as never), ModelFormatError);
    });
  });
});

describe('a product\'s epilogue on each block of C (sgemmBatched with a bias and activation)', { skip }, () => {
  after(() => setNativeThreads());
  // [label, transA, transB, batch, M, N, K]: each way the product is cut (blocks.c).
  const cases: [string, boolean, boolean, number, number, number, number][] = [
    ['blocks of rows (a Linear layer over 1,024 tokens)', false, false, 1, 1024, 192, 64],
    ['blocks of columns (few rows, many columns)', false, true, 1, 48, 1024, 96],
    ['blocks of the sum (a weight gradient\'s shape: the epilogue after the partial sums)', true, false, 1, 64, 64, 4096],
    ['one block (too small to cut)', false, false, 1, 7, 5, 3],
    ['a batch of items (one pass after)', false, false, 16, 64, 64, 64],
    ['no sum (K = 0): zeros, then the epilogue', false, false, 1, 300, 260, 0],
  ];
  cases.forEach(([label, ta, tb, batch, M, N, K], i) => {
    it(`${label}: the bits of the product then biasActivation, at 1, 2 and 3 threads, for relu, relu6 and linear`, async () => {
      await initBackend('native', { threads: 1 });
      const addon = loadNativeAddon();
      const a = Float32Array.from(randomValues(batch * M * K, 930 + i));
      const b = Float32Array.from(randomValues(batch * K * N, 940 + i));
      const bias = Float32Array.from(randomValues(N, 950 + i));
      for (const act of [1, 2, 0] as const) {
        for (const with_ of [bias, null]) {
          const want = new Float32Array(batch * M * N);
          addon.sgemmBatched(ta, tb, batch, M, N, K, a, M * K, b, K * N, want);
          addon.biasActivation(want, with_, act);
          for (const threads of [1, 2, 3]) {
            setNativeThreads(threads);
            const got = new Float32Array(want.length).fill(3);
            addon.sgemmBatched(ta, tb, batch, M, N, K, a, M * K, b, K * N, got, with_, act);
            assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), `${label}, activation ${act}, ${with_ ? 'a bias' : 'no bias'}, ${threads} thread(s)`);
          }
          setNativeThreads(1);
        }
      }
      assert.throws(() => addon.sgemmBatched(ta, tb, batch, M, N, K, a, M * K, b, K * N, new Float32Array(batch * M * N), bias.subarray(0, N - 1), 1), ModelFormatError);
      assert.throws(() => addon.sgemmBatched(ta, tb, batch, M, N, K, a, M * K, b, K * N, new Float32Array(batch * M * N), bias, 3 as never), ModelFormatError);
    });
  });
});

describe('the pool under many calls in a row', { skip }, () => {
  after(() => setNativeThreads());

  it('3,000 split calls at 3 threads: each the one-thread result, bit for bit', async () => {
    const addon = loadNativeAddon();
    const [M, N, K, batch] = [32, 32, 32, 64];
    const a = randomValues(batch * M * K, 11);
    const b = randomValues(batch * K * N, 12);
    await initBackend('native', { threads: 1 });
    const want = new Float32Array(batch * M * N);
    addon.sgemmBatched(false, false, batch, M, N, K, a, M * K, b, K * N, want);
    await initBackend('native', { threads: 3 });
    const got = new Float32Array(batch * M * N);
    for (let i = 0; i < 3000; i++) {
      got.fill(NaN);
      addon.sgemmBatched(false, false, batch, M, N, K, a, M * K, b, K * N, got);
      if (!Buffer.from(got.buffer).equals(Buffer.from(want.buffer))) assert.fail(`call ${i} differs from the one-thread result`);
    }
  });
});

describe('Adam\'s step on the addon\'s threads', { skip }, () => {
  after(() => setNativeThreads());

  it('gives its scalar twin\'s bits (adam.c\'s operations) at 1, 2 and 3 threads, odd sizes and sizes the threads split', async () => {
    const s = Float32Array.of(0.9, Math.fround(1 - 0.9), 0.999, Math.fround(1 - 0.999), Math.fround(1 - 0.9 ** 3), Math.fround(1 - 0.999 ** 3), 1e-7, -1e-3);
    for (const n of [0, 1, 7, 8191, 16384 + 3, 65536, 65536 * 3 + 5, 300001]) {
      const x = randomValues(n, 1);
      const g = randomValues(n, 2);
      const m0 = randomValues(n, 3).map((a) => a * 0.1);
      const v0 = randomValues(n, 4).map((a) => a * a);
      const want = { x: new Float32Array(n), m: new Float32Array(n), v: new Float32Array(n) };
      adamStepJs(x, g, m0, v0, want.x, want.m, want.v, scalarsOf(s));
      for (const threads of [1, 2, 3]) {
        await initBackend('native', { threads });
        const [m, v, xo] = [m0.slice(), v0.slice(), new Float32Array(n)];
        loadNativeAddon().adamStep(x, g, m, v, xo, s);
        for (const [got, expected, what] of [[xo, want.x, 'x'], [m, want.m, 'm'], [v, want.v, 'v']] as const) {
          assert.ok(Buffer.from(got.buffer).equals(Buffer.from(expected.buffer)), `n ${n}, ${threads} thread(s): ${what} differs from the scalar twin`);
        }
      }
    }
  });

  it('short views: refused, nothing written', async () => {
    await initBackend('native', { threads: 2 });
    const m = new Float32Array(100000);
    assert.throws(() => loadNativeAddon().adamStep(new Float32Array(100000), new Float32Array(99999), m, new Float32Array(100000), new Float32Array(100000), new Float32Array(8)), ModelFormatError);
    assert.throws(() => loadNativeAddon().adamStep(new Float32Array(10), new Float32Array(10), new Float32Array(10), new Float32Array(10), new Float32Array(10), new Float32Array(7)), ModelFormatError);
    assert.deepEqual(m, new Float32Array(100000));
  });
});

describe('payload bytes on native no longer depend on the thread count', { skip }, () => {
  after(async () => {
    setNativeThreads();
    await initBackend('wasm');
  });

  it('a conv model trained at 1 and at 2 threads: the same bytes (and again at 2)', async () => {
    await initBackend('wasm');
    const splits = mnistSplits(600);
    const init = (k: number) => tf.initializers.glorotUniform({ seed: 1 + k });
    const make = () =>
      tf.sequential({
        layers: [
          tf.layers.reshape({ name: 'image', inputShape: [196], targetShape: [14, 14, 1] }),
          tf.layers.conv2d({ name: 'conv1', filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(0) }),
          tf.layers.conv2d({ name: 'conv2', filters: 64, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: init(1) }),
          tf.layers.flatten({ name: 'flat' }),
          tf.layers.dense({ name: 'hidden', units: 128, activation: 'relu', kernelInitializer: init(2) }),
          tf.layers.dense({ name: 'digits', units: 10, activation: 'softmax', kernelInitializer: init(3) }),
        ],
      });
    const sha = async (threads: number) => {
      await initBackend('native', { threads });
      const model = make();
      const lines: string[] = [];
      const r = await trainDiff(model, splits.updateTrain, { method: 'sparse', budgetBytes: 4000, epochs: 1, seed: 3, base: modelToStore(model), tune: 'off', threads, batchSize: 64, onProgress: (l) => lines.push(l) });
      model.dispose();
      return { sha: createHash('sha256').update(r.bytes).digest('hex'), lines };
    };
    try {
      const one = await sha(1);
      const two = await sha(2);
      assert.ok(two.lines.some((l) => /^training on one JavaScript thread, the native kernels on 2 threads/.test(l)), two.lines.join('\n'));
      assert.equal(two.sha, one.sha);
      assert.equal((await sha(2)).sha, two.sha);
    } finally {
      for (const d of [splits.baseTrain, splits.updateTrain, splits.eval]) d.x.dispose();
    }
  });
});

describe('hostile arguments with the pool running', { skip }, () => {
  after(() => setNativeThreads());

  it('a thread count out of range: a typed refusal, the pool unchanged', async () => {
    await initBackend('native', { threads: 2 });
    const addon = loadNativeAddon();
    for (const n of [0, -1, 257]) assert.throws(() => addon.setThreads(n), (e: unknown) => e instanceof ModelFormatError && /threads must be at least 1 and at most 256/.test((e as Error).message));
    assert.equal(nativeBlasInfo().threads, 2);
  });

  it('an idle watch out of range: a typed refusal, the pool unchanged; at 0 (the default: sleep at once) and at 2 ms the same bits', async () => {
    await initBackend('native', { threads: 2 });
    const addon = loadNativeAddon();
    for (const us of [-1, 1000001, 1.5]) assert.throws(() => addon.setThreads(3, us), (e: unknown) => e instanceof ModelFormatError && /idle microseconds must be a whole number from 0 to 1000000/.test((e as Error).message), String(us));
    assert.equal(nativeBlasInfo().threads, 2);
    const [M, N, K] = [300, 200, 150];
    const a = randomValues(M * K, 1);
    const b = randomValues(K * N, 2);
    const product = () => {
      const c = new Float32Array(M * N);
      addon.sgemmBatched(false, false, 1, M, N, K, a, 0, b, 0, c);
      return Buffer.from(c.buffer);
    };
    addon.setThreads(2, 0);
    const asleep = product();
    addon.setThreads(2, 2000);
    assert.ok(product().equals(asleep));
    addon.setThreads(3);
    assert.ok(product().equals(asleep), 'a new pool keeps the watch asked for, and the bits');
  });

  it('a pool whose new threads cannot start: a typed refusal, the threads before kept (the old pool was stopped first, leaving one thread)', { skip: existsSync('/usr/bin/prlimit') ? false : 'prlimit (util-linux) is not installed' }, (t) => {
    // The child starts with a 1 GiB soft stack limit (glibc's size for every new thread's stack),
    // caps its address space a mebibyte short of one more stack, and asks for more threads: none
    // fits, while Node and V8 keep most of a gibibyte for their own allocations (a room of tens of
    // mebibytes was too little on a busy runtime: a compile or GC there failed first).
    const hard = /Max stack size\s+\S+\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    const stack = Math.min(2 ** 30, hard === undefined ? Infinity : Number(hard));
    if (stack < 256 * 2 ** 20) return t.skip(`the hard stack limit (${stack} bytes) leaves too little room beside a thread's stack to test this`);
    const child = spawnSync('prlimit', [`--stack=${stack}:`, process.execPath, '--jitless', '--conditions=neural-diff-source', '--import', 'tsx', 'test/helpers/native-memory-child.ts', 'setThreads', '2', '8'], { encoding: 'utf8' });
    assert.equal(child.status, 0, `${child.stderr}\n(signal ${child.signal}; stack limit ${stack} bytes)`);
    const out = JSON.parse(child.stdout) as { threw: string | null; message: string; poolThreads: number };
    assert.equal(out.threw, 'ModelFormatError', child.stdout);
    assert.match(out.message, /could not start the kernel threads/);
    assert.match(out.message, /The machine gave no more memory or threads: free memory, train on fewer threads/, 'not sent to check the model\'s shapes');
    assert.equal(out.poolThreads, 2, 'the pool of before, still running');
  });

  it('a machine with more cores than the pool takes: the default is the most it takes (256), a count above it a UsageError saying so', async () => {
    await initBackend('native', { threads: 2 });
    const real = os.availableParallelism;
    (os as { availableParallelism: () => number }).availableParallelism = () => 384;
    try {
      assert.equal(setNativeThreads(), 256);
      assert.equal(nativeBlasInfo().threads, 256);
      assert.throws(() => setNativeThreads(300), (e: unknown) => e instanceof UsageError && /at most 256/.test((e as Error).message));
      assert.equal(nativeBlasInfo().threads, 256, 'the pool unchanged');
      // A training run not told its threads (every core, bounded by the batch): the most the pool takes.
      setNativeThreads(2);
      const said: string[] = [];
      const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 2 })] });
      assert.equal(await startTrainingThreads(model, { threads: 384, backend: NATIVE, asked: false, progress: (m) => said.push(m) }), undefined);
      assert.equal(nativeBlasInfo().threads, 256);
      assert.match(said.join('\n'), /the native kernels on 256 threads/);
      await assert.rejects(startTrainingThreads(model, { threads: 384, backend: NATIVE, asked: true, progress: () => {} }), UsageError);
      // Giving the threads back after a worker pool of more.
      stopTrainingThreads({ threads: 384, dispose: () => {} } as unknown as TrainingPool, NATIVE);
      assert.equal(nativeBlasInfo().threads, 256);
      model.dispose();
    } finally {
      (os as { availableParallelism: () => number }).availableParallelism = real;
      setNativeThreads(2);
    }
  });

  it('short views and overflowing sizes: refused before any thread writes', async () => {
    await initBackend('native', { threads: 2 });
    const addon = loadNativeAddon();
    const c = new Float32Array(4);
    assert.throws(() => addon.sgemmBatched(false, false, 4, 512, 512, 512, new Float32Array(512 * 512 * 4), 512 * 512, new Float32Array(512 * 512), 0, c), ModelFormatError);
    assert.deepEqual(c, new Float32Array(4), 'the output is untouched');
    const g = Int32Array.of(8, 16, 16, 16, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1);
    const y = new Float32Array(10);
    assert.throws(() => addon.conv2dForward(new Float32Array(8 * 16 * 16 * 16), new Float32Array(3 * 3 * 16 * 32), y, g, 1e6), ModelFormatError);
    assert.throws(() => addon.conv2dBackpropInput(new Float32Array(8 * 16 * 16 * 32), new Float32Array(3 * 3 * 16 * 32), new Float32Array(7), g, 1e6), ModelFormatError);
    assert.throws(() => addon.biasActivation(new Float32Array(1 << 17), new Float32Array(3), 1), ModelFormatError);
    assert.deepEqual(y, new Float32Array(10));
  });
});

describe('what the keyword step hands to the pool at 2 threads', { skip }, () => {
  after(() => setNativeThreads());

  /** Calls and parts the pool's workers shared during `f`. */
  const shared = (f: () => void) => {
    const addon = loadNativeAddon();
    const before = addon.info();
    f();
    const now = addon.info();
    return { calls: now.poolCalls - before.poolCalls, parts: now.poolParts - before.poolParts };
  };
  const s = Float32Array.of(0.9, 0.1, 0.999, 0.001, 0.1, 0.001, 1e-7, -1e-3);
  const adam = (n: number) => {
    const v = () => randomValues(n, 5).map(Math.abs);
    return shared(() => loadNativeAddon().adamStep(randomValues(n, 6), randomValues(n, 7), v(), v(), new Float32Array(n), s));
  };
  // The keyword model at batch 64: its two max pools (2 along time), its per-layer Adam steps, a
  // forward convolution's epilogue (1,600 rows of 96 channels).
  const poolGeometry = (B: number, H: number, OH: number, C: number) => Int32Array.of(B, H, 1, C, OH, 1, 2, 1, 2, 1, 0, 0);

  it('a long pass (Adam on the hidden layer\'s 295k weights, a large pool, a long epilogue) in parts from its shape, more than the threads: a late thread delays one small part', async () => {
    await initBackend('native', { threads: 2 });
    const addon = loadNativeAddon();
    assert.deepEqual(adam(1152 * 256), { calls: 1, parts: 8 });
    const g = poolGeometry(256, 25, 12, 128);
    const x = randomValues(256 * 25 * 128, 3);
    const dy = randomValues(256 * 12 * 128, 4);
    assert.deepEqual(shared(() => addon.maxPool(x, new Float32Array(dy.length), g)), { calls: 1, parts: 8 });
    assert.deepEqual(shared(() => addon.maxPoolGrad(x, dy, new Float32Array(x.length), g, x)), { calls: 1, parts: 8 });
    assert.deepEqual(shared(() => addon.biasActivation(randomValues(1600 * 96, 8), randomValues(96, 9), 1)), { calls: 1, parts: 8 });
  });

  it('short passes (Adam on conv1-conv4, the keyword pools at batch 64) and every kernel at 1 thread stay on the calling thread: a sleeping thread wakes too late for them', async () => {
    await initBackend('native', { threads: 2 });
    const addon = loadNativeAddon();
    for (const n of [5 * 40 * 96, 3 * 96 * 128, 3 * 128 * 160, 256 * 12]) assert.deepEqual(adam(n), { calls: 0, parts: 0 }, `Adam on ${n} values`);
    for (const [H, OH, C] of [[25, 12, 128], [12, 6, 160]]) {
      const g = poolGeometry(64, H, OH, C);
      const x = randomValues(64 * H * C, 3);
      assert.deepEqual(shared(() => addon.maxPoolGrad(x, randomValues(64 * OH * C, 4), new Float32Array(x.length), g, x)), { calls: 0, parts: 0 });
    }
    await initBackend('native', { threads: 1 });
    assert.deepEqual(adam(1152 * 256), { calls: 0, parts: 0 });
    assert.equal(addon.info().poolCalls, 0, 'no pool at 1 thread');
  });
});
