/**
 * The kernels a transformer's training step leans on (issue #63), each beside its scalar twin on
 * many shapes, and through the registered wasm kernel against tfjs' cpu backend: Transpose
 * (src/train/kernels/transpose.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/train/backend.ts';
import { simplifyPermutation, transposeInto, transposeReference } from '../src/train/kernels/transpose.ts';
import { randomValues } from './helpers/kernel-tests.ts';

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
    const { FIXED_WASM_KERNELS } = await import('../src/train/kernels/index.ts');
    const { transposeConfig } = await import('../src/train/kernels/transpose.ts');
    assert.ok((FIXED_WASM_KERNELS as readonly string[]).includes('Transpose'));
    assert.equal(tf.getKernel('Transpose', 'wasm')?.kernelFunc.toString(), transposeConfig().kernelFunc.toString());
  });
});
