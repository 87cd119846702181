/**
 * The wasm kernel fixes must compute what tfjs' reference cpu backend computes: every gradient is
 * evaluated on both backends from the same inputs and compared. Also: the backend switch itself
 * (idempotent, any cwd, clear errors), the side-by-side stock wasm backend, no leaked wasm memory,
 * and a tiny conv net whose loss curve matches across backends.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import os from 'node:os';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { initBackend, initStockWasmBackend, STOCK_WASM_BACKEND } from '../src/engine/backend.ts';
import { simdKernelSwitch, trainKernelsUnavailable } from '../src/engine/kernels/train-kernels-simd.ts';
import { kernelLimits, type WasmBackendLike } from '../src/engine/kernels/util.ts';
import { MissingDependencyError } from '../src/core/errors.ts';
import { rand, randomValues, relError } from './helpers/kernel-tests.ts';


/** Values in {0, 1, 2}: many equal neighbours, where max-pool tie-breaking shows. */
function randTies(shape: number[], seed: number): tf.Tensor {
  const v = randomValues(shape.reduce((a, b) => a * b, 1), seed).map((x) => Math.max(0, Math.round(x * 2)));
  return tf.tensor(v, shape);
}

/** Run `f` on cpu and on our wasm, returning the outputs' values for each. */
async function onBoth(f: () => tf.Tensor[]): Promise<{ cpu: Float32Array[]; wasm: Float32Array[] }> {
  const run = () => {
    const outs = tf.tidy(f);
    const values = outs.map((t) => Float32Array.from(t.dataSync()));
    tf.dispose(outs);
    return values;
  };
  await initBackend('cpu');
  const cpu = run();
  await initBackend('wasm');
  const wasm = run();
  return { cpu, wasm };
}


async function assertSame(label: string, f: () => tf.Tensor[], tol = 1e-5): Promise<void> {
  const { cpu, wasm } = await onBoth(f);
  assert.equal(wasm.length, cpu.length);
  cpu.forEach((expected, i) => {
    const scale = expected.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(scale > 0, `${label}: output ${i} is all zeros, the comparison would prove nothing`);
    const err = relError(wasm[i], expected);
    assert.ok(err <= tol, `${label}: output ${i} differs from cpu by ${err.toExponential(2)} (relative)`);
  });
}

/** Gradients of sum(f(...xs) * r) for a fixed random r, so every output element matters. */
function gradsOf(f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[], seed: number): tf.Tensor[] {
  const probe = f(...xs);
  const r = rand(probe.shape, seed);
  const g = tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.mul(f(...ys), r)));
  return [probe, ...g(xs)];
}

describe('initBackend', () => {
  it('activates wasm idempotently and registers the fixes', async () => {
    assert.equal(await initBackend('wasm'), 'wasm');
    assert.equal(await initBackend('wasm'), 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
    for (const k of ['Conv2DBackpropFilter', 'UnsortedSegmentSum', 'DepthwiseConv2dNativeBackpropFilter']) {
      assert.ok(tf.getKernel(k, 'wasm'), `${k} should be registered for wasm`);
    }
    assert.equal(await initBackend('cpu'), 'cpu');
  });

  it('finds the .wasm files from any working directory', async () => {
    const backendUrl = new URL('../src/engine/backend.ts', import.meta.url).href;
    const script =
      `const { initBackend } = await import(${JSON.stringify(backendUrl)});` +
      `const tf = await import(${JSON.stringify(import.meta.resolve('@tensorflow/tfjs'))});` +
      `const name = await initBackend('wasm'); await initBackend('wasm');` +
      `console.log(name, tf.matMul(tf.ones([2, 3]), tf.ones([2, 4]), true).sum().dataSync()[0]);`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', script],
      { cwd: os.tmpdir() },
    );
    assert.match(stdout, /^wasm 24$/m);
  });

  it('explains how to get the tensorflow backend when tfjs-node is missing', async (t) => {
    try {
      await import('@tensorflow/tfjs-node' as string);
      t.skip('tfjs-node is installed here');
      return;
    } catch {
      // expected on this machine
    }
    await assert.rejects(initBackend('tensorflow'), (e: unknown) => e instanceof MissingDependencyError && /run `npm i @tensorflow\/tfjs-node`.*or use the wasm backend \(--backend wasm\)/.test(e.message));
  });

  it('rejects more than one wasm thread under Node instead of ignoring it', async () => {
    await assert.rejects(initBackend('wasm', { threads: 2 }), /one thread under Node/);
    assert.equal(await initBackend('wasm', { threads: 1 }), 'wasm');
  });
});

describe('stock wasm side by side', () => {
  it('runs the stock kernels on their own module and leaves the fixed wasm intact', async () => {
    const a = randomValues(6 * 5, 1);
    const b = randomValues(6 * 4, 2);
    const product = () => tf.tidy(() => tf.matMul(tf.tensor(a, [6, 5]), tf.tensor(b, [6, 4]), true, false).dataSync());
    await initBackend('cpu');
    const expected = Float32Array.from(product());
    assert.equal(await initStockWasmBackend(), STOCK_WASM_BACKEND);
    assert.ok(relError(Float32Array.from(product()), expected) < 1e-6);
    const x = tf.ones([1, 5, 5, 2]) as tf.Tensor4D;
    const w = tf.ones([3, 3, 2, 2]) as tf.Tensor4D;
    assert.throws(
      () => tf.grads((w2: tf.Tensor) => tf.conv2d(x, w2 as tf.Tensor4D, 1, 'same').sum())([w]),
      /Conv2DBackpropFilter.*not registered.*wasm-stock/,
    );
    tf.dispose([x, w]);
    // Switching back must rebind the shared stock kernels to the first module.
    await initBackend('wasm');
    assert.ok(relError(Float32Array.from(product()), expected) < 1e-6);
    assert.equal(await initStockWasmBackend(), STOCK_WASM_BACKEND);
    assert.ok(relError(Float32Array.from(product()), expected) < 1e-6);
    await initBackend('wasm');
  });
});

describe('BatchMatMul / _FusedMatMul on wasm match cpu', () => {
  // tfjs cannot differentiate a matMul that broadcasts batch dims, so those compare forward only.
  const cases: Array<{ a: number[]; b: number[]; ta: boolean; tb: boolean; forwardOnly?: boolean }> = [
    { a: [37, 53], b: [53, 29], ta: false, tb: false },
    { a: [53, 37], b: [53, 29], ta: true, tb: false },
    { a: [37, 53], b: [29, 53], ta: false, tb: true },
    { a: [53, 37], b: [29, 53], ta: true, tb: true },
    { a: [8, 300], b: [500, 300], ta: false, tb: true }, // dx = dy·Wᵀ of a dense layer: computed as (W·dyᵀ)ᵀ
    { a: [3, 40, 41], b: [3, 41, 42], ta: false, tb: false }, // batched, one XNNPACK call per item
    { a: [3, 41, 40], b: [3, 42, 41], ta: true, tb: true },
    { a: [1, 40, 41], b: [4, 42, 41], ta: false, tb: true, forwardOnly: true },
    { a: [2, 3, 41, 40], b: [41, 42], ta: true, tb: false, forwardOnly: true },
    { a: [3, 41, 40], b: [1, 41, 42], ta: true, tb: false, forwardOnly: true },
    { a: [5, 4, 6], b: [5, 7, 6], ta: false, tb: true }, // small items: stock loop
  ];
  for (const c of cases) {
    it(`a${JSON.stringify(c.a)}${c.ta ? 'ᵀ' : ''} · b${JSON.stringify(c.b)}${c.tb ? 'ᵀ' : ''}`, async () => {
      await assertSame('matMul', () => {
        const f = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b, c.ta, c.tb);
        const inputs = [rand(c.a, 11), rand(c.b, 12)];
        return c.forwardOnly ? [f(inputs[0], inputs[1])] : gradsOf(f, inputs, 13);
      });
    });
  }

  it('fused matMul with bias, relu and transposes', async () => {
    await assertSame('fused', () =>
      gradsOf(
        (a, b, bias) => tf.fused.matMul({ a, b, transposeA: true, transposeB: true, bias, activation: 'relu' }),
        [rand([33, 20], 21), rand([25, 33], 22), rand([25], 23)],
        24,
      ),
    );
  });
});

describe('conv2d gradients on wasm match cpu', () => {
  const cases: Array<{ x: number[]; k: [number, number]; co: number; s: number | [number, number]; pad: 'same' | 'valid' | number[][] }> = [
    { x: [2, 9, 8, 3], k: [3, 3], co: 4, s: 1, pad: 'same' },
    { x: [3, 10, 7, 2], k: [3, 3], co: 5, s: 1, pad: 'valid' },
    { x: [2, 11, 9, 3], k: [5, 5], co: 2, s: 1, pad: 'same' },
    { x: [2, 6, 7, 4], k: [1, 1], co: 3, s: 1, pad: 'valid' },
    { x: [2, 9, 9, 3], k: [3, 3], co: 4, s: 2, pad: 'same' },
    { x: [3, 10, 11, 2], k: [5, 5], co: 3, s: 2, pad: 'valid' },
    { x: [2, 10, 8, 2], k: [1, 1], co: 3, s: 2, pad: 'same' },
    { x: [2, 9, 10, 3], k: [3, 5], co: 2, s: [2, 1], pad: 'same' },
    { x: [1, 49, 40, 1], k: [3, 3], co: 8, s: 1, pad: 'same' }, // single-channel spectrogram input
    { x: [2, 8, 7, 3], k: [4, 2], co: 3, s: 1, pad: 'same' }, // even kernel: uneven 'same' padding
    { x: [2, 7, 6, 2], k: [3, 3], co: 2, s: 1, pad: [[0, 0], [2, 0], [0, 1], [0, 0]] },
    { x: [2, 6, 6, 2], k: [3, 3], co: 2, s: 1, pad: [[0, 0], [3, 1], [0, 2], [0, 0]] }, // pad > k-1: col2im path
  ];
  for (const c of cases) {
    it(`x${JSON.stringify(c.x)} k${c.k} co${c.co} s${c.s} ${JSON.stringify(c.pad)}`, async () => {
      const w = [c.k[0], c.k[1], c.x[3], c.co];
      await assertSame('conv2d', () =>
        gradsOf(
          (x, f) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, c.s, c.pad as 'same'),
          [rand(c.x, 31), rand(w, 32)],
          33,
        ),
      );
    });
  }

  it('batches larger than the column budget go in chunks', async () => {
    const saved = kernelLimits.columnFloats;
    kernelLimits.columnFloats = 2000; // forces one or two batch items per chunk
    try {
      for (const s of [1, 2]) {
        await assertSame(`chunked stride ${s}`, () =>
          gradsOf((x, f) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, s, 'same'), [rand([5, 8, 7, 3], 41), rand([3, 3, 3, 4], 42)], 43),
        );
      }
    } finally {
      kernelLimits.columnFloats = saved;
    }
  });

  it('layers conv2d with fused bias and relu', async () => {
    await assertSame('fused conv2d', () =>
      gradsOf(
        (x, f, bias) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: f as tf.Tensor4D, strides: 1, pad: 'same', bias, activation: 'relu' }),
        [rand([2, 7, 6, 3], 51), rand([3, 3, 3, 4], 52), rand([4], 53)],
        54,
      ),
    );
  });
});

describe('depthwise conv2d gradients on wasm match cpu', () => {
  const cases: Array<{ x: number[]; k: number; mult: number; s: number; pad: 'same' | 'valid' }> = [
    { x: [2, 8, 7, 3], k: 3, mult: 1, s: 1, pad: 'same' },
    { x: [2, 9, 9, 2], k: 3, mult: 2, s: 2, pad: 'valid' },
    { x: [3, 7, 8, 4], k: 5, mult: 1, s: 2, pad: 'same' },
    { x: [2, 5, 6, 3], k: 1, mult: 3, s: 1, pad: 'valid' },
  ];
  for (const c of cases) {
    it(`x${JSON.stringify(c.x)} k${c.k} mult${c.mult} s${c.s} ${c.pad}`, async () => {
      await assertSame('depthwise', () =>
        gradsOf(
          (x, f) => tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, c.s, c.pad),
          [rand(c.x, 61), rand([c.k, c.k, c.x[3], c.mult], 62)],
          63,
        ),
      );
    });
  }
});

describe('depthwise gradients refuse dilation', () => {
  it('throws a clear error instead of computing a wrong gradient', async () => {
    await initBackend('wasm');
    const x = tf.ones([1, 6, 6, 2]);
    const dy = tf.ones([1, 6, 6, 2]);
    assert.throws(
      () =>
        tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy }, {
          strides: 1,
          dilations: 2,
          pad: 'same',
          filterShape: [3, 3, 2, 1],
        }),
      /dilation 1 only/,
    );
    tf.dispose([x, dy]);
  });
});

describe('max-pool gradient on wasm matches cpu', () => {
  const cases: Array<{ x: number[]; size: number; s: number; pad: 'same' | 'valid' }> = [
    { x: [2, 9, 8, 3], size: 2, s: 2, pad: 'valid' },
    { x: [2, 9, 8, 3], size: 2, s: 2, pad: 'same' },
    { x: [2, 7, 7, 2], size: 3, s: 1, pad: 'same' },
    { x: [3, 10, 9, 4], size: 3, s: 2, pad: 'valid' },
  ];
  for (const c of cases) {
    it(`x${JSON.stringify(c.x)} pool ${c.size} s${c.s} ${c.pad}, with ties`, async () => {
      await assertSame('maxPool', () =>
        gradsOf(
          (x) => tf.maxPool(x as tf.Tensor4D, c.size, c.s, c.pad),
          [randTies(c.x, 71)],
          72,
        ),
      );
    });
  }
});

describe('UnsortedSegmentSum on wasm matches cpu', () => {
  it('sums rows into segments and drops out-of-range ids', async () => {
    const ids = [0, 4, 4, -1, 2, 7, 0, 3, 3, 3, 5];
    await assertSame('segmentSum', () => [
      tf.unsortedSegmentSum(rand([ids.length], 81), tf.tensor1d(ids, 'int32'), 6),
      tf.unsortedSegmentSum(rand([ids.length, 3, 2], 82), tf.tensor1d(ids, 'int32'), 6),
    ]);
  });

  it('sums int32 values', async () => {
    const { cpu, wasm } = await onBoth(() => [
      tf.unsortedSegmentSum(tf.tensor1d([5, -2, 7, 1, 9], 'int32'), tf.tensor1d([1, 0, 1, 3, 9], 'int32'), 4).toFloat(),
    ]);
    assert.deepEqual(Array.from(wasm[0]), Array.from(cpu[0]));
    assert.deepEqual(Array.from(wasm[0]), [-2, 12, 0, 1]);
  });

  it('gives the hashed-bucket gradient: W = W0 + sign * gather(B, bucket)', async () => {
    const n = 600;
    const buckets = 37;
    const bucket = Array.from({ length: n }, (_, i) => (i * 2654435761) % buckets);
    const sign = Array.from({ length: n }, (_, i) => ((i * 40503) & 1 ? 1 : -1));
    await assertSame('hashed', () => {
      const w0 = rand([20, 30], 91);
      const r = rand([20, 30], 92);
      const loss = (b: tf.Tensor) =>
        tf.sum(tf.mul(tf.square(tf.add(w0, tf.reshape(tf.mul(tf.tensor1d(sign), tf.gather(b, tf.tensor1d(bucket, 'int32'))), [20, 30]))), r));
      return [tf.grad(loss)(rand([buckets], 93))];
    });
  });
});

describe('Identity on wasm shares its input\'s data', () => {
  it('a clone is the same data, one more reference: it outlives the original, and strings still copy', async () => {
    await initBackend('wasm');
    const a = tf.tensor([1.5, -2, 3]);
    const idsBefore = tf.engine().backend.numDataIds();
    const b = tf.clone(a);
    assert.equal(b.dataId, a.dataId);
    assert.equal(tf.engine().backend.numDataIds(), idsBefore, 'no new memory');
    a.dispose();
    assert.deepEqual(Array.from(await b.data()), [1.5, -2, 3]);
    b.dispose();
    const s = tf.tensor(['x', 'y']);
    const t = tf.clone(s);
    s.dispose();
    assert.deepEqual(await t.data(), ['x', 'y']);
    t.dispose();
  });
});

describe('Slice on wasm copies only the slice and matches cpu', () => {
  it('contiguous and strided slices of every rank, float32, int32 and bool, with -1 sizes and empty slices, equal cpu exactly', async () => {
    const cases: [number[], number[], number[]][] = [
      [[10], [3], [4]],
      [[6, 5], [2, 0], [3, 5]], // whole rows: contiguous
      [[6, 5], [1, 2], [4, 2]], // a block: strided
      [[6, 5], [0, 4], [6, 1]], // one column
      [[4, 3, 5], [1, 1, 1], [2, -1, 3]],
      [[3, 4, 5, 2], [1, 0, 2, 1], [2, 4, 3, 1]],
      [[3, 4, 5, 2], [2, 0, 0, 0], [1, -1, -1, -1]],
      [[3, 4], [1, 1], [0, 2]], // empty
    ];
    const { cpu, wasm } = await onBoth(() => cases.flatMap(([shape, begin, size], i) => {
      const x = rand(shape, 200 + i);
      return [
        tf.slice(x, begin, size),
        tf.slice(tf.cast(tf.mul(x, 100), 'int32'), begin, size).toFloat(),
        tf.slice(tf.greater(x, 0), begin, size).toFloat(),
      ];
    }));
    assert.equal(wasm.length, cpu.length);
    cpu.forEach((expected, i) => assert.deepEqual(Array.from(wasm[i]), Array.from(expected), `case ${Math.floor(i / 3)}, dtype ${['float32', 'int32', 'bool'][i % 3]}`));
    assert.ok(cpu.some((v) => v.length > 0 && v.some((x) => x !== 0)));
  });

  it('does not read the whole input: no readSync of it', async () => {
    await initBackend('wasm');
    const backend = tf.backend() as unknown as { readSync: (...a: unknown[]) => unknown };
    const x = rand([64, 100], 210);
    const read = backend.readSync;
    let reads = 0;
    backend.readSync = (...a: unknown[]) => {
      reads++;
      return read.apply(backend, a);
    };
    try {
      const parts = [tf.slice(x, [8, 0], [8, 100]), tf.slice(x, [0, 10], [64, 5])];
      backend.readSync = read;
      assert.deepEqual(Array.from(parts[0].dataSync()), Array.from(x.dataSync()).slice(800, 1600));
      tf.dispose(parts);
    } finally {
      backend.readSync = read;
      x.dispose();
    }
    assert.equal(reads, 0);
  });
});

describe('wasm kernels free their intermediates', () => {
  it('leaves the wasm data count unchanged after a conv training step', async () => {
    await initBackend('wasm');
    const x = rand([3, 9, 8, 2], 101) as tf.Tensor4D;
    const w = tf.variable(rand([3, 3, 2, 4], 102));
    const step = () =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() =>
          tf.sum(tf.maxPool(tf.conv2d(tf.conv2d(x, w as tf.Tensor4D, 2, 'same'), tf.ones([3, 3, 4, 2]) as tf.Tensor4D, 1, 'same'), 2, 2, 'same')),
        );
        w.assign(tf.sub(w, tf.mul(0.01, grads[w.name])));
        return value.dataSync()[0];
      });
    step();
    const before = tf.engine().backend.numDataIds();
    for (let i = 0; i < 3; i++) step();
    assert.equal(tf.engine().backend.numDataIds(), before);
    tf.dispose([x, w]);
  });
});

describe('end to end: a tiny conv net trains the same on wasm and cpu', () => {
  it('gives the same loss curve over 6 Adam steps', async () => {
    const batch = 6;
    const train = async (backend: 'cpu' | 'wasm'): Promise<number[]> => {
      await initBackend(backend);
      const model = tf.sequential({
        layers: [
          tf.layers.conv2d({ inputShape: [12, 10, 1], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
          tf.layers.maxPooling2d({ poolSize: 2 }),
          tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', activation: 'relu' }),
          tf.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'valid', activation: 'relu' }),
          tf.layers.flatten(),
          tf.layers.dense({ units: 5 }),
        ],
      });
      const init = model.getWeights().map((w, i) => tf.mul(rand(w.shape, 200 + i), 0.5));
      model.setWeights(init);
      tf.dispose(init);
      const x = rand([batch, 12, 10, 1], 301);
      const y = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 1], 'int32'), 5);
      const opt = tf.train.adam(0.01);
      const losses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const loss = opt.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar, true);
        losses.push(loss!.dataSync()[0]);
        loss!.dispose();
      }
      tf.dispose([x, y]);
      opt.dispose();
      model.dispose();
      return losses;
    };
    const cpu = await train('cpu');
    const wasm = await train('wasm');
    assert.ok(cpu[5] < cpu[0] - 0.05, `the net should learn: ${cpu.map((v) => v.toFixed(4))}`);
    cpu.forEach((c, i) => {
      assert.ok(Math.abs(wasm[i] - c) <= 1e-4 * Math.max(1, Math.abs(c)), `step ${i}: wasm ${wasm[i]} vs cpu ${c}`);
    });
  });
});

describe('batch-norm gradient without Tile (src/engine/kernels/batch-norm-grad.ts)', () => {
  // The reference: the same function built from elementary ops, differentiated by tfjs through
  // their own gradients (no FusedBatchNorm involved), on cpu.
  const eps = 1e-3;
  const shapes: number[][] = [[2, 5, 4, 3], [3, 7]];
  for (const shape of shapes) {
    it(`x${JSON.stringify(shape)}: dx, dmean, dvariance, dscale, doffset on wasm and cpu match the elementary-op reference`, async () => {
      const c = shape[shape.length - 1];
      const inputs = () => [rand(shape, 81), rand([c], 82), tf.add(tf.abs(rand([c], 83)), 0.1), rand([c], 84), rand([c], 85)];
      const fused = (x: tf.Tensor, m: tf.Tensor, v: tf.Tensor, s: tf.Tensor, o: tf.Tensor) => tf.batchNorm(x, m as tf.Tensor1D, v as tf.Tensor1D, o as tf.Tensor1D, s as tf.Tensor1D, eps);
      const elementary = (x: tf.Tensor, m: tf.Tensor, v: tf.Tensor, s: tf.Tensor, o: tf.Tensor) => tf.add(tf.mul(tf.mul(tf.sub(x, m), tf.rsqrt(tf.add(v, eps))), s), o);
      await initBackend('cpu');
      const reference = tf.tidy(() => gradsOf(elementary, inputs(), 86)).map((t) => Float32Array.from(t.dataSync()));
      const { cpu, wasm } = await onBoth(() => gradsOf(fused, inputs(), 86));
      reference.forEach((expected, i) => {
        assert.ok(relError(cpu[i], expected) <= 1e-5, `cpu output ${i} differs by ${relError(cpu[i], expected).toExponential(2)}`);
        assert.ok(relError(wasm[i], expected) <= 1e-5, `wasm output ${i} differs by ${relError(wasm[i], expected).toExponential(2)}`);
      });
    });
  }

  it('a MobileNetV2-style step runs no Tile', async () => {
    await initBackend('wasm');
    const x = rand([2, 6, 6, 4], 91);
    const scale = tf.variable(rand([4], 92));
    const { kernels } = await tf.profile(() => {
      const g = tf.grads((a: tf.Tensor, s: tf.Tensor) => tf.sum(tf.relu6(tf.batchNorm(a, tf.zeros([4]), tf.ones([4]), tf.zeros([4]), s as tf.Tensor1D, 1e-3))));
      return g([x, scale]);
    });
    assert.ok(kernels.some((k) => k.name === 'FusedBatchNorm'), 'the forward pass ran FusedBatchNorm');
    assert.equal(kernels.filter((k) => k.name === 'Tile').length, 0);
  });
});

describe('SIMD train kernels (depthwise.c, activation-grad.c, batch-norm-grad.c, max-pool-grad.c) against their JavaScript twins', () => {
  /** Run `f` on wasm with the SIMD kernels and with their JavaScript twins. */
  async function simdAndTwin(f: () => tf.Tensor[]): Promise<{ simd: Float32Array[]; twin: Float32Array[] }> {
    await initBackend('wasm');
    assert.equal(trainKernelsUnavailable(tf.backend() as unknown as WasmBackendLike), null, 'the SIMD kernels load on this runtime');
    const run = () => {
      const outs = tf.tidy(f);
      const values = outs.map((t) => Float32Array.from(t.dataSync()));
      tf.dispose(outs);
      return values;
    };
    const simd = run();
    simdKernelSwitch.enabled = false;
    try {
      return { simd, twin: run() };
    } finally {
      simdKernelSwitch.enabled = true;
    }
  }

  /** Bit for bit (NaN as NaN). */
  function assertSameBits(label: string, actual: Float32Array, expected: Float32Array): void {
    assert.equal(actual.length, expected.length, `${label}: sizes differ`);
    const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
    const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
    for (let i = 0; i < a.length; i++) {
      if (Number.isNaN(expected[i]) && Number.isNaN(actual[i])) continue;
      if (a[i] !== e[i]) assert.fail(`${label}: element ${i} is ${actual[i]}, the reference ${expected[i]}`);
    }
  }

  // Strides 1 and 2 (and mixed), same and valid padding, multipliers 1 to 3, channel counts off
  // the SIMD width, batch 1 to 3, square and non-square kernels.
  const cases: Array<{ x: number[]; k: [number, number]; mult: number; s: number | [number, number]; pad: 'same' | 'valid' }> = [];
  const channels = [3, 5, 8, 1, 7, 6, 9, 4];
  let i = 0;
  for (const s of [1, 2]) {
    for (const pad of ['same', 'valid'] as const) {
      for (const mult of [1, 2]) {
        const c = channels[i % channels.length];
        cases.push({ x: [1 + (i % 3), 7 + (i % 4), 6 + (i % 3), c], k: [3, 3], mult, s, pad });
        i++;
      }
    }
  }
  cases.push({ x: [2, 9, 11, 13], k: [5, 5], mult: 1, s: 2, pad: 'same' });
  cases.push({ x: [3, 8, 9, 5], k: [3, 2], mult: 3, s: [1, 2], pad: 'valid' });
  cases.push({ x: [1, 6, 5, 16], k: [1, 1], mult: 1, s: 1, pad: 'valid' });
  cases.push({ x: [2, 4, 4, 2], k: [5, 5], mult: 2, s: 1, pad: 'same' });

  for (const c of cases) {
    const name = `x${JSON.stringify(c.x)} k${c.k.join('x')} mult${c.mult} s${String(c.s)} ${c.pad}`;
    it(`depthwise gradients ${name}: SIMD equals the JavaScript loops bit for bit, and cpu within 1e-5`, async () => {
      const f = () =>
        gradsOf(
          (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.s, c.pad),
          [rand(c.x, 71), rand([c.k[0], c.k[1], c.x[3], c.mult], 72)],
          73,
        );
      const { simd, twin } = await simdAndTwin(f);
      assert.equal(simd.length, 3);
      simd.forEach((v, j) => assertSameBits(`${name} output ${j}`, v, twin[j]));
      await assertSame(name, f);
    });
  }

  // Boundaries where the masks decide: 0, -0, 6, just past 6, the clip bounds, NaN, infinities;
  // 1003 values, so the SIMD loop's scalar tail runs too.
  function activationInputs(): tf.Tensor[] {
    const x = randomValues(1003, 74).map((v) => v * 8 - 1);
    x.set([0, -0, 6, Math.fround(6 + 1e-6), -1, 0.5, NaN, Infinity, -Infinity, 1e-30, -1e-30, 5.999999]);
    const dy = randomValues(1003, 75);
    dy.set([-1, -2, 3, -4, 5, -0, 2, 1, -1, 0.25, -0.5, Infinity]);
    return [tf.tensor(x), tf.tensor(dy)];
  }
  const activations: Array<{ name: string; f: (x: tf.Tensor) => tf.Tensor; stock: (x: tf.Tensor, dy: tf.Tensor) => tf.Tensor; kernel: string }> = [
    { name: 'relu', f: (x) => tf.relu(x), stock: (x, dy) => tf.mul(dy, tf.cast(tf.step(x), 'float32')), kernel: 'NeuralDiffReluGrad' },
    { name: 'relu6', f: (x) => tf.relu6(x), stock: (x, dy) => tf.mul(dy, tf.cast(tf.mul(tf.lessEqual(x, 6), tf.step(x)), 'float32')), kernel: 'NeuralDiffRelu6Grad' },
    {
      name: 'clipByValue(-1, 0.5)',
      f: (x) => tf.clipByValue(x, -1, 0.5),
      stock: (x, dy) => tf.where(tf.logicalAnd(tf.greaterEqual(x, -1), tf.lessEqual(x, 0.5)), dy, tf.zerosLike(dy)),
      kernel: 'NeuralDiffClipByValueGrad',
    },
  ];
  for (const a of activations) {
    it(`${a.name} gradient: one kernel, SIMD equals its JavaScript twin and tfjs' own formula bit for bit`, async () => {
      const grad = () => {
        const [x, dy] = activationInputs();
        return [tf.grad((v: tf.Tensor) => a.f(v))(x, dy)];
      };
      const { simd, twin } = await simdAndTwin(grad);
      const stock = tf.tidy(() => {
        const [x, dy] = activationInputs();
        return Float32Array.from(a.stock(x, dy).dataSync());
      });
      assertSameBits(`${a.name} SIMD vs twin`, simd[0], twin[0]);
      assertSameBits(`${a.name} SIMD vs tfjs`, simd[0], stock);
      assert.ok(simd[0].some((v) => v === 0) && simd[0].some((v) => v !== 0 && !Number.isNaN(v)), 'the mask both keeps and drops');
      const [x, dy] = activationInputs();
      const { kernels } = await tf.profile(() => tf.grad((v: tf.Tensor) => a.f(v))(x, dy));
      const names = kernels.map((k) => k.name);
      assert.ok(names.includes(a.kernel), `the gradient runs ${a.kernel}: ${names.join(', ')}`);
      for (const gone of ['Step', 'Select', 'LogicalAnd', 'GreaterEqual', 'LessEqual', 'ZerosLike', 'Cast']) {
        assert.ok(!names.includes(gone), `tfjs' ${gone} still runs: ${names.join(', ')}`);
      }
      tf.dispose([x, dy]);
    });
  }

  it('a small depthwise + ReLU6 model: every weight gradient on wasm (SIMD kernels) equals the cpu backend within 1e-5', async () => {
    const f = () => {
      const model = tf.sequential({
        layers: [
          tf.layers.depthwiseConv2d({ inputShape: [9, 8, 5], kernelSize: 3, strides: 2, padding: 'same', depthMultiplier: 1 }),
          tf.layers.reLU({ maxValue: 6 }),
          tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'valid', depthMultiplier: 2, activation: 'relu6' }),
          tf.layers.conv2d({ filters: 3, kernelSize: 1, activation: 'relu' }),
          tf.layers.flatten(),
          tf.layers.dense({ units: 4 }),
        ],
      });
      model.setWeights(model.getWeights().map((w, j) => tf.mul(rand(w.shape, 400 + j), 2)));
      const x = tf.mul(rand([3, 9, 8, 5], 410), 4);
      const y = tf.oneHot(tf.tensor1d([0, 3, 1], 'int32'), 4);
      const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar);
      const out = model.trainableWeights.map((w) => grads[w.originalName]);
      model.dispose();
      return out;
    };
    await assertSame('depthwise + ReLU6 model', f);
  });
  // Channel counts on and off the SIMD width, overlapping and gapped windows, same and valid
  // padding, ties, NaN and -Infinity in the windows, one-row (MaxPooling1D) inputs.
  const poolCases: Array<{ x: number[]; size: [number, number]; s: [number, number]; pad: 'same' | 'valid' }> = [
    { x: [2, 9, 8, 3], size: [2, 2], s: [2, 2], pad: 'valid' },
    { x: [2, 9, 8, 8], size: [2, 2], s: [2, 2], pad: 'same' },
    { x: [2, 7, 7, 13], size: [3, 3], s: [1, 1], pad: 'same' },
    { x: [3, 10, 9, 4], size: [3, 2], s: [2, 3], pad: 'valid' },
    { x: [4, 1, 25, 128], size: [1, 2], s: [1, 2], pad: 'valid' },
    { x: [1, 5, 5, 6], size: [2, 2], s: [3, 3], pad: 'valid' },
  ];
  for (const c of poolCases) {
    it(`max-pool gradient x${JSON.stringify(c.x)} pool ${c.size} s${c.s} ${c.pad}: SIMD equals its JavaScript twin bit for bit`, async () => {
      const grad = () => {
        const values = randomValues(c.x.reduce((a, b) => a * b, 1), 80).map((v) => Math.round(v * 6) / 2);
        values.set([NaN, -Infinity, Infinity, NaN, -Infinity, -Infinity, -Infinity, -Infinity]);
        const x = tf.tensor(values, c.x);
        const probe = tf.maxPool(x as tf.Tensor4D, c.size, c.s, c.pad);
        return [tf.grad((v: tf.Tensor) => tf.maxPool(v as tf.Tensor4D, c.size, c.s, c.pad))(x, rand(probe.shape, 81))];
      };
      const { simd, twin } = await simdAndTwin(grad);
      assertSameBits('max-pool gradient, SIMD vs twin', simd[0], twin[0]);
      assert.ok(simd[0].some((v) => v !== 0), 'some input receives a gradient');
    });
  }

  it('a batch norm whose variance broadcasts (shape [1]) keeps tfjs\' ops, with their values', async () => {
    const grad = () => {
      const x = rand([2, 3, 3, 4], 710);
      const f = (a: tf.Tensor, s: tf.Tensor) => tf.batchNorm(a, rand([4], 711) as tf.Tensor1D, tf.add(tf.abs(rand([1], 712)), 0.1) as tf.Tensor1D, rand([4], 713) as tf.Tensor1D, s as tf.Tensor1D, 1e-3);
      return tf.grads(f)([x, rand([4], 714)], rand([2, 3, 3, 4], 715));
    };
    await initBackend('wasm');
    const fused = tf.tidy(grad).map((t) => Float32Array.from(t.dataSync()));
    simdKernelSwitch.fuseBatchNormGrads = false;
    try {
      const ops = tf.tidy(grad).map((t) => Float32Array.from(t.dataSync()));
      fused.forEach((v, i) => assertSameBits(`output ${i}`, v, ops[i]));
    } finally {
      simdKernelSwitch.fuseBatchNormGrads = true;
    }
  });

  // Sums over every axis but the last (bias gradients), on and off the SIMD width, keepDims, and
  // reductions that keep the stock kernel (inner axes, all axes, int32).
  const sumCases: Array<{ shape: number[]; axis: number | number[]; keepDims?: boolean; dtype?: 'int32' }> = [
    { shape: [64, 1, 25, 128], axis: [0, 1, 2] },
    { shape: [37, 13], axis: 0 },
    { shape: [5, 4, 3], axis: [1, 0], keepDims: true },
    { shape: [9, 1], axis: [-2] },
    { shape: [4, 6, 7], axis: [1, 2] },
    { shape: [4, 6, 7], axis: [0, 1, 2] },
    { shape: [12, 5], axis: 0, dtype: 'int32' },
  ];
  for (const c of sumCases) {
    it(`Sum x${JSON.stringify(c.shape)} over ${JSON.stringify(c.axis)}${c.keepDims ? ' keepDims' : ''}${c.dtype ? ` ${c.dtype}` : ''}: our kernel, its twin and the stock kernel agree bit for bit`, async () => {
      const run = () => {
        const values = randomValues(c.shape.reduce((a, b) => a * b, 1), 90).map((v) => (c.dtype ? Math.round(v * 100) : v * 1000 - 500));
        return [tf.sum(tf.tensor(values, c.shape, c.dtype ?? 'float32'), c.axis, c.keepDims)];
      };
      const { simd, twin } = await simdAndTwin(() => run().map((t) => tf.cast(t, 'float32')));
      simdKernelSwitch.fuseSums = false;
      let stock: Float32Array;
      try {
        stock = tf.tidy(() => Float32Array.from(tf.cast(run()[0], 'float32').dataSync()));
      } finally {
        simdKernelSwitch.fuseSums = true;
      }
      assertSameBits('Sum, SIMD vs twin', simd[0], twin[0]);
      assertSameBits('Sum, ours vs stock', simd[0], stock);
    });
  }

  // Channel counts off the SIMD width (1, 3, 13) and on it (8, 16), rank 2 and 4; the gradients of
  // x, scale and offset. (tfjs 4.22 cannot differentiate a batch norm without scale at all.)
  for (const shape of [[2, 5, 4, 13], [3, 3, 3, 8], [9, 1], [4, 16], [1, 6, 5, 3], [2, 32, 32, 24]]) {
    it(`batch-norm gradients x${JSON.stringify(shape)}: one kernel each, SIMD equals its JavaScript twin and tfjs' ops bit for bit`, async () => {
      const c = shape[shape.length - 1];
      const grad = () => {
        const x = tf.mul(rand(shape, 700), 3);
        const [mean, variance, offset, scale] = [rand([c], 701), tf.add(tf.abs(rand([c], 702)), 0.05), rand([c], 703), rand([c], 704)];
        const dy = rand(shape, 705);
        const f = (a: tf.Tensor, o: tf.Tensor, s: tf.Tensor) => tf.batchNorm(a, mean as tf.Tensor1D, variance as tf.Tensor1D, o as tf.Tensor1D, s as tf.Tensor1D, 1e-3);
        return tf.grads(f)([x, offset, scale], dy);
      };
      const { simd, twin } = await simdAndTwin(grad);
      simdKernelSwitch.fuseBatchNormGrads = false;
      simdKernelSwitch.fuseSums = false;
      let ops: Float32Array[];
      try {
        ops = tf.tidy(grad).map((t) => Float32Array.from(t.dataSync()));
      } finally {
        simdKernelSwitch.fuseBatchNormGrads = true;
        simdKernelSwitch.fuseSums = true;
      }
      simd.forEach((values, i) => {
        assertSameBits(`output ${i}, SIMD vs twin`, values, twin[i]);
        assertSameBits(`output ${i}, SIMD vs tfjs' ops`, values, ops[i]);
        assert.ok(values.some((v) => v !== 0), `output ${i} is not all zeros`);
      });
      const { kernels } = await tf.profile(() => tf.tidy(grad));
      const names = kernels.map((k) => k.name);
      for (const ours of ['NeuralDiffBatchNormInputGrad', 'NeuralDiffBatchNormScaleGrad']) {
        assert.ok(names.includes(ours), `the gradient runs ${ours}: ${names.join(', ')}`);
      }
      for (const gone of ['Transpose', 'Sub']) assert.ok(!names.includes(gone), `tfjs' ${gone} still runs: ${names.join(', ')}`);
      // doffset alone is a Sum (over every axis but the last: sum.ts's one pass); dscale's is fused.
      assert.equal(names.filter((n) => n === 'Sum').length, 1, `one Sum: ${names.join(', ')}`);
    });
  }
});

describe('Adam as one kernel (adam.c, FusedAdam)', () => {
  /** Five steps of `make(lr)` on three variables (sizes off the SIMD width included); their values and the last step's moments. */
  function steps(make: (lr: number) => tf.Optimizer): Float32Array[] {
    const shapes = [[7], [13, 9], [4, 4, 3, 2]];
    const vars = shapes.map((s, j) => tf.variable(rand(s, 500 + j), true, `adam-test-${j}-${Math.random()}`));
    const opt = make(3e-3);
    try {
      for (let t = 0; t < 5; t++) {
        tf.tidy(() => {
          // Gradients of several sizes, a zero and a huge one among them.
          const map: tf.NamedTensorMap = {};
          vars.forEach((v, j) => {
            const g = tf.mul(rand(v.shape, 600 + 10 * t + j), t === 2 ? 1e4 : 1);
            map[v.name] = j === 0 && t === 1 ? tf.zerosLike(v) : g;
          });
          opt.applyGradients(map);
        });
      }
      return vars.map((v) => Float32Array.from(v.dataSync()));
    } finally {
      opt.dispose();
      tf.dispose(vars);
    }
  }

  it('gives the bits of tfjs\' Adam on wasm, with the SIMD kernel and with its JavaScript twin, and is tfjs\' Adam on cpu', async () => {
    const { FusedAdam } = await import('../src/engine/kernels/adam.ts');
    await initBackend('wasm');
    const reference = steps((lr) => tf.train.adam(lr));
    const fused = steps((lr) => new FusedAdam(lr));
    simdKernelSwitch.enabled = false;
    let twin: Float32Array[];
    try {
      twin = steps((lr) => new FusedAdam(lr));
    } finally {
      simdKernelSwitch.enabled = true;
    }
    for (let j = 0; j < reference.length; j++) {
      const start = tf.tidy(() => rand([reference[j].length], 500 + j).dataSync());
      assert.ok(reference[j].every((x, i) => x !== start[i]), `variable ${j}: every value moved`);
      assert.deepEqual(new Uint32Array(fused[j].buffer), new Uint32Array(reference[j].buffer), `variable ${j}: SIMD kernel`);
      assert.deepEqual(new Uint32Array(twin[j].buffer), new Uint32Array(reference[j].buffer), `variable ${j}: JavaScript twin`);
    }
    // One kernel per variable and step instead of tfjs' chain of elementwise kernels.
    const names: string[] = [];
    const profile = await tf.profile(() => steps((lr) => new FusedAdam(lr)));
    for (const k of profile.kernels) names.push(k.name);
    assert.ok(names.includes('NeuralDiffAdamStep'), names.join(', '));
    for (const gone of ['Sqrt', 'Square', 'RealDiv']) assert.ok(!names.includes(gone), `tfjs' ${gone} still runs`);
    await initBackend('cpu');
    const cpuRef = steps((lr) => tf.train.adam(lr));
    const cpuFused = steps((lr) => new FusedAdam(lr));
    for (let j = 0; j < cpuRef.length; j++) assert.deepEqual(cpuFused[j], cpuRef[j]);
    await initBackend('wasm');
  });
});
