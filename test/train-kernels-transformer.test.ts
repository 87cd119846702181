/**
 * The kernels a transformer's training step leans on (issue #63), each beside its scalar twin on
 * many shapes, and through the registered wasm kernel against tfjs' cpu backend: Transpose
 * (src/engine/kernels/transpose.ts), a LayerNorm's normalisation and the exact GELU with their
 * gradients (src/engine/kernels/transformer.ts), and the ONNX executor running those chains fused
 * (src/engine/onnx/fuse.ts) with the outputs and weight gradients of the chains run node by node.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { simplifyPermutation, transposeInto, transposeReference } from '../src/engine/kernels/transpose.ts';
import { simdKernelSwitch, trainKernelsUnavailable } from '../src/engine/kernels/train-kernels-simd.ts';
import { asWasm } from '../src/engine/kernels/util.ts';
import { gelu, layerNormalize, erf, erfSeries, geluGradInto, geluGradReference, geluInto, geluReference, layerNormGradInto, layerNormGradReference, layerNormInto, layerNormReference } from '../src/engine/kernels/transformer.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { randomValues } from './helpers/kernel-tests.ts';
import { DT, f32le, graph, model, node, tensor, valueInfo } from './helpers/onnx-build.ts';

/** A deterministic permutation of `rank` axes from `seed`. */
function permutation(rank: number, seed: number): number[] {
  const p = Array.from({ length: rank }, (_, i) => i);
  const r = randomValues(rank, seed);
  for (let i = rank - 1; i > 0; i--) {
    const j = Math.floor(((r[i] + 1) / 2) * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** Shapes of rank 1 to 6 with size-1 axes among them, and the transformer's own. */
function shapes(): number[][] {
  const out: number[][] = [[7], [3, 5], [1, 9], [4, 1, 6], [2, 3, 4], [32, 32, 3, 4, 16], [32, 4, 32, 16], [2, 1, 3, 1, 5], [3, 2, 2, 3, 2, 2], [5, 0, 3]];
  const r = randomValues(64, 99);
  for (let k = 0; k < 24; k++) {
    const rank = 1 + (k % 6);
    out.push(Array.from({ length: rank }, (_, i) => 1 + Math.floor(((r[(k * 7 + i) % 64] + 1) / 2) * (rank > 4 ? 4 : 7))));
  }
  return out;
}

describe('Transpose beside its scalar twin', () => {
  it('gives the scalar twin\'s elements on every shape and many permutations (4-byte and 1-byte elements)', () => {
    let cases = 0;
    for (const shape of shapes()) {
      const n = shape.reduce((a, d) => a * d, 1);
      const x = Int32Array.from({ length: n }, (_, i) => (i * 2654435761) | 0);
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 31) & 0xff);
      for (let s = 0; s < 6; s++) {
        const perm = permutation(shape.length, s * 13 + shape.length);
        const [fast, slow] = [new Int32Array(n), new Int32Array(n)];
        transposeInto(x, fast, shape, perm);
        transposeReference(x, slow, shape, perm);
        assert.deepEqual(fast, slow, `shape [${shape}] perm [${perm}]`);
        const [fb, sb] = [new Uint8Array(n), new Uint8Array(n)];
        transposeInto(bytes, fb, shape, perm);
        transposeReference(bytes, sb, shape, perm);
        assert.deepEqual(fb, sb, `bytes, shape [${shape}] perm [${perm}]`);
        cases++;
      }
    }
    assert.ok(cases >= 200, `${cases} cases`);
  });

  it('the registered kernel (SIMD copy, or the JavaScript one with the switch off) gives the scalar twin\'s elements, the attention\'s permutes included', async () => {
    await initBackend('wasm');
    const cases: { shape: number[]; perm: number[] }[] = [{ shape: [32, 32, 3, 4, 16], perm: [2, 0, 3, 1, 4] }, { shape: [32, 4, 32, 16], perm: [0, 2, 1, 3] }, { shape: [5, 7], perm: [1, 0] }, { shape: [3, 5, 6], perm: [0, 2, 1] }];
    for (const shape of shapes()) for (let s = 0; s < 3; s++) cases.push({ shape, perm: permutation(shape.length, s * 11 + 2) });
    try {
      for (const { shape, perm } of cases) {
        const n = shape.reduce((a, d) => a * d, 1);
        const x = Int32Array.from({ length: n }, (_, i) => (i * 2654435761) | 0);
        const want = new Int32Array(n);
        transposeReference(x, want, shape, perm);
        for (const enabled of [true, false]) {
          simdKernelSwitch.enabled = enabled;
          const got = tf.tidy(() => tf.transpose(tf.tensor(x, shape, 'int32'), perm).dataSync());
          assert.deepEqual(got, want, `${enabled ? 'SIMD' : 'JavaScript'}: shape [${shape}] perm [${perm}]`);
        }
      }
    } finally {
      simdKernelSwitch.enabled = true;
    }
  });

  it('simplifies the permutation: size-1 axes dropped, input neighbours that stay neighbours merged', () => {
    assert.deepEqual(simplifyPermutation([32, 4, 32, 16], [0, 2, 1, 3]), { shape: [32, 4, 32, 16], perm: [0, 2, 1, 3] });
    assert.deepEqual(simplifyPermutation([2, 3, 4, 5], [2, 3, 0, 1]), { shape: [6, 20], perm: [1, 0] });
    assert.deepEqual(simplifyPermutation([2, 1, 3], [1, 2, 0]), { shape: [2, 3], perm: [1, 0] });
    assert.deepEqual(simplifyPermutation([1, 1], [1, 0]), { shape: [], perm: [] });
  });

  it('the registered wasm kernel equals tfjs\' cpu backend, float32 NaN payloads and int32 and bool included', async () => {
    const cases: { shape: number[]; perm: number[] }[] = [];
    for (const shape of shapes()) for (let s = 0; s < 3; s++) cases.push({ shape, perm: permutation(shape.length, s * 5 + 1) });
    const run = async (backend: 'wasm' | 'cpu') => {
      await initBackend(backend);
      return cases.map(({ shape, perm }) => tf.tidy(() => {
        const n = shape.reduce((a, d) => a * d, 1);
        const f = tf.tensor(Float32Array.from(randomValues(n, 3), (v, i) => (i % 17 === 5 ? NaN : v)), shape);
        const i = tf.tensor(Int32Array.from({ length: n }, (_, k) => k - 7), shape, 'int32');
        const b = tf.tensor(Uint8Array.from({ length: n }, (_, k) => k % 3 === 0 ? 1 : 0), shape, 'bool');
        return [f, i, b].map((t) => Array.from(tf.transpose(t, perm).dataSync() as ArrayLike<number>));
      }));
    };
    const cpu = await run('cpu');
    const wasm = await run('wasm');
    cases.forEach((c, k) => assert.deepEqual(wasm[k], cpu[k], `shape [${c.shape}] perm [${c.perm}]`));
    // The stock kernels that transpose inside (a mean over a leading axis) still run.
    await initBackend('wasm');
    const m = tf.tidy(() => Array.from(tf.mean(tf.tensor([1, 2, 3, 4, 5, 6], [3, 2]), 0).dataSync()));
    assert.deepEqual(m, [3, 4]);
  });
});

describe('registration', () => {
  it('the wasm and native backends run these kernels in place of the stock ones', async () => {
    await initBackend('wasm');
    const { FIXED_WASM_KERNELS } = await import('../src/engine/kernels/index.ts');
    const { transposeConfig } = await import('../src/engine/kernels/transpose.ts');
    assert.ok((FIXED_WASM_KERNELS as readonly string[]).includes('Transpose'));
    assert.equal(tf.getKernel('Transpose', 'wasm')?.kernelFunc.toString(), transposeConfig().kernelFunc.toString());
  });
});

/** Largest |a - b| over the largest |b| (b the float64 twin). */
function worst(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  assert.ok(m > 0 && Number.isFinite(d), 'a comparison against zeros or with non-finite values proves nothing');
  return d / m;
}

describe('LayerNorm and GELU kernels beside their float64 scalar twins', () => {
  it('erf within 2e-7 of float64 erf over [-6, 6]', () => {
    let e = 0;
    for (let x = -6; x <= 6; x += 1e-3) e = Math.max(e, Math.abs(erf(x) - erfSeries(x)));
    assert.ok(e < 2e-7, `erf off by ${e}`);
  });

  it('the normalisation and its gradient on rows of width 1 to 130 (offsets and scales of every size)', () => {
    for (const [rows, width, seed] of [[1, 1, 1], [3, 2, 2], [7, 5, 3], [32, 64, 4], [5, 130, 5], [64, 16, 6], [2, 127, 7]]) {
      for (const [offset, scale, eps] of [[0, 1, 1e-5], [100, 0.01, 1e-5], [-3, 50, 1e-3]]) {
        const x = Float32Array.from(randomValues(rows * width, seed), (v) => offset + scale * v);
        const dy = randomValues(rows * width, seed + 100);
        const [n, rstd, dx] = [new Float32Array(rows * width), new Float32Array(rows), new Float32Array(rows * width)];
        layerNormInto(x, n, rstd, width, eps);
        layerNormGradInto(dy, n, rstd, dx, width);
        const [n64, rstd64] = layerNormReference(x, width, eps);
        const label = `${rows}x${width}, offset ${offset}, scale ${scale}`;
        if (width > 1) assert.ok(worst(n, n64) < 1e-5, `${label}: n off by ${worst(n, n64)}`);
        assert.ok(worst(rstd, rstd64) < 1e-5, `${label}: rstd off by ${worst(rstd, rstd64)}`);
        if (width > 1) {
          // Against the gradient's own scale, rstd |dy| (at width 2 the true gradient is about 0).
          const dx64 = layerNormGradReference(x, dy, width, eps);
          const scale = Math.max(...rstd64) * Math.max(...Array.from(dy, Math.abs));
          const off = Math.max(...Array.from(dx, (v, i) => Math.abs(v - dx64[i])));
          assert.ok(off < 1e-5 * scale, `${label}: dx off by ${off} (scale ${scale})`);
        }
      }
    }
  });

  it('GELU and its gradient over [-8, 8]', () => {
    const x = Float32Array.from({ length: 4001 }, (_, i) => -8 + i * 0.004);
    const dy = Float32Array.from(randomValues(x.length, 9), (v) => 1 + v);
    const [y, dx] = [new Float32Array(x.length), new Float32Array(x.length)];
    geluInto(x, y);
    geluGradInto(dy, x, dx);
    assert.ok(worst(y, Array.from(x, geluReference)) < 1e-6, 'gelu');
    assert.ok(worst(dx, Array.from(x, (v, i) => dy[i] * geluGradReference(v))) < 1e-6, 'gelu gradient');
  });
});

describe('the SIMD kernels (transformer.c) beside the JavaScript loops and the float64 twins', () => {
  it('LayerNorm, GELU and their gradients through the registered kernels on wasm, SIMD and JavaScript, on many shapes', async () => {
    await initBackend('wasm');
    assert.equal(trainKernelsUnavailable(asWasm(tf.backend())), null, 'the SIMD module runs here');
    const shapes = [[1, 1], [3, 5], [2, 7, 64], [4, 130], [33, 3], [5, 2, 9, 16], [1, 4097]];
    for (const shape of shapes) {
      const n = shape.reduce((a, d) => a * d, 1);
      const width = shape[shape.length - 1];
      const xv = Float32Array.from(randomValues(n, n + 3), (v) => 1.5 + 4 * v);
      const dyv = randomValues(n, n + 4);
      const run = (enabled: boolean) => {
        simdKernelSwitch.enabled = enabled;
        try {
          return tf.tidy(() => {
            const x = tf.tensor(xv, shape);
            const dy = tf.tensor(dyv, shape);
            const ln = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(layerNormalize(t, 1e-5), dy)))(x);
            const ge = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), dy)))(x);
            return [layerNormalize(x, 1e-5), ln, gelu(x), ge].map((t) => Float32Array.from(t.dataSync()));
          });
        } finally {
          simdKernelSwitch.enabled = true;
        }
      };
      const [simdOut, jsOut] = [run(true), run(false)];
      const [n64] = layerNormReference(xv, width, 1e-5);
      const ln64 = layerNormGradReference(xv, dyv, width, 1e-5);
      const g64 = Array.from(xv, geluReference);
      const gg64 = Array.from(xv, (v, i) => dyv[i] * geluGradReference(v));
      for (const [name, out] of [['SIMD', simdOut], ['JavaScript', jsOut]] as const) {
        const label = `${name}, shape [${shape}]`;
        if (width > 2) {
          assert.ok(worst(out[0], n64) < 1e-5, `${label}: layer norm off by ${worst(out[0], n64)}`);
          assert.ok(worst(out[1], ln64) < 1e-4, `${label}: layer norm gradient off by ${worst(out[1], ln64)}`);
        }
        assert.ok(worst(out[2], g64) < 1e-6, `${label}: gelu off by ${worst(out[2], g64)}`);
        assert.ok(worst(out[3], gg64) < 1e-6, `${label}: gelu gradient off by ${worst(out[3], gg64)}`);
      }
    }
  });
});

/** x [B, T, D] -> LayerNorm (decomposed as exporters write it, with scale and shift) -> GELU (Div, Erf, Add, Mul, Mul) -> sum-friendly y. */
function layerNormGeluModel(b: number, t: number, d: number): Uint8Array {
  const c = (name: string, v: number) => node({ opType: 'Constant', outputs: [name], attributes: [{ name: 'value', type: 4, t: tensor({ dims: [], dataType: DT.FLOAT, raw: f32le([v]) }) }] });
  const mean = (i: string, o: string) => node({ opType: 'ReduceMean', inputs: [i], outputs: [o], attributes: [{ name: 'axes', type: 7, ints: [-1] }] });
  return model(graph({
    initializers: [
      tensor({ name: 'gamma', dims: [d], dataType: DT.FLOAT, raw: f32le(Array.from(randomValues(d, 21), (v) => 1 + v / 2)) }),
      tensor({ name: 'beta', dims: [d], dataType: DT.FLOAT, raw: f32le(Array.from(randomValues(d, 22), (v) => v / 3)) }),
    ],
    nodes: [
      mean('x', 'm'), node({ opType: 'Sub', inputs: ['x', 'm'], outputs: ['dev'] }), c('two', 2), node({ opType: 'Pow', inputs: ['dev', 'two'], outputs: ['sq'] }),
      mean('sq', 'var'), c('eps', 1e-5), node({ opType: 'Add', inputs: ['var', 'eps'], outputs: ['ve'] }), node({ opType: 'Sqrt', inputs: ['ve'], outputs: ['sd'] }),
      node({ opType: 'Div', inputs: ['dev', 'sd'], outputs: ['n'] }), node({ opType: 'Mul', inputs: ['n', 'gamma'], outputs: ['ng'] }), node({ opType: 'Add', inputs: ['ng', 'beta'], outputs: ['h'] }),
      c('root2', Math.SQRT2), node({ opType: 'Div', inputs: ['h', 'root2'], outputs: ['q'] }), node({ opType: 'Erf', inputs: ['q'], outputs: ['e'] }), c('one', 1),
      node({ opType: 'Add', inputs: ['e', 'one'], outputs: ['e1'] }), node({ opType: 'Mul', inputs: ['h', 'e1'], outputs: ['he'] }), c('half', 0.5), node({ opType: 'Mul', inputs: ['he', 'half'], outputs: ['y'] }),
    ],
    inputs: [valueInfo('x', [b, t, d])],
    outputs: [valueInfo('y', [b, t, d])],
  }));
}

describe('the ONNX executor runs a LayerNorm\'s decomposed form and the exact GELU fused', () => {
  it('gives the node-by-node outputs and weight gradients, runs no Pow, Erf or Sqrt kernel, on wasm', async () => {
    await initBackend('wasm');
    const [b, t, d] = [4, 6, 24];
    const bytes = layerNormGeluModel(b, t, d);
    const x = Float32Array.from(randomValues(b * t * d, 31), (v) => 2 + 3 * v);
    const probe = tf.tensor(randomValues(b * t * d, 32), [b, t, d]);
    const run = async (fuse: boolean) => {
      const program = new OnnxProgram(bytes, { fuse });
      // The weights (scale and shift), not the scalar constants, which the fused chains do not read.
      const vars = program.variables.filter((v) => v.shape.length > 0).map((v) => v.variable);
      const step = () => tf.variableGrads(() => tf.sum(tf.mul(program.run({ x: tf.tensor(x, [b, t, d]) }).y, probe)) as tf.Scalar, vars);
      const info = await tf.profile(() => {
        const { value, grads } = step();
        tf.dispose([value, ...Object.values(grads)]);
      });
      const { value, grads } = step();
      const out = { loss: value.dataSync()[0], grads: vars.map((v) => Float32Array.from(grads[v.name].dataSync())), y: Float32Array.from(tf.tidy(() => program.run({ x: tf.tensor(x, [b, t, d]) }).y.dataSync())), kernels: new Set(info.kernels.map((k) => k.name)) };
      tf.dispose([value, ...Object.values(grads)]);
      program.dispose();
      return out;
    };
    const plain = await run(false);
    const fusedRun = await run(true);
    assert.ok(plain.kernels.has('Erf') && plain.kernels.has('Pow'), 'the unfused run computes the chains node by node');
    for (const k of ['Erf', 'Pow', 'Sqrt']) assert.ok(!fusedRun.kernels.has(k), `the fused run ran ${k}: ${[...fusedRun.kernels].join(', ')}`);
    assert.ok(worst(fusedRun.y, plain.y) < 1e-5, `outputs differ by ${worst(fusedRun.y, plain.y)}`);
    assert.ok(Math.abs(fusedRun.loss - plain.loss) <= 1e-5 * Math.max(1, Math.abs(plain.loss)));
    fusedRun.grads.forEach((g, i) => assert.ok(worst(g, plain.grads[i]) < 1e-4, `gradient ${i} differs by ${worst(g, plain.grads[i])}`));
    probe.dispose();
  });

  it('leaves a chain whose intermediate value another node reads as it is', async () => {
    await initBackend('wasm');
    // The same graph with the Erf's output also a graph output: nothing may fuse away.
    const program = new OnnxProgram(layerNormGeluModel(1, 2, 8));
    const { fusionPlan } = await import('../src/engine/onnx/fuse.ts');
    const g = program.model.graph;
    assert.equal(fusionPlan(g, () => undefined).size, 0, 'no constant read, no chain');
    const withOutput = { ...g, outputs: [...g.outputs, { name: 'e', dataType: DT.FLOAT }] };
    const read = (n: { attributes: Map<string, { t?: { values: ArrayLike<number> } }> }) => n.attributes.get('value')?.t?.values[0];
    assert.deepEqual([...fusionPlan(withOutput, read as never).values()].map((c) => c.kind), ['layer-norm']);
    assert.deepEqual([...fusionPlan({ ...g }, read as never).values()].map((c) => c.kind), ['layer-norm', 'gelu']);
    program.dispose();
  });
});

describe('batched small matrix products (batch-mat-mul.c) beside a float64 twin', () => {
  it('every transpose combination, broadcast batches and odd sizes, through tf.matMul on wasm', async () => {
    await initBackend('wasm');
    const cases: [number, number, number, number, number, number][] = [[128, 1, 32, 16, 32, 1], [3, 3, 5, 7, 9, 2], [4, 1, 1, 1, 1, 3], [2, 2, 33, 3, 6, 4], [6, 6, 4, 16, 5, 5], [1, 5, 7, 2, 3, 6]];
    let checked = 0;
    for (const [batchA, batchB, m, k, n, seed] of cases) {
      for (const transposeA of [false, true]) {
        for (const transposeB of [false, true]) {
          const av = randomValues(batchA * m * k, seed);
          const bv = randomValues(batchB * k * n, seed + 50);
          const got = tf.tidy(() => tf.matMul(tf.tensor(av, transposeA ? [batchA, k, m] : [batchA, m, k]), tf.tensor(bv, transposeB ? [batchB, n, k] : [batchB, k, n]), transposeA, transposeB).dataSync());
          const batch = Math.max(batchA, batchB);
          const want = new Float64Array(batch * m * n);
          for (let t = 0; t < batch; t++) {
            const ao = batchA === 1 ? 0 : t * m * k;
            const bo = batchB === 1 ? 0 : t * k * n;
            for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
              let acc = 0;
              for (let p = 0; p < k; p++) acc += av[ao + (transposeA ? p * m + i : i * k + p)] * bv[bo + (transposeB ? j * k + p : p * n + j)];
              want[t * m * n + i * n + j] = acc;
            }
          }
          assert.ok(worst(got, want) < 1e-5, `[${batchA}|${batchB}] ${m}x${k}x${n} transposeA ${transposeA} transposeB ${transposeB}: off by ${worst(got, want)}`);
          checked++;
        }
      }
    }
    assert.equal(checked, 24);
  });
});
